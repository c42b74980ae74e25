#!/usr/bin/env bash
# A full rehearsal of the shipped root ceremony (RSA-4096, with a 2-of-4 custodian split) on throw-away SoftHSM2 tokens, confirmed
# automatically as the script's participants, followed by an offline check of the evidence.
# Usage: bash softhsm-tests/rehearse.sh [SCRIPT] [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
bash softhsm-tests/setup.sh
script="${1:-ceremony-scripts/root-ca.toml}"
out="${2:-rehearsal-out-$(date -u +%Y%m%dT%H%M%SZ)}"
echo "==> building keyrite (the first build compiles every dependency and takes several minutes)"
cargo build --locked
echo "==> checking the script $script"
target/debug/keyrite check "$script"
echo "==> rehearsing it on throw-away SoftHSM2 tokens"
target/debug/keyrite rehearse "$script" --auto --out "$out"
echo "==> verifying the evidence bundle"
target/debug/keyrite verify "$out"
# The report signatures, checked by openssl alone against the bundle's (rehearsal) signers CA.
for doc in report.json report.pdf; do
  for p7s in "$out"/signatures/*."$doc".p7s; do
    [ -e "$p7s" ] || continue
    openssl cms -verify -binary -inform DER -in "$p7s" -content "$out/$doc" \
      -CAfile "$out/signatures/signers-ca.pem" -purpose any -out /dev/null
  done
done
bundle="$(cd "$out" && pwd)"
echo
echo "rehearsal evidence bundle: $bundle"
echo "the report for people:     $bundle/report.pdf"
echo "check it again any time:   target/debug/keyrite verify $bundle"
echo "put keyrite on your PATH:  cargo install --locked --path .   (or use $PWD/target/debug/keyrite)"
