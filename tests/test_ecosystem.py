"""Configuration and serving like the tools Flask developers already use: every option from the
environment (GEVENTDEV_<OPTION>), uvicorn's reload scope flags, polling where inotify is blind,
the banner's LAN address, and Unix sockets (flask run's ``--host unix://PATH``, uvicorn's
``--uds``)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    HELLO_APP,
    get_or_none,
    geventdev_env,
    restart_count,
    run_cli,
    stays,
    wait_until,
    write,
)
from test_config_cli import parse
from test_logging import unix_get

from geventdev.cli.banner import banner, wildcard_addresses
from geventdev.cli.launch import wants_inline
from geventdev.config import Config
from geventdev.monitor.watch import ChangeFilter, polling_reason


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith(("FLASK_", "WERKZEUG_", "GEVENTDEV_", "WATCHFILES_")):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env / .flaskenv
    return monkeypatch


# --- 2. every option from the environment ------------------------------------------------------


def test_every_option_reads_geventdev_env_vars(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("GEVENTDEV_PORT", "7001")
    clean_env.setenv("GEVENTDEV_RELOADER_TYPE", "stat")
    clean_env.setenv("GEVENTDEV_STANDBY", "0")
    clean_env.setenv("GEVENTDEV_LOG_LEVEL", "debug")
    clean_env.setenv("GEVENTDEV_ACCESS_LOG", "false")
    clean_env.setenv("GEVENTDEV_RELOAD_INCLUDE", f"*.toml{os.pathsep}*.yaml")
    clean_env.setenv("GEVENTDEV_GRACEFUL_TIMEOUT", "2.5")
    config = parse()
    assert (config.port, config.reloader_type, config.standby) == (7001, "stat", False)
    assert (config.log_level, config.access_log, config.graceful_timeout) == ("debug", False, 2.5)
    assert config.reload_include == ("*.toml", "*.yaml")
    assert parse("--port", "7002").port == 7002  # the command line wins


def test_flask_names_win_where_flask_defines_them(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("GEVENTDEV_PORT", "7001")
    clean_env.setenv("GEVENTDEV_HOST", "::1")
    clean_env.setenv("FLASK_RUN_PORT", "7003")
    config = parse()
    assert (config.port, config.host) == (7003, "::1")


def test_help_shows_the_env_var_of_every_option(clean_env: pytest.MonkeyPatch) -> None:
    result = run_cli(Path.cwd(), "--help")
    text = " ".join(result.stdout.split())
    for field in dataclasses.fields(Config):
        assert f"GEVENTDEV_{field.name.upper()}" in text.replace("- ", "-"), field.name
    assert "FLASK_RUN_PORT, GEVENTDEV_PORT" in text


def test_no_reload_from_the_environment_serves_in_process() -> None:
    """launch.py patches before click runs, so it reads the same variables, flask's first."""
    assert wants_inline([], {"GEVENTDEV_RELOAD": "0"})
    assert not wants_inline([], {"GEVENTDEV_RELOAD": "1"})
    assert not wants_inline([], {"FLASK_RUN_RELOAD": "1", "GEVENTDEV_RELOAD": "0"})
    assert not wants_inline(["--reload"], {"GEVENTDEV_RELOAD": "0"})


# --- 3. reload scope ---------------------------------------------------------------------------


def test_include_exclude_globs_and_extra_directories(tmp_path: Path) -> None:
    extra = tmp_path / "shared"
    extra.mkdir()
    changes = ChangeFilter(
        [str(extra)], include=["*.toml", "config/*.yaml"], exclude=["data/*", "*.csv"]
    )
    project = tmp_path / "project"
    assert changes.classify(str(project / "settings.toml")) == "restart"
    assert changes.classify(str(project / "config" / "app.yaml")) == "restart"
    assert changes.classify(str(project / "other.yaml")) == "refresh"  # not config/*.yaml
    assert changes.classify(str(project / "templates" / "a.html")) == "refresh"
    assert changes.classify(str(project / "x.csv")) is None
    assert changes.classify(str(extra / "rules.txt")) == "restart"  # anything in an extra dir
    assert changes.classify(str(extra / "__pycache__" / "x.pyc")) is None
    os.chdir(project.parent)  # relative globs: against the path from the current directory
    try:
        assert changes.classify(str(tmp_path / "data" / "deep" / "seed.py")) is None
    finally:
        os.chdir(Path(__file__).parent)


@pytest.mark.parametrize(
    ("reloader", "environ", "proc", "roots", "expected"),
    [
        ("auto", {}, "Linux version 6.1.0-13-amd64 (debian)", ["/home/me/p"], None),
        ("stat", {}, "", ["/home/me/p"], "--reloader-type stat"),
        ("watchdog", {"WATCHFILES_FORCE_POLLING": "1"}, "", ["/p"], None),
        ("auto", {"WATCHFILES_FORCE_POLLING": "true"}, "", ["/p"], "WATCHFILES_FORCE_POLLING"),
        ("auto", {"WATCHFILES_FORCE_POLLING": "0"}, "", ["/p"], None),
        ("auto", {}, "Linux 5.15.90.1-microsoft-standard-WSL2", ["/mnt/c/Users/me/p"], "WSL"),
        ("auto", {}, "Linux 4.4.0-19041-Microsoft", ["/home/me/p", "/mnt/d"], "WSL"),
        ("auto", {}, "Linux 5.15.90.1-microsoft-standard-WSL2", ["/home/me/p"], None),
        ("auto", {}, "Linux 6.1.0 (debian)", ["/mnt/c/Users/me/p"], None),  # not WSL
        ("auto", {}, "Linux 5.15.90.1-microsoft-standard-WSL2", ["/mnt/cdrom/p"], None),
        ("watchdog", {}, "Linux 5.15.90.1-microsoft-standard-WSL2", ["/mnt/c/p"], None),
    ],
)
def test_polling_decision(
    reloader: str, environ: dict[str, str], proc: str, roots: list[str], expected: str | None
) -> None:
    reason = polling_reason(reloader, roots, environ, proc)
    assert (reason is None) == (expected is None), reason
    assert expected is None or expected in (reason or "")


def test_reload_scope_flags(project: Path, dev_server, tmp_path: Path) -> None:
    """``settings.toml`` read at import restarts with --reload-include; ``data/`` is ignored
    with --reload-exclude; a directory in --extra-files restarts on any file in it; the watched
    roots are one line at start; GEVENTDEV_RELOADER_TYPE=stat polls."""
    shared = tmp_path / "shared"
    write(shared / "rules.txt", "rule 1\n")
    write(project / "settings.toml", 'greeting = "hello v1"\n')
    write(
        project / "app.py",
        """
        import tomllib
        from pathlib import Path
        from flask import Flask

        app = Flask(__name__)
        settings = tomllib.loads(Path("settings.toml").read_text())
        rules = (Path(__file__).parent.parent / "shared" / "rules.txt").read_text().strip()

        @app.route("/")
        def index():
            return f"{settings['greeting']} / {rules}"
        """,
    )
    write(project / "data" / "seed.py", "SEED = 1\n")
    server = dev_server(
        "app.py",
        "--reload-include",
        "*.toml",
        "--reload-exclude",
        "data/*",
        "--extra-files",
        str(shared),
        GEVENTDEV_RELOADER_TYPE="stat",
        PYTHONDONTWRITEBYTECODE="",
    )
    server.wait_for_text("/", "hello v1 / rule 1")
    line = server.wait_for_log(" * Watching for changes in ")
    assert f" * Watching for changes in {project}, {shared} with polling (" in line, line
    write(project / "data" / "seed.py", "SEED = 2\n")
    assert stays(lambda: restart_count(server) == 0, 1.2)  # two polling rounds
    write(project / "settings.toml", 'greeting = "hello v2"\n')
    server.wait_for_text("/", "hello v2 / rule 1", timeout=20)
    write(shared / "rules.txt", "rule 2\n")
    server.wait_for_text("/", "hello v2 / rule 2", timeout=20)
    assert restart_count(server) == 2, server.log()


# --- 4. the banner and Unix sockets --------------------------------------------------------------


def test_banner_on_all_addresses_shows_loopback_and_the_lan_address() -> None:
    from werkzeug.serving import get_interface_ip

    lan = get_interface_ip(socket.AF_INET)
    addresses = wildcard_addresses("0.0.0.0")
    assert addresses[0] == "127.0.0.1"
    assert len(addresses) == len(set(addresses))  # never loopback twice
    if not lan.startswith("127."):
        assert addresses == ["127.0.0.1", lan]
    lines = banner(Config(host="0.0.0.0", port=8000), 8000, io.StringIO())
    running = [line for line in lines if line.startswith(" * Running on http")]
    assert running == [f" * Running on http://{a}:8000" for a in addresses]


UNIX_APP = (
    HELLO_APP
    + """
from flask import request

@app.route("/peer")
def peer():
    return request.remote_addr or "none"
"""
)


@pytest.mark.parametrize("spelling", ["--host", "--uds"])
def test_serves_on_a_unix_socket(spelling: str, project: Path, dev_server, tmp_path: Path) -> None:
    write(project / "app.py", UNIX_APP)
    path = str(tmp_path / "run" / "app.sock")
    os.makedirs(os.path.dirname(path))
    value = f"unix://{path}" if spelling == "--host" else path
    server = dev_server("app.py", spelling, value)
    server.wait_for_log(f" * Running on unix://{path}")
    assert wait_until(lambda: unix_get(path), what="an answer") == (200, "hello v1")
    assert unix_get(path, "/peer") == (200, "<local>")  # werkzeug's REMOTE_ADDR for a local peer
    # A Unix-socket peer is this machine: the debugger's console answers it (not a 403).
    status, body = unix_get(path, "/console") or (0, "")
    assert status == 200 and "Console" in body, body[:300]
    assert "WARNING: the debugger is on" not in server.log()
    # A reload keeps serving on the same socket.
    write(project / "app.py", UNIX_APP.replace("hello v1", "hello v2"))
    wait_until(lambda: unix_get(path) == (200, "hello v2"), what="the reloaded app")
    assert "- - [" in server.wait_for_log('"GET /peer HTTP/1.1" 200')
    server.stop()
    assert not os.path.exists(path)  # the socket file is removed on exit


def test_unix_socket_in_use_or_stale(project: Path, dev_server, tmp_path: Path) -> None:
    write(project / "app.py", HELLO_APP)
    path = str(tmp_path / "app.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)  # left behind by a server that was SIGKILLed: nobody listens
    stale.close()
    first = dev_server("app.py", "--uds", path)
    assert wait_until(lambda: unix_get(path), what="an answer") == (200, "hello v1")
    result = run_cli(project, "app.py", "--uds", path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Error: {path} is in use by another server: stop it, or pick another path."
    )
    assert unix_get(path) == (200, "hello v1")  # the refused second server left it alone
    first.stop()
    not_a_socket = write(tmp_path / "notes.txt", "mine\n")
    result = run_cli(project, "app.py", "--uds", str(not_a_socket))
    assert result.returncode == 1 and "exists and is not a socket" in result.stderr
    assert not_a_socket.read_text() == "mine\n"


# --- 9. the blocking-call alarm: once per cause, first requests named ---------------------------

MIGRATING_APP = """
from flask import Flask
from gevent import monkey

app = Flask(__name__)
real_sleep = monkey.get_original("time", "sleep")
migrated = []

def step_1(): real_sleep(0.25)
def step_2(): real_sleep(0.25)
def step_3(): real_sleep(0.25)
def step_4(): real_sleep(0.25)
def step_5(): real_sleep(0.25)

@app.before_request
def migrate():
    if not migrated:  # a first-request database migration: five blocking steps
        for step in (step_1, step_2, step_3, step_4, step_5):
            step()
        migrated.append(True)

@app.route("/")
def index():
    return "migrated"

@app.route("/later")
def later():
    real_sleep(0.3)
    return "later"
"""


def test_blocking_alarm_reports_once_per_cause_and_names_first_requests(
    project: Path, dev_server
) -> None:
    write(project / "app.py", MIGRATING_APP)
    server = dev_server("app.py", GEVENT_MAX_BLOCKING_TIME="0.1")
    assert server.get("/").text == "migrated"
    log = server.wait_for_log(" * Blocking call: GET / (route /)")
    assert "This was a first request since the app (re)started" in log
    assert server.get("/later").text == "later"
    server.wait_for_log(" * Blocking call: GET /later (route /later)")
    assert server.get("/later").text == "later"
    server.wait_for_log('"GET /later HTTP/1.1" 200', count=2)
    assert stays(lambda: server.log().count(" * Blocking call: ") == 2, 0.5), server.log()
    log = server.log()
    later = log[log.index(" * Blocking call: GET /later") :]
    assert "first request" not in later, later  # a later request is not excused


# --- 5. README's Quick start on a stock OS Python ---------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
OS_PYTHON = Path("/usr/bin/python3")


def quick_start_commands() -> list[str]:
    """The two commands of README's Quick start ``bash`` block."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_readme_commands_make_their_own_venv_and_ci_runs_the_second_verbatim() -> None:
    serve, test = quick_start_commands()
    for line in (serve, test):
        # A new terminal, an OS python (PEP 668): never the system pip, always the project's venv.
        assert line.startswith("python3 -m venv .venv && .venv/bin/pip install -e "), line
        assert " pip install" not in line.replace(".venv/bin/pip install", "")
    assert serve.endswith(".venv/bin/geventdev examples/slow/app.py")
    assert test.endswith(".venv/bin/python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci, "the CI script must run the README's test command verbatim"


def os_python_marker() -> Path | None:
    """The OS python's EXTERNALLY-MANAGED marker (PEP 668), if this machine has one."""
    if not OS_PYTHON.exists():
        return None
    stdlib = subprocess.run(
        [str(OS_PYTHON), "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    marker = Path(stdlib) / "EXTERNALLY-MANAGED"
    return marker if marker.exists() else None


def clean_clone(destination: Path) -> Path:
    """What a fresh clone holds: the tracked (and new, not ignored) files, nothing else."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_readme_commands_work_typed_into_a_new_terminal_on_the_os_python(tmp_path: Path) -> None:
    """Debian's python3 refuses ``pip install -e .`` (PEP 668); README's commands make and use
    a ``.venv`` instead. Run both, as typed, in a clean copy of the repository, with the OS
    python first on PATH: one install of the test extras (pip's cache), then the serve command
    (the pytest run is narrowed with PYTEST_ADDOPTS: the whole suite is this suite)."""
    if os_python_marker() is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout and an OS python with EXTERNALLY-MANAGED (PEP 668)")
    clone = clean_clone(tmp_path / "clone")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(OS_PYTHON)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VIRTUAL_ENV", "PYTHON", "FLASK_", "GEVENTDEV_", "PYTEST_"))
    }
    env["PATH"] = f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"
    refused = subprocess.run(
        ["python3", "-m", "pip", "install", "-e", "."],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0  # the old Quick start, on this python
    assert "externally-managed-environment" in refused.stdout + refused.stderr or (
        "No module named pip" in refused.stderr
    ), refused
    serve, test = quick_start_commands()
    narrowed = {
        **env,
        "PYTEST_ADDOPTS": "-p no:cacheprovider -q -m 'not e2e' tests/test_watcher.py",
    }
    ran = subprocess.run(
        ["bash", "-c", test], cwd=clone, env=narrowed, capture_output=True, text=True, timeout=780
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert " passed" in ran.stdout, ran.stdout[-2000:]
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            ["bash", "-c", serve],
            cwd=clone,
            env={**env, "FLASK_RUN_PORT": "0"},  # the same command, on a free port
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        found = wait_until(
            lambda: re.search(r" \* Running on (http://\S+)", log_path.read_text()),
            120,
            "the demo to serve",
        )
        response = wait_until(lambda: get_or_none(found.group(1) + "/"), what="an answer")
        assert response.text == "Hello World"
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=15)


# --- 6. packaging --------------------------------------------------------------------------------


@pytest.mark.e2e
def test_the_wheel_ships_types_the_livereload_script_and_the_license(tmp_path: Path) -> None:
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path)]
    subprocess.run([*build, str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("geventdev-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        info = archive.read(metadata).decode()
    assert {"geventdev/py.typed", "geventdev/livereload/livereload.js"} <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), sorted(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert "License-Expression: MIT" in info
    assert "Classifier: Operating System :: POSIX :: Linux" in info
    assert "Classifier: Programming Language :: Python :: 3.13" in info
    assert "Project-URL: Source, https://github.com/geventdev/geventdev" in info


@pytest.mark.e2e
def test_the_copy_me_test_is_typed_and_closes_its_sockets(tmp_path: Path) -> None:
    """README's copy-me test, copied out of the repository: mypy --strict is clean (py.typed),
    and a run with ResourceWarning as an error passes."""
    for name in ("app.py", "test_with_geventdev.py"):
        shutil.copy(ROOT / "examples" / "testing" / name, tmp_path / name)
    mypy = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / ".mypy")]
    typed = subprocess.run([*mypy, "."], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert typed.returncode == 0, typed.stdout + typed.stderr
    run = [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-m", "pytest", "-q"]
    ran = subprocess.run(
        [*run, "-p", "no:cacheprovider", "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0 and "3 passed" in ran.stdout, ran.stdout + ran.stderr
    assert "ResourceWarning" not in ran.stdout + ran.stderr


# --- 8. IDE debugging: debugpy follows the app processes in reload mode -------------------------


class DAPClient:
    """A minimal Debug Adapter Protocol client: what VS Code does, as far as this test needs."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.seq = 0
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.backlog: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        stream = self.sock.makefile("rb")
        try:
            while True:
                headers = {}
                while (line := stream.readline()).strip():
                    name, _, value = line.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                if not headers:
                    break
                self.inbox.put(json.loads(stream.read(int(headers["content-length"]))))
        except OSError:
            pass
        self.inbox.put(None)

    def request(self, command: str, **arguments: Any) -> int:
        self.seq += 1
        message = {"seq": self.seq, "type": "request", "command": command, "arguments": arguments}
        data = json.dumps(message).encode()
        self.sock.sendall(b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
        return self.seq

    def wait(self, kind: str, name: str, timeout: float = 60) -> dict[str, Any]:
        """The next ``event`` or ``response`` called ``name`` (others are kept for later)."""
        key = "event" if kind == "event" else "command"
        for message in self.backlog:
            if message["type"] == kind and message.get(key) == name:
                self.backlog.remove(message)
                return message
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self.inbox.get(timeout=left)
            except queue.Empty:
                break
            assert message is not None, f"the adapter hung up waiting for {kind} {name}"
            if message["type"] == kind and message.get(key) == name:
                assert message.get("success", True), message
                return message
            self.backlog.append(message)
        raise AssertionError(f"no {kind} {name!r} in {timeout} s; got {self.backlog}")

    def start(self, attach: dict[str, Any], breakpoints: dict[str, list[int]]) -> None:
        """initialize, attach, breakpoints, configurationDone: one debug session."""
        self.request("initialize", adapterID="debugpy", clientID="test", pathFormat="path")
        self.wait("response", "initialize")
        self.request("attach", **attach)
        self.wait("event", "initialized")
        for path, lines in breakpoints.items():
            points = [{"line": n} for n in lines]
            self.request("setBreakpoints", source={"path": path}, breakpoints=points)
            self.wait("response", "setBreakpoints")
        self.request("configurationDone")
        self.wait("response", "attach")

    def close(self) -> None:
        self.sock.close()


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_debugpy_stops_at_a_breakpoint_in_the_app_process_in_reload_mode(
    project: Path, tmp_path: Path
) -> None:
    """``python -m debugpy --listen ... -m geventdev app.py`` (what an IDE runs): debugpy
    follows the monitor's app processes (subProcess, its default); a breakpoint in a route
    stops there, and again in the new app process after a reload."""
    pytest.importorskip("debugpy")
    app = write(project / "app.py", HELLO_APP)
    line = next(i for i, text in enumerate(HELLO_APP.strip().splitlines(), 1) if "hello v1" in text)
    with socket.socket() as probe:  # debugpy takes no port 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [sys.executable, "-m", "debugpy", "--listen", f"127.0.0.1:{port}", "--wait-for-client"]
    env = geventdev_env(PYTHONDONTWRITEBYTECODE="")
    log_path = tmp_path / "server-debugpy.log"  # conftest shows server-*.log when a test fails
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*argv, "-m", "geventdev", "app.py", "--port", "0", "--no-standby"],
            cwd=project,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    sessions: list[DAPClient] = []
    try:
        # (the adapter takes its first connection as the IDE's: no probing before this one)
        root = wait_until(lambda: connect_dap(port), 60, "debugpy's adapter")
        sessions.append(root)
        root.start({"connect": {"host": "127.0.0.1", "port": port}, "subProcess": True}, {})

        def follow_child() -> DAPClient:
            attach = root.wait("event", "debugpyAttach")["body"]
            child = DAPClient(attach["connect"]["port"])
            sessions.append(child)
            child.start(attach, {str(app): [line]})
            return child

        child = follow_child()
        log_text = lambda: log_path.read_text(errors="replace")  # noqa: E731
        url = wait_until(lambda: re.search(r"Running on (http://\S+)", log_text()), 60).group(1)
        for version, session in (("v1", child), ("v2", None)):
            if session is None:  # a reload: the new app process is followed too
                write(app, HELLO_APP.replace("hello v1", "hello v2"))
                session = follow_child()
                # until the new process serves, the old one answers (and would stop in its session)
                wait_until(lambda: " * Restarted in " in log_text(), 60, "the new app process")
            with ThreadPoolExecutor(1) as pool:
                answer = pool.submit(lambda: get_or_none(url + "/", timeout=60))
                stopped = session.wait("event", "stopped")
                assert stopped["body"]["reason"] == "breakpoint", stopped
                assert not answer.done()  # the request waits at the breakpoint
                session.request("continue", threadId=stopped["body"]["threadId"])
                response = answer.result(timeout=60)
            assert response is not None and response.text == f"hello {version}", log_text()
    finally:
        for session in sessions:
            session.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def connect_dap(port: int) -> DAPClient | None:
    try:
        return DAPClient(port)
    except OSError:
        return None
