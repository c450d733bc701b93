"""1000 concurrent connections on a 1-second route, plus a /fast probe every 50 ms: geventdev vs
bare pywsgi + TCP_NODELAY (the ceiling) vs threaded flask run, in one run, interleaved rounds.

    python benchmarks/slow_routes.py [--rounds 3] [--conns 1000] [--quick] [--servers a,b]
        [--no-settle]

Per round and server (shuffled order, one server at a time): start it, wait for a 200, wait until
its processes are idle (``settle``: geventdev's warm standby imports its libraries for ~0.5 s of a
core after the app is ready; ``--no-settle`` measures right after start, standby warm-up
included), then open ``--conns`` connections at once from one non-blocking client, each sending
``GET /slow`` (``time.sleep(1)``) with ``Connection: close``, and wait for every answer (deadline
``--limit``).
Meanwhile a separate probe process (so the client's GIL does not delay it) sends ``GET /fast`` on
a fresh connection every 50 ms. Reported: time until all ``/slow`` answers are in, throughput,
``/fast`` p50/p99 (pooled over the rounds; with ~23 samples a round, p99 is the worst sample), its
ratio to bare pywsgi's in the same run, the CPU the server's other processes used during the
batch (a standby still warming up), and every socket error or non-200. The fd limit is raised
with ``resource.setrlimit`` (servers inherit it).
"""

from __future__ import annotations

import argparse
import errno
import http.client
import json
import selectors
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    HERE,
    HOST,
    PY,
    SLOW_APP,
    CpuMeter,
    Proc,
    Workdir,
    arguments,
    base_env,
    fmt,
    free_port,
    header,
    http_get,
    listen_overflows,
    median,
    percentile,
    raise_nofile,
    ratio,
    rounds,
    server_list,
    start_geventdev,
    table,
    verdict,
    wait_http,
)

CEILING = "pywsgi_nodelay"
ANCHOR = "flask_run"
DEFAULT = f"geventdev,{CEILING},{ANCHOR}"
DESCRIPTIONS = {
    "geventdev": "geventdev slowapp.py (dev defaults, access log -> file)",
    CEILING: "bare pywsgi + TCP_NODELAY (patch_all, backlog 2048, access log -> file)",
    ANCHOR: "flask run (threaded, no debug)",
    "gunicorn_gevent": "gunicorn -k gevent -w 1 (worker_connections 1000)",
}
PROBE_EVERY = 0.05
#: Idle: the server's processes used less than QUIET_CPU seconds of CPU in SETTLE_WINDOW.
QUIET_CPU = 0.01
SETTLE_WINDOW = 0.25
SETTLE_LIMIT = 15.0
#: Issue 15: /fast p99 within 2x bare pywsgi's in the same run, or under 100 ms.
P99_RATIO_TARGET = 2.0
P99_MS_TARGET = 100.0


# The probe process -----------------------------------------------------------------------------
def probe_main(port: int, limit: float) -> None:
    """GET /fast every 50 ms until stdin says stop (or ``limit``); print latencies as JSON."""
    stop = threading.Event()

    def stop_on_stdin() -> None:
        sys.stdin.readline()
        stop.set()

    threading.Thread(target=stop_on_stdin, daemon=True).start()
    latencies: list[float] = []
    failures: list[str] = []
    deadline = time.monotonic() + limit
    while not stop.is_set() and time.monotonic() < deadline:
        t0 = time.monotonic()
        try:
            status, _ = http_get(port, "/fast", timeout=10)
            if status == 200:
                latencies.append((time.monotonic() - t0) * 1000)
            else:
                failures.append(f"HTTP {status}")
        except (OSError, http.client.HTTPException) as exc:
            failures.append(type(exc).__name__)
        if len(latencies) + len(failures) == 1:
            print("ready", flush=True)  # a first probe is in: the batch may start
        stop.wait(max(0.0, PROBE_EVERY - (time.monotonic() - t0)))
    print(json.dumps({"latencies": latencies, "failures": failures}), flush=True)


class Probe:
    def __init__(self, port: int, limit: float) -> None:
        argv = [PY, __file__, "--probe-port", str(port), "--limit", str(limit)]
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=HERE
        )
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # "ready" once its first probe is in ("" if it died)

    def stop(self) -> dict[str, list[Any]]:
        out, _ = self.proc.communicate("stop\n", timeout=30)
        result: dict[str, list[Any]] = json.loads(out.strip().splitlines()[-1])
        return result


# The /slow client ------------------------------------------------------------------------------
REQUEST = b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


@dataclass
class Conn:
    sock: socket.socket
    sent: bool = False
    data: bytearray = field(default_factory=bytearray)


@dataclass
class Batch:
    seconds: float
    ok: int
    errors: dict[str, int]
    fast: list[float]
    fast_failures: list[str]
    overflows: int
    settle: float = 0.0  # seconds until the server's processes were idle
    others_cpu: float = 0.0  # CPU seconds its processes but the busiest used during the batch


def settle(proc: Proc, limit: float = SETTLE_LIMIT) -> float:
    """Wait until ``proc``'s processes are idle (a warm standby done importing); return the
    seconds waited (``limit`` if they never were)."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        meter = CpuMeter(proc.group())
        time.sleep(SETTLE_WINDOW)
        used, _ = meter.stop()
        if sum(used.values()) < QUIET_CPU:
            break
    return time.monotonic() - start


def slow_batch(port: int, conns: int, limit: float) -> tuple[float, int, dict[str, int]]:
    """Open ``conns`` connections at once, GET /slow on each, wait for all answers."""
    errors: dict[str, int] = {}

    def fail(what: str) -> None:
        errors[what] = errors.get(what, 0) + 1

    sel = selectors.DefaultSelector()
    start = time.monotonic()
    for _ in range(conns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        code = sock.connect_ex((HOST, port))
        if code not in (0, errno.EINPROGRESS):
            fail(errno.errorcode.get(code, str(code)))
            sock.close()
            continue
        sel.register(sock, selectors.EVENT_WRITE, Conn(sock))
    ok = 0
    deadline = start + limit
    while sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=max(0.0, min(0.5, deadline - time.monotonic()))):
            conn: Conn = key.data
            try:
                if not conn.sent:
                    code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code:
                        raise OSError(code, errno.errorcode.get(code, str(code)))
                    conn.sock.send(REQUEST)  # 60 bytes: one send on a fresh socket
                    conn.sent = True
                    sel.modify(conn.sock, selectors.EVENT_READ, conn)
                    continue
                chunk = conn.sock.recv(65536)
                if chunk:
                    conn.data += chunk
                    continue
                sel.unregister(conn.sock)
                conn.sock.close()
                if conn.data.startswith(b"HTTP/1.1 200") or conn.data.startswith(b"HTTP/1.0 200"):
                    ok += 1
                else:
                    fail(f"HTTP {bytes(conn.data[9:12]).decode(errors='replace') or 'empty'}")
            except OSError as exc:
                sel.unregister(conn.sock)
                conn.sock.close()
                fail(errno.errorcode.get(exc.errno or 0, type(exc).__name__))
    elapsed = time.monotonic() - start
    for key in list(sel.get_map().values()):
        fail("timeout")
        key.fileobj.close()  # type: ignore[union-attr]
    sel.close()
    return elapsed, ok, errors


def start(name: str, directory: Path, log: Path) -> Proc:
    if name == "geventdev":
        return start_geventdev("slowapp.py", directory, log)
    port = free_port()
    argv = {
        CEILING: [PY, str(HERE / "serve_pywsgi.py"), "slowapp:app", "--port", str(port)],
        ANCHOR: [PY, "-m", "flask", "--app", "slowapp", "run", "-p", str(port)],
        "gunicorn_gevent": [
            *(PY, "-m", "gunicorn", "-k", "gevent", "-w", "1"),
            *("-b", f"127.0.0.1:{port}", "slowapp:app"),
        ],
    }[name]
    return Proc(name, argv, directory, env=base_env(), log_path=log, port=port)


def measure(name: str, work: Workdir, rnd: int, args: argparse.Namespace) -> Batch:
    proc = start(name, work.path / "app", work.log(f"{name}-r{rnd}"))
    try:
        wait_http(proc.port or 0, 30, path="/fast", proc=proc)
        for _ in range(5):
            http_get(proc.port or 0, "/fast")
        settled = settle(proc) if args.settle else 0.0
        overflows_before = sum(listen_overflows())
        probe = Probe(proc.port or 0, args.limit + 5)  # returns once its first probe is in
        cpu = CpuMeter(proc.group())
        seconds, ok, errors = slow_batch(proc.port or 0, args.conns, args.limit)
        used, _ = cpu.stop()
        fast = probe.stop()
        overflows = sum(listen_overflows()) - overflows_before
    finally:
        proc.stop()
    others = sum(used.values()) - max(used.values(), default=0.0)
    return Batch(
        seconds, ok, errors, fast["latencies"], fast["failures"], overflows, settled, others
    )


def report(batches: dict[str, list[Batch]], args: argparse.Namespace) -> None:
    def throughput(name: str) -> float:
        return median([b.ok / b.seconds for b in batches.get(name, [])])

    def fast(name: str) -> list[float]:
        return [x for b in batches.get(name, []) for x in b.fast]

    rows = []
    for name, bs in batches.items():
        errors: dict[str, int] = {}
        for b in bs:
            for k, v in [*b.errors.items(), *((f, 1) for f in b.fast_failures)]:
                errors[k] = errors.get(k, 0) + v
        rows.append(
            [
                name,
                median([b.seconds for b in bs]),
                throughput(name),
                ratio(throughput(name), throughput(CEILING)),
                f"{sum(b.ok for b in bs)}/{args.conns * len(bs)}",
                ", ".join(f"{k} {v}" for k, v in errors.items()) or "0",
                sum(b.overflows for b in bs),
                median(fast(name)),
                percentile(fast(name), 99),
                len(fast(name)),
                ratio(percentile(fast(name), 99), percentile(fast(CEILING), 99)),
                ratio(percentile(fast(name), 99), percentile(fast(ANCHOR), 99)),
                round(median([b.others_cpu * 1000 for b in bs])),
                ", ".join(f"{max(b.fast, default=float('nan')):.0f}" for b in bs),
                ", ".join(f"{b.seconds:.2f}" for b in bs),
            ]
        )
    print(f"\n## {args.conns} x /slow (sleep 1 s) at once, /fast every 50 ms (medians)\n")
    print(
        table(
            [
                "server",
                "all done s",
                "req/s",
                "x ceiling",
                "/slow ok",
                "errors",
                "listen overflows",
                "/fast p50 ms",
                "/fast p99 ms",
                "/fast n",
                f"p99 x {CEILING}",
                f"p99 x {ANCHOR}",
                "others' CPU ms",
                "per-round /fast max ms",
                "per-round s",
            ],
            rows,
        )
    )
    settled = "settled" if args.settle else "not settled (--no-settle: right after start)"
    print(f"\nServers {settled} before each batch; \"others' CPU\": the server's processes but")
    print("the busiest (geventdev's warm standby, its monitor) during the batch, median.")
    print()
    for name in batches:
        print(f"- {name}: {DESCRIPTIONS[name]}")
    if "geventdev" not in batches:
        return
    gd = batches["geventdev"]
    tput = ratio(throughput("geventdev"), throughput(CEILING))
    p99 = ratio(percentile(fast("geventdev"), 99), percentile(fast(ANCHOR), 99))
    p99_ms = percentile(fast("geventdev"), 99)
    p99_x = ratio(p99_ms, percentile(fast(CEILING), 99))
    fast_ok = p99_x <= P99_RATIO_TARGET or p99_ms < P99_MS_TARGET
    failed = sum(sum(b.errors.values()) + len(b.fast_failures) for b in gd)
    print("\n## Targets (geventdev)\n")
    print(
        table(
            ["target", "measured", "result"],
            [
                [">= 0.95x the ceiling's throughput", f"{fmt(tput)}x", verdict(tput >= 0.95)],
                [
                    f"/fast p99 <= {P99_RATIO_TARGET:g}x {CEILING}'s, or < {P99_MS_TARGET:g} ms",
                    f"{fmt(p99_x)}x ({fmt(p99_ms, 0)} ms)",
                    verdict(fast_ok) if CEILING in batches or p99_ms < P99_MS_TARGET else "-",
                ],
                [
                    f"/fast p99 <= 0.5x {ANCHOR}'s",
                    f"{fmt(p99)}x" if ANCHOR in batches else "not run",
                    verdict(p99 <= 0.5) if ANCHOR in batches else "-",
                ],
                ["no socket errors", str(failed), verdict(failed == 0)],
            ],
        )
    )


def main() -> None:
    parser = arguments(__doc__, DEFAULT.split(","), list(DESCRIPTIONS), "1 round")
    parser.add_argument("--conns", type=int, default=1000)
    parser.add_argument("--limit", type=float, default=20.0, help="deadline of one batch, s")
    parser.add_argument(
        "--no-settle",
        dest="settle",
        action="store_false",
        help="start each batch right after the first 200 (a standby may still be warming up)",
    )
    parser.add_argument("--probe-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe_port:
        probe_main(args.probe_port, args.limit)
        return
    if args.quick:
        args.rounds = 1
    nofile = raise_nofile(2 * args.conns + 256)
    header(f"slow routes: {args.conns} concurrent /slow, /fast probe (fd limit {nofile})")
    servers = server_list(parser, args.servers, list(DESCRIPTIONS))
    with Workdir(keep=args.keep) as work:
        work.app_dir("app", SLOW_APP, filename="slowapp.py")
        batches = rounds(
            servers,
            args.rounds,
            lambda name, rnd: measure(name, work, rnd, args),
            lambda b: (
                f"{b.seconds:5.2f} s  ok {b.ok}  errors {b.errors}"
                f"  /fast p50 {median(b.fast):6.1f} ms max {max(b.fast, default=0):7.1f} ms"
                f" (n={len(b.fast)})  overflows {b.overflows}"
                f"  settle {b.settle:.2f} s  others' CPU {b.others_cpu * 1000:.0f} ms"
            ),
        )
        report(batches, args)


if __name__ == "__main__":
    main()
