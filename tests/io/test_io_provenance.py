"""The provenance stamp and input digests (sae_analysis.io.provenance): one helper for every manifest."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from sae_analysis.io.provenance import array_digest, digest, git, stamp


def test_file_digest_is_the_sha256_of_its_bytes(tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"x" * 3_000_001)  # spans several read chunks
    assert digest(f) == hashlib.sha256(b"x" * 3_000_001).hexdigest()
    assert digest(f, chunk_bytes=7) == digest(f)


def test_folder_digest_sees_contents_names_and_nesting_but_not_creation_order(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root, order in ((a, ("cfg.json", "sub/w.bin")), (b, ("sub/w.bin", "cfg.json"))):
        for name in order:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(name.encode())
    assert digest(a) == digest(b)
    (b / "sub" / "w.bin").write_bytes(b"changed")
    assert digest(a) != digest(b)
    (b / "sub" / "w.bin").write_bytes(b"sub/w.bin")
    (b / "sub" / "w.bin").rename(b / "w.bin")  # same bytes, other place
    assert digest(a) != digest(b)


def test_array_digest_pins_values_dtype_and_shape():
    t = torch.arange(12, dtype=torch.int64).reshape(3, 4)
    assert array_digest(t) == array_digest(t.numpy()) == array_digest(t.clone())
    assert array_digest(t) != array_digest(t.reshape(4, 3))
    assert array_digest(t) != array_digest(t.to(torch.int32))
    u = t.clone()
    u[2, 3] = 0
    assert array_digest(t) != array_digest(u)
    assert array_digest(t.T) == array_digest(np.ascontiguousarray(t.numpy().T))  # a strided view hashes its values


def test_stamp_names_this_checkout_and_outside_a_repository_says_none(tmp_path):
    s = stamp(("torch", "no-such-distribution-xyz"))
    assert s["versions"]["torch"] is not None and torch.__version__.startswith(s["versions"]["torch"].split("+")[0])
    assert s["versions"]["no-such-distribution-xyz"] is None
    head = git("rev-parse", "HEAD")
    if head:  # a checkout (CI clones one)
        assert s["git_commit"] == head and isinstance(s["git_dirty"], bool)
    outside = stamp((), cwd=tmp_path)
    assert outside["git_commit"] is None and outside["git_dirty"] is None
