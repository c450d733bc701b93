"""Reloading: code edits restart, template edits don't, broken code is a page, editors' saves."""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    EDITOR_SAVES,
    EXAMPLES,
    HELLO_APP,
    DevServer,
    geventdev_env,
    recv_for,
    restart_count,
    save_then_confirm,
    stays,
    wait_until,
    write,
)

from geventdev.livereload.middleware import EVENTS


def test_py_edit_serves_new_code_in_a_new_process(project: Path, dev_server) -> None:
    app = write(project / "app.py", HELLO_APP)
    server = dev_server("app.py")
    assert server.get("/").text == "hello v1"
    old_pid = server.child()
    write(app, HELLO_APP.replace("hello v1", "hello v2"))
    server.wait_for_log(" * Restarted in ")
    assert server.get("/").text == "hello v2"
    assert " * Detected change in 'app.py', restarting" in server.log()
    assert server.child() != old_pid


def test_edit_in_a_subpackage_restarts(project: Path, dev_server) -> None:
    write(
        project / "app.py", HELLO_APP.replace('"hello v1"', "views.greeting()") + "\nimport views\n"
    )
    views = write(project / "views" / "__init__.py", "def greeting():\n    return 'one'\n")
    server = dev_server("app.py")
    assert server.get("/").text == "one"
    write(views, "def greeting():\n    return 'two'\n")
    server.wait_for_text("/", "two")


def test_template_edit_needs_no_restart(project: Path, dev_server) -> None:
    shutil.copytree(EXAMPLES / "site", project, dirs_exist_ok=True)
    server = dev_server("app.py")
    page = server.get("/").text
    assert "Hello from geventdev" in page
    pid = server.child()
    template = project / "templates" / "index.html"
    template.write_text(template.read_text().replace("Hello from geventdev", "Edited heading"))
    server.wait_for_text("/", "Edited heading")
    assert server.child() == pid
    assert restart_count(server) == 0
    assert server.get("/static/style.css").status_code == 200


def test_syntax_error_is_a_page_and_the_fix_recovers(project: Path, dev_server) -> None:
    app = write(project / "app.py", HELLO_APP)
    server = dev_server("app.py")
    assert server.get("/").text == "hello v1"
    write(app, HELLO_APP.replace('return "hello v1"', 'return "hello v1" +'))
    server.wait_for_log(" * Serving the error page")  # never " * Restarted in": it did not load
    broken = server.get("/")
    assert broken.status_code == 500
    assert "SyntaxError" in broken.text
    assert "Werkzeug Debugger" in broken.text
    assert server.proc.poll() is None
    write(app, HELLO_APP.replace("hello v1", "fixed"))
    server.wait_for_text("/", "fixed")


def test_first_start_with_a_broken_module_waits_for_the_fix(project: Path, dev_server) -> None:
    write(project / "app.py", HELLO_APP + "\nimport does_not_exist_anywhere\n")
    server = dev_server("app.py")
    response = server.get("/")
    assert response.status_code == 500
    assert "ModuleNotFoundError" in response.text
    assert "does_not_exist_anywhere" in response.text
    write(project / "app.py", HELLO_APP)
    server.wait_for_text("/", "hello v1")


def test_error_in_an_imported_module_keeps_it_watched(project: Path, dev_server) -> None:
    write(project / "app.py", HELLO_APP + "\nimport helper\n")
    helper = write(project / "helper.py", "raise RuntimeError('helper is broken')\n")
    server = dev_server("app.py")
    assert "helper is broken" in server.get("/").text
    write(helper, "VALUE = 1\n")
    server.wait_for_text("/", "hello v1")


def test_exit_at_import_waits_for_a_change_without_looping(project: Path, dev_server) -> None:
    app = write(project / "app.py", "import os\nos._exit(3)\n")
    server = dev_server("app.py")
    server.wait_for_log(" * App exited with code 3; waiting for a change")
    assert stays(lambda: server.log().count("exited with code 3") == 1, 1.0)
    assert server.proc.poll() is None
    write(app, HELLO_APP)
    server.wait_for_text("/", "hello v1")


def test_sys_exit_at_import_is_a_page(project: Path, dev_server) -> None:
    write(project / "app.py", "import sys\nsys.exit('config missing')\n")
    server = dev_server("app.py")
    response = server.get("/")
    assert response.status_code == 500
    assert "config missing" in response.text


def test_killed_child_is_reported_and_a_change_brings_it_back(project: Path, dev_server) -> None:
    app = write(project / "app.py", HELLO_APP)
    server = dev_server("app.py")
    server.get("/")
    os.kill(server.child(), 9)
    server.wait_for_log(" * App was killed by SIGKILL (out of memory?); waiting for a change")
    assert server.proc.poll() is None
    write(app, HELLO_APP.replace("hello v1", "back"))
    server.wait_for_text("/", "back")


def test_importing_and_writing_logs_and_dbs_causes_no_restart(project: Path, dev_server) -> None:
    write(
        project / "app.py",
        """
        import sqlite3
        from pathlib import Path
        from flask import Flask

        app = Flask(__name__)
        HERE = Path(__file__).parent

        @app.route("/")
        def index():
            source = Path(__file__).read_text()           # opened + closed_no_write events
            with open(HERE / "app.log", "a") as log:       # the app logging into the tree
                log.write("hit\\n")
            db = sqlite3.connect(HERE / "db.sqlite3")      # journal files come and go
            db.execute("create table if not exists t (x)")
            db.execute("insert into t values (1)")
            db.commit()
            db.close()
            __import__("helper")
            return str(len(source))
        """,
    )
    write(project / "helper.py", "X = 1\n")
    server = dev_server("app.py")
    for _ in range(20):
        assert server.get("/").status_code == 200
    assert stays(lambda: restart_count(server) == 0, 0.5)


@pytest.mark.e2e
def test_our_own_output_redirected_into_the_tree_is_no_change(project: Path) -> None:
    """`geventdev app.py > out.txt`: each access-log line is a write to a watched file, and
    would reload every open tab (which writes the log again: a reload loop)."""
    app = write(project / "app.py", HELLO_APP)
    write(project / "templates" / "index.html", "<p>v1</p>")
    argv = [sys.executable, "-m", "geventdev", "app.py", "--port", "0"]
    server = DevServer(project, project / "out.txt", argv, geventdev_env())
    try:
        server.get("/")
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as events:
            request = f"GET {EVENTS} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
            events.sendall(request.encode())
            assert "event: hello" in recv_for(events, 5.0, until=b"event: hello").decode()
            for _ in range(5):
                assert server.get("/").status_code == 200
            assert "event: reload" not in recv_for(events, 0.7).decode(), server.log()
            assert server.log().count('"GET / HTTP/1.1" 200') == 6  # the log did go there
            write(project / "templates" / "index.html", "<p>v2</p>")  # yet changes still count
            assert "event: reload" in recv_for(events, 5.0, until=b"event: reload").decode()
        write(app, HELLO_APP.replace("hello v1", "hello v2"))
        server.wait_for_text("/", "hello v2")
    finally:
        server.stop()


@pytest.mark.parametrize("editor", EDITOR_SAVES)
def test_an_editor_save_is_one_restart(editor: str, project: Path, dev_server) -> None:
    write(project / "app.py", HELLO_APP)
    server = dev_server("app.py")
    server.get("/")
    save_then_confirm(server, project, EDITOR_SAVES[editor])


def test_git_checkout_of_200_files_is_one_restart(project: Path, dev_server) -> None:
    write(project / "app.py", HELLO_APP + "\nimport pkg\n")
    for i in range(200):
        write(project / "pkg" / f"m{i}.py", f"VALUE = {i}\n")
    write(project / "pkg" / "__init__.py", "")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    subprocess.run([*git, "add", "-A"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "one"], cwd=project, check=True)
    subprocess.run([*git, "checkout", "-qb", "other"], cwd=project, check=True)
    for i in range(200):
        write(project / "pkg" / f"m{i}.py", f"VALUE = {i + 1}\n")
    write(project / "app.py", HELLO_APP.replace("hello v1", "saved") + "\nimport pkg\n")
    subprocess.run([*git, "commit", "-qam", "two"], cwd=project, check=True)
    subprocess.run([*git, "checkout", "-q", "main"], cwd=project, check=True)
    server = dev_server("app.py")
    server.get("/")
    save_then_confirm(
        server,
        project,
        lambda where: subprocess.run([*git, "checkout", "-q", "other"], cwd=where, check=True),
    )


def test_excluded_and_ignored_paths_cause_no_restart(project: Path, dev_server) -> None:
    write(project / "app.py", HELLO_APP)
    server = dev_server("app.py", "--exclude-patterns", "*/generated/*")
    server.get("/")
    write(project / "node_modules" / "lib" / "x.py", "X = 1\n")
    write(project / ".venv" / "lib" / "y.py", "Y = 1\n")
    write(project / "generated" / "z.py", "Z = 1\n")
    write(project / "notes.txt", "not code\n")
    assert stays(lambda: restart_count(server) == 0, 0.5)


def test_extra_files_restart(project: Path, dev_server, tmp_path: Path) -> None:
    write(project / "app.py", HELLO_APP)
    settings = write(tmp_path / "settings.toml", "x = 1\n")
    server = dev_server("app.py", "--extra-files", str(settings))
    server.get("/")
    write(settings, "x = 2\n")
    server.wait_for_log(" * Detected change in ")
    server.wait_for_log(" * Restarted in ")


def test_no_reload_does_not_restart(project: Path, dev_server) -> None:
    app = write(project / "app.py", HELLO_APP)
    server = dev_server("app.py", "--no-reload")
    server.get("/")
    write(app, HELLO_APP.replace("hello v1", "hello v2"))
    assert stays(lambda: restart_count(server) == 0, 0.5)
    assert server.get("/").text == "hello v1"
    assert "Debugger PIN" in server.log()


def test_requests_during_restarts_are_all_answered(project: Path, dev_server) -> None:
    app = write(project / "app.py", HELLO_APP)
    server = dev_server("app.py")
    server.get("/")

    def answered_by(old: str, new: str) -> bool:
        response = server.get("/")  # a refused or reset connection raises here
        assert response.status_code == 200 and response.text in (old, new)
        return response.text == new

    versions = ["hello v1"] + [f"version {n}" for n in range(1, 4)]
    for old, new in itertools.pairwise(versions):
        write(app, HELLO_APP.replace("hello v1", new))
        wait_until(functools.partial(answered_by, old, new), what=new)


def test_stat_reloader_polls_and_skips_ignored_trees(project: Path, dev_server) -> None:
    app = write(project / "app.py", HELLO_APP)
    server = dev_server("app.py", "--reloader-type", "stat")
    server.get("/")
    write(project / "node_modules" / "pkg" / "index.py", "X = 1\n")
    assert stays(lambda: restart_count(server) == 0, 1.2)  # more than two polling rounds
    write(app, HELLO_APP.replace("hello v1", "polled"))
    server.wait_for_text("/", "polled")
