"""The child's HTTP server: gevent's pywsgi with werkzeug-style access logs and a clean drain.

Imported by the child only, after ``monkey.patch_all()``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import gevent
from gevent import monkey
from gevent.exceptions import ConcurrentObjectUseError
from gevent.pool import Pool
from gevent.pywsgi import WSGIHandler, WSGIServer

from geventdev.config import Config
from geventdev.http.framing import StrictFraming
from geventdev.http.websockets import gevent_websocket_handler, has_gevent_websocket, is_websocket
from geventdev.logs import ACCESS, color_allowed, ensure_handler, plain_stream, write_line
from geventdev.net import LOCAL_PEER
from geventdev.protocol import RESERVED_PREFIX
from geventdev.tls import server_context
from geventdev.wsgi import WSGIApp

# werkzeug's colours for the access log, by status class (werkzeug/serving.py log_request).
_STATUS_STYLE = {"1": "\x1b[1m", "3": "\x1b[32m", "4": "\x1b[1;31m", "5": "\x1b[1;35m"}
_SPECIAL_STYLE = {"200": "", "304": "\x1b[36m", "404": "\x1b[33m"}
_RESET = "\x1b[0m"
#: Control characters in a request line are escaped, so a client cannot write to the terminal.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}  # C0, DEL, C1
#: A WebSocket close frame, code 1012 "service restart": browsers may reconnect at once.
WEBSOCKET_CLOSE_1012 = b"\x88\x02\x03\xf4"
#: How long a draining server lets an idle keep-alive connection send one more request.
IDLE_GRACE = 1.0
DRAIN_POLL = 0.05
_log_time = (0, "")  # the second log_time formatted last, and its text
#: Bodies up to this size are sent in the same send as the head.
INLINE_BODY = 16384


def escape(text: str) -> str:
    return text.translate(_ESCAPES)


def log_time() -> str:
    """werkzeug's access-log time, formatted once a second, not per request (0.24 -> 0.12 us)."""
    global _log_time
    now = int(time.time())
    if _log_time[0] != now:
        _log_time = (now, time.strftime("%d/%b/%Y %H:%M:%S", time.localtime(now)))
    return _log_time[1]


def style_status(line: str, status: str) -> str:
    style = _SPECIAL_STYLE.get(status, _STATUS_STYLE.get(status[:1], ""))
    return f"{style}{line}{_RESET}" if style else line


class DevHandler(StrictFraming, WSGIHandler):  # type: ignore[misc]
    """pywsgi's handler with strict framing, werkzeug's access-log line (plus framing's reason
    for a refusal) and awareness of a draining server."""

    server: DevServer
    greenlet: gevent.Greenlet | None = None
    socket: Any
    rfile: Any
    response_use_chunked: bool
    response_headers: list[tuple[bytes, bytes]]
    provided_content_length: str | None

    def read_requestline(self) -> str:
        if self._requests:  # StrictFraming's count of requests started on this connection
            # Give the other connections a turn first. pywsgi serves a keep-alive request that
            # is already waiting at once, so one busy connection can be served hundreds of
            # times in a row: p99 176 ms -> 14 ms at 50 connections (benchmarks/README.md).
            gevent.sleep(0)
        # Between requests a keep-alive connection waits here; a draining server closes those.
        self.server.idle.add(self)
        try:
            line: str = super().read_requestline()
        finally:
            self.server.idle.discard(self)
        return line

    def handle_one_response(self) -> None:
        self.greenlet = gevent.getcurrent()
        self._orig_status = None  # not the previous response's (the log reads it)
        self.server.active.add(self)
        try:
            super().handle_one_response()
        finally:
            self.server.active.discard(self)
        if self.connection_upgraded or not self.headers_sent:
            # An upgraded connection is never HTTP again, and one the app answered nothing on
            # (simple-websocket writes its 101 on the socket itself) is out of step: either way,
            # what follows is not a request line (it was a WebSocket close frame, answered with
            # an HTTP 400 inside the WebSocket, and the connection idled for the keep-alive).
            self.close_connection = True
        if self._orig_status == "101" and self.status is None:  # see process_result
            # The app's websocket reads a dup of the socket: close ours without pywsgi's
            # read-before-close, which took the client's close frame from it (the connection
            # then stayed open until the client gave up).
            rfile, sock, self.socket = self.rfile, self.socket, None
            with contextlib.suppress(OSError):
                rfile.close()
                sock.close()

    def process_result(self) -> None:
        if self.command != "HEAD":
            super().process_result()
            if self.status is None and self.is_websocket:
                self._orig_status = "101"  # for the log: the app switched on the socket itself
            return
        # A HEAD's head is all we send: stop at the first chunk (an event stream never ends).
        for data in self.result:
            if data:
                self.write(data)
                break
        if self.status and not self.headers_sent:
            self.write(b"")

    def finalize_headers(self) -> None:
        super().finalize_headers()
        if self.command == "HEAD":
            if self.response_use_chunked:  # no body follows a HEAD's head, not even a 0 chunk
                self.response_use_chunked = False
                self.response_headers.remove((b"Transfer-Encoding", b"chunked"))
            return
        if self.response_use_chunked or self.connection_upgraded or self.code in (204, 304):
            return
        if (
            self.code >= 200
            and self.provided_content_length is None
            and not any(k.lower() == b"content-length" for k, _ in self.response_headers)
        ):
            # No length and no chunks (HTTP/1.0): the body ends with the connection, whatever
            # the client asked (RFC 9112 §6.3); saying keep-alive glued the next answer onto it.
            self.close_connection = True
            self.response_headers = [
                (k, v) for k, v in self.response_headers if k.lower() != b"connection"
            ]
            self.response_headers.append((b"Connection", b"close"))

    def _write(self, data: bytes) -> None:
        if self.command != "HEAD":  # pywsgi sends what a HEAD's app returns
            super()._write(data)

    def handle_error(self, t: type[BaseException], v: BaseException, tb: Any) -> None:
        if not issubclass(t, gevent.GreenletExit):
            super().handle_error(t, v, tb)
            return
        # A drain cut this response (a restart): that is no server error, so no 500, and none
        # written into a WebSocket after its 1012 close frame.
        self.close_connection = True
        if self.status is None and self.is_websocket:
            self._orig_status = "101"
        elif self.headers_sent and self.response_use_chunked:
            # End the stream properly: a cut chunked body is an error in the browser
            # (ERR_INCOMPLETE_CHUNKED_ENCODING); a restart is a normal end of a live stream.
            with contextlib.suppress(OSError):
                self._sendall(b"0\r\n\r\n")
        elif not self.headers_sent:
            super().handle_error(t, v, tb)

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        # Closing after this response, because framing says so (pywsgi tells only HTTP/1.0
        # clients), the server drains, or the app answers before reading a body announced with
        # Expect: 100-continue that has not all arrived (the client may be waiting for our 100,
        # or send it late: the connection cannot stay in step; werkzeug's server closes): say so.
        # (One override for all, not several: ~0.2 us.)
        if (
            self.close_connection
            or self.server.draining
            or (getattr(self.wsgi_input, "socket", None) and self.wsgi_input.withheld())
        ) and not any(k.lower() == "connection" for k, _ in headers):
            headers = [*headers, ("Connection", "close")]
            self.close_connection = True
        return super().start_response(status, headers, exc_info)

    def _write_with_headers(self, data: Any) -> None:
        """pywsgi's, except that a small body goes out with the head in one send, not two: one
        syscall and TCP segment less per response (a gevent sendall is ~4 us; 3-4 us a request
        in an A/B), and one read less for the client."""
        if type(data) is not bytes or len(data) > INLINE_BODY:
            super()._write_with_headers(data)
            return
        self.headers_sent = True
        self.finalize_headers()
        towrite = bytearray(b"HTTP/1.1 ")
        towrite += self.status
        towrite += b"\r\n"
        for name, value in self.response_headers:
            towrite += b"%s: %s\r\n" % (name, value)
        towrite += b"\r\n"
        if not data or self.command == "HEAD":
            pass
        elif self.response_use_chunked:
            towrite += b"%x\r\n%s\r\n" % (len(data), data)
        else:
            towrite += data
        self._sendall(towrite)

    def log_request(self) -> None:
        """One werkzeug-style line on the ``werkzeug`` logger, as ``flask run`` logs it."""
        access = self.server.access_log
        if access is None or not access.isEnabledFor(logging.INFO):
            return
        if (self.path or "").startswith(RESERVED_PREFIX):  # our endpoints: live reload's reconnects
            return
        line = self.format_request()
        if self._client_error is not None:  # why framing refused the request
            line += f" ({escape(self._client_error.reason)})"
        stream = plain_stream(access)
        if stream is None:
            access.info(line)
        else:  # nothing but our own plain handler: its output, without the LogRecord
            write_line(stream, line + "\n")

    def format_request(self) -> str:
        status = (self._orig_status or self.status or "000").split()[0]
        client = self.client_address[0] if isinstance(self.client_address, tuple) else "-"
        when = log_time()
        length = self.response_length or "-"
        line = f'{client or "-"} - - [{when}] "{escape(self.requestline or "")}" {status} {length}'
        return style_status(line, status) if self.server.color else line

    @property
    def is_websocket(self) -> bool:
        return is_websocket(getattr(self, "environ", None) or {})

    @property
    def long_lived(self) -> bool:
        """A WebSocket, or a response streaming with no end in sight (SSE, chunked): a restart
        closes these at once instead of waiting for them (uvicorn hangs on an open SSE)."""
        environ = getattr(self, "environ", None) or {}
        if self.is_websocket or "text/event-stream" in str(environ.get("HTTP_ACCEPT", "")):
            return True
        return bool(self.headers_sent and (self.response_use_chunked or self.connection_upgraded))

    def say_restarting(self) -> None:
        """Send a WebSocket close frame with code 1012 "service restart" (RFC 6455 7.4.1)."""
        try:
            self.socket.sendall(WEBSOCKET_CLOSE_1012)
        except (OSError, AttributeError, ConcurrentObjectUseError):
            pass  # gone, or the app's greenlet is mid-send on it (its kill ends the socket)

    def cut(self) -> None:
        """End a long-lived response now; a WebSocket gets close code 1012 "service restart"."""
        if self.is_websocket:
            self.say_restarting()
        if self.greenlet is not None:
            self.greenlet.kill(block=False)

    def close_idle(self) -> None:
        try:
            self.socket.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass


class DevServer(WSGIServer):  # type: ignore[misc]
    """A pywsgi server on the monitor's socket, with a bounded pool so a stop can drain."""

    handler_class = DevHandler

    def __init__(self, listener: socket.socket, app: WSGIApp, config: Config, log: TextIO) -> None:
        context = server_context(config)
        tls: dict[str, Any] = {"ssl_context": context} if context else {}
        spawn = Pool(config.pool_size)
        super().__init__(listener, app, spawn=spawn, log=log, error_log=log, **tls)
        self.configure(config, log)
        if listener.family == socket.AF_UNIX:  # pywsgi sets REMOTE_ADDR for TCP peers only
            self.environ["REMOTE_ADDR"] = LOCAL_PEER

    def configure(self, config: Config, log: TextIO) -> None:
        """What geventdev adds to a pywsgi server (also for one built the way pywsgi's own test
        suite builds it, tests/test_peer_suites.py)."""
        self.config = config
        self.idle: set[DevHandler] = set()
        self.active: set[DevHandler] = set()
        self.draining = False
        # The access log: werkzeug's logger, so `getLogger("werkzeug").setLevel(ERROR)` silences
        # it as under flask run. Its handler is added now, after the app has loaded and could
        # configure logging itself (basicConfig, dictConfig): then its handlers format the lines.
        self.access_log = ensure_handler(logging.getLogger(ACCESS)) if config.access_log else None
        # Colours as werkzeug's, on a terminal; not into a --log-config's files.
        self.color = color_allowed(log) and not config.log_config

    def wrap_socket_and_handle(self, client_socket: socket.socket, address: Any) -> Any:
        """TLS handshakes get the header timeout, and a failed one is one log line, not a
        traceback (plain HTTP sent to the HTTPS port is the usual case; gevent #864, #1681)."""
        client_socket.settimeout(self.config.header_timeout)
        try:
            tls_socket = self.wrap_socket(client_socket, **self.ssl_args)
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc.__class__.__name__
            hint = " (plain HTTP sent to the HTTPS port?)" if "HTTP" in str(reason) else ""
            self.log.write(f"{address[0]} - - TLS handshake failed: {escape(str(reason))}{hint}\n")
            client_socket.close()
            return None
        tls_socket.settimeout(None)
        return self.handle(tls_socket, address)

    def detach_connections(self, placeholder: int) -> None:
        """In a process the app forked: make every client connection's descriptor ``placeholder``
        (a pipe nobody writes to), so the copies of our handlers there never read a request
        from, nor write a response into, a connection this server shares with it."""
        for handler in (*self.idle, *self.active):
            sock = getattr(handler, "socket", None)
            fileno = sock.fileno() if sock is not None else -1
            if fileno >= 0:
                os.dup2(placeholder, fileno, inheritable=False)

    def drain(self, timeout: float, closed: Callable[[], None] | None = None) -> None:
        """Stop accepting, call ``closed`` (the monitor is told), and let requests in flight
        finish for up to ``timeout`` seconds.

        Long-lived responses are cut at once. Idle keep-alive connections get ``IDLE_GRACE``
        to send one more request (answered with ``Connection: close``), then are closed: a
        client in a request loop is served and reconnects to the new process, instead of
        racing a close. What is left at the deadline is killed.
        """
        if self.draining:
            return
        self.draining = True
        self.close()  # no accept() after this: the shared socket's queue is the new process's
        if closed is not None:
            closed()
        now = time.monotonic()
        deadline, idle_at = now + timeout, now + min(IDLE_GRACE, timeout)
        cut: set[DevHandler] = set()  # once each: a cut greenlet may take a moment to unwind
        while len(self.pool) and time.monotonic() < deadline:
            for handler in self.active - cut:
                if handler.long_lived:
                    cut.add(handler)
                    handler.cut()
            if time.monotonic() >= idle_at:
                for handler in list(self.idle):
                    handler.close_idle()
            self.pool.join(timeout=DRAIN_POLL)
        self.pool.kill(block=True, timeout=1)


def server_class() -> type[DevServer]:
    """``DevServer``, or with gevent-websocket's handler for engine.io when it is importable
    (see ``websockets``). Either way a drain cuts open websockets with close code 1012."""
    if not has_gevent_websocket():
        return DevServer
    handler = gevent_websocket_handler(DevHandler)
    return type("GeventWebSocketDevServer", (DevServer,), {"handler_class": handler})


def make_server(listener: socket.socket, app: WSGIApp, config: Config) -> DevServer:
    server = server_class()(listener, app, config, log=sys.stderr)
    if _SERVER_NAMES:  # else pywsgi asks the resolver, in a thread, as it starts
        server.environ.setdefault("SERVER_NAME", _SERVER_NAMES[0])
    return server


_SERVER_NAMES: list[str] = []


def prepare_fork(listener: socket.socket) -> None:
    """In a process that will fork servers (``app.pristine``) and must start no thread: what
    making and starting one would look up (the server class's imports, the ``SERVER_NAME``
    pywsgi resolves through gevent's thread pool), done once here, blocking."""
    server_class()
    address = listener.getsockname()
    if isinstance(address, tuple):
        _SERVER_NAMES[:] = [fqdn(str(address[0]))]


def fqdn(host: str) -> str:
    """``socket.getfqdn(host)``, as pywsgi asks it, with the resolver's unpatched functions:
    ``socket.getfqdn`` calls the module's ``gethostbyaddr``, which gevent patched to run in its
    thread pool (a thread, and a turn of the hub)."""
    if not host or host in ("0.0.0.0", "::"):
        host = _real_gethostname()
    try:
        hostname, aliases, _addresses = _real_gethostbyaddr(host)
    except OSError:
        return host
    names: list[str] = [hostname, *aliases]
    return next((name for name in names if "." in name), names[0])


_real_gethostbyaddr = monkey.get_original("socket", "gethostbyaddr")
_real_gethostname = monkey.get_original("socket", "gethostname")
