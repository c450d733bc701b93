"""What the monitor does while no app process is alive: answer HTTP itself.

Without this, a dead app leaves requests hanging in the listen backlog of a socket that looks
open (uvicorn #1801). The monitor answers each with a small 503 page that says why and refreshes
itself, until a change or a manual restart brings the app back. Stdlib only: this runs in the
unpatched monitor, in one daemon thread that stays idle while an app process is serving.
"""

from __future__ import annotations

import html
import selectors
import socket
import ssl
import threading
import time

POLL = 0.2
#: Seconds a client gets from its connection to the end of its request head.
HEAD_TIMEOUT = 2.0
#: Seconds to hand the (small) 503 page to the kernel.
SEND_TIMEOUT = 0.5
#: Clients open at once; more wait in the listen backlog until one is done.
MAX_CONNECTIONS = 64


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
    """Answers 503 on the shared listener while ``message`` is set; idle otherwise.

    One thread with a selector, whatever the number of clients: at most ``MAX_CONNECTIONS``
    open at once (the rest wait in the listen backlog), each closed ``HEAD_TIMEOUT`` seconds
    after it was accepted, answered or not (issue 12: a thread per connection made 500 slow
    clients 507 threads)."""

    def __init__(self, listener: socket.socket, tls: ssl.SSLContext | None = None) -> None:
        self.listener, self.tls = listener, tls
        self.message: str | None = None
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="geventdev-fallback", daemon=True)
        self.thread.start()

    def answer(self, message: str | None) -> None:
        """Start answering with ``message``; ``None`` stops (a new app process is starting)."""
        self.message = message
        if message is not None:
            self.wake.set()
        else:
            self.wake.clear()

    def _run(self) -> None:
        clients: dict[socket.socket, Client] = {}
        with selectors.DefaultSelector() as selector:
            while True:
                if not clients:
                    self.wake.wait()
                listening = self.message is not None and len(clients) < MAX_CONNECTIONS
                try:
                    if listening:
                        selector.register(self.listener, selectors.EVENT_READ)
                    try:
                        ready = selector.select(POLL)
                    finally:
                        if listening:
                            selector.unregister(self.listener)
                except (OSError, ValueError):  # the listener was closed: the monitor is exiting
                    for client in clients.values():
                        client.conn.close()
                    return
                for key, _ in ready:
                    if key.fileobj is self.listener:
                        self._accept(selector, clients)
                    else:
                        client = clients[key.fileobj]  # type: ignore[index]
                        if client.step():
                            self._forget(selector, clients, client)
                now = time.monotonic()
                for client in [c for c in clients.values() if c.deadline <= now]:
                    self._forget(selector, clients, client)

    def _accept(
        self, selector: selectors.BaseSelector, clients: dict[socket.socket, Client]
    ) -> None:
        message = self.message
        if message is None:  # a new app process is starting: leave it in the backlog for it
            return
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):  # an app process took it first
            return
        except OSError:
            return
        conn.setblocking(False)
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
            except (OSError, ssl.SSLError):
                conn.close()
                return
        client = Client(conn, message, time.monotonic() + HEAD_TIMEOUT, self.tls is not None)
        clients[conn] = client
        selector.register(conn, selectors.EVENT_READ)

    @staticmethod
    def _forget(
        selector: selectors.BaseSelector, clients: dict[socket.socket, Client], client: Client
    ) -> None:
        clients.pop(client.conn, None)
        try:
            selector.unregister(client.conn)
        except (KeyError, ValueError):
            pass
        client.conn.close()


class Client:
    """One connection to answer: (TLS handshake,) read the head, send the 503, close."""

    def __init__(self, conn: socket.socket, message: str, deadline: float, tls: bool) -> None:
        self.conn, self.message, self.deadline = conn, message, deadline
        self.handshaking = tls
        self.head = b""

    def step(self) -> bool:
        """Go on with what the socket allows now; True once done (answered or failed)."""
        try:
            if self.handshaking:
                self.conn.do_handshake()  # type: ignore[attr-defined]
                self.handshaking = False
            while not end_of_head(self.head):
                chunk = self.conn.recv(4096)
                if not chunk:
                    break
                self.head += chunk
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
            return False
        except (OSError, ssl.SSLError):
            return True
        try:  # a small page into an empty socket buffer: sent at once
            self.conn.setblocking(True)
            self.conn.settimeout(SEND_TIMEOUT)
            self.conn.sendall(page_503(self.message, head_only=self.head.startswith(b"HEAD ")))
            self.conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        return True


def end_of_head(head: bytes) -> bool:
    """The blank line after the headers: CRLF CRLF, or bare LFs (which the app server accepts
    too, as HTTP allows), or too much to be a request head."""
    return b"\r\n\r\n" in head or b"\n\n" in head or b"\n\r\n" in head or len(head) >= 65536
