"""glibc's heap, tuned for a server that holds many short-lived buffers of a few tens of KiB.

A request body arrives in reads of up to 64 KiB, and each read's chunks are held until the app
has taken them (or answered without them). With 64 connections uploading, one turn of the event
loop allocates some 4 MiB of such chunks and then frees them all. glibc returns the top of its
heap to the kernel as soon as more than ``M_TRIM_THRESHOLD`` (128 KiB until a large block has
been freed) is free there, so every turn gives the memory back and the next one faults it in
again, page by page: measured on the ``http-upload-unread`` bench scenario, 1,000 ``brk`` calls
a second, and half the throughput of the same server with the heap kept.

glibc raises these thresholds by itself once it frees a block that it had mapped on its own
(its "dynamic threshold"), but how soon that happens depends on the app. Setting them once at
start (``mallopt(3)``, documented in glibc's manual as "Malloc Tunable Parameters") makes the
server's speed independent of that history. The cost is at most ``TRIM_THRESHOLD`` of freed
memory kept per process.

A user's own choice wins: with ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TOP_PAD_`` or ``GLIBC_TUNABLES`` in the environment, glibc has read it and nothing is
changed. Other C libraries (musl) and other systems are left alone.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from typing import Final

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "tune_heap"]

logger = logging.getLogger("asgisock.error")  # the error logger, without importing the logging setup

M_TRIM_THRESHOLD: Final = -1
M_MMAP_THRESHOLD: Final = -3
"""The parameter numbers of glibc's ``<malloc.h>``."""

MMAP_THRESHOLD: Final = 4 * 1024 * 1024
"""Blocks at least this large are mapped on their own and unmapped when freed; below it they
come from the heap. glibc's own dynamic threshold reaches this once it has freed a 4 MiB block."""

TRIM_THRESHOLD: Final = 2 * MMAP_THRESHOLD
"""Free memory at the top of the heap is kept until it exceeds this; the ratio is glibc's own."""

USER_SETTINGS: Final = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")

_tuned = False


def tune_heap() -> bool:
    """Set glibc's heap thresholds once per process; True when they are (or were) set here."""
    global _tuned
    if _tuned:
        return True
    if sys.platform != "linux" or any(name in os.environ for name in USER_SETTINGS):
        return False
    libc = _glibc()
    if libc is None:
        return False
    # mallopt() returns 1 on success and 0 on error.
    if libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1 or libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        logger.debug("mallopt() refused the heap thresholds: glibc's defaults stay")
        return False
    _tuned = True
    return True


def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc, else None."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.mallopt.restype = ctypes.c_int
    return libc
