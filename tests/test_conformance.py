"""HTTP and WebSocket behaviour other servers' test suites accept (issue 13).

One geventdev for the module (``--no-reload``, debug and live reload on), driven over raw sockets,
so each case sees exactly the bytes on the wire; then the same cases with real clients, each
sending one more request on the same keep-alive connection afterwards (a client that desyncs
fails there). The restart cases (a WebSocket and a live-reload stream open during a reload) start
their own server with reload on.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, DevServer, geventdev_env, gws_env, wait_until, write
from test_framing import Response, exchange, msg, parse, read_response

APP = """
import time
from flask import Flask, Response, request
from flask_sock import Sock

app = Flask(__name__)
sock = Sock(app)
PAGE = "<!doctype html><html><body><p>page</p></body></html>"

@app.route("/ok")
def ok():
    return "ok", {"Content-Type": "text/plain"}

@app.route("/page")
def page():
    return PAGE

@app.route("/stream")
def stream():
    def chunks():
        yield "a"
        yield "b"
    return Response(chunks(), content_type="text/plain")

@app.route("/forever")
def forever():
    def chunks():
        while True:
            yield "tick\\n"
            time.sleep(0.05)
    return Response(chunks(), content_type="text/plain")

@app.route("/noread", methods=["POST"])
def noread():
    return "not read", {"Content-Type": "text/plain"}

@app.route("/echo", methods=["GET", "POST"])
def echo():
    return f"read {len(request.get_data())}", {"Content-Type": "text/plain"}

@app.route("/version")
def version():
    return request.environ["SERVER_PROTOCOL"], {"Content-Type": "text/plain"}

@sock.route("/ws")
def ws(conn):
    while True:
        conn.send(conn.receive())

@sock.route("/ws-once")
def ws_once(conn):
    conn.send(conn.receive())
"""

BROWSER = "Accept: text/html,application/xhtml+xml|Sec-Fetch-Dest: document"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    root = tmp_path_factory.mktemp("conformance")
    write(root / "project" / "app.py", APP)
    argv = [sys.executable, "-m", "geventdev", "app.py", "--no-reload", "--port", "0"]
    srv = DevServer(root / "project", root / "server.log", argv, geventdev_env())
    try:
        wait_until(lambda: answers(srv) or srv.proc.poll() is not None, 30, "an answer")
        assert answers(srv), srv.log()
        yield srv
    finally:
        srv.stop()


def answers(srv: DevServer) -> bool:
    try:
        return srv.get("/ok", timeout=5).status_code == 200
    except OSError:
        return False


def connect(srv: DevServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.port), timeout=5)


def closed_within(conn: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before it closed the connection, or None if it did not close in time."""
    conn.settimeout(seconds)
    data = b""
    try:
        while chunk := conn.recv(65536):
            data += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return data


def still_serving(conn: socket.socket) -> Response:
    """One more request on the same connection: the proof that the connection is in step."""
    conn.sendall(msg("GET /ok HTTP/1.1"))
    response = read_response(conn)
    assert (response.status, response.body) == (200, b"ok"), response
    return response


# --- WebSockets over a raw socket ---------------------------------------------------------------


def ws_handshake(conn: socket.socket, path: str, host: str = "x") -> bytes:
    """Send an upgrade request; return the 101 head (and any bytes after it)."""
    key = base64.b64encode(os.urandom(16)).decode()
    conn.sendall(
        msg(
            f"GET {path} HTTP/1.1",
            f"Host: {host}|Upgrade: websocket|Connection: Upgrade|Sec-WebSocket-Key: {key}"
            "|Sec-WebSocket-Version: 13",
        )
    )
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"closed during the handshake: {data!r}"
        data += chunk
    assert data.startswith(b"HTTP/1.1 101 "), data
    return data


def frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (payloads under 126 bytes)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


def close_frame(code: int = 1000) -> bytes:
    return frame(0x8, struct.pack("!H", code))


def test_websocket_closed_by_the_client_ends_the_connection(server: DevServer) -> None:
    """Item 1: after the close handshake the server closes TCP at once (RFC 6455 §7.1.1), and
    never reads the WebSocket's bytes as an HTTP request."""
    with connect(server) as conn:
        head = ws_handshake(conn, "/ws")
        conn.sendall(frame(0x1, b"hi"))
        conn.sendall(close_frame())
        rest = closed_within(conn, 3)
    assert rest is not None, "the server kept the connection open after the close handshake"
    stream = head.partition(b"\r\n\r\n")[2] + rest
    assert b"HTTP/1.1" not in stream, stream
    assert stream == b"\x81\x02hi\x88\x02\x03\xe8", (
        stream
    )  # the echo, the close reply: nothing else


def test_websocket_closed_by_the_app_ends_the_connection(server: DevServer) -> None:
    """Item 1: the app returns; the client's close reply (and anything after it) is never read as
    a request line (it was answered with HTTP/1.1 400 inside the WebSocket)."""
    with connect(server) as conn:
        ws_handshake(conn, "/ws-once")
        conn.sendall(frame(0x1, b"one"))
        received = b""
        while not received.endswith(b"\x88\x02\x03\xe8"):  # the echo, then the app's close
            chunk = conn.recv(65536)
            assert chunk, received
            received += chunk
        conn.sendall(close_frame())
        rest = closed_within(conn, 3)
    assert rest is not None, "the server kept the connection open after the close handshake"
    assert received + rest == b"\x81\x03one\x88\x02\x03\xe8", rest  # no HTTP/1.1 400 after it
    wait_until(lambda: '"GET /ws-once HTTP/1.1" 101' in server.log(), 5, "the log line")


def test_websockets_client_closes_at_once(server: DevServer) -> None:
    """Item 1 with a real client: ``websockets`` waits for the server's TCP close (15 s before)."""
    from websockets.sync.client import connect as ws_connect

    with ws_connect(f"ws://127.0.0.1:{server.port}/ws", close_timeout=10) as client:
        client.send("x")
        assert client.recv(timeout=5) == "x"
        started = time.monotonic()
        client.close()
        took = time.monotonic() - started
    assert took < 2, f"close() took {took:.1f} s"


def test_upgrade_flagged_post_with_a_body_is_answered(server: DevServer) -> None:
    """Item 8: ``Connection: Upgrade`` on a POST with a body: the body is read by its length
    (pywsgi handed the app the raw socket, whose read() waits for EOF), and the connection stays
    in step."""
    with connect(server) as conn:
        headers = "Host: x|Connection: Upgrade|Upgrade: h2c|Content-Length: 5"
        conn.sendall(msg("POST /echo HTTP/1.1", headers, b"hello"))
        assert read_response(conn).body == b"read 5"
        still_serving(conn)


# --- Expect: 100-continue -------------------------------------------------------------------------


def test_expect_continue_body_never_read_closes(server: DevServer) -> None:
    """Item 4: the app answers without reading the announced body: no 100, and the answer closes
    the connection (the client's body would otherwise be waited for, or read as a request)."""
    with connect(server) as conn:
        conn.sendall(msg("POST /noread HTTP/1.1", "Host: x|Content-Length: 5|Expect: 100-continue"))
        rest = closed_within(conn, 3)
    assert rest is not None, "the server kept waiting for the body"
    (response,) = parse(rest)
    assert (response.status, response.body) == (200, b"not read")
    assert response.headers.get("connection") == "close"


def test_expect_is_matched_case_insensitively(server: DevServer) -> None:
    """Item 8: ``Expect: 100-Continue`` gets its 100 when the app reads (RFC 9110 §10.1.1)."""
    with connect(server) as conn:
        conn.sendall(msg("POST /echo HTTP/1.1", "Host: x|Content-Length: 5|Expect: 100-Continue"))
        interim = conn.recv(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n", interim
        conn.sendall(b"hello")
        assert read_response(conn).body == b"read 5"
        still_serving(conn)


def test_no_100_continue_to_http_1_0(server: DevServer) -> None:
    """Item 8: an HTTP/1.0 client does not know 100 Continue (RFC 9110 §15.2)."""
    payload = msg("POST /echo HTTP/1.0", "Content-Length: 5|Expect: 100-continue", b"hello")
    responses = exchange(server, payload)
    assert [(r.status, r.body) for r in responses] == [(200, b"read 5")], responses


# --- HEAD -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/stream", "/forever"])
def test_head_of_a_streamed_response_has_no_body(server: DevServer, path: str) -> None:
    """Item 5: no ``Transfer-Encoding: chunked`` and no ``0`` chunk after a HEAD's head; the next
    request on the connection is answered (httpx, h11 and aiohttp failed there)."""
    with connect(server) as conn:
        conn.sendall(msg(f"HEAD {path} HTTP/1.1"))
        conn.sendall(msg("GET /ok HTTP/1.1"))
        data = b""
        while data.count(b"\r\n\r\n") < 2 or not data.endswith(b"ok"):
            chunk = conn.recv(65536)
            assert chunk, data
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data
    assert b"transfer-encoding" not in head.lower(), head
    assert rest.startswith(b"HTTP/1.1 200 "), f"bytes after the HEAD's head: {rest[:40]!r}"


@pytest.mark.parametrize(
    "path", ["/__geventdev__/livereload", "/__geventdev__/livereload.js", "/__geventdev__/nope"]
)
def test_head_to_reserved_paths_has_no_body(server: DevServer, path: str) -> None:
    """Item 5: geventdev's own endpoints, the endless event stream too, answer HEAD with a head."""
    with connect(server) as conn:
        conn.sendall(msg(f"HEAD {path} HTTP/1.1"))
        conn.settimeout(5)
        head = conn.recv(65536)
        assert head.startswith(b"HTTP/1.1 ") and head.endswith(b"\r\n\r\n"), head
        assert b"transfer-encoding" not in head.lower(), head
        still_serving(conn)


@pytest.mark.parametrize("headers", ["Host: x", f"Host: x|{BROWSER}"])
def test_head_reports_the_length_a_get_would(server: DevServer, headers: str) -> None:
    """Item 5: a browser's GET of a page gets the live-reload script, so its HEAD reports that
    length too; a script's (``Accept: */*``) gets the app's bytes, both ways."""
    with connect(server) as conn:
        conn.sendall(msg("GET /page HTTP/1.1", headers))
        got = read_response(conn)
        conn.sendall(msg("HEAD /page HTTP/1.1", headers))
        head = conn.recv(65536)
        still_serving(conn)
    assert got.headers["content-length"] == str(len(got.body))
    assert (b"livereload" in got.body) == ("document" in headers)
    assert f"content-length: {len(got.body)}\r\n".encode() in head.lower(), head


def test_head_of_a_page_reports_the_injected_length_unit() -> None:
    """Item 5, the middleware alone: a page's HEAD (werkzeug: the app's Content-Length, no body)
    reports the length its GET gets with the script in; a HEAD a script sends stays the app's."""
    from test_livereload import PAGE, Served, html_headers

    from geventdev.livereload.middleware import LiveReload

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", html_headers(PAGE))
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [PAGE]

    got, head = Served(LiveReload(app)), Served(LiveReload(app), method="HEAD")
    assert len(got.body) > len(PAGE)
    assert (head.header("Content-Length"), head.body) == (str(len(got.body)), b"")
    script = Served(LiveReload(app), method="HEAD", **{"Sec-Fetch-Dest": None, "Accept": "*/*"})
    assert (script.header("Content-Length"), script.body) == (str(len(PAGE)), b"")


# --- HTTP/1.0 keep-alive and versions -------------------------------------------------------------


def test_http_1_0_keep_alive_without_a_length_closes(server: DevServer) -> None:
    """Item 6: an HTTP/1.0 client cannot be sent chunks, so a response of unknown length ends
    with the connection: ``Connection: close`` (was ``keep-alive``, and the next answer was
    glued onto the body)."""
    with connect(server) as conn:
        conn.sendall(msg("GET /stream HTTP/1.0", "Connection: keep-alive"))
        data = closed_within(conn, 3)
    assert data is not None, "the connection stayed open after a body of unknown length"
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"\r\nconnection: close" in head.lower(), head
    assert body == b"ab"


def test_http_1_0_keep_alive_with_a_length_stays(server: DevServer) -> None:
    with connect(server) as conn:
        conn.sendall(msg("GET /ok HTTP/1.0", "Connection: keep-alive"))
        response = read_response(conn)
        assert response.headers.get("connection") == "keep-alive"
        conn.sendall(msg("GET /ok HTTP/1.0", "Connection: keep-alive"))
        assert read_response(conn).body == b"ok"


def test_a_leading_empty_line_is_ignored(server: DevServer) -> None:
    """Item 8: RFC 9112 §2.2: a server SHOULD ignore an empty line before the request line."""
    responses = exchange(server, b"\r\n" + msg("GET /ok HTTP/1.1", "Host: x|Connection: close"))
    assert [(r.status, r.body) for r in responses] == [(200, b"ok")]


def test_http_1_2_is_served_as_1_1(server: DevServer) -> None:
    """Item 8: RFC 9110 §2.5: a higher minor version SHOULD be served as the highest we know."""
    responses = exchange(server, msg("GET /version HTTP/1.2", "Host: x|Connection: close"))
    assert [(r.status, r.body) for r in responses] == [(200, b"HTTP/1.1")]


def test_a_bare_lf_in_a_chunk_extension_is_refused(server: DevServer) -> None:
    """Item 8: a chunk line ends with CRLF; a bare LF in its extension is a framing doubt (a proxy
    that ends the line there sees a different body)."""
    body = b"5;a\nb\r\nhello\r\n0\r\n\r\n"
    responses = exchange(
        server, msg("POST /echo HTTP/1.1", "Host: x|Transfer-Encoding: chunked", body)
    )
    assert [(r.status, r.headers.get("connection")) for r in responses] == [(400, "close")]


# --- a restart with a WebSocket and a live-reload stream open ------------------------------------


def test_restart_closes_websockets_and_ends_event_streams_cleanly(
    project: Path, dev_server: Any
) -> None:
    """Items 2 and 7: on a reload an open WebSocket gets the 1012 close frame and nothing after it
    (it got an ``HTTP/1.1 500`` too, logged as a false 500), and a live-reload event stream ends
    with the last chunk, ``0\\r\\n\\r\\n`` (each save put ERR_INCOMPLETE_CHUNKED_ENCODING in the
    browser console)."""
    app = write(project / "app.py", APP)
    server = dev_server("app.py")
    server.wait_for_text("/ok", "ok")
    with connect(server) as ws, connect(server) as events:
        after_head = ws_handshake(ws, "/ws").partition(b"\r\n\r\n")[2]
        events.sendall(msg("GET /__geventdev__/livereload HTTP/1.1", f"Host: x|{BROWSER}"))
        first = events.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ") and b"event: hello" in first, first
        app.write_text(APP.replace('"ok"', '"v2"'))
        ws_rest, events_rest = closed_within(ws, 10), closed_within(events, 10)
    assert ws_rest is not None and events_rest is not None, "not closed by the restart"
    assert after_head + ws_rest == b"\x88\x02\x03\xf4", ws_rest  # 1012 "service restart", alone
    assert (first + events_rest).endswith(b"\r\n0\r\n\r\n"), events_rest[-40:]
    server.wait_for_text("/ok", "v2")
    log = server.log()
    assert '"GET /ws HTTP/1.1" 101' in log and '" 500 ' not in log, log


# --- real clients, each on one keep-alive connection through every case --------------------------

#: (method, path, body, expected body): HEADs of streams and of our endpoints, bodies, a stream;
#: each client sends them in order on one connection, then one more GET.
SEQUENCE = [
    ("HEAD", "/stream", None, b""),
    ("HEAD", "/forever", None, b""),
    ("HEAD", "/__geventdev__/livereload", None, b""),
    ("HEAD", "/__geventdev__/nope", None, b""),
    ("GET", "/ok", None, b"ok"),
    ("POST", "/echo", b"hello", b"read 5"),
    ("GET", "/stream", None, b"ab"),
    ("GET", "/ok", None, b"ok"),
]


def test_requests_session(server: DevServer) -> None:
    import requests

    with requests.Session() as session:
        for method, path, body, expected in SEQUENCE:
            response = session.request(method, server.url + path, data=body, timeout=5)
            assert response.content == expected, (method, path, response.content)


def test_httpx_client(server: DevServer) -> None:
    import httpx

    with httpx.Client(base_url=server.url, timeout=5) as client:
        for method, path, body, expected in SEQUENCE:
            response = client.request(method, path, content=body)
            assert response.content == expected, (method, path, response.content)


def test_aiohttp_session(server: DevServer) -> None:
    import aiohttp

    async def run() -> list[bytes]:
        connector = aiohttp.TCPConnector(limit=1)  # one connection, reused for each request
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            bodies = []
            for method, path, body, _ in SEQUENCE:
                async with session.request(method, server.url + path, data=body) as response:
                    bodies.append(await response.read())
            return bodies

    assert asyncio.run(run()) == [expected for *_, expected in SEQUENCE]


def test_h11_on_one_connection(server: DevServer) -> None:
    import h11

    client = h11.Connection(h11.CLIENT)
    with connect(server) as conn:
        for method, path, body, expected in SEQUENCE:
            headers = [("Host", "x"), *([("Content-Length", str(len(body)))] if body else [])]
            data = client.send(h11.Request(method=method, target=path, headers=headers))
            data += client.send(h11.Data(data=body)) if body else b""
            conn.sendall(data + client.send(h11.EndOfMessage()))
            received = b""
            while True:
                event = client.next_event()
                if event is h11.NEED_DATA:
                    client.receive_data(conn.recv(65536))
                elif isinstance(event, h11.Data):
                    received += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
            assert received == expected, (method, path, received)
            client.start_next_cycle()


def test_curl_keeps_the_connection_in_step(server: DevServer, tmp_path: Path) -> None:
    """curl reuses its connection for each URL of one command: Expect: 100-continue with a body
    the app never reads (curl then skips the body), HEAD of a stream, then a GET."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    url = server.url
    fmt = "%{http_code} %{num_connects}\\n"
    argv = ["-sS", "--http1.1", "-o", "/dev/null", "-w", fmt, "--max-time", "5"]
    expect = [*argv, "-H", "Expect: 100-continue", "--data-binary", "hello", f"{url}/noread"]
    head = [*argv, "--head", f"{url}/stream"]
    started = time.monotonic()
    done = subprocess.run(
        [curl, *expect, "--next", *head, "--next", *argv, f"{url}/ok"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["200", "200", "200"], done
    assert took < 3, f"{took:.1f} s: a request waited for a body or a timeout"


def test_websocket_client_closes_at_once(server: DevServer) -> None:
    import websocket

    for path in ("/ws", "/ws-once"):
        client = websocket.create_connection(f"ws://127.0.0.1:{server.port}{path}", timeout=10)
        client.send("x")
        assert client.recv() == "x"
        started = time.monotonic()
        client.close()
        assert time.monotonic() - started < 2, path


@pytest.mark.parametrize("transports", [["websocket"], ["polling", "websocket"]])
@pytest.mark.parametrize("gws", ["present", "absent"])
def test_socketio_clients(
    project: Path, dev_server: Any, tmp_path: Path, gws: str, transports: list[str]
) -> None:
    """Item 3: python-socketio opening the websocket transport directly, or polling first, with
    and without gevent-websocket: one 101 head, a working call, a prompt disconnect."""
    if gws == "present":
        pytest.importorskip("geventwebsocket")
    shutil.copy(EXAMPLES / "socketio" / "app.py", project / "app.py")
    server = dev_server("app.py", "--no-reload", **gws_env(gws, tmp_path))
    server.wait_for_text("/", "Socket.IO example")
    socketio_round_trip(server.url, server.port, transports)
    assert "Traceback" not in server.log(), server.log()


def socketio_round_trip(url: str, port: int, transports: list[str]) -> None:
    import socketio

    with connect_port(port) as conn:  # the raw bytes: exactly one head, then WebSocket frames
        data = ws_handshake(conn, "/socket.io/?EIO=4&transport=websocket")
        conn.settimeout(1)
        while len(data) < 200:
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
        assert data.count(b"HTTP/1.1 ") == 1 and b'"sid"' in data, data
    client = socketio.Client()
    client.connect(url, transports=transports, wait_timeout=10)
    try:
        wait_until(lambda: client.transport() == "websocket", 10, "the websocket transport")
        assert client.call("hello", "x", timeout=5)["echo"] == "x"
    finally:
        started = time.monotonic()
        client.disconnect()
        assert time.monotonic() - started < 2


def connect_port(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


@pytest.mark.parametrize("transports", [["websocket"], ["polling", "websocket"]])
def test_socketio_clients_under_the_gunicorn_worker(gunicorn: Any, transports: list[str]) -> None:
    """Item 3 for ``geventdev.workers.GeventWebSocketWorker`` (gevent-websocket for engine.io)."""
    pytest.importorskip("geventwebsocket")
    server = gunicorn("socketio", "app:app", "-k", "geventdev.workers.GeventWebSocketWorker")
    server.get("/")
    socketio_round_trip(server.url, int(server.url.rsplit(":", 1)[1]), transports)
