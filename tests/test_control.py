"""The server stays in the user's control (issue 12): signals at bad moments, terminals and job
control, closed streams, floods, and the debugger's PIN across reloads (issue 16, item 11).

Terminal cases run the server on a real pseudo-terminal as its controlling terminal, so Ctrl+C
and Ctrl+Z are the kernel's SIGINT/SIGTSTP to the foreground process group; job control is a
real interactive bash.
"""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from conftest import (
    HELLO_APP,
    children_of,
    geventdev_env,
    pid_alive,
    stays,
    wait_until,
    write,
)

pytestmark = pytest.mark.e2e

BOOM_APP = (
    HELLO_APP
    + """
@app.route("/boom")
def boom():
    raise RuntimeError("boom")
"""
)


class Terminal:
    """A pseudo-terminal whose slave is the controlling terminal of a new session running
    ``argv``: bytes written to the master are typed keys (``\\x03`` is Ctrl+C for the
    foreground group), and everything the session prints is collected from the master."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        self.output = b""
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,  # setsid(): then the slave becomes its controlling terminal
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: every process holding the slave is gone
                return
            if not chunk:
                return
            with self.lock:
                self.output += chunk

    def text(self) -> str:
        with self.lock:
            return self.output.decode(errors="replace")

    def wait_for(self, text: str, count: int = 1, timeout: float = 15.0) -> str:
        return wait_until(
            lambda: self.text().count(text) >= count and self.text(),
            timeout,
            f"{text!r} x{count} on the terminal:\n{self.text()}",
        )

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close(self) -> None:
        """End the session (by its process group) if a test failed halfway, then the pty."""
        if self.proc.poll() is None:
            for signum in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.killpg(self.proc.pid, signum)
                except ProcessLookupError:
                    pass
            self.proc.wait(timeout=5)
        self.reader.join(timeout=5)
        os.close(self.master)


def server_url(text: str) -> str:
    match = re.search(r" \* Running on (http://\S+)", text)
    assert match, text
    return match.group(1)


def user_env(**extra: str) -> dict[str, str]:
    """As users run it: bytecode caches on."""
    env = geventdev_env(**extra)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


# 1. Ctrl+C right after a restart ------------------------------------------------------------
def test_ctrl_c_right_after_a_restart_always_stops_everything(project: Path) -> None:
    """The monitor spawns the next warm standby just after " * Restarted in": a Ctrl+C landing
    then used to be ignored by the monitor (SIGINT set to SIG_IGN around the spawn), which
    then answered 503 and kept running (2 of 10 tries)."""
    write(project / "app.py", HELLO_APP)
    tries, slow = 8, []
    for attempt in range(tries):
        term = Terminal(
            [sys.executable, "-m", "geventdev", "app.py", "--port", "0"], project, user_env()
        )
        try:
            url = server_url(term.wait_for(" * Running on http"))
            assert requests.get(url, timeout=5).status_code == 200
            write(project / "app.py", HELLO_APP.replace("hello v1", f"hello {attempt}"))
            term.wait_for(" * Restarted in")
            term.type(b"\x03")  # at once: the standby's spawn follows that line
            pressed = time.monotonic()
            try:
                code = term.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                pytest.fail(f"try {attempt}: still running 3 s after Ctrl+C:\n{term.text()}")
            slow.append(time.monotonic() - pressed)
            assert code == 0, term.text()
            assert not children_of(term.proc.pid)
        finally:
            term.close()
    assert max(slow) < 3.0, slow


# 2. An exception in the monitor under geventdev.run() ----------------------------------------
def test_an_exception_in_the_monitor_under_run_ends_its_app_processes(
    project: Path, dev_server
) -> None:
    write(project / "app.py", HELLO_APP)
    write(
        project / "script.py",
        """
        import signal, time
        import geventdev

        class Boom(Exception):
            pass

        def boom(signum, frame):
            raise Boom()

        signal.signal(signal.SIGUSR1, boom)  # e.g. an alarm or a watchdog of the user's
        try:
            geventdev.run("app.py", port=0, standby=True)
        except Boom:
            print("caught Boom", flush=True)
        time.sleep(60)  # the script goes on: nothing of the server may still serve
        """,
    )
    server = dev_server(cmd=[sys.executable, "script.py"])
    assert server.get("/").text == "hello v1"
    kids = server.children()
    assert kids
    os.kill(server.pid, signal.SIGUSR1)
    server.wait_for_log("caught Boom")
    wait_until(lambda: not any(pid_alive(p) for p in kids), 5, "the app processes to end")
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url, timeout=5)


# 3. Ctrl+Z, then bg ---------------------------------------------------------------------------
class Shell(Terminal):
    """An interactive bash with job control on the pty, driven by typed lines."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        env = {**env, "PS1": "$ ", "TERM": "dumb", "HISTFILE": "/dev/null"}
        super().__init__(["bash", "--norc", "--noprofile", "-i"], cwd, env)

    def run(self, line: str) -> None:
        self.type(line.encode() + b"\n")


def process_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return ""


def test_ctrl_z_then_bg_keeps_serving_and_fg_gets_the_terminal_back(project: Path) -> None:
    """Ctrl+Z stops the job; `bg` must leave it serving in the background, whatever is typed
    in the shell meanwhile (the app process used to read it: SIGTTIN stopped the whole server),
    and after `fg` Ctrl+C stops it with status 0."""
    write(project / "app.py", HELLO_APP)
    shell = Shell(project, user_env())
    try:
        shell.wait_for("$ ")
        shell.run(f"{sys.executable} -m geventdev app.py --port 0")
        url = server_url(shell.wait_for(" * Running on http"))
        assert requests.get(url, timeout=5).text == "hello v1"
        monitor = int(requests.get(url + "/pid", timeout=5).text)  # the app; its parent:
        monitor = int(Path(f"/proc/{monitor}/stat").read_text().rsplit(")", 1)[1].split()[1])
        shell.type(b"\x1a")  # Ctrl+Z
        shell.wait_for("Stopped")
        wait_until(lambda: process_state(monitor) == "T", 5, "the job to be stopped")
        shell.run("bg")
        wait_until(lambda: process_state(monitor) in "SR", 5, "the job to run again")
        for n in range(3):  # the shell reads these lines; the server keeps serving
            shell.run(f"echo typed-{n}")
            shell.wait_for(f"\ntyped-{n}")
            assert requests.get(url, timeout=5).text == "hello v1"
        assert stays(lambda: process_state(monitor) in "SR", 1.0), shell.text()
        assert shell.text().count("Stopped") == 1, shell.text()
        shell.run("fg")
        shell.wait_for("geventdev app.py", count=2)
        assert requests.get(url, timeout=5).text == "hello v1"
        shell.type(b"\x03")
        wait_until(lambda: not pid_alive(monitor), 3, "Ctrl+C to stop the server")
        shell.run("echo status=$?")
        shell.wait_for("status=0")
        shell.run("exit")
        shell.proc.wait(timeout=5)
    finally:
        shell.close()


# 4. The PIN lockout across reloads ------------------------------------------------------------
def debugger_secret(conn: http.client.HTTPConnection) -> str:
    conn.request("GET", "/boom")
    page = conn.getresponse().read().decode()
    match = re.search(r'SECRET = "(\w+)"', page)
    assert match, page[:300]
    return match.group(1)


def guess(conn: http.client.HTTPConnection, secret: str) -> str:
    """One wrong PIN on this connection: "evaluated", "exhausted" or "refused"."""
    try:
        conn.request("GET", f"/?__debugger__=yes&cmd=pinauth&pin=000-000-000&s={secret}")
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException):
        return "refused"  # the connection was closed (a drained process)
    if response.status != 200 or response.getheader("Content-Type") != "application/json":
        return "refused"
    answer = json.loads(body)
    assert answer["auth"] is False
    return "exhausted" if answer["exhausted"] else "evaluated"


def test_wrong_pins_spread_over_reloads_are_evaluated_ten_times_at_most(
    project: Path, dev_server
) -> None:
    """Each round: 3 guesses at the serving process, a reload, 2 more at the old (draining)
    process on its open keep-alive connections and one at the new process. The monitor used to
    keep the *last* count a process reported, so the old process's guesses were forgotten."""
    write(project / "app.py", BOOM_APP)
    server = dev_server("app.py")
    server.get("/")
    results: list[str] = []
    for n in range(3):
        conns = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=30) for _ in range(5)]
        try:
            secret = debugger_secret(conns[0])
            for conn in conns[1:]:
                debugger_secret(conn)  # open and keep alive, on this process
            with ThreadPoolExecutor(3) as pool:
                results += pool.map(guess, conns[:3], [secret] * 3)
            write(project / "app.py", BOOM_APP.replace("hello v1", f"hello {n}"))
            server.wait_for_log(" * Restarted in ", count=n + 1)
            with ThreadPoolExecutor(2) as pool:  # the old process, now draining
                results += pool.map(guess, conns[3:], [secret] * 2)
            fresh = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            results.append(guess(fresh, debugger_secret(fresh)))
            fresh.close()
        finally:
            for conn in conns:
                conn.close()
    assert results.count("evaluated") <= 10, results
    assert results[-1] == "exhausted", results


# 5. The 503 responder -------------------------------------------------------------------------
def threads_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"Threads:\s+(\d+)", status).group(1))  # type: ignore[union-attr]


@pytest.fixture
def dead_app(project: Path, dev_server):
    """A server whose app process was killed: the monitor answers 503 itself."""
    write(project / "app.py", HELLO_APP)
    server = dev_server("app.py")
    server.get("/")
    os.kill(server.child(), signal.SIGKILL)
    server.wait_for_log("waiting for a change")
    wait_until(lambda: server.get("/").status_code == 503, 5, "the monitor's 503")
    return server


def test_the_503_responder_stays_one_thread_under_many_slow_clients(dead_app) -> None:
    before = threads_of(dead_app.pid)
    slow = []
    try:
        for _ in range(150):  # connect and say nothing (slowloris)
            slow.append(socket.create_connection(("127.0.0.1", dead_app.port), timeout=10))
        peak = max(threads_of(dead_app.pid) for _ in range(20) if not time.sleep(0.05))
        assert peak <= before + 1, (before, peak)
        # Each gets its deadline (2 s from being accepted), then is closed: none hangs.
        started = time.monotonic()
        for sock in slow:
            assert sock.recv(100) == b""
        assert time.monotonic() - started < 20
    finally:
        for sock in slow:
            sock.close()


def test_the_503_responder_answers_a_request_with_bare_lf_lines(dead_app) -> None:
    with socket.create_connection(("127.0.0.1", dead_app.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\nHost: 127.0.0.1\n\n")
        sock.settimeout(1.0)  # answered at once, not after the head deadline
        assert sock.recv(100).startswith(b"HTTP/1.1 503 ")


# 6. stdin closed ------------------------------------------------------------------------------
STDIN_APP = (
    HELLO_APP
    + """
@app.route("/stdin")
def stdin():
    try:
        line = input()
    except EOFError:
        line = "EOF"
    return f"{os.readlink('/proc/self/fd/0')} {line}"
"""
)


def test_with_stdin_closed_the_app_reads_eof_not_the_listener(project: Path, dev_server) -> None:
    write(project / "app.py", STDIN_APP)
    server = dev_server(
        "app.py", cmd=["sh", "-c", 'exec "$0" "$@" <&-', sys.executable, "-m", "geventdev"]
    )
    assert server.get("/").text == "hello v1"
    assert server.get("/stdin").text == "/dev/null EOF"
    assert os.readlink(f"/proc/{server.pid}/fd/0") == "/dev/null"


# 7. Output to a pipe that closes --------------------------------------------------------------
PRINTING_APP = HELLO_APP.replace(
    '    return "hello v1"', '    print("hello printed")\n    return "hello v1"'
)


def test_output_to_a_closed_pipe_is_dropped_and_the_server_keeps_serving(project: Path) -> None:
    """`geventdev app.py 2>&1 | head -3`: once the reader is gone, every write fails."""
    write(project / "app.py", PRINTING_APP)
    proc = subprocess.Popen(
        [sys.executable, "-m", "geventdev", "app.py", "--port", "0"],
        cwd=project,
        env=user_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        head = b""
        while b" * Running on http" not in head:  # `head` reads its lines, then exits
            assert select.select([proc.stdout], [], [], 15)[0], head
            head += os.read(proc.stdout.fileno(), 4096)
        url = server_url(head.decode())
        proc.stdout.close()
        for _ in range(5):  # the app process's access log and print() hit the closed pipe
            assert requests.get(url, timeout=5).text == "hello v1"
        write(project / "app.py", PRINTING_APP.replace("hello v1", "hello v2"))  # monitor logs
        wait_until(
            lambda: requests.get(url, timeout=5).text == "hello v2", 15, "the new code to serve"
        )
        for _ in range(5):
            assert requests.get(url, timeout=5).text == "hello v2"
        assert proc.poll() is None
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


# 8. Live-reload streams -----------------------------------------------------------------------
def open_stream(port: int) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        b"GET /__geventdev__/livereload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Accept: text/event-stream\r\n\r\n"
    )
    data = b""
    while b"\r\n\r\n" not in data or (b" 200 " in data[:16] and b"event: hello" not in data):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return sock, data


def test_live_reload_streams_are_capped_per_process(project: Path, dev_server) -> None:
    from geventdev.livereload.middleware import MAX_STREAMS

    write(project / "app.py", HELLO_APP)
    server = dev_server("app.py")
    server.get("/")
    streams = []
    try:
        for _ in range(MAX_STREAMS):
            sock, head = open_stream(server.port)
            streams.append(sock)
            assert head.startswith(b"HTTP/1.1 200 ") and b"event: hello" in head, head
        started = time.monotonic()
        sock, head = open_stream(server.port)  # one too many: a quick 503 the script retries
        sock.close()
        assert head.startswith(b"HTTP/1.1 503 "), head[:200]
        assert time.monotonic() - started < 1.0
        assert server.get("/", timeout=5).text == "hello v1"
    finally:
        for sock in streams:
            sock.close()


@pytest.mark.parametrize("remote", ["10.1.2.3", "192.168.0.7", "2001:db8::1"])
def test_live_reload_answers_loopback_clients_only(remote: str) -> None:
    """Like the debugger console: the events name the app's PID and the files being edited."""
    from werkzeug.test import Client

    from geventdev.livereload.middleware import EVENTS, SCRIPT, LiveReload

    def page(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"<html><body>hi</body></html>"]

    browser = {"Accept": "text/html", "Sec-Fetch-Dest": "document"}
    for allow in (False, True):
        client = Client(LiveReload(page, allow_remote=allow))
        for path in (EVENTS, SCRIPT):
            response = client.get(path, environ_base={"REMOTE_ADDR": remote}, buffered=False)
            assert response.status_code == (200 if allow else 403), (allow, path)
            assert (b"--debugger-remote" in next(response.response)) is not allow
            response.close()
        shown = client.get("/", environ_base={"REMOTE_ADDR": remote}, headers=browser)
        assert (b"data-generation" in shown.data) is allow
    local = Client(LiveReload(page)).get(
        "/", environ_base={"REMOTE_ADDR": "127.0.0.1"}, headers=browser
    )
    assert b"data-generation" in local.data


# 9. A child that dies with unread control messages --------------------------------------------
BLOCKING_APP = (
    HELLO_APP
    + """
@app.route("/block-then-die")
def block_then_die():
    from gevent import monkey
    real_sleep = monkey.get_original("time", "sleep")
    open("blocked", "w").close()
    real_sleep(3)  # the hub is blocked: the monitor's messages stay unread
    os._exit(3)
"""
)


def test_a_child_dying_with_unread_messages_prints_no_traceback(project: Path, dev_server) -> None:
    write(project / "app.py", BLOCKING_APP)
    write(project / "templates" / "page.html", "v0")
    server = dev_server("app.py", GEVENT_MONITOR_THREAD_ENABLE="0")
    server.get("/")
    with ThreadPoolExecutor(1) as pool:
        dying = pool.submit(lambda: server.get("/block-then-die", timeout=15))
        wait_until(lambda: (project / "blocked").exists(), 10, "the route to block")
        for n in range(5):  # each is a `changed` message to the blocked app process
            write(project / "templates" / "page.html", f"v{n + 1}")
            time.sleep(0.1)  # pacing edits as a user saves: each its own debounced batch
        with pytest.raises(requests.ConnectionError):
            dying.result()
    server.wait_for_log(" * App exited with code 3; waiting for a change")
    assert stays(lambda: "Traceback" not in server.log(), 1.0), server.log()
    assert "ConnectionResetError" not in server.log()


# 10. The harness: a server that does not stop by itself fails the test ------------------------
def test_the_harness_fails_a_test_whose_server_needs_a_kill(project: Path, tmp_path: Path) -> None:
    from conftest import DevServer

    write(project / "app.py", HELLO_APP)
    server = DevServer(
        project,
        tmp_path / "hung.log",
        [sys.executable, "-m", "geventdev", "app.py", "--port", "0"],
        geventdev_env(),
    )
    server.get("/")
    os.kill(server.pid, signal.SIGSTOP)  # a hung monitor: Ctrl+C cannot stop it
    with pytest.raises(AssertionError, match="did not exit within 1.0 s"):
        server.stop(timeout=1.0)
    assert server.proc.poll() is not None  # still cleaned up
    assert not any(pid_alive(pid) for pid in children_of(server.pid))


# 11 (issue 16). One debugger PIN for the whole server run --------------------------------------
def test_the_debugger_pin_and_cookie_stay_the_same_on_error_pages(
    project: Path, dev_server
) -> None:
    write(project / "app.py", "raise ImportError('broken at start')\n")
    server = dev_server("app.py")
    server.wait_for_log(" * App failed to load")
    write(project / "app.py", BOOM_APP)
    server.wait_for_text("/", "hello v1")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    pins = re.findall(r"Debugger PIN: ([\d-]+)", server.wait_for_log("Debugger PIN", count=2))
    assert len(set(pins)) == 1, pins  # the error page's process and the app's: one PIN
    secret = debugger_secret(conn)
    conn.request("GET", f"/?__debugger__=yes&cmd=pinauth&pin={pins[0]}&s={secret}")
    response = conn.getresponse()
    assert json.loads(response.read()) == {"auth": True, "exhausted": False}
    cookie = response.getheader("Set-Cookie", "").split(";", 1)[0]
    conn.close()
    write(project / "app.py", BOOM_APP + "\nraise ImportError('broken again')\n")
    server.wait_for_log(" * App failed to load", count=2)
    wait_until(lambda: "broken again" in server.get("/").text, 10, "the error page")
    page = server.get("/").text
    secret = re.search(r'SECRET = "(\w+)"', page).group(1)  # type: ignore[union-attr]
    trusted = requests.get(  # the cookie alone authenticates: no PIN asked again
        f"{server.url}/?__debugger__=yes&cmd=pinauth&pin=1&s={secret}",
        headers={"Cookie": cookie},
        timeout=10,
    )
    assert trusted.json() == {"auth": True, "exhausted": False}
    pins = re.findall(r"Debugger PIN: ([\d-]+)", server.log())
    assert len(pins) >= 3 and len(set(pins)) == 1, pins


def test_werkzeug_debug_pin_set_by_the_user_is_the_pin(project: Path, dev_server) -> None:
    write(project / "app.py", "raise ImportError('broken at start')\n")
    server = dev_server("app.py", WERKZEUG_DEBUG_PIN="123-456-789")
    server.wait_for_log(" * App failed to load")
    write(project / "app.py", BOOM_APP)
    server.wait_for_text("/", "hello v1")
    log = server.wait_for_log("Debugger PIN", count=2)
    assert set(re.findall(r"Debugger PIN: ([\d-]+)", log)) == {"123-456-789"}


def test_the_503_responder_leaves_connections_to_a_starting_app_process() -> None:
    """Once a new app process is starting (``answer(None)``), a connection that arrives while
    the responder is still in its select() must wait in the backlog for that process: never be
    accepted and closed (a browser then shows an empty response that does not refresh)."""
    from geventdev.monitor.responder import FallbackResponder

    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        port = listener.getsockname()[1]
        responder = FallbackResponder(listener)
        for _ in range(20):
            responder.answer("the app exited")
            with socket.create_connection(("127.0.0.1", port), timeout=5) as probe:
                probe.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert probe.recv(12) == b"HTTP/1.1 503"
            responder.answer(None)  # a save: the new app process will accept from now on
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                ready = select.select([listener], [], [], 5)[0]
                assert ready, "the connection is not in the backlog"
                conn, _ = listener.accept()  # what the new app process does
                with conn:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    assert client.recv(64).endswith(b"ok")
