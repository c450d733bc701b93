"""App processes forked from the standby (``app.zygote``, issue 15): they share its memory, the
standby stays for the next save, reports their exits, and retires (never dies) under them.
Bytecode caches on, as users run."""

from __future__ import annotations

import os
import signal
import socket
import struct
import threading
import time
from pathlib import Path

import requests
from conftest import DevServer, parent_of, pid_alive, process_name, wait_until
from test_gate import (
    CACHES_ON,
    COUNT,
    HOT,
    edit,
    imported_by,
    make_project,
    module,
    paused_standby,
    values,
)

ROUTES = """
import os, time

@app.route("/exit/<int:code>")
def exit_now(code):
    os._exit(code)

@app.route("/slow")
def slow():
    open({started!r}, "w").close()
    time.sleep(1.5)
    return "slow done"
"""


def serve_project(project: Path, dev_server) -> DevServer:  # type: ignore[no-untyped-def]
    make_project(project)
    write_routes(project)
    server: DevServer = dev_server("app.py", **CACHES_ON)
    edit(project, server, HOT, "hot")  # the next standby stops before m15
    return server


def forked_app(project: Path, dev_server, value: str) -> tuple[DevServer, int, int]:  # type: ignore[no-untyped-def]
    """The server, its standby paused before m15, and the app process forked from it for an
    edit of m15 to ``value``."""
    server = serve_project(project, dev_server)
    standby = paused_standby(server, project, HOT)
    edit(project, server, HOT, value)
    app = int(server.get("/pid").text)
    assert parent_of(app) == standby
    return server, standby, app


def write_routes(project: Path) -> None:
    app = project / "app.py"
    app.write_text(app.read_text() + ROUTES.format(started=str(slow_started(project))))


def slow_started(project: Path) -> Path:
    return project.parent / "slow.started"


def shared_anonymous_kb(pid: int) -> int:
    """Anonymous memory (the Python heap) this process shares with another: a cold interpreter
    shares none; a fork shares what neither has written since."""
    total, anonymous = 0, False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5:  # a mapping's header: path is field 6
            anonymous = len(fields) < 6 or fields[5] == "[heap]"
        elif anonymous and fields[0] in ("Shared_Clean:", "Shared_Dirty:"):
            total += int(fields[1])
    return total


def test_the_app_process_is_forked_from_the_standby_and_shares_its_memory(
    project: Path, dev_server
) -> None:
    _server, _standby, app = forked_app(project, dev_server, "forked")
    assert process_name(app) == "geventdev-app"
    # gevent, Flask, the first 15 modules: loaded once, in the standby.
    assert shared_anonymous_kb(app) > 8 * 1024, shared_anonymous_kb(app)
    assert imported_by(project, app) == [f"m{i:02d}" for i in range(HOT, COUNT)]


def test_a_second_save_half_a_second_after_the_first_is_forked_from_the_same_standby(
    project: Path, dev_server
) -> None:
    """No cold window: the standby is still paused after the first save's fork."""
    server = serve_project(project, dev_server)
    standby = paused_standby(server, project, HOT)
    restarted = server.log().count(" * Restarted in")
    edit(project, server, HOT, "one")
    first = int(server.get("/pid").text)
    assert parent_of(first) == standby
    time.sleep(0.5)  # the pace of the saves under test, not a wait for something to settle
    edit(project, server, HOT, "two")
    second = int(server.get("/pid").text)
    assert parent_of(second) == standby != second != first
    server.wait_for_log(" * Restarted in", count=restarted + 2)
    assert server.log().count("Restarted in") == restarted + 2


def save_while_down(project: Path, server: DevServer, value: str) -> None:
    """Save the hot module while no app process serves, and wait until it is served."""
    module(project, HOT, value)

    def served() -> bool:
        now = values(server)  # the monitor's own page while no app process serves
        return len(now) == COUNT and now[HOT] == value

    wait_until(served, 15, f"{value!r} served:\n{server.log()}")


def test_the_exit_of_a_forked_app_is_reported_like_any_other(project: Path, dev_server) -> None:
    """The standby is its parent: it reaps it and tells the monitor how it ended."""
    server, _standby, _app = forked_app(project, dev_server, "exit-code")
    try:
        server.get("/exit/3", timeout=5)
    except requests.ConnectionError:
        pass
    server.wait_for_log(" * App exited with code 3; waiting for a change")
    save_while_down(project, server, "killed")  # back, forked again
    app = int(server.get("/pid").text)
    os.kill(app, signal.SIGKILL)
    server.wait_for_log(" * App was killed by SIGKILL (out of memory?); waiting for a change")
    save_while_down(project, server, "back")


def test_a_standby_no_longer_wanted_waits_for_its_app_to_drain(project: Path, dev_server) -> None:
    """An edit of a module the standby read: it cannot serve it (a cold start does), but the app
    it forked still serves a request in flight: the standby retires, and exits after that app
    has drained (it would die with the standby)."""
    server, standby, app = forked_app(project, dev_server, "from-standby")
    answer: list[str] = []
    slow = threading.Thread(target=lambda: answer.append(server.get("/slow").text))
    slow.start()
    wait_until(slow_started(project).exists, 5, "the slow request in the app")
    edit(project, server, 5, "read-by-the-standby")  # m05: a cold start
    assert parent_of(int(server.get("/pid").text)) != standby  # a cold start
    wait_until(lambda: process_name(standby) == "geventdev-old" or not pid_alive(standby), 5)
    slow.join(timeout=10)
    assert answer == ["slow done"]
    wait_until(lambda: not pid_alive(app), 10, "the old app drained")
    wait_until(lambda: not pid_alive(standby), 5, "the retired standby gone after it")
    assert "killed" not in server.log()


def test_a_standby_killed_under_its_app_takes_the_app_along_and_the_server_recovers(
    project: Path, dev_server
) -> None:
    server, standby, app = forked_app(project, dev_server, "from-standby")
    os.kill(standby, signal.SIGKILL)  # the OOM killer, a user's kill -9
    server.wait_for_log(" * App was killed by SIGKILL (out of memory?); waiting for a change")
    wait_until(lambda: not pid_alive(app), 5, "the app gone with its standby")
    save_while_down(project, server, "recovered")


def test_a_standby_holding_a_connection_made_at_import_serves_itself_instead_of_forking(
    project: Path, dev_server, tmp_path: Path
) -> None:
    """A database connection made at import: a fork would share it with the app process
    still draining (and with every later fork). The standby becomes the app itself, which
    made its own connection, as a cold start would."""
    address = str(tmp_path / "db.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(address)
    listener.listen(16)
    peers: list[int] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                size = struct.calcsize("3i")
                creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, size)
                peers.append(struct.unpack("3i", creds)[0])  # the pid that connected

    threading.Thread(target=accept, daemon=True).start()
    connect = f"""
        import socket
        DB = socket.socket(socket.AF_UNIX)
        DB.connect({address!r})
        """
    make_project(project, extras={3: connect})
    server: DevServer = dev_server("app.py", **CACHES_ON)
    try:
        edit(project, server, HOT, "hot")
        standby = paused_standby(server, project, HOT)
        assert standby in peers  # it connected while it loaded ahead
        edit(project, server, HOT, "one")
        assert int(server.get("/pid").text) == standby  # it took over, with its connection
        # The next standby may be caught before it connected (forked from there: the app
        # connects itself) or after (it takes over): either way, a connection of its own.
        edit(project, server, HOT, "two")
        app = int(server.get("/pid").text)
        assert app in peers and app != standby, (app, peers)
    finally:
        listener.close()


def test_a_native_thread_started_at_import_runs_in_the_app_process(
    project: Path, dev_server
) -> None:
    """A thread gevent did not patch (started with the original ``_thread``): a fork would
    not have it; the standby that started it serves itself."""
    ticks = project.parent / "ticks.log"
    native = f"""
        from gevent import monkey
        import time as _time
        def _tick():
            while True:
                with open({str(ticks)!r}, "a") as f:
                    f.write(f"{{os.getpid()}}\\n")
                monkey.get_original("time", "sleep")(0.05)
        monkey.get_original("_thread", "start_new_thread")(_tick, ())
        """
    make_project(project, extras={3: native})
    server: DevServer = dev_server("app.py", **CACHES_ON)
    edit(project, server, HOT, "hot")
    paused_standby(server, project, HOT)
    edit(project, server, HOT, "again")
    app = int(server.get("/pid").text)
    wait_until(lambda: ticks.read_text().split().count(str(app)) > 3, 5, "the app's thread")


def test_a_standby_holding_an_sqlite_database_opened_at_import_serves_itself(
    project: Path, dev_server, tmp_path: Path
) -> None:
    """SQLite's connection must not cross a fork: the standby that opened it is the app."""
    opens = f"""
        import sqlite3
        DB = sqlite3.connect({str(tmp_path / "app.db")!r}, check_same_thread=False)
        DB.execute("create table if not exists t (x)")
        """
    make_project(project, extras={3: opens})
    server: DevServer = dev_server("app.py", **CACHES_ON)
    edit(project, server, HOT, "hot")
    standby = paused_standby(server, project, HOT)
    edit(project, server, HOT, "served-by-the-standby")
    assert int(server.get("/pid").text) == standby
