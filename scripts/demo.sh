#!/usr/bin/env bash
# make demo: start rayplaned on a fresh data directory and walk the API with
# curl, exactly as the README's quick start does by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=.demo/data
PORT=${RAYPLANE_DEMO_PORT:-18443}
rm -rf .demo && mkdir -p .demo

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "start rayplaned serve (SQLite in $DATA, TLS with a generated CA)"
./bin/rayplaned serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" --log-level warn >.demo/serve.out 2>.demo/serve.log &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  grep -q 'serving https' .demo/serve.out 2>/dev/null && break
  kill -0 $SERVER 2>/dev/null || { cat .demo/serve.log; exit 1; }
  sleep 0.1
done
cat .demo/serve.out

ENDPOINT=https://127.0.0.1:$PORT
CA=$DATA/tls/ca.pem
TOKEN=$(cat "$DATA/admin-token")
api() { # api METHOD PATH [JSON [curl options...]]
  local args=(-sS --fail-with-body --cacert "$CA" -H "Authorization: Bearer $TOKEN" -X "$1" "$ENDPOINT$2")
  [ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' -d "$3")
  curl "${args[@]}" "${@:4}"
}
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); [d:=d[k] for k in sys.argv[1:]]; print(d)' "$@"; }

step "readiness"
curl -sS --cacert "$CA" "$ENDPOINT/readyz"

step "create an organization (the answer carries its admin token, shown once)"
ORG=$(api POST /v1/orgs '{"name":"acme"}')
echo "$ORG" | field organization
TOKEN=$(echo "$ORG" | field admin_token secret)
echo "acme admin token: $(echo "$ORG" | field admin_token prefix) (secret not printed)"

step "create a cloud (local driver: nodes are processes on this machine)"
CLOUD=$(api POST /v1/clouds '{"name":"laptop","provider":"local","quotas":{"max_nodes":10}}')
echo "$CLOUD"
CLOUD_ID=$(echo "$CLOUD" | field id)

step "create a compute config (1 head + a worker group of 2..4)"
CC=$(api POST /v1/compute-configs '{"name":"small","head_node":{"instance_type":"local.medium"},
  "worker_groups":[{"name":"cpu","instance_type":"local.small","min_nodes":2,"max_nodes":4}]}')
echo "$CC"
CC_ID=$(echo "$CC" | field id)

step "create a cluster (with an Idempotency-Key, so a retry cannot make two)"
BODY="{\"name\":\"demo\",\"cloud_id\":\"$CLOUD_ID\",\"compute_config_id\":\"$CC_ID\"}"
CLUSTER=$(api POST /v1/clusters "$BODY" -H 'Idempotency-Key: demo-1')
echo "$CLUSTER"
echo "retry with the same key answers the same cluster:"
api POST /v1/clusters "$BODY" -H 'Idempotency-Key: demo-1' -D - -o /dev/null | grep -i idempotent-replayed
[ "$(api POST /v1/clusters "$BODY" -H 'Idempotency-Key: demo-1' | field id)" = "$(echo "$CLUSTER" | field id)" ] && echo "same id: $(echo "$CLUSTER" | field id)"

step "list clusters"
api GET /v1/clusters

step "a bad request names each bad field"
curl -sS --cacert "$CA" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"name":"bad","head_node":{"instance_type":"local.small"},"worker_groups":[{"name":"w","instance_type":"local.small","min_nodes":3,"max_nodes":1}]}' \
  "$ENDPOINT/v1/compute-configs"

step "audit log (newest first)"
api GET '/v1/audit-events?limit=5' | python3 -c 'import json,sys; [print(e["time"], e["action"], e.get("target_id",""), e["result"]) for e in json.load(sys.stdin)["items"]]'

step "graceful shutdown (SIGTERM)"
kill -TERM $SERVER
wait $SERVER && echo "rayplaned stopped cleanly"
trap - EXIT
