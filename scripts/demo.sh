#!/usr/bin/env bash
# make demo: start rayplaned on a fresh data directory and run a real local
# cluster with the CLI verbs: agents are processes on this machine. Kill a
# worker's agent with SIGKILL, watch it be replaced, terminate the cluster
# and show that no process of it is left. On any failure the trap stops the
# server and kills whatever the demo started.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT=$PWD
DATA=$ROOT/.demo/data
PORT=${RAYPLANE_DEMO_PORT:-18443}
START=$SECONDS
rm -rf .demo && mkdir -p .demo

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# rp shows a CLI command, then runs it.
rp() {
  local a s='$ rayplaned'
  for a; do
    [[ $a =~ [^A-Za-z0-9_./=:,@-] ]] && a="'$a'"
    s+=" $a"
  done
  printf '\033[2m%s\033[0m\n' "$s"
  ./bin/rayplaned "$@"
}
# create runs a create verb with rp, prints its table and sets ID from it.
create() {
  local out
  out=$(rp "$@")
  echo "$out"
  ID=$(awk 'NR == 3 { print $1 }' <<<"$out") # line 1 is the command, 2 the header
}
# pids_with KEY=value: processes whose environment holds it.
pids_with() {
  grep -lzxF "$1" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 || true
}
# agent_pid NODE_ID: the pid of the node's agent (its runtime carries the
# same RAYPLANE_NODE_ID).
agent_pid() {
  local pid
  for pid in $(pids_with "RAYPLANE_NODE_ID=$1"); do
    grep -qzxF agent "/proc/$pid/cmdline" 2>/dev/null && echo "$pid" && return
  done
  return 1
}

SERVER=
CLUSTER_ID=
cleanup() {
  local status=$?
  if [ -n "$SERVER" ] && kill -0 "$SERVER" 2>/dev/null; then
    kill -TERM "$SERVER"
    wait "$SERVER" || true
  fi
  # Agents outlive the control plane by design, so they are killed here,
  # after it, so that nothing relaunches them: by cluster id, and by their
  # work directories under the demo's data directory.
  local pids
  pids=$({ [ -z "$CLUSTER_ID" ] || pids_with "RAYPLANE_CLUSTER_ID=$CLUSTER_ID"
    grep -lzF "$DATA/local-nodes/" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3 || true; } | sort -u)
  [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
  if [ "$status" -ne 0 ]; then
    echo "demo failed (exit $status); the end of the server log, .demo/serve.log:" >&2
    tail -n 20 .demo/serve.log >&2 || true
  fi
}
trap cleanup EXIT

step "start rayplaned serve (SQLite in .demo/data, TLS with a generated CA, the local driver)"
./bin/rayplaned serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" --log-level warn \
  --reconcile-interval 500ms --drain-timeout 5s >.demo/serve.out 2>.demo/serve.log &
SERVER=$!
for _ in $(seq 100); do
  grep -q 'serving https' .demo/serve.out 2>/dev/null && break
  kill -0 "$SERVER" 2>/dev/null || exit 1
  sleep 0.1
done
grep -q 'serving https' .demo/serve.out || { echo "rayplaned did not start" >&2; exit 1; }
cat .demo/serve.out

# Every verb reads these; the token stays in its file and is never printed.
export RAYPLANE_ENDPOINT=https://127.0.0.1:$PORT
export RAYPLANE_CA_CERT=$DATA/tls/ca.pem
export RAYPLANE_TOKEN_FILE=$DATA/admin-token
echo "RAYPLANE_ENDPOINT=$RAYPLANE_ENDPOINT RAYPLANE_CA_CERT=.demo/data/tls/ca.pem RAYPLANE_TOKEN_FILE=.demo/data/admin-token"

step "create a local cloud (nodes are agent processes on this machine, heartbeating every second)"
create clouds create --name laptop --provider local --max-nodes 10 --heartbeat-interval 1
CLOUD_ID=$ID

step "create a compute config (a head + a worker group of 2..4)"
create compute-configs create --name small --head-type local.small --worker-group name=cpu,type=local.small,min=2,max=4
CC_ID=$ID

step "create a cluster (1 head + 2 workers)"
RUNTIME=()
if command -v ray >/dev/null; then
  echo "ray is on PATH: the nodes run ray start"
else
  echo "ray is not on PATH: the nodes run a shell stand-in for it"
  RUNTIME=(--head-command 'echo ray head stand-in on {port}; exec sleep 3600'
    --worker-command 'echo ray worker stand-in joining {head_address}; exec sleep 3600')
fi
create clusters create --name demo --cloud "$CLOUD_ID" --compute-config "$CC_ID" "${RUNTIME[@]}" --idempotency-key demo-1
CLUSTER_ID=$ID

step "wait until it runs"
rp clusters wait "$CLUSTER_ID" --status RUNNING --timeout 60s

step "its nodes: every agent heartbeats"
sleep 2 # let a heartbeat or two land
rp nodes list "$CLUSTER_ID"

step "kill -9 one worker's agent"
VICTIM=$(./bin/rayplaned nodes list "$CLUSTER_ID" | awk '$2 == "cpu" && $3 == "RUNNING" { print $1; exit }')
PID=$(agent_pid "$VICTIM")
echo "worker $VICTIM: agent pid $PID"
kill -9 "$PID"
last= ok=
for _ in $(seq 120); do
  out=$(./bin/rayplaned nodes list "$CLUSTER_ID")
  victim=$(awk -v id="$VICTIM" '$1 == id { print $3 }' <<<"$out")
  running=$(awk 'NR > 1 && $3 == "RUNNING"' <<<"$out" | wc -l)
  line="killed worker $victim, $running/3 nodes running"
  [ "$line" = "$last" ] || { echo "$(date +%T) $line"; last=$line; }
  case $victim in LOST | TERMINATED) [ "$running" -eq 3 ] && ok=1 && break ;; esac
  sleep 0.5
done
[ -n "$ok" ] || { echo "the killed worker was not replaced in 60s" >&2; exit 1; }
rp nodes list "$CLUSTER_ID"

step "the cluster's events"
rp clusters events "$CLUSTER_ID"

step "the API by hand: a bad request names each bad field"
TOKEN=$(cat "$RAYPLANE_TOKEN_FILE")
curl -sS --cacert "$RAYPLANE_CA_CERT" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"name":"bad","head_node":{"instance_type":"local.small"},"worker_groups":[{"name":"w","instance_type":"local.small","min_nodes":3,"max_nodes":1}]}' \
  "$RAYPLANE_ENDPOINT/v1/compute-configs"

step "terminate the cluster"
rp clusters terminate "$CLUSTER_ID"
rp clusters wait "$CLUSTER_ID" --status TERMINATED --timeout 60s
LEFT=$(pids_with "RAYPLANE_CLUSTER_ID=$CLUSTER_ID" | wc -l)
echo "processes of cluster $CLUSTER_ID left: $LEFT"
[ "$LEFT" -eq 0 ]

step "graceful shutdown (SIGTERM)"
kill -TERM "$SERVER"
wait "$SERVER" && echo "rayplaned stopped cleanly"
SERVER=
echo "demo done in $((SECONDS - START))s"
