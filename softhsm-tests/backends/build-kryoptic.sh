#!/usr/bin/env bash
# Builds Kryoptic 1.5.4 (a Rust PKCS#11 soft token, crates.io only) once into a cache folder and prints the
# module's path. Run again, it reuses the cached module. Bookworm's OpenSSL is 3.0 and Kryoptic's default
# features need 3.2, so it is built with `minimal` and linked to the system libcrypto (kryoptic-lib/dynamic).
# Needs libssl-dev libsqlite3-dev pkg-config libclang-dev (setup.sh installs them).
# KEYRITE_KRYOPTIC_CACHE overrides the cache folder (default: ~/.cache/keyrite/kryoptic, shared by the
# checkouts of one machine; the version is pinned, so a cached module is the same build).
set -euo pipefail
cd "$(dirname "$0")/../.."
version=1.5.4
cache=${KEYRITE_KRYOPTIC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keyrite/kryoptic}
module="$cache/libkryoptic_pkcs11-$version.so"
if [ -f "$module" ]; then
  echo "$module"
  exit 0
fi
mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
# The crate source comes from crates.io through cargo itself: a throw-away manifest, cargo fetch, then the
# .crate file is unpacked from cargo's registry cache.
mkdir -p "$work/fetch/src"
printf '[package]\nname = "kryoptic-fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nkryoptic = "=%s"\n' \
  "$version" > "$work/fetch/Cargo.toml"
: > "$work/fetch/src/lib.rs"
cargo fetch --quiet --manifest-path "$work/fetch/Cargo.toml" >&2
crate=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/kryoptic-$version.crate | head -n 1)
tar xzf "$crate" -C "$work"
echo "build-kryoptic: building Kryoptic $version (about 2 minutes on 2 cores)" >&2
CARGO_TARGET_DIR="$work/target" cargo build --quiet --release --locked \
  --manifest-path "$work/kryoptic-$version/Cargo.toml" \
  --no-default-features --features minimal,kryoptic-lib/dynamic >&2
cp "$work/target/release/libkryoptic_pkcs11.so" "$module.tmp"
mv "$module.tmp" "$module"
echo "$module"
