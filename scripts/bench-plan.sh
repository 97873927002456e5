#!/usr/bin/env bash
# make bench-plan: the wall time of `$TF plan` for 50 rayplane clusters
# against the wall time of `$TF plan` for 50 terraform_data resources, in
# the same run on the same machine.
#
# It starts rayplaned on a fresh data directory (.bench/, SQLite, the local
# driver), applies 1 cloud, 1 head-only compute config and 50 clusters whose
# head runs a stand-in for Ray (`sleep`), so 50 agents heartbeat while the
# plans run, then times RUNS plans of each configuration (both against
# existing state, so both refresh 50 objects) and prints the medians and
# their ratio. Every plan must find no changes. Then it destroys the
# clusters, checks that no node process is left and stops the server.
#
#   make bench-plan                          # what the README's figures come from
#   BENCH_DESIRED_STATE=terminated make bench-plan   # 50 records, no processes
#
# Environment: TF (tofu or terraform), BENCH_CLUSTERS (50), BENCH_RUNS (3),
# BENCH_DESIRED_STATE (running), RAYPLANE_BENCH_PORT (18444).
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT=$PWD
TF=${TF:-tofu}
N=${BENCH_CLUSTERS:-50}
RUNS=${BENCH_RUNS:-3}
DESIRED=${BENCH_DESIRED_STATE:-running}
PORT=${RAYPLANE_BENCH_PORT:-18444}
B=$ROOT/.bench
DATA=$B/data
rm -rf "$B" && mkdir -p "$B"

# node_pids: processes of the bench's nodes: agents (their command lines
# name their work directories under $DATA-local/nodes, the local root beside
# the data directory) and runtimes (they run in those directories).
node_pids() {
  local d
  for d in /proc/[0-9]*; do
    if grep -qzF "$DATA-local/nodes/" "$d/cmdline" 2>/dev/null; then
      echo "${d#/proc/}"
      continue
    fi
    case $(readlink "$d/cwd" 2>/dev/null || true) in "$DATA-local"/*) echo "${d#/proc/}" ;; esac
  done
}

SERVER=
cleanup() {
  local status=$?
  set +e
  if [ -n "$SERVER" ] && kill -0 "$SERVER" 2>/dev/null; then
    kill -TERM "$SERVER"
    wait "$SERVER" || true
  fi
  # Agents outlive the control plane by design: kill what is left of them.
  local pids
  pids=$(node_pids | sort -u)
  [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
  if [ "$status" -ne 0 ]; then
    echo "bench-plan failed (exit $status); the end of the server log, .bench/serve.log:" >&2
    tail -n 20 "$B/serve.log" >&2 || true
  fi
}
trap cleanup EXIT

./bin/rayplaned serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" --log-level warn \
  --drain-timeout 5s >"$B/serve.out" 2>"$B/serve.log" &
SERVER=$!
for _ in $(seq 100); do
  grep -q 'serving https' "$B/serve.out" 2>/dev/null && break
  kill -0 "$SERVER" 2>/dev/null || exit 1
  sleep 0.1
done
grep -q 'serving https' "$B/serve.out" || { echo "rayplaned did not start" >&2; exit 1; }

export RAYPLANE_ENDPOINT=https://127.0.0.1:$PORT RAYPLANE_CA_CERT=$DATA/tls/ca.pem
RAYPLANE_TOKEN=$(cat "$DATA/admin-token")
export RAYPLANE_TOKEN
scripts/tfrc.sh "$ROOT/bin" >"$B/tfrc"
export TF_CLI_CONFIG_FILE=$B/tfrc TF_IN_AUTOMATION=1

mkdir "$B/clusters" "$B/terraform_data"
cat >"$B/clusters/main.tf" <<TF
terraform {
  required_providers {
    rayplane = { source = "rayplane/rayplane" }
  }
}

provider "rayplane" {}

resource "rayplane_cloud" "bench" {
  name           = "bench"
  cloud_provider = "local"
}

resource "rayplane_compute_config" "head_only" {
  name      = "head-only"
  head_node = { instance_type = "local.small" }
}

resource "rayplane_cluster" "bench" {
  count             = $N
  name              = "bench-\${count.index}"
  cloud_id          = rayplane_cloud.bench.id
  compute_config_id = rayplane_compute_config.head_only.id
  desired_state     = "$DESIRED"
  runtime = {
    head_command = ["sh", "-c", "exec sleep 3600"]
  }
}
TF
cat >"$B/terraform_data/main.tf" <<TF
resource "terraform_data" "bench" {
  count = $N
  input = count.index
}
TF

# now: seconds since the epoch, to the microsecond.
now() { echo "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# run DIR LOG ARGS...: $TF in DIR, output to LOG; the whole log on failure.
run() {
  local dir=$1 log=$2
  shift 2
  if ! "$TF" -chdir="$dir" "$@" -input=false -no-color -compact-warnings >"$log" 2>&1; then
    echo "$TF $* in $dir failed:" >&2
    tail -n 40 "$log" >&2
    return 1
  fi
}

echo "bench-plan: $(basename "$TF") $("$TF" version | awk 'NR == 1 { print $2 }'), $(nproc) cores;" \
  "$N clusters with desired_state = \"$DESIRED\", $N terraform_data resources, $RUNS plans each"

t0=$(now)
run "$B/clusters" "$B/apply-clusters.log" apply -auto-approve
t1=$(now)
run "$B/terraform_data" "$B/apply-terraform_data.log" apply -auto-approve
echo "apply: $N clusters $(elapsed "$t0" "$t1")s; node processes running: $(node_pids | sort -u | wc -l)"

cl=() td=()
for i in $(seq "$RUNS"); do
  t0=$(now)
  run "$B/clusters" "$B/plan-clusters-$i.log" plan -detailed-exitcode
  t1=$(now)
  run "$B/terraform_data" "$B/plan-terraform_data-$i.log" plan -detailed-exitcode
  t2=$(now)
  cl+=("$(elapsed "$t0" "$t1")") td+=("$(elapsed "$t1" "$t2")")
  echo "plan $i: $N clusters ${cl[-1]}s, $N terraform_data ${td[-1]}s"
done
mc=$(median "${cl[@]}") mt=$(median "${td[@]}")
echo "median plan: $N clusters ${mc}s, $N terraform_data ${mt}s, ratio $(awk -v a="$mc" -v b="$mt" 'BEGIN { printf "%.1f", a / b }')x"

t0=$(now)
run "$B/clusters" "$B/destroy-clusters.log" destroy -auto-approve
t1=$(now)
left=$(node_pids | sort -u | wc -l)
echo "destroy: $N clusters $(elapsed "$t0" "$t1")s; node processes left: $left"
[ "$left" -eq 0 ]

kill -TERM "$SERVER"
wait "$SERVER"
SERVER=
