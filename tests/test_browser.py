"""Live reload end to end: the real geventdev, a real headless Chromium (Debian's, driven by
Selenium through /usr/bin/chromedriver), real file edits. One browser for the module; every wait
has a deadline."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import DevServer, pid_alive, wait_until, write

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip(
        f"no {CHROMIUM} / {CHROMEDRIVER}: apt-get install chromium chromium-driver (.ci/run does)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium: pip install -e '.[test]'")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

FLAGS = (
    "--headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage "
    "--disable-background-networking --disable-component-update --disable-sync"
).split()
APP = """
import os
from flask import Flask, Response, jsonify, render_template

VERSION = "{version}"
app = Flask(__name__)

@app.route("/")
def index():
    return render_template("index.html", version=VERSION, pid=os.getpid())

@app.route("/csp/<kind>")
def strict(kind):
    response = app.make_response(index())
    response.headers["Content-Security-Policy"] = POLICIES[kind]
    return response

POLICIES = {{
    "none": "default-src 'none'; style-src 'self'",
    "nonce": "script-src 'nonce-pAg3' 'strict-dynamic'; connect-src 'none'; style-src 'self'",
}}

@app.route("/api")
def api():
    return jsonify(items=list(range(20)), name="ok")

@app.route("/stream")
def stream():
    return Response((f"<li>{{i}}</li>" for i in range(50)), mimetype="text/html")
"""
TEMPLATE = """
<!doctype html>
<html>
<head><link rel="stylesheet" href="{{ url_for('static', filename='site.css') }}"></head>
<body>
<h1 id="title">Title {title} {{ version }}</h1>
<p id="pid">{{ pid }}</p>
</body>
</html>
"""
LIVE = "window.__geventdevLiveReload"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # no selenium-manager: both paths are given
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.TemporaryDirectory(prefix="geventdev-chromium-")
    options.add_argument(f"--user-data-dir={profile.name}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, for net errors
    service = Service(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        service.stop()
        profile.cleanup()


@pytest.fixture
def tab(browser: Any) -> Iterator[Any]:
    """The browser with one tab, left blank after the test (before its server stops)."""
    yield browser
    for handle in browser.window_handles[1:]:
        browser.switch_to.window(handle)
        browser.close()
    browser.switch_to.window(browser.window_handles[0])
    browser.get("about:blank")


def js(driver: Any, script: str) -> Any:
    """Run ``script``; None while the page is between two documents (reloading)."""
    try:
        return driver.execute_script(script)
    except WebDriverException:
        return None


def until(driver: Any, condition: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        lambda _: condition(), message=f"timed out waiting for {what}"
    )


def text(driver: Any, element_id: str) -> str | None:
    found = js(
        driver, f"var e = document.getElementById('{element_id}'); return e && e.textContent"
    )
    return found if isinstance(found, str) else None


def open_page(driver: Any, url: str) -> None:
    driver.get(url)
    until(driver, lambda: js(driver, f"return !!({LIVE} && {LIVE}.connected)"), "live reload")
    driver.execute_script("window.__marker = 'before'")


def make_project(project: Path, version: str = "v1", title: str = "A") -> None:
    write(project / "app.py", APP.format(version=version))
    write(project / "templates" / "index.html", TEMPLATE.replace("{title}", title))
    write(project / "static" / "site.css", "#title { color: rgb(255, 0, 0); }\n")


def page_loads(server: DevServer) -> int:
    return server.log().count('"GET / HTTP/1.1" 200')


def test_template_edit_reloads_every_tab_without_a_restart(
    project: Path, dev_server: Callable[..., DevServer], tab: Any
) -> None:
    make_project(project)
    server = dev_server("app.py")
    server.wait_for_text("/", "Title A")
    pid = server.child()
    handles = []
    for _ in range(3):  # several tabs share one connection: one of them leads
        if handles:
            tab.switch_to.new_window("tab")
        open_page(tab, server.url + "/")
        handles.append(tab.current_window_handle)
    leaders = 0
    for handle in handles:
        tab.switch_to.window(handle)
        leaders += bool(js(tab, f"return {LIVE}.leader"))
    assert leaders == 1
    write(project / "templates" / "index.html", TEMPLATE.replace("{title}", "B"))
    for handle in handles:
        tab.switch_to.window(handle)
        until(tab, lambda: (text(tab, "title") or "").startswith("Title B"), "the edited template")
        assert js(tab, "return window.__marker") is None  # reloaded
        assert text(tab, "pid") == str(pid)
    assert server.child() == pid and "Detected change" not in server.log()


def test_css_edit_applies_in_place(
    project: Path, dev_server: Callable[..., DevServer], tab: Any
) -> None:
    make_project(project)
    server = dev_server("app.py")
    open_page(tab, server.wait_for_text("/", "Title A").url)
    color = "return getComputedStyle(document.getElementById('title')).color"
    assert js(tab, color) == "rgb(255, 0, 0)"
    loads = page_loads(server)
    write(project / "static" / "site.css", "#title { color: rgb(0, 0, 255); }\n")
    until(tab, lambda: js(tab, color) == "rgb(0, 0, 255)", "the new CSS")
    assert js(tab, "return window.__marker") == "before"  # no page reload
    assert page_loads(server) == loads
    assert len(js(tab, "return document.querySelectorAll('link[rel=stylesheet]')")) == 1


def test_python_edit_reloads_once_the_new_code_serves(
    project: Path, dev_server: Callable[..., DevServer], tab: Any
) -> None:
    make_project(project)
    server = dev_server("app.py")
    open_page(tab, server.wait_for_text("/", "Title A v1").url)
    old = server.child()
    loads = page_loads(server)
    write(project / "app.py", APP.format(version="v2"))
    changed = time.monotonic()
    until(tab, lambda: text(tab, "title") == "Title A v2", "the new code in the page")
    assert js(tab, "return window.__marker") is None
    assert text(tab, "pid") != str(old)
    # The open event stream did not hold the old process up (graceful timeout: 5 s).
    wait_until(lambda: not pid_alive(old), 5, "the old app process to exit")
    assert time.monotonic() - changed < 3.5
    until(tab, lambda: js(tab, f"return {LIVE}.connected"), "reconnected")
    assert page_loads(server) == loads + 1  # one reload, straight to the new code


def test_restarts_leave_no_network_errors_in_the_console(
    project: Path, dev_server: Callable[..., DevServer], tab: Any
) -> None:
    """Issue 13 item 7: a restart ends the live-reload stream with its last chunk, so the
    console shows no ERR_INCOMPLETE_CHUNKED_ENCODING (about 7 per save before)."""
    make_project(project)
    server = dev_server("app.py")
    open_page(tab, server.wait_for_text("/", "Title A v1").url)
    tab.get_log("browser")  # drop what came before
    for version in ("v2", "v3"):
        write(project / "app.py", APP.format(version=version))
        until(tab, lambda: text(tab, "title") == f"Title A {version}", "the new code")  # noqa: B023
        until(tab, lambda: js(tab, f"return {LIVE}.connected"), "reconnected")
    errors = [entry["message"] for entry in tab.get_log("browser")]
    assert not [e for e in errors if "ERR_INCOMPLETE_CHUNKED_ENCODING" in e], errors


def test_syntax_error_shows_in_the_page_and_the_fix_recovers(
    project: Path, dev_server: Callable[..., DevServer], tab: Any
) -> None:
    make_project(project)
    server = dev_server("app.py")
    open_page(tab, server.wait_for_text("/", "Title A v1").url)
    write(project / "app.py", APP.format(version="v2") + "\ndef broken(:\n")
    shows = "return !!document.body && document.body.textContent.includes('SyntaxError')"
    until(tab, lambda: js(tab, shows), "the error page")
    until(tab, lambda: js(tab, f"return !!({LIVE} && {LIVE}.connected)"), "the error page live")
    write(project / "app.py", APP.format(version="v3"))
    until(tab, lambda: text(tab, "title") == "Title A v3", "the fixed code in the page")


@pytest.mark.parametrize("debugger", ["--debugger", "--no-debugger"])
def test_first_start_broken_then_fixed(
    debugger: str, project: Path, dev_server: Callable[..., DevServer], tab: Any
) -> None:
    make_project(project)
    write(project / "app.py", "import flask\nraise RuntimeError('not yet')\n")
    server = dev_server("app.py", debugger)
    server.wait_for_log("App failed to load")
    open_page(tab, server.url + "/")
    assert "not yet" in tab.page_source
    write(project / "app.py", APP.format(version="v1"))
    until(tab, lambda: text(tab, "title") == "Title A v1", "the app once fixed")


@pytest.mark.parametrize("kind", ["none", "nonce"])
def test_strict_csp(
    kind: str, project: Path, dev_server: Callable[..., DevServer], tab: Any
) -> None:
    make_project(project)
    server = dev_server("app.py")
    open_page(tab, server.wait_for_text("/", "Title A").url + f"csp/{kind}")
    write(project / "templates" / "index.html", TEMPLATE.replace("{title}", "B"))
    until(tab, lambda: (text(tab, "title") or "").startswith("Title B"), "the edited template")


def test_json_and_stream_are_byte_identical_with_and_without(
    project: Path, dev_server: Callable[..., DevServer], tab: Any
) -> None:
    make_project(project)
    servers = [dev_server("app.py"), dev_server("app.py", "--no-livereload")]
    navigation = {"Accept": "text/html", "Sec-Fetch-Dest": "document"}  # as a browser sends
    page = [
        s.wait_for_text("/", "Title A") and s.get("/", headers=navigation).text for s in servers
    ]
    assert "livereload" in page[0] and "livereload" not in page[1]
    assert "livereload" not in servers[0].get("/").text  # requests, curl: the app's own bytes
    for path in ("/api", "/stream"):
        got = [s.get(path, headers=navigation, stream=True) for s in servers]
        raw = [r.raw.read(decode_content=False) for r in got]
        for response in got:
            response.close()
        assert raw[0] == raw[1] and raw[0], path
        heads = [{k: v for k, v in r.headers.items() if k != "Date"} for r in got]
        assert heads[0] == heads[1], path
    assert heads[0].get("Transfer-Encoding") == "chunked"  # /stream is still streamed
    tab.get(servers[0].url + "/stream")
    assert js(tab, f"return typeof {LIVE}") == "undefined"
    assert "<li>49</li>" in tab.page_source


def test_an_open_page_does_not_hold_up_ctrl_c(
    project: Path, dev_server: Callable[..., DevServer], tab: Any
) -> None:
    make_project(project)
    server = dev_server("app.py")
    open_page(tab, server.wait_for_text("/", "Title A").url)
    started = time.monotonic()
    server.signal_group(signal.SIGINT)
    assert server.wait_exit(timeout=5) == 0
    assert time.monotonic() - started < 3
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/", timeout=2)
