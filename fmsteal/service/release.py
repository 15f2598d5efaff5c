"""Handing a finished run's memory back to the system, so a server's footprint returns near its idle level.

A run frees its tensors when it ends, but glibc keeps the freed pages of its heaps wherever a small
allocation that outlives the run sits above them; `malloc_trim(0)` returns every free page. Where
there is no glibc (macOS, musl) only the garbage collector and the CUDA cache are run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys

__all__ = ["release_memory"]


def _malloc_trim():
    """glibc's `malloc_trim`, or None where the C library has none."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


def release_memory() -> None:
    """Collect garbage, empty the CUDA cache (when torch uses CUDA) and return free heap pages to the system."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    if _TRIM is not None:
        _TRIM(0)
