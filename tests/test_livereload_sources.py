"""Live reload fires only for what a page is built from (issue 16, item 7).

An app that writes data into its project on every request (a JSON store, a file session store
written through a temporary file and ``os.replace``, an upload) must not reload the open tabs;
a template edit, a stylesheet edit and a file a view reads still do. The client is the browser's
side of the protocol: an ``EventSource``-like reader of ``/__geventdev__/livereload`` over a real
socket, collecting every event it is sent.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from conftest import DevServer, stays, wait_until, write

from geventdev.livereload.sources import FileUse, page_sources

pytestmark = pytest.mark.e2e

APP = """
import json, os, tempfile
from pathlib import Path
from flask import Flask, render_template, request

app = Flask(__name__)
HERE = Path(__file__).parent


@app.route("/")
def index():
    return render_template("index.html")


@app.route("/hit", methods=["POST"])
def hit():
    store = HERE / "data.json"
    data = json.loads(store.read_text()) if store.exists() else {"hits": 0}
    data["hits"] += 1
    store.write_text(json.dumps(data))
    sessions = HERE / "flask_session"
    sessions.mkdir(exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=sessions)  # cachelib's FileSystemCache, as Flask-Session uses
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(16))
    os.replace(tmp, sessions / "2029f0c5d4fc")
    request.files["upload"].save(HERE / "uploads" / "photo.jpg")
    return str(data["hits"])


@app.route("/notes")
def notes():
    return (HERE / "notes.md").read_text()
"""


class EventStream:
    """The browser's EventSource, reduced: one connection, every ``event:`` name and data."""

    def __init__(self, url: str) -> None:
        host, port = url.split("//", 1)[1].split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.conn.request(
            "GET", "/__geventdev__/livereload", headers={"Accept": "text/event-stream"}
        )
        self.response = self.conn.getresponse()
        assert self.response.status == 200
        self.events: list[tuple[str, object]] = []
        self.thread = threading.Thread(target=self.read, daemon=True)
        self.thread.start()

    def read(self) -> None:
        name = None
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: ") and name is not None:
                    self.events.append((name, json.loads(line[6:])))
                    name = None
        except (OSError, ValueError):  # closed by the server stopping or by close()
            pass

    def changes(self) -> list[tuple[str, object]]:
        return [e for e in self.events if e[0] not in ("hello", "ping")]

    def close(self) -> None:
        """Hang up as a closing tab does, then wait for the reader to see the end."""
        if self.conn.sock is not None:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(timeout=10)
        self.conn.close()


def test_data_the_app_writes_never_reloads_a_page(
    project: Path, dev_server: Callable[..., DevServer]
) -> None:
    write(project / "app.py", APP)
    write(project / "templates" / "index.html", "<html><body><p>v1</p></body></html>")
    write(project / "static" / "site.css", "p { color: red }")
    write(project / "notes.md", "# notes v1")
    write(project / "README.md", "# readme")
    (project / "uploads").mkdir()
    server = dev_server("app.py", "--no-debugger")
    assert "v1" in server.get("/").text
    stream = EventStream(server.url)
    try:
        wait_until(lambda: stream.events, what="the hello event")
        for n in range(1, 6):
            files = {"upload": ("photo.jpg", os.urandom(64))}
            answer = requests.post(server.url + "/hit", files=files, timeout=15)
            assert answer.text == str(n)
        # the monitor's debounce is 50 ms: each write above was sent to the app long before this
        write(project / "README.md", "# readme, edited (no page shows it)")
        assert stays(lambda: not stream.changes(), 1.5), stream.changes()
        write(project / "templates" / "index.html", "<html><body><p>v2</p></body></html>")
        wait_until(lambda: stream.changes(), what="a reload event")
        assert stream.changes() == [("reload", {"paths": ["index.html"]})]
        write(project / "static" / "site.css", "p { color: blue }")
        wait_until(lambda: len(stream.changes()) == 2, what="a css event")
        assert stream.changes()[1] == ("css", {"paths": ["/static/site.css"]})
        assert server.get("/notes").text == "# notes v1"  # a view reads it: pages show it
        write(project / "notes.md", "# notes v2")
        wait_until(lambda: len(stream.changes()) == 3, what="a reload for notes.md")
        assert stream.changes()[2] == ("reload", {"paths": ["notes.md"]})
        assert "Restarted" not in server.log() and "Traceback" not in server.log()
    finally:
        stream.close()


def test_the_policy_in_order(tmp_path: Path) -> None:
    """Template and static directories first, then what the process wrote, then what it read."""
    use = FileUse()
    templates = os.path.join(os.path.realpath(tmp_path), "templates", "")
    data, content = str(tmp_path / "data.json"), str(tmp_path / "content.md")
    written_template = str(tmp_path / "templates" / "generated.html")
    use.start()
    use.hook("open", (data, "r", os.O_RDONLY))
    use.hook("open", (data, "w", os.O_WRONLY | os.O_CREAT | os.O_TRUNC))
    use.hook("open", (content, "r", os.O_RDONLY))
    use.hook("open", (written_template, "w", os.O_WRONLY))
    tmp = str(tmp_path / "tmpab12cd")  # tempfile.mkstemp's name, then os.replace'd
    use.hook("open", (tmp, None, os.O_RDWR | os.O_CREAT | os.O_EXCL))
    use.hook("os.rename", (tmp, str(tmp_path / "session"), None, None))
    use.hook("open", (3, "rb", os.O_RDONLY))  # a descriptor: no path, nothing recorded
    use.stop()
    use.hook("open", (str(tmp_path / "after.txt"), "r", os.O_RDONLY))
    changed = [data, content, written_template, tmp, str(tmp_path / "session")]
    changed += [str(tmp_path / "after.txt"), str(tmp_path / "other.txt")]
    assert page_sources(changed, [templates], set(), use) == [content, written_template]
    assert page_sources(changed, [], set(), None) == changed  # nothing tracked: all of them
