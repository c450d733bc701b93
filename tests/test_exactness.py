"""What you saved is what is served (issue 16): each test runs as users run, with bytecode caches
on (``PYTHONDONTWRITEBYTECODE`` unset for the server) and saves that land inside one second."""

from __future__ import annotations

import json
import os
import py_compile
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from conftest import DevServer, pid_alive, port_is_free, stays, wait_until, write
from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

from geventdev.app.bytecode import is_racy
from geventdev.monitor.interpreter import interpreter_options

#: Bytecode caches on, as users run (these machines export PYTHONDONTWRITEBYTECODE=1).
CACHES_ON = {"PYTHONDONTWRITEBYTECODE": ""}


def value_app(n: int, extra: str = "") -> str:
    """An app that answers ``NN``: every version has the same size, as a one-character fix has."""
    return textwrap.dedent(
        """
        import os
        from flask import Flask

        app = Flask(__name__)
        VALUE = "{n:02d}"

        @app.route("/")
        def index():
            return VALUE

        @app.route("/pid")
        def pid():
            return str(os.getpid())
        """
    ).format(n=n) + textwrap.dedent(extra)


def fresh_get(url: str) -> str:
    """One request on a new connection (no pooling), so it is accepted after the call starts."""
    try:
        return requests.get(url, headers={"Connection": "close"}, timeout=10).text
    except requests.RequestException as exc:
        return repr(exc)


def served(server: DevServer, text: str, timeout: float = 6.0) -> None:
    """Wait until ``/`` answers exactly ``text`` on a fresh connection."""
    wait_until(lambda: fresh_get(server.url + "/") == text, timeout, f"{text!r}:\n{server.log()}")


# 1. Stale bytecode -----------------------------------------------------------------------------
@pytest.mark.parametrize("options", [(), ("--no-standby",), ("--reloader-type", "stat")])
def test_same_size_saves_within_one_second_are_each_served(
    project: Path, dev_server, options: tuple[str, ...]
) -> None:
    """'1' -> '2' -> '3', each save as soon as the previous one is served, starting at the top of
    a second: Python validates a .pyc by the source's whole-second mtime and size only."""
    helper = write(project / "helper.py", "HELPER = 1\n")
    os.utime(helper, (time.time() - 60, time.time() - 60))  # checked out a minute ago
    app = write(project / "app.py", value_app(0, "import helper\n"))
    server = dev_server("app.py", *options, **CACHES_ON)
    served(server, "00")
    n, raced = 0, 0
    for _ in range(4):  # until one round had two same-size saves in the same second
        wait_until(lambda: time.time() % 1 < 0.05, what="the top of a second")
        seconds = []
        for _ in range(3):
            n += 1
            write(app, value_app(n, "import helper\n"))
            seconds.append(int(app.stat().st_mtime))
            served(server, f"{n:02d}")
        raced += seconds[0] == seconds[1]
        if raced:
            break
    assert raced, "no two saves landed in one second (machine too slow?)"
    # Caches were on: what was not just saved is cached as usual.
    assert "helper" in [p.name.split(".")[0] for p in (project / "__pycache__").iterdir()]


#: Generated code that takes a few tenths of a second to compile.
BIG_BODY = "".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(3000))


def test_a_save_while_the_previous_one_compiles_is_served(project: Path, dev_server) -> None:
    """The process loading save '1' of a big module is still compiling it when save '2' lands
    in the same second (the monitor has nothing to forget yet); it must not leave bytecode that
    the next process takes for save '2'."""
    big = write(project / "big.py", 'VALUE = "00"\n' + BIG_BODY)
    write(project / "app.py", value_app(0, "import big\nVALUE = big.VALUE\n"))
    server = dev_server("app.py", **CACHES_ON)
    served(server, "00", timeout=20)
    read = threading.Event()  # a process has read big.py (inotify: closed without writing)
    handler = FileSystemEventHandler()
    handler.on_closed_no_write = lambda e: read.set() if e.src_path == str(big) else None
    observer = Observer()
    observer.schedule(handler, str(project), recursive=False)
    observer.start()
    raced = False
    try:
        for n in range(1, 4):  # until the two saves of a round land in one second
            server.standby()
            wait_until(lambda: time.time() % 1 < 0.05, what="the top of a second")
            read.clear()
            write(big, f'VALUE = "{2 * n - 1:02d}"\n' + BIG_BODY)
            first = int(big.stat().st_mtime)
            wait_until(read.is_set, 5, "the app process to read save 1")
            write(big, f'VALUE = "{2 * n:02d}"\n' + BIG_BODY)  # while save 1 compiles
            served(server, f"{2 * n:02d}", timeout=10)
            if raced := first == int(big.stat().st_mtime):
                break
    finally:
        observer.stop()
        observer.join(timeout=5)
    assert raced, "no two saves landed in one second (machine too slow?)"


def test_a_pyc_another_tool_wrote_in_the_same_second_is_forgotten(
    project: Path, dev_server
) -> None:
    """``compileall``, a test run or ``flask run`` writes bytecode with Python's own loader, racy
    or not; the monitor removes the cached bytecode of every .py that changes."""
    app = write(project / "app.py", value_app(0))
    server = dev_server("app.py", **CACHES_ON)
    served(server, "00")
    raced = False
    for n in range(1, 5):  # until the two saves of a round land in one second
        wait_until(lambda: time.time() % 1 < 0.05, what="the top of a second")
        write(app, value_app(2 * n - 1))
        first = int(app.stat().st_mtime)
        py_compile.compile(str(app), doraise=True)  # what another tool leaves behind
        served(server, f"{2 * n - 1:02d}")
        write(app, value_app(2 * n))
        served(server, f"{2 * n:02d}")
        if raced := first == int(app.stat().st_mtime):
            break
    assert raced, "no two saves landed in one second (machine too slow?)"


# 2. "Restarted" means new connections get the new code -------------------------------------------
def test_after_restarted_every_new_connection_gets_the_new_code(project: Path, dev_server) -> None:
    app = write(project / "app.py", value_app(0))
    server = dev_server("app.py", **CACHES_ON)
    served(server, "00")
    url = server.url + "/"
    wrong: list[str] = []
    for n in range(1, 9):
        size = len(server.log())
        write(app, value_app(n))
        # Poll the log tightly, then open fresh connections the moment the line is there.
        wait_until(lambda s=size: " * Restarted in " in server.log()[s:], 15, "Restarted")
        answers: list[str] = []
        threads = [
            threading.Thread(target=lambda a=answers: a.extend(fresh_get(url) for _ in range(5)))
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        wrong += [f"reload {n}: {a!r}" for a in answers if a != f"{n:02d}"]
    assert wrong == [], server.log()


def test_a_save_that_fails_to_load_is_not_restarted(project: Path, dev_server) -> None:
    app = write(project / "app.py", value_app(0))
    server = dev_server("app.py", **CACHES_ON)
    served(server, "00")
    write(app, value_app(1) + "\ndef broken(:\n")
    log = server.wait_for_log(" * Serving the error page")
    assert " * App failed to load: SyntaxError" in log
    assert " * Restarted in " not in log
    assert "SyntaxError" in fresh_get(server.url + "/")
    write(app, value_app(2))
    server.wait_for_log(" * Restarted in ")
    assert fresh_get(server.url + "/") == "02"
    assert server.log().count(" * Serving the error page") == 1


# 3. The old process is drained on the control channel, not with the app's SIGTERM ----------------
OWN_SIGTERM = """
import signal
import sys
import time

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # "exit cleanly on SIGTERM", as apps do

@app.route("/slow")
def slow():
    open(os.environ["SLOW_MARK"], "a").close()  # the test knows the request is in our hands
    time.sleep(1.0)
    return VALUE
"""


def test_an_app_that_owns_sigterm_loses_no_request_across_saves(
    project: Path, dev_server, tmp_path: Path
) -> None:
    app = write(project / "app.py", value_app(0, OWN_SIGTERM))
    mark = tmp_path / "slow-started"
    server = dev_server("app.py", SLOW_MARK=str(mark), **CACHES_ON)
    served(server, "00")
    for n in range(1, 4):
        old = server.child()
        results: list[tuple[int, str]] = []

        def slow(results: list[tuple[int, str]] = results) -> None:
            try:
                response = requests.get(server.url + "/slow", timeout=15)
                results.append((response.status_code, response.text))
            except requests.RequestException as exc:
                results.append((0, repr(exc)))

        mark.unlink(missing_ok=True)
        in_flight = threading.Thread(target=slow)
        in_flight.start()
        wait_until(mark.exists, 10, "the request in the old process's hands")
        write(app, value_app(n, OWN_SIGTERM))
        served(server, f"{n:02d}")
        in_flight.join(timeout=20)
        assert results == [(200, f"{n - 1:02d}")], server.log()
        wait_until(lambda o=old: not pid_alive(o), 10, "the old process to drain and exit")
    # SIGTERM from the user still reaches the app's handler, as without geventdev.
    assert "Traceback" not in server.log()


def test_sigterm_from_the_user_still_stops_the_app_process_gracefully(
    project: Path, dev_server, tmp_path: Path
) -> None:
    """Without a handler of the app's, a SIGTERM from the user drains the app process: the
    request in flight is answered, then it exits."""
    write(project / "app.py", value_app(0, OWN_SIGTERM.replace("signal.signal", "# ")))
    mark = tmp_path / "slow-started"
    server = dev_server("app.py", SLOW_MARK=str(mark), **CACHES_ON)
    served(server, "00")
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(server.get, "/slow")
        wait_until(mark.exists, 10, "the request in the app's hands")
        os.kill(server.child(), signal.SIGTERM)
        assert (slow.result().status_code, slow.result().text) == (200, "00")
    server.wait_for_log(" * App exited with code 0; waiting for a change")


# 4. Processes the app forks ----------------------------------------------------------------------
FORKING = """
import multiprocessing
import time

def pause():
    time.sleep(20)  # patched: the gevent hub runs in the child

@app.route("/fork")
def fork():
    child = os.fork()
    if child == 0:
        try:
            pause()
        finally:
            os._exit(0)
    return str(child)

@app.route("/mp")
def mp():
    process = multiprocessing.get_context("fork").Process(target=pause, daemon=True)
    process.start()
    return str(process.pid)

@app.route("/fork-blocked")
def fork_blocked():
    read, _write = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(read, 1)  # blocked outside gevent, for good
        os._exit(0)
    return str(child)
"""


def test_forked_children_never_serve_nor_hold_the_port(project: Path, dev_server) -> None:
    write(project / "app.py", value_app(0, FORKING))
    server = dev_server("app.py", **CACHES_ON)
    served(server, "00")
    forked = [int(server.get(path).text) for path in ("/fork", "/mp", "/fork-blocked")]
    try:
        app_pid = str(server.child())
        answers = [fresh_get(server.url + "/pid") for _ in range(40)]
        assert answers == [app_pid] * 40
        port = server.port
        server.stop()
        assert port_is_free(port)  # at once: no forked child holds it
    finally:
        end_forked(forked)


def end_forked(pids: list[int]) -> None:
    """Kill the app's forked children a test left alive (they are not geventdev's to stop)."""
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_sigterm_ends_a_forked_child_and_never_runs_our_drain_there(
    project: Path, dev_server
) -> None:
    """multiprocessing's terminate() is SIGTERM: a forked child must die of it, whether its hub
    runs or it blocks outside gevent, and must not run our drain (which would close connections
    it shares with the app process)."""
    write(project / "app.py", value_app(0, FORKING))
    server = dev_server("app.py", **CACHES_ON)
    served(server, "00")
    with requests.Session() as keep_alive:  # one connection the forked children share
        assert keep_alive.get(server.url + "/pid", timeout=10).status_code == 200
        forked = [
            int(keep_alive.get(server.url + p, timeout=10).text) for p in ("/fork", "/fork-blocked")
        ]
        try:
            for pid in forked:
                os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not any(map(pid_alive, forked)), 5, "the forked children to end")
            app_pid = keep_alive.get(server.url + "/pid", timeout=10).text
            assert app_pid == str(server.child())  # the shared connection still works
        finally:
            end_forked(forked)


def test_a_forked_child_never_answers_on_a_keep_alive_connection_it_inherited(
    project: Path, dev_server
) -> None:
    """A connection idle at the fork is in both processes: only the app process may read the
    next request from it (the child's hub runs: it sleeps with gevent's patched sleep)."""
    write(project / "app.py", value_app(0, FORKING))
    server = dev_server("app.py", **CACHES_ON)
    served(server, "00")
    with requests.Session() as idle, requests.Session() as other:
        app_pid = idle.get(server.url + "/pid", timeout=10).text  # now idle, kept alive
        child = int(other.get(server.url + "/fork", timeout=10).text)
        try:
            answers = {idle.get(server.url + "/pid", timeout=10).text for _ in range(30)}
        finally:
            if pid_alive(child):
                os.kill(child, signal.SIGKILL)
    assert answers == {app_pid}


# 8. A burst is one restart, however long ---------------------------------------------------------
def test_a_long_burst_of_thousands_of_files_is_one_restart(project: Path, dev_server) -> None:
    write(project / "app.py", value_app(0))
    server = dev_server("app.py", **CACHES_ON)
    served(server, "00")
    generated = project / "generated"
    generated.mkdir()
    count, ends = 0, time.monotonic() + 1.6  # longer than any cap, with no quiet gap in it
    while time.monotonic() < ends or count < 2000:
        for _ in range(20):
            (generated / f"m{count}.py").write_text(f"X = {count}\n")
            count += 1
        time.sleep(0.005)  # a generator's pace: one long burst, never a quiet spell
    server.wait_for_log(" * Restarted in ")
    assert stays(lambda: server.log().count(" * Detected change in ") == 1, 1.5), server.log()
    assert "more, restarting" in server.log()


# 9. The app runs with the interpreter flags the user gave ----------------------------------------
REPORT = 'json.dumps({"dev_mode": sys.flags.dev_mode, "warnoptions": sys.warnoptions})'
FLAGS = f"""
import sys, json

@app.route("/flags")
def flags():
    return {REPORT}
"""


def test_python_x_dev_and_w_reach_the_app_process(project: Path, dev_server) -> None:
    app = write(project / "app.py", value_app(0, FLAGS))
    python = [sys.executable, "-X", "dev", "-W", "error::DeprecationWarning"]
    server = dev_server("app.py", cmd=[*python, "-m", "geventdev"], **CACHES_ON)
    served(server, "00")
    # What the same interpreter, started the same way, reports (dev mode adds "default").
    script = f"import json, sys; print({REPORT})"
    expected = json.loads(subprocess.check_output([*python, "-c", script], text=True))
    assert expected["dev_mode"] and "error::DeprecationWarning" in expected["warnoptions"]
    assert json.loads(server.get("/flags").text) == expected
    write(app, value_app(1, FLAGS))  # the standby that takes over was started the same way
    served(server, "01")
    assert json.loads(server.get("/flags").text) == expected


@pytest.mark.parametrize(
    ("argv", "options"),
    [
        (["python", "-m", "geventdev", "-X", "dev"], []),
        (["/venv/bin/geventdev", "app.py"], []),
        (["python", "-X", "dev", "-Werror", "-m", "geventdev"], ["-X", "dev", "-W", "error"]),
        (
            ["python", "-OO", "-bu", "-Xutf8", "script.py", "-X"],
            ["-O", "-O", "-b", "-u", "-X", "utf8"],
        ),
        (["python", "-I", "-W", "ignore", "-c", "run()"], ["-I", "-W", "ignore"]),
        (
            ["python", "--check-hash-based-pycs", "always", "-i", "-x", "s.py"],
            ["--check-hash-based-pycs", "always"],
        ),
        (["python", "-sE", "-"], ["-s", "-E"]),
    ],
)
def test_interpreter_options_are_the_ones_before_the_program(
    argv: list[str], options: list[str]
) -> None:
    assert interpreter_options(argv) == options


def test_a_pyc_is_racy_until_its_sources_second_has_passed_on_every_clock() -> None:
    assert is_racy(100.9, 100.95)  # saved this very second
    assert is_racy(100.1, 101.5)  # a coarse or skewed clock could still stamp 100.x
    assert not is_racy(100.9, 102.01)
    assert not is_racy(100.0, 101.5, margin=0.0)
