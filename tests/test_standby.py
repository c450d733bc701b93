"""The warm standby: restarts import only the project, and fall back to cold when they must."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from conftest import HELLO_APP, parent_of, stays, wait_until, write

import geventdev
from geventdev.app.preload import BASELINE, preload, split_modules
from geventdev.paths import library_dirs


def test_a_change_activates_the_standby(project: Path, dev_server) -> None:
    app = write(project / "app.py", HELLO_APP)
    server = dev_server("app.py")
    assert server.get("/").text == "hello v1"
    waiting = server.standby()
    write(app, HELLO_APP.replace("hello v1", "hello v2"))
    server.wait_for_text("/", "hello v2")
    # The standby forked the app (no cold interpreter), and stays, ready for the next change.
    app_pid = server.child()
    assert parent_of(app_pid) == waiting
    assert server.get("/pid").text == str(app_pid)
    assert server.standby() == waiting
    write(app, HELLO_APP.replace("hello v1", "hello v3"))
    server.wait_for_text("/", "hello v3")
    assert parent_of(server.child()) == waiting != app_pid


def test_code_outside_the_project_is_never_imported_ahead(
    project: Path, dev_server, tmp_path: Path
) -> None:
    lib = write(tmp_path / "sharedlib" / "greeting.py", "TEXT = 'from lib v1'\n")
    app = HELLO_APP.replace('"hello v1"', "greeting.TEXT")
    write(
        project / "app.py",
        f"import sys\nsys.path.insert(0, {str(lib.parent)!r})\nimport greeting\n" + app,
    )
    server = dev_server("app.py")
    assert server.get("/").text == "from lib v1"
    server.standby()
    write(lib, "TEXT = 'from lib v2'\n")  # watched, since the app imported it
    server.wait_for_text("/", "from lib v2")


def test_an_env_file_change_restarts_cold(project: Path, dev_server) -> None:
    write(project / "app.py", HELLO_APP.replace('"hello v1"', 'os.environ["GREETING"]'))
    env = write(project / ".env", "GREETING=one\n")
    server = dev_server("app.py")
    assert server.get("/").text == "one"
    before = {server.child(), server.standby()}
    write(env, "GREETING=two\n")
    server.wait_for_text("/", "two")
    assert server.child() not in before


def test_a_manual_restart_is_cold(project: Path, dev_server) -> None:
    write(project / "app.py", HELLO_APP)
    server = dev_server("app.py")
    server.get("/")
    before = {server.child(), server.standby()}
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for_log(" * Restarted in ")
    assert server.child() not in before


def test_no_standby_keeps_one_process(project: Path, dev_server) -> None:
    app = write(project / "app.py", HELLO_APP)
    server = dev_server("app.py", "--no-standby")
    server.get("/")
    assert stays(lambda: len(server.children()) == 1, 0.5)
    write(app, HELLO_APP.replace("hello v1", "hello v2"))
    server.wait_for_text("/", "hello v2")
    # The old child may still be draining and exiting when v2 first answers; once it is gone,
    # no standby must appear beside the new one.
    wait_until(lambda: len(server.children()) == 1, what="the old child to exit")
    assert stays(lambda: len(server.children()) == 1, 0.5)


def test_library_modules_are_the_interpreters_only() -> None:
    names, files = split_modules(library_dirs())
    assert "json" in names and "pytest" in names
    assert not any(n.startswith("geventdev") or n == "conftest" for n in names)
    assert "__main__" not in names
    assert __file__ in files  # the project's code is watched, not imported ahead
    assert not any(f.startswith(str(Path(geventdev.__file__).parent)) for f in files)
    assert not any(f.startswith(sys.prefix) for f in files)


def test_preload_imports_and_survives_bad_names() -> None:
    preload(["json", "no_such_module_anywhere_xyz", "this.is.not.valid"])
    assert "json" in sys.modules and "no_such_module_anywhere_xyz" not in sys.modules
    assert "flask" in BASELINE


def test_gevents_plugin_lookup_for_the_monitor_thread_is_answered_from_the_standby() -> None:
    """The standby looks up once (``look_up_plugins``) what gevent looks up in every installed
    distribution at each monitor-thread start; any other entry-point query is left alone."""
    from importlib import metadata

    from gevent.events import PeriodicMonitorThreadStartedEvent

    from geventdev.app import blocking

    group = PeriodicMonitorThreadStartedEvent.ENTRY_POINT_NAME
    original = metadata.entry_points
    try:
        blocking.look_up_plugins()
        assert list(blocking._PLUGINS[0]) == list(metadata.entry_points(group=group))
        with blocking.plugins_looked_up():
            assert metadata.entry_points(group=group) is blocking._PLUGINS[0]
            scripts = metadata.entry_points(group="console_scripts")
            assert "geventdev" in {ep.name for ep in scripts}
        assert metadata.entry_points is original
    finally:
        blocking._PLUGINS.clear()
