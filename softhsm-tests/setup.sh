#!/usr/bin/env bash
# Installs what keyrite's rehearsals and tests need on Debian 12, idempotently:
# SoftHSM2 (the throw-away HSM), OpenSC (pkcs11-tool), p11-kit (the proxy module), OpenSSL, poppler,
# tmux, a Python venv with pkilint and jsonschema in .venv-pkilint, and the two other PKCS#11 backends the
# backends tests run on: tpm2-pkcs11 over swtpm (Debian packages) and Kryoptic (built from crates.io once,
# cached by softhsm-tests/backends/build-kryoptic.sh), and the post-quantum rig: Kryoptic with ML-DSA over
# OpenSSL 3.5.5, plus that OpenSSL's static `openssl` as the outside verifier (build-kryoptic-pqc.sh). Safe
# to run again; it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo was not found. Install Rust 1.88 or newer (rustup), then run this again." >&2
  exit 1
fi

# strace checks the order of fsyncs (softhsm_signatures). libengine-pkcs11-openssl (the libp11 engine) and
# time (GNU /usr/bin/time) are for softhsm-tests/baseline.sh
# and softhsm-tests/bench.sh.
packages=(softhsm2 opensc openssl p11-kit p11-kit-modules poppler-utils qpdf tmux libengine-pkcs11-openssl time strace)
# tpm2-pkcs11 over a software TPM behind the tpm2-abrmd resource manager (softhsm-tests/backends/tpm2.sh).
packages+=(swtpm tpm2-tools libtpm2-pkcs11-1 libtss2-tcti-swtpm0 tpm2-abrmd libtss2-tcti-tabrmd0 dbus)
# Kryoptic's build against the system OpenSSL 3.0 and SQLite; OpenSSL 3.5's build (make, perl, gcc).
packages+=(libssl-dev libsqlite3-dev pkg-config libclang-dev build-essential perl)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv-pkilint/bin/lint_cabf_serverauth_cert ]; then
  echo "setup: creating .venv-pkilint with pkilint"
  if ! python3 -m venv .venv-pkilint 2>/dev/null; then
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv .venv-pkilint
  fi
  .venv-pkilint/bin/pip install -q --disable-pip-version-check pkilint==0.13.3
fi
# jsonschema validates every report.json against docs/report.schema.json (draft 2020-12).
if ! .venv-pkilint/bin/python -c 'import jsonschema' 2>/dev/null; then
  echo "setup: adding jsonschema to .venv-pkilint"
  .venv-pkilint/bin/pip install -q --disable-pip-version-check jsonschema==4.26.0
fi

# Kryoptic 1.5.4 from crates.io, built once (about 2 minutes on 2 cores) and then reused from its cache.
bash softhsm-tests/backends/build-kryoptic.sh >/dev/null
# Kryoptic 1.5.4 with ML-DSA and OpenSSL 3.5.5 (crates.io sources), built once (about 4 minutes on 2 busy
# cores) into ~/.cache/keyrite/kryoptic-pqc/ and then reused: the post-quantum rehearsals and their verifier.
bash softhsm-tests/backends/build-kryoptic-pqc.sh >/dev/null
