"""The differential corpus: every edit applied to a server that patches and to one that
restarts (``--no-patch``), side by side, must give identical answers on every route.

Two real servers on two copies of one project, reused across the whole corpus (one pair, so the
suite stays fast). Each step edits both copies the same way, waits until each server has applied
it (``* Patched``, ``* Restarted in`` or ``* Serving the error page``), then GETs every route on
both. Steps also say which path the patching server must take: the plain body edits must be
patched (the fast path is real), the traps must restart (a helper used at import, a decorator,
a default argument, a class attribute, a module constant, a closure made at load with other free
variables, ``lru_cache``, a method of a declarative model whose metaclass or ``__init_subclass__``
copies and calls methods, a syntax error, a new route, a module imported after the load). What
requests left behind must be gone after a patch as after a restart: a caller's memo of an edited
helper's result, an ``lru_cache``'d caller of one, a request counter (``app.pristine``).
Error pages are compared by their exception line and the project frames' line numbers.
"""

from __future__ import annotations

import re
import shutil
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import DevServer, geventdev_env, wait_until, write

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

APP = """
from flask import Flask

import aviews
import models
import traps
import views


def create_app():
    app = Flask(__name__)
    for module in (views, traps, models, aviews):
        app.register_blueprint(module.bp)
    return app


app = create_app()
"""

VIEWS = """
import functools

from flask import Blueprint

bp = Blueprint("views", __name__)


def helper(n):
    return n * 2


@bp.route("/")
def index():
    return "index v1"


@bp.route("/calc")
def calc():
    "Calc v1."
    return str(helper(3))


@bp.after_request
def stamp(response):
    response.headers["X-Stamp"] = "stamp v1"
    return response


class Greeter:
    def greet(self, name):
        return f"hello {name}"

    @property
    def label(self):
        return "label v1"


@bp.route("/label")
def label():
    return Greeter().label


@bp.route("/lazy")
def lazy_value():
    import lazy

    return lazy.value()


@bp.route("/greet")
def greet():
    return Greeter().greet("you")


@bp.route("/closure")
def closure():
    a, b = "A", "B"

    def inner():
        return a

    return inner() + b


def render(kind):
    return f"render {kind}"


HANDLER = functools.partial(render, "p")


@bp.route("/partial")
def via_partial():
    return HANDLER()


@bp.route("/boom")
def boom():
    return "no boom yet"


@bp.route("/below")
def below():
    raise LookupError("below")


MEMO = {}
HITS = [0]


def heading():
    return "heading v1"


@bp.route("/memo")
def memo():
    if "page" not in MEMO:  # a caller's cache of the helper's result
        MEMO["page"] = heading() + " (kept)"
    return MEMO["page"]


def banner_text():
    return "banner v1"


@functools.lru_cache(maxsize=None)
def cached_banner():
    return banner_text()


@bp.route("/banner")
def banner():
    return cached_banner()


@bp.route("/hits")
def hits():
    HITS[0] += 1
    return str(HITS[0])
"""

TRAPS = """
import functools
from functools import wraps

from flask import Blueprint

bp = Blueprint("traps", __name__)


def make_title():
    return "title v1"


TITLE = make_title()


def shout(f):
    @wraps(f)
    def wrapper(*args, **kwargs):
        return f(*args, **kwargs).upper()

    return wrapper


@bp.route("/title")
def title():
    return TITLE


@bp.route("/shout")
@shout
def shouted():
    return "quiet v1"


@bp.route("/default")
def default(word="default v1"):
    return word


class Settings:
    GREETING = "class attr v1"


@bp.route("/classattr")
def classattr():
    return Settings.GREETING


LIMIT = "constant v1"


@bp.route("/constant")
def constant():
    return LIMIT


@functools.lru_cache(maxsize=None)
def expensive(n):
    return f"cached v1 {n}"


@bp.route("/cached")
def cached():
    return expensive(1)


def make_view(prefix, suffix):
    def view():
        return prefix + " made v1"

    return view


bp.add_url_rule("/made", "made", make_view("factory", "!"))
"""

MODELS = '''
import types

from flask import Blueprint

bp = Blueprint("models", __name__)


class ModelMeta(type):
    """Like a declarative ORM base: copies each method and calls the table hook at creation."""

    def __new__(mcs, name, bases, namespace):
        cls = super().__new__(mcs, name, bases, namespace)
        for key, value in namespace.items():
            if isinstance(value, types.FunctionType) and not key.startswith("_"):
                setattr(cls, key, types.FunctionType(value.__code__, value.__globals__, key))
        hook = namespace.get("table_name")
        if hook is not None:
            cls.table = hook(cls)
        return cls


class Base(metaclass=ModelMeta):
    pass


class Declarative:
    """Like SQLAlchemy 2's DeclarativeBase: the work happens in __init_subclass__."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.columns = getattr(cls, "define")(cls)


class Order(Declarative):
    def define(cls):
        return "columns v1"

    def show(self):
        return "order v1"


class User(Base):
    def table_name(cls):
        return "users_v1"

    def describe(self):
        return "user v1"


@bp.route("/model")
def model():
    return User.table + " " + User().describe() + " " + Order.columns + " " + Order().show()
'''

AVIEWS = """
import asyncio

from flask import Blueprint

bp = Blueprint("aviews", __name__)


@bp.route("/async")
async def aview():
    await asyncio.sleep(0)
    return "async v1"
"""

FILES = {"app.py": APP, "views.py": VIEWS, "traps.py": TRAPS, "models.py": MODELS}
FILES["aviews.py"] = AVIEWS
FILES["lazy.py"] = 'def value():\n    return "lazy v1"\n'
ROUTES = [
    "/",
    "/calc",
    "/greet",
    "/closure",
    "/partial",
    "/boom",
    "/below",
    "/title",
    "/shout",
    "/default",
    "/classattr",
    "/constant",
    "/cached",
    "/made",
    "/model",
    "/async",
    "/added",
    "/label",
    "/lazy",
    "/memo",
    "/banner",
    "/hits",
]


@dataclass(frozen=True)
class Step:
    name: str
    file: str
    old: str
    new: str
    expect: str  # "patch" or "restart": what the patching server must do


CORPUS = [
    Step("view body", "views.py", '"index v1"', '"index v2, longer"', "patch"),
    Step("helper body", "views.py", "return n * 2", "return n * 20", "patch"),
    Step("method body", "views.py", 'f"hello {name}"', 'f"hi {name}!"', "patch"),
    Step("async view body", "aviews.py", '"async v1"', '"async v2"', "patch"),
    Step("closure: other free variable", "views.py", "        return a\n", "        return b\n",
         "patch"),
    Step("lines move below an edit", "views.py", '    return "index v2, longer"\n',
         '    text = "index v3"\n    text += "!"\n    return text\n', "patch"),
    Step("view raises", "views.py", 'return "no boom yet"', 'raise ValueError("boom v1")', "patch"),
    Step("after_request hook body", "views.py", '"stamp v1"', '"stamp v2"', "patch"),
    Step("property body", "views.py", '"label v1"', '"label v2"', "patch"),
    Step("helper whose result a caller keeps", "views.py", '"heading v1"', '"heading v2"',
         "patch"),
    Step("helper of an lru_cache'd caller", "views.py", '"banner v1"', '"banner v2"', "patch"),
    Step("docstring", "views.py", '"Calc v1."', '"Calc v2."', "restart"),
    Step("module imported after the load", "lazy.py", '"lazy v1"', '"lazy v2"', "restart"),
    Step("partial's target body", "views.py", 'f"render {kind}"', 'f"rendered {kind}"',
         "restart"),
    Step("helper called at import", "traps.py", '"title v1"', '"title v2"', "restart"),
    Step("decorator body", "traps.py", ".upper()", ".upper() + '!'", "restart"),
    Step("decorated view body", "traps.py", '"quiet v1"', '"quiet v2"', "restart"),
    Step("default argument", "traps.py", '"default v1"', '"default v2"', "restart"),
    Step("class attribute", "traps.py", '"class attr v1"', '"class attr v2"', "restart"),
    Step("module constant", "traps.py", '"constant v1"', '"constant v2"', "restart"),
    Step("lru_cache body", "traps.py", 'f"cached v1 {n}"', 'f"cached v2 {n}"', "restart"),
    Step("closure made at load, other free variable", "traps.py", 'prefix + " made v1"',
         'suffix + " made v2"', "restart"),
    Step("model hook called by the metaclass", "models.py", '"users_v1"', '"users_v2"', "restart"),
    Step("model method", "models.py", '"user v1"', '"user v2"', "restart"),
    Step("hook called by __init_subclass__", "models.py", '"columns v1"', '"columns v2"',
         "restart"),
    Step("method of an __init_subclass__ model", "models.py", '"order v1"', '"order v2"',
         "restart"),
    Step("syntax error", "views.py", 'f"hi {name}!"', '"broken', "restart"),
    Step("fixed again", "views.py", '"broken', 'f"hi {name}!!"', "restart"),
    Step("new route", "views.py", "@bp.route(\"/below\")",
         '@bp.route("/added")\ndef added():\n    return "added"\n\n\n@bp.route("/below")',
         "restart"),
    Step("view body after a restart", "views.py", 'raise ValueError("boom v1")', 'return "calm"',
         "patch"),
]  # fmt: skip

FRAME = re.compile(r'<cite class="filename">"([^"]+)"</cite>,\s*line <em class="line">(\d+)</em>')


def answer(server: DevServer, path: str) -> tuple[int, str]:
    """What a route answers, comparable across processes: the body, or for an error page its
    title (the exception) and the project frames (file name, line)."""
    response = requests.get(server.url + path, timeout=15)
    text = response.text.replace(str(server.project), "<project>")
    if response.status_code != 500:
        return response.status_code, f"{text} [X-Stamp: {response.headers.get('X-Stamp')}]"
    title = re.search(r"<title>(.*?)</title>", text, re.S)
    frames = [(Path(f).name, line) for f, line in FRAME.findall(text) if "<project>" in f]
    return 500, f"{title.group(1).strip() if title else '?'} {frames}"


def applied(server: DevServer) -> int:
    log = server.log()
    swaps = log.count(" * Restarted in ") + log.count(" * Serving the error page")
    return log.count(" * Patched ") + swaps


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DevServer, DevServer]]:
    """One server that patches, one that restarts, each on its own copy of the project."""
    root = tmp_path_factory.mktemp("corpus")
    servers = []
    env = geventdev_env(GEVENTDEV_PATCH="1")
    env.pop("PYTHONDONTWRITEBYTECODE")  # reloading is judged with bytecode caches on
    for name, extra in (("patch", []), ("restart", ["--no-patch"])):
        project = root / name
        for file, text in FILES.items():
            write(project / file, text)
        argv = [sys.executable, "-m", "geventdev", "app.py", "--port", "0", *extra]
        servers.append(DevServer(project, root / f"{name}.log", argv, env))
    try:
        for server in servers:
            server.wait_for_text("/", "index v1", timeout=30)
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(root / "patch" / "__pycache__", ignore_errors=True)


def test_every_edit_answers_like_a_cold_restart(pair: tuple[DevServer, DevServer]) -> None:
    patching, restarting = pair
    for server in pair:
        assert [answer(server, r) for r in ROUTES]  # the lru_cache fills before its edit
    taken = []
    for number, step in enumerate(CORPUS):
        counts = [applied(server) for server in pair]
        for server in pair:
            path = server.project / step.file
            text = path.read_text()
            assert step.old in text, (step.name, text)
            # A comment of a new length: every save changes the file's size, so a same-second
            # edit can never be served from a stale .pyc (what a restart reads).
            edited = text.replace(step.old, step.new, 1).split("\n# edit")[0]
            path.write_text(edited + "\n# edit" + "." * (number + 1) + "\n")
        for server, count in zip(pair, counts, strict=True):
            wait_until(lambda s=server, c=count: applied(s) > c, 30, f"{step.name} applied")
            server.child()  # a restart's old process may accept for a moment after the log line
        taken.append((step.name, "patch" if _last_is_patch(patching) else "restart"))
        for route in ROUTES:
            fast, cold = answer(patching, route), answer(restarting, route)
            assert fast == cold, f"step {step.name!r}, {route}: {fast} != {cold}"
    expected = [(step.name, step.expect) for step in CORPUS]
    assert taken == expected, textwrap.indent(patching.log(), "  ")


def _last_is_patch(server: DevServer) -> bool:
    lines = [
        line
        for line in server.log().splitlines()
        if line.startswith((" * Patched ", " * Restarted in ", " * Serving the error page"))
    ]
    return bool(lines) and lines[-1].startswith(" * Patched ")
