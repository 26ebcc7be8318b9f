"""TLS: the server's certificate, reloaded without a restart, and what each handshake agreed.

New connections get the certificate loaded last; open ones carry on with the one they
started with. A new pair that does not load (half written, key and certificate that do not
match, a wrong password) is logged and the one in use is kept.
"""

from __future__ import annotations

import os
import ssl
from typing import Any, Final

from asgisock.asgi.tls import tls_extension
from asgisock.config import Config
from asgisock.logging import error_logger

__all__ = ["Certificates", "ServerContext", "connection_tls"]

CERT_REQS: Final = (ssl.CERT_NONE, ssl.CERT_OPTIONAL, ssl.CERT_REQUIRED)
"""``--ssl-cert-reqs`` 0, 1 and 2, as uvicorn numbers them (the ``ssl`` module's own values)."""
_PEM_BEGIN: Final = "-----BEGIN CERTIFICATE-----"
_PEM_END: Final = "-----END CERTIFICATE-----"


class ServerContext(ssl.SSLContext):
    """A server context that remembers what the ``tls`` extension needs of it."""

    server_cert: str | None
    """The server's own certificate as PEM (the first of its chain file)."""
    cipher_ids: dict[str, int]
    """OpenSSL cipher names as their 16-bit IANA numbers."""


class Certificates:
    """The current :class:`ServerContext`, rebuilt when the files change or on request."""

    def __init__(self, config: Config) -> None:
        assert config.ssl_certfile is not None
        self.config = config
        self.files = [path for path in (config.ssl_certfile, config.ssl_keyfile, config.ssl_ca_certs) if path]
        self.stamps = self._stamps()
        self.current = self._load()

    def check(self) -> bool:
        """Reload if a file changed since the last look; whether a new context is in use."""
        stamps = self._stamps()
        if stamps == self.stamps:
            return False
        self.stamps = stamps
        return self.reload()

    def reload(self) -> bool:
        try:
            context = self._load()
        except (OSError, ssl.SSLError, ValueError) as exc:
            error_logger.error("Keeping the current TLS certificate: cannot load %s: %s",
                               self.config.ssl_certfile, exc)
            return False
        self.current = context
        error_logger.info("Loaded a new TLS certificate from %s", self.config.ssl_certfile)
        return True

    def _stamps(self) -> list[tuple[int, int, int] | None]:
        stamps: list[tuple[int, int, int] | None] = []
        for path in self.files:
            try:
                info = os.stat(path)
            except OSError:
                stamps.append(None)
            else:
                stamps.append((info.st_mtime_ns, info.st_size, info.st_ino))
        return stamps

    def _load(self) -> ServerContext:
        config = self.config
        assert config.ssl_certfile is not None
        context = ServerContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(config.ssl_certfile, config.ssl_keyfile, config.ssl_keyfile_password)
        if config.ssl_ciphers:
            context.set_ciphers(config.ssl_ciphers)
        context.verify_mode = CERT_REQS[config.ssl_cert_reqs]
        if config.ssl_ca_certs:
            context.load_verify_locations(config.ssl_ca_certs)
        context.set_alpn_protocols(["http/1.1"])
        context.server_cert = _first_pem(config.ssl_certfile)
        context.cipher_ids = {cipher["name"]: cipher["id"] & 0xFFFF for cipher in context.get_ciphers()}
        return context


def _first_pem(path: str) -> str | None:
    with open(path, encoding="ascii", errors="replace") as file:
        text = file.read()
    start = text.find(_PEM_BEGIN)
    end = text.find(_PEM_END, start)
    return None if start < 0 or end < 0 else text[start : end + len(_PEM_END)] + "\n"


def connection_tls(ssl_object: ssl.SSLObject, context: Any) -> dict[str, Any]:
    """The ``tls`` extension of a connection whose handshake is done."""
    server_cert = getattr(context, "server_cert", None)
    cipher_ids: dict[str, int] = getattr(context, "cipher_ids", {})
    chain: list[bytes] = []
    leaf = ssl_object.getpeercert(binary_form=True)
    sent = getattr(ssl_object, "get_unverified_chain", None)  # Python 3.13: the chain as sent, as DER
    if leaf and sent is not None:
        chain = list(sent() or [])
    elif leaf:
        chain = [leaf]
    # Without a peer certificate, 3.13.0's get_unverified_chain() fails on a None in the chain
    # it reads from OpenSSL, so it is only asked for when there is one.
    cipher = ssl_object.cipher()
    return tls_extension(server_cert=server_cert, client_chain=chain, version=ssl_object.version(),
                         cipher_suite=cipher_ids.get(cipher[0]) if cipher else None)
