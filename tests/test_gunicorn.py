"""Dev/prod parity: every app in examples/ also runs under ``gunicorn -k gevent -w 1``.

Each test starts the real gunicorn on 127.0.0.1:0 (port read from its "Listening at" line) in its
own session and ends it by process group. ``test_every_example_is_covered`` keeps new examples
from skipping this file.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import socketio
from conftest import EXAMPLES, echo_once, geventdev_env, gws_env, wait_until, ws_url

GUNICORN = [sys.executable, "-m", "gunicorn", "-w", "1", "--no-control-socket"]
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
}


class Gunicorn:
    def __init__(self, log_path: Path, args: list[str], env: dict[str, str]) -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*GUNICORN, "--bind", "127.0.0.1:0", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        found = wait_until(
            lambda: re.search(r"Booting worker with pid: (\d+)", self.log()) and self.log(),
            20,
            f"gunicorn to start:\n{self.log()}",
        )
        match = re.search(r"Listening at: (http://\S+)", found)
        assert match, found
        self.url = match.group(1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str) -> requests.Response:
        # the worker may still be importing the app: retry refused connections briefly
        return wait_until(lambda: _get(self.url + path), 15, f"GET {path}:\n{self.log()}")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGINT)  # quick shutdown
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


def _get(url: str) -> requests.Response | None:
    try:
        return requests.get(url, timeout=15)
    except requests.ConnectionError:
        return None


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[Callable[..., Gunicorn]]:
    """Factory: ``gunicorn("slow", "app:app", "-k", "gevent", **env)`` (cwd = the example)."""
    started: list[Gunicorn] = []

    def start(example: str, target: str, *args: str, **env: str) -> Gunicorn:
        log = tmp_path / f"gunicorn-{len(started)}.log"
        chdir = ["--chdir", str(EXAMPLES / example)]
        server = Gunicorn(log, [*chdir, *(args or ("-k", "gevent")), target], geventdev_env(**env))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_every_example_is_covered() -> None:
    examples = {p.name for p in EXAMPLES.iterdir() if not p.name.startswith((".", "_"))}
    assert examples == COVERED


def test_slow(gunicorn) -> None:
    server = gunicorn("slow", "app:app")
    assert server.get("/").text == "Hello World"
    started = time.monotonic()
    with ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(lambda _: _get(server.url + "/testsleep?seconds=0.5"), range(10)))
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
        responses = list(pool.map(lambda i: _get(f"{server.url}/?name=r{i}"), range(50)))
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
        responses = list(pool.map(lambda i: _get(f"{server.url}/work?seconds=1&n={i}"), range(20)))
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
