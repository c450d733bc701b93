"""Put a tag into complete HTML responses; leave every other response exactly as it was.

A response gets the tag when it is ``text/html``, not encoded, not a download, not a partial or
body-less status, and complete: it has a ``Content-Length`` (what Flask, werkzeug's debugger
page, Django and Bottle send for a rendered page), or the app returned a list. Anything else
(HEAD, JSON, files, streams, SSE, WebSockets) goes to the server untouched: the same iterable
when the app started its response at once, the same bytes when it started lazily (generators,
werkzeug's debugger) and one chunk had to be read to see the headers.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

from geventdev.livereload import csp
from geventdev.wsgi import WSGIApp

Headers = list[tuple[str, str]]
Mode = Literal["pending", "pass", "buffer", "maybe"]
#: Larger pages are passed through untouched rather than held in memory.
MAX_BODY = 8 * 1024 * 1024
_NO_BODY = (204, 206, 304)
#: Validators of the page before the tag: a 304 against them would bring back a stale copy.
_DROPPED = ("content-length", "etag", "last-modified", "content-md5")
_noticed: set[str] = set()


def header(headers: Headers, name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name), None)


def verdict(status: str, headers: Headers) -> Mode:
    """``buffer`` (complete HTML), ``maybe`` (HTML of unknown size) or ``pass``."""
    try:
        code = int(status.split(None, 1)[0])
    except ValueError:
        return "pass"
    if code < 200 or code in _NO_BODY or 300 <= code < 400:
        return "pass"
    mime, _, params = (header(headers, "content-type") or "").lower().partition(";")
    if mime.strip() != "text/html" or "utf-16" in params or "utf-32" in params:
        return "pass"
    if (header(headers, "content-encoding") or "identity").strip().lower() != "identity":
        return "pass"
    if (header(headers, "content-disposition") or "").strip().lower().startswith("attachment"):
        return "pass"
    if header(headers, "transfer-encoding") or header(headers, "content-range"):
        return "pass"
    length = header(headers, "content-length")
    if length is None:
        return "maybe"
    return "buffer" if length.strip().isdigit() and int(length) <= MAX_BODY else "pass"


class Capture:
    """The ``start_response`` the app sees: passes through at once unless the page may get the
    tag, in which case headers and body wait here."""

    def __init__(self, start_response: Callable[..., Any]) -> None:
        self.start_response = start_response
        self.mode: Mode = "pending"
        self.status, self.exc_info = "", None
        self.headers: Headers = []
        # The body while buffering: the legacy write() callable's data, then the iterable's.
        self.written: list[bytes] = []

    def __call__(self, status: str, headers: Headers, exc_info: Any = None) -> Callable[..., Any]:
        if self.mode == "pass":  # the server decides (it re-raises if headers went out)
            return self.start_response(status, headers, exc_info)  # type: ignore[no-any-return]
        self.status, self.headers, self.exc_info = status, list(headers), exc_info
        self.written.clear()  # a restart (werkzeug's debugger page) replaces what came before
        self.mode = verdict(status, self.headers)
        return self.commit() if self.mode == "pass" else self.write

    @property
    def passing(self) -> bool:
        return self.mode == "pass"

    def state(self) -> Mode:
        """``mode``, read afresh: the app's iterable may have called us since (mypy narrows)."""
        return self.mode

    def commit(self) -> Callable[..., Any]:
        self.mode = "pass"
        server_write = self.start_response(self.status, self.headers, self.exc_info)
        for data in self.written:
            server_write(data)
        self.written.clear()
        return server_write  # type: ignore[no-any-return]

    def write(self, data: bytes) -> None:
        if self.mode == "maybe":
            self.commit()(data)
        else:
            self.written.append(data)


class Chain:
    """Chunks already read, then the rest of the app's iterable; closes it (PEP 3333)."""

    def __init__(self, head: list[bytes], rest: Iterator[bytes], result: Iterable[bytes]) -> None:
        self.head, self.rest, self.result = head, rest, result

    def __iter__(self) -> Iterator[bytes]:
        yield from self.head
        yield from self.rest

    def close(self) -> None:
        close(self.result)


def close(result: Iterable[bytes]) -> None:
    closer = getattr(result, "close", None)
    if closer is not None:
        closer()


def insert(body: bytes, tag: bytes) -> bytes:
    """Before the last ``</body>`` that is not in a comment (werkzeug's debugger page ends with
    the traceback in one), or at the end."""
    low, at = body.lower(), len(body)
    while (at := low.rfind(b"</body", 0, at)) >= 0:
        if low.rfind(b"<!--", 0, at) <= low.rfind(b"-->", 0, at):
            return body[:at] + tag + body[at:]
    return body + tag


def inject(
    app: WSGIApp,
    environ: dict[str, Any],
    start_response: Callable[..., Any],
    make_tag: Callable[[str | None], bytes],
) -> Iterable[bytes]:
    """Call ``app``; return its response, with ``make_tag(nonce)`` inserted if it is a page."""
    capture = Capture(start_response)
    result = app(environ, capture)
    if capture.mode == "maybe":  # HTML of unknown length: complete only if it is a list
        if isinstance(result, (list, tuple)):
            capture.mode = "buffer"
        else:
            capture.commit()
    if capture.passing:
        return result  # the very same iterable: file wrappers, len() and close() intact
    try:
        iterator = iter(result)
        if capture.mode == "pending":  # a lazy start_response: the first chunk drives it
            first = next(iterator, None)
            head = [] if first is None else [first]
            if capture.state() == "maybe":  # lazy means a generator: never known to be complete
                capture.commit()
            if capture.state() != "buffer":
                return Chain(head, iterator, result)
            capture.written += head
        for chunk in iterator:
            if capture.passing:  # restarted as a response that is not a page: it went out
                return Chain([chunk], iterator, result)
            capture.written.append(chunk)
    except BaseException:
        close(result)
        raise
    close(result)
    if capture.passing:  # restarted into a pass with no body after it: headers went out
        return []
    return finish(capture, b"".join(capture.written), environ, make_tag)


def finish(
    capture: Capture, body: bytes, environ: dict[str, Any], make_tag: Callable[[str | None], bytes]
) -> list[bytes]:
    headers, nonce = csp.open_headers(capture.headers)
    has_meta, meta_nonce = csp.meta_policy(body)
    if has_meta and nonce is None:
        nonce = meta_nonce
        path = str(environ.get("PATH_INFO", "/"))
        if meta_nonce is None and path not in _noticed:
            _noticed.add(path)
            print(
                f" * Live reload: {path} sets a Content-Security-Policy in a <meta> tag, which"
                " geventdev cannot change; allow 'self' in its script-src and connect-src (or use"
                " a nonce) to have live reload on this page",
                file=sys.stderr,
                flush=True,
            )
    tag = make_tag(nonce)
    length = len(body) + len(tag)
    if environ.get("REQUEST_METHOD") == "HEAD":
        # No body to put the tag in: report the length the same request's GET gets (a page's
        # HEAD has the app's Content-Length and no bytes; werkzeug drops a HEAD's body).
        declared = header(capture.headers, "content-length")
        if not body and declared is not None:
            length = int(declared) + len(tag)
        body = b""
    else:
        body = insert(body, tag)
    headers = [(k, v) for k, v in headers if k.lower() not in _DROPPED]
    headers.append(("Content-Length", str(length)))
    capture.start_response(capture.status, headers, capture.exc_info)
    return [body] if body else []
