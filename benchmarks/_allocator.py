"""A steady heap for the timings: glibc's malloc keeps the memory NumPy frees and serves the
next large array from it, instead of handing it back to the operating system.

Why: by default glibc maps every array above a threshold (128 KB, raised to the largest one
freed so far) with mmap, unmaps it when freed, and trims the top of its heap whenever more
than twice that is free there; the next large array then faults every one of its pages in
again. On the virtual machines these benchmarks run on, a page fault costs about 2 us, and how
many a step pays depends on what earlier steps left in the heap. Measured on the hand-written
NumPy char-RNN step at H=128, B=32, T=50: 736 page faults and 11.9-12.2 ms per step with
glibc's defaults, none and 9.3-9.8 ms with the heap held; and the engine's step paid more or
fewer faults than the hand-written one depending on the order the two ran in, so that the
ratio of the same code moved by several percent between runs. With the heap held, both sides
of every ratio pay for their NumPy work and their own machinery, not for the heap's history.
``--default-allocator`` (run.py) measures with glibc's defaults; the char-RNN section prints
the page faults per step of both sides either way.

It changes this process only (child processes, such as the memory sections' peak-RSS runs,
start with glibc's defaults), and nothing where the C library is not glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import resource

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3   # glibc's mallopt parameters (malloc.h)
HELD_BYTES = 256 << 20     # free memory kept at the top of the heap
MMAP_ABOVE = 64 << 20      # arrays below this come from the heap, not from their own mapping


def hold_the_heap() -> bool:
    """Set glibc's thresholds as described above; True when they were set."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_ABOVE)) and bool(mallopt(M_TRIM_THRESHOLD,
                                                                        HELD_BYTES))


def heap_for_timings(default_allocator: bool) -> str:
    """Hold the heap unless ``default_allocator``; what the machine description prints."""
    if default_allocator:
        return "glibc defaults"
    return "held" if hold_the_heap() else "defaults (not glibc)"


def page_faults() -> int:
    """Minor page faults of this process so far (memory the kernel had to map in)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
