"""The live-reload middleware, called directly: what gets the script, what stays byte-identical,
Content-Length, CSP, the event stream and which event a change becomes."""

from __future__ import annotations

import gzip
import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Blueprint, Flask, Response, jsonify, send_file, stream_with_context
from werkzeug.debug import DebuggedApplication
from werkzeug.test import EnvironBuilder

from geventdev.app import notify
from geventdev.cli.main import command
from geventdev.config import Config
from geventdev.livereload import csp
from geventdev.livereload.middleware import EVENTS, SCRIPT, LiveReload, describe, static_folders

PAGE = b"<!doctype html><html><head><title>t</title></head><body><h1>hi</h1></body></html>"
#: What a browser sends when it opens a page.
NAVIGATION = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8", "Sec-Fetch-Dest": "document"}
SCRIPT_TAG = re.compile(rb'<script src="/__geventdev__/livereload\.js\?v=\w+" [^>]*></script>')

#: Live reload answers loopback peers only (like the debugger console).
LOCAL_PEER = {"REMOTE_ADDR": "127.0.0.1"}


class Served:
    """What a WSGI server would send: status, headers, body; the app's iterable, closed."""

    def __init__(
        self, app: Any, path: str = "/", method: str = "GET", **headers: str | None
    ) -> None:
        sent = {k: v for k, v in {**NAVIGATION, **headers}.items() if v is not None}
        environ = EnvironBuilder(
            path=path, method=method, headers=sent, environ_base=LOCAL_PEER
        ).get_environ()
        self.calls: list[tuple[str, list[tuple[str, str]]]] = []
        written: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None):
            self.calls.append((status, list(headers)))
            return written.append

        self.result = app(environ, start_response)
        try:
            self.body = b"".join([*written, *self.result])
        finally:
            getattr(self.result, "close", lambda: None)()
        self.status, self.headers = self.calls[-1]

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def plain(body: bytes | Iterable[bytes], headers: list[tuple[str, str]], status: str = "200 OK"):
    """A bare WSGI app answering ``body`` with ``headers``."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response(status, headers)
        return [body] if isinstance(body, bytes) else body

    return app


def html_headers(body: bytes, *extra: tuple[str, str]) -> list[tuple[str, str]]:
    return [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Length", str(len(body))),
        *extra,
    ]


def test_script_goes_before_body_end_and_content_length_is_fixed() -> None:
    app = plain(PAGE, html_headers(PAGE, ("ETag", '"abc"'), ("X-Custom", "kept")))
    served = Served(LiveReload(app))
    assert served.status == "200 OK"
    tag = SCRIPT_TAG.search(served.body)
    assert tag and served.body.endswith(b"</body></html>")
    assert served.body.replace(tag.group(0), b"") == PAGE
    assert served.header("Content-Length") == str(len(served.body))
    assert served.header("ETag") is None  # a 304 would bring back the page without the script
    assert served.header("X-Custom") == "kept"
    assert b'data-generation="' in tag.group(0) and b"defer" in tag.group(0)
    assert f'data-events="{EVENTS}"'.encode() in tag.group(0)


def test_html_without_body_end_gets_the_script_at_the_end() -> None:
    fragment = b"<p>no body tag</p>"
    served = Served(LiveReload(plain(fragment, html_headers(fragment))))
    assert served.body.startswith(fragment) and SCRIPT_TAG.fullmatch(served.body[len(fragment) :])
    assert served.header("Content-Length") == str(len(served.body))


def test_a_list_without_content_length_is_complete() -> None:
    served = Served(LiveReload(plain([b"<body>", b"x</body>"], [("Content-Type", "text/html")])))
    assert SCRIPT_TAG.search(served.body) and served.header("Content-Length")


@pytest.mark.parametrize(
    "body, headers, kwargs",
    [
        (b'{"a": 1}', [("Content-Type", "application/json"), ("Content-Length", "8")], {}),
        (gzip.compress(PAGE), html_headers(gzip.compress(PAGE), ("Content-Encoding", "gzip")), {}),
        (PAGE, html_headers(PAGE, ("Content-Disposition", "attachment; filename=a.html")), {}),
        (PAGE, html_headers(PAGE), {"Sec-Fetch-Dest": "empty"}),  # fetch()/XHR
        (PAGE, html_headers(PAGE), {"HX-Request": "true"}),  # an htmx swap
        (PAGE, html_headers(PAGE), {"Sec-Fetch-Dest": None, "Accept": "*/*"}),  # curl, requests
        (PAGE, html_headers(PAGE, ("Content-Range", "bytes 0-9/99")), {}),
        (PAGE, [("Content-Type", "text/html; charset=UTF-32")], {}),  # ASCII would break it
    ],
    ids=["json", "gzip", "download", "fetch", "htmx", "script", "range", "utf32"],
)
def test_other_responses_are_the_apps_own(body: bytes, headers: Any, kwargs: Any) -> None:
    app = plain(body, headers)
    direct = Served(app, **kwargs)
    wrapped = Served(LiveReload(app), **kwargs)
    assert (wrapped.status, wrapped.headers, wrapped.body) == (direct.status, headers, body)


def restarting(second: list[tuple[str, str]], then: list[bytes]) -> Callable[..., Any]:
    """A page that fails halfway: the half sent, then an error response (the debugger's way)."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", html_headers(PAGE))
        yield PAGE[:10]
        try:
            raise ValueError("halfway")
        except ValueError:
            start_response("500 INTERNAL SERVER ERROR", second, sys.exc_info())
        yield from then

    return app


def test_a_restarted_response_replaces_the_half_page() -> None:
    error = b"<html><body>ValueError</body></html>"
    served = Served(LiveReload(restarting([("Content-Type", "text/html")], [error])))
    assert [status for status, _ in served.calls] == ["500 INTERNAL SERVER ERROR"]
    tag = SCRIPT_TAG.search(served.body)
    assert tag and served.body.replace(tag.group(0), b"") == error


def test_a_restart_into_an_empty_plain_response_is_sent_once() -> None:
    served = Served(LiveReload(restarting([("Content-Type", "text/plain")], [])))
    assert [status for status, _ in served.calls] == ["500 INTERNAL SERVER ERROR"]
    assert served.body == b""


def test_a_stream_is_passed_through_as_it_comes() -> None:
    pulled: list[int] = []

    def chunks() -> Iterator[bytes]:
        for i in range(3):
            pulled.append(i)
            yield f"<p>{i}</p>".encode()

    closed: list[bool] = []

    class Stream:
        def __iter__(self) -> Iterator[bytes]:
            return chunks()

        def close(self) -> None:
            closed.append(True)

    stream = Stream()
    served = Served(LiveReload(plain(stream, [("Content-Type", "text/html")])))  # type: ignore[arg-type]
    assert served.result is stream  # the same iterable: nothing read ahead, nothing buffered
    assert served.body == b"<p>0</p><p>1</p><p>2</p>" and closed == [True]


def flask_app(tmp_path: Path) -> Flask:
    app = Flask(__name__, static_folder=str(tmp_path / "static"))
    app.debug = True  # as geventdev sets it: exceptions reach the debugger
    (tmp_path / "static").mkdir(exist_ok=True)
    (tmp_path / "file.html").write_bytes(PAGE)

    @app.route("/")
    def index() -> str:
        return "<html><body>page</body></html>"

    @app.route("/json")
    def data() -> Response:
        return jsonify(items=list(range(5)))

    @app.route("/stream")
    def stream() -> Response:
        return Response(
            stream_with_context(f"<li>{i}</li>" for i in range(5)), mimetype="text/html"
        )

    @app.route("/download")
    def download() -> Response:
        return send_file(tmp_path / "file.html", as_attachment=True)

    @app.route("/boom")
    def boom() -> str:
        raise RuntimeError("boom for the debugger")

    return app


def test_flask_behind_the_debugger(tmp_path: Path) -> None:
    """werkzeug's debugger starts every response lazily, from a generator."""
    app = flask_app(tmp_path)
    plain_app, wrapped = DebuggedApplication(app, evalex=True), LiveReload(DebuggedApplication(app))
    for path in ("/json", "/stream", "/download"):
        direct, served = Served(plain_app, path), Served(wrapped, path)
        assert (served.status, served.body) == (direct.status, direct.body), path
        assert served.headers == direct.headers, path
    page = Served(wrapped, "/")
    assert SCRIPT_TAG.search(page.body) and page.header("Content-Length") == str(len(page.body))
    error = Served(wrapped, "/boom")
    assert error.status.startswith("500") and b"boom for the debugger" in error.body
    tag = SCRIPT_TAG.search(error.body)
    assert tag and error.body.index(tag.group(0)) < error.body.rindex(b"</body>")
    assert error.header("Content-Length") == str(len(error.body))
    resource = Served(wrapped, "/?__debugger__=yes&cmd=resource&f=style.css")
    assert resource.status == "200 OK" and not SCRIPT_TAG.search(resource.body)


def test_legacy_write_callable() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", html_headers(PAGE))(PAGE)
        return []

    served = Served(LiveReload(app))
    assert SCRIPT_TAG.search(served.body) and served.header("Content-Length") == str(
        len(served.body)
    )


def nonce_of(body: bytes) -> str | None:
    match = re.search(rb'nonce="([^"]+)"', body)
    return match.group(1).decode() if match else None


def test_csp_nonce_is_reused() -> None:
    policy = "default-src 'self'; script-src 'nonce-r4nd0m' 'strict-dynamic'"
    served = Served(
        LiveReload(plain(PAGE, html_headers(PAGE, ("Content-Security-Policy", policy))))
    )
    assert nonce_of(served.body) == "r4nd0m"
    assert served.header("Content-Security-Policy") == policy  # already allows the stream


def test_csp_that_blocks_the_script_is_opened() -> None:
    policy = "default-src 'none'; img-src 'self'"
    served = Served(
        LiveReload(plain(PAGE, html_headers(PAGE, ("Content-Security-Policy", policy))))
    )
    nonce = nonce_of(served.body)
    opened = dict(csp.parse(served.header("Content-Security-Policy") or ""))
    assert nonce and opened["script-src"] == [f"'nonce-{nonce}'"]
    assert opened["connect-src"] == ["'self'"]
    assert opened["default-src"] == ["'none'"] and opened["img-src"] == ["'self'"]


def test_csp_with_unsafe_inline_gets_self_not_a_nonce() -> None:
    # A nonce would switch 'unsafe-inline' off and break the page's own inline scripts.
    headers, nonce = csp.open_headers(
        [("Content-Security-Policy", "script-src 'unsafe-inline'; connect-src https://api.x")]
    )
    opened = dict(csp.parse(headers[0][1]))
    assert nonce is None and opened["script-src"] == ["'unsafe-inline'", "'self'"]
    assert opened["connect-src"] == ["https://api.x", "'self'"]


def test_csp_report_only_and_self_are_left_alone() -> None:
    headers = [
        ("Content-Security-Policy", "script-src 'self'; connect-src 'self'"),
        ("Content-Security-Policy-Report-Only", "default-src 'none'"),
    ]
    assert csp.open_headers(headers) == (headers, None)


def test_meta_csp_reuses_its_nonce_or_says_why_not(capsys: pytest.CaptureFixture[str]) -> None:
    meta = b'<meta http-equiv="Content-Security-Policy" content="script-src \'nonce-m3ta\'">'
    page = PAGE.replace(b"<title>", meta + b"<title>")
    assert nonce_of(Served(LiveReload(plain(page, html_headers(page)))).body) == "m3ta"
    strict = PAGE.replace(b"<title>", b'<meta http-equiv="content-security-policy" content="x">')
    Served(LiveReload(plain(strict, html_headers(strict))), "/strict")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/strict" in err and "Content-Security-Policy" in err


def read_event(stream: Iterator[bytes]) -> tuple[str, Any]:
    text = next(stream).decode()
    name = re.search(r"^event: (\w+)$", text, re.M)
    data = re.search(r"^data: (.*)$", text, re.M)
    assert name and data and text.endswith("\n\n"), text
    return name.group(1), json.loads(data.group(1))


def test_event_stream_says_hello_then_relays_changes(tmp_path: Path) -> None:
    app = flask_app(tmp_path)
    middleware = LiveReload(app, app)
    unsubscribe = notify.subscribe(middleware.changed)
    try:
        environ = EnvironBuilder(
            path=EVENTS, headers={"Accept": "text/event-stream"}, environ_base=LOCAL_PEER
        )
        heads: list[Any] = []
        streams = [
            iter(middleware(environ.get_environ(), lambda s, h: heads.append((s, h))))
            for _ in range(2)  # two tabs or browsers
        ]
        assert [read_event(s) for s in streams] == [
            ("hello", {"generation": middleware.generation})
        ] * 2
        assert dict(heads[0][1])["Content-Type"] == "text/event-stream"
        notify.publish([str(tmp_path / "templates" / "index.html")])
        assert [read_event(s) for s in streams] == [("reload", {"paths": ["index.html"]})] * 2
        notify.publish([str(tmp_path / "static" / "css" / "site.css")])
        assert read_event(streams[0]) == ("css", {"paths": ["/static/css/site.css"]})
        middleware.broadcast.heartbeat = 0.01
        assert read_event(streams[1])[0] == "css" and read_event(streams[1])[0] == "ping"
        for stream in streams:
            stream.close()  # type: ignore[attr-defined]
        assert not middleware.broadcast.queues
    finally:
        unsubscribe()


def test_what_a_change_becomes(tmp_path: Path) -> None:
    app = Flask(__name__, static_folder=str(tmp_path / "static"))
    app.register_blueprint(
        Blueprint(
            "admin",
            __name__,
            static_folder=str(tmp_path / "admin"),
            static_url_path="/assets",
            url_prefix="/admin",
        ),
    )
    folders = static_folders(app)
    css, admin_css = str(tmp_path / "static/a.css"), str(tmp_path / "admin/b.css")
    assert describe([css, admin_css], folders) == ("css", ["/static/a.css", "/admin/assets/b.css"])
    assert describe([css, str(tmp_path / "static/app.js")], folders)[0] == "reload"
    assert describe([str(tmp_path / "templates/x.css")], folders)[0] == "reload"
    assert describe([css], []) == ("reload", ["a.css"])  # not a Flask app: no static folder known


def test_own_paths(tmp_path: Path) -> None:
    middleware = LiveReload(flask_app(tmp_path))
    script = Served(middleware, SCRIPT)
    assert script.status == "200 OK" and b"EventSource" in script.body
    assert script.header("Content-Length") == str(len(script.body))
    assert Served(middleware, "/__geventdev__/other").status.startswith("404")


def test_option_follows_debug() -> None:
    assert Config().use_livereload and not Config(debug=False).use_livereload
    assert Config(debug=False, livereload=True).use_livereload
    assert not Config(livereload=False).use_livereload
    option = next(p for p in command.params if p.name == "livereload")
    assert (option.opts, option.secondary_opts) == (["--livereload"], ["--no-livereload"])


def test_a_failing_listener_does_not_stop_the_others(capsys: pytest.CaptureFixture[str]) -> None:
    got: list[list[str]] = []

    def broken(paths: list[str]) -> None:
        raise RuntimeError("listener bug")

    unsubscribe = [notify.subscribe(broken), notify.subscribe(got.append)]
    try:
        notify.publish(["templates/index.html"])  # must not raise into the control channel
    finally:
        for undo in unsubscribe:
            undo()
    assert got == [["templates/index.html"]]
    assert "RuntimeError: listener bug" in capsys.readouterr().err
