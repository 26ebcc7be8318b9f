"""How long permessage-deflate can hold the event loop: the worst single call on 16 MiB messages.

    python bench/bench_deflate.py

Incoming messages are inflated read by read (at most one socket read, 256 KiB, per call, and
never more output than the size limit), so their cost per call is bounded. Outgoing messages
are compressed whole; from asgisock.transport.websocket.OFFLOAD_COMPRESSION bytes up, the
server does that in a worker thread, and this measures what the loop would otherwise wait.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable

from asgisock.transport.websocket import OFFLOAD_COMPRESSION
from asgisock.ws.deflate import PerMessageDeflate

SIZE = 16 * 2**20
READ = 256 * 1024


def sample_text() -> bytes:
    """JSON-like text that compresses about 3:1, as chat or API payloads do."""
    rng = random.Random(1)
    keys = [b"id", b"name", b"price", b"tags", b"updated"]
    parts = []
    total = 0
    while total < SIZE:
        part = b'{"%s": %d, "%s": "%x"}, ' % (rng.choice(keys), rng.randrange(10**6), rng.choice(keys),
                                              rng.getrandbits(48))
        parts.append(part)
        total += len(part)
    return b"".join(parts)[:SIZE]


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def measure(label: str, data: bytes) -> None:
    sender = PerMessageDeflate()
    compressed = b""

    def compress() -> None:
        nonlocal compressed
        compressed = sender.compress(data)

    whole = timed(compress)
    small = timed(lambda: PerMessageDeflate().compress(data[: OFFLOAD_COMPRESSION - 1]))
    receiver = PerMessageDeflate()
    worst_read = max(timed(lambda i=i: receiver.decompress(compressed[i : i + READ], SIZE + 1))  # type: ignore[misc]
                     for i in range(0, len(compressed), READ))
    print(f"{label:>8}: 16 MiB -> {len(compressed) / 2**20:5.1f} MiB | compress whole message "
          f"{whole * 1000:6.0f} ms (in a worker thread) | largest message compressed on the loop "
          f"({(OFFLOAD_COMPRESSION - 1) // 1024} KiB) {small * 1000:5.1f} ms | worst inflate call per "
          f"{READ // 1024} KiB read {worst_read * 1000:5.2f} ms")


def main() -> None:
    measure("text", sample_text())
    measure("zeros", bytes(SIZE))
    measure("random", os.urandom(SIZE))


if __name__ == "__main__":
    main()
