"""The monitor's decisions, stepped without processes (supervisor.Plan)."""

from __future__ import annotations

import signal

from geventdev.monitor.plan import (
    KILL_GRACE,
    Activate,
    Changes,
    ChildExited,
    ChildMessage,
    Drain,
    Exit,
    Fallback,
    Log,
    Notify,
    Plan,
    Remember,
    Restart,
    Signal,
    Spawn,
    Start,
    Stop,
    Tick,
    Watch,
    describe_exit,
)
from geventdev.protocol import Message

READY = Message("ready", {"pid": 1})
DRAINING = Message("draining", {})


def started(now: float = 0.0) -> Plan:
    plan = Plan(graceful_timeout=5.0, cwd="/p")
    assert plan.step(Start(), now) == [Spawn(1)]
    assert plan.step(ChildMessage(1, READY), now) == []
    return plan


def test_a_change_overlaps_the_new_child_with_the_old() -> None:
    plan = started()
    actions = plan.step(Changes({"/p/app.py": "restart"}), 10.0)
    assert actions == [Log(" * Detected change in 'app.py', restarting"), Spawn(2)]
    # the old child keeps serving until the new one is ready, then is told to drain
    actions = plan.step(ChildMessage(2, READY), 10.25)
    assert actions == [Drain(1, 5.0)]
    assert plan.next_deadline() == 10.25 + 5.0 + KILL_GRACE
    # "Restarted" once the old one no longer accepts: every new connection is the new code's
    assert plan.step(ChildMessage(1, DRAINING), 10.26) == [Log(" * Restarted in 260 ms")]
    assert plan.step(ChildExited(1, 0), 11.0) == []
    assert plan.next_deadline() is None


def test_an_old_child_that_will_not_drain_is_killed() -> None:
    plan = started()
    plan.step(Changes({"/p/app.py": "restart"}), 0.0)
    plan.step(ChildMessage(2, READY), 1.0)
    assert plan.step(Tick(), 1.0 + 5.0) == []
    assert plan.step(Tick(), 1.0 + 5.0 + KILL_GRACE) == [Signal(1, signal.SIGKILL)]
    assert plan.step(Tick(), 100.0) == []  # killed once


def test_refresh_only_changes_notify_the_app_instead_of_restarting() -> None:
    plan = started()
    changes = Changes({"/p/templates/index.html": "refresh", "/p/static/a.css": "refresh"})
    assert plan.step(changes, 1.0) == [Notify(1, ("/p/static/a.css", "/p/templates/index.html"))]
    plan.step(ChildExited(1, 1), 2.0)
    assert plan.step(changes, 3.0) == []  # nobody to tell


def test_many_files_log_once() -> None:
    plan = started()
    batch = {f"/p/pkg/m{i}.py": "restart" for i in range(200)}
    actions = plan.step(Changes(batch), 1.0)
    assert actions[0] == Log(" * Detected change in 'pkg/m0.py' and 199 more, restarting")
    assert actions[1:] == [Spawn(2)]


def test_a_change_during_startup_replaces_the_starting_child() -> None:
    plan = started()
    plan.step(Changes({"/p/app.py": "restart"}), 1.0)
    actions = plan.step(Changes({"/p/app.py": "restart"}), 1.1)
    assert Drain(2, 0.0) in actions and actions[-1] == Spawn(3)
    assert plan.step(ChildMessage(2, READY), 1.2) == []  # a stale generation is ignored
    assert plan.step(ChildMessage(3, READY), 1.3) == [Drain(1, 5.0)]
    assert plan.step(ChildMessage(1, DRAINING), 1.3) == []  # 2 may accept: it said ready
    assert plan.step(ChildExited(2, 0), 1.4) == [Log(" * Restarted in 300 ms")]


def test_a_dead_child_waits_for_a_change_without_respawning() -> None:
    plan = started()
    actions = plan.step(ChildExited(1, -signal.SIGKILL), 5.0)
    assert actions == [
        Log(" * App was killed by SIGKILL (out of memory?); waiting for a change"),
        Fallback("App was killed by SIGKILL (out of memory?)"),
    ]
    assert plan.step(Tick(), 50.0) == []
    assert plan.step(Changes({"/p/app.py": "restart"}), 60.0)[-1] == Spawn(2)


def test_new_code_that_dies_stops_the_old_code_too() -> None:
    plan = started()
    plan.step(Changes({"/p/app.py": "restart"}), 1.0)
    actions = plan.step(ChildExited(2, 3), 1.5)
    assert actions == [
        Log(" * App exited with code 3; waiting for a change"),
        Fallback("App exited with code 3"),
        Drain(1, 5.0),
    ]


def test_app_not_found_at_first_start_exits_2() -> None:
    plan = Plan(graceful_timeout=5.0)
    plan.step(Start(), 0.0)
    error = Message(
        "load_error", {"kind": "not_found", "error": "Could not import 'x'.", "paths": []}
    )
    assert plan.step(ChildMessage(1, error), 0.5) == [
        Log("Error: Could not import 'x'."),
        Signal(1, signal.SIGTERM),  # not serving yet: it ignores SIGINT until it can drain
    ]
    assert plan.step(ChildExited(1, 0), 0.6) == [Exit(2)]


def test_nothing_is_spawned_once_stopping() -> None:
    """The app process reports not_found, then (its error page up) ready: that ready must not
    start a standby nobody will stop, or the monitor waits for it forever."""
    plan = Plan(graceful_timeout=5.0, standby=True)
    plan.step(Start(), 0.0)
    error = Message("load_error", {"kind": "not_found", "error": "nope", "paths": []})
    plan.step(ChildMessage(1, error), 0.5)
    assert plan.step(ChildMessage(1, READY), 0.6) == []
    assert plan.step(Restart("SIGHUP"), 0.7) == []
    assert plan.step(ChildExited(1, 0), 0.8) == [Exit(2)]


def test_app_not_found_after_a_good_start_is_only_watched() -> None:
    plan = started()
    plan.step(Changes({"/p/app.py": "restart"}), 1.0)
    error = Message("load_error", {"kind": "not_found", "error": "gone", "paths": []})
    assert plan.step(ChildMessage(2, error), 1.1) == [
        Log(" * App failed to load: gone; waiting for a change"),
        Watch(()),
    ]


def test_load_errors_keep_their_files_watched() -> None:
    plan = started()
    error = Message("load_error", {"kind": "exception", "error": "x", "paths": ["/elsewhere/m.py"]})
    assert plan.step(ChildMessage(1, error), 1.0) == [
        Log(" * App failed to load: x; waiting for a change"),
        Watch(("/elsewhere/m.py",)),
    ]


def test_stop_interrupts_every_child_then_exits_0() -> None:
    plan = started()
    plan.step(Changes({"/p/app.py": "restart"}), 1.0)
    actions = plan.step(Stop(signal.SIGINT), 2.0)
    assert actions == [Signal(1, signal.SIGINT), Signal(2, signal.SIGTERM)]  # 2 still starts
    assert plan.step(Changes({"/p/app.py": "restart"}), 2.1) == []  # no restarts while stopping
    assert plan.step(ChildExited(1, 0), 2.2) == []
    assert plan.step(ChildExited(2, 0), 2.3) == [Exit(0)]


def test_second_ctrl_c_kills() -> None:
    plan = started()
    plan.step(Stop(signal.SIGINT), 1.0)
    assert plan.step(Stop(signal.SIGINT), 1.2) == [Signal(1, signal.SIGKILL)]


def test_stop_with_no_child_exits_at_once() -> None:
    plan = started()
    plan.step(ChildExited(1, 1), 1.0)
    assert plan.step(Stop(signal.SIGTERM), 2.0) == [Exit(0)]


def test_reload_off_ignores_changes() -> None:
    plan = Plan(graceful_timeout=1.0, reload=False)
    plan.step(Start(), 0.0)
    assert plan.step(Changes({"/p/app.py": "restart"}), 1.0) == []


def test_describe_exit() -> None:
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-signal.SIGTERM) == "was killed by SIGTERM"
    assert describe_exit(-99) == "was killed by signal 99"


def test_manual_restart_overlaps_like_a_change() -> None:
    plan = started()
    actions = plan.step(Restart("SIGHUP"), 1.0)
    assert actions == [Log(" * Restart requested (SIGHUP), restarting"), Spawn(2)]
    ready = Message("ready", {"pid": 2, "import_ms": 42})
    assert plan.step(ChildMessage(2, ready), 1.5) == [Drain(1, 5.0)]
    assert plan.step(ChildExited(1, 0), 1.5) == [Log(" * Restarted in 500 ms (import 42 ms)")]


def test_rs_typed_in_the_child_restarts() -> None:
    plan = started()
    actions = plan.step(ChildMessage(1, Message("restart", {})), 1.0)
    assert actions == [Log(" * Restart requested ('rs'), restarting"), Spawn(2)]


def test_manual_restart_brings_a_dead_app_back_even_without_reload() -> None:
    plan = Plan(graceful_timeout=1.0, reload=False)
    plan.step(Start(), 0.0)
    plan.step(ChildExited(1, 1), 1.0)
    assert plan.step(Restart("SIGHUP"), 2.0)[-1] == Spawn(2)
    plan.step(Stop(signal.SIGINT), 3.0)
    assert plan.step(Restart("SIGHUP"), 3.1) == []


def with_standby(now: float = 0.0) -> Plan:
    plan = Plan(graceful_timeout=5.0, standby=True, cwd="/p", cold_files=frozenset({"/x/my.env"}))
    plan.step(Start(), now)
    assert plan.step(ChildMessage(1, READY), now) == [Spawn(2, standby=True)]
    paused = {"paths": ["/p/vendored.py"], "at": "/p/models.py"}  # it stopped before models.py
    assert plan.step(ChildMessage(2, Message("standby", paused)), now) == []
    return plan


def test_a_change_activates_the_armed_standby() -> None:
    """It forks app process 3, which loads the rest and serves; it stays the standby."""
    plan = with_standby()
    actions = plan.step(Changes({"/p/app.py": "restart"}), 1.0)
    assert actions == [
        Log(" * Detected change in 'app.py', restarting"),
        Activate(2, ("/p/app.py",), app=3),
    ]
    assert plan.step(ChildMessage(3, Message("ready", {"import_ms": 30})), 1.05) == [
        Drain(1, 5.0),
        # 2 was started before app.py was edited: it stops before the project's first module.
        # A new one stops before app.py; 2 serves the next restart until 4 is paused.
        Spawn(4, standby=True, hot=("/p/app.py",)),
    ]
    assert plan.step(ChildMessage(1, DRAINING), 1.06) == [
        Log(" * Restarted in 60 ms (import 30 ms)")
    ]
    assert plan.step(ChildExited(1, 0), 1.1) == []
    # 4 is paused: 2 retires (app 3, forked from it, would die with it).
    assert plan.step(ChildMessage(4, Message("standby", {"paths": []})), 1.5) == [Drain(2, 0.0)]
    actions = plan.step(Changes({"/p/app.py": "restart"}), 2.0)
    assert actions[1:] == [Activate(4, ("/p/app.py",), app=5)]
    assert plan.step(ChildMessage(5, READY), 2.05) == [Drain(3, 5.0)]  # 4 stays the standby
    # The standby reaps the app it forked, and says so: the old one gone, the swap is done.
    assert plan.step(ChildExited(3, 0), 2.1) == [Log(" * Restarted in 100 ms")]
    assert plan.step(ChildExited(2, 0), 2.11) == []  # retired, after its last app
    actions = plan.step(Changes({"/p/app.py": "restart"}), 3.0)
    assert actions[1:] == [Activate(4, ("/p/app.py",), app=6)]  # again: no new standby
    assert plan.step(ChildMessage(6, READY), 3.05) == [Drain(5, 5.0)]
    assert plan.step(ChildExited(6, 3), 4.0)[0] == Log(
        " * App exited with code 3; waiting for a change"
    )


def test_a_standby_paused_before_a_file_edited_last_stays() -> None:
    """It stopped before models.py: while models.py is among the files edited last, a new
    standby would stop there too (or before), so none is started."""
    plan = with_standby()
    seen: set[str] = set()
    for i, path in enumerate(["/p/models.py", "/p/views.py", "/p/models.py"]):
        seen.add(path)
        actions = plan.step(Changes({path: "restart"}), 1.0 + i)
        assert actions[-1] == Activate(2, tuple(sorted(seen)), app=3 + i)
        assert plan.step(ChildMessage(3 + i, READY), 1.1 + i) == [Drain(2 + i if i else 1, 5.0)]


def test_a_standby_activated_before_it_paused_is_replaced_once_it_tells_where_it_stopped() -> None:
    """The edit came while it still imported libraries: it forked the app from there, went on,
    and paused before the project's first module, not before the file edited: a new one."""
    plan = Plan(graceful_timeout=5.0, standby=True, cwd="/p")
    plan.step(Start(), 0.0)
    plan.step(ChildMessage(1, READY), 0.0)
    assert plan.step(Changes({"/p/views.py": "restart"}), 0.1)[1:] == [
        Activate(2, ("/p/views.py",), app=3)
    ]
    assert plan.step(ChildMessage(3, READY), 0.5) == [Drain(1, 5.0)]  # where 2 stops: unknown
    paused = {"paths": [], "at": "/p/app.py"}
    assert plan.step(ChildMessage(2, Message("standby", paused)), 0.8) == [
        Spawn(4, standby=True, hot=("/p/views.py",))
    ]
    paused = {"paths": ["/p/app.py"], "at": "/p/views.py"}
    assert plan.step(ChildMessage(4, Message("standby", paused)), 1.5) == [Drain(2, 0.0)]


def test_a_standby_not_paused_yet_is_activated_and_checks_itself() -> None:
    """It is still importing: only it knows what it will have read by its gate. A ``stale``
    answer (it had read a changed file: app 3 is never forked) starts a cold process at once;
    the standby retires by itself (it exits: it has no app)."""
    plan = Plan(graceful_timeout=5.0, standby=True, cwd="/p")
    plan.step(Start(), 0.0)
    plan.step(ChildMessage(1, READY), 0.0)
    actions = plan.step(Changes({"/p/app.py": "restart"}), 0.1)
    assert actions[1:] == [Activate(2, ("/p/app.py",), app=3)]
    assert plan.step(ChildMessage(2, Message("stale", {"gen": 3})), 0.3) == [Spawn(4)]
    assert 3 not in plan.children
    assert plan.step(ChildMessage(4, READY), 0.6) == [
        Drain(1, 5.0),
        Spawn(5, standby=True, hot=("/p/app.py",)),
    ]
    assert plan.step(ChildExited(2, 0), 0.61) == []  # the stale one: no "App exited" line
    assert plan.step(ChildMessage(1, DRAINING), 0.62) == [Log(" * Restarted in 520 ms")]


def test_a_standby_an_app_was_forked_from_retires_instead_of_being_killed() -> None:
    """Its apps die with it (PR_SET_PDEATHSIG): one no longer wanted stops being a template
    and exits after them. If it dies all the same, the app serving dies with it."""
    plan = with_standby()
    plan.step(Changes({"/p/app.py": "restart"}), 1.0)
    plan.step(ChildMessage(3, READY), 1.1)
    actions = plan.step(Changes({"/p/vendored.py": "restart"}), 2.0)  # 2 read that file
    # 2 retires; 4, the standby started for app.py and still loading, checks itself.
    assert actions[1:] == [Drain(2, 0.0), Activate(4, ("/p/vendored.py",), app=5)]
    assert plan.children[2].role == "retired" and plan.children[2].kill_at is None
    assert plan.step(ChildMessage(5, READY), 2.3) == [Drain(3, 5.0)]  # 4 stays the standby
    assert plan.step(ChildExited(3, 0), 2.4) == []
    assert plan.step(ChildExited(2, 0), 2.41) == []
    # A standby killed under its serving app: the app is gone too.
    plan = with_standby()
    plan.step(Changes({"/p/app.py": "restart"}), 1.0)
    plan.step(ChildMessage(3, READY), 1.1)
    actions = plan.step(ChildExited(2, -signal.SIGKILL), 2.0)
    assert actions[0] == Log(" * App was killed by SIGKILL (out of memory?); waiting for a change")
    assert set(plan.children) == {1, 4}  # the old app, told to drain; the next standby
    # Stopping: the forked app is signalled like any app; the standby exits after it.
    plan = with_standby()
    plan.step(Changes({"/p/app.py": "restart"}), 1.0)
    plan.step(ChildMessage(3, READY), 1.1)
    plan.step(ChildExited(1, 0), 1.2)
    assert plan.step(Stop(signal.SIGINT), 3.0) == [
        Signal(2, signal.SIGTERM),
        Signal(3, signal.SIGINT),
        Signal(4, signal.SIGTERM),
    ]
    assert plan.step(ChildExited(4, 0), 3.2) == []
    assert plan.step(ChildExited(3, 0), 3.5) == []
    assert plan.step(ChildExited(2, 0), 3.51) == [Exit(0)]


def test_the_standby_stops_before_the_files_edited_last() -> None:
    plan = with_standby()
    for i, path in enumerate(["/p/a.py", "/p/b.py", "/p/a.py", "/p/c.py", "/p/d.py", "/p/e.py"]):
        plan.step(Changes({path: "restart", "/p/t.html": "refresh"}), 1.0 + i)
    assert plan.recent == ("/p/e.py", "/p/d.py", "/p/c.py", "/p/a.py")


def test_a_standby_that_searched_a_directory_is_stale_when_a_module_appears_there() -> None:
    """``try: import local_settings`` found nothing while the standby loaded; the file is
    created: activating it would serve without it (a cold start imports it)."""
    plan = with_standby()
    names = ["/p/app.py", "/p/templates"]  # a directory's every entry an import could find
    listing = {"paths": ["/p/app.py"], "listed": ["/p", "/p/pkg"], "names": names}
    plan.step(ChildMessage(2, Message("standby", listing)), 0.5)
    for path, stale in [
        ("/p/local_settings.py", True),  # a new module where it searched
        ("/p/pkg/new/__init__.py", True),  # a new package there
        ("/p/app.py", True),  # read
        ("/p/4913", False),  # an editor's probe file: not importable
        ("/p/templates/x.html", False),  # not searched, not read
        ("/p/uploads/x.png", True),  # a new directory where it searched: could be a package
        ("/elsewhere/x.py", False),
    ]:
        assert plan.children[2].stale(frozenset({path})) is stale, path


def test_a_standby_that_read_a_refreshed_file_is_replaced_at_once() -> None:
    """A file it read while loading (a template rendered at import, data) changed without a
    restart: it would be refused at the next one, so a fresh standby starts now."""
    plan = with_standby()
    data = "/p/data/config.yaml"
    report = {"paths": [data], "listed": [], "names": []}
    plan.step(ChildMessage(2, Message("standby", report)), 0.5)
    actions = plan.step(Changes({data: "refresh"}), 1.0)
    assert actions == [Notify(1, (data,)), Signal(2, signal.SIGKILL), Spawn(3, standby=True)]
    plan.step(ChildMessage(3, Message("standby", report)), 2.0)
    assert plan.step(Changes({data: "refresh"}), 3.0) == [Notify(1, (data,))]  # not again yet
    actions = plan.step(Changes({"/p/views.py": "restart"}), 4.0)
    assert not any(isinstance(a, Activate) for a in actions)  # refused: it read the old data
    assert actions[-2:] == [Signal(3, signal.SIGKILL), Spawn(4)]


def test_changes_to_what_the_standby_imported_restart_cold() -> None:
    plan = with_standby()
    actions = plan.step(Changes({"/p/vendored.py": "restart"}), 1.0)
    assert actions[1:] == [Signal(2, signal.SIGKILL), Spawn(3)]


def test_env_files_and_manual_restarts_restart_cold() -> None:
    for event in (
        Changes({"/p/.env": "restart"}),
        Changes({"/x/my.env": "restart"}),
        Restart("SIGHUP"),
    ):
        plan = with_standby()
        assert plan.step(event, 1.0)[1:] == [Signal(2, signal.SIGKILL), Spawn(3)]


def test_a_dead_standby_is_forgotten_quietly_and_stop_includes_it() -> None:
    plan = with_standby()
    assert plan.step(ChildExited(2, 1), 1.0) == []
    assert plan.step(Changes({"/p/app.py": "restart"}), 2.0)[-1] == Spawn(3)
    plan = with_standby()
    assert plan.step(Stop(signal.SIGINT), 1.0) == [
        Signal(1, signal.SIGINT),
        Signal(2, signal.SIGTERM),  # the waiting standby
    ]


def test_a_load_that_failed_is_announced_as_the_error_page_not_as_restarted() -> None:
    plan = started()
    plan.step(Changes({"/p/app.py": "restart"}), 1.0)
    error = Message("load_error", {"kind": "exception", "error": "SyntaxError: x", "paths": []})
    plan.step(ChildMessage(2, error), 1.1)
    assert plan.step(ChildMessage(2, READY), 1.15) == [Drain(1, 5.0)]
    assert plan.step(ChildMessage(1, DRAINING), 1.2) == [
        Log(" * Serving the error page (switched in 200 ms)")
    ]


def test_a_change_before_the_old_code_stops_accepting_announces_nothing_stale() -> None:
    plan = started()
    plan.step(Changes({"/p/app.py": "restart"}), 1.0)
    plan.step(ChildMessage(2, READY), 1.1)
    plan.step(Changes({"/p/app.py": "restart"}), 1.2)  # 2 is stale already
    assert plan.step(ChildMessage(1, DRAINING), 1.3) == []
    assert plan.step(ChildMessage(3, READY), 1.5) == [Drain(2, 5.0)]
    assert plan.step(ChildMessage(2, DRAINING), 1.6) == [Log(" * Restarted in 400 ms")]


def test_with_no_older_process_restarted_is_logged_at_ready() -> None:
    plan = started()
    plan.step(ChildExited(1, -signal.SIGKILL), 1.0)
    plan.step(Changes({"/p/app.py": "restart"}), 2.0)
    assert plan.step(ChildMessage(2, READY), 2.1) == [Log(" * Restarted in 100 ms")]


def test_a_cold_start_is_forked_by_a_new_standby_once_it_paused() -> None:
    """With ``fork_cold`` (the monitor's setting with the standby on), a cold start is a new
    standby told at once to fork the app where it pauses; it stays, and no other starts."""
    plan = Plan(graceful_timeout=5.0, standby=True, fork_cold=True, cwd="/p")
    assert plan.step(Start(), 0.0) == [Spawn(1, standby=True), Activate(1, (), app=2, wait=True)]
    paused = {"paths": [], "at": "/p/app.py"}
    assert plan.step(ChildMessage(1, Message("standby", paused)), 0.5) == []
    assert plan.step(ChildMessage(2, READY), 0.6) == []  # no second standby
    actions = plan.step(Changes({"/p/app.py": "restart"}), 1.0)
    assert actions[1:] == [Activate(1, ("/p/app.py",), app=3)]
    assert plan.step(ChildMessage(3, READY), 1.1) == [Drain(2, 5.0)]
    # A restart by hand starts over: the standby retires (its app 3 serves until 5 is ready).
    actions = plan.step(Restart("SIGHUP"), 2.0)
    assert actions[1:] == [
        Drain(1, 0.0),
        Spawn(4, standby=True, hot=("/p/app.py",)),
        Activate(4, (), app=5, wait=True),
    ]
    assert plan.children[1].role == "retired"


def test_the_first_standby_imports_the_libraries_the_last_run_remembered() -> None:
    """The monitor starts with the last run's list (``monitor.libraries``); the list the app
    reports is remembered when it changes, and only the newest app's counts."""
    last_run = ("flask", "sqlalchemy", "sqlalchemy.orm")
    plan = Plan(graceful_timeout=5.0, standby=True, fork_cold=True, cwd="/p", libraries=last_run)
    assert plan.step(Start(), 0.0) == [
        Spawn(1, standby=True, preload=last_run),
        Activate(1, (), app=2, wait=True),
    ]
    same = Message("watch", {"paths": ["/p/app.py"], "modules": list(last_run)})
    assert plan.step(ChildMessage(2, same), 0.5) == [Watch(("/p/app.py",))]
    now = (*last_run, "pandas")
    more = Message("watch", {"paths": ["/p/app.py"], "modules": list(now)})
    assert plan.step(ChildMessage(2, more), 0.6) == [Watch(("/p/app.py",)), Remember(now)]
    assert plan.step(ChildMessage(2, READY), 0.7) == []
    plan.step(ChildMessage(1, Message("standby", {"paths": [], "at": "/p/app.py"})), 0.8)
    plan.step(Changes({"/p/views.py": "restart"}), 1.0)  # app 3, forked from standby 1
    older = Message("watch", {"paths": [], "modules": ["flask"]})
    assert plan.step(ChildMessage(2, older), 1.1) == [Watch(())]  # app 2 is not the newest
    assert plan.step(ChildMessage(3, Message("ready", {})), 1.2)[-1] == Spawn(
        4, standby=True, hot=("/p/views.py",), preload=now
    )
