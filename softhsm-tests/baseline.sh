#!/usr/bin/env bash
# The manual path a team would script without keyrite, for the performance comparison (issue 15, B1):
# on a private SoftHSM2 token, one process per step, each loading the PKCS#11 module again:
#   init a token (softhsm2-util), generate a P-256 key (pkcs11-tool), self-sign a root with
#   `openssl req -x509` through the libp11 engine (loaded only through OPENSSL_CONF), `openssl verify` it.
# Usage: softhsm-tests/baseline.sh [WORKDIR]   (WORKDIR must not exist or be empty; default: a temp dir)
# Prints "baseline: ok" and leaves root.pem in WORKDIR; exits non-zero if any step fails.
set -euo pipefail
module=/usr/lib/softhsm/libsofthsm2.so
engine=/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so
for need in softhsm2-util pkcs11-tool openssl; do
  command -v "$need" >/dev/null || { echo "baseline: $need is missing; run softhsm-tests/setup.sh" >&2; exit 1; }
done
[ -f "$engine" ] || { echo "baseline: $engine is missing; run softhsm-tests/setup.sh (libengine-pkcs11-openssl)" >&2; exit 1; }

work=${1:-$(mktemp -d)}
mkdir -p "$work/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$work" >"$work/softhsm2.conf"
export SOFTHSM2_CONF=$work/softhsm2.conf
# The engine comes in through OPENSSL_CONF only, as an operator would configure it.
cat >"$work/openssl.cnf" <<CNF
openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = $engine
MODULE_PATH = $module
init = 0
[req]
distinguished_name = dn
prompt = no
x509_extensions = root_ext
[dn]
C = DE
O = Baseline Trust Services
CN = Baseline Root CA P-256
[root_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
CNF

softhsm2-util --init-token --free --label baseline-hsm --so-pin 12345678 --pin 1234 >/dev/null
pkcs11-tool --module "$module" --token-label baseline-hsm --login --pin 1234 \
  --keypairgen --key-type EC:prime256v1 --label baseline-root --id 01 >/dev/null
OPENSSL_CONF=$work/openssl.cnf openssl req -x509 -new -engine pkcs11 -keyform engine \
  -key "pkcs11:token=baseline-hsm;object=baseline-root;type=private;pin-value=1234" \
  -sha256 -days 9131 -set_serial 1 -out "$work/root.pem" 2>"$work/req.err" ||
  { cat "$work/req.err" >&2; exit 1; }
openssl verify -x509_strict -CAfile "$work/root.pem" "$work/root.pem" >/dev/null
echo "baseline: ok"
