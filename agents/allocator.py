"""The memory-allocator setting of a training process (issue #9: peak memory).

glibc serves large blocks from its heap and keeps freed ones for reuse; a training iteration
frees and re-allocates many tensors of changing sizes (roll-out caches, logits, activations),
so the heap fragments and the peak RSS grows by the better part of a gigabyte. Serving every
block of 128 KiB or more with ``mmap`` returns it to the OS when freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["mmap_large_blocks"]

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


def mmap_large_blocks(threshold: int = 128 * 1024) -> bool:
    """Have glibc ``mmap`` every block of at least ``threshold`` bytes; False where the C
    library is not glibc (nothing changes then)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))
