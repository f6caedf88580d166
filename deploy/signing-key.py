#!/usr/bin/env python3
"""Creates an Ed25519 signer key for warden's licences or ledger checkpoints.

    python3 deploy/signing-key.py NAME KEY_FILE > VERIFIER_FILE

NAME names the key in every signature: for the ledger key it is the log's
origin, which auditors see (e.g. warden.example.com/ledger); for the licence
key, the name node agents see (e.g. warden.example.com/licence). KEY_FILE is
written owner-readable only and must not exist yet; the verifier key (public,
for `warden verify-licence --vkey` and `warden ledger verify --vkey`) goes to
standard output.

Both are in the C2SP signed-note format that warden reads
(PRIVATE+KEY+<name>+<id>+<base64>). `warden dev` writes such keys too, but
names them warden.dev/...; this script is the stand-in until warden has a
key-generation command of its own. Needs the `cryptography` package.
"""

import base64
import hashlib
import os
import sys

from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ED25519 = b"\x01"


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    name, path = sys.argv[1], sys.argv[2]
    if not name or any(c.isspace() or c == "+" for c in name):
        sys.exit(f"signing-key: the name may contain no space and no '+': {name!r}")
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(ser.Encoding.Raw, ser.PrivateFormat.Raw, ser.NoEncryption())
    public = key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    # The key id: the first 4 bytes of SHA-256(name "\n" 0x01 public key).
    key_id = hashlib.sha256(name.encode() + b"\n" + ED25519 + public).hexdigest()[:8]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"PRIVATE+KEY+{name}+{key_id}+{base64.b64encode(ED25519 + seed).decode()}\n")
    print(f"{name}+{key_id}+{base64.b64encode(ED25519 + public).decode()}")


if __name__ == "__main__":
    main()
