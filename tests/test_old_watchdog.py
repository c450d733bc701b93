"""geventdev works with older watchdogs as well as 7 (the test extras install 7): 4.0, the floor
in pyproject.toml, and 6.0.

watchdog 7 changed ``PatternMatchingEventHandler``'s globs and how observers open inotify; we use
neither, but ``event_filter`` and ``PollingObserverVFS`` must behave the same on older versions.
The monitor here imports the old watchdog from a ``pip install --target`` directory put first on
PYTHONPATH.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HELLO_APP, atomic_save, restart_count, save_then_confirm, stays, write


@pytest.fixture(scope="module", params=["4.0.0", "6.0.0"])
def old_watchdog(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    version = request.param
    target = tmp_path_factory.mktemp(f"watchdog-{version}")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    pip += ["--no-deps", "--only-binary=:all:", "--target", str(target), f"watchdog=={version}"]
    subprocess.run(pip, check=True, timeout=180)
    probe = [sys.executable, "-c", "import watchdog.version as v; print(v.VERSION_STRING)"]
    found = subprocess.run(
        probe, env={**os.environ, "PYTHONPATH": str(target)}, capture_output=True, text=True
    )
    assert found.stdout.strip() == version, found  # the monitor will import this one
    return str(target)


@pytest.mark.parametrize("reloader", ["watchdog", "stat"])
def test_reloads_with_an_older_watchdog(
    reloader: str, old_watchdog: str, project: Path, dev_server
) -> None:
    write(project / "app.py", HELLO_APP)
    write(project / "templates" / "index.html", "<p>v1</p>")
    server = dev_server("app.py", "--reloader-type", reloader, PYTHONPATH=old_watchdog)
    assert server.get("/").text == "hello v1"
    pid = server.child()
    write(project / "node_modules" / "lib" / "x.py", "X = 1\n")
    write(project / "templates" / "index.html", "<p>v2</p>")
    assert stays(lambda: restart_count(server) == 0, 1.2)  # more than two polling rounds
    assert server.child() == pid
    save_then_confirm(server, project, atomic_save)  # a move: matched on its destination
    assert "Traceback" not in server.log()
