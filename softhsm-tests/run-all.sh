#!/usr/bin/env bash
# The whole test suite: unit tests, engine scenarios, script goldens, and the SoftHSM2 integration
# tests, which check keyrite's outputs with openssl, pkilint, pkcs11-tool and sha256sum.
set -euo pipefail
cd "$(dirname "$0")/.."
bash softhsm-tests/setup.sh
# The SoftHSM tests fail (rather than skip) when an outside checker is missing.
export KEYRITE_REQUIRE_EXTERNAL=1
export KEYRITE_PKILINT="$PWD/.venv-pkilint/bin/lint_cabf_serverauth_cert"
# A Python with jsonschema, for validating report.json against docs/report.schema.json.
export KEYRITE_JSONSCHEMA_PYTHON="$PWD/.venv-pkilint/bin/python"
# The post-quantum rig setup.sh built (cached): softhsm-tests/mldsa.rs rehearses on it and verifies with it.
{ read -r pqc_module; read -r pqc_openssl; } < <(bash softhsm-tests/backends/build-kryoptic-pqc.sh)
export KEYRITE_KRYOPTIC_PQC_MODULE="$pqc_module" KEYRITE_OPENSSL_35="$pqc_openssl"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "==> building and running the test suite (the first build takes several minutes)"
cargo test --locked "$@" 2>&1 | tee "$log"
# One closing line over all test binaries.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
