#!/usr/bin/env bash
# scripts/tfrc.sh PROVIDER_DIR: print a Terraform/OpenTofu CLI configuration
# whose dev_overrides make rayplane/rayplane the provider binary in
# PROVIDER_DIR (terraform-provider-rayplane, from `make build`). With it,
# validate, plan and apply use that binary without `init` and without
# network; Terraform and OpenTofu each read the entry for their registry.
# Use it as TF_CLI_CONFIG_FILE.
set -euo pipefail
dir=$(cd "${1:?usage: scripts/tfrc.sh PROVIDER_DIR}" && pwd)
[ -x "$dir/terraform-provider-rayplane" ] || {
  echo "scripts/tfrc.sh: no $dir/terraform-provider-rayplane (run make build)" >&2
  exit 1
}
cat <<CFG
provider_installation {
  dev_overrides {
    "registry.opentofu.org/rayplane/rayplane" = "$dir"
    "registry.terraform.io/rayplane/rayplane" = "$dir"
  }
  direct {}
}
CFG
