"""Dev/prod parity: every app in examples/ also runs under ``gunicorn -k gevent -w 1``.

Each test starts the real gunicorn on 127.0.0.1:0 (port read from its "Listening at" line) in its
own session and ends it by process group. ``test_every_example_is_covered`` keeps new examples
from skipping this file.
"""

from __future__ import annotations

import importlib.util
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import socketio
from conftest import EXAMPLES, echo_once, get_or_none, gws_env, wait_until, ws_url

COVERED = {
    "slow",
    "site",
    "mysite_wsgi.py",
    "async_views",
    "background_thread",
    "asyncio_loop",
    "websocket_sock",
    "socketio",
    "testing",
    "logging_config",
}


def test_every_example_is_covered() -> None:
    examples = {p.name for p in EXAMPLES.iterdir() if not p.name.startswith((".", "_"))}
    assert examples == COVERED


def test_logging_config(gunicorn) -> None:
    config = str(EXAMPLES / "logging_config" / "logging.json")
    server = gunicorn("logging_config", "app:app", "-k", "gevent", "--log-config-json", config)
    assert server.get("/").text == "logged"
    server.wait_for_log("INFO [app] index visited")


def test_slow(gunicorn) -> None:
    server = gunicorn("slow", "app:app")
    assert server.get("/").text == "Hello World"
    started = time.monotonic()
    with ThreadPoolExecutor(10) as pool:
        codes = list(
            pool.map(lambda _: get_or_none(server.url + "/testsleep?seconds=0.5"), range(10))
        )
    assert [c.status_code if c else None for c in codes] == [200] * 10
    assert time.monotonic() - started < 3  # 10 x 0.5 s one after another would be 5 s


def test_site(gunicorn) -> None:
    server = gunicorn("site", "app:app")
    assert "gevent" in server.get("/").text
    assert server.get("/api/status").json()["ok"] is True


def test_plain_wsgi(gunicorn) -> None:
    server = gunicorn(".", "mysite_wsgi:application")
    assert server.get("/x").text == "plain WSGI at /x\n"


def test_app_factory(gunicorn) -> None:
    server = gunicorn("testing", "app:create_app('testing')")
    assert server.get("/").text == "Hello from testing"


def test_async_views_with_enable(gunicorn) -> None:
    server = gunicorn("async_views", "app:app")
    assert server.get("/sync").text == "a plain view"
    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(lambda i: get_or_none(f"{server.url}/?name=r{i}"), range(50)))
    assert [r.json()["name"] if r else None for r in responses] == [f"r{i}" for i in range(50)]
    assert server.get("/gather").json() == {"results": [0, 1, 2]}


def test_background_thread_once_per_worker(gunicorn) -> None:
    server = gunicorn("background_thread", "app:app", TICK_SECONDS="0.05")
    first = server.get("/").json()
    assert first["starts"] == 1 and first["alive"]
    wait_until(lambda: server.get("/").json()["ticks"] > first["ticks"] + 3, what="ticks")


def test_asyncio_loop(gunicorn) -> None:
    server = gunicorn("asyncio_loop", "app:app")
    assert server.get("/").json()["connected"] is True
    started = time.monotonic()
    with ThreadPoolExecutor(20) as pool:
        responses = list(
            pool.map(lambda i: get_or_none(f"{server.url}/work?seconds=1&n={i}"), range(20))
        )
    assert [r.json()["n"] if r else None for r in responses] == list(range(20))
    assert time.monotonic() - started < 3


def test_websocket_sock(gunicorn) -> None:
    server = gunicorn("websocket_sock", "app:app")
    server.get("/")
    assert echo_once(ws_url(server.url, "/echo"), "hi") == "echo: hi"


def socketio_round_trip(url: str) -> None:
    client = socketio.Client()
    client.connect(url, wait_timeout=10)
    try:
        wait_until(lambda: client.transport() == "websocket", 10, "the websocket upgrade")
        assert client.call("hello", "x", timeout=5) == {"version": "v1", "echo": "x"}
    finally:
        client.disconnect()


def test_socketio_without_gevent_websocket(gunicorn, tmp_path: Path) -> None:
    server = gunicorn("socketio", "app:app", **gws_env("absent", tmp_path))
    assert "Socket.IO example v1" in server.get("/").text
    socketio_round_trip(server.url)


@pytest.mark.skipif(importlib.util.find_spec("geventwebsocket") is None, reason="needs it")
def test_geventdev_worker_with_gevent_websocket(gunicorn) -> None:
    """With gevent-websocket installed, our worker serves Socket.IO *and* flask-sock."""
    worker = ("-k", "geventdev.workers.GeventWebSocketWorker")
    server = gunicorn("socketio", "app:app", *worker)
    socketio_round_trip(server.url)
    sock = gunicorn("websocket_sock", "app:app", *worker)
    sock.get("/")
    assert echo_once(ws_url(sock.url, "/echo"), "hi") == "echo: hi"
