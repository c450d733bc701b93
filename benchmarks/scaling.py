"""Reload cost against project size: generated Flask projects of N blueprint modules, one edit
at a time; geventdev (its defaults, which patch an edit inside function bodies, and
``geventdev_restart``: ``--no-patch``, every edit a restart) vs werkzeug's stat reloader and
``gunicorn --reload -k gevent``, in one run with interleaved rounds.

    python benchmarks/scaling.py [--sizes 10,100,400,1000] [--rounds 2] [--edits 3] [--quick]

Each project is ``app.py`` (imports every module, ``create_app()`` registers each blueprint) and
``blueprints/mod_NNNN.py``, ~60 lines each (a dataclass, helpers, four routes). Before each server
starts, the project is byte-compiled (``compileall``: a project that has run before), and servers
run with bytecode caches on, as users' do; every edit changes the file's size, so a same-second
edit never meets a stale ``.pyc``. Three edit kinds, in the middle module: ``body`` (the text
``index()`` returns), ``route`` (a new route appended to the module) and ``second`` (a body edit
saved 0.5 s after another one, timed from the second save: the cold window after a restart).
Per edit: wait a random 1-2 s (a polling reloader's phase is uniform), save, then GET on a fresh
connection every 10 ms until the new text comes back (``--limit`` seconds, else "never"). The
memory column is the sum of the RSS of every process of the server (monitor, app, standby;
reloader and child), after the edits.
"""

from __future__ import annotations

import random
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from _common import (
    HERE,
    NEVER,
    PY,
    Proc,
    Workdir,
    arguments,
    base_env,
    free_port,
    group_members,
    header,
    median,
    ms,
    own_log,
    ratio,
    rss_mb,
    served,
    server_list,
    shuffled,
    start_geventdev,
    table,
    verdict,
    wait_http,
)

KNOWN = ("geventdev", "geventdev_restart", "werkzeug_stat", "gunicorn_reload")
KINDS = ("body", "route", "second")

MODULE = '''"""Blueprint {i}: orders of shop {i} (generated for the scaling benchmark)."""

from __future__ import annotations

import dataclasses

from flask import Blueprint, abort, jsonify, request

bp = Blueprint("m{i}", __name__, url_prefix="/m{i}")

PAGE_SIZE = 10
NAMES = ("apple", "pear", "plum", "fig")


@dataclasses.dataclass
class Order:
    id: int
    name: str
    quantity: int = 1

    def total(self, price: float) -> float:
        return round(self.quantity * price, 2)

    def as_dict(self) -> dict[str, object]:
        return {{"id": self.id, "name": self.name, "quantity": self.quantity}}


def _orders(count: int) -> list[Order]:
    return [Order(n, NAMES[n % len(NAMES)], n % 7 + 1) for n in range(count)]


def _page(items: list[Order], page: int) -> list[Order]:
    start = (page - 1) * PAGE_SIZE
    return items[start : start + PAGE_SIZE]


@bp.route("/")
def index() -> str:
    return "{token}"


@bp.route("/orders")
def orders() -> object:
    page = request.args.get("page", 1, type=int)
    return jsonify([o.as_dict() for o in _page(_orders(50), page)])


@bp.route("/orders/<int:order_id>")
def order(order_id: int) -> object:
    found = [o for o in _orders(50) if o.id == order_id]
    if not found:
        abort(404)
    return jsonify(found[0].as_dict())


@bp.post("/orders")
def create() -> object:
    data = request.get_json(silent=True) or {{}}
    order = Order(len(_orders(50)), str(data.get("name", "fig")), int(data.get("quantity", 1)))
    return jsonify(order.as_dict()), 201
'''
ROUTE = """

@bp.route("/added{k}")
def added{k}() -> str:
    return "{token}"
"""


def generate(root: Path, count: int) -> int:
    """Write the project; return the index of the module the edits go to (the middle one)."""
    (root / "blueprints").mkdir(parents=True, exist_ok=True)
    (root / "blueprints" / "__init__.py").write_text("")
    names = [f"mod_{i:04d}" for i in range(count)]
    for i, name in enumerate(names):
        (root / "blueprints" / f"{name}.py").write_text(MODULE.format(i=i, token=f"start-{i}"))
    imports = "\n".join(f"from blueprints import {name}" for name in names)
    (root / "app.py").write_text(
        f"from flask import Flask\n\n{imports}\n\nMODULES = ({', '.join(names)},)\n\n\n"
        "def create_app() -> Flask:\n    app = Flask(__name__)\n    for module in MODULES:\n"
        "        app.register_blueprint(module.bp)\n    return app\n\n\napp = create_app()\n"
    )
    subprocess.run([PY, "-m", "compileall", "-q", str(root)], check=True, timeout=300)
    return count // 2


@dataclass
class Edit:
    size: int
    kind: str
    seconds: float
    log_ms: float = float("nan")  # geventdev's own "Patched in" / "Restarted in"
    patched: bool = False


def server_argv(name: str, port: int) -> list[str]:
    if name == "werkzeug_stat":
        return [PY, str(HERE / "run_werkzeug.py"), "app:app", "--port", str(port)]
    return [PY, "-m", "gunicorn", "--reload", "-k", "gevent", "-w", "1"] + [
        "-b",
        f"127.0.0.1:{port}",
        "app:app",
    ]


def run_server(
    name: str, size: int, work: Workdir, rnd: int, edits: int, limit: float
) -> tuple[list[Edit], float]:
    project = work.path / f"{name}-{size}-r{rnd}"
    mid = generate(project, size)
    env = base_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # users' reality: caches on
    log = work.log(f"{name}-{size}-r{rnd}")
    if name.startswith("geventdev"):
        extra = ["--no-patch"] if name == "geventdev_restart" else []  # patching: the default
        proc = start_geventdev("app.py", project, log, *extra, env=env)
    else:
        port = free_port()
        proc = Proc(name, server_argv(name, port), project, env=env, log_path=log, port=port)
    results: list[Edit] = []
    module = project / "blueprints" / f"mod_{mid:04d}.py"
    try:
        wait_http(proc.port or 0, 120, f"/m{mid}/", proc=proc, accept=lambda s, b: s == 200)
        time.sleep(1.0)  # the stat reloader's first snapshot; the standby's start
        current = f"start-{mid}"
        for kind in KINDS:
            for i in range(edits):
                time.sleep(random.uniform(1.0, 2.0))
                token = f"r{rnd}{kind}{i}-" + "x" * (len(results) + 1)  # a new size each time
                text = module.read_text()
                if kind == "second":  # a first save, then this one 0.5 s later
                    first = f"first{rnd}{i}-" + "y" * (len(results) + 1)  # token is not in it
                    text, current = text.replace(current, first), first
                    module.write_text(text)
                    time.sleep(0.5)
                if kind in ("body", "second"):
                    text, url = text.replace(current, token), f"/m{mid}/"
                    current = token
                else:
                    text, url = text + ROUTE.format(k=i, token=token), f"/m{mid}/added{i}"
                before = proc.log() if name.startswith("geventdev") else ""
                module.write_text(text)
                seconds = served(proc.port or 0, url, token, limit)
                edit = Edit(size, kind, seconds)
                if name.startswith("geventdev") and seconds != NEVER:
                    edit.log_ms, edit.patched = own_log(proc.log, before)
                results.append(edit)
                how = " (patched)" if edit.patched else ""
                print(
                    f"  round {rnd} N={size:<5} {name:18} {kind:5} edit {i}: {ms(seconds)} ms{how}",
                    flush=True,
                )
        memory = sum(rss_mb(pid) for pid in group_members(proc.pid))
    finally:
        proc.stop()
    return results, memory


def main() -> None:
    parser = arguments(__doc__, KNOWN, KNOWN, "sizes 10,400, 1 round, 2 edits of each kind")
    parser.add_argument("--sizes", default="10,100,400,1000")
    parser.add_argument("--edits", type=int, default=3, help="edits of each kind per run")
    parser.add_argument("--limit", type=float, default=20.0, help="seconds before 'never'")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.rounds, args.edits = "10,400", 1, 2
    servers = server_list(parser, args.servers, KNOWN)
    sizes = [int(s) for s in args.sizes.split(",")]
    header("scaling: save -> new code served, against project size")
    edits: dict[tuple[str, int, str], list[float]] = defaultdict(list)
    logged: dict[tuple[str, int, str], list[float]] = defaultdict(list)
    patched: dict[tuple[str, int, str], int] = defaultdict(int)
    memory: dict[tuple[str, int], list[float]] = defaultdict(list)
    with Workdir(keep=args.keep) as work:
        for rnd in range(args.rounds):
            for size in sizes:
                for name in shuffled(servers, seed=rnd * 100 + size):
                    results, rss = run_server(name, size, work, rnd, args.edits, args.limit)
                    memory[(name, size)].append(rss)
                    for e in results:
                        edits[(name, size, e.kind)].append(e.seconds)
                        if e.log_ms == e.log_ms:
                            logged[(name, size, e.kind)].append(e.log_ms / 1000)
                        patched[(name, size, e.kind)] += e.patched
    report(servers, sizes, edits, logged, patched, memory)


def report(
    servers: list[str],
    sizes: list[int],
    edits: dict[tuple[str, int, str], list[float]],
    logged: dict[tuple[str, int, str], list[float]],
    patched: dict[tuple[str, int, str], int],
    memory: dict[tuple[str, int], list[float]],
) -> None:
    def med(name: str, size: int, kind: str) -> float:
        return median(edits.get((name, size, kind), []))

    for kind in KINDS:
        print(f"\n## {kind} edit: save -> new code served (median ms)\n")
        headers = ["N modules", *servers, "÷ werkzeug", "÷ gunicorn", "geventdev patched"]
        rows = []
        for size in sizes:
            gd = med("geventdev", size, kind)
            count = len(edits.get(("geventdev", size, kind), []))
            rows.append(
                [
                    size,
                    *(ms(med(name, size, kind)) for name in servers),
                    ratio(med("werkzeug_stat", size, kind), gd),
                    ratio(med("gunicorn_reload", size, kind), gd),
                    f"{patched[('geventdev', size, kind)]}/{count}",
                ]
            )
        print(table(headers, rows))
        print("\ngeventdev's own log (median ms): Patched in / Restarted in")
        own = [n for n in servers if n.startswith("geventdev")]
        for size in sizes:
            values = [f"{n} {ms(median(logged.get((n, size, kind), [])))}" for n in own]
            print(f"  N={size}: {', '.join(values)}")
    print("\n## Memory after the edits: RSS of all the server's processes (median MB)\n")
    print(
        table(
            ["N modules", *servers],
            [[size, *(median(memory.get((n, size), [])) for n in servers)] for size in sizes],
        )
    )
    own = [n for n in servers if n.startswith("geventdev")]
    if not own or not sizes:
        return
    small, big = min(sizes), (400 if 400 in sizes else max(sizes))
    wz_body, wz_route = med("werkzeug_stat", big, "body"), med("werkzeug_stat", big, "route")
    rows = []
    for name in own:  # each variant on its own: the defaults (patching) and --no-patch
        body_small, body_big = med(name, small, "body"), med(name, big, "body")
        route_big, second = med(name, big, "route"), ratio(med(name, big, "second"), body_big)
        rows += [
            [
                f"{name}: body edit at N={big} within 1.5x of N={small}",
                f"{ratio(body_big, body_small):.2f}x",
                verdict(ratio(body_big, body_small) <= 1.5),
            ],
            [
                f"{name}: body edit at N={big} >= 5x faster than werkzeug",
                f"{ratio(wz_body, body_big):.1f}x",
                verdict(ratio(wz_body, body_big) >= 5),
            ],
            [
                f"{name}: route edit at N={big} >= 3x faster than werkzeug",
                f"{ratio(wz_route, route_big):.1f}x",
                verdict(ratio(wz_route, route_big) >= 3),
            ],
            [
                f"{name}: a save 0.5 s after another, at N={big}, as fast as the first",
                f"{second:.2f}x the body edit",
                verdict(second <= 1.25),
            ],
        ]
    print("\n## Targets\n")
    print(table(["target", "measured", "result"], rows))


if __name__ == "__main__":
    main()
