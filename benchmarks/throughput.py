"""Hello-world req/s with keep-alive (50 connections) and p50/p99 latency: geventdev in its dev
defaults vs flask run --debug, flask run, bare pywsgi + TCP_NODELAY (the ceiling) and gunicorn.

    python benchmarks/throughput.py [--rounds 3] [--seconds 5] [--conns 50] [--quick]
        [--servers a,b,...] [--client auto|wrk|python]

One server runs at a time (so a busy reloader cannot steal CPU from another server's run), in a
shuffled order each round: start, wait for a 200, a 1 s warm-up load, then the measured load
(``wrk -t1 -c50 -d5s --latency --timeout 10s`` when wrk is installed, else a bounded Python
client), then stop. Every server writes its output, access log included, to a log file, the way
a terminal would receive it (geventdev_pty sends it to a real pseudo-terminal instead). Server
CPU per request (utime+stime of the process group during the run) is reported too: it moves far
less than req/s on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from _common import (
    HELLO_APP,
    HERE,
    PY,
    CpuMeter,
    Load,
    MachineMeter,
    Proc,
    Workdir,
    arguments,
    base_env,
    fmt,
    free_port,
    header,
    median,
    ratio,
    rounds,
    run_load,
    server_list,
    start_geventdev,
    table,
    verdict,
    wait_http,
    wrk_path,
)

ANCHOR = "flask_run_debug"
CEILING = "pywsgi_nodelay"
DEFAULT = f"geventdev,{ANCHOR},flask_run_debug_reload,flask_run,{CEILING},gunicorn_gevent"
#: Extra rows for the investigation, chosen with --servers.
EXTRAS = (
    "geventdev_pty",
    "geventdev_nodebugger",
    "geventdev_noreload",
    "pywsgi_nodelay_nolog",
    "pywsgi_nodelay_debugged",
    "pywsgi_nodelay_yield",
    "pywsgi_nagle",
)
DESCRIPTIONS = {
    "geventdev": "geventdev hello.py (debugger, reloader, access log -> file)",
    "geventdev_pty": "geventdev hello.py, access log -> a pseudo-terminal (coloured)",
    "geventdev_nodebugger": "geventdev hello.py --no-debugger",
    "geventdev_noreload": "geventdev hello.py --no-reload",
    ANCHOR: "flask run --debug --no-reload (debugger on)",
    "flask_run_debug_reload": "flask run --debug (reloader on: watchdog 7 as installed)",
    "flask_run": "flask run (threaded, no debug)",
    CEILING: "bare pywsgi + TCP_NODELAY, default access log -> file",
    "pywsgi_nodelay_nolog": "bare pywsgi + TCP_NODELAY, log=None",
    "pywsgi_nodelay_debugged": "bare pywsgi + TCP_NODELAY + DebuggedApplication",
    "pywsgi_nodelay_yield": "bare pywsgi + TCP_NODELAY, yield before each keep-alive request",
    "pywsgi_nagle": "bare pywsgi as shipped (Nagle on)",
    "gunicorn_gevent": "gunicorn -k gevent -w 1 (no access log)",
}


def start(name: str, directory: Path, log: Path) -> Proc:
    env = base_env()
    if name.startswith("geventdev"):
        extra = {
            "geventdev_nodebugger": ["--no-debugger"],
            "geventdev_noreload": ["--no-reload"],
        }.get(name, [])
        if name == "geventdev_pty":
            return start_on_pty(directory, log, env)
        return start_geventdev("hello.py", directory, log, *extra, env=env)
    port = free_port()
    pywsgi = [PY, str(HERE / "serve_pywsgi.py"), "hello:app", "--port", str(port)]
    flask = [PY, "-m", "flask", "--app", "hello", "run", "-p", str(port)]
    argv = {
        ANCHOR: [*flask, "--debug", "--no-reload"],
        "flask_run_debug_reload": [*flask, "--debug"],
        "flask_run": flask,
        CEILING: pywsgi,
        "pywsgi_nodelay_nolog": [*pywsgi, "--log", "none"],
        "pywsgi_nodelay_debugged": [*pywsgi, "--debugged"],
        "pywsgi_nodelay_yield": [*pywsgi, "--yield-between-requests"],
        "pywsgi_nagle": [*pywsgi, "--no-nodelay"],
        "gunicorn_gevent": [
            *(PY, "-m", "gunicorn", "-k", "gevent", "-w", "1"),
            *("-b", f"127.0.0.1:{port}", "hello:app"),
        ],
    }[name]
    return Proc(name, argv, directory, env=env, log_path=log, port=port)


def start_on_pty(directory: Path, log: Path, env: dict[str, str]) -> Proc:
    """geventdev with stdout/stderr on a pseudo-terminal (colours on); a thread drains the
    terminal into ``log``, as a terminal emulator would."""
    master, slave = os.openpty()
    env = {k: v for k, v in env.items() if k != "NO_COLOR"}
    port = free_port()
    argv = [PY, "-m", "geventdev", "hello.py", "--port", str(port)]
    log.write_bytes(b"")
    proc = Proc("geventdev_pty", argv, directory, env=env, log_path=log, port=port, output=slave)
    os.close(slave)

    def drain() -> None:
        with open(log, "ab") as out:
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                if not data:
                    break
                out.write(data)
        os.close(master)

    threading.Thread(target=drain, daemon=True).start()
    return proc


@dataclass
class Run:
    load: Load
    cpu_ms_per_1k: float
    steal: float
    others: float


def measure(name: str, work: Workdir, rnd: int, args: argparse.Namespace) -> Run:
    directory = work.path / "app"
    proc = start(name, directory, work.log(f"{name}-r{rnd}"))
    try:
        wait_http(proc.port or 0, 30, proc=proc)
        run_load(proc.port or 0, args.conns, 1, client=args.client)  # warm-up
        pids = proc.group()
        cpu, machine = CpuMeter(pids), MachineMeter(pids)
        load = run_load(proc.port or 0, args.conns, args.seconds, client=args.client)
        used, _ = cpu.stop()
        steal, others = machine.stop()
    finally:
        proc.stop()
    per_1k = 1000 * 1000 * sum(used.values()) / max(1, load.requests)
    return Run(load, per_1k, steal, others)


def cpu_med(rs: list[Run]) -> float:
    return median([r.cpu_ms_per_1k for r in rs])


def report(runs: dict[str, list[Run]], args: argparse.Namespace) -> None:
    def med(name: str, attr: str) -> float:
        return median([getattr(r.load, attr) for r in runs.get(name, [])])

    anchor_rps, ceiling_rps = med(ANCHOR, "rps"), med(CEILING, "rps")
    rows = []
    for name, rs in runs.items():
        rps = med(name, "rps")
        rows.append(
            [
                name,
                round(rps),
                ratio(rps, anchor_rps),
                ratio(rps, ceiling_rps),
                med(name, "p50_ms"),
                med(name, "p99_ms"),
                median([r.cpu_ms_per_1k for r in rs]),
                ratio(median([r.cpu_ms_per_1k for r in runs.get(CEILING, [])]), cpu_med(rs)),
                sum(r.load.errors + r.load.non2xx for r in rs),
                ", ".join(str(round(r.load.rps)) for r in rs),
                ", ".join(f"{r.steal:.0f}/{r.others:.1f}" for r in rs),
            ]
        )
    print(f"\n## Throughput, hello world, {args.conns} keep-alive connections (medians)\n")
    print(
        table(
            [
                "server",
                "req/s",
                f"x {ANCHOR}",
                "x ceiling",
                "p50 ms",
                "p99 ms",
                "CPU ms/1k req",
                "CPU x ceiling",
                "errors",
                "per-round req/s",
                "steal %/other load (cores)",
            ],
            rows,
        )
    )
    print()
    for name in runs:
        print(f"- {name}: {DESCRIPTIONS[name]}")
    gd = runs.get("geventdev")
    if not gd:
        return
    paired = [
        ratio(g.load.rps, c.load.rps) for g, c in zip(gd, runs.get(CEILING, []), strict=False)
    ]
    gd_rps, gd_p99, anchor_p99 = (
        med("geventdev", "rps"),
        med("geventdev", "p99_ms"),
        med(ANCHOR, "p99_ms"),
    )
    print(f"\ngeventdev / ceiling per round: {', '.join(fmt(p) for p in paired)}")
    print(
        "CPU x ceiling: the ceiling's server CPU per request / this server's (1.0 = as cheap"
        " as the ceiling): req/s per server core, which other load on the machine moves less."
    )
    if args.client == "python" or (args.client == "auto" and not wrk_path()):
        print("NOTE: Python client: it is the bottleneck, so ratios to the gevent servers are low.")
    print("\n## Targets (geventdev, dev defaults)\n")
    print(
        table(
            ["target", "measured", "result"],
            [
                [
                    f">= 3x {ANCHOR}",
                    f"{fmt(ratio(gd_rps, anchor_rps))}x",
                    verdict(ratio(gd_rps, anchor_rps) >= 3),
                ],
                [
                    ">= 0.9x the ceiling (bare pywsgi + NODELAY)",
                    f"{fmt(ratio(gd_rps, ceiling_rps))}x",
                    verdict(ratio(gd_rps, ceiling_rps) >= 0.9),
                ],
                [
                    f"p99 <= {ANCHOR}'s",
                    f"{fmt(gd_p99)} ms vs {fmt(anchor_p99)} ms",
                    verdict(gd_p99 <= anchor_p99),
                ],
                [
                    "no errors",
                    f"{sum(r.load.errors + r.load.non2xx for r in gd)}",
                    verdict(sum(r.load.errors + r.load.non2xx for r in gd) == 0),
                ],
            ],
        )
    )


def main() -> None:
    parser = arguments(__doc__, DEFAULT.split(","), list(DESCRIPTIONS), "1 round of 3 s")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds = 1, 3.0
    servers = server_list(parser, args.servers, list(DESCRIPTIONS))
    header(f"throughput: hello world, {args.conns} keep-alive connections")
    with Workdir(keep=args.keep) as work:
        work.app_dir("app", HELLO_APP, filename="hello.py")
        runs = rounds(
            servers,
            args.rounds,
            lambda name, rnd: measure(name, work, rnd, args),
            lambda run: (
                f"{run.load.rps:7.0f} req/s"
                f"  p50 {run.load.p50_ms:7.2f} ms  p99 {run.load.p99_ms:8.2f} ms"
                f"  {run.cpu_ms_per_1k:6.0f} CPU ms/1k  steal {run.steal:3.0f}%"
                f"  others {run.others:.1f} cores"
            ),
            width=24,
        )
        report(runs, args)


if __name__ == "__main__":
    main()
