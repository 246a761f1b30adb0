#!/usr/bin/env bash
# On-demand benchmark of reconcile (not part of `make test`). Prints:
#  1. no-op apply of 200 partitions: wall time and terraform runs started (target 0, < 1 s);
#  2. first apply of 40 independent partitions at --parallelism 2 versus the same modules
#     applied by a plain shell loop of `terraform init && terraform apply` (target: nclav
#     <= 1.15 x the loop's sum / 2);
#  3. diff of a generated tree of 1000 enclaves x 5 partitions: wall time and peak RSS of the
#     CLI and the server (target < 1.5 s, RSS < 300 MB);
#  4. `nclav plan` of 40 independent partitions at --parallelism 2 versus a plain shell loop of
#     `terraform init && terraform plan -out` over the same modules (target: nclav <= 1.15 x the
#     loop's sum / 2).
# Applies use --auto-approve: they measure the apply, not the plan shown before it.
# Usage: bench/reconcile.sh [--skip-noop] [--skip-parallel] [--skip-diff] [--skip-plan]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
swift build -c release --product nclav 2>&1 | grep -E "error" || true
NCLAV=$PWD/.build/release/nclav
TERRAFORM=$(command -v terraform)
work=$(mktemp -d)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
skip() { for a in "$@"; do :; done; }
want() { ! printf '%s\n' "${ARGS[@]:-}" | grep -qx -- "--skip-$1"; }
ARGS=("$@")

# generate <dir> <enclaves> <partitions-per-enclave>
generate() {
  python3 - "$1" "$2" "$3" <<'PY'
import os, sys
root, enclaves, partitions = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for e in range(enclaves):
    base = os.path.join(root, f"e{e:04d}")
    os.makedirs(base, exist_ok=True)
    open(os.path.join(base, "config.yml"), "w").write(f"id: e{e:04d}\nname: Enclave {e}\ncloud: local\nregion: local-1\n")
    for p in range(partitions):
        d = os.path.join(base, f"p{p}")
        os.makedirs(d, exist_ok=True)
        open(os.path.join(d, "config.yml"), "w").write(f"id: p{p}\nname: Partition {p}\ninputs:\n  region: \"{{{{ nclav_region }}}}\"\n")
        open(os.path.join(d, "main.tf"), "w").write(
            'variable "nclav_enclave" { type = string }\nvariable "nclav_partition" { type = string }\n'
            'variable "region" { type = string }\n'
            'resource "terraform_data" "this" {\n  input = "${var.nclav_enclave}/${var.nclav_partition}/${var.region}"\n}\n'
            'output "id" { value = terraform_data.this.output }\n')
PY
}

start_server() {
  local home=$1 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  NCLAV_HOME=$home NCLAV_LOG_LEVEL=warning "$NCLAV" serve --port "$port" >"$home.out" 2>"$home.err" &
  server_pid=$!
  for _ in $(seq 1 200); do grep -q "listening on" "$home.out" 2>/dev/null && break; sleep 0.05; done
  export NCLAV_HOME=$home NCLAV_URL=http://127.0.0.1:$port
}
stop_server() { kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null || true; server_pid=""; }
runs() { curl -sf -H "Authorization: Bearer $(cat "$NCLAV_HOME/token")" "$NCLAV_URL/events?limit=1000" | python3 -c 'import json,sys; print(sum(1 for e in json.load(sys.stdin)["events"] if e["kind"] in ("partition.applied","partition.failed")))'; }
now() { date +%s.%N; }
echo "machine: $(nproc) cores; $("$TERRAFORM" version -json 2>/dev/null | python3 -c 'import json,sys; print("terraform", json.load(sys.stdin)["terraform_version"])')"

if want noop; then
  generate "$work/noop" 40 5
  start_server "$work/noop-home"
  "$NCLAV" apply "$work/noop" --auto-approve >/dev/null
  before=$(runs); t0=$(now)
  "$NCLAV" apply "$work/noop" --auto-approve >"$work/noop.out"
  t1=$(now); after=$(runs)
  echo "1. no-op apply of 200 partitions: $(python3 -c "print(f'{$t1-$t0:.3f}')") s wall, $((after - before)) terraform runs started; output: $(cat "$work/noop.out")  (target: 0 runs, < 1 s)"
  stop_server
fi

if want parallel; then
  generate "$work/par" 40 1
  # The plain loop: the same modules, local state, one after another.
  mkdir -p "$work/loop"
  loop_total=0
  for d in "$work"/par/*/p0; do
    copy="$work/loop/$(basename "$(dirname "$d")")"; cp -r "$d" "$copy"; rm -f "$copy/config.yml"
    printf 'nclav_enclave = "x"\nnclav_partition = "y"\nregion = "local-1"\n' > "$copy/terraform.tfvars"
    t0=$(now)
    (cd "$copy" && TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1 "$TERRAFORM" init -input=false -no-color >/dev/null 2>&1 && TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1 "$TERRAFORM" apply -auto-approve -input=false -no-color >/dev/null 2>&1)
    t1=$(now); loop_total=$(python3 -c "print($loop_total + $t1 - $t0)")
  done
  # The same loop two at a time: what plain terraform itself reaches on this machine.
  for d in "$work"/loop/*; do rm -rf "$d/.terraform" "$d"/terraform.tfstate* "$d/.terraform.lock.hcl"; done
  t0=$(now)
  ls -d "$work"/loop/* | TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1 xargs -P2 -I{} sh -c \
    "cd {} && '$TERRAFORM' init -input=false -no-color >/dev/null 2>&1 && '$TERRAFORM' apply -auto-approve -input=false -no-color >/dev/null 2>&1"
  t1=$(now); loop_parallel=$(python3 -c "print($t1 - $t0)")
  start_server "$work/par-home"
  t0=$(now); "$NCLAV" apply "$work/par" --parallelism 2 --auto-approve >/dev/null; t1=$(now)
  python3 - "$loop_total" "$(python3 -c "print($t1-$t0)")" "$loop_parallel" <<'PY'
import sys
loop, nclav, loop2 = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
ideal = loop / 2
print(f"2. first apply of 40 partitions, --parallelism 2: nclav {nclav:.2f} s; plain init+apply loop {loop:.2f} s "
      f"(ideal / 2 = {ideal:.2f} s); ratio {nclav / ideal:.2f} (target <= 1.15)")
print(f"   (the plain loop run two at a time with xargs -P2: {loop2:.2f} s, ratio {loop2 / ideal:.2f}; "
      f"nclav over that: {nclav - loop2:+.2f} s for 40 partitions)")
PY
  stop_server
fi

if want diff; then
  generate "$work/big" 1000 5
  start_server "$work/big-home"
  "$NCLAV" diff "$work/big" >/dev/null  # warm the page cache
  t0=$(now)
  /usr/bin/time -f "%M" -o "$work/cli-rss" "$NCLAV" diff "$work/big" >"$work/diff.out"
  t1=$(now)
  server_rss=$(awk '/VmHWM/ {print $2}' /proc/$server_pid/status)
  echo "3. diff of 1000 enclaves x 5 partitions: $(python3 -c "print(f'{$t1-$t0:.2f}')") s wall; CLI peak RSS $(( $(cat "$work/cli-rss") / 1024 )) MB, server peak RSS $(( server_rss / 1024 )) MB; $(tail -1 "$work/diff.out")  (target < 1.5 s, < 300 MB)"
  t0=$(now); /usr/bin/time -f "%M" -o "$work/val-rss" "$NCLAV" validate "$work/big" >/dev/null; t1=$(now)
  echo "   (offline validate of the same tree: $(python3 -c "print(f'{$t1-$t0:.2f}')") s, peak RSS $(( $(cat "$work/val-rss") / 1024 )) MB)"
  stop_server
fi

if want plan; then
  generate "$work/plan" 40 1
  mkdir -p "$work/planloop"
  loop_total=0
  for d in "$work"/plan/*/p0; do
    copy="$work/planloop/$(basename "$(dirname "$d")")"; cp -r "$d" "$copy"; rm -f "$copy/config.yml"
    printf 'nclav_enclave = "x"\nnclav_partition = "y"\nregion = "local-1"\n' > "$copy/terraform.tfvars"
    t0=$(now)
    (cd "$copy" && TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1 "$TERRAFORM" init -input=false -no-color >/dev/null 2>&1 && TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1 "$TERRAFORM" plan -input=false -no-color -out=tfplan >/dev/null 2>&1)
    t1=$(now); loop_total=$(python3 -c "print($loop_total + $t1 - $t0)")
  done
  start_server "$work/plan-home"
  t0=$(now); "$NCLAV" plan "$work/plan" --parallelism 2 >"$work/plan.out" || true; t1=$(now)
  python3 - "$loop_total" "$(python3 -c "print($t1-$t0)")" "$(tail -2 "$work/plan.out" | head -1)" <<'PY'
import sys
loop, nclav, summary = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
ideal = loop / 2
print(f"4. plan of 40 partitions, --parallelism 2: nclav {nclav:.2f} s ({summary}); plain init+plan -out loop {loop:.2f} s "
      f"(ideal / 2 = {ideal:.2f} s); ratio {nclav / ideal:.2f} (target <= 1.15)")
PY
  stop_server
fi
