"""Tests of the heap tuning: measured in fresh processes, as glibc's thresholds are process-wide
and move by themselves once a large block is freed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from asgisock.allocator import TRIM_THRESHOLD
from tests.processes import Launcher

pytestmark = pytest.mark.skipif(sys.platform != "linux" or not os.confstr("CS_GNU_LIBC_VERSION"),
                                reason="glibc's heap")

# Frees 3 MiB of 64 KiB buffers, as a turn of the event loop does with 48 uploads' chunks, and
# says how much of it the heap gave back to the kernel (mallinfo2(3): "arena" is the heap's size).
RELEASED = """
import ctypes


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2


def released():
    blocks = [bytearray(65536) for _ in range(48)]
    grown = libc.mallinfo2().arena
    del blocks
    return grown - libc.mallinfo2().arena
"""

PROBE = RELEASED + """
import sys
from asgisock.allocator import tune_heap

print(tune_heap() if sys.argv[1] == "tune" else None, released())
"""


def probe(mode: str, **environ: str) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    result = subprocess.run([sys.executable, "-c", PROBE, mode], env={**env, **environ}, capture_output=True,
                            text=True, check=True)
    tuned, released = result.stdout.split()
    return tuned, int(released)


def test_glibcs_default_gives_freed_buffers_back_at_once() -> None:
    """The problem the tuning removes: without it the heap shrinks as soon as they are freed."""
    assert probe("leave")[1] > 2 * 2**20


def test_the_tuned_heap_keeps_them_for_the_next_turn() -> None:
    assert probe("tune") == ("True", 0)
    assert TRIM_THRESHOLD > 3 * 2**20


def test_a_users_own_malloc_setting_wins() -> None:
    tuned, released = probe("tune", MALLOC_TRIM_THRESHOLD_="131072")
    assert tuned == "False" and released > 2 * 2**20
    assert probe("tune", GLIBC_TUNABLES="glibc.malloc.trim_threshold=131072")[0] == "False"


SERVED = """
from tests_probe import released


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b"%d" % released()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})
"""


@pytest.mark.parametrize(("environ", "kept"), [({}, True), ({"MALLOC_TRIM_THRESHOLD_": "131072"}, False)])
def test_the_server_process_serves_with_the_tuned_heap(tmp_path: Path, environ: dict[str, str],
                                                         kept: bool) -> None:
    (tmp_path / "heapapp.py").write_text(SERVED)
    (tmp_path / "tests_probe.py").write_text(RELEASED)
    launcher = Launcher(tmp_path)
    try:
        cli = launcher("heapapp:app", "--port", "0", "--lifespan", "off", env=environ)
        released = int(httpx.get(cli.url).text)
    finally:
        for started in launcher.started:
            started.stop()
    assert (released == 0) is kept, released
