"""A big real Flask app from PyPI (pgAdmin 4: ~1,080 modules, ~210k lines of Python): save -> new
code served and the memory of all the server's processes; geventdev (defaults, ``--no-patch``,
``--no-standby``) vs werkzeug's stat reloader, with plain ``flask run`` (no reloader) as the
memory baseline, in one run with interleaved rounds.

    python benchmarks/realapp.py [--rounds 2] [--edits 3] [--first-run] [--venv DIR] [--quick]

The app runs in its own virtualenv (``--venv``, default ``~/.cache/geventdev-bench/pgadmin4``),
made on first use: ``pip install pgadmin4==VERSION`` (``--requirement``), then ``pip install -e``
of this checkout; a venv whose marker names the same requirement is reused, and geventdev is
re-installed whenever the venv imports it from another checkout. pgAdmin's files are installed
into site-packages, which no reloader treats as the project, so for every server and round the
app's directory (``site-packages/pgadmin4``, without its 119 MB of docs) is copied, with its
byte-code caches, to a temporary project directory that the server runs from (``pgAdmin4.py``
is the target: its ``app``); a ``config_local.py`` there sets desktop mode (no login, no
PostgreSQL: the settings database is SQLite) with a data directory outside the project.

Three edit kinds: ``body`` (a marker added to what ``/tools/translations.js`` returns, in
``pgadmin/tools/__init__.py``: a view with no decorator but ``@blueprint.route``), ``body_ping``
(the text ``/misc/ping`` returns, in ``pgadmin/misc/__init__.py``: a view that also carries one
of pgAdmin's own decorators, ``@pgCSRFProtect.exempt``, as most of its views carry
``@pga_login_required``) and ``route`` (a new CSRF-exempt route appended to that blueprint).
Per edit: wait a random 1-2 s (a polling reloader's phase is uniform), save, then GET
on a fresh connection every 10 ms until the new text comes back (``--limit`` seconds, else
"never"), then 5 more GETs that must not serve the old text. Memory: the sum of RSS (and of PSS,
which counts a page shared between processes once) over every process of the server's process
group, once its total has stopped moving (the standby loads after a start and after a restart),
after the first pages and again after the edits (the ratios use the latter; the target is on
PSS: an app process shares the pages loaded before it was forked with its standby, which RSS
would count twice). ``flask_run`` is not edited: it serves the same pages and is measured.
``flask_run_debug`` (not run by default) is ``flask run --debug`` as installed: with watchdog 7
its reloader never reloads (see README) and spins a core.

Each measured run is a user's second run on the project: a first one (started, first answer,
stopped) made the app's data directory and, for geventdev, left the list of the app's libraries
that geventdev keeps between runs, in a cache directory of the benchmark's own
(``XDG_CACHE_HOME``); ``--first-run`` measures the very first run instead (geventdev's first
standby then imports Flask's modules only: the first save imports the other libraries again).
"first save" is a run's first edit, a few seconds after its first answer.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from _common import (
    HERE,
    NEVER,
    PY,
    RUNNING,
    Proc,
    Workdir,
    arguments,
    base_env,
    free_port,
    group_members,
    header,
    http_get,
    median,
    ms,
    own_log,
    proc_mb,
    ratio,
    rss_mb,
    served,
    server_list,
    shuffled,
    table,
    verdict,
    wait_http,
)

KNOWN = (
    "geventdev",
    "geventdev_restart",
    "geventdev_nostandby",
    "werkzeug_stat",
    "flask_run",
    "flask_run_debug",
)
DEFAULT = KNOWN[:-1]
GEVENTDEV_OPTIONS = {
    "geventdev": [],
    "geventdev_restart": ["--no-patch"],
    "geventdev_nostandby": ["--no-standby"],
}
REQUIREMENT = "pgadmin4==9.18"
REPO = HERE.parent


@dataclass(frozen=True)
class EditSpec:
    """One kind of edit: in ``path``, ``anchor`` replaced by ``text`` (or ``text`` appended when
    there is no anchor); then ``url`` serves the token."""

    path: str
    url: str
    anchor: str
    text: str


EDITS = {
    # a plain view (only @blueprint.route; CSRF-exempt by name in pgadmin/utils/csrf.py)
    "body": EditSpec(
        "pgadmin/tools/__init__.py",
        "/tools/translations.js",
        "        response=template,\n",
        '        response=template + "/* {token} */",\n',
    ),
    # /misc/ping: decorated with @pgCSRFProtect.exempt, as pgAdmin's views carry their decorators
    "body_ping": EditSpec(
        "pgadmin/misc/__init__.py", "/misc/ping", '    return "PING"\n', '    return "{token}"\n'
    ),
    # a new route appended to the misc blueprint (a structural edit)
    "route": EditSpec(
        "pgadmin/misc/__init__.py",
        "/misc/added{k}",
        "",
        '\n\n@blueprint.route("/added{k}")\n@pgCSRFProtect.exempt\ndef added{k}():\n'
        '    return "{token}"\n',
    ),
}
KINDS = tuple(EDITS)
CONFIG = """\
# Written by geventdev's benchmarks/realapp.py: desktop mode, everything in DATA_DIR.
SERVER_MODE = False
DATA_DIR = {data!r}
LOG_FILE = {log!r}
UPGRADE_CHECK_ENABLED = False
MASTER_PASSWORD_REQUIRED = False
AUTO_DISCOVER_SERVERS = False
"""
MEMORY_LIMIT = 1.3  # issue 15: all geventdev processes <= 1.3x the memory of `flask run`


# The app's virtualenv --------------------------------------------------------------------------
def default_venv() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "geventdev-bench" / "pgadmin4"


def pip(venv: Path, *args: str, log: Path, timeout: float = 900) -> None:
    with log.open("ab") as out:
        done = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )
    if done.returncode:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise SystemExit(f"pip install {' '.join(args)} failed ({done.returncode}):\n{tail}")


def venv_python(venv: Path, code: str) -> str:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        cwd=venv,  # not this checkout: `-c` puts the current directory on sys.path
    )
    return out.stdout.strip() if out.returncode == 0 else ""


def prepare_venv(venv: Path, requirement: str) -> dict[str, str]:
    """Make (or reuse) the venv; return what it runs: versions, paths, install times."""
    marker = venv / "geventdev-bench.json"
    info: dict[str, str] = {}
    if marker.exists():
        info = json.loads(marker.read_text())
    log = venv.parent / f"{venv.name}-pip.log"
    if info.get("requirement") != requirement:
        if venv.exists() and any(venv.iterdir()) and not marker.exists():
            raise SystemExit(
                f"{venv} exists and is not this benchmark's venv: choose another --venv"
            )
        venv.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(venv, ignore_errors=True)  # ours (the marker), for another requirement
        log.unlink(missing_ok=True)
        print(f"creating {venv} and installing {requirement} (log: {log}) ...", flush=True)
        t0 = time.monotonic()
        subprocess.run([PY, "-m", "venv", str(venv)], check=True, timeout=300)
        pip(venv, requirement, log=log)
        info = {"requirement": requirement, "install_s": f"{time.monotonic() - t0:.0f}"}
        marker.write_text(json.dumps(info))
    where = venv_python(venv, "import geventdev, os; print(os.path.dirname(geventdev.__file__))")
    if Path(where or "/nonexistent").resolve() != (REPO / "geventdev").resolve():
        print(f"installing geventdev from {REPO} into {venv} ...", flush=True)
        t0 = time.monotonic()
        pip(venv, "-e", str(REPO), log=log)
        info["geventdev_install_s"] = f"{time.monotonic() - t0:.0f}"
        marker.write_text(json.dumps(info))
    dists = ("pgadmin4", "geventdev", "Flask", "Werkzeug", "gevent", "watchdog", "SQLAlchemy")
    info["versions"] = venv_python(
        venv,
        "from importlib.metadata import version\n"
        f"print(', '.join(f'{{d}} {{version(d)}}' for d in {dists!r}))",
    )
    info["site"] = venv_python(venv, "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    return info


# One server run --------------------------------------------------------------------------------
def make_project(source: Path, dest: Path, data: Path) -> Path:
    """Copy the app's directory (byte-code caches and mtimes kept: a project that has run
    before) and write its ``config_local.py``; return the project directory."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("docs"), symlinks=True)
    data.mkdir(parents=True)
    (dest / "config_local.py").write_text(
        CONFIG.format(data=str(data), log=str(data / "pgadmin4.log"))
    )
    return dest


def server_argv(name: str, python: str, port: int) -> list[str]:
    if name == "werkzeug_stat":
        return [python, str(HERE / "run_werkzeug.py"), "pgAdmin4:app", "--port", str(port)]
    flask = [python, "-m", "flask", "--app", "pgAdmin4", "run", "--port", str(port)]
    return [*flask, "--debug"] if name == "flask_run_debug" else flask


def start(name: str, python: str, project: Path, log: Path, cache: Path) -> Proc:
    env = base_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # users' reality: caches on
    env.pop("PGADMIN_INT_KEY", None)
    env["XDG_CACHE_HOME"] = str(cache)  # what geventdev keeps between runs: this run's
    if name.startswith("geventdev"):
        extra = GEVENTDEV_OPTIONS[name]
        argv = [python, "-m", "geventdev", "pgAdmin4.py", "--port", "0", *extra]
        proc = Proc(name, argv, project, env=env, log_path=log)
        proc.port = int(proc.wait_log(RUNNING, 60).group(1))
        return proc
    port = free_port()
    return Proc(name, server_argv(name, python, port), project, env=env, log_path=log, port=port)


def pss_mb(pid: int) -> float:
    """Proportional set size: a page shared by n processes counts 1/n in each."""
    return proc_mb(pid, "smaps_rollup", "Pss:")


def settled_memory(pgid: int, timeout: float = 30.0) -> tuple[float, float, list[float]]:
    """(RSS sum, PSS sum, each process's RSS) once the group's total RSS has moved < 2 MB in
    each of two seconds in a row (a restart's old process gone, the new standby loaded)."""
    deadline = time.monotonic() + timeout
    totals: list[float] = []
    while True:
        pids = group_members(pgid)
        each = [rss_mb(pid) for pid in pids]
        totals.append(sum(each))
        steady = len(totals) >= 3 and max(totals[-3:]) - min(totals[-3:]) < 2
        if steady or time.monotonic() > deadline:
            return totals[-1], sum(pss_mb(pid) for pid in pids), each
        time.sleep(1.0)


@dataclass
class Edit:
    kind: str
    seconds: float
    old_after_new: int = 0
    log_ms: float = float("nan")  # geventdev's own "Patched in" / "Restarted in"
    patched: bool = False


@dataclass
class Run:
    name: str
    start_s: float
    edits: list[Edit] = field(default_factory=list)
    rss_start: float = float("nan")
    pss_start: float = float("nan")
    rss: float = float("nan")
    pss: float = float("nan")
    each: list[float] = field(default_factory=list)
    load: str = ""


def old_after_new(port: int, url: str, token: str) -> int:
    """GETs (of 5) that do not serve the new text once it has been served."""
    bad = 0
    for _ in range(5):
        try:
            status, body = http_get(port, url, timeout=5)
            bad += status != 200 or token.encode() not in body
        except (OSError, http.client.HTTPException):
            bad += 1
    return bad


def run_server(
    name: str,
    python: str,
    source: Path,
    work: Workdir,
    rnd: int,
    edits: int,
    limit: float,
    first_run: bool = False,
) -> Run:
    project = make_project(
        source, work.path / f"{name}-r{rnd}" / "pgadmin4", work.path / f"data-{name}-r{rnd}"
    )
    cache = work.path / f"cache-{name}-r{rnd}"
    if not first_run:
        # A user's second run on the project, for every server: the first one made the data
        # directory (pgAdmin's settings database) and, for geventdev, left its list of the app's
        # libraries (``monitor.libraries``), which the next run's first standby imports.
        earlier = start(name, python, project, work.log(f"{name}-r{rnd}-before"), cache)
        try:
            wait_http(earlier.port or 0, 180, "/misc/ping", proc=earlier, accept=lambda s, b: True)
        finally:
            earlier.stop()
    t0 = time.monotonic()
    proc = start(name, python, project, work.log(f"{name}-r{rnd}"), cache)
    run = Run(name, float("nan"))
    port = proc.port or 0
    try:
        wait_http(port, 180, "/misc/ping", proc=proc, accept=lambda s, b: b == b"PING")
        run.start_s = time.monotonic() - t0
        for page in ("/", "/browser/", "/misc/ping"):  # what a browser opens first
            http_get(port, page, timeout=30)
        run.rss_start, run.pss_start, _ = settled_memory(proc.pid)  # the standby's start too
        current = {kind: edit.anchor for kind, edit in EDITS.items()}
        for kind in KINDS if name != "flask_run" else ():
            spec = EDITS[kind]
            module = project / spec.path
            for i in range(edits):
                time.sleep(random.uniform(1.0, 2.0))
                token = f"r{rnd}{kind}{i}-" + "x" * (len(run.edits) + 1)  # a new size each time
                text = module.read_text()
                url = spec.url.format(k=i)
                if spec.anchor:
                    new = spec.text.format(token=token)
                    text = text.replace(current[kind], new)
                    current[kind] = new
                else:
                    text += spec.text.format(k=i, token=token)
                before = proc.log()
                module.write_text(text)
                edit = Edit(kind, served(port, url, token, limit))
                if edit.seconds != NEVER:
                    edit.old_after_new = old_after_new(port, url, token)
                    if name.startswith("geventdev"):
                        edit.log_ms, edit.patched = own_log(proc.log, before)
                run.edits.append(edit)
                how = f" ({'patched' if edit.patched else 'restarted'} in {edit.log_ms:.0f} ms)"
                print(
                    f"  round {rnd} {name:19} {kind:9} edit {i}: {ms(edit.seconds)} ms"
                    + (how if edit.log_ms == edit.log_ms else ""),
                    flush=True,
                )
        run.rss, run.pss, run.each = settled_memory(proc.pid)
        run.load = Path("/proc/loadavg").read_text().split()[0]
        if not proc.alive():
            raise RuntimeError(f"{name} exited during the run:\n{proc.tail()}")
    finally:
        proc.stop()
    return run


def main() -> None:
    parser = arguments(__doc__, DEFAULT, KNOWN, "1 round, 1 edit of each kind")
    parser.add_argument("--edits", type=int, default=3, help="edits of each kind per run")
    parser.add_argument("--limit", type=float, default=60.0, help="seconds before 'never'")
    parser.add_argument("--venv", type=Path, default=default_venv(), help="the app's virtualenv")
    parser.add_argument("--requirement", default=REQUIREMENT, help="what pip installs")
    parser.add_argument(
        "--first-run",
        action="store_true",
        help="measure geventdev's very first run on the project (no list of its libraries yet)",
    )
    parser.set_defaults(rounds=2)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.edits = 1, 1
    servers = server_list(parser, args.servers, KNOWN)
    header("realapp: pgAdmin 4, save -> new code served and memory")
    info = prepare_venv(args.venv.expanduser().resolve(), args.requirement)
    python = str(args.venv.expanduser().resolve() / "bin" / "python")
    describe = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.strip()
    print(f"app venv: {python} ({info['versions']})")
    print(f"geventdev in the venv: {REPO} @ {describe or '?'}")
    app_s, own_s = info.get("install_s", "?"), info.get("geventdev_install_s", "?")
    print(f"install times (when this venv was made): app {app_s} s, geventdev {own_s} s")
    source = Path(info["site"]) / "pgadmin4"
    runs: dict[str, list[Run]] = defaultdict(list)
    with Workdir(keep=args.keep) as work:
        for rnd in range(args.rounds):
            for name in shuffled(servers, seed=rnd):
                run = run_server(
                    name, python, source, work, rnd, args.edits, args.limit, args.first_run
                )
                runs[name].append(run)
                each = " + ".join(f"{mb:.0f}" for mb in run.each)
                print(
                    f"  round {rnd} {name:19} started in {run.start_s:.1f} s; RSS at start "
                    f"{run.rss_start:.0f} MB (PSS {run.pss_start:.0f}), after the edits "
                    f"{run.rss:.0f} MB ({each}), PSS {run.pss:.0f} MB; loadavg {run.load}",
                    flush=True,
                )
    report(servers, runs)


def report(servers: list[str], runs: dict[str, list[Run]]) -> None:
    def times(name: str, kind: str) -> list[float]:
        return [e.seconds for r in runs.get(name, []) for e in r.edits if e.kind == kind]

    edited = [n for n in servers if n != "flask_run"]
    print("\n## Save -> new code served (median ms, min-max; werkzeug's median ÷ this)\n")
    rows = []
    for name in edited:
        row: list[object] = [name]
        for kind in KINDS:
            values = times(name, kind)
            low, high = ms(min(values, default=NEVER)), ms(max(values, default=NEVER))
            speedup = ratio(median(times("werkzeug_stat", kind)), median(values))
            row.append(f"{ms(median(values))} ({low}-{high}) {speedup:.2f}x")
        edits = [e for r in runs.get(name, []) for e in r.edits]
        for kind in KINDS:
            logged = [e.log_ms / 1000 for e in edits if e.kind == kind and e.log_ms == e.log_ms]
            row.append(ms(median(logged)) if logged else "-")
        row.append(" ".join(f"{sum(e.patched for e in edits if e.kind == k)}" for k in KINDS))
        row.append(sum(e.old_after_new for e in edits))
        row.append(ms(median([r.edits[0].seconds for r in runs.get(name, []) if r.edits])))
        rows.append(row)
    headers = ["server", *KINDS, *(f"own log {k}" for k in KINDS), "patched", "old after new"]
    print(table([*headers, "first save"], rows))
    print(
        "\n(own log: geventdev's ` * Patched ... in` / ` * Restarted in`, median ms; patched: how"
        f" many of each kind's edits were patched in place, {' / '.join(KINDS)}; first save:"
        " the run's first edit, a few seconds after the server started)"
    )

    def mem(name: str, attr: str) -> float:
        return median([getattr(r, attr) for r in runs.get(name, [])])

    print("\n## Memory: all the server's processes, at start and after the edits (median MB)\n")
    rows = []
    for name in servers:
        procs = ", ".join(str(len(r.each)) for r in runs.get(name, []))
        start = median([r.start_s for r in runs.get(name, [])])
        rows.append(
            [
                name,
                procs,
                mem(name, "rss_start"),
                mem(name, "pss_start"),
                mem(name, "rss"),
                mem(name, "pss"),
                ratio(mem(name, "pss"), mem("flask_run", "pss")),
                ratio(mem(name, "rss"), mem("flask_run", "rss")),
                ratio(mem(name, "pss"), mem("werkzeug_stat", "pss")),
                f"{start:.1f}",
            ]
        )
    headers = ["server", "processes", "RSS at start", "PSS at start", "RSS MB", "PSS MB"]
    headers += ["PSS ÷ flask run"]
    headers += ["RSS ÷ flask run", "PSS ÷ werkzeug"]
    print(table([*headers, "first answer s"], rows))
    print(f"\nloadavg at the end: {Path('/proc/loadavg').read_text().strip()}")
    if "flask_run" not in servers:
        return
    print("\n## Targets\n")
    rows = []
    for name in (n for n in servers if n.startswith("geventdev")):
        # PSS: the app processes share pages with the standby they were forked from, which
        # RSS counts once in each process (werkzeug's and flask run's processes share none).
        value = ratio(mem(name, "pss"), mem("flask_run", "pss"))
        rows.append(
            [
                f"{name}: all processes <= {MEMORY_LIMIT}x the memory (PSS) of flask run",
                f"{value:.2f}x",
                verdict(value <= MEMORY_LIMIT),
            ]
        )
    print(table(["target", "measured", "result"], rows))


if __name__ == "__main__":
    main()
