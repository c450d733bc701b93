"""Serving: banner, debugger, concurrency, targets, env files, entry points."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from conftest import EXAMPLES, HELLO_APP, write


def test_banner_debugger_and_access_log(project: Path, dev_server) -> None:
    write(project / "app.py", HELLO_APP)
    server = dev_server("app.py")
    assert server.get("/").text == "hello v1"
    log = server.wait_for_log('"GET / HTTP/1.1" 200')
    assert f" * Running on http://127.0.0.1:{server.port}" in log
    assert " * Debug mode: on" in log
    assert "Press CTRL+C to quit" in log
    assert " * Debugger PIN: " in log
    assert "Traceback" not in log


def test_debugger_page_for_an_exception(project: Path, dev_server) -> None:
    shutil.copy(EXAMPLES / "slow" / "app.py", project / "app.py")
    server = dev_server("app.py")
    response = server.get("/boom")
    assert response.status_code == 500
    assert "Werkzeug Debugger" in response.text
    assert "This is what an error looks like" in response.text
    # the debugger's own resources are served (its console works under gevent)
    assert server.get("/?__debugger__=yes&cmd=resource&f=style.css").status_code == 200


def test_slow_route_does_not_block_others(project: Path, dev_server) -> None:
    shutil.copy(EXAMPLES / "slow" / "app.py", project / "app.py")
    server = dev_server("app.py")
    assert server.get("/").status_code == 200
    slow = ThreadPoolExecutor(1).submit(server.get, "/testsleep?seconds=3")
    server.wait_for_log("/testsleep: sleeping 3 s")  # the scenario: a request already sleeping
    started = time.monotonic()
    assert server.get("/").text == "Hello World"
    assert time.monotonic() - started < 2.0  # well inside the slow one's 3 s
    assert not slow.done()
    assert slow.result().status_code == 200


def test_concurrent_slow_requests_overlap(project: Path, dev_server) -> None:
    shutil.copy(EXAMPLES / "slow" / "app.py", project / "app.py")
    server = dev_server("app.py")
    server.get("/")
    started = time.monotonic()
    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(lambda _: server.get("/testsleep?seconds=1").status_code, range(20)))
    assert codes == [200] * 20
    assert time.monotonic() - started < 5.0  # 20 x 1 s serially would be 20 s


def test_child_is_monkey_patched(project: Path, dev_server) -> None:
    write(
        project / "app.py",
        """
        import threading
        from flask import Flask
        from gevent import monkey

        app = Flask(__name__)

        @app.route("/")
        def index():
            return f"{monkey.is_module_patched('socket')} {monkey.is_module_patched('threading')}"
        """,
    )
    server = dev_server("app.py")
    assert server.get("/").text == "True True"


def test_stray_app_run_is_ignored(project: Path, dev_server) -> None:
    write(project / "app.py", HELLO_APP + "\napp.run(port=1)\n")
    server = dev_server("app.py")
    assert server.get("/").text == "hello v1"


def test_default_target_is_wsgi_then_app(project: Path, dev_server) -> None:
    write(project / "app.py", HELLO_APP)
    write(project / "wsgi.py", HELLO_APP.replace("hello v1", "from wsgi"))
    server = dev_server()
    assert server.get("/").text == "from wsgi"


def test_factory_with_literal_arguments(project: Path, dev_server) -> None:
    write(
        project / "hello.py",
        """
        from flask import Flask

        def create_app(name):
            app = Flask(__name__)
            app.add_url_rule("/", "index", lambda: f"factory {name} debug={app.debug}")
            return app
        """,
    )
    server = dev_server("hello:create_app('dev')")
    assert server.get("/").text == "factory dev debug=True"


def test_any_wsgi_callable(project: Path, dev_server) -> None:
    (project / "mysite").mkdir()
    write(project / "mysite" / "__init__.py", "")
    shutil.copy(EXAMPLES / "mysite_wsgi.py", project / "mysite" / "wsgi.py")
    server = dev_server("mysite.wsgi:application")
    assert server.get("/x").text == "plain WSGI at /x\n"


def test_flaskenv_and_env_files(project: Path, dev_server) -> None:
    write(
        project / "hello.py",
        """
        import os
        from flask import Flask
        app = Flask(__name__)

        @app.route("/")
        def index():
            return " ".join(os.environ.get(k, "-") for k in ("FROM_FLASKENV", "FROM_ENV", "BOTH"))
        """,
    )
    write(project / ".flaskenv", "FLASK_APP=hello.py\nFROM_FLASKENV=a\nBOTH=flaskenv\n")
    write(project / ".env", "FROM_ENV=b\nBOTH=env\n")
    server = dev_server()
    assert server.get("/").text == "a b env"


def test_env_file_option_wins(project: Path, dev_server, tmp_path: Path) -> None:
    write(project / "app.py", HELLO_APP.replace('"hello v1"', 'os.environ["GREETING"]'))
    write(project / ".env", "GREETING=from .env\n")
    extra = write(tmp_path / "custom.env", "GREETING=from -e\n")
    server = dev_server("app.py", "-e", str(extra))
    assert server.get("/").text == "from -e"


def test_flask_gevent_plugin_command(project: Path, dev_server) -> None:
    write(project / "app.py", HELLO_APP)
    flask = str(Path(sys.executable).with_name("flask"))
    server = dev_server("gevent", cmd=[flask, "--app", "app.py"])
    assert server.get("/").text == "hello v1"
    assert " * Debugger PIN: " in server.wait_for_log("Debugger PIN")


def test_flask_gevent_rereads_env_files_the_flask_group_loaded(
    project: Path, dev_server, tmp_path: Path
) -> None:
    """flask's group loads .env into os.environ before it imports plugin commands: an edit must
    still reach the next app process; so must one to `flask gevent -e FILE`, which is watched."""
    app = HELLO_APP.replace('"hello v1"', 'os.environ["GREETING"] + " " + os.environ["EXTRA"]')
    write(project / "app.py", app)
    env = write(project / ".env", "GREETING=one\n")
    extra = write(tmp_path / "custom.env", "EXTRA=x\n")
    flask = str(Path(sys.executable).with_name("flask"))
    server = dev_server("gevent", "-e", str(extra), cmd=[flask, "--app", "app.py"])
    assert server.get("/").text == "one x"
    write(env, "GREETING=two\n")
    server.wait_for_text("/", "two x")
    write(extra, "EXTRA=y\n")
    server.wait_for_text("/", "two y")


def test_console_script(project: Path, dev_server) -> None:
    write(project / "app.py", HELLO_APP)
    script = str(Path(sys.executable).with_name("geventdev"))
    server = dev_server("app.py", cmd=[script])
    assert server.get("/").text == "hello v1"


def test_no_debug_turns_off_debugger_and_reloader(project: Path, dev_server) -> None:
    write(project / "app.py", HELLO_APP + "\n@app.route('/boom')\ndef boom():\n    1 / 0\n")
    server = dev_server("app.py", "--no-debug")
    response = server.get("/boom")
    assert response.status_code == 500
    assert "Werkzeug Debugger" not in response.text
    log = server.log()
    assert " * Debug mode: off" in log
    assert "Debugger PIN" not in log
    assert "Restarting with watchdog" not in log


def test_access_log_escapes_control_characters(project: Path, dev_server) -> None:
    write(project / "app.py", HELLO_APP)
    server = dev_server("app.py")
    assert server.get("/%1b[31mred").status_code == 404
    import socket

    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /\x1b[2J HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while sock.recv(65536):
            pass
    log = server.wait_for_log("\\x1b[2J")
    assert "\x1b" not in log


def test_requests_keep_flowing_while_many_clients_hit_it(project: Path, dev_server) -> None:
    write(project / "app.py", HELLO_APP)
    server = dev_server("app.py")
    server.get("/")
    errors: list[Exception] = []

    def client() -> None:
        with requests.Session() as session:
            for _ in range(25):
                try:
                    assert session.get(server.url + "/", timeout=10).text == "hello v1"
                except Exception as exc:  # noqa: BLE001 - collected and asserted below
                    errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
