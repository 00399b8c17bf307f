"""vae_core.memory: freed memory goes back to the operating system (glibc only)."""
import subprocess
import sys

import pytest

CODE = """
import torch
from vae_core import memory
def rss():
    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS')) // 1024
print(memory.tune())
base = rss()
blocks = [torch.ones(64 * 1024) for _ in range(4000)]      # 256 KB each, 1 GB: from the heap, not mmap
del blocks[1:]                                             # one survivor at the start holds the heap's bottom
held = rss()
print(memory.release())
print(held - base, rss() - base)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_release_gives_freed_heap_memory_back():
    r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    tuned, released, sizes = r.stdout.split("\n")[:3]
    held, after = map(int, sizes.split())
    assert tuned == "True" and released == "True"
    assert after < held / 4, (held, after)
