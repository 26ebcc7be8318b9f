from collections.abc import Iterable
from typing import Any

from asgisock.http11.writer import DefaultHeaders, Framing

def configure(status_lines: dict[int, bytes], no_body: Framing, content_length: Framing, chunked: Framing,
              close_delimited: Framing, /) -> None: ...
def encode_head(status: int, headers: Iterable[Any], defaults: DefaultHeaders, head_request: bool, http11: bool,
                keep_alive: bool, body_length: int | None, /) -> tuple[bytes, Framing, int | None, bool]: ...
