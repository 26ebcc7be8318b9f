"""The default response fields, with the wall clock handed in rather than read."""

from __future__ import annotations

from asgisock.http11.writer import DefaultHeaders, encode_head


class FakeClock:
    """A wall clock that moves only when told to, counting how often it is read."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def test_date_comes_from_the_given_clock() -> None:
    clock = FakeClock(784111777.5)  # RFC 9110 §5.6.7's example date
    defaults = DefaultHeaders(server=True, clock=clock)
    assert defaults.encoded() == b"server: asgisock\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"


def test_date_is_encoded_again_only_when_the_second_changes() -> None:
    clock = FakeClock(784111777.0)
    defaults = DefaultHeaders(server=False, clock=clock)
    first = defaults.ending(True, True)
    clock.now = 784111777.999
    assert defaults.ending(True, True) is first  # same second: the cached bytes
    clock.now = 784111778.0
    assert defaults.ending(True, True) == b"date: Sun, 06 Nov 1994 08:49:38 GMT\r\n\r\n"
    assert clock.reads == 3


def test_no_clock_no_date() -> None:
    defaults = DefaultHeaders(server=True, clock=None)
    head = encode_head(204, [], defaults, head_request=False, http11=True, keep_alive=True, body_length=None)
    assert head.data == b"HTTP/1.1 204 No Content\r\nserver: asgisock\r\n\r\n"
    assert b"date" not in defaults.names


def test_the_apps_date_wins() -> None:
    defaults = DefaultHeaders(server=False, clock=FakeClock(0.0))
    head = encode_head(200, [(b"Date", b"x")], defaults, head_request=False, http11=True, keep_alive=True,
                       body_length=0)
    assert head.data == b"HTTP/1.1 200 OK\r\nDate: x\r\ncontent-length: 0\r\n\r\n"
