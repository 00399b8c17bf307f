"""Giving freed memory back to the operating system (glibc), so a long-lived server shrinks after heavy work.

glibc's malloc keeps what a process frees for its next allocations. Two habits of it make a
server that once did heavy work (a map of 50,000 codes, a training run) stay large:
- its mmap threshold is dynamic: after a large block is freed it raises the threshold (up to
  32 MB on 64-bit), so later tensors of a few MB come from the heap instead of their own
  mappings, and the heap is rarely returned;
- each thread gets an arena of its own, and memory freed inside an arena stays there.
``tune`` pins the threshold, so every block of ``MMAP_THRESHOLD`` or more is its own mapping,
returned the moment it is freed, and caps the arenas at ``ARENA_MAX`` (the server's threads share
them); ``release`` (``malloc_trim(0)``) returns the free pages of every arena. Both do nothing
where the C library is not glibc (macOS, Windows, musl). bench/memory_walk.py measures the effect.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # mallopt's parameter numbers (malloc.h)
MMAP_THRESHOLD = 4 * 1024 * 1024       # blocks from 4 MB up get a mapping of their own
ARENA_MAX = 2                          # malloc arenas for all threads (glibc's default: 8 per core)


def _libc():
    """glibc, or None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def tune(mmap_threshold: int = MMAP_THRESHOLD, arenas: int = ARENA_MAX) -> bool:
    """Pin glibc's mmap threshold (turning its dynamic raise off) and cap its arenas; True if both were set.

    Process-wide and cheap; arenas made before the call are kept, so call it early."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(ctypes.c_int(M_MMAP_THRESHOLD), ctypes.c_int(mmap_threshold))
                and libc.mallopt(ctypes.c_int(M_ARENA_MAX), ctypes.c_int(arenas)))


def release() -> bool:
    """Return the free memory of every malloc arena to the OS; True if some was returned."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(ctypes.c_size_t(0)))


__all__ = ["ARENA_MAX", "MMAP_THRESHOLD", "release", "tune"]
