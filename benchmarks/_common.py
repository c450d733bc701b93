"""Shared helpers for the benchmarks: processes, readiness, HTTP probes, /proc sampling, tables.

Stdlib only, never monkey-patched. Every server is started in its own session (so its pid is also
its process-group id) and stopped by signalling that group: SIGINT, then SIGKILL, then a sweep of
whatever is left in the group. Every wait has a deadline. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TypeVar

from geventdev.testing.process import group_members as process_group_members

HOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent
PY = sys.executable
T = TypeVar("T")
CLK_TCK = os.sysconf("SC_CLK_TCK")
RUNNING = re.compile(r" \* Running on http://127\.0\.0\.1:(\d+)")
#: geventdev's own lines after a save: "the new code serves now", and how long it took.
PATCHED = re.compile(r" \* Patched .* in (\d+) ms")
RESTARTED = re.compile(r" \* Restarted in (\d+) ms")
NEVER = float("inf")  # a save whose new code was not served within the limit

#: An app whose only page says ``{token}``: edits swap the token (reload and idle runs).
TOKEN_APP = """\
from flask import Flask

app = Flask(__name__)


@app.route("/")
def index():
    return "{token}"
"""
HELLO_APP = """\
from flask import Flask

app = Flask(__name__)


@app.route("/")
def index():
    return "Hello, World!"
"""

SLOW_APP = """\
import time

from flask import Flask

app = Flask(__name__)


@app.route("/slow")
def slow():
    time.sleep(1)  # cooperative under gevent's patch_all, a blocked thread under flask run
    return "slow done"


@app.route("/fast")
def fast():
    return "fast"
"""


# Processes -------------------------------------------------------------------------------------
def free_port() -> int:
    """A port that was free a moment ago (geventdev itself gets ``--port 0``, race-free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def base_env(**extra: str) -> dict[str, str]:
    """The benchmark's environment for servers: no colours, no stray FLASK_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "WERKZEUG_"))}
    env.update(NO_COLOR="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


class Proc:
    """A server command in its own session; output to ``log_path`` (or /dev/null)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        cwd: str | os.PathLike[str],
        env: dict[str, str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        port: int | None = None,
        output: int | None = None,
    ) -> None:
        """``output``: an fd for stdout and stderr (e.g. a pty) instead of ``log_path``, which is
        then only read (the caller copies the output there)."""
        self.name, self.argv, self.port = name, list(argv), port
        self.log_path = Path(log_path) if log_path is not None else None
        self.started = time.monotonic()
        with open(os.devnull, "wb") as devnull:
            out = open(self.log_path, "wb") if self.log_path and output is None else devnull
            with out:
                self.proc = subprocess.Popen(
                    self.argv,
                    cwd=cwd,
                    env=env if env is not None else base_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=output if output is not None else out,
                    stderr=output if output is not None else subprocess.STDOUT,
                    start_new_session=True,
                )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_log(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            match = pattern.search(self.log())
            if match:
                return match
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: no {pattern.pattern!r} in {timeout} s")
            time.sleep(0.02)

    def group(self) -> list[int]:
        return group_members(self.pid)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGINT to the group, then SIGKILL; then sweep the group until it is empty."""
        signal_group(self.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            signal_group(self.pid, signal.SIGKILL)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + timeout
        while group_members(self.pid) and time.monotonic() < deadline:
            signal_group(self.pid, signal.SIGKILL)
            time.sleep(0.05)
        return self.proc.returncode


def signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def group_members(pgid: int) -> list[int]:
    """Live pids of process group ``pgid``, the group leader first (geventdev's own sweep)."""
    return sorted(process_group_members(pgid), key=lambda pid: (pid != pgid, pid))


def start_geventdev(
    target: str, cwd: Path, log_path: Path, *extra: str, env: dict[str, str] | None = None
) -> Proc:
    """``python -m geventdev TARGET --port 0 ...``; the port is read from its banner."""
    argv = [PY, "-m", "geventdev", target, "--port", "0", *extra]
    proc = Proc("geventdev", argv, cwd, env=env, log_path=log_path)
    proc.port = int(proc.wait_log(RUNNING, 20).group(1))
    return proc


# HTTP ------------------------------------------------------------------------------------------
def http_get(
    port: int, path: str = "/", timeout: float = 5.0, close: bool = True
) -> tuple[int, bytes]:
    """One GET on a fresh connection to 127.0.0.1; raises OSError/HTTPException on failure."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"} if close else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def served(port: int, path: str, token: str, limit: float) -> float:
    """Seconds until ``path`` answers 200 with ``token`` in it (a GET every 10 ms on a fresh
    connection), or ``NEVER`` after ``limit`` seconds: how long a save took to be served."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        try:
            status, body = http_get(port, path, timeout=5)
            if status == 200 and token.encode() in body:
                return time.monotonic() - t0
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.01)
    return NEVER


def own_log(log: Callable[[], str], before: str, timeout: float = 3.0) -> tuple[float, bool]:
    """geventdev's own time for the save (ms) from the log written after ``before``, and
    whether it was patched in place; (nan, False) if no such line comes within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = log()[len(before) :]
        found = PATCHED.search(new) or RESTARTED.search(new)
        if found:
            return float(found.group(1)), found.re is PATCHED
        time.sleep(0.02)
    return float("nan"), False


def wait_http(
    port: int,
    timeout: float,
    path: str = "/",
    proc: Proc | None = None,
    accept: Callable[[int, bytes], bool] = lambda status, body: status == 200,
) -> float:
    """Poll GET until ``accept(status, body)``; return the seconds waited. Raises on deadline."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited ({proc.proc.returncode}):\n{proc.tail()}")
        try:
            status, body = http_get(port, path, timeout=max(0.1, deadline - time.monotonic()))
            if accept(status, body):
                return time.monotonic() - start
        except (OSError, http.client.HTTPException):
            pass
        if time.monotonic() > deadline:
            name = proc.name if proc else f"port {port}"
            log = f":\n{proc.tail()}" if proc else ""
            raise RuntimeError(f"{name} did not answer {path} within {timeout} s{log}")
        time.sleep(0.02)


# /proc sampling --------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_mb(pid: int, file: str = "status", key: str = "VmRSS:") -> float:
    """One "<key> N kB" line of ``/proc/PID/<file>``, in MB (0 for a process that is gone)."""
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def rss_mb(pid: int) -> float:
    return proc_mb(pid)


class CpuMeter:
    """CPU seconds used by a set of pids between ``start()`` and ``stop()`` (children included
    as long as they are alive at both samples; pass the group's pids)."""

    def __init__(self, pids: Iterable[int]) -> None:
        self.pids = list(pids)
        self.before = {pid: cpu_seconds(pid) for pid in self.pids}
        self.t0 = time.monotonic()

    def stop(self) -> tuple[dict[int, float], float]:
        after = {pid: cpu_seconds(pid) for pid in self.pids}
        return {pid: after[pid] - self.before[pid] for pid in self.pids}, time.monotonic() - self.t0


class MachineMeter:
    """The machine over an interval, from /proc/stat: steal % (of all cores) and the load of
    everything else ("others", in cores): busy time minus the server's pids minus this process
    and its waited-for children (wrk). Other engineers' test runs show up there."""

    def __init__(self, server_pids: Iterable[int] = ()) -> None:
        self.server = CpuMeter(server_pids)
        self.before = self._read()
        self.ours = self._ours()
        self.t0 = time.monotonic()

    @staticmethod
    def _read() -> list[int]:
        return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]

    @staticmethod
    def _ours() -> float:
        me, kids = (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    def stop(self) -> tuple[float, float]:
        """Return (steal %, others in cores)."""
        after = self._read()
        delta = [a - b for a, b in zip(after, self.before, strict=False)]
        total = sum(delta[:8]) or 1  # user nice system idle iowait irq softirq steal
        busy = (total - delta[3] - delta[4] - delta[7]) / CLK_TCK
        server = sum(self.server.stop()[0].values())
        seconds = max(1e-6, time.monotonic() - self.t0)
        others = (busy - server - (self._ours() - self.ours)) / seconds
        return 100.0 * delta[7] / total, max(0.0, others)


def listen_overflows() -> tuple[int, int]:
    """(ListenOverflows, ListenDrops) from /proc/net/netstat: accept-queue overflows."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(table.get("ListenOverflows", 0)), int(table.get("ListenDrops", 0))
    return 0, 0


def raise_nofile(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``wanted`` (capped by the hard limit); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


# Statistics and output -------------------------------------------------------------------------
def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 20 samples is the maximum)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * pct // 100)))
    return ordered[int(rank) - 1]


def ratio(a: float, b: float) -> float:
    return a / b if b and b == b and a == a else float("nan")


def fmt(value: object, digits: int = 2) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        if value == float("inf"):
            return "never"
        return f"{value:.{digits}f}"
    return str(value)


def ms(seconds: float) -> str:
    """Seconds shown as whole milliseconds ("never" for inf, "-" for nan)."""
    if seconds != seconds:
        return "-"
    return "never" if seconds == float("inf") else f"{seconds * 1000:.0f}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table (right-aligned numbers), printable and pasteable into the README."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    numeric = [all(_numeric(r[i]) for r in cells) and bool(cells) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        padded = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    dashes = [
        "-" * (w + 1) + ":" if num else "-" * (w + 2)
        for w, num in zip(widths, numeric, strict=True)
    ]
    rule = "|" + "|".join(dashes) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in cells)])


def _numeric(text: str) -> bool:
    try:
        float(text.rstrip("x%"))
    except ValueError:
        return text in ("-", "never")
    return True


def versions() -> str:
    parts = []
    for dist in ("geventdev", "gevent", "greenlet", "Flask", "Werkzeug", "watchdog", "gunicorn"):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            parts.append(f"{dist} (not installed)")
    wrk = shutil.which("wrk")
    if wrk:
        out = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10)
        parts.append("wrk " + (out.stdout + out.stderr).split()[1])
    else:
        parts.append("wrk (not installed: Python client)")
    return f"Python {platform.python_version()}, " + ", ".join(parts)


def checkout() -> str:
    """The commit of the checkout geventdev is imported from, and whether it has local changes."""
    try:
        import geventdev

        root = Path(geventdev.__file__).resolve().parent.parent
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return f"{root} @ {out.stdout.strip() or '?'}"
    except (ImportError, OSError, subprocess.SubprocessError):
        return "?"


def header(title: str) -> None:
    """What a result needs to be read later: command, date, versions, machine load."""
    print(f"# {title}")
    print(f"command: {' '.join([Path(PY).name, *sys.argv])}")
    print(f"date: {time.strftime('%a %d %b %Y %H:%M:%S %Z')}")
    print(f"versions: {versions()}")
    print(f"geventdev checkout: {checkout()}")
    print(f"machine: {os.cpu_count()} cores, loadavg {Path('/proc/loadavg').read_text().strip()}")
    sys.stdout.flush()


def shuffled(items: Sequence[str], seed: int) -> list[str]:
    out = list(items)
    random.Random(seed).shuffle(out)
    return out


def rounds(
    servers: Sequence[str],
    count: int,
    measure: Callable[[str, int], T],
    line: Callable[[T], str],
    width: int = 16,
) -> dict[str, list[T]]:
    """Measure every server ``count`` times, in a new order each round (no server always runs
    right after the same peer), printing one line per measurement as it comes."""
    results: dict[str, list[T]] = {name: [] for name in servers}
    for rnd in range(count):
        for name in shuffled(servers, seed=rnd):
            result = measure(name, rnd)
            results[name].append(result)
            print(f"  round {rnd} {name:{width}} {line(result)}", flush=True)
    return results


@dataclass
class Workdir:
    """A temporary directory for apps and logs, removed at exit unless ``keep``."""

    keep: bool = False
    path: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="geventdev-bench-")))

    def __enter__(self) -> Workdir:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.keep:
            print(f"(kept {self.path})")
        else:
            shutil.rmtree(self.path, ignore_errors=True)

    def app_dir(self, name: str, source: str, filename: str = "app.py") -> Path:
        directory = self.path / name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / filename).write_text(source)
        return directory

    def log(self, name: str) -> Path:
        logs = self.path / "logs"
        logs.mkdir(exist_ok=True)
        return logs / f"{name}.log"


# Load clients ----------------------------------------------------------------------------------
@dataclass
class Load:
    """One bounded keep-alive load run: throughput, latency percentiles, errors."""

    client: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    non2xx: int
    seconds: float


UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def wrk_path() -> str | None:
    return shutil.which("wrk")


def run_wrk(port: int, conns: int, seconds: float, path: str = "/", threads: int = 1) -> Load:
    """``wrk -t1 -cN -dS --latency --timeout 10s``: the timeout is raised from wrk's 2 s so that
    slow responses land in the percentiles instead of being dropped as timeouts."""
    argv = [
        wrk_path() or "wrk",
        f"-t{threads}",
        f"-c{conns}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "10s",
        f"http://{HOST}:{port}{path}",
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    return parse_wrk(out)


def parse_wrk(out: str) -> Load:
    def latency(pct: str) -> float:
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        return float(match.group(1)) * UNITS[match.group(2)] if match else float("nan")

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not rps or not total:
        raise RuntimeError(f"could not parse wrk output:\n{out}")
    return Load(
        client="wrk",
        rps=float(rps.group(1)),
        p50_ms=latency("50"),
        p99_ms=latency("99"),
        requests=int(total.group(1)),
        errors=sum(int(g) for g in errors.groups()) if errors else 0,
        non2xx=int(non2xx.group(1)) if non2xx else 0,
        seconds=float(total.group(2)) * UNITS[total.group(3)] / 1000,
    )


def run_python_load(port: int, conns: int, seconds: float, path: str = "/") -> Load:
    """The fallback when wrk is missing: ``conns`` threads, each one keep-alive
    ``http.client`` connection in a request loop until the deadline. The GIL makes this client
    the bottleneck well below what the gevent servers can do: compare only runs made with it."""
    latencies: list[list[float]] = [[] for _ in range(conns)]
    errors = [0] * conns
    non2xx = [0] * conns
    start = time.monotonic()
    deadline = start + seconds

    def worker(i: int) -> None:
        conn: http.client.HTTPConnection | None = None
        while time.monotonic() < deadline:
            if conn is None:
                conn = http.client.HTTPConnection(HOST, port, timeout=10)
            t0 = time.perf_counter()
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                errors[i] += 1
                conn.close()
                conn = None
                continue
            latencies[i].append((time.perf_counter() - t0) * 1000)
            if not 200 <= response.status < 400:
                non2xx[i] += 1
            if response.will_close:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(conns)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline + 15 - time.monotonic()))
    elapsed = time.monotonic() - start
    flat = [x for per in latencies for x in per]
    return Load(
        client="python",
        rps=len(flat) / elapsed,
        p50_ms=percentile(flat, 50),
        p99_ms=percentile(flat, 99),
        requests=len(flat),
        errors=sum(errors),
        non2xx=sum(non2xx),
        seconds=elapsed,
    )


def run_load(port: int, conns: int, seconds: float, path: str = "/", client: str = "auto") -> Load:
    if client == "wrk" or (client == "auto" and wrk_path()):
        return run_wrk(port, conns, seconds, path)
    return run_python_load(port, conns, seconds, path)


def arguments(
    doc: str | None, servers: Sequence[str], known: Sequence[str], quick: str
) -> argparse.ArgumentParser:
    """The options every script shares: --rounds, --servers, --quick, --keep."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--servers", default=",".join(servers), help=f"from: {', '.join(known)}")
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parser


def server_list(parser: argparse.ArgumentParser, text: str, known: Sequence[str]) -> list[str]:
    """``--servers a,b`` as a list; an unknown name is a usage error."""
    servers = [s for s in text.split(",") if s]
    unknown = set(servers) - set(known)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    return servers
