"""`scinas.allocator`: large blocks kept for reuse, in a process of their own (the setting is the
process's), and a bad SCINAS_MALLOC refused before anything is written."""

from __future__ import annotations

import ctypes
import json
import os
import platform
import subprocess
import sys

import pytest

from conftest import scinas_cli, tiny_sets

# bytes the C allocator has mapped for large blocks, before and while 64 MiB are held
PROBE = """
import ctypes, json, torch
from scinas import allocator

FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in FIELDS.split()]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
applied = allocator.tune()
before = libc.mallinfo2().hblkhd
x = torch.empty(64 << 20, dtype=torch.uint8)
print(json.dumps({"applied": applied, "mapped": libc.mallinfo2().hblkhd - before}))
"""


def _probe(choice: str) -> dict:
    env = {**os.environ, "SCINAS_MALLOC": choice}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _glibc_with_mallinfo2() -> bool:  # glibc 2.33 and later
    return platform.libc_ver()[0] == "glibc" and hasattr(ctypes.CDLL(None), "mallinfo2")


@pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="glibc's mallopt and mallinfo2")
def test_a_large_block_comes_from_the_heap_unless_the_user_keeps_the_system_allocator():
    reuse, system = _probe("reuse"), _probe("system")
    assert reuse == {"applied": True, "mapped": 0}
    assert system["applied"] is False and system["mapped"] >= 64 << 20


def test_a_bad_allocator_choice_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    trained = tmp_path / "trained"
    res = scinas_cli("train", "--genotype", "resnet_tiny", "--out", trained, *tiny_sets())
    assert res.returncode == 0, res.stderr
    monkeypatch.setenv("SCINAS_MALLOC", "jemalloc")
    out, metrics = tmp_path / "run", tmp_path / "metrics.json"
    for args in (
        ("train", "--genotype", "resnet_tiny", "--out", out, *tiny_sets()),
        ("evaluate", trained, "--output", metrics),
    ):
        res = scinas_cli(*args)
        assert res.returncode == 2, res.stderr
        assert "SCINAS_MALLOC='jemalloc' is not a choice" in res.stderr
        assert "Traceback" not in res.stderr
    assert not out.exists() and not metrics.exists()
