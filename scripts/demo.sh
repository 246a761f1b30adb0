#!/usr/bin/env bash
# Applies examples/local through a real `nclav serve` on the embedded store, then prints the
# graph and one partition's IaC log. Reuses a demo server that is already running, so running
# it again shows "No changes.".
set -euo pipefail
cd "$(dirname "$0")/.."
# Absolute, so the hints printed at the end work from any directory.
NCLAV=$(realpath "${NCLAV:-.build/debug/nclav}")
export NCLAV_HOME=$(realpath -m "${NCLAV_HOME:-$PWD/.nclav-demo}")
PORT=${NCLAV_DEMO_PORT:-8080}
export NCLAV_URL=http://127.0.0.1:$PORT
mkdir -p "$NCLAV_HOME"

if curl -sf "$NCLAV_URL/health" >/dev/null 2>&1; then
  if ! "$NCLAV" status >/dev/null 2>&1; then
    echo "demo: something else answers on port $PORT; set NCLAV_DEMO_PORT to a free port" >&2
    exit 1
  fi
  echo "demo: reusing the nclav server on $NCLAV_URL"
else
  # The server outlives this script, so it keeps none of the caller's descriptors: a caller
  # that waits for them to close (a CI step, `make setup | tee`) must not wait for the server.
  (
    for fd in /proc/self/fd/*; do
      n=${fd##*/}
      if [ "$n" -gt 2 ]; then eval "exec $n>&-" 2>/dev/null || true; fi
    done
    exec nohup "$NCLAV" serve --port "$PORT" </dev/null >"$NCLAV_HOME/serve.log" 2>&1
  ) &
  echo $! >"$NCLAV_HOME/serve.pid"
  for _ in $(seq 1 100); do curl -sf "$NCLAV_URL/ready" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -sf "$NCLAV_URL/ready" >/dev/null || { echo "demo: the server did not start; see $NCLAV_HOME/serve.log" >&2; exit 1; }
  echo "demo: started nclav serve on $NCLAV_URL (state in $NCLAV_HOME/state.db, log in $NCLAV_HOME/serve.log)"
fi

echo; echo "\$ nclav apply examples/local"
"$NCLAV" apply examples/local
echo; echo "\$ nclav graph"
"$NCLAV" graph
echo; echo "\$ nclav iac logs shop web   (last 12 lines)"
"$NCLAV" iac logs shop web | tail -n 12
cat <<MSG

The demo server keeps running. Use it with:
  export NCLAV_HOME=$NCLAV_HOME NCLAV_URL=$NCLAV_URL
  $NCLAV status
Stop it with:
  kill \$(cat $NCLAV_HOME/serve.pid)
MSG
