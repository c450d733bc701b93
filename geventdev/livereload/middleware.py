"""Live reload in the browser: the WSGI middleware the app process wraps the app in.

HTML pages get a small script (``livereload.js``, inserted by ``inject``), tagged with this
process's *generation* (its pid and a random token). The script keeps an ``EventSource`` open to
``/__geventdev__/livereload``, served here by whichever app process serves now: the first event
names that process. A restart cuts the stream (``http.server.DevHandler.long_lived`` sees
``Accept: text/event-stream``), the page reconnects, and reloads once a different generation
answers, that is once the new code (or its error page) serves. Changes that need no restart come
from the monitor (``app.stack`` subscribes ``changed`` to ``app.notify``): CSS under a static
folder is sent as ``css`` (the page swaps the stylesheet), anything else as ``reload``. Imports
no gevent: under ``monkey.patch_all()`` the stdlib queue below waits cooperatively.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import queue
import secrets
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from geventdev.livereload.inject import inject
from geventdev.livereload.sources import FileUse, loaded_templates, page_sources, template_dirs
from geventdev.net import is_loopback
from geventdev.protocol import RESERVED_PREFIX
from geventdev.wsgi import WSGIApp

PREFIX = RESERVED_PREFIX
EVENTS = PREFIX + "livereload"
SCRIPT = PREFIX + "livereload.js"
JS = Path(__file__).with_name("livereload.js").read_bytes()
JS_VERSION = hashlib.sha256(JS).hexdigest()[:10]
#: Only a page being shown gets the script: not fetch/XHR, htmx swaps, WebSockets (see below).
DOCUMENT_DESTS = ("document", "iframe", "frame", "embed", "object")
PARTIAL_HEADERS = ("HTTP_HX_REQUEST", "HTTP_X_REQUESTED_WITH", "HTTP_UPGRADE")
#: Open event streams per app process. A browser keeps one (its tabs share it), so 100 is a
#: hundred browsers; past that a stream is refused with a quick 503, which the script retries
#: with its backoff: a flood of streams never fills the pool (``--pool-size``) nor the memory.
MAX_STREAMS = 100
FORBIDDEN = (
    b"Live reload answers only this machine (a loopback client), like the debugger console.\n"
    b"Start geventdev with --debugger-remote to let other machines use it.\n"
)
BUSY = b"Too many live-reload streams open; the page retries by itself.\n"


def event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


class Broadcast:
    """Every open event stream in this process, each with its queue; at most ``limit``."""

    heartbeat = 10.0

    def __init__(self, limit: int = MAX_STREAMS) -> None:
        self.queues: set[queue.Queue[bytes]] = set()
        self.limit = limit

    def full(self) -> bool:
        return len(self.queues) >= self.limit

    def send(self, message: bytes) -> None:
        for q in list(self.queues):
            q.put(message)

    def stream(self, hello: bytes) -> Iterator[bytes]:
        """``hello``, then every message sent, and a ping when quiet (a dead connection shows)."""
        q: queue.Queue[bytes] = queue.Queue()
        self.queues.add(q)
        try:
            yield hello
            while True:
                try:
                    yield q.get(timeout=self.heartbeat)
                except queue.Empty:
                    yield event("ping", {})
        finally:  # the client left, or a drain cut us (GreenletExit)
            self.queues.discard(q)


def static_folders(app: Any) -> list[tuple[str, str]]:
    """``(folder/, url prefix)`` for the app's and its blueprints' static routes."""
    found = []
    url_map = getattr(app, "url_map", None)
    for rule in url_map.iter_rules() if url_map is not None else ():
        if rule.endpoint == "static":
            owner = app
        elif rule.endpoint.endswith(".static"):
            owner = app.blueprints.get(rule.endpoint.rsplit(".", 1)[0])
        else:
            continue
        folder = getattr(owner, "static_folder", None)
        if folder:
            found.append((os.path.join(os.path.realpath(folder), ""), rule.rule.split("<", 1)[0]))
    return found


def describe(paths: list[str], folders: list[tuple[str, str]]) -> tuple[str, list[str]]:
    """``("css", [url paths])`` when only stylesheets in static folders changed, else
    ``("reload", [file names])``."""
    urls = []
    for path in paths:
        real = os.path.realpath(path)
        url = next((p + real[len(f) :] for f, p in folders if real.startswith(f)), None)
        if url is None or not real.endswith(".css"):
            return "reload", [os.path.basename(p) for p in paths]
        urls.append(url.replace(os.sep, "/"))
    return "css", urls


class LiveReload:
    """WSGI middleware: the script in pages, the event stream and the script at ``PREFIX``."""

    def __init__(
        self,
        app: WSGIApp,
        flask_app: Any = None,
        allow_remote: bool = False,
        use: FileUse | None = None,
    ) -> None:
        self.app = app
        self.flask_app = flask_app
        self.use = use  # what this process read and wrote (``sources``); None: every change
        #: Non-loopback clients get no script and a 403 here, as from the debugger: the events
        #: name this process and the files being edited (``--debugger-remote`` opts in).
        self.allow_remote = allow_remote
        self.token = secrets.token_hex(4)
        self.broadcast = Broadcast()

    @property
    def generation(self) -> str:
        """This process's (a worker forked from the loaded app is a generation of its own)."""
        return f"{os.getpid()}-{self.token}"

    def changed(self, paths: list[str]) -> None:
        """From ``notify`` (the child's control-channel greenlet, which must never die here):
        files changed that need no restart. Only those a page is built from reach the tabs
        (``sources``): never the data the app itself writes."""
        folders: list[tuple[str, str]] = []
        dirs: list[str] = []
        templates: set[str] = set()
        if self.flask_app is not None:
            try:
                folders = static_folders(self.flask_app)
                dirs = template_dirs(self.flask_app)
                templates = loaded_templates(self.flask_app)
            except Exception:  # an odd url_map, blueprint or loader: decide on what we have
                pass
        paths = page_sources(paths, [*dirs, *(f for f, _ in folders)], templates, self.use)
        if not paths:
            return
        name, items = describe(paths, folders)
        self.broadcast.send(event(name, {"paths": items}))

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = str(environ.get("PATH_INFO", ""))
        if path.startswith(PREFIX):
            if not self.allow_remote and not is_loopback(environ.get("REMOTE_ADDR")):
                return plain("403 FORBIDDEN", FORBIDDEN, start_response)
            return self.serve(path, environ, start_response)
        if not wants_script(environ) or (
            not self.allow_remote and not is_loopback(environ.get("REMOTE_ADDR"))
        ):
            return self.app(environ, start_response)
        return inject(self.app, environ, start_response, lambda nonce: self.tag(environ, nonce))

    def tag(self, environ: dict[str, Any], nonce: str | None) -> bytes:
        root = html.escape(str(environ.get("SCRIPT_NAME", "")).rstrip("/"))
        extra = f' nonce="{html.escape(nonce)}"' if nonce else ""
        return (
            f'<script src="{root}{SCRIPT}?v={JS_VERSION}" data-root="{root}" '
            f'data-events="{root}{EVENTS}" data-generation="{self.generation}"{extra} defer>'
            "</script>"
        ).encode()

    def serve(
        self, path: str, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if path == EVENTS:
            if self.broadcast.full():
                return plain("503 SERVICE UNAVAILABLE", BUSY, start_response, retry=True)
            start_response(
                "200 OK",
                [("Content-Type", "text/event-stream"), ("Cache-Control", "no-store")],
            )
            return self.broadcast.stream(event("hello", {"generation": self.generation}))
        if path == SCRIPT:
            headers = [
                ("Content-Type", "text/javascript; charset=utf-8"),
                ("Content-Length", str(len(JS))),
                ("Cache-Control", "max-age=86400"),  # the URL carries the script's version
            ]
            start_response("200 OK", headers)
            return [] if environ.get("REQUEST_METHOD") == "HEAD" else [JS]
        body = b"Not found: a path reserved by geventdev's live reload.\n"
        return plain("404 NOT FOUND", body, start_response)


def plain(
    status: str, body: bytes, start_response: Callable[..., Any], retry: bool = False
) -> list[bytes]:
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    if retry:
        headers.append(("Retry-After", "3"))
    start_response(status, headers)
    return [body]


def wants_script(environ: dict[str, Any]) -> bool:
    """A browser showing a page: it navigates (``Sec-Fetch-Dest: document``, or without Fetch
    Metadata it accepts ``text/html``). Not fetch/XHR/htmx, not curl or requests (``Accept:
    */*``): scripts and tests get the app's bytes. A HEAD is judged like its GET, so it reports
    the length that GET gets."""
    dest = environ.get("HTTP_SEC_FETCH_DEST")
    if dest is None and "text/html" not in str(environ.get("HTTP_ACCEPT", "")):
        return False  # no page load (curl, scripts, load tools) in two lookups: 0.3 -> 0.1 us
    if environ.get("REQUEST_METHOD") == "OPTIONS":
        return False
    if any(environ.get(name) for name in PARTIAL_HEADERS):
        return False
    return dest is None or dest in DOCUMENT_DESTS
