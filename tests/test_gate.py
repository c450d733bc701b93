"""The standby loads the project up to the file edited last (``app.gate``, issue 15), and what it
serves is still exactly what a cold start would serve. Bytecode caches on, as users run."""

from __future__ import annotations

import json
import os
import textwrap
import time
from pathlib import Path

from conftest import (
    CACHE_HOME,
    DevServer,
    parent_of,
    pid_alive,
    process_name,
    stays,
    wait_until,
    write,
)

from geventdev.monitor import libraries

CACHES_ON = {"PYTHONDONTWRITEBYTECODE": ""}
COUNT = 30
HOT = 15  # the module the tests edit: modules before it load ahead in the standby

MODULE = """\
import os

VALUE = "{value}"
with open({record!r}, "a") as f:  # outside the project: who imported what, in which order
    f.write(f"{{os.getpid()}} {name}\\n")
{extra}
"""


def module(project: Path, i: int, value: str, extra: str = "") -> Path:
    name = f"m{i:02d}"
    record = str(project.parent / "imports.log")
    text = MODULE.format(value=value, record=record, name=name, extra=textwrap.dedent(extra))
    return write(project / "mods" / f"{name}.py", text)


def make_project(project: Path, app_extra: str = "", extras: dict[int, str] | None = None) -> None:
    (project / "mods").mkdir()
    write(project / "mods" / "__init__.py", "")
    for i in range(COUNT):
        module(project, i, f"v{i}-0", (extras or {}).get(i, ""))
    imports = "\n".join(f"from mods import m{i:02d}" for i in range(COUNT))
    write(
        project / "app.py",
        textwrap.dedent(
            """
            import os
            from flask import Flask
            {app_extra}
            {imports}

            MODULES = [{names}]
            app = Flask(__name__)

            @app.route("/")
            def index():
                return " ".join(m.VALUE for m in MODULES)

            @app.route("/pid")
            def pid():
                return str(os.getpid())
            """
        ).format(
            imports=imports,
            names=", ".join(f"m{i:02d}" for i in range(COUNT)),
            app_extra=textwrap.dedent(app_extra),
        ),
    )


def values(server: DevServer) -> list[str]:
    return server.get("/", headers={"Connection": "close"}).text.split()


def imported_by(project: Path, pid: int) -> list[str]:
    lines = (project.parent / "imports.log").read_text().splitlines()
    return [name for p, name in (line.split() for line in lines) if int(p) == pid]


def edit(project: Path, server: DevServer, i: int, value: str, extra: str = "") -> None:
    """Save module ``i`` with a new value (a new size each time) and wait until it is served
    (first waiting for the server to serve what is there: the edit must be a change)."""
    wait_until(lambda: len(values(server)) == COUNT, 15, f"the app:\n{server.log()}")
    module(project, i, value, extra)
    wait_until(lambda: values(server)[i] == value, 15, f"{value!r} served:\n{server.log()}")


def paused_standby(server: DevServer, project: Path, before: int) -> int:
    """The standby, once it has loaded exactly the modules before ``before`` and waits, and is
    the only one: an older one is discarded only once the monitor has read that the new one is
    paused (until then the monitor would activate the older one)."""
    want = [f"m{i:02d}" for i in range(before)]

    def alone() -> int:
        waiting = [p for p in server.children() if process_name(p) == "geventdev-wait"]
        pid = waiting[0] if len(waiting) == 1 else 0
        return pid if pid and imported_by(project, pid) == want else 0

    return wait_until(alone, 20, f"a standby paused before m{before:02d}:\n{server.log()}")


#: m10 takes 2.5 s to import, without yielding: a standby is caught still loading.
BUSY = """
    started = __import__("time").monotonic()
    while __import__("time").monotonic() - started < 2.5:
        pass
    """


#: m03 reads a data file at import (no restart when it changes: live reload only).
READS = """
    with open(os.path.join(os.path.dirname(__file__), "..", "settings.json")) as f:
        SETTING = f.read()
    """


def loading_standby(project: Path, dev_server) -> tuple[DevServer, int]:  # type: ignore[no-untyped-def]
    """The only standby, caught inside m10 (2.5 s without yielding) while an app serves: the
    standby paused before m15 read settings.json (m03), so a change of it replaces that one at
    once with one that loads again."""
    make_project(project, extras={3: READS, 10: BUSY})
    write(project / "settings.json", "one")
    server: DevServer = dev_server("app.py", **CACHES_ON)
    edit(project, server, HOT, "hot")
    first = paused_standby(server, project, HOT)
    app = int(server.get("/pid").text)
    write(project / "settings.json", "two, longer")

    def new_standby() -> int:
        others = (p for p in server.children() if p not in (app, first))
        return next((p for p in others if process_name(p) not in OLD_OR_APP), 0)

    standby = wait_until(new_standby, 10, "one")
    wait_until(lambda: "m10" in imported_by(project, standby), 15, "the standby in m10")
    assert "m11" not in imported_by(project, standby)  # still in m10's loop, not paused
    assert not pid_alive(first)
    return server, standby


OLD_OR_APP = ("geventdev-old", "geventdev-app", "geventdev-load")


def test_the_standby_loads_up_to_the_file_edited_last(project: Path, dev_server) -> None:
    make_project(project)
    server = dev_server("app.py", **CACHES_ON)
    assert values(server)[HOT] == f"v{HOT}-0"
    edit(project, server, HOT, "first")
    standby = paused_standby(server, project, HOT)
    edit(project, server, HOT, "second-save")
    app = int(server.get("/pid").text)
    assert parent_of(app) == standby  # forked from the standby, which stays paused
    assert imported_by(project, app) == [f"m{i:02d}" for i in range(HOT, COUNT)]  # the rest
    assert imported_by(project, standby) == [f"m{i:02d}" for i in range(HOT)]
    assert values(server) == [f"v{i}-0" for i in range(HOT)] + ["second-save"] + [
        f"v{i}-0" for i in range(HOT + 1, COUNT)
    ]
    edit(project, server, HOT, "third-save-x")  # and again, from the same standby
    app = int(server.get("/pid").text)
    assert parent_of(app) == standby and server.standby() == standby
    assert imported_by(project, app) == [f"m{i:02d}" for i in range(HOT, COUNT)]
    server.wait_for_log(" * Restarted in", count=3)  # logged once the old process has closed


def test_an_edit_of_a_file_the_standby_already_loaded_starts_cold(
    project: Path, dev_server
) -> None:
    make_project(project)
    server = dev_server("app.py", **CACHES_ON)
    edit(project, server, HOT, "hot")
    standby = paused_standby(server, project, HOT)
    edit(project, server, 5, "early-edit")  # m05 is in the standby already: never activate it
    assert parent_of(int(server.get("/pid").text)) != standby  # a cold start
    assert wait_until(lambda: not pid_alive(standby), 5, "the stale standby gone")
    assert values(server)[HOT] == "hot"


def test_a_module_created_where_the_standby_searched_is_imported(project: Path, dev_server) -> None:
    """``try: import local_settings`` found nothing while the standby loaded ahead."""
    optional = """
        try:
            from local_settings import MODE
        except ImportError:
            MODE = "default"
        """
    make_project(project, extras={3: optional})
    write(
        project / "app.py",
        (project / "app.py").read_text() + "\n@app.route('/mode')\n"
        "def mode():\n    return m03.MODE\n",
    )
    server = dev_server("app.py", **CACHES_ON)
    edit(project, server, HOT, "hot")
    paused_standby(server, project, HOT)
    assert server.get("/mode").text == "default"
    write(project / "local_settings.py", 'MODE = "local"\n')
    wait_until(lambda: server.get("/mode").text == "local", 15, f"local:\n{server.log()}")


def test_a_data_file_the_standby_read_is_read_again(project: Path, dev_server) -> None:
    """Configuration read at import (``--extra-files``): the standby read the old one."""
    reads = """
        import json
        with open(os.path.join(os.path.dirname(__file__), "..", "settings.json")) as f:
            SETTING = json.load(f)["setting"]
        """
    make_project(project, extras={3: reads})
    write(project / "settings.json", json.dumps({"setting": "one"}))
    write(
        project / "app.py",
        (project / "app.py").read_text() + "\n@app.route('/setting')\n"
        "def setting():\n    return m03.SETTING\n",
    )
    server = dev_server("app.py", "--extra-files", "settings.json", **CACHES_ON)
    edit(project, server, HOT, "hot")
    paused_standby(server, project, HOT)
    write(project / "settings.json", json.dumps({"setting": "two, longer"}))
    wait_until(lambda: server.get("/setting").text == "two, longer", 15, server.log())


def test_what_the_project_prints_while_the_standby_loads_appears_on_activation(
    project: Path, dev_server
) -> None:
    """Once per app process, when it starts serving: a discarded standby printed nothing."""
    make_project(project, extras={3: 'print("loading m03", flush=True)\n'})
    server = dev_server("app.py", **CACHES_ON)
    edit(project, server, HOT, "hot")
    paused_standby(server, project, HOT)  # it has run m03 (and printed, held)
    assert stays(lambda: server.log().count("loading m03") == 2, 0.5), server.log()
    edit(project, server, HOT, "hot-again")
    wait_until(lambda: server.log().count("loading m03") == 3, 5, server.log())
    restarted = server.log().rindex(" * Detected change")
    assert "loading m03" in server.log()[restarted:]


def test_code_the_project_starts_at_import_does_not_run_in_the_paused_standby(
    project: Path, dev_server
) -> None:
    """A scheduler started at import (a thread: a greenlet once patched) stays frozen."""
    ticker = f"""
        import threading, time
        def tick():
            while True:
                with open({str(project.parent / "ticks.log")!r}, "a") as f:
                    f.write(f"{{os.getpid()}}\\n")
                time.sleep(0.02)
        threading.Thread(target=tick, daemon=True).start()
        """
    make_project(project, extras={3: ticker})
    server = dev_server("app.py", **CACHES_ON)
    edit(project, server, HOT, "hot")
    standby = paused_standby(server, project, HOT)
    ticks = project.parent / "ticks.log"
    app = int(server.get("/pid").text)
    wait_until(lambda: f"{app}\n" in ticks.read_text(), 5, "the app's ticker")

    def standby_ticks() -> int:
        return ticks.read_text().split().count(str(standby))

    # Thread.start() waits for the thread to start: its first tick is part of the import.
    assert stays(lambda: standby_ticks() <= 1, 0.6)
    edit(project, server, HOT, "hot-again")  # the app forked from it: the ticker runs there
    forked = int(server.get("/pid").text)
    assert parent_of(forked) == standby
    wait_until(lambda: ticks.read_text().split().count(str(forked)) > 3, 5, "the app's ticker")
    assert standby_ticks() <= 1  # and still not in the standby


def test_a_standby_still_loading_refuses_an_edit_it_had_read(project: Path, dev_server) -> None:
    """The edit lands while the standby is still loading (m10 takes 2.5 s without yielding):
    it is activated, finds at its gate that it read m05, says ``stale``: a cold start."""
    server, standby = loading_standby(project, dev_server)
    started = time.monotonic()
    edit(project, server, 5, "edited-while-loading")
    assert parent_of(int(server.get("/pid").text)) != standby  # a cold start
    assert time.monotonic() - started < 10
    assert not pid_alive(standby) or wait_until(lambda: not pid_alive(standby), 5, "gone")
    assert os.path.exists(project.parent / "imports.log")


def test_a_process_from_a_paused_standby_patches_the_file_it_stopped_at(
    project: Path, dev_server
) -> None:
    """With ``--patch``: the file it stopped before was read after the resume, not while the
    standby loaded ahead (it was edited in between, yet what was read is the new text)."""
    hello = 'def hello():\n    return "hello-{n}"\n'
    make_project(project, extras={HOT: hello.format(n=1)})
    write(
        project / "app.py",
        (project / "app.py").read_text()
        + "\n@app.route('/hello')\ndef hello():\n    return m15.hello()\n",
    )
    server = dev_server("app.py", "--patch", **CACHES_ON)
    edit(project, server, HOT, "a", hello.format(n=1))  # a constant: a restart
    paused_standby(server, project, HOT)
    edit(project, server, HOT, "bb", hello.format(n=1))  # from the paused standby
    module(project, HOT, "bb", hello.format(n=22))  # a function body only
    wait_until(lambda: server.get("/hello").text == "hello-22", 15, server.log())
    server.wait_for_log("Patched 'mods/m15.py' in place: hello()")  # logged once answered


def test_a_file_the_project_only_writes_at_import_does_not_make_the_standby_stale(
    project: Path, dev_server
) -> None:
    """An events file opened for appending at import, and written while serving: output, not
    something the load read. The paused standby stays, and takes over at the next edit."""
    events = project / "events.txt"
    writes = f"""
        with open({str(events)!r}, "a") as f:
            f.write("imported\\n")
        """
    make_project(project, extras={3: writes})
    write(
        project / "app.py",
        (project / "app.py").read_text()
        + f"\n@app.route('/event')\ndef event():\n    with open({str(events)!r}, 'a') as f:\n"
        "        f.write('event\\n')\n    return 'ok'\n",
    )
    server = dev_server("app.py", **CACHES_ON)
    edit(project, server, HOT, "hot")
    standby = paused_standby(server, project, HOT)
    for _ in range(3):
        assert server.get("/event").text == "ok"
        time.sleep(0.3)  # pacing, not settling: each write a change of its own
    assert stays(lambda: server.standby() == standby, 0.5)
    edit(project, server, HOT, "hot-again")
    assert parent_of(int(server.get("/pid").text)) == standby


def test_a_save_while_the_standby_still_loads_is_served_by_it(project: Path, dev_server) -> None:
    """No cold window after a restart: the standby still loading (m10 takes 2.5 s without
    yielding) is activated all the same, and goes on to serve the new code."""
    server, standby = loading_standby(project, dev_server)
    edit(project, server, HOT, "saved-again-soon")
    assert parent_of(int(server.get("/pid").text)) == standby


def test_a_module_the_project_loads_by_path_is_read_again(project: Path, dev_server) -> None:
    """A plugin loaded with ``spec_from_file_location`` at import (importlib reads it with
    ``io.open_code``, not ``open``): edited, the standby that read it is not used."""
    loads = f"""
        import importlib.util
        _spec = importlib.util.spec_from_file_location("plugin", {str(project / "plugin.py")!r})
        plugin = importlib.util.module_from_spec(_spec)
        _spec.loader.exec_module(plugin)
        """
    make_project(project, extras={3: loads})
    write(project / "plugin.py", 'NAME = "one"\n')
    write(
        project / "app.py",
        (project / "app.py").read_text()
        + "\n@app.route('/plugin')\ndef plugin():\n    return m03.plugin.NAME\n",
    )
    server = dev_server("app.py", **CACHES_ON)
    edit(project, server, HOT, "hot")
    paused_standby(server, project, HOT)
    write(project / "plugin.py", 'NAME = "two, longer"\n')
    wait_until(lambda: server.get("/plugin").text == "two, longer", 15, server.log())


#: Standard-library modules none of which flask or geventdev imports: "the app's libraries".
LIBRARIES = (
    "xml.dom.minidom",
    "sqlite3",
    "shelve",
    "fractions",
    "statistics",
    "email.mime.multipart",
    "http.cookiejar",
    "xmlrpc.client",
    "tarfile",
    "poplib",
    "configparser",
    "smtplib",
    "imaplib",
    "ftplib",
    "plistlib",
    "wave",
    "pdb",
    "unittest",
    "doctest",
    "pydoc",
    "graphlib",
    "mailbox",
)


def test_the_next_run_imports_the_apps_libraries_ahead_from_its_start(
    project: Path, dev_server
) -> None:
    """The first standby of the first run imports flask's modules only (no app has said what
    it imports yet): the app, forked from it, imports its libraries itself. The server keeps
    the list the app reported (``monitor.libraries``); the next run's first standby imports
    them ahead, so its app and its first save import none of them again."""
    write(
        project / "app.py",
        textwrap.dedent(
            f"""
            import importlib, os, sys
            from flask import Flask

            LIBRARIES = {LIBRARIES!r}
            AHEAD = [name for name in LIBRARIES if name in sys.modules]  # the standby's
            for name in LIBRARIES:
                importlib.import_module(name)
            app = Flask(__name__)
            VERSION = "one"

            @app.route("/")
            def index():
                return f"{{VERSION}} {{len(AHEAD)}}"
            """
        ),
    )
    first = dev_server("app.py", **CACHES_ON)
    assert first.get("/").text == "one 0"
    first.stop()
    server = dev_server("app.py", **CACHES_ON)
    assert server.get("/").text == f"one {len(LIBRARIES)}"
    write(project / "app.py", (project / "app.py").read_text().replace('"one"', '"two"'))
    server.wait_for_text("/", f"two {len(LIBRARIES)}")
    kept = libraries.cache_file(project.resolve(), "app.py", {"XDG_CACHE_HOME": CACHE_HOME[0]})
    assert set(LIBRARIES) <= set(libraries.load(kept))  # in the session's cache, not ~/.cache
