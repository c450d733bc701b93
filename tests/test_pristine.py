"""The loaded app kept pristine (``app.pristine``), seen from outside: its workers serve, crash
and get killed as the app process did; what the project starts at import runs in the workers,
never in the copy; an app that holds what a copy cannot share is never copied (edits restart);
the monitor's other messages reach the worker through the copy."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.conftest import DevServer, parent_of, process_name, wait_until, write
from tests.test_livereload_sources import EventStream

pytestmark = pytest.mark.e2e
#: Bytecode caches on (an empty value turns PYTHONDONTWRITEBYTECODE off), patching on.
PATCHING = {"PYTHONDONTWRITEBYTECODE": "", "GEVENTDEV_PATCH": "1"}

CRASH_APP = """
import os

from flask import Flask

app = Flask(__name__)


@app.route("/")
def index():
    return "crash v1"


@app.route("/exit")
def leave():
    os._exit(3)
"""


def base_of(server: DevServer) -> int:
    """The pristine copy the serving worker was forked from."""
    base = parent_of(server.child())
    assert process_name(base) == "geventdev-base"
    return base


def test_a_worker_that_exits_is_reported_as_the_app_and_an_edit_recovers(
    dev_server: Callable[..., DevServer], project: Path
) -> None:
    write(project / "app.py", CRASH_APP)
    server = dev_server("app.py", **PATCHING)
    server.wait_for_text("/", "crash v1")
    base = base_of(server)
    with contextlib.suppress(requests.ConnectionError):
        server.get("/exit")
    server.wait_for_log(" * App exited with code 3; waiting for a change")
    wait_until(lambda: not os.path.exists(f"/proc/{base}"), what="the copy gone with its worker")
    write(project / "app.py", CRASH_APP.replace("crash v1", "crash v2"))
    assert server.wait_for_text("/", "crash v2")
    assert base_of(server) != base


def test_a_worker_killed_is_reported_killed(
    dev_server: Callable[..., DevServer], project: Path
) -> None:
    write(project / "app.py", CRASH_APP)
    server = dev_server("app.py", **PATCHING)
    server.wait_for_text("/", "crash v1")
    base_of(server)
    os.kill(server.child(), signal.SIGKILL)
    server.wait_for_log(" * App was killed by SIGKILL (out of memory?); waiting for a change")


HELLO = """
import time

from flask import Flask

app = Flask(__name__)


@app.route("/")
def index():
    return "v0"


@app.route("/busy")
def busy():
    started = time.monotonic()
    while time.monotonic() - started < 0.05:  # holds the hub: the worker reads nothing
        pass
    return "busy"
"""


def test_no_request_gets_the_old_code_once_the_new_code_answered_one(
    dev_server: Callable[..., DevServer], project: Path
) -> None:
    """Clients on fresh connections all through three patches, one of them keeping the worker
    busy (its hub reads nothing for 50 ms at a time): a request sent after one was answered by
    a version never gets an older one (the old worker closes before the new one is forked;
    connections wait in the socket's backlog meanwhile), and none fails."""
    write(project / "app.py", HELLO)
    server = dev_server("app.py", **PATCHING)
    server.wait_for_text("/", "v0")
    base_of(server)
    answers: list[tuple[float, float, str]] = []
    failures: list[str] = []
    stop = threading.Event()

    def client(path: str) -> None:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                response = requests.get(
                    server.url + path, headers={"Connection": "close"}, timeout=10
                )
            except requests.RequestException as exc:
                failures.append(f"{path}: {exc!r}")
                continue
            if path == "/":
                answers.append((sent, time.monotonic(), response.text))

    with ThreadPoolExecutor(4) as pool:
        running = [pool.submit(client, path) for path in ("/", "/", "/", "/busy")]
        for version in (1, 2, 3):
            write(project / "app.py", HELLO.replace('"v0"', f'"v{version}"'))
            wait_until(lambda v=version: any(a[2] == f"v{v}" for a in answers), 15, f"v{version}")
        stop.set()
        for future in running:
            future.result()
    patched = " * Patched 'app.py' in place: index() in "
    wait_until(lambda: server.log().count(patched) == 3, what="three patches logged")
    assert failures == []
    for sent, _, text in answers:
        newer = [got for _, done, got in answers if done < sent and got > text]
        assert not newer, f"{text!r} sent after {newer[0]!r} was answered"


SLOW_START = """
import time
from pathlib import Path

from flask import Flask

app = Flask(__name__)


@app.route("/")
def index():
    return "v0"


@app.route("/slow")
def slow():
    Path("started").write_text("1")
    time.sleep(1.5)
    return "slow done"
"""


def test_an_edit_right_after_start_never_cuts_a_request_of_the_serving_worker(
    dev_server: Callable[..., DevServer], project: Path
) -> None:
    """The base builds its load graph after its first worker serves (here one module of 20,000
    functions: a long parse, with no file boundary to pause at). The worker's "ready" reaches
    the monitor first: an edit saved right after the first answer finds a serving app, whose
    requests in flight finish, not one still starting, which a restart drains at once."""
    helpers = "".join(f"\n\ndef helper_{n}(x):\n    return x + {n}\n" for n in range(20_000))
    write(project / "app.py", SLOW_START + helpers)
    server = dev_server("app.py", **PATCHING)
    server.wait_for_text("/", "v0", timeout=30)
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(server.get, "/slow")
        wait_until(lambda: (project / "started").exists(), what="the slow request running")
        write(project / "app.py", SLOW_START.replace('"v0"', '"v1"') + helpers)
        assert in_flight.result().text == "slow done"
    assert server.wait_for_text("/", "v1", timeout=30)


HOG_APP = """
import time
from pathlib import Path

from flask import Flask

app = Flask(__name__)


@app.route("/")
def index():
    return "hog v1"


@app.route("/hog")
def hog():
    Path("hogging").write_text("1")
    started = time.monotonic()
    while time.monotonic() - started < 2.5:  # holds the worker's hub: it reads nothing
        pass
    return "hog done v1"
"""


def test_a_patch_does_not_wait_for_a_worker_whose_hub_is_held(
    dev_server: Callable[..., DevServer], project: Path
) -> None:
    """The old worker cannot say it closed while a request holds its hub: after a moment the
    new worker is forked anyway (both accept for that moment, as across a restart), instead
    of the patch timing out into a restart."""
    write(project / "app.py", HOG_APP)
    server = dev_server("app.py", **PATCHING)
    server.wait_for_text("/", "hog v1")
    base_of(server)
    with ThreadPoolExecutor(1) as pool:
        hogging = pool.submit(server.get, "/hog")
        wait_until(lambda: (project / "hogging").exists(), what="the hub held")
        write(project / "app.py", HOG_APP.replace('"hog v1"', '"hog v2"'))
        server.wait_for_log(" * Patched 'app.py' in place: index() in ")
        assert server.get("/").text == "hog v2"
        assert not hogging.done()  # served by the new worker while the old one is held
        assert hogging.result().text == "hog done v1"
    assert " * Not patched in place" not in server.log()


BEAT_APP = """
import os

import gevent
from flask import Flask


def beat():
    while True:
        with open("beats", "a") as fh:
            fh.write(f"{os.getpid()}\\n")
        gevent.sleep(0.05)


gevent.spawn(beat)
app = Flask(__name__)


@app.route("/")
def index():
    return "beat v1"
"""


def test_a_greenlet_started_at_import_runs_in_each_worker_never_in_the_copy(
    dev_server: Callable[..., DevServer], project: Path
) -> None:
    write(project / "app.py", BEAT_APP)
    server = dev_server("app.py", **PATCHING)
    server.wait_for_text("/", "beat v1")
    first, base = server.child(), base_of(server)
    beats = project / "beats"

    def pids() -> set[str]:
        return set(beats.read_text().split()) if beats.exists() else set()

    wait_until(lambda: str(first) in pids(), what="the first worker's greenlet beating")
    write(project / "app.py", BEAT_APP.replace("beat v1", "beat v2"))
    server.wait_for_log(" * Patched 'app.py' in place: index() in ")
    second = server.child()
    assert second != first and base_of(server) == base
    wait_until(lambda: str(second) in pids(), what="the new worker's own greenlet beating")
    assert str(base) not in pids()


#: What a loaded app may hold that no copy of it can share: an SQLite database (SQLite must not
#: cross a fork), a thread (a greenlet under gevent: after a fork Python counts it stopped, and
#: "start it if it is not alive" code starts a second one), and a helper process (a restart
#: starts a new one; workers of one copy would share the first; it ends when the app process
#: that holds its stdin does).
HOLDING = {
    "a file open for writing and reading": """
import sqlite3

DB = sqlite3.connect("data.db", check_same_thread=False)
DB.execute("create table if not exists t (x)")
""",
    "a thread (ticker)": """
import threading
import time


def tick():
    while True:
        time.sleep(0.05)


threading.Thread(target=tick, name="ticker", daemon=True).start()
""",
    "a child process (pid ": """
import subprocess
import sys

HELPER = subprocess.Popen(
    [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
)
""",
}
HOLDING_APP = """
from flask import Flask

app = Flask(__name__)


@app.route("/")
def index():
    return "held v1"
"""


@pytest.mark.parametrize("held", list(HOLDING))
def test_an_app_holding_what_a_copy_cannot_share_is_not_copied_and_edits_restart(
    dev_server: Callable[..., DevServer], project: Path, held: str
) -> None:
    write(project / "app.py", HOLDING[held] + HOLDING_APP)
    server = dev_server("app.py", **PATCHING)
    server.wait_for_text("/", "held v1")
    assert process_name(parent_of(server.child())) != "geventdev-base"
    write(project / "app.py", HOLDING[held] + HOLDING_APP.replace("held v1", "held v2"))
    server.wait_for_log(f" * Not patched in place: the loaded app holds {held}")
    server.wait_for_log(" * Restarted in ")
    assert server.wait_for_text("/", "held v2")


CSS_APP = """
from flask import Flask

app = Flask(__name__)


@app.route("/")
def index():
    return '<html><head><link rel="stylesheet" href="/static/site.css"></head><body>v1</body>'
"""


def test_the_monitors_other_messages_reach_the_worker(
    dev_server: Callable[..., DevServer], project: Path
) -> None:
    write(project / "app.py", CSS_APP)
    write(project / "static" / "site.css", "p { color: red }")
    server = dev_server("app.py", **PATCHING)
    assert "v1" in server.wait_for_text("/", "v1").text
    base_of(server)
    stream = EventStream(server.url)
    try:
        wait_until(lambda: stream.events, what="the hello event")
        assert server.get("/static/site.css").text == "p { color: red }"
        write(project / "static" / "site.css", "p { color: blue }")
        wait_until(lambda: stream.changes(), what="a css event")
        assert stream.changes() == [("css", {"paths": ["/static/site.css"]})]
    finally:
        stream.close()
