"""A steady allocator for timing: glibc's malloc otherwise maps and unmaps every large buffer.

A forward pass allocates its activations (mnist-cnn at batch 64: 6.4 MB for one conv output) and frees them.
Above glibc's mmap threshold each such buffer is a fresh ``mmap`` and ``munmap``, and every page of it faults
in again on the next pass. How often that happens depends on the process's history (glibc raises the threshold
after the first large frees), so the same network timed 17 ms in one process and 27 ms in another, and the
networks with large activations (the float baselines) paid more than the small ones (int8, pruned): ratios
between them inflated by up to 40 %. Raising the mmap and trim thresholds keeps such buffers in the heap,
reused from one pass to the next, whatever ran before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
THRESHOLD = 32 * 1024 * 1024
"""glibc's largest accepted mmap threshold on 64-bit (HEAP_MAX_SIZE / 2)."""


@functools.cache
def steady_allocator() -> bool:
    """Keep buffers up to 32 MB in the heap (glibc); True when applied, False elsewhere (musl, macOS: no-op)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, 2 * THRESHOLD))
