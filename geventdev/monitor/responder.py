"""What the monitor does while no app process is alive: answer HTTP itself.

Without this, a dead app leaves requests hanging in the listen backlog of a socket that looks
open (uvicorn #1801). The monitor answers each with a small 503 page that says why and refreshes
itself, until a change or a manual restart brings the app back. Stdlib only: this runs in the
unpatched monitor, in daemon threads that stay idle while an app process is serving.
"""

from __future__ import annotations

import html
import select
import socket
import ssl
import threading

POLL = 0.2
HEAD_TIMEOUT = 2.0


def page_503(message: str, head_only: bool = False) -> bytes:
    body = (
        "<!doctype html><html><head><meta charset=utf-8><title>App not running</title>"
        '<meta http-equiv="refresh" content="2"></head><body style="font-family:sans-serif">'
        f"<h1>The app is not running</h1><p>{html.escape(message)}</p>"
        "<p>Save a file, type <code>rs</code> + Enter in the terminal, or send SIGHUP to restart."
        " This page refreshes by itself.</p></body></html>"
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nCache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return head if head_only else head + body


class FallbackResponder:
    """Answers 503 on the shared listener while ``message`` is set; idle otherwise."""

    def __init__(self, listener: socket.socket, tls: ssl.SSLContext | None = None) -> None:
        self.listener, self.tls = listener, tls
        self.message: str | None = None
        self.wake = threading.Event()
        threading.Thread(target=self._run, name="geventdev-fallback", daemon=True).start()

    def answer(self, message: str | None) -> None:
        """Start answering with ``message``; ``None`` stops (a new app process is starting)."""
        self.message = message
        if message is not None:
            self.wake.set()
        else:
            self.wake.clear()

    def _run(self) -> None:
        while True:
            self.wake.wait()
            try:
                readable, _, _ = select.select([self.listener], [], [], POLL)
            except (OSError, ValueError):  # the listener was closed: the monitor is exiting
                return
            message = self.message
            if not readable or message is None:
                continue
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):  # an app process took it first
                continue
            except OSError:
                return
            threading.Thread(target=self._reply, args=(conn, message), daemon=True).start()

    def _reply(self, conn: socket.socket, message: str) -> None:
        conn.settimeout(HEAD_TIMEOUT)
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):
            conn.close()
            return
        with conn:
            head = b""
            try:
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                conn.sendall(page_503(message, head_only=head.startswith(b"HEAD ")))
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
