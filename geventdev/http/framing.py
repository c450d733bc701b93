"""Strict HTTP/1 framing and timeouts for pywsgi: nothing smuggled, nothing held forever.

pywsgi (gevent 26.9, issue 8) takes conflicting or ``+3`` Content-Lengths, ``gzip, chunked`` and
``Host : evil``, so a body can become a second request; it prints tracebacks for ``HTTP/1`` and
waits forever for slow clients. ``StrictFraming`` reads and checks each raw line itself (RFC 9112),
then builds pywsgi's ``HTTPMessage``: any doubt about framing is a 4xx and a close, never a guess.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from contextlib import nullcontext, suppress
from http import HTTPStatus
from typing import Any

import gevent
from gevent.pywsgi import MAX_REQUEST_LINE, Input, OldMessage, WSGIHandler, _InvalidClientInput
from werkzeug.exceptions import BadRequest, RequestTimeout

#: More header lines than http.client allows, or more bytes of them in all, is a 431.
MAX_HEADERS, MAX_HEADER_BYTES = 100, 65536
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # RFC 9110 §5.5: not in header values
_VERSION = re.compile(r"HTTP/[0-9]\.[0-9]")
_DIGITS = re.compile(r"[0-9]{1,18}")  # RFC 9110 §8.6: 1*DIGIT, so no "+3", "1_0", "0x10", "-1"
_SINGLE = ("host", "content-length", "transfer-encoding")  # each at most once
_TOO_BIG = 431, f"over {MAX_HEADERS} headers or {MAX_HEADER_BYTES} bytes"
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(:[0-9]*)?")


class ClientError(Exception):
    """A request we refuse: ``status`` for the client, ``reason`` for the log and the body."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason
        self.status_line = f"{status} {HTTPStatus(status).phrase}"

    def response(self) -> bytes:
        body = f"{self.status_line}: {self.reason}\n".encode()
        head = f"HTTP/1.1 {self.status_line}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        return f"{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body


class BodyTimeout(RequestTimeout, _InvalidClientInput):  # type: ignore[misc]
    """A stalled body: an ``OSError`` to any app; to Flask a 408 (not the debugger's 500 page)."""


class BadBody(BadRequest, _InvalidClientInput):  # type: ignore[misc]
    """A malformed or cut-off body: an ``OSError`` to any app; to Flask a 400, no traceback."""


class TimedInput(Input):  # type: ignore[misc]
    """pywsgi's ``wsgi.input``: a read silent for ``_timeout`` seconds fails (a socket timeout,
    set only while reading), and after any failure the connection closes: it is out of step."""

    __slots__ = ("_handler", "_timeout", "_failed")
    _failed: bool

    def read(self, length: int | None = None) -> bytes:
        return self._timed(super().read, length)

    def readline(self, size: int | None = None) -> bytes:
        return self._timed(super().readline, size)

    def withheld(self) -> bool:
        """The body was announced with ``Expect: 100-continue``, no 100 went out, and it is not
        all here: the client may be waiting for our 100, or send the body late (curl waits 1 s).
        A body sent at once anyway (RFC 9110 §10.1.1 allows it) is already buffered."""
        if self.socket is None or not (self.content_length or self.chunked_input):
            return False
        if self.chunked_input:
            return True
        conn = self._handler.socket
        previous = conn.gettimeout()
        conn.settimeout(0)  # what is buffered or already arrived, without waiting
        try:
            buffered: bytes = self.rfile.peek(self.content_length)
        except OSError:
            buffered = b""
        finally:
            conn.settimeout(previous)
        return len(buffered) < int(self.content_length)

    def _discard(self) -> None:
        if self.socket is None or not self._handler.close_connection:
            super()._discard()  # else closing: don't wait for a body the client may withhold

    def _Input__read_chunk_length(self, rfile: Any) -> int:  # noqa: N802 (pywsgi's private name)
        """pywsgi's chunk-size line and trailer reader, over a stream that refuses a bare LF: it
        skips to the CR of a chunk extension, so ``5;a\nb\r\n`` passed (RFC 9112 §7.1)."""
        return int(Input._Input__read_chunk_length(self, _CRLFOnly(rfile, self)))

    def _timed(self, read: Callable[[int | None], bytes], size: int | None) -> bytes:
        if self._failed:  # pywsgi would go on reading (or discarding) from a broken stream
            return b""
        conn = self._handler.socket
        previous = conn.gettimeout()
        conn.settimeout(self._timeout)
        try:
            return read(size)
        except (OSError, ValueError) as exc:  # timeout, bad chunk (ValueError: an empty size), EOF
            self._failed, self._handler.close_connection = True, True
            raise (BodyTimeout if isinstance(exc, TimeoutError) else BadBody)(str(exc)) from exc
        finally:
            conn.settimeout(previous)


class _CRLFOnly:
    """The ``read(1)`` pywsgi reads chunk lines with, raising at an LF not preceded by CR."""

    def __init__(self, rfile: Any, owner: Input) -> None:
        self.rfile, self.owner, self.previous = rfile, owner, b""

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.rfile.read(size)
        for byte in (data[i : i + 1] for i in range(len(data))):
            if byte == b"\n" and self.previous != b"\r":
                self.owner._chunked_input_error = True
                raise _InvalidClientInput("bare LF in a chunk line")
            self.previous = byte
        return data


class StrictFraming(WSGIHandler):  # type: ignore[misc]
    """Strict parsing and timeouts (``server.config``), as ``Handler(StrictFraming, WSGIHandler)``.

    Request line and headers within ``header_timeout`` of the connection (or of the first byte on
    keep-alive); idle for ``keepalive_timeout``: closed, unanswered (an unasked-for 408 would be
    taken as the answer to the next request); a body read silent for ``body_timeout`` fails."""

    wsgi_input: Any
    _requests = 0  # requests started on this connection
    _deadline = 0.0  # when this request's line and headers must be in
    _client_error: ClientError | None = None  # what this request is answered and logged with
    _buffered = False  # this request's head is all in the read buffer
    _orig_status: str | None  # the status line the log shows (pywsgi's)
    #: RFC 9112 §3.2 (a MUST); off only to show which peer test cases fail for this reason alone.
    host_required = True

    def read_requestline(self) -> str:
        config, started = self.server.config, time.monotonic()
        self._client_error, self.requestline = None, "-"
        self.response_length, self.headers_sent = 0, False  # not the previous response's
        first, self._requests = not self._requests, self._requests + 1
        # A socket timeout, which gevent arms only if the read blocks: no new gevent.Timeout
        # (~1.1 us) per request, none at all when the next request is already there.
        conn, idle, previous = self.socket, True, self.socket.gettimeout()
        conn.settimeout(config.header_timeout if first else config.keepalive_timeout)
        try:
            with suppress(OSError):  # the timeout (an SSLError over TLS) or a reset: close
                idle = not self.rfile.peek(1)  # wait for a first byte, without reading it
        finally:
            conn.settimeout(previous)
        if idle:
            return ""  # silence or EOF: pywsgi closes the connection quietly
        self._deadline = (started if first else time.monotonic()) + config.header_timeout
        # Usually the whole head is buffered: reading it cannot block, a deadline never fires, so
        # no timers or ClientErrors (with the socket timeout above: -6 us a request, in an A/B).
        buffered = self.rfile.peek()  # what is buffered, without a read (the buffer is not empty)
        self._buffered = b"\n\r\n" in buffered or b"\n\n" in buffered  # an empty line
        try:
            with self._header_deadline():
                raw = self.rfile.readline(MAX_REQUEST_LINE)
                if raw in (b"\r\n", b"\n"):  # RFC 9112 §2.2: SHOULD ignore one before the line
                    raw = self.rfile.readline(MAX_REQUEST_LINE)
            self.requestline = raw[:200].decode("latin-1").rstrip("\r\n")  # for the log
            if len(raw) >= MAX_REQUEST_LINE:
                raise ClientError(414, "request line too long")
            if not raw.endswith(b"\n"):
                raise ClientError(400, "incomplete request line")
        except ClientError as error:
            self._handle_client_error(error)
            return ""  # answered and logged: pywsgi closes the connection
        return str(raw.decode("latin-1"))

    def read_request(self, raw_requestline: str) -> bool:
        line = self.requestline = raw_requestline.removesuffix("\n").removesuffix("\r")
        parts = line.split(" ")
        if len(parts) != 3 or not all(parts) or "\r" in line or not _TOKEN.fullmatch(parts[0]):
            raise ClientError(400, "malformed request line")  # also HTTP/0.9's "GET /"
        self.command, self.path, self.request_version = parts
        if not _VERSION.fullmatch(parts[2]):  # HTTP/1, HTTP/1.1.1, HTTP/a.b, http/1.1
            raise ClientError(400, f"malformed HTTP version {parts[2][:20]!r}")
        if parts[2][:7] != "HTTP/1.":  # HTTP/2.0, HTTP/0.9
            raise ClientError(505, f"unsupported version {parts[2]}")
        if parts[2] != "HTTP/1.0":  # RFC 9110 §2.5: HTTP/1.2 SHOULD be served as our highest 1.x
            self.request_version = "HTTP/1.1"
        with self._header_deadline():
            fields, known = self._read_fields()
        self._apply(fields, known)
        return True

    def _read_fields(self) -> tuple[list[tuple[str, str]], dict[str, str]]:
        """The header lines up to the empty line, each checked, as latin-1 (name, value); and
        the values of the ``_SINGLE`` headers and of all Connection headers, by lowercase name."""
        fields: list[tuple[str, str]] = []
        known: dict[str, str] = {}
        size = 0
        while True:
            limit = MAX_HEADER_BYTES + 2 - size  # always room for the final empty line
            raw = self.rfile.readline(limit)
            if not raw.endswith(b"\n"):  # EOF, or a line past the cap
                raise ClientError(*(400, "incomplete headers") if len(raw) < limit else _TOO_BIG)
            if raw in (b"\r\n", b"\n"):  # bare LF line ends are tolerated (RFC 9112 §2.2)
                return fields, known
            size += len(raw)
            if size > MAX_HEADER_BYTES or len(fields) >= MAX_HEADERS:
                raise ClientError(*_TOO_BIG)  # built when raised, not per request: ~0.8 us
            text = raw.decode("latin-1").removesuffix("\n").removesuffix("\r")
            if text[0] in " \t":  # RFC 9112 §5.2: reject obs-fold (or unfold; we reject)
                raise ClientError(400, "obsolete line folding in headers")
            # token ":" OWS value OWS, split at the first ":" (a token has none), not by a lazy
            # regex: 0.7 -> 0.3 us for "Host: x", 2.8 -> 0.3 us for a 120-byte User-Agent
            name, colon, value = text.partition(":")
            if not colon or not _TOKEN.fullmatch(name):  # RFC 9112 §5.1: "Host : x" MUST be a 400
                raise ClientError(400, f"malformed header line {text[:60]!r}")
            if _CTL.search(value := value.strip(" \t")):
                raise ClientError(400, f"control character in header {name}")
            # Even agreeing duplicates: one rule leaves a proxy no room to differ (RFC 9112 §6.3).
            if (low := name.lower()) in _SINGLE and low in known:
                raise ClientError(400, f"more than one {low} header")
            if low in _SINGLE or low == "connection":
                known[low] = f"{known[low]},{value}" if low in known else value
            fields.append((name, value))

    def _apply(self, fields: list[tuple[str, str]], known: dict[str, str]) -> None:
        """Check Host and the body's framing, then set what pywsgi's read_request would."""
        host, length, coding = (known.get(name) for name in _SINGLE)
        if host is None and self.request_version == "HTTP/1.1" and self.host_required:
            raise ClientError(400, "HTTP/1.1 request without Host")
        if host is not None and not _HOST.fullmatch(host):
            raise ClientError(400, f"invalid Host {host[:60]!r}")
        if length is not None and not _DIGITS.fullmatch(length):
            raise ClientError(400, f"invalid Content-Length {length[:60]!r}")
        if coding is not None:
            codings = [part.strip(" \t").lower() for part in coding.split(",")]
            if not all(_TOKEN.fullmatch(name) for name in codings):
                raise ClientError(400, f"malformed Transfer-Encoding {coding[:60]!r}")
            if codings != ["chunked"]:  # gzip, identity, "chunked, chunked": not decodable
                raise ClientError(501, f"unsupported Transfer-Encoding {coding[:60]!r}")
            fields = [f for f in fields if f[0].lower() != "content-length"]  # chunked wins
        # pywsgi's type with the list its email parser makes of these lines (the same, fuzzed),
        # without its 8 us or cap of 99 lines: with the above, -21 us a request (A/B), < pywsgi.
        self.headers = OldMessage()
        self.headers._headers = fields
        self.content_length = int(length) if length is not None and coding is None else None
        if self.content_length and self.command == "HEAD":
            raise ClientError(400, "HEAD request with a body")
        options = known.get("connection", "").lower()
        tokens, http11 = {t.strip(" \t") for t in options.split(",")}, "1.1" in self.request_version
        keep = "close" not in tokens if http11 else "keep-alive" in tokens
        # RFC 9112 §6.1: TE with CL, or TE in HTTP/1.0, may be framed otherwise upstream: close.
        ambiguous = coding is not None and (length is not None or not http11)
        self.close_connection = not keep or ambiguous

    def _header_deadline(self) -> Any:
        if self._buffered:
            return nullcontext()
        error = ClientError(408, "request line and headers not received in time")
        return gevent.Timeout(max(self._deadline - time.monotonic(), 0.001), error)

    def get_environ(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environ()
        plain = self.wsgi_input
        # 100 Continue only to HTTP/1.1 (1.0 clients don't know it), Expect in any case (RFC 9110
        # §10.1.1; pywsgi: exact "100-continue" only, and to HTTP/1.0 too).
        expect = str(environ.get("HTTP_EXPECT", "")).lower() == "100-continue"
        sock = self.socket if expect and self.request_version == "HTTP/1.1" else None
        timed = TimedInput(plain.rfile, plain.content_length, sock, plain.chunked_input)
        timed._handler, timed._timeout, timed._failed = self, self.server.config.body_timeout, False
        # Upgrade requests get the raw stream (a websocket may idle for long), unless they have
        # a body: then it is read by its framing (pywsgi's raw read() of it waited for EOF).
        if environ["wsgi.input"] is plain or plain.content_length or plain.chunked_input:
            environ["wsgi.input"], environ["wsgi.input_terminated"] = timed, True
        self.wsgi_input = timed
        return environ

    def _handle_client_error(self, ex: Exception) -> None:
        """Answer a bad request with its status and one log line, never a traceback; returning
        None closes the connection. A bad body (``_InvalidClientInput``) while the app runs is
        only recorded: pywsgi then calls ``_send_error_response_if_possible`` and logs."""
        self.close_connection = True
        if isinstance(ex, _InvalidClientInput):  # BodyTimeout or BadBody: 408 or 400
            self._client_error = ClientError(getattr(ex, "code", 400), f"request body: {ex}")
            return
        if isinstance(ex, OSError):
            return  # the connection broke: nobody to answer
        if not isinstance(ex, ClientError):
            ex = ClientError(400, f"bad request: {type(ex).__name__}: {ex}")
        self._client_error = ex
        self._send_error_response_if_possible(400)
        self.log_request()

    def _send_error_response_if_possible(self, error_code: int) -> None:
        if (error := self._client_error) is None:
            super()._send_error_response_if_possible(error_code)
            return
        self.close_connection = True
        if self.response_length or self.headers_sent:
            return  # too late for a status: closing tells the client it was cut off
        payload = error.response()
        with suppress(OSError):
            self.socket.sendall(payload)
        self._orig_status, self.response_length = error.status_line, len(payload)  # for the log
