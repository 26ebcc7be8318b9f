"""Response bodies read from files: ASGI ``http.response.zerocopysend`` and ``pathsend``.

The HTTP cycle decides the order and the framing (the bytes before and after the file); this
module does the I/O. Over plain TCP the kernel sends the file itself (``os.sendfile``), on
either loop: uvloop has no ``loop.sendfile``, and asyncio's works only on its selector loop, so
the protocol does what they would, on a descriptor of its own for the socket. Over TLS the
bytes must pass through OpenSSL: there the file is read in chunks with ``os.pread`` and written
with the connection's write flow control, so that a slow reader holds the copy back exactly as
it holds back ``send()``.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from typing import TYPE_CHECKING, Any, Final

from asgisock.exceptions import ClientDisconnected

__all__ = ["FILE_CHUNK", "FileBodies"]

FILE_CHUNK: Final = 64 * 1024
"""Bytes read at once when the file is copied through the process: as much as the transport's
write buffer holds before it pauses. Pieces of 256 KiB land in freshly mapped memory on uvloop:
96 page faults per 1 MiB response against none, and more CPU per response in every run
measured (450-560 µs against 270-480 µs, one client, on a busy machine)."""
UNPAUSED_SHARE: Final = 2 * FILE_CHUNK
"""Bytes the copy writes without a pause before it lets the loop run once: so that other
connections get their turn, and so that a connection that died under the writes is noticed
(its loss reaches the protocol as a callback of the loop; until then, asyncio's TLS transport
takes the writes and its socket logs a warning for each past the fifth)."""


class FileBodies:
    """The file side of :class:`~asgisock.asgi.http_cycle.CycleOwner`, mixed into the HTTP protocol.

    The protocol provides ``loop``, ``transport``, ``tls``, ``closed``, ``write_paused``,
    ``drain_waiters``, ``write()`` and ``drain()`` (:class:`~asgisock.transport.flow.WriteFlow`), and the two
    halves of its reading state, ``_hold_reading()`` and ``_update_reading()``.
    """

    __slots__ = ()  # the protocol that mixes this in has the slots

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    tls: dict[str, Any] | None
    closed: bool
    write_paused: bool
    drain_waiters: list[asyncio.Future[None]]

    if TYPE_CHECKING:  # the protocol's own, declared here for the type checker only
        def write(self, data: bytes) -> None: ...
        async def drain(self) -> None: ...
        def _hold_reading(self) -> None: ...
        def _update_reading(self) -> None: ...

    def open_file(self, path: Any) -> tuple[int, int]:
        """Open the file at ``path`` for ``pathsend``: its descriptor and size.

        ASGI: "the string representation of the absolute file path"; a relative one would be
        resolved against whatever directory the server runs in, so it is refused.
        """
        if type(path) is not str:
            raise TypeError(f"the path must be a str, not {type(path).__name__}")
        if not os.path.isabs(path):
            raise ValueError("the path is not absolute")
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return fd, _regular_size(fd)
        except BaseException:
            os.close(fd)
            raise

    def file_span(self, file: Any, offset: int | None, count: int | None) -> tuple[int, int, int]:
        """The descriptor of a ``zerocopysend`` file and the part of it to send.

        Without ``offset`` the part starts at the descriptor's position (as ``os.sendfile`` with
        no offset does); a ``count`` past the end of the file sends what there is, so that the
        framing announced matches the bytes sent.
        """
        fd = file if type(file) is int else file.fileno()
        size = _regular_size(fd)
        if offset is None:
            offset = os.lseek(fd, 0, os.SEEK_CUR)
        available = max(size - offset, 0)
        return fd, offset, available if count is None else min(count, available)

    def close_file(self, fd: int) -> None:
        os.close(fd)

    async def send_file(self, fd: int, offset: int, count: int) -> None:
        """Send ``count`` bytes of ``fd`` from ``offset``; the file's position ends after them."""
        if self.closed or self.transport.is_closing():
            raise ClientDisconnected("the client disconnected")
        if self.tls is None and await self._send_by_kernel(fd, offset, count):
            return
        await self._copy(fd, offset, count)

    async def _send_by_kernel(self, fd: int, offset: int, count: int) -> bool:
        """``os.sendfile`` straight to the socket; False when the kernel cannot send this file
        (nothing was sent then).

        What the transport already holds goes first: its buffer is emptied before the kernel
        writes. The kernel writes on a duplicate of the socket's descriptor, so that waiting for
        the socket to take more (``add_writer``) does not touch the loop's own poll of the
        transport's descriptor, which uvloop refuses to share. Reading is held meanwhile, as
        ``loop.sendfile`` does, and set back to what the connection needs afterwards.
        """
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return False
        await self._empty_write_buffer()
        out = os.dup(sock.fileno())
        self._hold_reading()
        try:
            return await self._sendfile(out, fd, offset, count)
        finally:
            os.close(out)
            self._update_reading()

    async def _sendfile(self, out: int, fd: int, offset: int, count: int) -> bool:
        start, end = offset, offset + count
        while offset < end:
            if self.closed or self.transport.is_closing():
                raise ClientDisconnected("the client disconnected")
            try:
                sent = os.sendfile(out, fd, offset, end - offset)
            except BlockingIOError:
                await self._writable(out)
                continue
            except OSError as exc:
                if exc.errno in _NO_SENDFILE and offset == start:
                    return False  # a file system the kernel cannot send from: copy it instead
                # The socket failed under the kernel's copy, which the transport never saw.
                self.transport.abort()
                raise ClientDisconnected("the client disconnected") from exc
            if sent == 0:
                raise OSError(f"the file ended {end - offset} bytes before the part announced")
            offset += sent
        os.lseek(fd, end, os.SEEK_SET)
        return True

    async def _empty_write_buffer(self) -> None:
        """Wait until the transport has written all it holds: with a high-water mark of 0 it
        pauses the protocol while anything is buffered and resumes it once the buffer is empty."""
        transport = self.transport
        if not transport.get_write_buffer_size():
            return
        low, high = transport.get_write_buffer_limits()
        transport.set_write_buffer_limits(high=0)
        try:
            while transport.get_write_buffer_size() and not self.closed:
                if self.write_paused:
                    await self.drain()
                else:
                    await asyncio.sleep(0)  # a transport that has not paused yet: let it write
        finally:
            if not self.closed:
                transport.set_write_buffer_limits(high=high, low=low)

    async def _writable(self, out: int) -> None:
        """Until the socket takes more, or the connection is lost (which wakes drain waiters)."""
        waiter = self.loop.create_future()
        self.drain_waiters.append(waiter)
        self.loop.add_writer(out, _wake, waiter)
        try:
            await waiter
        finally:
            self.loop.remove_writer(out)

    async def _copy(self, fd: int, offset: int, count: int) -> None:
        end = offset + count
        unpaused = 0
        while offset < end:
            data = os.pread(fd, min(FILE_CHUNK, end - offset), offset)
            if not data:
                raise OSError(f"the file ended {end - offset} bytes before the part announced")
            if self.closed or self.transport.is_closing():
                raise ClientDisconnected("the client disconnected")
            self.write(data)
            offset += len(data)
            if self.write_paused:
                await self.drain()
                unpaused = 0
            else:
                unpaused += len(data)
                if unpaused >= UNPAUSED_SHARE:
                    await asyncio.sleep(0)
                    unpaused = 0
        os.lseek(fd, end, os.SEEK_SET)


_NO_SENDFILE: Final = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP})
"""What ``sendfile(2)`` says when the file's file system cannot be sent from."""


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _regular_size(fd: int) -> int:
    """The size of the regular file ``fd`` (what ``os.sendfile`` can read); else ValueError."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("not a regular file")
    return info.st_size
