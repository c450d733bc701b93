"""Patching seen from outside: a fresh copy of the loaded app serves the new code, open pages
reload, requests in flight finish on the old code, SIGHUP stays a full restart, and
``--no-patch`` restarts."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.conftest import HELLO_APP, DevServer, parent_of, process_name, wait_until, write

pytestmark = pytest.mark.e2e
#: Bytecode caches on (an empty value turns PYTHONDONTWRITEBYTECODE off), patching on.
PATCHING = {"PYTHONDONTWRITEBYTECODE": "", "GEVENTDEV_PATCH": "1"}


def events(server: DevServer, timeout: float = 15.0) -> Iterator[tuple[str, object]]:
    """The live-reload event stream, as a page's EventSource reads it (pings skipped; the
    server pings every 10 s, so the deadline is checked at least that often)."""
    response = requests.get(server.url + "/__geventdev__/livereload", stream=True, timeout=15)
    deadline = time.monotonic() + timeout
    name = ""
    for line in response.iter_lines(decode_unicode=True):
        assert time.monotonic() < deadline, "no live-reload event in time"
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: ") and name != "ping":
            yield name, json.loads(line.removeprefix("data: "))


def test_a_body_edit_is_served_by_a_fresh_copy_and_reloads_open_pages(
    dev_server: Callable[..., DevServer], project: Path
) -> None:
    """The patch is applied to the loaded app kept as it was (``app.pristine``), and a fork of it
    serves: a new process, as after a restart, made without loading anything."""
    write(project / "app.py", HELLO_APP)
    server = dev_server("app.py", **PATCHING)
    server.wait_for_text("/", "hello v1")
    pid = server.get("/pid").text
    stream = events(server)
    hello = next(stream)
    assert hello[0] == "hello"
    assert str(server.child()) == pid
    base = parent_of(server.child())
    assert process_name(base) == "geventdev-base"
    write(project / "app.py", HELLO_APP.replace("hello v1", "hello v2, patched"))
    # The old worker drained: the page's event stream ends, the page reconnects, and the
    # generation it is told is another one: it reloads (``livereload.js``).
    assert list(stream) == []
    assert next(events(server))[1] != hello[1]
    assert server.get("/").text == "hello v2, patched"
    assert server.get("/pid").text != pid
    log = server.wait_for_log(" * Patched 'app.py' in place: index() in ")
    assert " * Detected change in " not in log and " * Restarted in " not in log
    assert parent_of(server.child()) == base  # the same loaded app, patched

    os.kill(server.pid, signal.SIGHUP)  # by hand: always a full restart
    server.wait_for_log(" * Restart requested (SIGHUP), restarting")
    wait_until(lambda: parent_of(server.child()) != base, what="a new app process")
    assert server.wait_for_text("/", "hello v2, patched")


def test_no_patch_restarts(dev_server: Callable[..., DevServer], project: Path) -> None:
    write(project / "app.py", HELLO_APP)
    server = dev_server("app.py", "--no-patch", PYTHONDONTWRITEBYTECODE="")
    server.wait_for_text("/", "hello v1")
    pid = server.get("/pid").text
    write(project / "app.py", HELLO_APP.replace("hello v1", "hello v2, restarted"))
    server.wait_for_text("/", "hello v2, restarted")
    server.wait_for_log(" * Restarted in ")
    assert server.get("/pid").text != pid and " * Patched " not in server.log()


SLOW_APP = """
import time
from pathlib import Path
from flask import Flask

app = Flask(__name__)

@app.route("/slow")
def slow():
    Path("started").write_text("1")
    time.sleep(2)
    return "slow v1"
"""


def test_a_request_in_flight_finishes_on_the_old_code_as_across_a_restart(
    dev_server: Callable[..., DevServer], project: Path
) -> None:
    write(project / "app.py", SLOW_APP)
    server = dev_server("app.py", **PATCHING)
    server.url  # noqa: B018 - started
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(server.get, "/slow")
        wait_until(lambda: (project / "started").exists(), what="the slow request running")
        write(project / "app.py", SLOW_APP.replace('"slow v1"', '"slow v2"'))
        server.wait_for_log(" * Patched 'app.py' in place: slow() in ")
        assert in_flight.result().text == "slow v1"  # finished by the old worker, old code
    assert " * Restarted in " not in server.log()
    assert server.wait_for_text("/slow", "slow v2")
