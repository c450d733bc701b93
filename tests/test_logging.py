"""Logging goes through ``logging``, as under flask run and uvicorn.

The access log is the ``werkzeug`` logger's (so ``getLogger("werkzeug").setLevel(ERROR)``
silences it, as under flask run), geventdev's `` * `` lines the ``geventdev`` logger's;
``--no-access-log``, ``--log-level`` and ``--log-config`` take uvicorn's names and formats.
"""

from __future__ import annotations

import http.client
import io
import logging
import os
import pty
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import requests
from conftest import EXAMPLES, HELLO_APP, geventdev_env, run_cli, stays, wait_until, write

from geventdev import logs

ACCESS_LINE = re.compile(r'127\.0\.0\.1 - - \[[^\]]+\] "GET / HTTP/1\.1" 200 \d+')


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a Unix socket (what ``curl --unix-socket`` does)."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def unix_get(path: str, url: str = "/") -> tuple[int, str] | None:
    """GET over the Unix socket at ``path``; None while nothing answers there yet."""
    connection = UnixHTTPConnection(path)
    try:
        connection.request("GET", url)
        response = connection.getresponse()
        return response.status, response.read().decode()
    except OSError:
        return None
    finally:
        connection.close()


def test_the_werkzeug_idiom_silences_the_access_log_and_a_dict_config_formats_the_rest(
    project: Path, dev_server
) -> None:
    """examples/logging_config: the app silences werkzeug; logging.json formats every line."""
    shutil.copytree(EXAMPLES / "logging_config", project, dirs_exist_ok=True)
    server = dev_server("app.py", "--log-config", "logging.json")
    assert server.get("/").text == "logged"
    log = server.wait_for_log("INFO [app] index visited")
    assert "INFO [geventdev]  * Running on http://127.0.0.1:" in log
    assert "INFO [geventdev]  * Debug mode: on" in log
    assert stays(lambda: '"GET / HTTP/1.1"' not in server.log(), 0.5), server.log()
    # The debugger's PIN is werkzeug's too: ERROR hides it, exactly as under flask run.
    assert "Debugger PIN" not in server.log()


def test_the_access_log_is_the_werkzeug_loggers(project: Path, dev_server) -> None:
    write(project / "app.py", HELLO_APP)
    config = write(
        project / "logging.ini",
        """
        [loggers]
        keys = root, werkzeug

        [handlers]
        keys = console

        [formatters]
        keys = plain

        [logger_root]
        level = WARNING
        handlers = console

        [logger_werkzeug]
        level = INFO
        handlers =
        qualname = werkzeug

        [handler_console]
        class = StreamHandler
        formatter = plain
        args = (sys.stderr,)

        [formatter_plain]
        format = access: %(name)s %(levelname)s %(message)s
        """,
    )
    server = dev_server("app.py", "--log-config", str(config))
    url = server.url  # geventdev's INFO lines: the root is at WARNING, yet ours are shown...
    assert server.get("/").text == "hello v1"
    line = server.wait_for_log("access: werkzeug INFO 127.0.0.1")
    assert ACCESS_LINE.search(line), line  # ...and the access line has werkzeug's format
    assert f" * Running on {url}" in server.log()


def test_no_access_log(project: Path, dev_server) -> None:
    write(project / "app.py", HELLO_APP)
    server = dev_server("app.py", "--no-access-log")
    assert server.get("/").text == "hello v1"
    assert server.get("/nope").status_code == 404
    assert stays(lambda: "HTTP/1.1" not in server.log(), 0.5), server.log()


def test_log_level_warning_keeps_only_warnings(project: Path, dev_server, tmp_path: Path) -> None:
    """uvicorn's --log-level: at warning, no banner and no access log; here on a Unix socket,
    as the banner that names the port is not printed."""
    write(project / "app.py", HELLO_APP)
    path = str(tmp_path / "app.sock")
    server = dev_server("app.py", "--uds", path, "--log-level", "warning", GEVENTDEV_DEBUG="1")
    assert wait_until(lambda: unix_get(path), what="an answer on the socket") == (200, "hello v1")
    assert stays(lambda: "Running on" not in server.log(), 0.5), server.log()
    assert "HTTP/1.1" not in server.log() and "Debugger PIN" not in server.log()


def test_log_level_debug_lists_every_watched_directory(project: Path, dev_server) -> None:
    write(project / "app.py", "import helper\n" + HELLO_APP)
    outside = project.parent / "lib"
    write(outside / "helper.py", "X = 1\n")
    server = dev_server("app.py", "--log-level", "debug", PYTHONPATH=str(outside))
    assert server.get("/").text == "hello v1"
    server.wait_for_log(f" * Watching for changes in {project}")
    server.wait_for_log(f" * Watching for changes in {outside}\n")


def test_access_log_keeps_werkzeug_colours_on_a_terminal(project: Path, tmp_path: Path) -> None:
    write(project / "app.py", HELLO_APP)
    master, slave = pty.openpty()
    env = geventdev_env()
    del env["NO_COLOR"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "geventdev", "app.py", "--port", "0", "--no-reload"],
        cwd=project,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    output = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                return
            if not chunk:
                return
            output.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        text = wait_until(lambda: re.search(rb"Running on (http://\S+)", output), what="banner")
        url = text.group(1).decode()
        assert requests.get(url + "/nope", timeout=10).status_code == 404
        wait_until(lambda: b'"GET /nope HTTP/1.1" 404' in output, what="the access line")
        assert b"\x1b[33m127.0.0.1 - - [" in output  # werkzeug's yellow for a 404
    finally:
        os.killpg(proc.pid, 2)
        proc.wait(timeout=10)
        reader.join(timeout=5)
        os.close(master)


def test_log_config_formats_and_errors(tmp_path: Path) -> None:
    """The .ini (fileConfig) and .json (dictConfig) loaders, and a broken file is one line."""
    (tmp_path / "app.py").write_text(HELLO_APP)
    broken = write(tmp_path / "broken.json", '{"version": 1, "handlers": {"x": {"class": "no"}}}')
    result = run_cli(tmp_path, "app.py", "--log-config", str(broken), "--port", "0")
    assert result.returncode == 2, result
    assert result.stderr.startswith(f"Error: --log-config {broken}: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    try:
        import yaml  # noqa: F401
    except ImportError:  # PyYAML is not a dependency: without it, the message says so
        config = write(tmp_path / "log.yaml", "version: 1\n")
        result = run_cli(tmp_path, "app.py", "--log-config", str(config), "--port", "0")
        assert result.returncode == 2 and "needs PyYAML (pip install pyyaml)" in result.stderr


def test_trace_level_is_uvicorns() -> None:
    code = (
        "import logging; from geventdev import logs; logs.setup(None, 'trace');"
        "print(logging.getLogger('geventdev').level, logging.getLevelName(5),"
        " logging.getLogger('werkzeug').level)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["5", "TRACE", "5"], result


def test_the_access_log_skips_the_log_record_only_when_nothing_else_would_see_it() -> None:
    log = logging.getLogger("geventdev-test-plain")
    log.propagate = False
    stream = io.StringIO()
    assert logs.plain_stream(log) is None  # no handler yet
    logs.ensure_handler(log, stream)
    assert logs.plain_stream(log) is stream
    log.addFilter(lambda record: True)
    assert logs.plain_stream(log) is None  # a filter must see each record
    log.filters.clear()
    log.propagate = True
    root_has_handlers = bool(logging.root.handlers)
    assert (logs.plain_stream(log) is None) == root_has_handlers  # the root's handlers would
    log.propagate = False
    log.addHandler(logging.NullHandler())
    assert logs.plain_stream(log) is None
    log.handlers.clear()


def test_werkzeugs_own_stream_handler_is_written_to_directly() -> None:
    """werkzeug's debugger gives the werkzeug logger its own StreamHandler subclass at start-up
    (``_ColorStreamHandler``): the access line must still skip the LogRecord (it cost ~30 % of
    a hello-world request's CPU), writing the very bytes that handler would."""
    log = logging.getLogger("geventdev-test-werkzeug-handler")
    log.propagate = False
    stream = io.StringIO()

    class Plain(logging.StreamHandler):  # type: ignore[type-arg]  # like werkzeug's
        pass

    log.addHandler(Plain(stream))
    try:
        assert logs.plain_stream(log) is stream
        custom = logging.Formatter("%(levelname)s %(message)s")
        log.handlers[0].setFormatter(custom)
        assert logs.plain_stream(log) is None  # a format of its own: through the record

        class Emitting(logging.StreamHandler):  # type: ignore[type-arg]
            def emit(self, record: logging.LogRecord) -> None:
                super().emit(record)

        log.handlers[:] = [Emitting(stream)]
        assert logs.plain_stream(log) is None  # its own emit must see each record
    finally:
        log.handlers.clear()
