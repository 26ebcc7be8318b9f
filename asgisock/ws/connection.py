"""The server side of a WebSocket connection as a state machine without I/O (RFC 6455).

The transport feeds it the bytes it reads (``receive_data``, ``receive_eof``),
then collects what came out: events for the application
(``events_received``), bytes to write (``data_to_send``) and whether to close
the TCP connection now (``close_transport_now``). The application's side
(``send_text``, ``send_close``, ...) only queues bytes. Nothing here blocks,
reads a clock or touches a socket, so every rule is tested with plain bytes.

States (RFC 6455 §4.1 "_The WebSocket Connection is Established_" onwards,
§7 for closing)::

    OPEN ──send_close()──▶ CLOSING ──peer's close / failure / EOF──▶ CLOSED
      └──────────── peer's close / failure / EOF ──────────────────▶ CLOSED

``Closed`` is emitted exactly once, when receiving stops: on entering
CLOSED, or earlier for a failure held back as explained below.

Failing after messages. When the peer breaks the protocol right after
messages it sent in the same read, the application has not yet had a chance
to answer them; failing at once would cut its answers off, though they were
logically sent before the failure (Autobahn TestSuite 3.2, 4.1.3, 5.15: the
echo of a valid message must arrive before the close frame). So such a
failure is reported (``Closed``) and reading stops at once, but the close
frame is held, and sending stays allowed, until the application has seen the
``Closed`` event: ``closed_delivered()``, ``send_close()`` or EOF releases it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

from asgisock.ws import mask as _mask
from asgisock.ws.deflate import PerMessageDeflate
from asgisock.ws.frames import (
    SHORT_BINARY_HEADERS,
    SHORT_TEXT_HEADERS,
    CloseCode,
    FrameHeader,
    Opcode,
    ProtocolError,
    build_frame,
    decode_close,
    encode_close,
    frame_header,
    is_valid_close_code,
    parse_header,
)
from asgisock.ws.message import IncomingMessage

__all__ = [
    "BytesMessage",
    "Closed",
    "ConnectionClosedError",
    "Event",
    "PingReceived",
    "PongReceived",
    "State",
    "TextMessage",
    "WebSocketConnection",
]


class State(Enum):
    """Where the closing handshake stands (RFC 6455 §7)."""

    OPEN = "open"
    """Messages flow both ways."""
    CLOSING = "closing"
    """We sent a close frame and read on until the peer's close arrives."""
    CLOSED = "closed"
    """Handshake done, connection failed, or EOF: the TCP connection should close."""


# CPython 3.11 looks an enum member up on its class slowly (about 70 ns, several times a
# module global): the per-message paths compare with these names instead.
_OPEN: Final = State.OPEN
_CLOSED: Final = State.CLOSED

_TRANSITIONS: dict[State, frozenset[State]] = {
    State.OPEN: frozenset({State.CLOSING, State.CLOSED}),
    State.CLOSING: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}


@dataclass(slots=True)
class TextMessage:
    data: str


@dataclass(slots=True)
class BytesMessage:
    data: bytes


@dataclass(slots=True)
class PingReceived:
    """A ping arrived; the pong answering it is already queued."""

    payload: bytes


@dataclass(slots=True)
class PongReceived:
    """A pong arrived, solicited or not: proof that the peer is alive (keepalive)."""

    payload: bytes


@dataclass(slots=True)
class Closed:
    """The connection stopped receiving; emitted exactly once.

    ``code`` is the peer's close code (1005 when its close frame had none),
    the code we failed the connection with (1002, 1007, 1009), or 1006 when
    the TCP connection ended without a close frame (RFC 6455 §7.1.5).
    """

    code: int
    reason: str


Event = TextMessage | BytesMessage | PingReceived | PongReceived | Closed


class ConnectionClosedError(OSError):
    """Sending after our close frame went out, or after the connection closed."""


# A masked frame with a 7-bit length: 2 bytes, then the 4-byte mask key (RFC 6455 §5.2).
_SHORT_HEADER = 6
# First byte of a whole message: FIN set, RSV1-3 clear, opcode text or binary.
_WHOLE_TEXT = 0x80 | Opcode.TEXT
_WHOLE_BINARY = 0x80 | Opcode.BINARY
SEPARATE_PAYLOAD: Final = 16384
"""Payloads from this size are queued apart from their frame header (:meth:`chunks_to_send`):
copying them into one string with it would cost more than a second buffer in the write."""


class WebSocketConnection:
    """Server side of one WebSocket connection, after the opening handshake.

    ``max_size`` bounds the size of a received message in bytes (after
    decompression); a bigger message fails the connection with 1009 as soon
    as the limit is crossed. None disables the limit.

    ``deflate`` is the permessage-deflate state negotiated in the handshake
    (``asgisock.ws.deflate.negotiate``), or None without compression.
    """

    def __init__(
        self, *, max_size: int | None = 16 * 2**20, deflate: PerMessageDeflate | None = None
    ) -> None:
        self.state = State.OPEN
        self.max_size = max_size
        self.deflate = deflate
        self.close_sent = False
        self.close_received = False
        # Unparsed input: never more than one partial header or control frame,
        # because data frame payloads are consumed as they arrive.
        self._buffer = b""
        # The data frame whose payload is arriving, how much of it is left, and
        # its mask key rotated to line up with the next payload byte.
        self._frame: FrameHeader | None = None
        self._frame_left = 0
        self._mask = b""
        # The data message in progress (its first frame has arrived, not its last).
        self._message: IncomingMessage | None = None
        # The close frame payload of a failure that waits for the application.
        self._held_close: bytes | None = None
        self._events: list[Event] = []
        self._budget = -1
        """Messages this ``receive_data`` call may still produce; negative: no limit."""
        self.input_held = False
        """Input is buffered unparsed because ``max_messages`` ran out: the caller must call
        ``receive_data(b"")`` once it has room, since no new read may ever come to trigger it."""
        self._output: list[bytes] = []

    # -- Input -----------------------------------------------------------------------------

    def receive_data(self, data: bytes, *, max_messages: int | None = None) -> None:
        """Process bytes read from the network.

        With ``max_messages``, parsing stops (between frames) once that many messages came out
        in this call; the rest stays buffered, ``input_held`` is set, and ``receive_data(b"")``
        goes on later. That is how the transport keeps the app's queue to its limit exactly.
        """
        self.input_held = False
        if not self._is_reading():
            # §7.1.7: "An endpoint MUST NOT continue to attempt to process data
            # (including a responding Close frame) from the remote endpoint after
            # being instructed to _Fail the WebSocket Connection_." After a close
            # handshake there is nothing left to read either.
            return
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        self._budget = -1 if max_messages is None else max_messages
        try:
            pos = self._parse(data)
        except ProtocolError as exc:
            self._fail(exc.code, exc.reason, hold=self._messages_pending())
            return
        if pos < len(data) and self._is_reading():
            self._buffer = data[pos:]

    def receive_whole_message(self, data: bytes) -> str | bytes | None:
        """The fast path of ``receive_data`` for the commonest read: one small message.

        When ``data`` is exactly one complete, final, uncompressed text or binary frame with a
        7-bit payload length (RFC 6455 §5.2) and nothing else is pending (no buffered input,
        no message in progress, no event uncollected, the connection open), the message is
        returned at once, without an event. Otherwise nothing is consumed and the result is
        None: the caller passes ``data`` to ``receive_data``, where every rule applies, so
        anything this path does not accept (invalid UTF-8, a message over ``max_size``) fails
        there exactly as before.
        """
        length = len(data) - _SHORT_HEADER
        if (
            not 0 <= length < 126
            or data[1] != 0x80 | length  # masked, and the payload is all of the rest
            or (data[0] != _WHOLE_TEXT and data[0] != _WHOLE_BINARY)
            or self.state is not _OPEN
            or self._buffer
            or self._message is not None
            or self._frame is not None
            or self._held_close is not None
            or self._events
            or (self.max_size is not None and length > self.max_size)
        ):
            return None
        payload = _mask.apply_mask(data[_SHORT_HEADER:], data[2:_SHORT_HEADER])
        if data[0] == _WHOLE_BINARY:
            return payload
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            return None  # receive_data fails the connection (§8.1)

    def receive_eof(self) -> None:
        """The peer closed its side of the TCP connection."""
        if self._held_close is not None:
            self._release_failure()
        elif self.state is not State.CLOSED:
            # §7.1.5: without a close frame, the close code is 1006.
            self._close(CloseCode.ABNORMAL_CLOSURE, "")

    def events_received(self) -> list[Event]:
        """Events since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> bytes:
        """Bytes to write since the last call; b"" when there are none."""
        if not self._output:
            return b""
        data = b"".join(self._output)
        self._output.clear()
        return data

    def chunks_to_send(self) -> list[bytes]:
        """:meth:`data_to_send` as the pieces it joins: a large payload stays a piece of its own,
        after its frame's header, so that a transport that writes a list at once (``writelines``,
        one ``writev``) never copies it."""
        chunks = self._output
        self._output = []
        return chunks

    def closed_delivered(self) -> None:
        """Tell the connection that the application has received ``Closed``.

        For ASGI: when the app's ``receive()`` returns ``websocket.disconnect``.
        Releases the close frame of a failure held back for the application
        to answer earlier messages (see the module docstring), after which
        ``close_transport_now()`` is True; otherwise it does nothing.
        """
        if self._held_close is not None:
            self._release_failure()

    def close_transport_now(self) -> bool:
        """Whether the transport should write out ``data_to_send()`` and close TCP.

        True once the closing handshake is complete, the connection failed (for
        a held failure: once released) or the peer sent EOF. After a peer's
        close this is at once: §7.1.1 "the
        underlying TCP connection, in most normal cases, SHOULD be closed first
        by the server". After our own close, it waits for the peer's; bounding
        that wait is the transport's job (it owns the clock).
        """
        return self.state is _CLOSED

    # -- Output ----------------------------------------------------------------------------

    def send_text(self, text: str) -> None:
        payload = text.encode("utf-8")
        if len(payload) < 126 and self._sends_plain():
            self._output.append(SHORT_TEXT_HEADERS[len(payload)] + payload)
        else:
            self._send_message(Opcode.TEXT, payload)

    def send_bytes(self, data: bytes) -> None:
        if len(data) < 126 and self._sends_plain():
            self._output.append(SHORT_BINARY_HEADERS[len(data)] + data)
        else:
            self._send_message(Opcode.BINARY, data)

    def send_message(self, data: str | bytes) -> None:
        """Queue a message: a ``str`` as a text message in UTF-8, ``bytes`` as a binary one
        (RFC 6455 §5.6). The small-frame fast paths of ``send_text`` and ``send_bytes``,
        written out here so that the commonest send costs no extra call."""
        if type(data) is str:
            payload = data.encode("utf-8")
            if len(payload) < 126 and self._sends_plain():
                self._output.append(SHORT_TEXT_HEADERS[len(payload)] + payload)
            else:
                self._send_message(Opcode.TEXT, payload)
        elif len(data) < 126 and self._sends_plain():
            self._output.append(SHORT_BINARY_HEADERS[len(data)] + data)  # type: ignore[operator]
        else:
            self._send_message(Opcode.BINARY, data)  # type: ignore[arg-type]

    @staticmethod
    def encode_message(data: str | bytes) -> tuple[Opcode, bytes]:
        """The opcode and payload of a message (text in UTF-8, §5.6), for a caller that
        compresses it elsewhere and queues the result with ``send_compressed``."""
        if type(data) is str:
            return Opcode.TEXT, data.encode("utf-8")
        return Opcode.BINARY, data  # type: ignore[return-value]

    def _sends_plain(self) -> bool:
        """Whether a small message may go out as one frame with nothing to check or compress."""
        return self.deflate is None and not self.close_sent and self.state is not _CLOSED

    def send_ping(self, payload: bytes = b"") -> None:
        """Raises ValueError for a payload over 125 bytes (§5.5)."""
        self._check_can_send()
        self._output.append(build_frame(Opcode.PING, payload))

    def send_pong(self, payload: bytes = b"") -> None:
        """An unsolicited pong, a one-way heartbeat (§5.5.3)."""
        self._check_can_send()
        self._output.append(build_frame(Opcode.PONG, payload))

    def send_close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake; messages received afterwards are discarded.

        Raises ValueError for a code that may not go on the wire (§7.4) or a
        reason over 123 UTF-8 bytes (it must fit a 125-byte control frame).
        After a held failure, the failure's own close frame goes out instead.
        """
        self._check_can_send()
        if not is_valid_close_code(code):
            raise ValueError(f"invalid close code {code}")
        payload = encode_close(code, reason)
        if len(payload) > 125:
            raise ValueError("close reason longer than 123 bytes in UTF-8")
        if self._held_close is not None:
            self._release_failure()
            return
        self._send_close_frame(payload)
        self._set_state(State.CLOSING)

    def wants_compression(self, size: int) -> bool:
        """Whether a message of ``size`` bytes would be sent compressed."""
        return self.deflate is not None and self.deflate.should_compress(size)

    def send_compressed(self, opcode: Opcode, compressed: bytes) -> None:
        """Queue a message that the caller compressed with ``self.deflate.compress``.

        Lets the transport run a large message's compression off the event loop; the caller
        must not send anything else on this connection meanwhile (the compressor is shared).
        """
        self._check_can_send()
        self._output.append(build_frame(opcode, compressed, rsv1=True))

    def _check_can_send(self) -> None:
        if self.close_sent or self.state is _CLOSED:
            raise ConnectionClosedError("the WebSocket connection is closed")

    def _send_message(self, opcode: Opcode, payload: bytes) -> None:
        # §5.5.1: "After sending a Close frame, the application MUST NOT send any
        # more data frames."
        self._check_can_send()
        if self.deflate is not None and self.deflate.should_compress(len(payload)):
            # RFC 7692 §6: a compressed message has RSV1 set on its first frame.
            self._output.append(build_frame(opcode, self.deflate.compress(payload), rsv1=True))
        elif len(payload) >= SEPARATE_PAYLOAD:
            self._output += (frame_header(opcode, len(payload)), payload)
        else:
            self._output.append(build_frame(opcode, payload))

    def _send_close_frame(self, payload: bytes) -> None:
        self._output.append(build_frame(Opcode.CLOSE, payload))
        self.close_sent = True

    # -- State -----------------------------------------------------------------------------

    def _is_reading(self) -> bool:
        return self.state is not _CLOSED and self._held_close is None

    def _set_state(self, state: State) -> None:
        if state not in _TRANSITIONS[self.state]:
            raise RuntimeError(f"invalid transition {self.state.name} -> {state.name}")
        self.state = state

    def _stop_reading(self, code: int, reason: str) -> None:
        """Report Closed, once, and drop everything kept for reading."""
        self._events.append(Closed(code, reason))
        self._buffer = b""
        self.input_held = False
        self._frame = None
        self._message = None

    def _enter_closed(self) -> None:
        self._set_state(State.CLOSED)
        if self.deflate is not None:
            self.deflate.close()

    def _close(self, code: int, reason: str) -> None:
        self._stop_reading(code, reason)
        self._enter_closed()

    def _messages_pending(self) -> bool:
        """Whether messages were reported that the application has not collected."""
        return any(isinstance(event, TextMessage | BytesMessage) for event in self._events)

    def _fail(self, code: int, reason: str, *, hold: bool) -> None:
        """§7.1.7 "Fail the WebSocket Connection": send a close frame if we have
        not yet ("the endpoint SHOULD send a Close frame with an appropriate
        status code"), stop reading, and close TCP. With ``hold``, the close
        frame waits for the application to see Closed (module docstring)."""
        self._stop_reading(code, reason)
        if hold and not self.close_sent:
            self._held_close = encode_close(code, reason)
            return
        if not self.close_sent:
            self._send_close_frame(encode_close(code, reason))
        self._enter_closed()

    def _release_failure(self) -> None:
        assert self._held_close is not None
        self._send_close_frame(self._held_close)
        self._held_close = None
        self._enter_closed()

    # -- Parsing ---------------------------------------------------------------------------

    def _parse(self, buf: bytes) -> int:
        """Consume as much of ``buf`` as possible; return how far it got."""
        pos, end = 0, len(buf)
        while pos < end and self._is_reading():
            if self._frame is not None:
                pos = self._read_payload(buf, pos, end)
                continue
            if self._budget == 0:
                self.input_held = True  # the caller's queue is full: leave the rest for later
                break
            header = parse_header(buf, pos)
            if header is None:
                break
            if header.opcode >= 0x8:
                stop = pos + header.size + header.length
                if stop > end:
                    break  # control frames are small: wait for the whole frame
                self._on_control_frame(header, buf[pos + header.size : stop])
                pos = stop
            else:
                pos = self._on_data_header(header, buf, pos)
        return pos

    def _on_data_header(self, header: FrameHeader, buf: bytes, pos: int) -> int:
        self._check_data_frame(header)
        self._begin_frame(header)
        return pos + header.size

    def _check_data_frame(self, header: FrameHeader) -> None:
        # §5.2: RSV1-3 "MUST be 0 unless an extension is negotiated that defines
        # meanings for non-zero values."
        if header.rsv2 or header.rsv3:
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "reserved bits set")
        # RFC 7692 §6.1: "An endpoint MUST NOT set the 'Per-Message Compressed'
        # bit of control frames and non-first fragments of a data message."
        if header.rsv1 and (self.deflate is None or header.opcode is Opcode.CONTINUATION):
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "unexpected RSV1 bit")
        if header.opcode is Opcode.CONTINUATION:
            if self._message is None:
                raise ProtocolError(CloseCode.PROTOCOL_ERROR, "no message to continue")
        elif self._message is not None:
            # §5.4: "The fragments of one message MUST NOT be interleaved between
            # the fragments of another message."
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "expected a continuation frame")

    def _begin_frame(self, header: FrameHeader) -> None:
        if header.opcode is not Opcode.CONTINUATION:
            is_text = header.opcode is Opcode.TEXT
            inflater = self.deflate if header.rsv1 else None
            self._message = IncomingMessage(is_text, self.max_size, inflater)
        if not self.close_sent:
            assert self._message is not None
            self._message.check_frame_length(header.length)
        self._frame = header
        self._frame_left = header.length
        self._mask = header.mask
        if not header.length:
            self._end_frame(header)

    def _read_payload(self, buf: bytes, pos: int, end: int) -> int:
        """Unmask and consume the next piece of the current data frame's payload."""
        assert self._frame is not None
        assert self._message is not None
        size = min(end - pos, self._frame_left)
        if not self.close_sent:
            # §5.5.1: after our close frame, incoming data is discarded unread.
            self._message.feed(_mask.apply_mask(memoryview(buf)[pos : pos + size], self._mask))
        self._frame_left -= size
        shift = size & 3
        if shift:
            self._mask = self._mask[shift:] + self._mask[:shift]
        if not self._frame_left:
            self._end_frame(self._frame)
        return pos + size

    def _end_frame(self, header: FrameHeader) -> None:
        self._frame = None
        if not header.fin:
            return
        message, self._message = self._message, None
        if message is None or self.close_sent:
            return
        data = message.finish()
        if isinstance(data, str):
            self._events.append(TextMessage(data))
            self._budget -= 1
        else:
            self._events.append(BytesMessage(data))
            self._budget -= 1

    def _on_control_frame(self, header: FrameHeader, masked: bytes) -> None:
        if header.rsv1 or header.rsv2 or header.rsv3:
            # §5.2: no negotiated extension gives control frames reserved bits.
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "reserved bits set on a control frame")
        payload = _mask.apply_mask(masked, header.mask)
        if header.opcode is Opcode.PING:
            self._on_ping(payload)
        elif header.opcode is Opcode.PONG:
            self._events.append(PongReceived(payload))
        else:
            self._on_close(payload)

    def _on_ping(self, payload: bytes) -> None:
        # §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame
        # in response, unless it already received a Close frame." §5.5.3: the pong
        # "MUST have identical 'Application data'".
        self._output.append(build_frame(Opcode.PONG, payload))
        self._events.append(PingReceived(payload))

    def _on_close(self, payload: bytes) -> None:
        code, reason = decode_close(payload)
        self.close_received = True
        if not self.close_sent:
            # §5.5.1: "If an endpoint receives a Close frame and did not previously
            # send a Close frame, the endpoint MUST send a Close frame in response.
            # (When sending a Close frame in response, the endpoint typically echos
            # the status code it received.)"
            self._send_close_frame(encode_close(code) if payload else b"")
        self._close(code, reason)
