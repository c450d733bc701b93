"""In-place patching: the monitor's decisions (``Plan``, stepped without processes) and the app
side's static reading of the project (``app.patch``), without servers. The differential corpus
with real servers is tests/test_patch_corpus.py."""

from __future__ import annotations

import signal
import sys
import textwrap
import time
import types

from geventdev.app.patch import LoadGraph, skeleton, summarize
from geventdev.monitor.plan import (
    PATCH_TIMEOUT,
    Activate,
    Changes,
    ChildExited,
    ChildMessage,
    Log,
    Notify,
    Plan,
    Restart,
    Signal,
    Spawn,
    Start,
    Stop,
    Tick,
    TryPatch,
)
from geventdev.protocol import Message

READY = Message("ready", {"pid": 1})
VIEW = "/p/views.py"


def serving(standby: bool = False) -> Plan:
    plan = Plan(graceful_timeout=5.0, cwd="/p", patch=True, standby=standby)
    plan.step(Start(), 0.0)
    plan.step(ChildMessage(1, READY), 0.0)
    return plan


def patched(ok: bool, log: str) -> Message:
    return Message("patched", {"ok": ok, "log": log})


def test_a_python_edit_asks_the_app_to_patch_before_any_restart() -> None:
    plan = serving()
    assert plan.step(Changes({VIEW: "restart"}), 1.0) == [TryPatch(1, (VIEW,))]
    line = " * Patched 'views.py' in place: edit() in 4 ms"
    assert plan.step(ChildMessage(1, patched(True, line)), 1.01) == [Log(line)]
    assert plan.patching is None and plan.next_deadline() is None


def test_a_refused_patch_is_the_usual_restart() -> None:
    plan = serving()
    plan.step(Changes({VIEW: "restart"}), 1.0)
    actions = plan.step(ChildMessage(1, patched(False, "edit() may run while the app loads")), 1.0)
    assert actions == [
        Log(" * Not patched in place: edit() may run while the app loads"),
        Log(" * Detected change in 'views.py', restarting"),
        Spawn(2),
    ]


def test_a_refused_patch_uses_the_warm_standby() -> None:
    plan = serving(standby=True)  # its "ready" started standby 2
    plan.step(ChildMessage(2, Message("standby", {"paths": []})), 0.5)
    assert plan.step(Changes({VIEW: "restart"}), 1.0) == [TryPatch(1, (VIEW,))]
    actions = plan.step(ChildMessage(1, patched(False, "no")), 1.0)
    assert actions[-1] == Activate(2, (VIEW,), app=3)


def test_a_patch_starts_no_standby_beside_the_one_its_app_process_came_from() -> None:
    """The standby stopped before the project's first module; a new one stopping before the
    patched file would make the next structural edit faster, but the old one is the parent of
    the app process a patch keeps: it would stay too, retired, a third copy in memory. The
    restart of that structural edit starts the new standby (``_on_ready``)."""
    plan = serving(standby=True)
    plan.step(ChildMessage(2, Message("standby", {"paths": [], "at": "/p/app.py"})), 0.5)
    plan.step(Changes({VIEW: "restart"}), 1.0)
    actions = plan.step(ChildMessage(1, patched(True, " * Patched")), 1.01)
    assert actions == [Log(" * Patched")]
    plan.step(Changes({VIEW: "restart"}), 2.0)
    actions = plan.step(ChildMessage(1, patched(False, "a new route")), 2.01)
    assert actions[-1] == Activate(2, (VIEW,), app=3)
    actions = plan.step(ChildMessage(3, READY), 2.5)
    assert Spawn(4, standby=True, hot=(VIEW,)) in actions


def test_what_is_never_patched_restarts_at_once() -> None:
    plan = serving()
    assert plan.step(Changes({"/p/.env": "restart"}), 1.0)[-1] == Spawn(2)  # env files
    plan = serving()
    assert plan.step(Changes({"/p/data.json": "restart"}), 1.0)[-1] == Spawn(2)  # not .py
    plan = serving()
    assert plan.step(Restart("SIGHUP"), 1.0)[-1] == Spawn(2)  # rs / SIGHUP: full restarts
    plan = Plan(graceful_timeout=5.0, cwd="/p", patch=False)
    plan.step(Start(), 0.0)
    plan.step(ChildMessage(1, READY), 0.0)
    assert plan.step(Changes({VIEW: "restart"}), 1.0)[-1] == Spawn(2)  # --no-patch
    plan = Plan(graceful_timeout=5.0, cwd="/p", patch=True)
    plan.step(Start(), 0.0)  # still loading: nothing to patch
    assert plan.step(Changes({VIEW: "restart"}), 1.0)[-1] == Spawn(2)
    plan = Plan(graceful_timeout=5.0, cwd="/p", patch=True)
    plan.step(Start(), 0.0)
    plan.step(ChildMessage(1, Message("load_error", {"kind": "exception", "error": "x"})), 0.1)
    plan.step(ChildMessage(1, READY), 0.2)  # serving the error page
    assert plan.step(Changes({VIEW: "restart"}), 1.0)[-1] == Spawn(2)


def test_a_file_the_standby_imported_ahead_is_never_patched() -> None:
    plan = serving(standby=True)
    plan.step(ChildMessage(2, Message("standby", {"paths": ["/lib/editable.py"]})), 0.5)
    actions = plan.step(Changes({"/lib/editable.py": "restart"}), 1.0)
    assert TryPatch not in {type(a) for a in actions}
    assert actions[-1] == Spawn(3)  # cold: the standby holds the old copy


def test_a_change_while_a_patch_is_pending_is_taken_once_it_is_answered() -> None:
    """The tail of the same save split off by the debounce under load, or a formatter saving
    again: once the patch is answered, the change is taken as any change (patched again)."""
    plan = serving()
    plan.step(Changes({VIEW: "restart"}), 1.0)
    assert plan.step(Changes({VIEW: "restart"}), 1.1) == []
    actions = plan.step(ChildMessage(1, patched(True, " * Patched")), 1.2)
    assert actions == [Log(" * Patched"), TryPatch(1, (VIEW,))]
    assert plan.patching is not None and plan.patching[1] == frozenset({VIEW})


def test_a_change_while_a_patch_is_pending_restarts_with_it_if_it_is_declined() -> None:
    plan = serving()
    plan.step(Changes({VIEW: "restart"}), 1.0)
    assert plan.step(Changes({"/p/models.py": "restart"}), 1.1) == []
    actions = plan.step(ChildMessage(1, patched(False, "a new route")), 1.2)
    assert actions == [
        Log(" * Not patched in place: a new route"),
        Log(" * Detected change in 'models.py' and 1 more, restarting"),
        Spawn(2),
    ]


def test_an_env_file_while_a_patch_is_pending_restarts_for_both_at_once() -> None:
    plan = serving()
    plan.step(Changes({VIEW: "restart"}), 1.0)
    actions = plan.step(Changes({"/p/.env": "restart"}), 1.1)
    assert actions == [Log(" * Detected change in '.env' and 1 more, restarting"), Spawn(2)]
    assert plan.step(ChildMessage(1, patched(True, " * Patched")), 1.2) == []  # too late


def test_a_change_while_a_patch_is_pending_survives_the_app_dying() -> None:
    plan = serving()
    plan.step(Changes({VIEW: "restart"}), 1.0)
    plan.step(Changes({"/p/models.py": "restart"}), 1.1)
    actions = plan.step(ChildExited(1, -9), 1.2)
    assert Log(" * Detected change in 'models.py', restarting") in actions
    assert actions[-1] == Spawn(2)


def test_an_app_that_never_answers_is_restarted() -> None:
    plan = serving()
    plan.step(Changes({VIEW: "restart"}), 1.0)
    assert plan.next_deadline() == 1.0 + PATCH_TIMEOUT
    assert plan.step(Tick(), 1.5) == []
    actions = plan.step(Tick(), 1.0 + PATCH_TIMEOUT)
    assert actions[0] == Log(" * Not patched in place: no answer")
    assert actions[-1] == Spawn(2)


def test_an_app_that_dies_while_patching_is_reported_once() -> None:
    plan = serving()
    plan.step(Changes({VIEW: "restart"}), 1.0)
    actions = plan.step(ChildExited(1, -signal.SIGKILL), 1.1)
    assert Log(" * App was killed by SIGKILL (out of memory?); waiting for a change") in actions
    assert plan.patching is None and plan.next_deadline() is None


def test_a_restart_by_hand_while_patching_is_one_restart() -> None:
    plan = serving()
    plan.step(Changes({VIEW: "restart"}), 1.0)
    actions = plan.step(Restart("SIGHUP"), 1.1)
    assert actions == [Log(" * Restart requested (SIGHUP), restarting"), Spawn(2)]
    assert plan.step(ChildMessage(1, patched(True, " * Patched")), 1.2) == []


def test_refresh_only_changes_still_notify() -> None:
    plan = serving()
    assert plan.step(Changes({"/p/t.html": "refresh"}), 1.0) == [Notify(1, ("/p/t.html",))]


def test_signals_are_not_sent_for_patches() -> None:
    plan = serving()
    actions = plan.step(Changes({VIEW: "restart"}), 1.0)
    assert not [a for a in actions if isinstance(a, Signal | Spawn)]


# The app side's static reading -------------------------------------------------------------
def src(text: str) -> str:
    return textwrap.dedent(text).lstrip()


MODULE = src(
    '''
    import functools
    from flask import Blueprint

    bp = Blueprint("b", __name__)
    LIMIT = 3


    def title():
        return "T"


    TITLE = title()


    @bp.route("/")
    def index(x=LIMIT):
        """Doc."""
        return TITLE


    @functools.lru_cache
    def cached():
        return 1


    class Model:
        kind = "m"

        def __init__(self):
            self.v = helper()

        def show(self):
            return self.kind
    '''
)


def test_the_skeleton_ignores_bodies_but_not_docstrings_defaults_or_constants() -> None:
    base, _ = skeleton(MODULE)
    assert skeleton(MODULE.replace("return TITLE", "return TITLE + '!'\n    pass"))[0] == base
    assert skeleton(MODULE.replace("return self.kind", "return 1"))[0] == base
    for before, after in [
        ('"""Doc."""', '"""Other."""'),
        ("x=LIMIT", "x=4"),
        ("LIMIT = 3", "LIMIT = 4"),
        ('kind = "m"', 'kind = "n"'),
        ('@bp.route("/")', '@bp.route("/x")'),
        ("def cached():", "def cached2():"),
    ]:
        assert skeleton(MODULE.replace(before, after))[0] != base, after


def test_the_load_graph_marks_what_module_level_code_calls() -> None:
    summary = summarize(MODULE)
    other = summarize(src("from mod import Model\nINSTANCE = Model()\n\ndef helper():\n    pass\n"))
    graph = LoadGraph.build([summary, other], factories=[])
    assert "title" in graph.at_load  # TITLE = title()
    assert {"__init__", "helper"} <= graph.at_load  # Model() at import, its __init__ calls helper
    assert "index" not in graph.at_load and "show" not in graph.at_load
    assert "cached" in summary.decorated and "index" not in summary.decorated
    assert "create_app" in LoadGraph.build([], factories=[]).at_load
    assert "build" in LoadGraph.build([], factories=["build"]).at_load


def test_a_patch_never_leaves_a_standby_with_the_old_copy_to_activate() -> None:
    """Standby 2 was still importing when views.py was patched, then said it had imported it:
    the next restart must start cold, not activate a process holding the pre-patch code."""
    plan = serving(standby=True)
    assert plan.step(Changes({VIEW: "restart"}), 1.0) == [TryPatch(1, (VIEW,))]
    plan.step(ChildMessage(1, patched(True, " * Patched")), 1.01)
    replaced = plan.step(ChildMessage(2, Message("standby", {"paths": [VIEW]})), 1.5)
    assert replaced == [Signal(2, signal.SIGKILL), Spawn(3, standby=True, hot=(VIEW,))]
    plan.step(ChildMessage(1, Message("ready", {"pid": 1})), 1.6)
    actions = plan.step(ChildMessage(1, patched(False, "no")), 2.0)  # nothing pending: ignored
    assert actions == []
    other = "/p/models.py"
    plan.step(Changes({other: "restart"}), 3.0)
    actions = plan.step(ChildMessage(1, patched(False, "a class attribute changed")), 3.0)
    assert not any(isinstance(a, Activate) and a.gen == 2 for a in actions), actions


def test_templates_saved_with_a_patched_file_still_reach_the_app() -> None:
    plan = serving()
    template = "/p/templates/x.html"
    actions = plan.step(Changes({VIEW: "restart", template: "refresh"}), 1.0)
    assert actions == [Notify(1, (template,)), TryPatch(1, (VIEW,))]


def test_ctrl_c_while_a_patch_is_pending_restarts_nothing() -> None:
    plan = serving(standby=True)
    plan.step(ChildMessage(2, Message("standby", {"paths": []})), 0.5)
    plan.step(Changes({VIEW: "restart"}), 1.0)
    plan.step(Stop(signal.SIGINT), 1.5)
    late = plan.step(Tick(), 1.0 + PATCH_TIMEOUT + 0.1)
    assert not any(isinstance(a, (Log, Activate, Spawn)) for a in late), late
    assert plan.step(ChildMessage(1, patched(True, " * Patched")), 4.0) == []


def test_a_standby_being_killed_is_never_activated() -> None:
    plan = serving(standby=True)
    plan.step(ChildMessage(2, Message("standby", {"paths": []})), 0.5)
    plan.step(Changes({"/p/.env": "restart"}), 1.0)  # cold: standby 2 is killed, 3 spawned
    actions = plan.step(Changes({"/p/other.txt": "restart"}), 1.05)  # before 2's exit arrives
    assert Activate(2) not in actions, actions


def test_names_a_framework_calls_by_string_or_by_convention_run_at_load() -> None:
    """Django's settings name classes in strings (MIDDLEWARE, LOGGING factories) and call
    ``AppConfig.ready`` by name: an edit there must restart."""
    settings = summarize('MIDDLEWARE = ["blog.middleware.Timing", "app:factory"]\n')
    middleware = summarize(
        textwrap.dedent(
            """
            class Timing:
                def __init__(self, get_response):
                    self.get_response = get_response

            def factory():
                return 1

            class BlogConfig:
                def ready(self):
                    from . import signals
            """
        )
    )
    at_load = LoadGraph.build([settings, middleware], []).at_load
    assert {"Timing", "__init__", "factory", "ready"} <= at_load


def test_a_project_module_first_imported_after_the_load_counts_in_the_load_graph(
    tmp_path, monkeypatch
) -> None:
    """Django imports ROOT_URLCONF on the first request: what its module-level code calls ran
    in this process, so an edit of it must restart, not be patched."""
    from geventdev.app.patch import Patcher

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "lazy_urls_mod.py").write_text("PATTERNS = build_patterns()\n")
    patcher = Patcher({}, 0, "")
    patcher.snapshot()  # the load graph, built from what the load imported (nothing here)
    assert patcher.graph is not None and "build_patterns" not in patcher.graph.at_load
    sys.modules["lazy_urls_mod"] = types.ModuleType("lazy_urls_mod")  # imported by a request
    sys.modules["lazy_urls_mod"].__file__ = str(tmp_path / "lazy_urls_mod.py")
    try:
        patcher._check_late_imports()
    finally:
        sys.modules.pop("lazy_urls_mod", None)
    assert "build_patterns" in patcher.graph.at_load


def test_an_edit_outside_function_bodies_is_declined_without_waiting_for_the_graph(
    tmp_path, monkeypatch
) -> None:
    """A big project's load graph takes seconds after each restart (pgAdmin: 1.4 s); an added
    route is a restart whatever the graph says, so it is declined at once, not after it."""
    from geventdev.app.patch import Patcher

    monkeypatch.chdir(tmp_path)
    views = tmp_path / "views_mod.py"
    views.write_text("def index():\n    return 'a'\n")
    module = types.ModuleType("views_mod")
    module.__file__ = str(views)
    patcher = Patcher({str(views): module}, time.time_ns() + 10**9, "")
    patcher.read_sources()  # what "track" keeps before "ready"; no graph yet
    views.write_text("def index():\n    return 'a'\n\n\ndef added():\n    return 'b'\n")
    assert patcher.lock.acquire(blocking=False)  # prepare() is halfway through the graph
    try:
        outcome = patcher.attempt([str(views)])
    finally:
        patcher.lock.release()
    assert not outcome.ok
    assert outcome.to_message()["log"] == "'views_mod.py' changed outside function bodies"


def test_the_pristine_copy_answers_an_edit_outside_bodies_while_it_builds_the_graph(
    tmp_path, monkeypatch
) -> None:
    """While the load graph is built (seconds for a big project), a patch waits for it; an
    added route needs no graph, so it is answered at once (the restart starts at once)."""
    from geventdev.app import patch
    from geventdev.app.patch import Patcher

    monkeypatch.chdir(tmp_path)
    views = tmp_path / "views_mod.py"
    views.write_text("def index():\n    return 'a'\n")
    module = types.ModuleType("views_mod")
    module.__file__ = str(views)
    patcher = Patcher({str(views): module}, time.time_ns() + 10**9, "")
    patcher.read_sources()
    monkeypatch.setattr(patch, "_patcher", [patcher])
    views.write_text("def index():\n    return 'b'\n")
    assert patch.declined_at_once([str(views)]) is None  # a body edit: it waits for the graph
    views.write_text("def index():\n    return 'b'\n\n\ndef added():\n    return 'c'\n")
    declined = patch.declined_at_once([str(views)])
    assert declined is not None and not declined.ok
    assert declined.log == "'views_mod.py' changed outside function bodies"
    assert patcher.graph is None  # nothing was built for it
