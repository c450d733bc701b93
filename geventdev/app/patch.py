"""In-place patching: an edit inside function bodies swaps their ``__code__`` instead of restarting.

A restart imports the whole project again, so its cost grows with the project; replacing the code
of the edited functions costs the size of the edit. It is taken only when it is provably the same
as a restart, and any doubt means the usual restart (a wrong fast path is worse than a slow one):

- every changed file was imported by this process while it loaded the app (not by a standby
  ahead of time, not lazily later) and was not written since the load began;
- the new source compiles, and is the old one with only the bodies of module-level functions and
  of methods of module-level classes changed: the module blanked of those bodies (docstrings
  kept) is the same AST, so constants, decorators, defaults, signatures, class attributes and
  imports are unchanged;
- no edited function may have run while the app loaded (``may_run_at_load``: a conservative static
  reading of every project module, see ``LoadGraph``), is decorated by anything but a known
  registration decorator (Flask's ``route``, ``errorhandler``, ``property``...: not ``lru_cache``,
  nor a custom wrapper that may cache), is a method of a class with a custom metaclass
  (SQLAlchemy-style declarative models), changes its free variables or its kind (generator,
  coroutine), or is running right now in a greenlet, a thread or a suspended generator;
- every edited function is found alive (``gc``), by the equality of its code with the old source's.

Functions whose code only moved (lines added above them) get their new code too, so tracebacks
show the right lines. Runs in the app process kept as its load left it (``app.pristine``): no
request ever ran there, so nothing computed from the old code at run time survives; the workers
forked from it after a patch start from the new code, as after a restart. Pure but for ``gc``
and the files it reads.
"""

from __future__ import annotations

import ast
import gc
import importlib.util
import os
import sys
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from inspect import CO_OPTIMIZED
from typing import Any

from gevent.lock import Semaphore
from greenlet import greenlet  # type: ignore[import-untyped]

from geventdev.paths import layout

#: Decorators that only register or describe a function and never call it while loading:
#: Flask's (apps and blueprints) and the builtin descriptors. Matched on the last name.
REGISTERING = frozenset(
    {
        "route", "get", "post", "put", "patch", "delete",
        "before_request", "after_request", "teardown_request", "teardown_appcontext",
        "before_app_request", "after_app_request", "teardown_app_request",
        "errorhandler", "app_errorhandler", "register_error_handler",
        "context_processor", "app_context_processor", "shell_context_processor",
        "template_filter", "template_global", "template_test",
        "app_template_filter", "app_template_global", "app_template_test",
        "url_value_preprocessor", "url_defaults", "app_url_value_preprocessor", "app_url_defaults",
        "staticmethod", "classmethod", "property", "setter", "getter", "deleter",
        "abstractmethod", "override",
    }
)  # fmt: skip
#: Functions the loader itself calls (``flask.cli.find_best_app``) without the project naming them.
#: Called by the loader or by a framework while the app loads, by name (Django's
#: ``AppConfig.ready``).
FACTORIES = frozenset({"create_app", "make_app", "ready"})
#: Metaclasses known to keep methods as they are; any other may copy or wrap them.
PLAIN_METACLASSES: tuple[type, ...] = (type,)
#: Modules whose ``__init_subclass__`` only reads method names (Flask's class-based views);
#: any other (SQLAlchemy 2's ``DeclarativeBase``, a project's own) may copy or call methods.
SAFE_HOOKS = frozenset({"builtins", "flask.views"})
#: Slack for file timestamps, which Linux takes from a coarse clock (a jiffy behind).
MTIME_SLACK_NS = 20_000_000
Def = ast.FunctionDef | ast.AsyncFunctionDef


class Declined(Exception):
    """Why an edit needs a restart (one line, shown in the log)."""


def top_defs(tree: ast.Module) -> list[tuple[str, Def, ast.ClassDef | None]]:
    """The patchable functions: module-level ``def``s and methods of module-level classes, with
    their qualified names (``edit``, ``User.save``)."""
    found: list[tuple[str, Def, ast.ClassDef | None]] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found.append((node.name, node, None))
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    found.append((f"{node.name}.{item.name}", item, node))
    return found


def _docstring(node: Def) -> list[ast.stmt]:
    first = node.body[0] if node.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        if isinstance(first.value.value, str):
            return [first]
    return []


def skeleton(source: str) -> tuple[str, dict[str, list[str]]]:
    """The module with the bodies of its patchable functions blanked (docstrings kept, since they
    are read at load by some libraries), dumped without positions; and each of those functions
    dumped whole, by name (a name defined twice, as a property's setter, has two).
    Parses ``source``: raises ``SyntaxError``."""
    tree = ast.parse(source)
    defs: dict[str, list[str]] = {}
    for name, node, _ in top_defs(tree):
        defs.setdefault(name, []).append(ast.dump(node, include_attributes=False))
        node.body = [*_docstring(node), ast.Pass()]
    return ast.dump(tree, include_attributes=False), defs


def _string_names(value: str) -> set[str]:
    """What a string may name for a framework to import and call: the last part of a dotted or
    ``module:attr`` path (``"blog.middleware.Timing"``, ``"app:create"``) or an identifier."""
    last = value.replace(":", ".").rsplit(".", 1)[-1]
    return {last} if last.isidentifier() else set()


def _name_of(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, ast.Attribute):
        return {node.attr}
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) < 200:
        return _string_names(node.value)  # import_string(...), MIDDLEWARE, getattr(m, "f")
    return set()


def _names(nodes: Iterable[ast.AST]) -> set[str]:
    """Every name, attribute name and named-looking string used in ``nodes`` (what code there
    may call)."""
    found: set[str] = set()
    for root in nodes:
        for node in ast.walk(root):
            found |= _name_of(node)
    return found


def decorator_name(node: ast.expr) -> str:
    """``route`` for ``@bp.route("/")``, ``lru_cache`` for ``@functools.lru_cache()``."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


@dataclass
class ModuleSummary:
    """What one module's loading may call: names its module-level code uses, and per function
    (by bare name) the names its body uses."""

    load_names: set[str] = field(default_factory=set)
    bodies: dict[str, set[str]] = field(default_factory=dict)
    classes: dict[str, list[str]] = field(default_factory=dict)  # class -> its method names
    decorated: set[str] = field(default_factory=set)  # defs with a non-registering decorator


def summarize(source: str) -> ModuleSummary:
    """Read one module for ``LoadGraph``. Raises ``SyntaxError``."""
    tree = ast.parse(source)
    summary = ModuleSummary()
    bodies: set[int] = set()
    for name, node, cls in top_defs(tree):
        bare = node.name
        summary.bodies.setdefault(bare, set()).update(_names(node.body))
        bodies.update(id(stmt) for stmt in node.body)
        if cls is not None:
            summary.classes.setdefault(cls.name, []).append(bare)
        if any(decorator_name(d) not in REGISTERING for d in node.decorator_list):
            summary.decorated.add(name)
    stack: list[ast.AST] = [tree]
    while stack:  # everything outside the patchable bodies runs at import
        item = stack.pop()
        if isinstance(item, ast.Import | ast.ImportFrom):
            continue
        summary.load_names |= _name_of(item)
        stack.extend(child for child in ast.iter_child_nodes(item) if id(child) not in bodies)
    return summary


@dataclass
class LoadGraph:
    """Which functions may have run while the app loaded, by name, over the whole project.

    Conservative by construction: a function runs at load if its name is used by code that runs
    at load (module-level code, class bodies, decorators, defaults, of any project module), by
    the body of a function that does, or is a factory the loader calls; every method of a class
    named there whose name is a dunder runs too (``__init__``, ``__init_subclass__``...).
    Names are matched across modules, so ``from a import f`` then ``f()`` marks ``a.f``.
    """

    at_load: set[str] = field(default_factory=set)

    @classmethod
    def build(cls, summaries: Iterable[ModuleSummary], factories: Iterable[str]) -> LoadGraph:
        summaries = list(summaries)
        bodies: dict[str, set[str]] = {}
        dunders: dict[str, set[str]] = {}
        for s in summaries:
            for name, used in s.bodies.items():
                bodies.setdefault(name, set()).update(used)
            for klass, methods in s.classes.items():
                found = {m for m in methods if m.startswith("__") and m.endswith("__")}
                dunders.setdefault(klass, set()).update(found)
        todo = set(FACTORIES) | set(factories)
        for s in summaries:
            todo |= s.load_names
        seen: set[str] = set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            todo |= bodies.get(name, set()) - seen
            todo |= dunders.get(name, set()) - seen
        return cls(seen)


@dataclass(frozen=True)
class Outcome:
    """What the monitor is told: ``ok`` (patched, ``log`` says what) or why not."""

    ok: bool
    log: str

    def to_message(self) -> dict[str, Any]:
        return {"ok": self.ok, "log": self.log}


@dataclass
class Tracked:
    module: types.ModuleType
    source: str | None  # None: written while loading, or unreadable: never patched
    #: The source's skeleton, functions and code objects, kept from the last patch.
    parsed: tuple[str, dict[str, list[str]], dict[str, types.CodeType]] | None = None


class Patcher:
    """The app process's record of the project as loaded, and the patching itself."""

    def __init__(self, modules: dict[str, types.ModuleType], load_started_ns: int, factory: str):
        self.known = frozenset(sys.modules)  # what the load imported (and what came before)
        self.load_started_ns = load_started_ns
        self.factory = factory
        self.modules = modules  # real path -> module imported while loading the app
        self.tracked: dict[str, Tracked] = {}
        self.raw: dict[str, bytes | None] = {}
        self.lock = Semaphore()
        self.graph: LoadGraph | None = None
        self.summaries: dict[str, ModuleSummary] = {}
        self.cwd = os.getcwd()
        #: Live functions and running code, when they cannot change (``index_heap``).
        self.heap: tuple[dict[str, list[types.FunctionType]], set[types.CodeType]] | None = None

    def read_sources(self) -> None:
        """Keep every tracked file's bytes as the load saw them, at once (before "ready": an
        edit right after must find the old text). A file written since the load began is never
        patched in this process: what the load read of it is unknown."""
        limit = self.load_started_ns - MTIME_SLACK_NS
        for path, module in self.modules.items():
            data = None
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
                if os.stat(path).st_mtime_ns >= limit:
                    data = None
            except OSError:
                data = None
            self.raw[path] = data
            self.tracked[path] = Tracked(module, None)

    def snapshot(self, pause: Callable[[], object] = lambda: None) -> None:
        """Decode the sources and build the load graph (while the first worker starts, off the
        restart's critical path, or by the first patch). ``pause`` is called between files, so
        the pristine copy serves its channels meanwhile."""
        summaries = []
        for path, data in self.raw.items():
            pause()  # a look at the channels (one ``select``): a file is ~1 ms of parsing
            tracked = self.tracked[path]
            try:
                tracked.source = importlib.util.decode_source(data) if data is not None else None
                if tracked.source is not None:
                    summary = summarize(tracked.source)
                    self.summaries[path] = summary
                    summaries.append(summary)
            except (SyntaxError, ValueError, UnicodeDecodeError):
                tracked.source = None
        self.graph = LoadGraph.build(summaries, [self.factory] if self.factory else [])
        self.raw.clear()

    def structural(self, paths: list[str]) -> Outcome | None:
        """The answer to an edit outside function bodies, which needs no load graph; None if
        that is not the case."""
        try:
            for path in paths:
                self._decline_structural(os.path.realpath(path))
        except Declined as exc:
            return Outcome(False, str(exc))
        return None

    def attempt(self, paths: list[str]) -> Outcome:
        """Patch every file in ``paths``, or none of them."""
        declined = self.structural(paths)
        if declined is not None:
            return declined
        with self.lock:  # a graph being built (``prepare_pristine``)
            if self.graph is None:
                self.snapshot()
        try:
            self._check_late_imports()
            plans = [self._plan(os.path.realpath(p)) for p in paths]
            self._apply(plans)
        except Declined as exc:
            return Outcome(False, str(exc))
        parts = []
        for plan in plans:
            rel = os.path.relpath(plan.path, self.cwd)
            names = ", ".join(f"{n}()" for n in plan.edited) or "nothing to run changed"
            parts.append(f"{rel!r} in place: {names}")
            tracked = self.tracked[plan.path]
            tracked.source, tracked.parsed = plan.new_source, plan.parsed
        return Outcome(True, f" * Patched {'; '.join(parts)} in {{ms}} ms")

    def _decline_structural(self, path: str) -> None:
        """An edit outside function bodies is a restart whatever the load graph says: say so
        at once, without waiting for the graph, which a big project builds for seconds after
        each restart (pgAdmin's 1,080 modules: 1.4 s). Anything unclear is left to ``_plan``."""
        tracked = self.tracked.get(path)
        old = tracked.source if tracked is not None else None
        raw = self.raw.get(path)
        try:
            if old is None and raw is not None:
                old = importlib.util.decode_source(raw)
            if old is None:
                return
            with open(path, "rb") as fh:
                new = importlib.util.decode_source(fh.read())
            changed = skeleton(new)[0] != skeleton(old)[0]
        except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
            return
        if changed:
            rel = os.path.relpath(path, self.cwd)
            raise Declined(f"{rel!r} changed outside function bodies")

    def _check_late_imports(self) -> None:
        """A project module first imported by a request (Django imports ``ROOT_URLCONF`` lazily,
        a view's ``from . import reports``) ran module-level code the load graph has not read:
        read it now, so what it called counts as run at load; one that cannot be read declines."""
        late: list[ModuleSummary] = []
        for name, module in list(sys.modules.items()):
            path = getattr(module, "__file__", None)
            if name in self.known or not isinstance(path, str) or not path.endswith(".py"):
                continue
            real = os.path.realpath(path)
            if not layout().is_project(real) or real in self.summaries:
                continue
            try:
                with open(real, "rb") as fh:
                    late.append(summarize(importlib.util.decode_source(fh.read())))
            except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
                rel = os.path.relpath(path, self.cwd)
                raise Declined(f"{rel!r} was imported after the app loaded, unreadable") from None
            self.summaries[real] = late[-1]
        if late:
            self.known = frozenset(sys.modules)
            self.graph = LoadGraph.build(
                self.summaries.values(), [self.factory] if self.factory else []
            )

    def _plan(self, path: str) -> FilePlan:
        tracked = self.tracked.get(path)
        rel = os.path.relpath(path, self.cwd)
        if tracked is None:
            raise Declined(f"{rel!r} was not imported while the app loaded")
        if tracked.source is None:
            raise Declined(f"{rel!r} changed while the app loaded")
        module = tracked.module
        filename = getattr(module, "__file__", None) or path
        try:
            with open(path, "rb") as fh:
                new_source = importlib.util.decode_source(fh.read())
            new_skeleton, new_defs = skeleton(new_source)
            new_code = compile(new_source, filename, "exec", dont_inherit=True)
        except (OSError, SyntaxError, ValueError, UnicodeDecodeError) as exc:
            raise Declined(f"{rel!r} does not compile ({type(exc).__name__})") from None
        if tracked.parsed is None:
            old_code = compile(tracked.source, filename, "exec", dont_inherit=True)
            tracked.parsed = (*skeleton(tracked.source), code_objects(old_code))
        old_skeleton, old_defs, old_codes = tracked.parsed
        if new_skeleton != old_skeleton:
            raise Declined(f"{rel!r} changed outside function bodies")
        plan = FilePlan(path, rel, module, filename, new_source)
        plan.old_codes, plan.new_codes = old_codes, code_objects(new_code)
        plan.parsed = (new_skeleton, new_defs, plan.new_codes)
        plan.edited = [n for n in old_defs if old_defs[n] != new_defs[n]]
        self._check_edited(plan)
        return plan

    def _check_edited(self, plan: FilePlan) -> None:
        summary = self.summaries.get(plan.path, ModuleSummary())
        at_load = self.graph.at_load if self.graph else set()
        for name in plan.edited:
            bare = name.rsplit(".", 1)[-1]
            if bare in at_load:
                raise Declined(f"{name}() may run while the app loads")
            if name in summary.decorated:
                raise Declined(f"{name}() has a decorator that may call or cache it")
            old, new = plan.old_codes.get(name), plan.new_codes.get(name)
            if old is None or new is None:
                raise Declined(f"{name}() is defined twice in {plan.rel!r}")
            if old.co_freevars != new.co_freevars or old.co_flags != new.co_flags:
                raise Declined(f"{name}() changes its free variables or its kind")
            if "." in name:
                klass = getattr(plan.module, name.split(".", 1)[0], None)
                if not isinstance(klass, type) or type(klass) not in PLAIN_METACLASSES:
                    raise Declined(f"{name}() is a method of a class with a metaclass")
                if any(
                    "__init_subclass__" in vars(base) and base.__module__ not in SAFE_HOOKS
                    for base in klass.__mro__
                ):
                    raise Declined(f"{name}() is a method of a class with __init_subclass__")

    def _apply(self, plans: list[FilePlan]) -> None:
        """Find the live functions and frames, check, then swap all at once."""
        live, running = self.heap or scan_heap({plan.filename for plan in plans})
        swaps: list[tuple[types.FunctionType, types.CodeType]] = []
        for plan in plans:
            swaps += plan.swaps(live.get(plan.filename, []), running)
        for function, code in swaps:
            function.__code__ = code

    def index_heap(self) -> None:
        """Scan the heap once, for every patch to come: in a process where nothing runs (the
        pristine copy, ``app.pristine``), no function is made and no frame moves; a patch
        swaps code, never functions."""
        files = {getattr(t.module, "__file__", None) or path for path, t in self.tracked.items()}
        self.heap = scan_heap(files)


def scan_heap(
    files: set[str],
) -> tuple[dict[str, list[types.FunctionType]], set[types.CodeType]]:
    """The live functions compiled from ``files``, by file, and the code of every frame on a
    stack (threads, greenlets, suspended generators and coroutines)."""
    live: dict[str, list[types.FunctionType]] = {}
    frames: list[types.FrameType] = list(sys._current_frames().values())
    # One pass over the heap (~10 ms per 100k objects), typed by a set lookup: isinstance per
    # object would cost several times more.
    wanted = {types.FunctionType, types.GeneratorType, types.CoroutineType, *_subclasses()}
    for obj in [o for o in gc.get_objects() if type(o) in wanted]:
        if type(obj) is types.FunctionType:
            filename = obj.__code__.co_filename
            if filename in files:
                live.setdefault(filename, []).append(obj)
            continue
        frame = getattr(obj, "gr_frame", None) or getattr(obj, "gi_frame", None)
        frame = frame or getattr(obj, "cr_frame", None)
        if frame is not None:
            frames.append(frame)
    running = set()
    for frame in frames:
        f: types.FrameType | None = frame
        while f is not None:
            running.add(f.f_code)
            f = f.f_back
    return live, running


COMPREHENSIONS = frozenset({"<listcomp>", "<setcomp>", "<dictcomp>", "<genexpr>"})
#: Python 3.10 has no ``co_qualname``: the names ``code_objects`` gave the code it walked.
_QUALNAMES: dict[types.CodeType, str] = {}


def qualname(code: types.CodeType) -> str:
    """``code.co_qualname`` (Python 3.11+); on 3.10 the name ``code_objects`` derived."""
    name = getattr(code, "co_qualname", None)
    return name if isinstance(name, str) else _QUALNAMES.get(code, code.co_name)


def nested_qualname(const: types.CodeType, parent: types.CodeType, parent_name: str) -> str:
    """The qualified name of ``const`` defined in ``parent`` (named ``parent_name``, "" for the
    module): what 3.11's ``co_qualname`` holds (a function's locals get ``.<locals>.``, a class
    body's methods do not)."""
    if sys.version_info >= (3, 11):
        return const.co_qualname
    if not parent_name:
        return const.co_name
    # a function's or lambda's locals (a class body is not optimized; CPython's compiler gives
    # a comprehension's children no ".<locals>", compiler_set_qualname)
    if parent.co_flags & CO_OPTIMIZED and parent.co_name not in COMPREHENSIONS:
        return f"{parent_name}.<locals>.{const.co_name}"
    return f"{parent_name}.{const.co_name}"


def code_objects(code: types.CodeType) -> dict[str, types.CodeType]:
    """Every code object under a module's, by qualified name; a name used twice (lambdas, a
    property's setter) is left out, so a live function with it is never swapped and an edit to
    it is declined."""
    found: dict[str, types.CodeType] = {}
    twice: set[str] = set()
    stack = [(code, "")]
    while stack:
        current, current_name = stack.pop()
        for const in current.co_consts:
            if isinstance(const, types.CodeType):
                name = nested_qualname(const, current, current_name)
                if sys.version_info < (3, 11):
                    _QUALNAMES[const] = name
                if name in found:
                    twice.add(name)
                found[name] = const
                stack.append((const, name))
    for name in twice:
        del found[name]
    return found


@dataclass
class FilePlan:
    path: str
    rel: str
    module: types.ModuleType
    filename: str
    new_source: str
    old_codes: dict[str, types.CodeType] = field(default_factory=dict)
    new_codes: dict[str, types.CodeType] = field(default_factory=dict)
    edited: list[str] = field(default_factory=list)
    parsed: tuple[str, dict[str, list[str]], dict[str, types.CodeType]] | None = None

    def swaps(
        self, functions: list[types.FunctionType], running: set[types.CodeType]
    ) -> list[tuple[types.FunctionType, types.CodeType]]:
        """New code for each live function of this file; raises ``Declined``."""
        old_by_code = {code: name for name, code in self.old_codes.items()}
        found: set[str] = set()
        swaps = []
        for function in functions:
            name = old_by_code.get(function.__code__)
            if name is None:
                continue  # compiled by something else (exec, a template): not ours to touch
            new = self.new_codes.get(name)
            inside = next((e for e in self.edited if name.startswith(e + ".<locals>.")), None)
            if inside is not None:
                raise Declined(f"a function made by {inside}() is alive")
            if new is None:
                raise Declined(f"{name}() has no single counterpart in the new {self.rel!r}")
            if name in self.edited:
                found.add(name)
            if new != function.__code__:
                swaps.append((function, new))
        for name in self.edited:
            old = self.old_codes[name]
            nested = name + ".<locals>."
            if old in running or any(
                c.co_filename == self.filename and qualname(c).startswith(nested) for c in running
            ):
                raise Declined(f"{name}() is running right now")
            if name not in found:
                raise Declined(f"{name}() is not alive under its name (rebound or wrapped)")
        return swaps


def _subclasses() -> set[type]:
    """``greenlet`` and every subclass of it defined so far (gevent's ``Greenlet``, its hub...)."""
    found: set[type] = set()
    todo: list[type] = [greenlet]
    while todo:
        klass = todo.pop()
        if klass not in found:
            found.add(klass)
            todo.extend(klass.__subclasses__())
    return found


_patcher: list[Patcher] = []


def track(before: Iterable[str], load_started_ns: int, files: Iterable[str], target: str) -> None:
    """After a successful load: remember the project modules imported by it (not those already
    in ``sys.modules`` before: a standby imported them ahead)."""
    wanted = {os.path.realpath(f) for f in files}
    skip = set(before)
    modules: dict[str, types.ModuleType] = {}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path or name in skip:
            continue
        real = os.path.realpath(path)
        if real in wanted:
            if real in modules:  # imported under two names: one patch would miss the other
                wanted.discard(real)
                del modules[real]
                continue
            modules[real] = module
    factory = target.partition(":")[2].partition("(")[0].strip() if target else ""
    patcher = Patcher(modules, load_started_ns, factory)
    patcher.read_sources()
    _patcher[:] = [patcher]


def prepare_pristine(pause: Callable[[], object]) -> None:
    """In the pristine copy (``app.pristine``), while its first worker starts, so a first patch
    pays nothing: read the sources and build the load graph, calling ``pause`` every few files
    (it serves the channels), then index the heap's functions once (a patch scans nothing)."""
    for patcher in _patcher:
        with patcher.lock:
            if patcher.graph is None:
                patcher.snapshot(pause=pause)
            pause()
            patcher.index_heap()


_declined: list[str] = []


def decline(reason: str) -> None:
    """Patch nothing in this process: every ``attempt`` answers ``reason``, and what ``track``
    kept is dropped (a big project's sources and load graph are tens of MB)."""
    _declined[:] = [reason]
    _patcher.clear()


def declined_at_once(paths: list[str]) -> Outcome | None:
    """An answer that needs no load graph (an edit outside function bodies), or None: asked
    while the graph is being built, which takes seconds in a big project."""
    if _declined:
        return Outcome(False, _declined[0])
    return _patcher[0].structural(paths) if _patcher else None


def attempt(paths: list[str]) -> Outcome:
    """Patch ``paths`` in this process, or say why not (no app loaded: always not). The line
    of a patch says "in {ms} ms": the caller puts in the time until it serves."""
    if _declined:
        return Outcome(False, _declined[0])
    if not _patcher:
        return Outcome(False, "the app is not loaded")
    try:
        return _patcher[0].attempt(paths)
    except Exception as exc:  # noqa: BLE001 - any surprise means the safe path: restart
        return Outcome(False, f"unexpected {type(exc).__name__}: {exc}")
