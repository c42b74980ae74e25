#!/usr/bin/env bash
# Builds the post-quantum rig once into a cache folder and prints two paths, one a line:
#   1. Kryoptic 1.5.4 with ML-DSA (`--features standard,pqc,ossl/ossl-sys`), OpenSSL 3.5.5 linked in statically;
#   2. a static `openssl` 3.5.5 command, the outside verifier of ML-DSA certificates, CRLs and signatures.
# Run again, it reuses the cache and takes well under a second.
# Kryoptic's pqc feature needs OpenSSL >= 3.5 and bookworm has 3.0, so the OpenSSL source comes from the
# `openssl-src` crate (=300.5.5+3.5.5, crates.io, through cargo itself). It is configured by hand with
# `no-shared no-module no-legacy` plus the options of Kryoptic's own ossl-sys build.rs: when ossl-sys configures
# the crate's tree itself it fails on the missing util/providers.num. The resulting module exports only the
# PKCS#11 entry points, so it does not clash with the system OpenSSL 3.0 that keyrite's process may load.
# Needs build-essential perl libclang-dev libsqlite3-dev (setup.sh installs them). About 2.5 min on 2 cores.
# KEYRITE_KRYOPTIC_PQC_CACHE overrides the cache folder (default ~/.cache/keyrite/kryoptic-pqc, shared by the
# checkouts of one machine; both versions are pinned, so a cached build is the same build).
set -euo pipefail
cd "$(dirname "$0")/../.."
kryoptic=1.5.4
openssl_crate=300.5.5+3.5.5
openssl_version=3.5.5
cache=${KEYRITE_KRYOPTIC_PQC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keyrite/kryoptic-pqc}
module="$cache/libkryoptic_pkcs11-$kryoptic-pqc-openssl-$openssl_version.so"
openssl="$cache/openssl-$openssl_version"
if [ -f "$module" ] && [ -x "$openssl" ]; then
  printf '%s\n%s\n' "$module" "$openssl"
  exit 0
fi
mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
# Both sources come from crates.io through cargo: a throw-away manifest, cargo fetch, then the .crate files are
# unpacked from cargo's registry cache.
mkdir -p "$work/fetch/src"
printf '[package]\nname = "kryoptic-pqc-fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nkryoptic = "=%s"\nopenssl-src = "=%s"\n' \
  "$kryoptic" "$openssl_crate" > "$work/fetch/Cargo.toml"
: > "$work/fetch/src/lib.rs"
cargo fetch --quiet --manifest-path "$work/fetch/Cargo.toml" >&2
registry="${CARGO_HOME:-$HOME/.cargo}/registry/cache"
tar xzf "$(ls "$registry"/*/kryoptic-$kryoptic.crate | head -n 1)" -C "$work"
tar xzf "$(ls "$registry"/*/openssl-src-$openssl_crate.crate | head -n 1)" -C "$work"
tree="$work/openssl-src-$openssl_crate/openssl"

echo "build-kryoptic-pqc: building OpenSSL $openssl_version (static) and Kryoptic $kryoptic with pqc (about 2.5 minutes on 2 cores)" >&2
# ossl-sys build.rs's options for x86_64/aarch64 release builds, plus no-shared/no-module/no-legacy. The
# backslashes stay in the argument, as ossl-sys passes it: make's shell turns them into the C string quotes.
(cd "$tree" && ./Configure no-shared no-module no-legacy \
  no-deprecated no-aria no-argon2 no-atexit no-des no-dsa no-cast no-mdc2 no-ec2m no-rc2 no-rc4 no-rc5 \
  no-rmd160 no-seed no-sm2 no-sm3 no-sm4 no-docs no-tests enable-ec_nistp_64_gcc_128 \
  '-DDEVRANDOM=\"/dev/urandom\"' >"$work/configure.log" 2>&1) || { tail -n 30 "$work/configure.log" >&2; exit 1; }
make -C "$tree" -s -j2 >/dev/null 2>"$work/make.log" || { tail -n 30 "$work/make.log" >&2; exit 1; }
"$tree/apps/openssl" version >&2

# ossl-sys finds libcrypto.a already built in the tree and only generates its bindings.
KRYOPTIC_OPENSSL_SOURCES="$tree" CARGO_TARGET_DIR="$work/target" cargo build --quiet --release --locked \
  --manifest-path "$work/kryoptic-$kryoptic/Cargo.toml" \
  --no-default-features --features standard,pqc,ossl/ossl-sys >&2
cp "$tree/apps/openssl" "$openssl.tmp"
cp "$work/target/release/libkryoptic_pkcs11.so" "$module.tmp"
mv "$openssl.tmp" "$openssl"
mv "$module.tmp" "$module"
echo "build-kryoptic-pqc: built in $(( $(date +%s) - start )) s" >&2
printf '%s\n%s\n' "$module" "$openssl"
