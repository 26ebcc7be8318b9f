from collections.abc import Iterable, Set
from typing import Any

def encode_fields(headers: Iterable[Any], special: Set[bytes], /) -> tuple[bytes, int | None, bool, set[bytes] | None]: ...
