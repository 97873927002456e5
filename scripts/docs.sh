#!/usr/bin/env bash
# scripts/docs.sh [--check]: render the provider documentation with
# tfplugindocs from templates/, examples/ and the schema of the provider
# binary in bin/ (make build), without network: the schema comes from
# `$TF providers schema -json` under dev_overrides, not from a registry.
#
# tfplugindocs renders into a scratch copy; only what it generates
# (docs/index.md, docs/resources/, docs/data-sources/,
# docs/ephemeral-resources/, docs/guides/) is
# copied into docs/, so docs/DESIGN.md and anything else there is left
# alone. With --check,
# nothing is written: the rendering is compared with docs/ and the script
# fails naming every file that differs.
#
# Environment: TF (tofu or terraform), TFPLUGINDOCS (the tfplugindocs
# binary); the GNUmakefile's docs and docs-check targets set both.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT=$PWD
TF=${TF:-tofu}
TFPLUGINDOCS=${TFPLUGINDOCS:-$ROOT/bin/tfplugindocs}
CHECK=
case ${1:-} in
--check) CHECK=1 ;;
"") ;;
*) echo "usage: scripts/docs.sh [--check]" >&2; exit 2 ;;
esac
# What tfplugindocs owns in docs/.
GENERATED=(index.md resources data-sources ephemeral-resources guides)

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The provider's schema, from the freshly built binary.
scripts/tfrc.sh "$ROOT/bin" >"$WORK/tfrc"
mkdir "$WORK/schema"
cat >"$WORK/schema/main.tf" <<'TF'
terraform {
  required_providers {
    rayplane = { source = "rayplane/rayplane" }
  }
}
TF
if ! TF_CLI_CONFIG_FILE=$WORK/tfrc "$TF" -chdir="$WORK/schema" providers schema -json \
  >"$WORK/schema.json" 2>"$WORK/schema.err"; then
  echo "docs: $TF providers schema failed:" >&2
  cat "$WORK/schema.err" >&2
  exit 1
fi
# tfplugindocs looks the provider up as "rayplane" (or as
# registry.terraform.io/hashicorp/rayplane), not by its real address.
sed -E -i 's#"registry\.(opentofu\.org|terraform\.io)/rayplane/rayplane":#"rayplane":#' "$WORK/schema.json"
grep -q '"rayplane":{' "$WORK/schema.json" || {
  echo "docs: no rayplane provider in the output of $TF providers schema -json" >&2
  exit 1
}

# Render in a scratch provider directory holding copies of the inputs.
mkdir "$WORK/site"
cp -R templates examples "$WORK/site/"
if ! "$TFPLUGINDOCS" generate --provider-dir "$WORK/site" --provider-name rayplane \
  --providers-schema "$WORK/schema.json" >"$WORK/generate.log" 2>&1; then
  echo "docs: tfplugindocs generate failed:" >&2
  cat "$WORK/generate.log" >&2
  exit 1
fi
OUT=$WORK/site/docs

if [ -z "$CHECK" ]; then
  mkdir -p docs
  for f in "${GENERATED[@]}"; do
    rm -rf "docs/$f"
    cp -R "$OUT/$f" "docs/$f"
  done
  echo "docs: rendered docs/index.md, docs/resources/, docs/data-sources/, docs/ephemeral-resources/, docs/guides/"
  exit 0
fi

# --check: every generated file must be in docs/ as rendered, and docs/
# must hold no generated-looking file that is no longer rendered.
stale=()
while IFS= read -r f; do
  cmp -s "$OUT/$f" "docs/$f" || stale+=("docs/$f")
done < <(cd "$OUT" && find "${GENERATED[@]}" -type f | sort)
while IFS= read -r f; do
  [ -e "$OUT/$f" ] || stale+=("docs/$f (no longer generated)")
done < <(cd docs && find "${GENERATED[@]}" -type f 2>/dev/null | sort)
if [ ${#stale[@]} -gt 0 ]; then
  echo "docs-check: docs/ is out of date with the provider's schema, templates/ or examples/:" >&2
  printf '  %s\n' "${stale[@]}" >&2
  for f in "${GENERATED[@]}"; do
    diff -ruN "docs/$f" "$OUT/$f" || true
  done | head -n 80 >&2 || true
  echo "docs-check: run 'make docs' and commit the result." >&2
  exit 1
fi
echo "docs-check: docs/ is up to date"
