"""The certificate every server presents in the TLS scenarios, made afresh for each run.

A throwaway CA from ``trustme`` signs one certificate for ``127.0.0.1`` (and ``localhost``),
with trustme's default key type, ECDSA P-256. The files go to the run's temporary directory,
so nothing secret outlives the run. The key is written as PKCS#8, the one form every server
under test reads (granian reads no other).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Final

HOSTS: Final = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class TLSFiles:
    """PEM files: the CA the clients trust, the server's certificate chain and its key."""

    ca: Path
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        """A client context that verifies the server against the CA, as a browser would."""
        return ssl.create_default_context(cafile=str(self.ca))


def make(directory: Path) -> TLSFiles:
    """Issue a new CA and server certificate into ``directory``."""
    # Imported here: only the bench venv is sure to have trustme (and cryptography with it),
    # and bench/report.py imports this module's callers from any environment.
    import trustme
    from cryptography.hazmat.primitives import serialization

    ca = trustme.CA()
    issued = ca.issue_cert(*HOSTS)
    key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), password=None)
    files = TLSFiles(ca=directory / "ca.pem", cert=directory / "server.pem",
                     key=directory / "server.key")
    ca.cert_pem.write_to_path(str(files.ca))
    files.cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    files.key.chmod(0o600)
    return files
