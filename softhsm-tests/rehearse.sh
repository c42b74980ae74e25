#!/usr/bin/env bash
# A full rehearsal of the shipped root ceremony (RSA-4096) on throw-away SoftHSM2 tokens, confirmed
# automatically as the script's participants, followed by an offline check of the evidence.
# Usage: bash softhsm-tests/rehearse.sh [SCRIPT] [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
bash softhsm-tests/setup.sh
script="${1:-ceremony-scripts/root-ca.toml}"
out="${2:-rehearsal-out-$(date -u +%Y%m%dT%H%M%SZ)}"
cargo build --locked --quiet
target/debug/keyrite check "$script"
target/debug/keyrite rehearse "$script" --auto --out "$out"
target/debug/keyrite verify "$out"
echo "rehearsal evidence: $out"
