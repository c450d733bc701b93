"""``geventdev.serve()``, ``geventdev.run()`` and the ``gevent_server`` fixture, for real.

Real processes on 127.0.0.1 and real HTTP. Leftovers are checked independently of the code under
test: ``/proc`` for processes of the server's group, a refused connection for the port.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from conftest import (
    EXAMPLES,
    HELLO_APP,
    DevServer,
    geventdev_env,
    port_closed,
    wait_until,
    write,
)

import geventdev
from geventdev.cli.main import command, make_config
from geventdev.config import Config
from geventdev.testing.api import config_argv
from geventdev.testing.process import group_members

pytestmark = pytest.mark.e2e  # geventdev.serve() and run() start real servers

FACTORY_APP = """
    import os
    import time
    from flask import Flask
    from gevent import monkey

    def create_app(name):
        app = Flask(__name__)

        @app.route("/")
        def index():
            return f"{name} {os.environ.get('GREETING')} {monkey.is_module_patched('socket')}"

        @app.route("/slow")
        def slow():
            print("slow request started", flush=True)
            time.sleep(0.5)
            return "slow done"

        return app
"""


def assert_gone(pgid: int, port: int) -> None:
    assert group_members(pgid) == []
    assert port_closed(port)


def test_serve_answers_then_leaves_nothing(project: Path, tmp_path: Path) -> None:
    write(project / "app.py", HELLO_APP)
    with geventdev.serve("app.py", cwd=project, log_path=tmp_path / "server-0.log") as srv:
        assert srv.url == f"http://127.0.0.1:{srv.port}" and srv.port > 0
        assert requests.get(srv.url, timeout=10).text == "hello v1"
        assert len(group_members(srv.pid)) >= 2  # the monitor and its app process
    assert srv.returncode == 0
    assert_gone(srv.pid, srv.port)
    assert '"GET / HTTP/1.1" 200' in srv.log()


def test_caller_is_not_patched_but_the_app_is(project: Path) -> None:
    from gevent import monkey

    write(project / "hello.py", FACTORY_APP)
    with geventdev.serve("hello:create_app('x')", cwd=project) as srv:
        assert requests.get(srv.url, timeout=10).text == "x None True"
    assert not monkey.is_module_patched("socket")
    assert not monkey.is_module_patched("threading")


def test_an_exception_in_the_block_still_stops_everything(project: Path) -> None:
    write(project / "app.py", HELLO_APP)
    with pytest.raises(KeyError, match="test failed"):
        with geventdev.serve(project / "app.py") as srv:
            raise KeyError("test failed")
    assert srv.returncode == 0
    assert_gone(srv.pid, srv.port)


def test_app_that_fails_to_load_raises_with_its_traceback(project: Path) -> None:
    write(project / "app.py", "from flask import Flask\n\n1 / 0\napp = Flask(__name__)\n")
    started = time.monotonic()
    with pytest.raises(geventdev.ServerError) as info:
        geventdev.serve("app.py", cwd=project)
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert message.startswith("The app did not start: App failed to load: ZeroDivisionError")
    assert "Traceback (most recent call last)" in message and 'app.py", line 3' in message
    server = info.value.server
    assert server.returncode == 0
    assert_gone(server.pid, server.port)


def test_app_that_exits_at_import_raises(project: Path) -> None:
    write(project / "app.py", "import os\nos._exit(3)\n")
    with pytest.raises(geventdev.ServerError, match="App exited with code 3") as info:
        geventdev.serve("app.py", cwd=project)
    assert_gone(info.value.server.pid, info.value.server.port)


def test_unknown_target_raises_the_cli_error(project: Path) -> None:
    with pytest.raises(geventdev.ServerError, match=r"status 2\. Error: Could not import 'nope'"):
        geventdev.serve("nope", cwd=project)


def test_twenty_slow_requests_overlap(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "slow" / "app.py", tmp_path / "app.py")
    with geventdev.serve(tmp_path / "app.py", debug=False) as srv:
        started = time.monotonic()
        with ThreadPoolExecutor(20) as pool:
            get = lambda _: requests.get(srv.url + "/testsleep?seconds=1", timeout=10)  # noqa: E731
            codes = [response.status_code for response in pool.map(get, range(20))]
        assert codes == [200] * 20
        assert time.monotonic() - started < 5.0  # one after another would be 20 s


def test_stop_lets_a_request_in_flight_finish(project: Path) -> None:
    write(project / "hello.py", FACTORY_APP)
    with geventdev.serve("hello:create_app('x')", cwd=project) as srv:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(requests.get, srv.url + "/slow", timeout=10)
            wait_until(lambda: "slow request started" in srv.log(), what="the slow request")
            started = time.monotonic()
            assert srv.stop() == 0
            assert time.monotonic() - started < 3.0
            assert pending.result().text == "slow done"
    assert_gone(srv.pid, srv.port)


def test_reload_is_off_by_default_and_on_when_asked(project: Path) -> None:
    app = write(project / "app.py", HELLO_APP)
    with geventdev.serve("app.py", cwd=project) as srv:
        assert "Restarting with watchdog" not in srv.log()  # the banner says when it watches
    with geventdev.serve("app.py", cwd=project, reload=True) as srv:
        assert "Restarting with watchdog" in srv.log()
        app.write_text(HELLO_APP.replace("hello v1", "hello v2"))
        wait_until(lambda: requests.get(srv.url, timeout=10).text == "hello v2", what="reload")
    log = srv.log()  # a body edit: patched in place (on by default), else restarted
    assert "Patched 'app.py' in place" in log or "Detected change in 'app.py'" in log


def test_options_are_passed_explicitly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_RUN_RELOAD", "1")
    monkeypatch.setenv("FLASK_RUN_PORT", "7000")
    config = Config(app="a.py", port=0, debug=False, extra_files=("x", "y"), graceful_timeout=2)
    ctx = command.make_context("geventdev", config_argv(config))
    params = dict(ctx.params)
    parsed = make_config(params.pop("target"), params)
    explicit = {"reload": False, "debugger": False, "livereload": False}
    assert parsed == Config(**{**vars(config), **explicit})


def test_plugin_and_api_import_nothing_heavy() -> None:
    code = (
        "import sys, geventdev.testing.pytest_plugin, geventdev.testing.api;"
        "heavy = ('gevent', 'flask', 'werkzeug', 'click', 'watchdog', 'dotenv', 'requests');"
        "bad = [m for m in heavy if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_fixture_with_a_factory_string_and_env(gevent_server, project: Path) -> None:
    write(project / "hello.py", FACTORY_APP)
    srv = gevent_server("hello:create_app('testing')", cwd=project, env={"GREETING": "hi"})
    assert requests.get(srv.url, timeout=10).text == "testing hi True"
    assert srv.log_path.is_file()


def test_run_serves_until_ctrl_c_and_exits_0(project: Path, tmp_path: Path) -> None:
    write(project / "app.py", HELLO_APP)
    script = write(
        project / "main.py",
        """
        import signal
        import sys
        import geventdev

        HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        if __name__ == "__main__":
            before = [signal.getsignal(s) for s in HANDLED]
            status = geventdev.run("app.py", port=0, reload=False)
            print(f"run returned {status}; gevent imported: {'gevent' in sys.modules}")
            print(f"signal handlers restored: {[signal.getsignal(s) for s in HANDLED] == before}")
            sys.exit(status)
        """,
    )
    server = DevServer(
        project, tmp_path / "server-0.log", [sys.executable, str(script)], geventdev_env()
    )
    try:
        assert server.get("/").text == "hello v1"
        app_processes = group_members(server.pid)
        server.signal_group(signal.SIGINT)
        assert server.wait_exit(timeout=10) == 0
    finally:
        server.stop()
    assert "run returned 0; gevent imported: False" in server.log()
    assert "signal handlers restored: True" in server.log()
    assert len(app_processes) >= 2
    assert_gone(server.pid, server.port)


def test_a_server_never_stopped_is_stopped_at_exit(project: Path, tmp_path: Path) -> None:
    write(project / "app.py", HELLO_APP)
    script = write(
        project / "forget.py",
        """
        import geventdev

        srv = geventdev.serve("app.py")
        print(srv.pid, srv.port, flush=True)
        """,
    )
    server = DevServer(
        project, tmp_path / "server-0.log", [sys.executable, str(script)], geventdev_env()
    )
    try:
        assert server.wait_exit(timeout=30) == 0
    finally:
        server.stop()
    pid, port = map(int, server.log().split()[:2])
    assert_gone(pid, port)


def test_plugin_shows_the_log_of_a_failing_test_under_xdist(tmp_path: Path) -> None:
    pytest.importorskip("xdist")
    write(tmp_path / "app.py", HELLO_APP)
    write(
        tmp_path / "test_inner.py",
        f"""
        import pytest, urllib.request

        @pytest.mark.parametrize("n", range(3))
        def test_ok(gevent_server, n):
            srv = gevent_server({str(tmp_path / "app.py")!r})
            assert urllib.request.urlopen(srv.url, timeout=10).read() == b"hello v1"

        def test_fails(gevent_server):
            gevent_server({str(tmp_path / "app.py")!r})
            assert False, "on purpose"
        """,
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", "test_inner.py"],
        cwd=tmp_path,
        env=geventdev_env(NO_PROXY="127.0.0.1", no_proxy="127.0.0.1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "1 failed, 3 passed" in result.stdout, result.stdout + result.stderr
    assert f"geventdev log: {tmp_path / 'app.py'}" in result.stdout
    assert " * Running on http://127.0.0.1:" in result.stdout
