#!/usr/bin/env bash
# On-demand benchmark of runs on agents (not part of `make test`). A real PostgreSQL, a real
# `nclav serve --agents-only` and real `nclav agent` processes on loopback. Prints:
#  1. 60 partitions whose terraform sleeps 1 s, applied by 1 agent at --parallelism 2 versus
#     3 agents at --parallelism 2 each (target: >= 2.5x faster);
#  2. the per-run overhead of an agent: the median of each partition's run time through an
#     agent minus in-process (SQLite server), 20 partitions at --parallelism 1 (target <= 50 ms).
# Usage: bench/agents.sh [rounds]   (default 1 round of each)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-1}
swift build -c release --product nclav 2>&1 | grep -E "error" || true
NCLAV=$PWD/.build/release/nclav
PG=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() {
  for pid in "${pids[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
  runuser -u postgres -- "$PG/pg_ctl" -D "$work/pg/data" stop -m immediate >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
now() { date +%s.%N; }

mkdir -p "$work/pg" && chown postgres "$work/pg"
pg_port=$(free_port)
runuser -u postgres -- "$PG/initdb" -D "$work/pg/data" -A trust -U postgres >/dev/null
runuser -u postgres -- "$PG/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w \
  -o "-p $pg_port -c listen_addresses=127.0.0.1 -k $work/pg -c fsync=off -c synchronous_commit=off -c max_connections=200" start >/dev/null
database() { runuser -u postgres -- "$PG/psql" -h 127.0.0.1 -p "$pg_port" -q -c "CREATE DATABASE $1" postgres; echo "postgres://postgres@127.0.0.1:$pg_port/$1?sslmode=disable"; }

# generate <dir> <partitions> <sleep seconds>: three enclaves sharing the partitions.
generate() {
  python3 - "$1" "$2" "$3" <<'PY'
import os, sys
root, count, sleep = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for i in range(count):
    e, p = f"e{i % 3}", f"p{i // 3}"
    os.makedirs(os.path.join(root, e, p), exist_ok=True)
    open(os.path.join(root, e, "config.yml"), "w").write(f"id: {e}\nname: {e}\ncloud: local\n")
    open(os.path.join(root, e, p, "config.yml"), "w").write(f"id: {p}\nname: {p}\n")
    command = f'\n  provisioner "local-exec" {{\n    command = "sleep {sleep}"\n  }}\n' if sleep != "0" else "\n"
    open(os.path.join(root, e, p, "main.tf"), "w").write(f'resource "terraform_data" "x" {{\n  input = "{e}/{p}"{command}}}\n')
PY
}

# serve <home> [args…]: starts a server, exports NCLAV_HOME/NCLAV_URL.
serve() {
  local home=$1; shift
  mkdir -p "$home"
  local port; port=$(free_port)
  NCLAV_HOME=$home NCLAV_LOG_LEVEL=warning "$NCLAV" serve --port "$port" "$@" >"$home/out" 2>"$home/err" &
  pids+=($!)
  for _ in $(seq 1 200); do grep -q "listening on" "$home/out" 2>/dev/null && break; sleep 0.05; done
  export NCLAV_HOME=$home NCLAV_URL=http://127.0.0.1:$port
}
agents() { # agents <count> <parallelism>
  local token; token=$("$NCLAV" agent-token create bench 2>/dev/null | tail -1)
  for i in $(seq 1 "$1"); do
    NCLAV_HOME=$NCLAV_HOME/agent$i "$NCLAV" agent --token "$token" --parallelism "$2" >"$NCLAV_HOME/agent$i.log" 2>&1 &
    pids+=($!)
  done
}
stop_all() { for pid in "${pids[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
median_seconds() { python3 -c '
import json, statistics, sys
print(statistics.median(o["seconds"] for o in json.load(open(sys.argv[1]))["outcomes"] if o.get("seconds") is not None))' "$1"; }

echo "machine: $(nproc) cores; $(terraform version -json 2>/dev/null | python3 -c 'import json,sys; print("terraform", json.load(sys.stdin)["terraform_version"])')"
generate "$work/sixty" 60 1
generate "$work/twenty" 20 0
for round in $(seq 1 "$ROUNDS"); do
  declare -A took=()
  for pool in 1 3; do
    serve "$work/r$round-pool$pool" --postgres-url "$(database "r${round}_pool$pool")" --agents-only
    agents "$pool" 2
    start=$(now)
    "$NCLAV" apply "$work/sixty" --auto-approve --parallelism 6 >"$work/r$round-pool$pool.apply" 2>&1 || { cat "$work/r$round-pool$pool.apply"; exit 1; }
    took[$pool]=$(python3 -c "print(round($(now) - $start, 2))")
    stop_all
  done
  python3 -c "print(f'round $round: 60 partitions x 1 s: 1 agent x2 {${took[1]}} s, 3 agents x2 {${took[3]}} s: {${took[1]}/${took[3]}:.2f}x faster (target >= 2.5x)')"

  serve "$work/r$round-inprocess"
  "$NCLAV" apply "$work/twenty" --auto-approve --parallelism 1 --report-file "$work/inprocess.json" >/dev/null
  stop_all
  serve "$work/r$round-agent" --postgres-url "$(database "r${round}_overhead")" --agents-only
  agents 1 1
  "$NCLAV" apply "$work/twenty" --auto-approve --parallelism 1 --report-file "$work/agent.json" >/dev/null
  stop_all
  serve "$work/r$round-replica" --postgres-url "$(database "r${round}_replica")"
  "$NCLAV" apply "$work/twenty" --auto-approve --parallelism 1 --report-file "$work/replica.json" >/dev/null
  stop_all
  here=$(median_seconds "$work/inprocess.json"); there=$(median_seconds "$work/agent.json"); replica=$(median_seconds "$work/replica.json")
  python3 -c "print(f'round $round: per-run median in-process {$here*1000:.0f} ms, through an agent {$there*1000:.0f} ms: overhead {($there-$here)*1000:.0f} ms (target <= 50 ms); a replica worker (PostgreSQL, no agents) {$replica*1000:.0f} ms')"
done
