"""The client behind trusted proxies, from ``X-Forwarded-*`` and RFC 7239 ``Forwarded``.

A proxy appends to a forwarding header what it saw of its own peer, so the header reads, left
to right, from the client to the last proxy; everything left of what a trusted proxy appended
may have been written by the client. So the list is walked from the right, skipping proxies
that are trusted, and the first address that is not trusted is the client: an untrusted peer
can never choose its ``client``, whatever it puts in the header. Headers from a peer that is
not trusted are not read at all (they still reach the app untouched).

When a request carries both ``X-Forwarded-For`` and ``Forwarded``, ``X-Forwarded-*`` wins. The
proxies most deployments run (nginx's usual configuration, cloud load balancers, Traefik,
HAProxy's ``option forwardfor``) append to ``X-Forwarded-For`` and pass a client's own
``Forwarded`` through untouched, so when both are present ``Forwarded`` is the one the client
may have written. A proxy that writes ``Forwarded`` should remove ``X-Forwarded-*``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

from asgisock.http11.headers import HOST_RE

__all__ = ["Forwarding", "TrustedProxies", "resolve"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAX_SEEN: Final = 4096
"""Addresses whose trust is remembered; past that many, each new one is worked out afresh."""

_SCHEMES: Final = {
    b"http": ("http", "ws"), b"https": ("https", "wss"), b"ws": ("http", "ws"), b"wss": ("https", "wss"),
}
"""A forwarded protocol as the scope's ``scheme`` of an HTTP and of a WebSocket request."""

_NODE: Final = re.compile(
    r"(?P<ip4>\d{1,3}(?:\.\d{1,3}){3})(?::(?P<port4>\d{1,5}))?"
    r"|\[(?P<ip6>[0-9A-Fa-f:.]+)\](?::(?P<port6>\d{1,5}))?"
    r"|(?P<ip6bare>[0-9A-Fa-f]*:[0-9A-Fa-f:.]*)"
)
"""An address in a forwarding list: IPv4 or bracketed IPv6, each with an optional port
(RFC 7239 §6); ``X-Forwarded-For`` also carries bare IPv6."""

_TOKEN: Final = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PAIR: Final = re.compile(rb"[ \t]*(" + _TOKEN + rb")=(" + _TOKEN + rb'|"(?:[^"\\]|\\.)*")[ \t]*')
"""RFC 7239 §4: ``forwarded-pair = token "=" value``, ``value = token / quoted-string``."""


class TrustedProxies:
    """``--forwarded-allow-ips``: IP addresses and networks, ``*`` for every peer.

    A peer on a UNIX socket has no address; it is trusted as loopback is, since both can only
    be reached from this machine (and by ``unix:``, for a list that trusts no loopback).
    """

    def __init__(self, spec: str) -> None:
        self.everyone = False
        self.unix = False
        self.networks: list[IPNetwork] = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            if item == "*":
                self.everyone = True
            elif item == "unix:":
                self.unix = True
            else:
                try:
                    self.networks.append(ipaddress.ip_network(item, strict=False))
                except ValueError:
                    raise ValueError(f"{item!r} is not an IP address, a network, '*' or 'unix:'") from None
        self.unix = self.unix or self.everyone or any(net.is_loopback for net in self.networks)
        self._seen: dict[str, bool] = {}
        """Answers for the addresses met so far: a server sees the same few proxies (or clients)
        over and over, and parsing an address costs more than the rest of accepting a connection."""

    def trusts(self, host: str | None) -> bool:
        """Whether a peer (``None``: on a UNIX socket) or a forwarded address is a trusted proxy."""
        if host is None:
            return self.unix
        known = self._seen.get(host)
        if known is not None:
            return known
        trusted = self._check(host)
        if len(self._seen) < _MAX_SEEN:
            self._seen[host] = trusted
        return trusted

    def _check(self, host: str) -> bool:
        if self.everyone:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)


@dataclass(frozen=True)
class Forwarding:
    """What the trusted proxies say; ``None`` fields leave the scope as the socket made it."""

    client: tuple[str, int] | None = None
    scheme: tuple[str, str] | None = None
    """The scope's scheme for an HTTP request and for a WebSocket request."""
    host: bytes | None = None
    """The ``Host`` the app should see (``--forwarded-host``)."""
    port: int | None = None
    """The port the client connected to at the proxy (``X-Forwarded-Port``), for ``server``."""
    client_unknown: bool = False
    """The proxy said it does not know the client (``for=unknown`` or an obfuscated name)."""


def resolve(peer: str | None, headers: list[tuple[bytes, bytes]], trusted: TrustedProxies, *,
            use_host: bool = False) -> Forwarding | None:
    """The forwarding a request's headers carry, or ``None`` when there is none to honour.

    ``peer`` is the socket peer's IP address (``None`` on a UNIX socket). Malformed headers are
    ignored as a whole rather than half read.
    """
    if not trusted.trusts(peer):
        return None
    fields: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        lower = name.lower()
        if lower.startswith(b"x-forwarded-") or lower == b"forwarded":
            fields.setdefault(lower, []).append(value)
    if not fields:
        return None
    if b"x-forwarded-for" in fields or b"x-forwarded-proto" in fields:
        return _x_forwarded(fields, trusted, use_host)
    if b"forwarded" in fields:
        return _forwarded(fields[b"forwarded"], trusted, use_host)
    return _x_forwarded(fields, trusted, use_host)


# -- X-Forwarded-* ------------------------------------------------------------------------


def _members(lines: list[bytes] | None) -> list[str]:
    """A comma list over every line of a field, as text (ASCII only: anything else is junk)."""
    if not lines:
        return []
    try:
        text = b",".join(lines).decode("ascii")
    except UnicodeDecodeError:
        return ["\0"]  # refused by every check below
    return [member.strip() for member in text.split(",")]


def _x_forwarded(fields: dict[bytes, list[bytes]], trusted: TrustedProxies, use_host: bool) -> Forwarding | None:
    chain = _members(fields.get(b"x-forwarded-for"))
    nodes = [_node(member) for member in chain]
    index = _walk(nodes, trusted)
    if chain and index is None:
        return None  # malformed: ignore the forwarding as a whole
    client = None if index is None else nodes[index]
    scheme = _aligned(_members(fields.get(b"x-forwarded-proto")), index, len(chain))
    port = _aligned(_members(fields.get(b"x-forwarded-port")), index, len(chain))
    host = _aligned(_members(fields.get(b"x-forwarded-host")), index, len(chain)) if use_host else None
    return _forwarding(client, scheme, host, port, unknown=False)


def _aligned(values: list[str], index: int | None, length: int) -> str | None:
    """The value a proxy recorded for the chosen hop: by position when each hop recorded one,
    else the last, which the nearest (trusted) proxy wrote."""
    if not values:
        return None
    if index is not None and len(values) == length:
        return values[index]
    return values[-1]


def _walk(nodes: list[tuple[str, int] | None], trusted: TrustedProxies) -> int | None:
    """The index of the client: the rightmost node that is not a trusted proxy (the leftmost
    when every node is trusted); ``None`` when that node is not an address."""
    for index in range(len(nodes) - 1, -1, -1):
        node = nodes[index]
        if node is None:
            return None
        if not trusted.trusts(node[0]) or index == 0:
            return index
    return None


def _node(text: str) -> tuple[str, int] | None:
    """An address with an optional port (0 when absent), or ``None`` when it is not one."""
    match = _NODE.fullmatch(text)
    if match is None:
        return None
    host = match["ip4"] or match["ip6"] or match["ip6bare"]
    port = int(match["port4"] or match["port6"] or 0)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return (host, port) if port <= 65535 else None


def _forwarding(client: tuple[str, int] | None, scheme: str | None, host: str | None, port: str | None, *,
                unknown: bool) -> Forwarding | None:
    schemes = _SCHEMES.get(scheme.lower().encode()) if scheme else None
    host_bytes = host.encode() if host and _valid_host(host) else None
    port_number = int(port) if port and port.isdigit() and len(port) <= 5 and int(port) <= 65535 else None
    forwarding = Forwarding(client, schemes, host_bytes, port_number, unknown)
    return None if forwarding == Forwarding() else forwarding


def _valid_host(host: str) -> bool:
    return bool(host) and HOST_RE.fullmatch(host.encode()) is not None


# -- RFC 7239 Forwarded -------------------------------------------------------------------


def _forwarded(lines: list[bytes], trusted: TrustedProxies, use_host: bool) -> Forwarding | None:
    elements = _elements(b",".join(lines))
    if not elements:
        return None
    nodes: list[tuple[str, int] | None] = []
    for element in elements:
        node = element.get("for")
        nodes.append(("unknown", 0) if node is None or _hidden(node) else _node(node))
    index = _walk_hidden(nodes, elements, trusted)
    if index is None:
        return None
    element = elements[index]
    node = element.get("for")
    unknown = node is None or _hidden(node)
    client = None if unknown else _node(node or "")
    return _forwarding(client, element.get("proto"), element.get("host") if use_host else None, None,
                       unknown=unknown)


def _walk_hidden(nodes: list[tuple[str, int] | None], elements: list[dict[str, str]],
                 trusted: TrustedProxies) -> int | None:
    """As :func:`_walk`; ``unknown`` and obfuscated nodes (RFC 7239 §6.2, §6.3) are never
    trusted proxies, so the walk stops at them."""
    for index in range(len(nodes) - 1, -1, -1):
        node = nodes[index]
        if node is None:
            return None
        hidden = node == ("unknown", 0)
        if hidden or not trusted.trusts(node[0]) or index == 0:
            return index
    return None


def _hidden(node: str) -> bool:
    """``unknown`` or an obfuscated identifier (``_`` then letters, digits, ``.``, ``_``, ``-``),
    with an optional port of either kind."""
    name = node.split(":", 1)[0] if not node.startswith("[") else ""
    return name == "unknown" or (name.startswith("_") and re.fullmatch(r"_[A-Za-z0-9._-]+", name) is not None)


def _elements(value: bytes) -> list[dict[str, str]] | None:
    """RFC 7239 §4: ``Forwarded = 1#forwarded-element``, each ``forwarded-pair *( ";" pair )``.
    ``None`` when the value does not parse: a quoted comma (``for="1.2.3.4, evil"``) stays in
    its value, which then is no address."""
    elements: list[dict[str, str]] = []
    pairs: dict[str, str] = {}
    pos = 0
    while pos < len(value):
        match = _PAIR.match(value, pos)
        if match is None:
            return None
        name = match[1].decode().lower()
        raw = match[2]
        text = re.sub(rb"\\(.)", rb"\1", raw[1:-1]) if raw[:1] == b'"' else raw
        try:
            decoded = text.decode("ascii")
        except UnicodeDecodeError:
            return None
        if name in pairs:
            return None  # §4: "Each parameter MUST NOT occur more than once per forwarded-element"
        pairs[name] = decoded
        pos = match.end()
        separator = value[pos : pos + 1]
        if separator == b";":
            pos += 1
        elif separator in (b",", b""):
            elements.append(pairs)
            pairs = {}
            pos += 1
            while value[pos : pos + 1] in (b" ", b"\t", b","):
                pos += 1
        else:
            return None
    return elements
