"""The child's HTTP server: gevent's pywsgi with werkzeug-style access logs and a clean drain.

Imported by the child only, after ``monkey.patch_all()``.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import Any, TextIO

from gevent.pool import Pool
from gevent.pywsgi import WSGIHandler, WSGIServer

from .config import Config
from .loader import WSGIApp

# werkzeug's colours for the access log, by status class (werkzeug/serving.py log_request).
_STATUS_STYLE = {"1": "\x1b[1m", "3": "\x1b[32m", "4": "\x1b[1;31m", "5": "\x1b[1;35m"}
_SPECIAL_STYLE = {"200": "", "304": "\x1b[36m", "404": "\x1b[33m"}
_RESET = "\x1b[0m"
#: Control characters in a request line are escaped, so a client cannot write to the terminal.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


def escape(text: str) -> str:
    return text.translate(_ESCAPES)


def style_status(line: str, status: str) -> str:
    style = _SPECIAL_STYLE.get(status, _STATUS_STYLE.get(status[:1], ""))
    return f"{style}{line}{_RESET}" if style else line


class DevHandler(WSGIHandler):  # type: ignore[misc]
    """pywsgi's handler, with werkzeug's access-log line and awareness of a draining server."""

    server: DevServer

    def read_requestline(self) -> str:
        # Between requests a keep-alive connection waits here; a draining server closes those.
        self.server.idle.add(self)
        try:
            line: str = super().read_requestline()
        finally:
            self.server.idle.discard(self)
        return line

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        if self.server.draining and not any(k.lower() == "connection" for k, _ in headers):
            headers = [*headers, ("Connection", "close")]
            self.close_connection = True
        return super().start_response(status, headers, exc_info)

    def format_request(self) -> str:
        status = (self._orig_status or self.status or "000").split()[0]
        client = self.client_address[0] if isinstance(self.client_address, tuple) else "-"
        when = time.strftime("%d/%b/%Y %H:%M:%S")
        length = self.response_length or "-"
        line = f'{client or "-"} - - [{when}] "{escape(self.requestline or "")}" {status} {length}'
        return style_status(line, status) if self.server.color else line

    def close_idle(self) -> None:
        try:
            self.socket.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass


class DevServer(WSGIServer):  # type: ignore[misc]
    """A pywsgi server on the monitor's socket, with a bounded pool so a stop can drain."""

    handler_class = DevHandler

    def __init__(self, listener: socket.socket, app: WSGIApp, config: Config, log: TextIO) -> None:
        super().__init__(listener, app, spawn=Pool(config.pool_size), log=log, error_log=log)
        self.idle: set[DevHandler] = set()
        self.draining = False
        self.color = log.isatty() and "NO_COLOR" not in os.environ

    def drain(self, timeout: float) -> None:
        """Stop accepting, close idle keep-alive connections, let requests in flight finish
        for up to ``timeout`` seconds, then kill what is left."""
        if self.draining:
            return
        self.draining = True
        self.close()
        for handler in list(self.idle):
            handler.close_idle()
        self.stop(timeout=timeout)


def make_server(listener: socket.socket, app: WSGIApp, config: Config) -> DevServer:
    return DevServer(listener, app, config, log=sys.stderr)
