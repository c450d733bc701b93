"""HTTP framing and timeouts (issue 8): strict parsing, nothing smuggled, nothing held forever.

One geventdev for the module, with 1 s timeouts, serving an app that records every call by path.
Each case goes over a raw socket to 127.0.0.1: the statuses must be the expected ones, the app
must be called exactly for the valid requests, and the log must never hold a traceback. The fuzz
test mutates valid requests and compares with h11, a strict HTTP/1.1 parser written
independently: what geventdev serves from some bytes must be a prefix of what h11 accepts.
"""

from __future__ import annotations

import os
import re
import select
import socket
import sys
import time
from collections.abc import Iterator
from typing import NamedTuple

import h11
import pytest
import simple_websocket
from conftest import DevServer, geventdev_env, recv_for, wait_until, write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TIMEOUT = 1.0  # --header-timeout, --keepalive-timeout and --body-timeout of the server
SLACK = 1.5  # how late a timeout may fire on a busy 2-core machine
APP = """
from flask import Flask, request
from flask_sock import Sock

app = Flask(__name__)
calls = []

@app.route("/_calls")
def recorded():
    return "\\n".join(calls), {"Content-Type": "text/plain"}

@app.route("/noread", methods=["POST"])
def noread():
    return "not read", {"Content-Type": "text/plain"}

@app.route("/<path:path>", methods=["GET", "POST", "PUT"])
def echo(path):
    return f"read {len(request.get_data())}", {"Content-Type": "text/plain"}

@Sock(app).route("/ws")
def ws(conn):
    while True:
        conn.send(conn.receive())

def counting(wsgi_app):
    def counted(environ, start_response):
        if environ["PATH_INFO"] != "/_calls":
            calls.append(environ["PATH_INFO"])
        return wsgi_app(environ, start_response)
    return counted

app.wsgi_app = counting(app.wsgi_app)
"""


class Response(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    root = tmp_path_factory.mktemp("framing")
    write(root / "project" / "app.py", APP)
    timeouts = [f"--{kind}-timeout={TIMEOUT}" for kind in ("header", "keepalive", "body")]
    argv = [sys.executable, "-m", "geventdev", "app.py", "--no-reload", *timeouts, "--port", "0"]
    srv = DevServer(root / "project", root / "server.log", argv, geventdev_env())
    try:
        wait_until(lambda: served(srv) is not None or srv.proc.poll() is not None, 30, "an answer")
        assert served(srv) is not None, srv.log()
        yield srv
    finally:
        srv.stop()


def served(srv: DevServer) -> list[str] | None:
    """The paths the app was called with so far, in order (None until it answers)."""
    try:
        response = srv.get("/_calls", timeout=5)
    except OSError:
        return None
    if response.status_code != 200:
        return None
    return response.text.split("\n") if response.text else []


def assert_healthy(srv: DevServer) -> None:
    log = srv.log()
    assert srv.proc.poll() is None, f"the server died:\n{log[-3000:]}"
    assert "Traceback" not in log, log[-3000:]
    assert "\x1b" not in log and "\x00" not in log, "raw control characters in the log"


def request(line: str, *headers: str, body: bytes = b"") -> bytes:
    return "".join(f"{text}\r\n" for text in (line, *headers, "")).encode("latin-1") + body


def parse(data: bytes) -> list[Response]:
    """The responses in ``data``, which must hold whole responses only."""
    responses = []
    while data:
        head, blank, data = data.partition(b"\r\n\r\n")
        assert blank, f"a cut-off response: {head!r}"
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
        status = int(status_line.split()[1])
        size = int(headers.get("content-length", "0")) if status >= 200 else 0
        responses.append(Response(status, headers, data[:size]))
        data = data[size:]
    return responses


def exchange(srv: DevServer, payload: bytes) -> list[Response]:
    """Send ``payload`` on a new connection, end our side, and read until the server closes."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as conn:
        try:
            conn.sendall(payload)
            conn.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):  # refused before it read everything
            pass
        return parse(recv_for(conn, 5))


def read_response(conn: socket.socket) -> Response:
    """Exactly one response, from a connection that stays open."""
    data = b""
    while True:
        head, blank, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"\r\ncontent-length: *([0-9]+)", head, re.I)
        if blank and len(body) >= (int(length[1]) if length else 0):
            (response,) = parse(data)
            return response
        chunk = conn.recv(65536)
        assert chunk, f"closed before a whole response: {data!r}"
        data += chunk


def msg(line: str, headers: str = "Host: x", body: bytes = b"") -> bytes:
    """A request; ``headers`` are its header lines, separated by "|"."""
    return request(line, *(headers.split("|") if headers else ()), body=body)


OK = msg("GET /ok HTTP/1.1")
SMUGGLED = msg("GET /smuggled HTTP/1.1")
CHUNKED = b"3\r\nabc\r\n0\r\n\r\n"
X99 = "|".join(f"X-{i}: y" for i in range(99))  # with Host, 100 header lines
BIG99 = "|".join(f"X-{i}: {'a' * 700}" for i in range(99))  # 70 KB in all

# Refused before the app runs, whatever follows: (status, request line, header lines). The body
# is a chunked one and then a whole request, which must never be served.
REFUSED = [
    (400, "POST / HTTP/1.1", "Host: x|Content-Length: +3"),
    (400, "POST / HTTP/1.1", "Host: x|Content-Length: 1_0"),
    (400, "POST / HTTP/1.1", "Host: x|Content-Length: 0x10"),
    (400, "POST / HTTP/1.1", "Host: x|Content-Length: -1"),
    (400, "POST / HTTP/1.1", "Host: x|Content-Length: "),
    (400, "POST / HTTP/1.1", "Host: x|Content-Length: 3, 3"),
    (400, "POST / HTTP/1.1", "Host: x|Content-Length: 3|Content-Length: 36"),
    (400, "POST / HTTP/1.1", "Host: x|Content-Length: 3|Content-Length: 3"),  # our choice
    (400, "POST / HTTP/1.1", "Host: x|Transfer-Encoding: chunked|Transfer-Encoding: identity"),
    (501, "POST / HTTP/1.1", "Host: x|Transfer-Encoding: gzip, chunked"),
    (501, "POST / HTTP/1.1", "Host: x|Transfer-Encoding: chunked, gzip"),
    (501, "POST / HTTP/1.1", "Host: x|Transfer-Encoding: identity"),
    (501, "POST / HTTP/1.1", "Host: x|Transfer-Encoding: chunked, chunked"),
    (400, "POST / HTTP/1.1", "Host: x|Transfer-Encoding: ,"),
    (400, "HEAD / HTTP/1.1", "Host: x|Content-Length: 5"),
    (400, "GET / HTTP/1.1", "Host : evil"),
    (400, "GET / HTTP/1.1", "Host: x|Connection : close"),
    (400, "GET / HTTP/1.1", "Host: x|X-A: a| folded"),
    (400, "GET / HTTP/1.1", "Host: x|X-A: a|\tfolded"),
    (400, "GET / HTTP/1.1", " Host: x"),
    (400, "GET / HTTP/1.1", "Host: x|Nonsense"),
    (400, "GET / HTTP/1.1", "Host: x|X-A: a\x00b"),
    (400, "GET / HTTP/1.1", "Host: x|X-A: a\x1b[2Jb"),
    (400, "GET / HTTP/1.1", ""),
    (400, "GET / HTTP/1.1", "Host: x|Host: evil"),
    (400, "GET / HTTP/1.1", "Host: x/y"),
    (431, "GET / HTTP/1.1", f"Host: x|X-A: y|{X99}"),
    (431, "GET / HTTP/1.1", f"Host: x|X-A: {'a' * 70_000}"),
    (431, "GET / HTTP/1.1", f"Host: x|{BIG99}"),
    (400, "GET / HTTP/1", "Host: x"),
    (400, "GET / HTTP/1.1.1", "Host: x"),
    (400, "GET / HTTP/a.b", "Host: x"),
    (400, "GET / http/1.1", "Host: x"),
    (505, "GET / HTTP/2.0", "Host: x"),
    (505, "GET / HTTP/0.9", "Host: x"),
    (505, "GET / HTTP/3.1", "Host: x"),
    (400, "GET /", ""),  # HTTP/0.9
    (400, "POST /", ""),
    (400, "GET  / HTTP/1.1", "Host: x"),
    (400, "", "|GET / HTTP/1.1|Host: x"),  # two empty lines first (one is ignored: RFC 9112 §2.2)
    (414, f"GET /{'a' * 8200} HTTP/1.1", "Host: x"),
]


@pytest.mark.parametrize(
    ("status", "line", "headers"), REFUSED, ids=[f"{c} {r[:20]} {h[:60]}" for c, r, h in REFUSED]
)
def test_refused_before_the_app(server: DevServer, status: int, line: str, headers: str) -> None:
    before = served(server)
    responses = exchange(server, msg(line, headers, CHUNKED + SMUGGLED + OK))
    assert [(r.status, r.headers.get("connection")) for r in responses] == [(status, "close")]
    assert served(server) == before
    assert_healthy(server)


# Served: (bytes sent on one connection, statuses answered, paths the app was called with).
SERVED = {
    "valid": (OK, [200], ["/ok"]),
    "pipelined": (OK + OK, [200, 200], ["/ok", "/ok"]),
    "HTTP/1.0 without Host": (msg("GET /ok HTTP/1.0", ""), [200], ["/ok"]),
    "bare LF line ends": (b"GET /ok HTTP/1.1\nHost: x\n\n", [200], ["/ok"]),
    "100 headers": (msg("GET /ok HTTP/1.1", f"Host: x|{X99}"), [200], ["/ok"]),
    "control bytes in the path": (msg("GET /a\x1bb HTTP/1.1"), [200], ["/a\x1bb"]),
    "close ends it": (msg("GET /ok HTTP/1.1", "Host: x|Connection: close") + OK, [200], ["/ok"]),
    "chunked, any case": (
        msg("POST /c HTTP/1.1", "Host: x|Transfer-Encoding: ChUnKeD", CHUNKED) + OK,
        [200, 200],
        ["/c", "/ok"],
    ),
    "TE with CL: chunked, then close": (
        msg("POST /te HTTP/1.1", "Host: x|Content-Length: 5|Transfer-Encoding: chunked", CHUNKED)
        + SMUGGLED,
        [200],
        ["/te"],
    ),
    "bad chunk size": (
        msg("POST /c HTTP/1.1", "Host: x|Transfer-Encoding: chunked", b"zz\r\n" + SMUGGLED),
        [400],
        ["/c"],
    ),
    "empty chunk size": (
        msg("POST /c HTTP/1.1", "Host: x|Transfer-Encoding: chunked", b"\r\n" + SMUGGLED),
        [400],
        ["/c"],
    ),
    "bad after good": (OK + msg("GET /ok HTTP/1"), [200, 400], ["/ok"]),
    "TLS ClientHello": (
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(32)),
        [400],
        [],
    ),
}


@pytest.mark.parametrize("name", SERVED)
def test_served_exactly_once(server: DevServer, name: str) -> None:
    payload, statuses, paths = SERVED[name]
    before = served(server) or []
    responses = exchange(server, payload)
    assert [r.status for r in responses] == statuses, responses
    assert (served(server) or [])[len(before) :] == paths
    closing = [r for r in responses if r.status >= 400 or name.startswith("TE with CL")]
    assert all(r.headers.get("connection") == "close" for r in closing), closing
    assert_healthy(server)


def test_refusals_are_one_escaped_log_line(server: DevServer) -> None:
    exchange(server, request("GET /\x1b[31m HTTP/1.1", "Host : \x1b[2J"))
    log = server.wait_for_log('"GET /\\x1b[31m HTTP/1.1" 400')
    (line,) = (line for line in log.splitlines() if "x1b[31m" in line)
    assert line.endswith("(malformed header line 'Host : \\x1b[2J')"), line


def slow_send(conn: socket.socket, payload: bytes, interval: float) -> float:
    """Send a byte every ``interval`` until the server answers or closes; return the time."""
    started = time.monotonic()
    for byte in payload:
        try:
            conn.sendall(bytes([byte]))
        except OSError:
            break
        if select.select([conn], [], [], interval)[0]:  # the pause between bytes
            break
    return time.monotonic() - started


def test_slowloris_is_answered_408_within_the_header_timeout(server: DevServer) -> None:
    before = served(server)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        elapsed = slow_send(
            conn, request("GET /ok HTTP/1.1", *(f"X-{i}: y" for i in range(9))), 0.1
        )
        responses = parse(recv_for(conn, 5))
    assert [r.status for r in responses] == [408] and elapsed < TIMEOUT + SLACK
    assert served(server) == before
    assert_healthy(server)


def test_a_silent_connection_is_closed_unanswered(server: DevServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        started = time.monotonic()
        assert conn.recv(1024) == b""
    assert TIMEOUT * 0.9 < time.monotonic() - started < TIMEOUT + SLACK


def test_idle_keep_alive_is_closed_and_a_prompt_request_served(server: DevServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(OK)
        assert read_response(conn).status == 200
        assert not select.select([conn], [], [], TIMEOUT * 0.6)[0]  # idle, still open
        conn.sendall(OK)  # the idle clock starts again after each response
        assert read_response(conn).status == 200
        started = time.monotonic()
        assert conn.recv(1024) == b""  # then nothing more: closed without a word
    assert TIMEOUT * 0.9 < time.monotonic() - started < TIMEOUT + SLACK


@pytest.mark.parametrize(
    "payload",
    [
        msg("POST /post HTTP/1.1", "Host: x|Content-Length: 10", b"abc"),
        msg("POST /post HTTP/1.1", "Host: x|Transfer-Encoding: chunked", b"5\r\nab"),
    ],
    ids=["content-length", "chunked"],
)
def test_a_stalled_body_fails_with_408(server: DevServer, payload: bytes) -> None:
    before = served(server) or []
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        started = time.monotonic()
        conn.sendall(payload)  # and then nothing: the app's request.get_data() fails
        responses = parse(recv_for(conn, 5))
    assert time.monotonic() - started < TIMEOUT + SLACK
    assert [(r.status, r.headers.get("connection")) for r in responses] == [(408, "close")]
    assert (served(server) or [])[len(before) :] == ["/post"]
    assert_healthy(server)


def test_a_stalled_unread_body_closes_after_the_response(server: DevServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(msg("POST /noread HTTP/1.1", "Host: x|Content-Length: 10", b"abc"))
        assert read_response(conn).body == b"not read"
        started = time.monotonic()
        assert recv_for(conn, 5) == b""  # pywsgi discards the body: that read times out too
    assert time.monotonic() - started < TIMEOUT + SLACK
    server.wait_for_log("(request body: 408 Request Timeout")
    assert_healthy(server)


def test_a_slow_but_steady_body_is_fine(server: DevServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(msg("POST /post HTTP/1.1", "Host: x|Content-Length: 4"))
        for byte in b"abcd":  # 2 s in all, but never silent for a whole --body-timeout
            assert not select.select([conn], [], [], TIMEOUT / 2)[0]
            conn.sendall(bytes([byte]))
        assert read_response(conn).body == b"read 4"


def test_websocket_upgrades_pass_and_may_idle(server: DevServer) -> None:
    client = simple_websocket.Client.connect(f"ws://127.0.0.1:{server.port}/ws")
    try:
        client.send("one")
        assert client.receive(timeout=5) == "one"
        assert client.receive(timeout=TIMEOUT * 1.5) is None  # idle past every timeout
        client.send("two")
        assert client.receive(timeout=5) == "two"
    finally:
        client.close()
    assert_healthy(server)


# Fuzz: mutations of valid requests (header lines inserted, deleted, duplicated, bytes in them
# inserted or deleted, CL/TE variants), each followed by a request smuggled in the body.
BAIT = request("GET /bait HTTP/1.1", "Host: x")
SEEDS = [
    (b"GET /f1 HTTP/1.1", [b"Host: x", b"Accept: */*"], b""),
    (b"POST /f2 HTTP/1.1", [b"Host: x", b"Content-Length: %d" % len(BAIT)], BAIT),
    (
        b"POST /f3 HTTP/1.1",
        [b"Host: x", b"Transfer-Encoding: chunked"],
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(BAIT), BAIT),
    ),
    (b"PUT /f4 HTTP/1.1", [b"Host: x", b"Content-Length: 5", b"Connection: keep-alive"], b"hello"),
]
LINES = [
    *(
        b"Content-Length: " + v
        for v in (b"0", b"5", b"%d" % len(BAIT), b"+3", b"1_0", b"3, 3", b"")
    ),
    *(b"Transfer-Encoding: " + v for v in (b"chunked", b"identity", b"gzip, chunked", b"ChUnKeD")),
    b"Transfer-Encoding:\tchunked",
    b"Transfer-Encoding : chunked",
    b"Content-Length : 0",
    b" folded",
    b"\tfolded",
    b"Host : evil",
    b"Host: other",
    b"Connection: close",
    b"X-A: b",
    b"",
]
BYTES = [
    b" ",
    b"\t",
    b"\r",
    b"\n",
    b"\r\n",
    b":",
    b",",
    b"0",
    b"9",
    b"a",
    b"-",
    b"+",
    b"\x00",
    b"\x85",
]


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    line, headers, body = draw(st.sampled_from(SEEDS))
    headers = list(headers)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["insert", "delete", "duplicate", "add byte", "cut bytes"]))
        at = draw(st.integers(0, len(headers)))
        if op == "insert":
            headers.insert(at, draw(st.sampled_from(LINES)))
            continue
        if not headers:
            continue
        at %= len(headers)
        pos = draw(st.integers(0, len(headers[at])))
        if op == "delete":
            del headers[at]
        elif op == "duplicate":
            headers.insert(at, headers[at])
        elif op == "add byte":
            headers[at] = headers[at][:pos] + draw(st.sampled_from(BYTES)) + headers[at][pos:]
        else:
            headers[at] = headers[at][:pos] + headers[at][pos + draw(st.integers(1, 3)) :]
    end = draw(st.sampled_from([b"\r\n", b"\n"]))
    tail = OK if draw(st.booleans()) else b""
    return line + b"\r\n" + b"".join(h + end for h in headers) + end + body + tail


def h11_paths(payload: bytes) -> list[str]:
    """The targets of the requests h11 accepts from ``payload`` on one connection, in order; one
    empty line before a request line is skipped first, as geventdev does (RFC 9112 §2.2: a
    SHOULD), and h11 does not."""
    paths: list[str] = []
    while True:
        payload = payload.removeprefix(b"\r\n") if payload[:2] == b"\r\n" else payload
        payload = payload.removeprefix(b"\n")
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(payload)
        conn.receive_data(b"")
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                return paths
            if isinstance(event, h11.Request):
                paths.append(event.target.decode("latin-1"))
            elif isinstance(event, h11.EndOfMessage):
                conn.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
                conn.send(h11.EndOfMessage())
                if (conn.our_state, conn.their_state) != (h11.DONE, h11.DONE):
                    return paths
                payload = conn.trailing_data[0]  # the next request: on a fresh parser
                break
            elif not isinstance(event, h11.Data):  # waiting for more, paused or closed
                return paths


# hypothesis reports a failure with libcst, which warns on import (and warnings are errors here)
@pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")
@settings(
    max_examples=int(os.environ.get("GEVENTDEV_FUZZ_EXAMPLES", "150")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(payload=mutated_requests())
def test_fuzzed_requests_never_smuggle(server: DevServer, payload: bytes) -> None:
    before = served(server) or []
    statuses = [r.status for r in exchange(server, payload)]
    paths = (served(server) or [])[len(before) :]
    assert paths == h11_paths(payload)[: len(paths)], payload
    assert all(s < 500 or s in (501, 505) for s in statuses), (statuses, payload)  # no crash
    assert_healthy(server)
