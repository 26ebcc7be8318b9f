"""Hostile and odd HTTP/1.1 request streams, each with the exact outcome a strict server gives.

One table serves three readers: the sans-I/O tests (tests/sansio/test_http11_connection.py), the
end-to-end tests on a real socket (tests/transport/test_http_corpus.py) and the comparison with
other servers (``python -m tests.corpus.compare``). Each case is the raw bytes a client sends in
one go, what the app must see (nothing, for a rejected request), the status the server answers
on its own after the app's responses, and whether the connection must be closed afterwards.

The server under test runs with ``max_header_size=LIMIT`` so that the limit cases stay small.
"""

from __future__ import annotations

from dataclasses import dataclass

LIMIT = 8192
"""``max_header_size`` of the server the corpus runs against."""

HOST = b"Host: example.com\r\n"


@dataclass(frozen=True)
class Seen:
    """A request as the app sees it: each complete one is answered 200 by the test app."""

    method: str
    target: str = "/"
    """``raw_path``, then ``?`` and the ``query_string`` when there is one."""
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    """Fields the app must see (lower-case names), among others."""
    complete: bool = True
    """False: the head reached the app, then the body turned out malformed (no 200 then)."""


@dataclass(frozen=True)
class Case:
    name: str
    category: str
    data: bytes
    status: int | None = None
    """The server's own answer after the app's responses (an error), or None for none."""
    seen: tuple[Seen, ...] = ()
    close: bool = True
    """The connection must be closed after the responses; else it must serve another request."""
    why: str = ""

    @property
    def app_responses(self) -> int:
        return sum(1 for seen in self.seen if seen.complete)


def get(target: bytes = b"/", extra: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    return b"GET " + target + b" " + version + b"\r\n" + HOST + extra + b"\r\n"


def post(extra: bytes, body: bytes = b"") -> bytes:
    return b"POST / HTTP/1.1\r\n" + HOST + extra + b"\r\n" + body


def chunked(body: bytes) -> bytes:
    return post(b"Transfer-Encoding: chunked\r\n", body)


def rejected(name: str, category: str, data: bytes, status: int, why: str) -> Case:
    return Case(name, category, data, status=status, why=why)


def served(name: str, category: str, data: bytes, *seen: Seen, close: bool = False, why: str = "") -> Case:
    return Case(name, category, data, seen=seen, close=close, why=why)


def cut_short(name: str, category: str, data: bytes, seen: Seen, status: int, why: str) -> Case:
    """The head is valid and reaches the app; the body that follows is not."""
    return Case(name, category, data, status=status, seen=(seen,), why=why)


GET = Seen("GET")
POST_HEAD = Seen("POST", complete=False)

FRAMING = "Content-Length and Transfer-Encoding"
CL = "Content-Length value"
TE = "Transfer-Encoding value"
CHUNKS = "Chunked body"
LINES = "Line endings and folding"
FIELDS = "Field names and values"
LIMITS = "Size limits"
METHOD = "Method"
TARGET = "Request target"
VERSION = "HTTP version"
HOSTS = "Host"
PIPELINE = "Pipelining and connection reuse"
UPGRADE = "Upgrade and CONNECT"
EXPECT = "Expect"

CASES: tuple[Case, ...] = (
    # -- framing conflicts (RFC 9112 §6.3) ----------------------------------------------------
    rejected("cl-and-te", FRAMING, post(b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
             400, "RFC 9112 §6.3: both framings; the classic CL.TE/TE.CL smuggling vector"),
    rejected("te-and-cl", FRAMING, post(b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", b"0\r\n\r\n"),
             400, "the same, in the other order"),
    rejected("cl-duplicate-same", FRAMING, post(b"Content-Length: 3\r\nContent-Length: 3\r\n", b"abc"),
             400, "RFC 9112 §6.3 allows equal duplicates; refusing them leaves nothing to disagree on"),
    rejected("cl-duplicate-different", FRAMING, post(b"Content-Length: 3\r\nContent-Length: 4\r\n", b"abcd"),
             400, "RFC 9112 §6.3: differing lengths are unrecoverable"),
    rejected("cl-list", FRAMING, post(b"Content-Length: 3, 3\r\n", b"abc"), 400, "a list in one line"),
    cut_short("te-in-trailer", FRAMING, chunked(b"3\r\nabc\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"),
              POST_HEAD, 400, "framing fields are not allowed as trailers"),
    cut_short("cl-in-trailer", FRAMING, chunked(b"3\r\nabc\r\n0\r\nContent-Length: 3\r\n\r\n"),
              POST_HEAD, 400, "framing fields are not allowed as trailers"),
    # -- Content-Length values (RFC 9110 §8.6: 1*DIGIT) -----------------------------------------
    rejected("cl-plus", CL, post(b"Content-Length: +3\r\n", b"abc"), 400, "Python's int() accepts a sign"),
    rejected("cl-minus", CL, post(b"Content-Length: -1\r\n", b"a"), 400, "negative length"),
    rejected("cl-underscore", CL, post(b"Content-Length: 1_0\r\n", b"0123456789"), 400, "int() accepts 1_0"),
    rejected("cl-hex", CL, post(b"Content-Length: 0x3\r\n", b"abc"), 400, "hexadecimal"),
    rejected("cl-inner-space", CL, post(b"Content-Length: 1 0\r\n", b"0123456789"), 400, "two numbers"),
    rejected("cl-empty", CL, post(b"Content-Length: \r\n", b""), 400, "no digits"),
    rejected("cl-overflow", CL, post(b"Content-Length: 18446744073709551616\r\n", b"a"), 400, "2**64"),
    rejected("cl-fullwidth-digit", CL, post("Content-Length: \uff13\r\n".encode(), b"abc"), 400,
             "a Unicode digit, as int() reads it"),
    rejected("cl-vertical-tab", CL, post(b"Content-Length: \x0b3\r\n", b"abc"), 400, "a CTL as whitespace"),
    served("cl-surrounding-whitespace", CL, post(b"Content-Length:  3 \t\r\n", b"abc"),
           Seen("POST", body=b"abc", headers=(("content-length", "3"),)),
           why="RFC 9112 §5.1: OWS around a field value is not part of it"),
    served("cl-leading-zeros", CL, post(b"Content-Length: 003\r\n", b"abc"), Seen("POST", body=b"abc"),
           why="1*DIGIT allows leading zeros"),
    served("cl-zero", CL, post(b"Content-Length: 0\r\n"), Seen("POST")),
    served("cl-on-get", CL, get(b"/", b"Content-Length: 3\r\n") + b"abc", Seen("GET", body=b"abc"),
           why="a GET body is framed like any other, so the next request starts where it ends"),
    # -- Transfer-Encoding values (RFC 9112 §6.1, §7) -------------------------------------------
    rejected("te-chunked-then-gzip", TE, post(b"Transfer-Encoding: chunked, gzip\r\n", b"0\r\n\r\n"), 400,
             "RFC 9112 §6.3: chunked not final in a request; the length cannot be determined"),
    rejected("te-gzip-then-chunked", TE, post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"), 501,
             "RFC 9112 §6.1: a coding the server does not understand"),
    rejected("te-gzip", TE, post(b"Transfer-Encoding: gzip\r\n", b"0\r\n\r\n"), 400,
             "RFC 9112 §6.3: chunked not final (here absent): MUST 400"),
    rejected("te-identity", TE, post(b"Transfer-Encoding: identity\r\n", b"0\r\n\r\n"), 400,
             "identity was removed from HTTP/1.1; chunked not final"),
    rejected("te-twice-in-one-line", TE, post(b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"), 400,
             "RFC 9112 §6.1: chunked MUST NOT be applied twice"),
    rejected("te-two-lines", TE,
             post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), 400,
             "two field lines combine into chunked, chunked"),
    rejected("te-two-lines-chunked-first", TE,
             post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n", b"0\r\n\r\n"), 400,
             "combined: chunked, gzip"),
    rejected("te-two-lines-gzip-first", TE,
             post(b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), 501,
             "combined: gzip, chunked"),
    rejected("te-empty", TE, post(b"Transfer-Encoding: \r\n", b"0\r\n\r\n"), 400, "no coding"),
    rejected("te-empty-member", TE, post(b"Transfer-Encoding: ,chunked\r\n", b"0\r\n\r\n"), 400,
             "a spelling other parsers may not read as chunked"),
    rejected("te-quoted", TE, post(b'Transfer-Encoding: "chunked"\r\n', b"0\r\n\r\n"), 400,
             "not the token, so chunked is not final"),
    rejected("te-prefix", TE, post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"), 400,
             "not the token, so chunked is not final"),
    rejected("te-http10", TE, b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
             "RFC 9112 §6.1: faulty framing in HTTP/1.0"),
    rejected("te-space-before-colon", TE, post(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"), 400,
             "RFC 9112 §5.1: MUST reject whitespace between name and colon"),
    rejected("te-vertical-tab", TE, post(b"Transfer-Encoding:\x0bchunked\r\n", b"0\r\n\r\n"), 400, "CTL"),
    served("te-case-insensitive", TE, post(b"Transfer-Encoding: Chunked\r\n", b"3\r\nabc\r\n0\r\n\r\n"),
           Seen("POST", body=b"abc"), why="RFC 9112 §7: coding names are case-insensitive"),
    served("te-trailing-whitespace", TE, post(b"Transfer-Encoding: chunked \r\n", b"3\r\nabc\r\n0\r\n\r\n"),
           Seen("POST", body=b"abc"), why="trailing OWS is not part of the value"),
    # -- chunked bodies (RFC 9112 §7.1): the head is fine and reaches the app -------------------
    cut_short("chunk-size-plus", CHUNKS, chunked(b"+3\r\nabc\r\n0\r\n\r\n"), POST_HEAD, 400, "sign"),
    cut_short("chunk-size-minus", CHUNKS, chunked(b"-3\r\nabc\r\n0\r\n\r\n"), POST_HEAD, 400, "sign"),
    cut_short("chunk-size-0x", CHUNKS, chunked(b"0x3\r\nabc\r\n0\r\n\r\n"), POST_HEAD, 400, "int(x, 16) prefix"),
    cut_short("chunk-size-underscore", CHUNKS, chunked(b"1_0\r\n0123456789abcdef\r\n0\r\n\r\n"), POST_HEAD, 400,
              "int(x, 16) accepts 1_0"),
    cut_short("chunk-size-leading-space", CHUNKS, chunked(b" 3\r\nabc\r\n0\r\n\r\n"), POST_HEAD, 400, "whitespace"),
    cut_short("chunk-size-trailing-space", CHUNKS, chunked(b"3 \r\nabc\r\n0\r\n\r\n"), POST_HEAD, 400,
              "whitespace before CRLF, a known llhttp leniency (off)"),
    cut_short("chunk-size-overflow", CHUNKS, chunked(b"10000000000000000\r\nabc\r\n0\r\n\r\n"), POST_HEAD, 400,
              "2**64: wraps to 0 in a careless parser"),
    cut_short("chunk-size-empty", CHUNKS, chunked(b"\r\nabc\r\n0\r\n\r\n"), POST_HEAD, 400, "no digits"),
    cut_short("chunk-size-bare-lf", CHUNKS, chunked(b"3\nabc\r\n0\r\n\r\n"), POST_HEAD, 400, "LF without CR"),
    cut_short("chunk-data-too-long", CHUNKS, chunked(b"3\r\nabcX\r\n0\r\n\r\n"), POST_HEAD, 400,
              "data longer than its size"),
    cut_short("chunk-data-bare-lf", CHUNKS, chunked(b"3\r\nabc\n0\r\n\r\n"), POST_HEAD, 400, "LF without CR"),
    cut_short("chunk-data-no-crlf", CHUNKS, chunked(b"3\r\nabc0\r\n\r\n"), POST_HEAD, 400,
              "a missing CRLF after chunk data (a leniency some parsers have)"),
    cut_short("chunk-ext-empty", CHUNKS, chunked(b"3;\r\nabc\r\n0\r\n\r\n"), POST_HEAD, 400,
              "RFC 9112 §7.1.1: chunk-ext-name is a token"),
    cut_short("chunk-ext-bare-lf", CHUNKS, chunked(b"3;a\nb\r\nabc\r\n0\r\n\r\n"), POST_HEAD, 400,
              "a bare LF inside an extension hides a line from other parsers"),
    cut_short("chunk-ext-unterminated", CHUNKS, chunked(b"3;a=" + b"x" * (LIMIT + 100_000)), POST_HEAD, 400,
              "an extension without end: bounded like a request head (CVE-2024-22019)"),
    cut_short("trailer-invalid", CHUNKS, chunked(b"3\r\nabc\r\n0\r\nbad trailer\r\n\r\n"), POST_HEAD, 400,
              "field syntax applies to trailers"),
    cut_short("trailer-unterminated", CHUNKS, chunked(b"3\r\nabc\r\n0\r\nX-T: " + b"x" * (LIMIT + 100_000)),
              POST_HEAD, 431, "trailer fields are bounded like header fields"),
    served("chunk-size-uppercase-hex", CHUNKS, chunked(b"A\r\n0123456789\r\n0\r\n\r\n"),
           Seen("POST", body=b"0123456789"), why="HEXDIG is case-insensitive"),
    served("chunk-size-leading-zeros", CHUNKS, chunked(b"0003\r\nabc\r\n000\r\n\r\n"), Seen("POST", body=b"abc")),
    served("chunk-ext-token", CHUNKS, chunked(b"3;name=value;flag\r\nabc\r\n0\r\n\r\n"), Seen("POST", body=b"abc"),
           why="RFC 9112 §7.1.1: extensions are read and ignored"),
    served("chunk-ext-quoted", CHUNKS, chunked(b'3;name="a b"\r\nabc\r\n0\r\n\r\n'), Seen("POST", body=b"abc")),
    served("trailers-dropped", CHUNKS, chunked(b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n"),
           Seen("POST", body=b"abc"), why="RFC 9112 §7.1.2: trailers are never merged into the headers"),
    served("chunks-many-small", CHUNKS, chunked(b"1\r\na\r\n" * 50 + b"0\r\n\r\n"), Seen("POST", body=b"a" * 50)),
    # -- line endings and folding (RFC 9112 §2.2, §5.2) ------------------------------------------
    rejected("bare-cr-after-request-line", LINES, b"GET / HTTP/1.1\r" + HOST + b"\r\n", 400,
             "RFC 9112 §2.2: a bare CR MUST be rejected or replaced"),
    rejected("bare-cr-in-value", LINES, get(b"/", b"X-A: a\rX-B: b\r\n"), 400, "a bare CR inside a value"),
    rejected("bare-cr-end-of-field", LINES, get(b"/", b"X-A: a\r\r\n"), 400, "CR CR LF"),
    rejected("bare-lf-request-line", LINES, b"GET / HTTP/1.1\nHost: example.com\n\n", 400,
             "RFC 9112 §2.2 allows LF alone; refused, as proxies disagree on it"),
    rejected("bare-lf-field-line", LINES, get(b"/", b"X-A: a\nX-B: b\r\n"), 400, "a bare LF ends a field"),
    rejected("bare-lf-end-of-head", LINES, b"GET / HTTP/1.1\r\n" + HOST + b"\n", 400, "LF as the empty line"),
    rejected("obs-fold-space", LINES, get(b"/", b"X-A: a\r\n b\r\n"), 400,
             "RFC 9112 §5.2: obs-fold is rejected or replaced"),
    rejected("obs-fold-tab", LINES, get(b"/", b"X-A: a\r\n\tb\r\n"), 400, "the same with HTAB"),
    rejected("obs-fold-hides-te", LINES, post(b"X-A: a\r\n Transfer-Encoding: chunked\r\n", b"0\r\n\r\n"), 400,
             "a folded line that some read as a new field"),
    rejected("space-before-colon", LINES, get(b"/", b"X-A : a\r\n"), 400,
             "RFC 9112 §5.1: a server MUST reject whitespace between name and colon"),
    rejected("tab-before-colon", LINES, get(b"/", b"X-A\t: a\r\n"), 400, "the same with HTAB"),
    rejected("space-before-first-field", LINES, b"GET / HTTP/1.1\r\n " + HOST + b"\r\n", 400,
             "RFC 9112 §2.2: whitespace before the first field line MUST be rejected (or skipped)"),
    served("empty-lines-before-request", LINES, b"\r\n\r\n" + get(), GET,
           why="RFC 9112 §2.2: SHOULD ignore at least one empty line before the request line"),
    # -- field names and values (RFC 9110 §5) ----------------------------------------------------
    rejected("name-empty", FIELDS, get(b"/", b": a\r\n"), 400, "empty field name"),
    rejected("name-space", FIELDS, get(b"/", b"X A: a\r\n"), 400, "not a token"),
    rejected("name-nul", FIELDS, get(b"/", b"X\x00A: a\r\n"), 400, "NUL in the name"),
    rejected("name-separator", FIELDS, get(b"/", b"X(A): a\r\n"), 400, "not a token"),
    rejected("name-non-ascii", FIELDS, get(b"/", b"X\xffA: a\r\n"), 400, "obs-text is not allowed in names"),
    rejected("name-without-colon", FIELDS, get(b"/", b"X-A\r\n"), 400, "a line without a colon"),
    rejected("value-nul", FIELDS, get(b"/", b"X-A: a\x00b\r\n"), 400, "RFC 9110 §5.5: NUL is dangerous"),
    rejected("value-ctl", FIELDS, get(b"/", b"X-A: a\x01b\r\n"), 400, "a CTL"),
    rejected("value-escape", FIELDS, get(b"/", b"X-A: a\x1bb\r\n"), 400, "ESC (terminal injection into logs)"),
    rejected("value-del", FIELDS, get(b"/", b"X-A: a\x7fb\r\n"), 400, "DEL"),
    served("value-htab-inside", FIELDS, get(b"/", b"X-A: a\tb\r\n"), Seen("GET", headers=(("x-a", "a\tb"),)),
           why="HTAB is field-vchar whitespace"),
    served("value-obs-text", FIELDS, get(b"/", b"X-A: caf\xc3\xa9 \xff\r\n"),
           Seen("GET", headers=(("x-a", "caf\xc3\xa9 \xff"),)), why="RFC 9110 §5.5: obs-text is allowed"),
    served("value-empty", FIELDS, get(b"/", b"X-A:\r\n"), Seen("GET", headers=(("x-a", ""),))),
    served("value-whitespace-stripped", FIELDS, get(b"/", b"X-A: \t a b \t \r\n"),
           Seen("GET", headers=(("x-a", "a b"),)), why="RFC 9112 §5.1: leading and trailing OWS dropped"),
    served("name-case-folded", FIELDS, get(b"/", b"X-MiXeD: 1\r\n"), Seen("GET", headers=(("x-mixed", "1"),))),
    # -- size limits ---------------------------------------------------------------------------
    rejected("target-too-long", LIMITS, get(b"/" + b"a" * LIMIT), 414, "RFC 9112 §3: 414 URI Too Long"),
    rejected("field-too-large", LIMITS, get(b"/", b"X-A: " + b"a" * LIMIT + b"\r\n"), 431,
             "RFC 6585 §5: one field over the limit"),
    rejected("head-too-large", LIMITS, get(b"/", b"".join(b"X-%02d: %s\r\n" % (i, b"a" * 90) for i in range(95))),
             431, "each field small, the head too large"),
    rejected("too-many-fields", LIMITS, get(b"/", b"".join(b"X-%03d: a\r\n" % i for i in range(100))), 431,
             "more than 100 field lines"),
    rejected("head-never-ends", LIMITS, b"GET / HTTP/1.1\r\n" + HOST + b"X-A: " + b"a" * (LIMIT + 10), 431,
             "refused before the head is complete: memory stays bounded"),
    served("fields-at-the-limit", LIMITS, get(b"/", b"".join(b"X-%02d: a\r\n" % i for i in range(99))), GET,
           why="100 field lines with Host"),
    # -- method (RFC 9110 §9) --------------------------------------------------------------------
    rejected("method-unknown", METHOD, b"FOO / HTTP/1.1\r\n" + HOST + b"\r\n", 400,
             "llhttp knows a fixed list of methods; others are not told apart from garbage"),
    rejected("method-lowercase", METHOD, b"get / HTTP/1.1\r\n" + HOST + b"\r\n", 400, "methods are case-sensitive"),
    rejected("method-separator", METHOD, b"G(T / HTTP/1.1\r\n" + HOST + b"\r\n", 400, "not a token"),
    rejected("method-leading-space", METHOD, b" GET / HTTP/1.1\r\n" + HOST + b"\r\n", 400, "whitespace first"),
    rejected("method-tab-separated", METHOD, b"GET\t/ HTTP/1.1\r\n" + HOST + b"\r\n", 400, "HTAB is not SP"),
    rejected("tls-client-hello", METHOD, bytes.fromhex("160301020001") + b"\x00" * 32, 400, "TLS on a plain port"),
    served("method-extension", METHOD, b"PURGE / HTTP/1.1\r\n" + HOST + b"\r\n", Seen("PURGE")),
    served("method-query", METHOD, b"QUERY / HTTP/1.1\r\n" + HOST + b"\r\n", Seen("QUERY")),
    # -- request target (RFC 9112 §3.2) ----------------------------------------------------------
    rejected("target-space", TARGET, get(b"/a b"), 400, "SP inside the target"),
    rejected("target-nul", TARGET, get(b"/a\x00b"), 400, "NUL"),
    rejected("target-del", TARGET, get(b"/a\x7fb"), 400, "DEL"),
    rejected("target-non-ascii", TARGET, get("/caf\u00e9".encode()), 400, "raw UTF-8 must be percent-encoded"),
    rejected("target-fragment", TARGET, get(b"/a#b"), 400, "a fragment is never sent"),
    rejected("target-relative", TARGET, get(b"a/b"), 400, "not origin-form"),
    rejected("target-authority-form-get", TARGET, get(b"example.com:80"), 400, "authority-form is CONNECT's"),
    rejected("target-asterisk-get", TARGET, get(b"*"), 400, "RFC 9112 §3.2.4: only OPTIONS"),
    rejected("target-absolute-ftp", TARGET, get(b"ftp://example.com/"), 400, "not an http(s) URI"),
    rejected("target-absolute-userinfo", TARGET, get(b"http://user@example.com/"), 400,
             "RFC 9110 §4.2.4: userinfo is to be treated as an error"),
    rejected("target-absolute-no-host", TARGET, get(b"http:///a"), 400, "no authority"),
    served("target-asterisk-options", TARGET, b"OPTIONS * HTTP/1.1\r\n" + HOST + b"\r\n", Seen("OPTIONS", "*")),
    served("target-query", TARGET, get(b"/p?a=1&b=%20"), Seen("GET", "/p?a=1&b=%20")),
    served("target-double-slash", TARGET, get(b"//evil.example/p"), Seen("GET", "//evil.example/p"),
           why="a path, not an authority"),
    served("target-absolute-form", TARGET, b"GET http://other.example:8080/p?q=1 HTTP/1.1\r\n" + HOST + b"\r\n",
           Seen("GET", "/p?q=1", headers=(("host", "other.example:8080"),)),
           why="RFC 9112 §3.2.2: the target's authority replaces Host"),
    served("target-absolute-https-no-path", TARGET, b"GET https://other.example HTTP/1.1\r\n" + HOST + b"\r\n",
           Seen("GET", "/", headers=(("host", "other.example"),))),
    served("request-line-double-space", TARGET, b"GET  /  HTTP/1.1\r\n" + HOST + b"\r\n", GET,
           why="RFC 9112 §3 lets a recipient split on whitespace (llhttp does)"),
    # -- version (RFC 9112 §2.3, RFC 9110 §6.2) -------------------------------------------------
    rejected("http09", VERSION, b"GET /\r\n\r\n", 400, "RFC 9112 §3: no version is an invalid request-line"),
    rejected("http09-line-only", VERSION, b"GET /\r\n", 400,
             "what an HTTP/0.9 client sends before it waits: answered at once"),
    rejected("http09-with-fields", VERSION, b"GET /index.html\r\n" + HOST + b"\r\n", 400,
             "an invalid request-line, whatever follows"),
    rejected("version-empty", VERSION, b"GET / HTTP/\r\n\r\n", 400, "HTTP-version is HTTP/DIGIT.DIGIT"),
    rejected("version-major-only", VERSION, b"GET / HTTP/1\r\n\r\n", 400, "HTTP-version is HTTP/DIGIT.DIGIT"),
    rejected("version-2.0-no-host", VERSION, b"GET / HTTP/2.0\r\n\r\n", 505, "well-formed, not supported"),
    rejected("version-1.2-no-host", VERSION, b"GET / HTTP/1.2\r\n\r\n", 400,
             "RFC 9112 §2.3: served as 1.1, which needs Host"),
    rejected("version-lowercase-no-host", VERSION, b"GET / http/1.1\r\n\r\n", 400, "HTTP-name is case-sensitive"),
    rejected("version-0.9", VERSION, get(b"/", version=b"HTTP/0.9"), 400,
             "llhttp reads it as it reads no version at all: not an HTTP/1.x request-line"),
    rejected("version-2.0", VERSION, get(b"/", version=b"HTTP/2.0"), 505, "HTTP/2 needs its own framing"),
    rejected("version-3.0", VERSION, get(b"/", version=b"HTTP/3.0"), 505, "unknown major version"),
    rejected("version-9.9", VERSION, get(b"/", version=b"HTTP/9.9"), 505, "unknown major version"),
    rejected("version-lowercase", VERSION, get(b"/", version=b"http/1.1"), 400, "HTTP-name is case-sensitive"),
    rejected("version-two-digits", VERSION, get(b"/", version=b"HTTP/1.10"), 400, "DIGIT.DIGIT only"),
    rejected("version-no-dot", VERSION, get(b"/", version=b"HTTP/11"), 400, "DIGIT.DIGIT only"),
    rejected("version-trailing-space", VERSION, b"GET / HTTP/1.1 \r\n" + HOST + b"\r\n", 400, "SP before CRLF"),
    rejected("http2-preface", VERSION, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "prior-knowledge HTTP/2"),
    served("version-1.2", VERSION, get(b"/", version=b"HTTP/1.2"), GET,
           why="RFC 9112 §2.3: a higher minor version is served as 1.1"),
    served("version-1.0", VERSION, get(b"/", version=b"HTTP/1.0"), GET, close=True,
           why="no keep-alive unless asked for"),
    # -- Host (RFC 9112 §3.2, RFC 9110 §7.2) ---------------------------------------------------
    rejected("host-missing", HOSTS, b"GET / HTTP/1.1\r\n\r\n", 400, "RFC 9112 §3.2: MUST 400"),
    rejected("host-twice", HOSTS, get(b"/", HOST), 400, "RFC 9112 §3.2: MUST 400, even for equal values"),
    rejected("host-twice-different", HOSTS, get(b"/", b"Host: evil.example\r\n"), 400,
             "routing and the app may read different ones"),
    rejected("host-list", HOSTS, b"GET / HTTP/1.1\r\nHost: a.example, b.example\r\n\r\n", 400,
             "two hosts in one line"),
    rejected("host-space", HOSTS, b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "not a uri-host"),
    rejected("host-path", HOSTS, b"GET / HTTP/1.1\r\nHost: a.example/b\r\n\r\n", 400, "not a uri-host"),
    rejected("host-userinfo", HOSTS, b"GET / HTTP/1.1\r\nHost: user@a.example\r\n\r\n", 400, "not a uri-host"),
    rejected("host-bad-port", HOSTS, b"GET / HTTP/1.1\r\nHost: a.example:8o\r\n\r\n", 400, "port = *DIGIT"),
    rejected("host-twice-http10", HOSTS, get(b"/", HOST, version=b"HTTP/1.0"), 400,
             "more than one Host line in any version"),
    served("host-empty", HOSTS, b"GET / HTTP/1.1\r\nHost:\r\n\r\n", Seen("GET", headers=(("host", ""),)),
           why="RFC 9112 §3.2: empty when the URI has no authority"),
    served("host-ipv6", HOSTS, b"GET / HTTP/1.1\r\nHost: [::1]:8000\r\n\r\n",
           Seen("GET", headers=(("host", "[::1]:8000"),))),
    served("host-missing-http10", HOSTS, b"GET / HTTP/1.0\r\n\r\n", GET, close=True,
           why="Host is only required in HTTP/1.1"),
    # -- pipelining and reuse (RFC 9112 §9.3) ---------------------------------------------------
    served("pipelined", PIPELINE, get(b"/1") + get(b"/2") + get(b"/3"), Seen("GET", "/1"), Seen("GET", "/2"),
           Seen("GET", "/3")),
    Case("pipelined-after-error", PIPELINE, get(b"/1") + b"GET /2 HTTP/1.1\r\nBad Field\r\n\r\n" + get(b"/3"),
         status=400, seen=(Seen("GET", "/1"),), why="nothing after an error is served"),
    served("pipelined-after-close", PIPELINE, get(b"/1", b"Connection: close\r\n") + get(b"/2"), Seen("GET", "/1"),
           close=True, why="RFC 9112 §9.6: nothing after Connection: close is processed"),
    served("pipelined-after-http10", PIPELINE, get(b"/1", version=b"HTTP/1.0") + get(b"/2"), Seen("GET", "/1"),
           close=True, why="HTTP/1.0 without keep-alive"),
    served("pipelined-http10-keep-alive", PIPELINE,
           get(b"/1", b"Connection: keep-alive\r\n", version=b"HTTP/1.0") + get(b"/2"),
           Seen("GET", "/1"), Seen("GET", "/2")),
    served("pipelined-bodies", PIPELINE,
           post(b"Content-Length: 5\r\n", b"hello") + chunked(b"5\r\nworld\r\n0\r\n\r\n") + get(b"/3"),
           Seen("POST", body=b"hello"), Seen("POST", body=b"world"), Seen("GET", "/3")),
    served("pipelined-after-close-invalid", PIPELINE, get(b"/1", b"Connection: close\r\n") + b"\x00garbage\r\n\r\n",
           Seen("GET", "/1"), close=True, why="what follows a close is never parsed into an error either"),
    # -- Upgrade and CONNECT (RFC 9110 §7.8, §9.3.6) --------------------------------------------
    served("h2c-upgrade-ignored", UPGRADE,
           get(b"/1", b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n")
           + get(b"/2"),
           Seen("GET", "/1", headers=(("upgrade", "h2c"),)), Seen("GET", "/2"),
           why="RFC 9110 §7.8: a server MAY ignore Upgrade; it then stays HTTP/1.1"),
    served("h2c-upgrade-with-body", UPGRADE,
           post(b"Connection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 31\r\n", b"GET /smuggled HTTP/1.1\r\nHost: x") + get(b"/2"),
           Seen("POST", body=b"GET /smuggled HTTP/1.1\r\nHost: x"), Seen("GET", "/2"),
           why="llhttp skips the body of any upgrade request; it is read as a body here"),
    served("h2c-upgrade-with-chunked-body", UPGRADE,
           post(b"Connection: Upgrade\r\nUpgrade: h2c\r\nTransfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n")
           + get(b"/2"),
           Seen("POST", body=b"hello"), Seen("GET", "/2")),
    served("upgrade-without-connection-option", UPGRADE, get(b"/1", b"Upgrade: websocket\r\n") + get(b"/2"),
           Seen("GET", "/1"), Seen("GET", "/2"), why="RFC 9110 §7.8: Upgrade is a connection option"),
    rejected("websocket-handshake-with-body", UPGRADE,
             get(b"/", b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 5\r\n") + b"hello",
             400, "the body would be read as frames by the server and as a body by a proxy"),
    rejected("connect", UPGRADE, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 501,
             "an ASGI app cannot tunnel"),
    rejected("connect-then-data", UPGRADE,
             b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n" + get(b"/tunnelled"), 501,
             "what follows is never parsed as a request"),
    # -- Expect (RFC 9110 §10.1.1) ----------------------------------------------------------------
    served("expect-100-continue", EXPECT, post(b"Expect: 100-continue\r\nContent-Length: 5\r\n", b"hello"),
           Seen("POST", body=b"hello")),
    served("expect-mixed-case", EXPECT, post(b"Expect: 100-Continue\r\nContent-Length: 5\r\n", b"hello"),
           Seen("POST", body=b"hello"), why="the token is case-insensitive"),
    served("expect-http10-ignored", EXPECT,
           b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
           Seen("POST", body=b"hello"), close=True, why="MUST ignore 100-continue in HTTP/1.0"),
    served("expect-empty", EXPECT, post(b"Expect:\r\nContent-Length: 5\r\n", b"hello"), Seen("POST", body=b"hello"),
           why="an empty list"),
    rejected("expect-unknown", EXPECT, post(b"Expect: magic\r\nContent-Length: 5\r\n", b"hello"), 417,
             "MAY 417 for other expectations"),
    rejected("expect-100-continue-with-parameter", EXPECT,
             post(b"Expect: 100-continue; x=1\r\nContent-Length: 5\r\n", b"hello"), 417, "not 100-continue"),
    rejected("expect-unknown-second-line", EXPECT,
             post(b"Expect: 100-continue\r\nExpect: magic\r\nContent-Length: 5\r\n", b"hello"), 417,
             "all lines count, not only the last"),
    rejected("expect-unknown-first-line", EXPECT,
             post(b"Expect: magic\r\nExpect: 100-continue\r\nContent-Length: 5\r\n", b"hello"), 417,
             "all lines count, not only the first"),
)
