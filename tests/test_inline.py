"""``--no-reload`` serves from the process the user started (for debuggers), patched first."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from conftest import HELLO_APP, write

from geventdev.cli.launch import wants_inline

PATCHED_APP = (
    HELLO_APP
    + """
@app.route("/patched")
def patched():
    from gevent import monkey
    return str(monkey.is_module_patched("socket"))
"""
)


def test_no_reload_serves_from_the_started_process(project: Path, dev_server) -> None:
    write(project / "app.py", PATCHED_APP)
    server = dev_server("app.py", "--no-reload")
    assert server.get("/pid").text == str(server.pid)
    assert server.get("/patched").text == "True"
    assert server.children() == []
    log = server.wait_for_log("Debugger PIN")
    assert " * Serving from this process (--no-reload)" in log
    assert "MonkeyPatchWarning" not in log
    server.signal_group(signal.SIGINT)
    assert server.wait_exit(timeout=5) == 0


def test_the_flask_plugin_without_reload_still_uses_a_child(project: Path, dev_server) -> None:
    """flask's CLI has imported ssl and threading before us: no late patching, a child serves."""
    import sys

    write(project / "app.py", PATCHED_APP)
    flask = str(Path(sys.executable).with_name("flask"))
    server = dev_server("gevent", "--no-reload", cmd=[flask, "--app", "app.py"])
    assert server.get("/patched").text == "True"
    assert server.get("/pid").text != str(server.pid)


@pytest.mark.parametrize(
    ("argv", "environ", "inline"),
    [
        (["app.py"], {}, False),
        (["app.py", "--no-reload"], {}, True),
        (["--no-debug"], {}, True),
        (["--no-debug", "--reload"], {}, False),
        ([], {"FLASK_RUN_RELOAD": "false"}, True),
        ([], {"FLASK_RUN_RELOAD": "1"}, False),
        # the reloader asked for in the environment: the monitor runs, so nothing may patch here
        (["--no-debug"], {"FLASK_RUN_RELOAD": "1"}, False),
        (["--no-debug"], {"GEVENTDEV_RELOAD": "true"}, False),
    ],
)
def test_wants_inline(argv: list[str], environ: dict[str, str], inline: bool) -> None:
    assert wants_inline(argv, environ) is inline


def test_no_reload_with_a_wrong_target_is_one_line(project: Path, dev_server) -> None:
    server = dev_server("nope.py", "--no-reload")
    assert server.wait_exit(timeout=20) == 2
    assert "Error: Could not import 'nope'." in server.log()
    assert "Traceback" not in server.log()


def test_no_reload_with_broken_code_serves_the_error(project: Path, dev_server) -> None:
    write(project / "app.py", "1 / 0\n")
    server = dev_server("app.py", "--no-reload")
    assert server.get("/").status_code == 500
    assert " * App failed to load: ZeroDivisionError: division by zero" in server.log()
