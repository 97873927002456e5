#!/usr/bin/env bash
# make demo: the user's path. Start rayplaned on a fresh data directory
# (SQLite, the local driver: nodes are processes on this machine), apply
# examples/quickstart with $TF and the provider just built, check that a
# second plan has nothing to do, submit a job straight to the cluster's
# head with a short-lived access token and show its output, kill a
# worker's agent with SIGKILL and watch the control plane replace it,
# destroy, and show that no process of the cluster is left. On any failure the trap stops the server and kills
# whatever the demo started.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT=$PWD
TF=${TF:-tofu}
TF_NAME=$(basename "$TF")
NO_COLOR=()
[ -t 1 ] || NO_COLOR=(-no-color)
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
# tf shows a $TF command in the quick start's copy, then runs it. Every
# command would repeat the dev_overrides warning; -compact-warnings keeps
# it to a line where the command has that flag.
tf() {
  printf '\033[2m$ %s %s\033[0m\n' "$TF_NAME" "$*"
  local flags=()
  case $1 in apply | plan | destroy) flags=(-compact-warnings "${NO_COLOR[@]}") ;; esac
  "$TF" -chdir=.demo/quickstart "$1" "${flags[@]}" "${@:2}"
}
# plan_no_changes runs a plan that must find nothing to do: exit code 2
# (changes) fails the demo, as a perpetual diff is a bug.
plan_no_changes() {
  local rc=0
  tf plan -detailed-exitcode || rc=$?
  case $rc in
  0) echo "no changes: the configuration and the control plane agree" ;;
  2) echo "the plan wants changes where there should be none" >&2; return 1 ;;
  *) return "$rc" ;;
  esac
}
# tf_quiet runs a $TF command for its output only.
tf_quiet() { "$TF" -chdir=.demo/quickstart "$@" 2>/dev/null; }
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
  # work directories under the demo's local root (beside the data directory).
  local pids
  pids=$({ [ -z "$CLUSTER_ID" ] || pids_with "RAYPLANE_CLUSTER_ID=$CLUSTER_ID"
    grep -lzF "$DATA-local/nodes/" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3 || true; } | sort -u)
  [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
  if [ "$status" -ne 0 ]; then
    echo "demo failed (exit $status); the end of the server log, .demo/serve.log:" >&2
    tail -n 20 .demo/serve.log >&2 || true
  fi
}
trap cleanup EXIT

# The quick start's nodes run `rayplaned dev-ray` (the stand-in for Ray):
# local nodes inherit the control plane's PATH.
export PATH=$ROOT/bin:$PATH

step "start rayplaned serve (SQLite in .demo/data, TLS with a generated CA, the local driver's nodes in .demo/data-local)"
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

# The provider and the CLI read these. The token stays in its file and
# the environment, and is never printed.
export RAYPLANE_ENDPOINT=https://127.0.0.1:$PORT
export RAYPLANE_CA_CERT=$DATA/tls/ca.pem
export RAYPLANE_TOKEN_FILE=$DATA/admin-token
RAYPLANE_TOKEN=$(cat "$RAYPLANE_TOKEN_FILE")
export RAYPLANE_TOKEN
echo "RAYPLANE_ENDPOINT=$RAYPLANE_ENDPOINT RAYPLANE_CA_CERT=.demo/data/tls/ca.pem RAYPLANE_TOKEN=\$(cat .demo/data/admin-token)"
echo "web console, while the demo runs: $RAYPLANE_ENDPOINT/ui/ (the certificate is signed by .demo/data/tls/ca.pem; trust it or accept the warning)"
echo "  sign in by pasting the admin token: copy it with \`cat .demo/data/admin-token\` (it is not printed here);"
echo "  the console keeps it in the server's memory only, for one session"

step "$TF_NAME with the provider just built (dev_overrides in .demo/tofurc: no init, no registry)"
scripts/tfrc.sh "$ROOT/bin" >.demo/tofurc
export TF_CLI_CONFIG_FILE=$ROOT/.demo/tofurc TF_IN_AUTOMATION=1
cat .demo/tofurc
# The quick start is applied from a copy, so its state stays in .demo/.
cp -R examples/quickstart .demo/quickstart
"$TF" version | awk 'NR == 1'

step "apply examples/quickstart: a local cloud, a compute config, a cluster of a head and 2 workers"
tf apply -auto-approve
CLUSTER_ID=$(tf_quiet output -raw cluster_id)
echo
echo "cluster $CLUSTER_ID: status $(tf_quiet output -raw status), $(tf_quiet output -raw nodes_running) nodes running," \
  "head at $(tf_quiet output -raw head_address)"

step "plan again: nothing to change"
plan_no_changes

step "a job, straight to the head: an access token with the scopes it needs, Ray's Jobs REST API over TLS"
# The head's proxy serves once the control plane has certified its key;
# until then the token route answers 409.
for _ in $(seq 120); do
  ./bin/rayplaned clusters get "$CLUSTER_ID" --json | grep -q '"head_access_url"' && break
  sleep 0.5
done
rp jobs submit --cluster "$CLUSTER_ID" --submission-id demo-1 --env GREETING=hello --wait -- \
  'echo "$GREETING from the quickstart cluster"; for i in 1 2 3; do echo "step $i"; sleep 0.3; done'
rp jobs list --cluster "$CLUSTER_ID"
echo "its log is in the cloud's storage location, never in the control plane:"
ls .demo/data-local/storage/*/*/"$CLUSTER_ID"/jobs/demo-1/driver.log

step "its nodes: every agent heartbeats"
rp nodes list "$CLUSTER_ID"

step "kill -9 one worker's agent: the control plane replaces it, Terraform has nothing to do"
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
rp clusters wait "$CLUSTER_ID" --timeout 60s   # ready again: head and every minimum serving
rp nodes list "$CLUSTER_ID"
plan_no_changes

step "the cluster's events"
rp clusters events "$CLUSTER_ID"

step "destroy"
tf destroy -auto-approve
LEFT=$(pids_with "RAYPLANE_CLUSTER_ID=$CLUSTER_ID" | wc -l)
echo "processes of cluster $CLUSTER_ID left: $LEFT"
[ "$LEFT" -eq 0 ]

step "graceful shutdown (SIGTERM)"
kill -TERM "$SERVER"
wait "$SERVER" && echo "rayplaned stopped cleanly"
SERVER=
echo "demo done in $((SECONDS - START))s"
