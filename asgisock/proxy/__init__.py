"""What a trusted proxy says about the client: forwarding headers and the PROXY protocol.

Sans-I/O, like ``http11/`` and ``ws/``: the transport hands in the peer's address and the bytes
or headers it read, and gets back the client, scheme and host to put in the scope.
"""

from asgisock.proxy.forwarded import Forwarding, TrustedProxies, resolve
from asgisock.proxy.protocol import ProxyHeader, ProxyProtocolError, ProxyProtocolParser

__all__ = [
    "Forwarding",
    "ProxyHeader",
    "ProxyProtocolError",
    "ProxyProtocolParser",
    "TrustedProxies",
    "resolve",
]
