"""Save -> new code served: geventdev vs flask run --debug, werkzeug's stat reloader, gunicorn
--reload, and the cold-interpreter floor, in one run with interleaved rounds.

    python benchmarks/reload_latency.py [--rounds 3] [--edits 3] [--quick]

Each round starts every server in a shuffled order, one at a time, in its own temporary project
(``app.py`` returning a token). Per edit: wait a random 1-2 s (so a polling reloader's phase is
uniform), rewrite ``app.py`` with a new token, then GET / on a fresh connection every 10 ms until
the new token comes back (limit ``--limit`` seconds, else "never"). Requests that fail (refused,
reset, timeout, non-200) are counted, so are stale answers and "regressions": old code answering
after new code already did (5 GETs right after the first new answer). The floor is a cold
``python -c "from gevent import monkey; monkey.patch_all(); import flask; import app"`` (spawn to
exit). All servers and the floor run with bytecode caches on, as users run them (these machines
export ``PYTHONDONTWRITEBYTECODE=1``; it is removed): edits are at least a second apart, so no
peer can load a same-second stale ``.pyc``.
"""

from __future__ import annotations

import argparse
import http.client
import random
import re
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from _common import (
    HERE,
    PY,
    Proc,
    Workdir,
    arguments,
    base_env,
    fmt,
    free_port,
    header,
    http_get,
    median,
    ms,
    ratio,
    server_list,
    shuffled,
    start_geventdev,
    table,
    verdict,
    wait_http,
)
from _common import (
    TOKEN_APP as APP,
)

FLOOR_CODE = "from gevent import monkey; monkey.patch_all(); import flask; import app"
RESTARTED = re.compile(r" \* Restarted in (\d+) ms \(import (\d+) ms\)")
DETECTED = " * Detected change in "
NEVER = float("inf")
TARGET_MS = 200


def server_argv(name: str, port: int) -> list[str]:
    gunicorn = [PY, "-m", "gunicorn", "--reload", "-k", "gevent", "-w", "1"]
    return {
        "flask_run_debug": [PY, "-m", "flask", "--app", "app", "run", "--debug", "-p", str(port)],
        "werkzeug_stat": [PY, str(HERE / "run_werkzeug.py"), "app:app", "--port", str(port)],
        "gunicorn_reload": [*gunicorn, "-b", f"127.0.0.1:{port}", "app:app"],
    }[name]


@dataclass
class Edit:
    seconds: float
    failed: int = 0
    stale: int = 0
    regressions: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    detect_ms: float = float("nan")
    restart_ms: float = float("nan")
    import_ms: float = float("nan")


@dataclass
class Results:
    edits: dict[str, list[Edit]] = field(default_factory=dict)
    floor: list[float] = field(default_factory=list)
    python_pass: list[float] = field(default_factory=list)

    def add(self, name: str, edit: Edit) -> None:
        self.edits.setdefault(name, []).append(edit)


def measure_edit(proc: Proc, app_file: Path, old: str, new: str, limit: float) -> Edit:
    """Rewrite ``app_file`` with token ``new``; poll GET / every 10 ms until it is served."""
    is_geventdev = proc.name == "geventdev"
    log_offset = len(proc.log()) if is_geventdev else 0
    restarts_before = len(RESTARTED.findall(proc.log())) if is_geventdev else 0
    app_file.write_text(APP.format(token=new))
    t0 = time.monotonic()
    edit = Edit(seconds=NEVER)
    while time.monotonic() - t0 < limit:
        remaining = limit - (time.monotonic() - t0)
        try:
            status, body = http_get(proc.port or 0, "/", timeout=max(0.05, min(5.0, remaining)))
        except (OSError, http.client.HTTPException) as exc:
            edit.failed += 1
            edit.failures[type(exc).__name__] += 1
        else:
            if status == 200 and new.encode() in body:
                edit.seconds = time.monotonic() - t0
                break
            if status == 200 and old.encode() in body:
                edit.stale += 1
            else:
                edit.failed += 1
                edit.failures[f"HTTP {status}"] += 1
        if (
            is_geventdev
            and edit.detect_ms != edit.detect_ms
            and DETECTED in proc.log()[log_offset:]
        ):
            edit.detect_ms = (time.monotonic() - t0) * 1000
        time.sleep(0.01)
    if edit.seconds == NEVER:
        return edit
    for _ in range(5):  # does old code ever answer after the new code did?
        try:
            status, body = http_get(proc.port or 0, "/", timeout=5)
            edit.regressions += int(old.encode() in body)
        except (OSError, http.client.HTTPException) as exc:
            edit.failed += 1
            edit.failures[type(exc).__name__] += 1
    if is_geventdev:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            found = RESTARTED.findall(proc.log())
            if len(found) > restarts_before:
                edit.restart_ms, edit.import_ms = (float(x) for x in found[restarts_before])
                break
            time.sleep(0.02)
    return edit


def cached_env() -> dict[str, str]:
    """``base_env()`` with bytecode caches on, whatever this machine exports."""
    env = base_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_server(name: str, work: Workdir, rnd: int, args: argparse.Namespace, res: Results) -> None:
    token = f"r{rnd}-start-{random.randrange(10**6)}"
    directory = work.app_dir(f"{name}-r{rnd}", APP.format(token=token))
    env = cached_env()
    log = work.log(f"{name}-r{rnd}")
    if name == "geventdev":
        proc = start_geventdev("app.py", directory, log, *args.geventdev_args.split(), env=env)
    else:
        port = free_port()
        proc = Proc(name, server_argv(name, port), directory, env=env, log_path=log, port=port)
    try:
        wait_http(proc.port or 0, 30, proc=proc, accept=lambda s, b: token.encode() in b)
        time.sleep(1.0)  # let the reloader take its first snapshot
        for i in range(args.edits):
            time.sleep(random.uniform(*args.gap))
            new = f"r{rnd}-e{i}-{random.randrange(10**6)}"
            edit = measure_edit(proc, directory / "app.py", token, new, args.limit)
            res.add(name, edit)
            shown = "never" if edit.seconds == NEVER else f"{edit.seconds * 1000:.0f} ms"
            extra = f", failed {edit.failed}" if edit.failed else ""
            print(f"  round {rnd} {name:16} edit {i}: {shown}{extra}", flush=True)
            if edit.seconds == NEVER:
                break  # it is still serving the first token: the other edits would be the same
            token = new
    finally:
        proc.stop()


def run_floor(directory: Path, reps: int, res: Results) -> None:
    env = cached_env()
    for _ in range(reps):
        for code, into in ((FLOOR_CODE, res.floor), ("pass", res.python_pass)):
            t0 = time.monotonic()
            subprocess.run([PY, "-c", code], cwd=directory, env=env, check=True, timeout=60)
            into.append(time.monotonic() - t0)
    print(f"  floor: {median(res.floor[-reps:]) * 1000:.0f} ms (median of {reps})", flush=True)


def report(res: Results, args: argparse.Namespace) -> None:
    floor = median(res.floor)
    gd = [e.seconds for e in res.edits.get("geventdev", [])]
    gd_median = median(gd)
    rows = []
    for name, edits in res.edits.items():
        secs = [e.seconds for e in edits]
        med = median(secs)
        never = sum(s == NEVER for s in secs)
        failures = sum((e.failures for e in edits), Counter())
        rows.append(
            [
                name,
                ms(med),
                ms(min(secs)),
                ms(max(secs)),
                f"{len(secs) - never}/{len(secs)}",
                sum(e.failed for e in edits) / len(edits),
                ", ".join(f"{k} {v}" for k, v in failures.most_common()) or "-",
                sum(e.stale for e in edits) / len(edits),
                sum(e.regressions for e in edits),
                ratio(med, gd_median) if med != NEVER else NEVER,
                ratio(med, floor) if med != NEVER else NEVER,
            ]
        )
    rows.append(["cold floor (patch_all + flask + app)", ms(floor), ms(min(res.floor))])
    rows[-1] += [ms(max(res.floor)), f"{len(res.floor)} runs", "-", "-", "-", "-"]
    rows[-1] += [ratio(floor, gd_median), 1.0]
    rows.append(["python -c pass", ms(median(res.python_pass)), ms(min(res.python_pass))])
    rows[-1] += [ms(max(res.python_pass)), f"{len(res.python_pass)} runs", "-", "-", "-", "-"]
    rows[-1] += ["-", ratio(median(res.python_pass), floor)]
    print("\n## Save -> new code served (ms; failed/stale are per reload)\n")
    print("÷ geventdev: peer median / geventdev median (>1: geventdev is faster).")
    print("old after new: old code answering in 5 GETs right after the first new answer.\n")
    print(
        table(
            [
                "server",
                "median ms",
                "min ms",
                "max ms",
                "reloaded",
                "failed req",
                "failures",
                "stale req",
                "old after new",
                "÷ geventdev",
                "÷ floor",
            ],
            rows,
        )
    )
    edits = res.edits.get("geventdev", [])
    if edits:
        print("\n## geventdev breakdown (medians, ms)\n")
        print(
            table(
                ["detected (log seen)", "Restarted in (monitor)", "import (child)", "served"],
                [
                    [
                        ms(
                            median(
                                [e.detect_ms / 1000 for e in edits if e.detect_ms == e.detect_ms]
                            )
                        ),
                        ms(
                            median(
                                [e.restart_ms / 1000 for e in edits if e.restart_ms == e.restart_ms]
                            )
                        ),
                        ms(
                            median(
                                [e.import_ms / 1000 for e in edits if e.import_ms == e.import_ms]
                            )
                        ),
                        ms(gd_median),
                    ]
                ],
            )
        )
        print("\n## Targets\n")
        failed = sum(e.failed for e in edits)
        regressions = sum(e.regressions for e in edits)
        print(
            table(
                ["target", "measured", "result"],
                [
                    [
                        f"median <= {TARGET_MS} ms",
                        f"{fmt(gd_median * 1000, 0)} ms",
                        verdict(gd_median * 1000 <= TARGET_MS),
                    ],
                    [
                        "median below the cold floor",
                        f"{fmt(ratio(gd_median, floor))}x floor",
                        verdict(gd_median < floor),
                    ],
                    [
                        "no failed request during reloads",
                        f"{failed} failed",
                        verdict(failed == 0),
                    ],
                    [
                        "no old code after new code",
                        f"{regressions} answers",
                        verdict(regressions == 0),
                    ],
                ],
            )
        )


def main() -> None:
    known = ("geventdev", "flask_run_debug", "werkzeug_stat", "gunicorn_reload")
    parser = arguments(__doc__, known, known, "1 round, 2 edits, 5 s limit")
    parser.add_argument("--edits", type=int, default=3, help="edits per server per round")
    parser.add_argument("--limit", type=float, default=10.0, help="seconds before 'never'")
    parser.add_argument(
        "--geventdev-args", default="", help="extra geventdev options, e.g. '--debounce 0.02'"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.edits, args.limit = 1, 2, 5.0
    args.gap = (1.0, 2.0)
    header("reload latency: save -> new code served")
    servers = server_list(parser, args.servers, known)
    res = Results()
    with Workdir(keep=args.keep) as work:
        floor_dir = work.app_dir("floor", APP.format(token="floor"))
        run_floor(floor_dir, 2, Results())  # warm the disk cache; not counted
        for rnd in range(args.rounds):
            for name in shuffled([*servers, "floor"], seed=rnd):
                if name == "floor":
                    run_floor(floor_dir, args.edits, res)
                else:
                    run_server(name, work, rnd, args, res)
        report(res, args)


if __name__ == "__main__":
    main()
