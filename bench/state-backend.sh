#!/usr/bin/env bash
# On-demand benchmark of the Terraform state backend (not part of `make test`).
# Builds nclav in release mode, starts it on the embedded SQLite store and an nginx serving
# the same bytes as a static file (and accepting them by WebDAV PUT), both on loopback, then runs
# bench/state_backend_bench.py.
# Usage: bench/state-backend.sh [--size-mb 10] [--rounds 40] [--clients 50] [--lock-rounds 100]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench: installing ${missing[*]} (the static-file baseline and a C load generator)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
swift build -c release --product nclav 2>&1 | grep -E "error|warning: [^']" || true
NCLAV=.build/release/nclav

work=$(mktemp -d)
cleanup() { [ -n "${nclav_pid:-}" ] && kill "$nclav_pid" 2>/dev/null || true; "$NGINX" -p "$work" -c "$work/nginx.conf" -s stop 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
nclav_port=$(free_port); nginx_port=$(free_port)
size_mb=10; for ((i = 1; i <= $#; i++)); do [ "${!i}" = "--size-mb" ] && { j=$((i + 1)); size_mb=${!j}; }; done

python3 - "$work/www/state.json" "$size_mb" <<'PY'
import json, os, sys
path, size = sys.argv[1], int(float(sys.argv[2]) * 1024 * 1024)
os.makedirs(os.path.dirname(path), exist_ok=True)
head = json.dumps({"version": 4, "serial": 1, "lineage": "bench-lineage", "outputs": {}, "resources": []})[:-1]
open(path, "w").write(head + ',"padding":"' + "x" * (size - len(head) - 14) + '"}')
PY
mkdir -p "$work/logs"
# nginx workers run as an unprivileged user: let them read the static copy.
chmod 755 "$work" "$work/www"; chmod 644 "$work/www/state.json"
mkdir -p "$work/www/put" "$work/body-temp"; chmod 777 "$work/www/put" "$work/body-temp"
cat > "$work/nginx.conf" <<CONF
worker_processes auto;
pid $work/nginx.pid;
error_log $work/logs/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 100000;
  client_body_temp_path $work/body-temp;
  server {
    listen 127.0.0.1:$nginx_port; root $work/www;
    # The write counterpart of serving a file: WebDAV PUT stores the body as a file.
    location /put/ { dav_methods PUT; client_max_body_size 1g; }
  }
}
CONF
"$NGINX" -p "$work" -c "$work/nginx.conf"

# The single-threaded epoll lock client (bench/lockpairs.c), built with the Swift toolchain's clang.
CC=$(command -v clang || command -v cc)
"$CC" -O2 -o "$work/lockpairs" bench/lockpairs.c

retained=10
NCLAV_HOME="$work/home" NCLAV_LOG_LEVEL=warning "$NCLAV" serve --port "$nclav_port" --state-versions "$retained" >"$work/nclav.out" 2>"$work/nclav.err" &
nclav_pid=$!
for _ in $(seq 1 200); do grep -q "listening on" "$work/nclav.out" 2>/dev/null && break; sleep 0.05; done
grep -q "listening on" "$work/nclav.out" || { cat "$work/nclav.err"; exit 1; }

echo "machine: $(nproc) cores, $(uname -r); nclav $("$NCLAV" --version), store: sqlite (WAL, synchronous=NORMAL)"
cpu_before=$(awk "{print \$14+\$15}" /proc/$nclav_pid/stat)
start_ns=$(date +%s%N)
python3 bench/state_backend_bench.py --nclav-port "$nclav_port" --nginx-port "$nginx_port" --token "$(cat "$work/home/token")" --retained "$retained" "$@"
clients=50; for ((i = 1; i <= $#; i++)); do [ "${!i}" = "--clients" ] && { j=$((i + 1)); clients=${!j}; }; done
echo "--- lock/unlock with the epoll C client (bench/lockpairs.c): $clients connections on one thread, 3 x 5 s after 1 s warm-up"
for _ in 1 2 3; do "$work/lockpairs" 127.0.0.1 "$nclav_port" "$(cat "$work/home/token")" "$clients" 5 1; done
echo "--- lock/unlock with wrk (C client; pairs timed in LuaJIT): $clients threads x 1 connection, 5 s"
wrk -t "$clients" -c "$clients" -d 5s -s bench/lock_unlock.lua "http://127.0.0.1:$nclav_port" -- "$(cat "$work/home/token")" | grep -E "^(wrk|lock)"
cpu_after=$(awk '{print $14+$15}' /proc/$nclav_pid/stat)
elapsed_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
echo "nclav server CPU: $(( (cpu_after - cpu_before) * 1000 / $(getconf CLK_TCK) )) ms over ${elapsed_ms} ms wall"
