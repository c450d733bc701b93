"""Reloads that never lose a request: drain, streams, dead apps, manual restarts, soak."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from conftest import HELLO_APP, pid_alive, wait_until, write

SLOW_APP = (
    HELLO_APP
    + """
import time
from flask import Response, stream_with_context

@app.route("/slow")
def slow():
    print("slow request started", flush=True)
    time.sleep(2)
    return "slow " + VERSION

@app.route("/events")
def events():
    def stream():
        while True:
            yield "data: tick\\n\\n"
            time.sleep(0.1)
    return Response(stream_with_context(stream()), mimetype="text/event-stream")

VERSION = "v1"
"""
)


def test_request_in_flight_at_save_completes_with_its_own_code(project: Path, dev_server) -> None:
    app = write(project / "app.py", SLOW_APP)
    server = dev_server("app.py")
    server.get("/")
    slow = ThreadPoolExecutor(1).submit(server.get, "/slow")
    server.wait_for_log("slow request started")  # the scenario: the old code is handling it
    write(app, SLOW_APP.replace('VERSION = "v1"', 'VERSION = "v2"').replace("hello v1", "hello v2"))
    server.wait_for_text("/", "hello v2")
    response = slow.result(timeout=10)
    assert (response.status_code, response.text) == (200, "slow v1")


def test_an_open_event_stream_does_not_hold_a_restart(project: Path, dev_server) -> None:
    app = write(project / "app.py", SLOW_APP)
    server = dev_server("app.py", "--graceful-timeout", "10")
    stream = server.get("/events", stream=True, timeout=10)
    lines = stream.iter_lines()
    assert next(lines) == b"data: tick"
    old = server.child()
    write(app, SLOW_APP.replace("hello v1", "hello v2"))
    server.wait_for_text("/", "hello v2")
    wait_until(lambda: not pid_alive(old), 3, "the old process to exit, well before 10 s")
    rest = []
    try:
        for line in lines:  # the stream ends (cleanly or not) instead of hanging
            rest.append(line)
    except requests.exceptions.ChunkedEncodingError:
        pass
    assert len(rest) < 200


def test_a_dead_app_is_answered_with_503_at_once(project: Path, dev_server) -> None:
    app = write(project / "app.py", HELLO_APP)
    server = dev_server("app.py")
    server.get("/")
    os.kill(server.child(), signal.SIGKILL)
    server.wait_for_log("waiting for a change")
    started = time.monotonic()
    response = server.get("/anything", timeout=5)
    assert time.monotonic() - started < 2.0  # no wait for a child that is not coming
    assert response.status_code == 503
    assert "App was killed by SIGKILL" in response.text
    assert response.headers["Retry-After"] == "1"
    head = requests.head(server.url + "/", timeout=5)
    assert head.status_code == 503 and head.content == b""
    write(app, HELLO_APP.replace("hello v1", "back again"))
    server.wait_for_text("/", "back again")


def test_exit_at_first_start_is_a_503_page(project: Path, dev_server) -> None:
    write(project / "app.py", "import sys, os\nos._exit(4)\n")
    server = dev_server("app.py")
    server.wait_for_log("App exited with code 4")
    response = server.get("/")
    assert response.status_code == 503 and "App exited with code 4" in response.text


def test_sighup_restarts_without_touching_a_file(project: Path, dev_server) -> None:
    write(project / "app.py", HELLO_APP)
    server = dev_server("app.py")
    server.get("/")
    old = server.child()
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for_log(" * Restart requested (SIGHUP), restarting")
    server.wait_for_log(" * Restarted in ")
    wait_until(lambda: server.child() != old, what="a new process")
    assert server.get("/").text == "hello v1"


def test_sighup_brings_a_dead_app_back(project: Path, dev_server) -> None:
    write(project / "app.py", HELLO_APP)
    server = dev_server("app.py")
    server.get("/")
    os.kill(server.child(), signal.SIGKILL)
    server.wait_for_log("waiting for a change")
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for_text("/", "hello v1")


def test_env_files_are_reread_on_every_restart(project: Path, dev_server) -> None:
    write(
        project / "app.py", HELLO_APP.replace('"hello v1"', 'os.environ.get("GREETING", "unset")')
    )
    env = write(project / ".env", "GREETING=first\n")
    server = dev_server("app.py")
    assert server.get("/").text == "first"
    write(env, "GREETING=second\n")  # a change to .env restarts by itself
    server.wait_for_text("/", "second")
    write(env, "OTHER=x\n")  # removed from the file: gone from the app too
    server.wait_for_text("/", "unset")


def test_restart_log_reports_import_time(project: Path, dev_server) -> None:
    app = write(project / "app.py", HELLO_APP)
    server = dev_server("app.py")
    server.get("/")
    write(app, HELLO_APP.replace("hello v1", "v2"))
    log = server.wait_for_log(" * Restarted in ")
    assert " ms (import " in log


@pytest.mark.parametrize(
    ("patching", "line"),
    [("0", " * Restarted in "), ("1", " * Patched ")],
    ids=["restart", "patch"],
)
def test_reloads_under_load_lose_no_request(
    project: Path, dev_server, patching: str, line: str
) -> None:
    """Steady traffic from several keep-alive clients while the app restarts (or, patching, is
    swapped for a fresh fork of its patched pristine copy) again and again, as users run:
    bytecode caches on, and same-size saves, each as soon as the previous one is served, so
    that several land inside one second. After each " * Restarted in" (" * Patched"), a new
    connection gets exactly what was saved."""
    reloads = int(os.environ.get("GEVENTDEV_SOAK_RELOADS", "15"))
    app = write(project / "app.py", HELLO_APP)
    server = dev_server("app.py", PYTHONDONTWRITEBYTECODE="", GEVENTDEV_PATCH=patching)
    server.get("/")
    stop = threading.Event()
    failures: list[str] = []
    counts = [0] * 4

    def client(n: int) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    response = session.get(server.url + "/", timeout=15)
                    if response.status_code != 200:
                        failures.append(f"{response.status_code}: {response.text[:200]}")
                    counts[n] += 1
                except requests.RequestException as exc:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(len(counts))]
    for thread in threads:
        thread.start()
    try:
        seconds = []
        for n in range(1, reloads + 1):
            if n % 2:  # every other save: a warm restart at the top of a second, so that the
                server.standby()  # next save, at once after it, lands in the same second
                wait_until(lambda: time.time() % 1 < 0.05, what="the top of a second")
            write(app, HELLO_APP.replace("hello v1", f"version {n:03d}"))
            seconds.append(int(app.stat().st_mtime))
            server.wait_for_log(line, count=n, timeout=20)
            fresh = requests.get(server.url + "/", headers={"Connection": "close"}, timeout=15)
            assert fresh.text == f"version {n:03d}", server.log()
        assert len(set(seconds)) < reloads, seconds  # some saves did land inside one second
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=20)
    assert failures == []
    assert min(counts) > reloads
    assert server.get("/").text == f"version {reloads:03d}"
