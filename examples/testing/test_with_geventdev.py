"""Copy me: test a Flask app through a real geventdev server (real sockets, real gevent).

With geventdev installed, pytest has the ``gevent_server`` fixture (no conftest needed). Servers
run in a subprocess on a free port, so this process is never monkey-patched, and ``pytest -n auto``
(pytest-xdist) needs no port juggling. Run: ``python -m pytest examples/testing``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

import geventdev

HERE = Path(__file__).resolve().parent
#: Anything ``geventdev TARGET`` takes: "app.py", "pkg.module", "mod:create_app('testing')"...
TARGET = "app:create_app('testing')"


# Function scope: the fixture starts a server for this test and stops it afterwards. When the
# test fails, the server's log (access log, tracebacks) is shown in the report.
def test_home_page(gevent_server: Callable[..., geventdev.Server]) -> None:
    server = gevent_server(TARGET, cwd=HERE)
    response = requests.get(server.url + "/", timeout=10)
    assert response.text == "Hello from testing"


# Session scope: one server for every test that asks for it, started once.
@pytest.fixture(scope="session")
def shared_server() -> Iterator[geventdev.Server]:
    with geventdev.serve(TARGET, cwd=HERE, debug=False) as server:
        yield server


def test_slow_requests_do_not_queue(shared_server: geventdev.Server) -> None:
    started = time.monotonic()
    with ThreadPoolExecutor(10) as pool:
        urls = [shared_server.url + "/slow?seconds=0.5"] * 10
        bodies = [r.text for r in pool.map(lambda url: requests.get(url, timeout=10), urls)]
    assert bodies == ["done"] * 10
    assert time.monotonic() - started < 2.5  # ten 0.5 s requests, served at the same time


def test_missing_page(shared_server: geventdev.Server) -> None:
    assert requests.get(shared_server.url + "/nope", timeout=10).status_code == 404
