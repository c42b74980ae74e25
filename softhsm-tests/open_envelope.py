#!/usr/bin/env python3
"""Open a keyrite share envelope without keyrite (test oracle for softhsm-tests/card_keys.rs).

Usage: open_envelope.py ENVELOPE Z_FILE
Z_FILE is the ECDH shared secret x(d*E) that the card computed (pkcs11-tool --derive -m ECDH1-DERIVE
with the envelope's ephemeral point). HKDF-SHA256 and AES-256-GCM come from pyca/cryptography, as
docs/evidence-format.md ("Sealed shares") describes them. Prints the plaintext (the share encoding) in
hex; exits 1 if the AEAD refuses.
"""
import hashlib
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SALT = b"keyrite/quorum/v1/sealed-share"


def header_end(b: bytes) -> int:
    assert b[:4] == b"KRSE" and b[4] == 1 and b[5] == 1, "not a format-1 envelope"
    at = 6 + 65 + 32
    for _ in range(2):  # card label, card serial
        at += 1 + b[at]
    at += 2  # share index
    c_len = int.from_bytes(b[at:at + 2], "big")
    return at + 2 + c_len


def main() -> int:
    env = open(sys.argv[1], "rb").read()
    z = open(sys.argv[2], "rb").read()
    end = header_end(env)
    header = env[:end]
    ct_len = int.from_bytes(env[end:end + 2], "big")
    ct = env[end + 2:end + 2 + ct_len]
    okm = HKDF(algorithm=hashes.SHA256(), length=44, salt=SALT,
               info=hashlib.sha256(header).digest()).derive(z)
    try:
        plain = AESGCM(okm[:32]).decrypt(okm[32:], ct, header)
    except Exception as e:  # InvalidTag
        print(f"AEAD refused: {type(e).__name__}", file=sys.stderr)
        return 1
    print(plain.hex())
    return 0


if __name__ == "__main__":
    sys.exit(main())
