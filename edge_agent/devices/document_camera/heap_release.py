"""Hand the heap a still freed back to the operating system (glibc's ``malloc_trim``).

A still at the shipped 2592x1944 decodes warm-up frames, the frame, maybe a resize and
the JPEG: tens of MiB allocated and freed within one capture. glibc keeps freed heap
for reuse, so an agent that took one still stayed that much bigger all day (measured:
+53 MiB of anonymous memory after a still in a fresh process, 0 after a trim;
docs/performance.md, "Agent footprint"). Trimming after each still costs a walk of the
heap's free lists, small next to a capture. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

__all__ = ["release_freed_heap"]


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim  # the process's C library
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    trim.argtypes = [ctypes.c_size_t]  # type: ignore[attr-defined]
    trim.restype = ctypes.c_int  # type: ignore[attr-defined]
    return trim


def release_freed_heap() -> bool:
    """Return the free heap pages to the OS; whether glibc released any."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
