"""geventdev works with the oldest gevent, greenlet, Flask and Werkzeug that pyproject.toml allows.

Apache Superset pins ``greenlet<=3.1.1`` (and Flask 2.x): the floors must install beside it. The
floors are fetched from PyPI with ``pip install --target`` (as tests/test_old_watchdog.py does
for watchdog) into a directory inside this environment's prefix, first on PYTHONPATH: there they
are library code, as an installed package is (the watcher skips them, the blocking-call alarm
never blames them), and the monitor and every app process import them instead of the newer ones.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import HELLO_APP, ROOT, stays, wait_until, write
from test_ecosystem import MIGRATING_APP

#: The floors, as pyproject.toml declares them (checked below), and greenlet at Superset's pin.
FLOORS = {"gevent": "23.9.1", "greenlet": "3.1.1", "flask": "2.3.3", "werkzeug": "3.0.6"}


def test_the_floors_are_pyprojects() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    for name in ("gevent", "flask", "werkzeug"):
        assert f'"{name}>={FLOORS[name]}"' in pyproject, name


@pytest.fixture(scope="module")
def floors() -> Iterator[str]:
    target = tempfile.mkdtemp(prefix="geventdev-floors-", dir=sys.prefix)
    try:
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        pip += ["--no-deps", "--only-binary=:all:", "--target", target]
        subprocess.run([*pip, *(f"{k}=={v}" for k, v in FLOORS.items())], check=True, timeout=300)
        probe = "import gevent, greenlet, flask, werkzeug, importlib.metadata as m;"
        probe += "print(*(m.version(n) for n in ('gevent', 'greenlet', 'flask', 'werkzeug')))"
        found = subprocess.run(
            [sys.executable, "-c", probe],
            env={**os.environ, "PYTHONPATH": target},
            capture_output=True,
            text=True,
        )
        assert found.stdout.split() == list(FLOORS.values()), found
        yield target
    finally:
        shutil.rmtree(target, ignore_errors=True)


SLOW_APP = (
    HELLO_APP
    + """
import time

@app.route("/slow")
def slow():
    time.sleep(1)
    return "slow"

@app.route("/boom")
def boom():
    raise ValueError("floors boom")
"""
)


@pytest.mark.e2e
def test_serves_concurrently_reloads_and_debugs_on_the_floors(
    floors: str, project: Path, dev_server
) -> None:
    write(project / "app.py", SLOW_APP)
    server = dev_server("app.py", PYTHONPATH=floors, PYTHONDONTWRITEBYTECODE="")
    assert server.get("/").text == "hello v1"
    assert "with gevent 23.9.1" in server.log()
    started = time.monotonic()
    with ThreadPoolExecutor(10) as pool:  # ten 1 s requests at once: one second, not ten
        bodies = list(pool.map(lambda _: server.get("/slow").text, range(10)))
    assert bodies == ["slow"] * 10
    assert time.monotonic() - started < 5
    page = server.get("/boom")
    assert page.status_code == 500 and "floors boom" in page.text and "__debugger__" in page.text
    pid = server.child()
    write(project / "app.py", SLOW_APP.replace("hello v1", "hello v2"))
    server.wait_for_text("/", "hello v2")
    server.wait_for_log(" * Restarted in ")
    assert wait_until(lambda: server.child() != pid)
    assert "Traceback" not in server.log().split("floors boom")[-1]
    assert stays(lambda: "Blocking call" not in server.log(), 0.2)


@pytest.mark.e2e
def test_blocking_alarm_on_the_floors(floors: str, project: Path, dev_server) -> None:
    """gevent < 25.4.1 has neither ``print_blocking_reports`` nor ``EventLoopBlocked.hub``: one
    short report per cause all the same, and none of gevent's own page-long reports."""
    write(project / "app.py", MIGRATING_APP)
    server = dev_server("app.py", PYTHONPATH=floors, GEVENT_MAX_BLOCKING_TIME="0.1")
    assert server.get("/").text == "migrated"
    server.wait_for_log(" * Blocking call: GET / (route /)")
    assert server.get("/later").text == "later"
    server.wait_for_log(" * Blocking call: GET /later (route /later)")
    assert stays(lambda: server.log().count(" * Blocking call: ") == 2, 0.5), server.log()
    assert not re.search(r"appears to be blocked|={20}", server.log()), server.log()
