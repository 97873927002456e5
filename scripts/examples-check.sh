#!/usr/bin/env bash
# scripts/examples-check.sh: every example under examples/ is formatted
# (`$TF fmt -check`) and valid (`$TF validate`) against the provider binary
# in bin/ (make build). A CLI configuration of its own with dev_overrides
# means no `init` and no network. Each directory is validated in a scratch
# copy so that nothing is written into examples/. The resource and data
# source examples are fragments for the docs: the copy gets a terraform
# block naming rayplane/rayplane when it has none, and, when it refers to
# rayplane_cloud.laptop or rayplane_cloud.aws, the rayplane_cloud example
# that declares them (the acceptance tests combine them the same way).
#
# examples/aws, examples/gcp and examples/kubernetes are checked for
# formatting only: they need hashicorp/aws, hashicorp/google and
# hashicorp/kubernetes, which `validate` must install from a registry, and
# this check runs without a network. Their rayplane parts are the same
# resources the acceptance tests apply; the "Run on AWS", "Run on GCP" and
# "Run on Kubernetes" guides render them from the same files.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT=$PWD
TF=${TF:-tofu}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
scripts/tfrc.sh "$ROOT/bin" >"$WORK/tfrc"
export TF_CLI_CONFIG_FILE=$WORK/tfrc TF_IN_AUTOMATION=1

if ! "$TF" fmt -check -recursive -diff examples; then
  echo "examples-check: the files above are not formatted; run: $TF fmt -recursive examples" >&2
  exit 1
fi

failed=()
n=0
while IFS= read -r dir; do
  n=$((n + 1))
  copy=$WORK/validate/$dir
  mkdir -p "$copy"
  cp "$dir"/*.tf "$copy/"
  if ! grep -q required_providers "$copy"/*.tf; then
    cat >"$copy/zz_required_providers.tf" <<'TF'
terraform {
  required_providers {
    rayplane = { source = "rayplane/rayplane" }
  }
}
TF
  fi
  if grep -Eq 'rayplane_cloud\.(laptop|aws)\.' "$copy"/*.tf && ! grep -q 'resource "rayplane_cloud"' "$copy"/*.tf; then
    cp examples/resources/rayplane_cloud/resource.tf "$copy/zz_rayplane_cloud_example.tf"
  fi
  if ! out=$("$TF" -chdir="$copy" validate -no-color 2>&1); then
    echo "$out" | sed "s#^#$dir: #" >&2
    failed+=("$dir")
  fi
done < <(find examples -name '*.tf' -not -path 'examples/aws/*' -not -path 'examples/gcp/*' -not -path 'examples/kubernetes/*' -printf '%h\n' | sort -u)

if [ ${#failed[@]} -gt 0 ]; then
  echo "examples-check: $TF validate failed in: ${failed[*]}" >&2
  exit 1
fi
echo "examples-check: $n example directories formatted and valid; examples/aws, examples/gcp and examples/kubernetes formatted (validate needs hashicorp/aws, hashicorp/google and hashicorp/kubernetes from a registry)"
