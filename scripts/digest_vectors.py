#!/usr/bin/env python3
"""Regenerate the model-digest test vectors from the reference implementation.

warden's model digest (src/digest.rs) must equal the root digest that the
OpenSSF Model Signing `files` serialization with SHA-256 produces. This script
asks model-signing itself for that digest, for every fixture model under
tests/fixtures/digest/ and for every case in tests/fixtures/digest/runtime_cases.json
(built in a temporary directory, as tests/it/digest_vectors.rs does), and writes:

  tests/fixtures/digest/vectors.json    fixture name -> "sha256:<hex>"
  tests/fixtures/digest/manifests.json  fixture name -> [[entry name, hex], ...]
                                        in model-signing's order

How to run, from the crate root:

  python3 -m venv venv
  venv/bin/pip install model-signing==1.1.1 pyopenssl
  venv/bin/python3 scripts/digest_vectors.py

(or `pip install model-signing==1.1.1 pyopenssl` then
`python3 scripts/digest_vectors.py`). pyopenssl is listed because
model-signing 1.1.1 imports OpenSSL at import time without declaring it as a
dependency; it plays no part in hashing.

Commit the regenerated JSON files; the Rust tests only read them.
"""

import importlib.metadata
import json
import os
import pathlib
import sys
import tempfile

from google.protobuf import json_format
from model_signing import hashing
from model_signing._signing import signing

EXPECTED_VERSION = "1.1.1"

CRATE_ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = CRATE_ROOT / "tests" / "fixtures" / "digest"


def oms_files_sha256(model_dir: pathlib.Path):
    """Root digest and ordered resources, exactly as model-signing signs them.

    Default hashing config (ignore_git_paths=True, allow_symlinks=False), file
    serialization with SHA-256; the root digest is the in-toto subject digest
    of the payload that `model_signing.signing` would sign, decoded the same
    way its signers serialize it (sign_ec_key.py: MessageToJson).
    """
    config = hashing.Config().use_file_serialization(hashing_algorithm="sha256")
    manifest = config.hash(model_dir)
    payload = signing.Payload(manifest)
    statement = json.loads(json_format.MessageToJson(payload.statement.pb))
    (subject,) = statement["subject"]
    resources = statement["predicate"]["resources"]
    assert all(r["algorithm"] == "sha256" for r in resources)
    return (
        "sha256:" + subject["digest"]["sha256"],
        [[r["name"], r["digest"]] for r in resources],
    )


def build_runtime_case(root: pathlib.Path, case: dict) -> None:
    for d in case["dirs"]:
        (root / d).mkdir(parents=True, exist_ok=True)
    for rel, content in case["files"].items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8"))


def main() -> int:
    version = importlib.metadata.version("model-signing")
    if version != EXPECTED_VERSION:
        print(f"model-signing {version} installed, need {EXPECTED_VERSION}", file=sys.stderr)
        return 1

    vectors, manifests = {}, {}
    for d in sorted(p for p in FIXTURES.iterdir() if p.is_dir()):
        vectors[d.name], manifests[d.name] = oms_files_sha256(d)

    cases = json.loads((FIXTURES / "runtime_cases.json").read_text("utf-8"))
    for name, case in cases.items():
        if name.startswith("_"):
            continue
        assert name not in vectors, f"runtime case {name} shadows a fixture dir"
        with tempfile.TemporaryDirectory() as tmp:
            root = pathlib.Path(tmp) / name
            root.mkdir()
            build_runtime_case(root, case)
            vectors[name], manifests[name] = oms_files_sha256(root)

    for fname, data in (("vectors.json", vectors), ("manifests.json", manifests)):
        out = FIXTURES / fname
        out.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", "utf-8")
        print(f"wrote {out.relative_to(CRATE_ROOT)} ({len(data)} models)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
