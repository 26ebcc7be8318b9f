"""The listening sockets the settings describe, bound the way :meth:`loop.create_server` binds.

The single-process server binds here when it accepts connections itself (TLS, PROXY protocol);
the supervisor binds here once, before any worker starts, and hands the sockets down, so a
port is never free between two workers, and ``--port 0`` means one port for all of them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat

from asgisock.config import Config
from asgisock.exceptions import ConfigError


def bind_sockets(config: Config, *, port: int | None = None, reuse_port: bool = False,
                 listen: bool = True) -> list[socket.socket]:
    """Bind (and unless ``listen`` is False, listen on) the socket of ``--fd``, ``--uds`` or
    ``--host``/``--port`` (``port`` overrides the setting). With ``reuse_port`` several sockets
    share the address (``SO_REUSEPORT``), and the kernel spreads new connections over those
    that listen."""
    if config.fd is not None:
        sock = socket.socket(fileno=os.dup(config.fd))
    elif config.uds:
        sock = bind_unix(config.uds, config.uds_perms)
    else:
        sock = bind_tcp(config.host, config.port if port is None else port, reuse_port=reuse_port)
    if listen:
        sock.listen(config.backlog)
    return [sock]


def bind_tcp(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_unix(path: str, mode: int = 0o666) -> socket.socket:
    """A UNIX socket at ``path``, replacing a stale socket file but nothing else, with ``mode``
    (``--uds-perms``)."""
    if os.path.exists(path) and not stat.S_ISSOCK(os.stat(path).st_mode):
        raise ConfigError("--uds", f"{path} exists and is not a socket")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, mode)
    return sock


def describe_listener(config: Config, sockets: list[socket.socket]) -> str:
    """Where the server listens, as the start-up line says it: the real port for ``--port 0``."""
    if config.uds:
        return f"unix:{config.uds}"
    name = sockets[0].getsockname() if sockets else (config.host, config.port)
    if isinstance(name, str):
        return f"unix:{name}"
    host = f"[{name[0]}]" if ":" in name[0] else name[0]
    return f"{config.url_scheme}://{host}:{name[1]}"
