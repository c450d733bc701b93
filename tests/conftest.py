"""Test harness: real geventdev processes on 127.0.0.1, real files, real HTTP, real signals.

``dev_server`` starts ``python -m geventdev ... --port 0`` in a temporary project, with its
output in a log file outside the watched tree. Every wait polls a condition with a deadline.
Processes are ended by process group (each server gets its own session), never by name.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


#: Seconds a server gets to exit after Ctrl+C before the harness kills it and fails the test.
STOP_DEADLINE = 5.0
#: Seconds app processes may outlive their monitor (the kernel's PDEATHSIG is asynchronous).
CHILD_GRACE = 2.0


def wait_until(predicate: Callable[[], T], timeout: float = 15.0, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def stays(predicate: Callable[[], bool], seconds: float) -> bool:
    """True if ``predicate`` holds for the whole window (for "nothing happens" assertions)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not predicate():
            return False
        time.sleep(0.02)
    return True


def write(path: Path, text: str) -> Path:
    """Write a file the way an editor saving in place does, with a fresh mtime."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def children_of(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def parent_of(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return 0


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


class ServerProcess:
    """A server process started in its own session, its output in a log file: the one harness
    for geventdev (``DevServer``) and its production peer (``Gunicorn``)."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str], **popen: Any):
        self.log_path = log_path
        self.log_file = log_path.open("wb")
        popen.setdefault("stdin", subprocess.DEVNULL)
        self.proc = subprocess.Popen(
            args,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            **popen,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 15.0) -> str:
        return wait_until(
            lambda: self.log().count(text) >= count and self.log(),
            timeout,
            f"{text!r} x{count} in the log:\n{self.log()}",
        )

    def signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            pass

    def wait_exit(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout=timeout)


class DevServer(ServerProcess):
    """One ``geventdev`` monitor process, started in its own session."""

    def __init__(
        self, project: Path, log_path: Path, args: list[str], env: dict[str, str], stdin: Any = None
    ):
        self.project = project
        stdin = subprocess.DEVNULL if stdin is None else stdin
        super().__init__(args, log_path, env, cwd=project, stdin=stdin)
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            log = self.wait_for_log(" * Running on http")
            match = re.search(r" \* Running on (https?://\S+)", log)
            assert match, log
            self._url = match.group(1)
        return self._url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def get(self, path: str = "/", **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 15)
        return requests.get(self.url + path, **kwargs)

    def wait_for_text(self, path: str, text: str, timeout: float = 15.0) -> requests.Response:
        def check() -> requests.Response | None:
            try:
                response = self.get(path, timeout=5)
            except requests.ConnectionError:
                return None
            return response if text in response.text else None

        return wait_until(check, timeout, f"{text!r} at {path}; log:\n{self.log()}")

    def children(self) -> list[int]:
        """Every process the monitor started, every app process a warm standby forked
        (``app.zygote``) and every worker of a loaded app kept pristine (``app.pristine``); not
        the processes an app itself starts."""
        found, todo = [], children_of(self.pid)
        while todo:
            pid = todo.pop(0)
            found.append(pid)
            if process_name(pid) != "geventdev-app":
                todo += children_of(pid)
        return found

    def apps(self) -> list[int]:
        return [pid for pid in self.children() if process_name(pid) == "geventdev-app"]

    def standby(self) -> int:
        """The warm standby (geventdev-wait), once it is there."""
        return wait_until(
            lambda: next((p for p in self.children() if process_name(p) == "geventdev-wait"), 0),
            what="a warm standby",
        )

    def child(self) -> int:
        """The one app process (waits for an overlapping restart to finish)."""
        return wait_until(lambda: len(apps := self.apps()) == 1 and apps[0], what="one app")

    def stop(self, timeout: float = STOP_DEADLINE) -> None:
        """Ctrl+C to the group; the server must exit by itself within ``timeout`` seconds, and
        leave no app process behind. If it does not, it is killed (the test run stays clean)
        and the test FAILS: a SIGKILL must never hide a hang (issue 12)."""
        kids = self.children()
        problems = []
        if self.proc.poll() is None:
            self.signal_group(signal.SIGINT)  # what Ctrl+C in a terminal does
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                problems.append(f"the server did not exit within {timeout} s of Ctrl+C (SIGINT)")
                self.signal_group(signal.SIGKILL)
                self.proc.wait(timeout=5)
        # App processes end with the monitor (PR_SET_PDEATHSIG for one it could not stop).
        if not stays_false(lambda: any(pid_alive(pid) for pid in kids), CHILD_GRACE):
            left = [pid for pid in kids if pid_alive(pid)]
            problems.append(f"app processes {left} outlived the monitor by {CHILD_GRACE} s")
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.log_file.close()
        if problems:
            raise AssertionError("; ".join(problems) + f" (killed). Log:\n{self.log()}")


def stays_false(predicate: Callable[[], bool], within: float) -> bool:
    """True once ``predicate`` is false, polling for up to ``within`` seconds."""
    deadline = time.monotonic() + within
    while predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


#: Where the servers the tests start keep what they remember between runs (the app's library
#: modules, ``monitor.libraries``): a directory of this test session, not the user's ~/.cache.
CACHE_HOME: list[str] = []


@pytest.fixture(autouse=True, scope="session")
def cache_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    CACHE_HOME[:] = [str(tmp_path_factory.mktemp("cache-home"))]


def geventdev_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "WERKZEUG_"))}
    if CACHE_HOME:
        env["XDG_CACHE_HOME"] = CACHE_HOME[0]
    # extra may override: PYTHONDONTWRITEBYTECODE="" runs with bytecode caches on, as users do.
    # GEVENTDEV_PATCH=0: most tests are about restarts; tests/test_patch*.py and
    # tests/test_pristine.py turn patching (the default) on.
    base = {"PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.update({**base, "GEVENTDEV_PATCH": "0", **extra})
    return env


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    return path


@pytest.fixture
def dev_server(project: Path, tmp_path: Path) -> Iterator[Callable[..., DevServer]]:
    """Factory: ``dev_server("app.py", "--no-debugger", cmd=[...], env={...})``."""
    servers: list[DevServer] = []

    def start(
        *args: str, cmd: list[str] | None = None, port: str = "0", stdin: Any = None, **env: str
    ) -> DevServer:
        argv = cmd or [sys.executable, "-m", "geventdev"]
        log = tmp_path / f"server-{len(servers)}.log"
        argv = [*argv, *args, "--port", port]
        server = DevServer(project, log, argv, geventdev_env(**env), stdin=stdin)
        servers.append(server)
        return server

    yield start
    failures = []
    for server in servers:  # stop every one, then report the ones that had to be killed
        try:
            server.stop()
        except AssertionError as exc:
            failures.append(str(exc))
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)


#: Fixtures that start real servers or processes: a test using one is in the end-to-end tier.
E2E_FIXTURES = frozenset({"dev_server", "gevent_server", "gunicorn", "server", "old_watchdog"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Two tiers: ``-m "not e2e"`` runs the fast unit tests (well under a minute); a test is
    end-to-end when it uses a server fixture or is marked ``e2e`` itself."""
    for item in items:
        copied_example = item.path.is_relative_to(EXAMPLES)  # examples/testing: the user's copy
        if copied_example or E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Show each server's log when a test fails (hupper's hook)."""
    report = yield
    if report.failed and call.when in ("call", "setup"):
        for path in sorted(
            Path(str(item.funcargs.get("tmp_path", "/nonexistent"))).glob("server-*.log")
        ):
            report.sections.append((f"geventdev log {path.name}", path.read_text(errors="replace")))
    return report


GUNICORN = [sys.executable, "-m", "gunicorn", "-w", "1", "--no-control-socket"]


class Gunicorn(ServerProcess):
    """``gunicorn -w 1 ... --bind 127.0.0.1:0``, its port read from "Listening at"."""

    def __init__(self, log_path: Path, args: list[str], env: dict[str, str]) -> None:
        super().__init__([*GUNICORN, "--bind", "127.0.0.1:0", *args], log_path, env)
        found = self.wait_for_log("Booting worker with pid: ", timeout=20)
        match = re.search(r"Listening at: (http://\S+)", found)
        assert match, found
        self.url = match.group(1)

    def get(self, path: str) -> requests.Response:
        # the worker may still be importing the app: retry refused connections briefly
        return wait_until(lambda: get_or_none(self.url + path), 15, f"GET {path}:\n{self.log()}")

    def stop(self) -> None:
        self.signal_group(signal.SIGINT)  # quick shutdown
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            self.proc.wait(timeout=5)
        self.log_file.close()


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[Callable[..., Gunicorn]]:
    """Factory: ``gunicorn("slow", "app:app", "-k", "gevent", **env)`` (cwd = the example)."""
    started: list[Gunicorn] = []

    def start(example: str, target: str, *args: str, **env: str) -> Gunicorn:
        log = tmp_path / f"gunicorn-{len(started)}.log"
        chdir = ["--chdir", str(EXAMPLES / example)]
        server = Gunicorn(log, [*chdir, *(args or ("-k", "gevent")), target], geventdev_env(**env))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def get_or_none(url: str, timeout: float = 15) -> requests.Response | None:
    """GET, or None while nothing listens yet."""
    try:
        return requests.get(url, timeout=timeout)
    except requests.ConnectionError:
        return None


def port_is_free(port: int) -> bool:
    """Nothing holds the port: we can bind it ourselves."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_closed(port: int) -> bool:
    """Nobody accepts connections on the port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def recv_for(sock: socket.socket, seconds: float, until: bytes | None = None) -> bytes:
    """What the peer sends within ``seconds``: up to its close, or until ``until`` arrives."""
    data, deadline = b"", time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0 and (until is None or until not in data):
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:  # the server closed with some of our bytes unread
            break
        if not chunk:
            break
        data += chunk
    return data


def run_cli(
    project: Path, *args: str, timeout: float = 20, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -m geventdev ARGS`` to completion (for commands that must exit: errors, --help)."""
    return subprocess.run(
        [sys.executable, "-m", "geventdev", *args],
        cwd=project,
        env=geventdev_env(**env),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )


def gws_env(mode: str, tmp_path: Path) -> dict[str, str]:
    """Environment for a server with gevent-websocket ``present`` or hidden (``absent``)."""
    if mode == "present":
        return {}
    write(tmp_path / "no-gws" / "geventwebsocket" / "__init__.py", "raise ImportError('hidden')\n")
    return {"PYTHONPATH": str(tmp_path / "no-gws")}


def ws_url(http_url: str, path: str) -> str:
    return "ws" + http_url.removeprefix("http") + path


def echo_once(url: str, text: str) -> str | None:
    """Connect, send, return the answer (None if the server is not there yet)."""
    import simple_websocket  # a test extra, needed by the websocket tests only

    try:
        client = simple_websocket.Client.connect(url)
    except (ConnectionError, OSError, simple_websocket.ConnectionError):
        return None
    try:
        client.send(text)
        answer = client.receive(timeout=5)
        return answer if isinstance(answer, str) else None
    except simple_websocket.ConnectionClosed:
        return None
    finally:
        with contextlib.suppress(simple_websocket.ConnectionClosed):
            client.close()


def restart_count(server: DevServer) -> int:
    return server.log().count(" * Detected change in ")


def atomic_save(project: Path) -> None:
    """Most editors: write a temporary file, then rename it over the original."""
    tmp = write(project / ".app.py.tmp123", HELLO_APP.replace("hello v1", "saved"))
    os.replace(tmp, project / "app.py")


def vim_save(project: Path) -> None:
    """vim's default: probe file 4913, swap file, backup rename, new write."""
    (project / "4913").write_text("")
    (project / "4913").unlink()
    (project / ".app.py.swp").write_text("swap")
    os.rename(project / "app.py", project / "app.py~")
    write(project / "app.py", HELLO_APP.replace("hello v1", "saved"))
    (project / "app.py~").unlink()
    (project / ".app.py.swp").unlink()


def jetbrains_save(project: Path) -> None:
    """JetBrains "safe write": tmp created, original renamed aside, tmp renamed in, old deleted."""
    tmp = write(project / "app.py___jb_tmp___", HELLO_APP.replace("hello v1", "saved"))
    os.rename(project / "app.py", project / "app.py___jb_old___")
    os.rename(tmp, project / "app.py")
    (project / "app.py___jb_old___").unlink()


EDITOR_SAVES = {"atomic": atomic_save, "vim": vim_save, "jetbrains": jetbrains_save}


def save_then_confirm(server: DevServer, project: Path, save: Callable[[Path], None]) -> None:
    """Run one editor save, then one plain edit: exactly two restarts means the save was one."""
    save(project)
    server.wait_for_text("/", "saved")
    server.wait_for_log(" * Restarted in ")
    write(project / "app.py", HELLO_APP.replace("hello v1", "confirm"))
    server.wait_for_text("/", "confirm")
    server.wait_for_log(" * Restarted in ", count=2)
    assert restart_count(server) == 2, server.log()


HELLO_APP = textwrap.dedent(
    """
    import os
    from flask import Flask

    app = Flask(__name__)

    @app.route("/")
    def index():
        return "hello v1"

    @app.route("/pid")
    def pid():
        return str(os.getpid())
"""
)
