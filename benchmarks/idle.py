"""Idle cost with 20,000 files in node_modules/ and .venv/ next to the app: CPU % of the monitor
and its app processes, RSS, inotify watches, and whether a change in node_modules/ restarts the
app. geventdev vs werkzeug's stat reloader (and flask run --debug as installed), interleaved.

    python benchmarks/idle.py [--rounds 3] [--window 10] [--files 20000] [--quick]

The tree: ``app.py``; ``node_modules/`` with half the files (100 packages of ``package.json``,
``index.js`` and ``lib/*.js``); ``.venv/lib/python3.11/site-packages/`` with the other half
(100 packages of ``.py`` files). Per round and server (shuffled, one at a time): start, wait for a
200, let it settle, sample utime+stime of every process in its group (/proc/<pid>/stat) over
``--window`` seconds, and VmRSS (/proc/<pid>/status). Then three edits, each followed by a wait
long enough for a 1 s polling reloader: a ``.js`` and a new ``.py`` inside ``node_modules/``
(must not restart), a ``.py`` inside ``.venv/`` (must not restart) and ``app.py`` (must
restart: the control that the reloader works at all). A restart is seen as the app's answer
changing (every app.py version returns its own token) or the set of processes changing.
"""

from __future__ import annotations

import argparse
import http.client
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from _common import (
    HERE,
    PY,
    CpuMeter,
    Proc,
    Workdir,
    arguments,
    base_env,
    fmt,
    free_port,
    header,
    http_get,
    median,
    rounds,
    rss_mb,
    server_list,
    start_geventdev,
    table,
    verdict,
    wait_http,
)
from _common import (
    TOKEN_APP as APP,
)

DEFAULT = "geventdev,werkzeug_stat,flask_run_debug"
DESCRIPTIONS = {
    "geventdev": "geventdev app.py (dev defaults: inotify via watchdog)",
    "geventdev_stat": "geventdev app.py --reloader-type stat (polling)",
    "werkzeug_stat": "run_simple(use_reloader=True, reloader_type='stat')",
    "flask_run_debug": "flask run --debug (werkzeug + watchdog 7, as installed)",
}
CPU_TARGET = 0.5
RSS_TARGET = 40.0


def make_tree(root: Path, files: int) -> None:
    per_side = files // 2
    packages = 100
    per_pkg = max(1, per_side // packages)
    for p in range(packages):
        pkg = root / "node_modules" / f"pkg{p:03d}"
        (pkg / "lib").mkdir(parents=True, exist_ok=True)
        (pkg / "package.json").write_text(f'{{"name": "pkg{p:03d}", "main": "index.js"}}\n')
        (pkg / "index.js").write_text("module.exports = require('./lib/m0.js');\n")
        for i in range(per_pkg - 2):
            (pkg / "lib" / f"m{i}.js").write_text(f"module.exports = {i};\n")
        site = root / ".venv" / "lib" / "python3.11" / "site-packages" / f"vpkg{p:03d}"
        site.mkdir(parents=True, exist_ok=True)
        (site / "__init__.py").write_text("")
        for i in range(per_pkg - 1):
            (site / f"mod{i}.py").write_text(f"VALUE = {i}\n")


def count_files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def inotify_watches(pid: int) -> int:
    """Watches held by the inotify instances of ``pid`` (/proc/<pid>/fdinfo)."""
    total = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:inotify":
                    continue
                info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
            except OSError:
                continue
            total += sum(line.startswith("inotify wd:") for line in info.splitlines())
    except OSError:
        pass
    return total


@dataclass
class Sample:
    startup_s: float
    cpu_pct: dict[str, float]
    rss: dict[str, float]
    watches: int
    restarted: dict[str, bool] = field(default_factory=dict)


def start(name: str, directory: Path, log: Path) -> Proc:
    env = base_env(PYTHONDONTWRITEBYTECODE="1")
    if name == "geventdev":
        return start_geventdev("app.py", directory, log, env=env)
    if name == "geventdev_stat":
        return start_geventdev("app.py", directory, log, "--reloader-type", "stat", env=env)
    port = free_port()
    argv = {
        "werkzeug_stat": [PY, str(HERE / "run_werkzeug.py"), "app:app", "--port", str(port)],
        "flask_run_debug": [PY, "-m", "flask", "--app", "app", "run", "--debug", "-p", str(port)],
    }[name]
    return Proc(name, argv, directory, env=env, log_path=log, port=port)


def answer(port: int) -> bytes:
    try:
        return http_get(port, "/", timeout=5)[1]
    except (OSError, http.client.HTTPException):
        return b"(no answer)"


def restarted_by(proc: Proc, edit: Callable[[], object], settle: float) -> bool:
    """Apply ``edit``; after ``settle`` seconds, did the app restart?"""
    port = proc.port or 0
    before_pids, before_body = set(proc.group()), answer(port)
    edit()
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        if set(proc.group()) - before_pids or answer(port) != before_body:
            return True
        time.sleep(0.1)
    return False


def measure(
    name: str, directory: Path, work: Workdir, rnd: int, args: argparse.Namespace
) -> Sample:
    token = f"{name}-r{rnd}-0"
    (directory / "app.py").write_text(APP.format(token=token))
    t0 = time.monotonic()
    proc = start(name, directory, work.log(f"{name}-r{rnd}"))
    try:
        wait_http(proc.port or 0, 60, proc=proc, accept=lambda s, b: token.encode() in b)
        startup = time.monotonic() - t0
        time.sleep(args.settle)
        pids = proc.group()
        meter = CpuMeter(pids)
        time.sleep(args.window)
        used, seconds = meter.stop()
        leader = proc.pid
        cpu = {
            "monitor": 100 * used.get(leader, 0.0) / seconds,
            "children": 100 * sum(v for p, v in used.items() if p != leader) / seconds,
        }
        rss = {
            "monitor": rss_mb(leader),
            "children": sum(rss_mb(p) for p in pids if p != leader),
        }
        sample = Sample(startup, cpu, rss, sum(inotify_watches(p) for p in pids))
        nm = directory / "node_modules" / "pkg000"
        venv_py = directory / ".venv/lib/python3.11/site-packages/vpkg000/mod0.py"

        def edit_node_modules() -> None:
            (nm / "index.js").write_text(f"module.exports = {rnd};\n")
            (nm / "build.py").write_text(f"VALUE = {rnd}\n")

        edits = {
            "node_modules": edit_node_modules,
            ".venv": lambda: venv_py.write_text(f"VALUE = {rnd}\n"),
            "app.py (control)": lambda: (directory / "app.py").write_text(
                APP.format(token=f"{name}-r{rnd}-1")
            ),
        }
        for what, edit in edits.items():
            sample.restarted[what] = restarted_by(proc, edit, args.edit_wait)
        (nm / "build.py").unlink(missing_ok=True)
    finally:
        proc.stop()
    return sample


def report(samples: dict[str, list[Sample]], args: argparse.Namespace) -> None:
    rows = []
    for name, ss in samples.items():
        total = [s.cpu_pct["monitor"] + s.cpu_pct["children"] for s in ss]

        def restarts(what: str, ss: list[Sample] = ss) -> str:
            return f"{sum(s.restarted.get(what, False) for s in ss)}/{len(ss)}"

        rows.append(
            [
                name,
                median(total),
                median([s.cpu_pct["monitor"] for s in ss]),
                median([s.cpu_pct["children"] for s in ss]),
                median([s.rss["monitor"] for s in ss]),
                median([s.rss["children"] for s in ss]),
                median([float(s.watches) for s in ss]),
                median([s.startup_s for s in ss]),
                restarts("node_modules"),
                restarts(".venv"),
                restarts("app.py (control)"),
                ", ".join(f"{t:.2f}" for t in total),
            ]
        )
    print(f"\n## Idle over {args.window:.0f} s, {args.files} files in node_modules/ + .venv/\n")
    print(
        table(
            [
                "server",
                "CPU % total",
                "CPU % monitor",
                "CPU % app",
                "RSS monitor MB",
                "RSS app MB",
                "inotify watches",
                "start to 200 s",
                "restart on node_modules edit",
                "on .venv edit",
                "on app.py edit",
                "per-round CPU %",
            ],
            rows,
        )
    )
    print("\nCPU % is of one core; 'monitor' is the process started (werkzeug: reloader parent).")
    for name in samples:
        print(f"- {name}: {DESCRIPTIONS[name]}")
    gd = samples.get("geventdev")
    if not gd:
        return
    cpu = median([s.cpu_pct["monitor"] + s.cpu_pct["children"] for s in gd])
    rss = median([s.rss["monitor"] for s in gd])
    nm = sum(s.restarted["node_modules"] for s in gd)
    control = sum(s.restarted["app.py (control)"] for s in gd)
    print("\n## Targets (geventdev)\n")
    print(
        table(
            ["target", "measured", "result"],
            [
                [f"monitor + app < {CPU_TARGET}% of a core", f"{fmt(cpu)} %", verdict(cpu < 0.5)],
                [f"monitor RSS < {RSS_TARGET:.0f} MB", f"{fmt(rss, 1)} MB", verdict(rss < 40)],
                ["no restart on a node_modules change", f"{nm} restarts", verdict(nm == 0)],
                [
                    "app.py change restarts (control)",
                    f"{control}/{len(gd)}",
                    verdict(control == len(gd)),
                ],
            ],
        )
    )


def main() -> None:
    parser = arguments(__doc__, DEFAULT.split(","), list(DESCRIPTIONS), "1 round, 5 s window")
    parser.add_argument("--window", type=float, default=10.0, help="seconds sampled")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after the first 200")
    parser.add_argument("--edit-wait", type=float, default=2.5, help="seconds after each edit")
    parser.add_argument("--files", type=int, default=20000)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.window = 1, 5.0
    servers = server_list(parser, args.servers, list(DESCRIPTIONS))
    header(f"idle: {args.files} files in node_modules/ and .venv/")
    with Workdir(keep=args.keep) as work:
        for name in servers:  # one tree per server: an edit in one run cannot leak into another
            make_tree(work.path / name, args.files)
        print(f"tree: {count_files(work.path / servers[0])} files per project", flush=True)
        samples = rounds(
            servers,
            args.rounds,
            lambda name, rnd: measure(name, work.path / name, work, rnd, args),
            lambda s: (
                f"CPU monitor {s.cpu_pct['monitor']:6.2f}%"
                f" app {s.cpu_pct['children']:6.2f}%  RSS {s.rss['monitor']:.1f}"
                f" + {s.rss['children']:.1f} MB  watches {s.watches}  restarts {s.restarted}"
            ),
        )
        report(samples, args)


if __name__ == "__main__":
    main()
