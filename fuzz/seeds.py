"""Write seed inputs for the fuzz targets: the HTTP corpus and a set of WebSocket frames.

    python -m fuzz.seeds DIRECTORY    # creates DIRECTORY/http and DIRECTORY/ws

Each seed starts with the 4 parameter bytes the targets read (see their docstrings).
"""

from __future__ import annotations

import hashlib
import sys
import zlib
from pathlib import Path

from tests.corpus.http_cases import CASES

MAX_LEN = 16384


def masked(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0) -> bytes:
    key = b"\x37\xfa\x21\x3d"
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    if len(payload) < 126:
        head += bytes([0x80 | len(payload)])
    elif len(payload) < 65536:
        head += bytes([0xFE]) + len(payload).to_bytes(2, "big")
    else:
        head += bytes([0xFF]) + len(payload).to_bytes(8, "big")
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def ws_streams() -> list[tuple[bytes, bytes]]:
    """(parameter bytes, client stream) pairs."""
    plain = b"\x10\x00\x00\x07"
    compressed = b"\x10\x01\x00\x07"
    return [
        (plain, masked(0x1, "héllo".encode()) + masked(0x2, bytes(range(256)))),
        (plain, masked(0x1, b"frag", fin=False) + masked(0x9, b"p") + masked(0x0, b"ment")),
        (plain, masked(0x2, b"x" * 300) + masked(0x8, b"\x03\xe8bye")),
        (plain, masked(0xA, b"unsolicited") + masked(0x8, b"")),
        (plain, masked(0x1, b"\xff")),
        (plain, masked(0x3, b"reserved") + masked(0x1, b"x", rsv=2)),
        (b"\x00\x00\x00\x07", masked(0x2, b"x" * 1000)),
        (compressed, masked(0x1, deflated(b"compressed " * 20), rsv=4)),
        (compressed, masked(0x2, deflated(b"\0" * 100_000), rsv=4)),
        (b"\x10\x03\x00\x07", masked(0x1, deflated(b"a"), rsv=4) + masked(0x1, deflated(b"b"), rsv=4)),
    ]


def write(directory: Path, seeds: list[bytes]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        seed = seed[:MAX_LEN]
        (directory / hashlib.sha1(seed).hexdigest()).write_bytes(seed)


def main() -> None:
    root = Path(sys.argv[1])
    write(root / "http", [b"\x7f\x01\x00\x07" + case.data for case in CASES])
    write(root / "ws", [parameters + stream for parameters, stream in ws_streams()])


if __name__ == "__main__":
    main()
