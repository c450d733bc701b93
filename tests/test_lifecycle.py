"""Starting and stopping: signals, orphans, bad input gives one clear line."""

from __future__ import annotations

import shutil
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from conftest import EXAMPLES, HELLO_APP, pid_alive, port_is_free, run_cli, wait_until, write


def test_ctrl_c_stops_monitor_and_child_with_status_0(project: Path, dev_server) -> None:
    write(project / "app.py", HELLO_APP)
    server = dev_server("app.py")
    server.get("/")
    server.standby()
    children = server.children()
    started = time.monotonic()
    server.signal_group(signal.SIGINT)  # a terminal's Ctrl+C reaches the whole group
    assert server.wait_exit(timeout=5) == 0
    assert time.monotonic() - started < 3
    wait_until(lambda: not any(map(pid_alive, children)), 3, "the app processes to exit")
    assert port_is_free(server.port)
    assert "Traceback" not in server.log()


def test_ctrl_c_with_a_request_in_flight_is_still_quick(project: Path, dev_server) -> None:
    shutil.copy(EXAMPLES / "slow" / "app.py", project / "app.py")
    server = dev_server("app.py")
    server.get("/")
    pending = ThreadPoolExecutor(1).submit(server.get, "/testsleep?seconds=30")
    server.wait_for_log("/testsleep: sleeping 30 s")  # the scenario: a request already sleeping
    started = time.monotonic()
    server.signal_group(signal.SIGINT)
    assert server.wait_exit(timeout=5) == 0
    assert time.monotonic() - started < 3
    try:  # the cut-off request fails, one way or another, and does not hang
        assert pending.result(timeout=5).status_code >= 500
    except requests.RequestException:
        pass


def test_sigterm_to_the_monitor_alone_stops_everything(project: Path, dev_server) -> None:
    write(project / "app.py", HELLO_APP)
    server = dev_server("app.py")
    server.get("/")
    server.standby()
    children = server.children()
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait_exit(timeout=5) == 0
    wait_until(lambda: not any(map(pid_alive, children)), 3, "the app processes to exit")
    assert port_is_free(server.port)


@pytest.mark.parametrize(("patching", "processes"), [("0", 2), ("1", 3)], ids=["restart", "patch"])
def test_sigkill_of_the_monitor_leaves_no_orphan(
    project: Path, dev_server, patching: str, processes: int
) -> None:
    """The warm standby, the app process forked from it and, patching, the worker forked from
    that (the app process stays as it loaded: ``app.pristine``) all die with the monitor."""
    write(project / "app.py", HELLO_APP)
    server = dev_server("app.py", GEVENTDEV_PATCH=patching)
    server.get("/")
    server.standby()
    children = server.children()
    assert len(children) == processes, children
    server.proc.kill()
    server.proc.wait(timeout=5)
    wait_until(lambda: not any(map(pid_alive, children)), 3, "the orphans to exit")
    wait_until(lambda: port_is_free(server.port), 3, "the port to be free")


def test_busy_port_is_one_line(project: Path) -> None:
    write(project / "app.py", HELLO_APP)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_cli(project, "app.py", "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Error: Port {port} is in use by another program. Stop that program, "
        "or start the server with a different port (-p)."
    )
    assert "Traceback" not in result.stdout + result.stderr


def test_port_5000_busy_mentions_airplay(project: Path) -> None:
    import errno

    from geventdev.net import bind_error_message

    message = bind_error_message(OSError(errno.EADDRINUSE, "in use"), "127.0.0.1", 5000)
    assert "AirPlay Receiver" in message and "\n" not in message


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["nope.py"], "Error: Could not import 'nope'."),
        (["app:missing"], "Error: Failed to find attribute 'missing' in 'app'."),
        ([], "Error: Could not locate a Flask application."),
    ],
)
def test_missing_app_is_one_line(project: Path, args: list[str], expected: str) -> None:
    if args and args[0].startswith("app:"):
        write(project / "app.py", HELLO_APP)
    result = run_cli(project, *args, "--port", "0")
    assert result.returncode == 2, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and error_lines[0].startswith(expected), result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--port", "99999"], "Invalid value for '-p' / '--port'"),
        (["--port", "abc"], "Invalid value for '-p' / '--port'"),
        (["--reloader-type", "magic"], "Invalid value for '--reloader-type'"),
        (["--host", "no.such.host.invalid"], "Error: Could not resolve host"),
        (["a.py", "--app", "b.py"], "Got two apps"),
    ],
)
def test_bad_options_are_one_clear_error(project: Path, args: list[str], expected: str) -> None:
    result = run_cli(project, *args)
    assert result.returncode in (1, 2)
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_version(project: Path) -> None:
    result = run_cli(project, "--version")
    assert result.returncode == 0
    assert result.stdout.startswith("geventdev 0.")
    assert "gevent " in result.stdout and "Flask " in result.stdout


def test_listener_sets_nodelay_and_reuseaddr_and_is_inherited() -> None:
    """The fast path's precondition: accepted sockets inherit TCP_NODELAY from the listener
    (pywsgi writes headers and body in two sends; with Nagle every keep-alive reply waits)."""
    from geventdev.net import bind_listener

    with bind_listener("127.0.0.1", 0) as listener:
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        assert listener.get_inheritable()
        assert not listener.getblocking()  # the 503 responder must never block in accept()
        with socket.create_connection(listener.getsockname()[:2], timeout=5):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
