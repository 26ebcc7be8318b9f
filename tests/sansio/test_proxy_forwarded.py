"""Tests of the client behind trusted proxies: X-Forwarded-* and RFC 7239 Forwarded."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgisock.proxy.forwarded import Forwarding, TrustedProxies, resolve

LOCAL = TrustedProxies("127.0.0.1")
CHAIN = TrustedProxies("127.0.0.1, 10.0.0.0/8, fd00::/8")


def headers(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode("latin-1")) for name, value in pairs]


# -- which peers are trusted --------------------------------------------------------------


@pytest.mark.parametrize(("spec", "host", "trusted"), [
    ("127.0.0.1", "127.0.0.1", True), ("127.0.0.1", "127.0.0.2", False),
    ("10.0.0.0/8", "10.200.1.1", True), ("10.0.0.0/8", "11.0.0.1", False),
    ("::1", "::1", True), ("fd00::/8", "fd12::1", True), ("*", "203.0.113.9", True),
    ("127.0.0.1", None, True), ("10.0.0.1", None, False), ("10.0.0.1, unix:", None, True), ("*", None, True),
    ("127.0.0.1", "unknown", False), ("*", "_hidden", True), ("127.0.0.1", "", False),
])
def test_trust(spec: str, host: str | None, trusted: bool) -> None:
    assert TrustedProxies(spec).trusts(host) is trusted


@pytest.mark.parametrize("spec", ["127.0.0.1, nonsense", "10.0.0.0/33", "localhost"])
def test_a_bad_trust_list_names_the_item(spec: str) -> None:
    with pytest.raises(ValueError, match="is not an IP address"):
        TrustedProxies(spec)


# -- X-Forwarded-* ------------------------------------------------------------------------


@pytest.mark.parametrize(("peer", "pairs", "expected"), [
    ("127.0.0.1", [("X-Forwarded-For", "203.0.113.7")], Forwarding(client=("203.0.113.7", 0))),
    # rightmost untrusted wins: what the client wrote to the left is never read
    ("127.0.0.1", [("X-Forwarded-For", "6.6.6.6, 203.0.113.7")], Forwarding(client=("203.0.113.7", 0))),
    # trusted proxies are walked over, across several header lines
    ("127.0.0.1", [("X-Forwarded-For", "203.0.113.7, 10.1.1.1"), ("X-Forwarded-For", "10.2.2.2")],
     Forwarding(client=("203.0.113.7", 0))),
    # every hop trusted: the leftmost is the client
    ("127.0.0.1", [("X-Forwarded-For", "10.1.1.1, 10.2.2.2")], Forwarding(client=("10.1.1.1", 0))),
    ("127.0.0.1", [("X-Forwarded-For", "[2001:db8::1]:4711")], Forwarding(client=("2001:db8::1", 4711))),
    ("127.0.0.1", [("X-Forwarded-For", "2001:db8::1")], Forwarding(client=("2001:db8::1", 0))),
    ("127.0.0.1", [("X-Forwarded-For", "203.0.113.7:1234")], Forwarding(client=("203.0.113.7", 1234))),
    ("127.0.0.1", [("X-Forwarded-Proto", "https")], Forwarding(scheme=("https", "wss"))),
    ("127.0.0.1", [("X-Forwarded-Proto", "WSS")], Forwarding(scheme=("https", "wss"))),
    ("127.0.0.1", [("X-Forwarded-Proto", "ws")], Forwarding(scheme=("http", "ws"))),
    ("127.0.0.1", [("X-Forwarded-Proto", "gopher")], None),
    # one proto per hop: the chosen hop's
    ("127.0.0.1", [("X-Forwarded-For", "203.0.113.7, 10.1.1.1"), ("X-Forwarded-Proto", "https, http")],
     Forwarding(client=("203.0.113.7", 0), scheme=("https", "wss"))),
    # one proto for a longer chain: the nearest proxy's
    ("127.0.0.1", [("X-Forwarded-For", "203.0.113.7, 10.1.1.1"), ("X-Forwarded-Proto", "https")],
     Forwarding(client=("203.0.113.7", 0), scheme=("https", "wss"))),
    ("127.0.0.1", [("X-Forwarded-Port", "8443")], Forwarding(port=8443)),
    ("127.0.0.1", [("X-Forwarded-Port", "99999")], None),
    # X-Forwarded-Host only with --forwarded-host (see below)
    ("127.0.0.1", [("X-Forwarded-Host", "example.com")], None),
])
def test_x_forwarded(peer: str, pairs: list[tuple[str, str]], expected: Forwarding | None) -> None:
    assert resolve(peer, headers(*pairs), CHAIN) == expected


def test_x_forwarded_host_is_opt_in() -> None:
    forwarding = resolve("127.0.0.1", headers(("X-Forwarded-Host", "example.com:8080")), CHAIN, use_host=True)
    assert forwarding == Forwarding(host=b"example.com:8080")
    assert resolve("127.0.0.1", headers(("X-Forwarded-Host", "bad host")), CHAIN, use_host=True) is None


@pytest.mark.parametrize("value", [
    "1.2.3.4, evil", "evil", "1.2.3.4, <script>", "999.1.1.1", "1.2.3.4:99999", "", "1.2.3.4,", "\u00e9",
    "[::1", "1.2.3.4 5.6.7.8",
])
def test_malformed_x_forwarded_for_is_ignored_whole(value: str) -> None:
    assert resolve("127.0.0.1", headers(("X-Forwarded-For", value)), TrustedProxies("127.0.0.1, 1.2.3.4")) is None


@given(st.lists(st.ip_addresses(v=4).map(str), min_size=1, max_size=6), st.text(max_size=40))
def test_an_untrusted_peer_never_chooses_its_client(chain: list[str], junk: str) -> None:
    """From an untrusted peer nothing is read; behind a trusted proxy, the client is at most
    as far left as the first untrusted hop the proxies appended."""
    pairs = [("X-Forwarded-For", ", ".join([junk, *chain])), ("Forwarded", f"for={junk}")]
    assert resolve("203.0.113.1", headers(*[(n, v.encode("latin-1", "replace").decode("latin-1"))
                                             for n, v in pairs]), LOCAL) is None
    forwarding = resolve("127.0.0.1", headers(("X-Forwarded-For", ", ".join(chain))), CHAIN)
    assert forwarding is not None and forwarding.client is not None
    untrusted = [host for host in chain if not CHAIN.trusts(host)]
    assert forwarding.client[0] == (untrusted[-1] if untrusted else chain[0])


# -- RFC 7239 Forwarded -------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("for=203.0.113.7", Forwarding(client=("203.0.113.7", 0))),
    ("For=203.0.113.7;Proto=HTTPS", Forwarding(client=("203.0.113.7", 0), scheme=("https", "wss"))),
    ('for="[2001:db8:cafe::17]:4711"', Forwarding(client=("2001:db8:cafe::17", 4711))),
    ('for="203.0.113.7:8080";proto=https;by=10.0.0.1', Forwarding(client=("203.0.113.7", 8080),
                                                                  scheme=("https", "wss"))),
    # several elements: walked from the right over trusted proxies
    ("for=6.6.6.6, for=203.0.113.7, for=10.1.1.1", Forwarding(client=("203.0.113.7", 0))),
    ("for=203.0.113.7;proto=https, for=10.1.1.1;proto=http",
     Forwarding(client=("203.0.113.7", 0), scheme=("https", "wss"))),
    # RFC 7239 §6.2 / §6.3: the proxy does not say who the client is
    ("for=unknown", Forwarding(client_unknown=True)),
    ("for=_hidden;proto=https", Forwarding(scheme=("https", "wss"), client_unknown=True)),
    ('for="_gazonk:_4711", for=10.1.1.1', Forwarding(client_unknown=True)),
    ("proto=https", Forwarding(scheme=("https", "wss"), client_unknown=True)),
    # a quoted comma stays inside its value, which is then no address: ignored whole
    ('for="1.2.3.4, evil"', None),
    ("for=1.2.3.4;for=5.6.7.8", None),
    ("for=", None),
    ("for=1.2.3.4 junk", None),
    ('for="\\"quoted"', None),
])
def test_forwarded(value: str, expected: Forwarding | None) -> None:
    assert resolve("127.0.0.1", headers(("Forwarded", value)), CHAIN) == expected


def test_forwarded_over_several_lines_and_host() -> None:
    pairs = headers(("Forwarded", "for=203.0.113.7;host=example.com"), ("Forwarded", "for=10.1.1.1"))
    assert resolve("127.0.0.1", pairs, CHAIN, use_host=True) == Forwarding(
        client=("203.0.113.7", 0), host=b"example.com")


def test_x_forwarded_wins_over_forwarded() -> None:
    pairs = headers(("Forwarded", "for=6.6.6.6;proto=https"), ("X-Forwarded-For", "203.0.113.7"))
    assert resolve("127.0.0.1", pairs, CHAIN) == Forwarding(client=("203.0.113.7", 0))


def test_untrusted_peer_is_not_read() -> None:
    assert resolve("203.0.113.1", headers(("X-Forwarded-For", "1.1.1.1")), LOCAL) is None
    assert resolve(None, headers(("Forwarded", "for=1.1.1.1")), TrustedProxies("10.0.0.1")) is None


@given(st.binary(max_size=200))
def test_any_header_value_never_crashes(value: bytes) -> None:
    for name in (b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port"):
        resolve("127.0.0.1", [(name, value)], TrustedProxies("*"), use_host=True)


def test_oversized_lists_are_walked_in_linear_time() -> None:
    chain = ", ".join(["10.0.0.1"] * 20000)
    assert resolve("127.0.0.1", headers(("X-Forwarded-For", chain)), CHAIN) == Forwarding(client=("10.0.0.1", 0))
