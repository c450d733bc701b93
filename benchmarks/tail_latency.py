"""Why gevent's p99 is so long under keep-alive load, with evidence: the experiment behind the
tail-latency findings in benchmarks/README.md.

    python benchmarks/tail_latency.py [--rounds 3] [--seconds 5] [--conns 50] [--quick]

Servers (one at a time, shuffled each round): bare pywsgi + TCP_NODELAY as shipped, the same with
a ``gevent.sleep(0)`` before reading each keep-alive request, geventdev in its dev defaults and
``flask run --debug --no-reload`` for scale. Each is loaded twice per round: by wrk (as in
throughput.py) and by a single-threaded epoll client in this process, which records every
request with its connection, so it can show *who* waits: requests per connection (min / median /
max, Jain's fairness index) and whether slow requests are first requests (accept, backlog) or
mid-connection. The pywsgi servers also count, per keep-alive request, whether it was already
waiting in the socket when the previous response was done (so the handler's greenlet served it
without a trip through the hub), and the longest such streak on one connection. Around every run:
TCP ListenOverflows/ListenDrops (accept-queue overflow) and the machine's CPU steal.
"""

from __future__ import annotations

import argparse
import json
import re
import select
import socket
import time
from dataclasses import dataclass

from _common import (
    HELLO_APP,
    HERE,
    HOST,
    PY,
    Load,
    MachineMeter,
    Proc,
    Workdir,
    base_env,
    free_port,
    header,
    listen_overflows,
    median,
    percentile,
    rounds,
    run_load,
    start_geventdev,
    table,
    wait_http,
)

DESCRIPTIONS = {
    "pywsgi": "bare pywsgi + TCP_NODELAY, log=None",
    "pywsgi_yield": "the same, gevent.sleep(0) before reading each keep-alive request",
    "pywsgi_yield8": "the same, gevent.sleep(0) before every 8th keep-alive request",
    "geventdev": "geventdev hello.py, dev defaults (access log -> file)",
    "flask_run_debug": "flask run --debug --no-reload",
}
READY_STATS = re.compile(r" \* ready-stats: (\{.*\})")
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@dataclass
class Fairness:
    rps: float
    p50: float
    p99: float
    p999: float
    worst: float
    per_conn: list[int]
    slow_first: int
    slow_total: int

    @property
    def jain(self) -> float:
        xs = self.per_conn
        return sum(xs) ** 2 / (len(xs) * sum(x * x for x in xs)) if any(xs) else float("nan")


def connect(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


def epoll_load(port: int, conns: int, seconds: float, slow_ms: float = 100.0) -> Fairness:
    """Keep-alive GET / in a loop on ``conns`` connection slots, one thread, epoll; every request
    is recorded with its slot. A slot whose server closes (``Connection: close``, as werkzeug's
    dev server always does) reconnects. Connections are made before the clock starts."""
    poller = select.epoll()
    socks: list[socket.socket] = []
    by_fd: dict[int, int] = {}
    buffers = [bytearray() for _ in range(conns)]
    started = [0.0] * conns
    counts = [0] * conns
    latencies: list[float] = []
    slow_first = slow_total = 0

    def send(i: int, fresh: bool) -> None:
        if fresh:
            if i < len(socks):
                poller.unregister(socks[i].fileno())
                del by_fd[socks[i].fileno()]
                socks[i].close()
                socks[i] = connect(port)
            else:
                socks.append(connect(port))
            buffers[i].clear()
            poller.register(socks[i].fileno(), select.EPOLLIN)
            by_fd[socks[i].fileno()] = i
        started[i] = time.perf_counter()
        try:
            socks[i].send(REQUEST)
        except OSError:
            send(i, fresh=True)

    for i in range(conns):
        send(i, fresh=True)
    t_start = time.perf_counter()
    deadline = t_start + seconds
    for i in range(conns):
        started[i] = time.perf_counter()
    active = set(range(conns))
    while active and time.perf_counter() < deadline + 10:
        for fd, _ in poller.poll(0.5):
            i = by_fd.get(fd)
            if i is None or i not in active:
                continue
            try:
                chunk = socks[i].recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:  # closed without an answer to the last request: ask again
                send(i, fresh=True)
                continue
            buf = buffers[i]
            buf += chunk
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                continue
            head = bytes(buf[:end]).lower()
            match = re.search(rb"content-length:\s*(\d+)", head)
            if len(buf) < end + 4 + (int(match.group(1)) if match else 0):
                continue
            now = time.perf_counter()
            latency = (now - started[i]) * 1000
            latencies.append(latency)
            if latency > slow_ms:
                slow_total += 1
                slow_first += counts[i] == 0
            counts[i] += 1
            buf.clear()
            if now >= deadline:
                active.discard(i)
            else:
                send(i, fresh=b"connection: close" in head)
    elapsed = time.perf_counter() - t_start
    for sock in socks:
        sock.close()
    poller.close()
    return Fairness(
        rps=len(latencies) / elapsed,
        p50=percentile(latencies, 50),
        p99=percentile(latencies, 99),
        p999=percentile(latencies, 99.9),
        worst=max(latencies, default=float("nan")),
        per_conn=counts,
        slow_first=slow_first,
        slow_total=slow_total,
    )


@dataclass
class Result:
    wrk: Load
    fair: Fairness
    ready: dict[str, int]
    overflows: int
    steal: float
    others: float


def start(name: str, work: Workdir, rnd: int) -> Proc:
    directory, log = work.path / "app", work.log(f"{name}-r{rnd}")
    if name == "geventdev":
        return start_geventdev("hello.py", directory, log)
    port = free_port()
    pywsgi = [PY, str(HERE / "serve_pywsgi.py"), "hello:app", "--port", str(port)]
    pywsgi += ["--log", "none", "--count-ready"]
    argv = {
        "pywsgi": pywsgi,
        "pywsgi_yield": [*pywsgi, "--yield-between-requests"],
        "pywsgi_yield8": [*pywsgi, "--yield-between-requests", "--yield-every", "8"],
        "flask_run_debug": [
            *(PY, "-m", "flask", "--app", "hello", "run", "--debug", "--no-reload"),
            *("-p", str(port)),
        ],
    }[name]
    return Proc(name, argv, directory, env=base_env(), log_path=log, port=port)


def measure(name: str, work: Workdir, rnd: int, args: argparse.Namespace) -> Result:
    proc = start(name, work, rnd)
    try:
        port = proc.port or 0
        wait_http(port, 30, proc=proc)
        run_load(port, args.conns, 1)  # warm-up
        overflows = sum(listen_overflows())
        machine = MachineMeter(proc.group())
        wrk = run_load(port, args.conns, args.seconds)
        fair = epoll_load(port, args.conns, args.seconds)
        steal, others = machine.stop()
        overflows = sum(listen_overflows()) - overflows
    finally:
        proc.stop()
    match = READY_STATS.search(proc.log())
    ready = json.loads(match.group(1)) if match else {}
    return Result(wrk, fair, ready, overflows, steal, others)


def report(results: dict[str, list[Result]], args: argparse.Namespace) -> None:
    rows = []
    for name, rs in results.items():
        per_conn = [c for r in rs for c in sorted(r.fair.per_conn)]
        ready = {k: sum(r.ready.get(k, 0) for r in rs) for k in ("requests", "already_waiting")}
        waiting = 100 * ready["already_waiting"] / ready["requests"] if ready["requests"] else None
        rows.append(
            [
                name,
                round(median([r.wrk.rps for r in rs])),
                median([r.wrk.p50_ms for r in rs]),
                median([r.wrk.p99_ms for r in rs]),
                round(median([r.fair.rps for r in rs])),
                median([r.fair.p50 for r in rs]),
                median([r.fair.p99 for r in rs]),
                median([r.fair.worst for r in rs]),
                f"{min(per_conn)} / {round(median(per_conn))} / {max(per_conn)}",
                median([r.fair.jain for r in rs]),
                f"{sum(r.fair.slow_first for r in rs)}/{sum(r.fair.slow_total for r in rs)}",
                "-" if waiting is None else f"{waiting:.0f}%",
                max((r.ready.get("longest_streak", 0) for r in rs), default=0) or "-",
                sum(r.overflows for r in rs),
                median([r.steal for r in rs]),
                median([r.others for r in rs]),
            ]
        )
    print(f"\n## Tail latency, hello world, {args.conns} keep-alive connections (medians)\n")
    print(
        table(
            [
                "server",
                "wrk req/s",
                "wrk p50",
                "wrk p99",
                "epoll req/s",
                "epoll p50",
                "epoll p99",
                "epoll max",
                "req per conn min/med/max",
                "Jain",
                "slow >100ms: first/all",
                "next req already waiting",
                "longest streak",
                "listen overflows",
                "steal %",
                "other load (cores)",
            ],
            rows,
        )
    )
    print("\nLatencies in ms. Jain's index: 1.0 = every connection served equally, 1/n = one.")
    for name in results:
        print(f"- {name}: {DESCRIPTIONS[name]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--servers", default=",".join(DESCRIPTIONS))
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds = 1, 3.0
    header(f"tail latency under keep-alive, {args.conns} connections")
    servers = [s for s in args.servers.split(",") if s]
    with Workdir(keep=args.keep) as work:
        work.app_dir("app", HELLO_APP, filename="hello.py")
        results = rounds(
            servers,
            args.rounds,
            lambda name, rnd: measure(name, work, rnd, args),
            lambda r: (
                f"wrk {r.wrk.rps:6.0f} req/s p99 {r.wrk.p99_ms:7.1f}"
                f" | epoll {r.fair.rps:6.0f} req/s p99 {r.fair.p99:7.1f} max"
                f" {r.fair.worst:7.1f} Jain {r.fair.jain:.2f} | ready {r.ready}"
            ),
        )
        report(results, args)


if __name__ == "__main__":
    main()
