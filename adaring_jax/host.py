"""Host-side settings that make the same arithmetic run faster on CPU hosts.

XLA's CPU runtime allocates every temporary buffer of a program anew on each call. With glibc's
defaults, buffers of a few MB are mapped from the kernel and given back after each step, so
every step pays page faults to touch them again (the zero-filling and copying of a scan's
stacked activations then runs at under 1 GB/s). `tune_malloc` keeps freed memory in the process
instead: allocations up to 32 MiB come from the heap and the heap is not trimmed below 1 GiB of
free space. Only where memory lives changes, never what is computed. On by default; off with
`ADARING_MALLOC_TUNING=0` (benchmarks/table_time.py measures the job both ways).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit hosts
TRIM_THRESHOLD = 1 << 30
TOP_PAD = 64 << 20


def tune_malloc(environ=os.environ) -> bool:
    """Apply the settings above once per process; False where they do not apply (switched
    off, or not glibc) or were refused."""
    if environ.get("ADARING_MALLOC_TUNING", "").strip().lower() in ("0", "off", "false", "no"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (macOS, musl without mallopt)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(p, v) == 1 for p, v in ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
                                               (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
                                               (_M_TOP_PAD, TOP_PAD)))
