#!/usr/bin/env bash
# A full rehearsal of the shipped root ceremony (RSA-4096, with a 2-of-4 custodian split) on throw-away SoftHSM2 tokens, confirmed
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
# The report signatures, checked by openssl alone against the bundle's (rehearsal) signers CA.
for doc in report.json report.pdf; do
  for p7s in "$out"/signatures/*."$doc".p7s; do
    [ -e "$p7s" ] || continue
    openssl cms -verify -binary -inform DER -in "$p7s" -content "$out/$doc" \
      -CAfile "$out/signatures/signers-ca.pem" -purpose any -out /dev/null
  done
done
echo "rehearsal evidence: $out"
