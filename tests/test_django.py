"""Django through ``mysite.wsgi:application`` behaves like ``manage.py runserver`` (issue 16,
item 6): a template edit is served (the cached template loader is reset, as runserver's
autoreloader does), and static files, the admin's included, are served in DEBUG.

A real project from ``django-admin startproject``, a real template edit, real static files, and
``runserver`` itself run beside geventdev for the answers to compare.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
import requests
from conftest import DevServer, geventdev_env, wait_until, write

django = pytest.importorskip("django")
pytestmark = pytest.mark.e2e

URLS = """
from django.shortcuts import render


def home(request):
    return render(request, "home.html", {"name": "world"})


urlpatterns += [path("", home)]
"""
SETTINGS = """
TEMPLATES[0]["DIRS"] = [BASE_DIR / "templates"]
STATICFILES_DIRS = [BASE_DIR / "static"]
"""
PAGE = "<html><body><p>home {version} {{{{ name }}}}</p></body></html>"
COMPARED = ["/", "/static/admin/css/base.css", "/static/site.css", "/static/nope.css"]


def startproject(project: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "django", "startproject", "mysite", str(project)],
        check=True,
        timeout=60,
        env=geventdev_env(),
    )
    settings = project / "mysite" / "settings.py"
    write(settings, settings.read_text() + SETTINGS)
    urls = project / "mysite" / "urls.py"
    write(urls, urls.read_text() + URLS)
    write(
        project / "templates" / "home.html", "<html><body><p>home v1 {{ name }}</p></body></html>"
    )
    write(project / "static" / "site.css", "p { color: red }\n")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def runserver(project: Path, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """``manage.py runserver --noreload`` on a free port: Django's own development server."""
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []

    def start() -> str:
        url = f"http://127.0.0.1:{free_port()}"
        log = (tmp_path / "runserver.log").open("wb")
        logs.append(log)
        cmd = [sys.executable, "manage.py", "runserver", "--noreload", url.split("//")[1]]
        procs.append(
            subprocess.Popen(
                cmd, cwd=project, stdout=log, stderr=subprocess.STDOUT, env=geventdev_env()
            )
        )

        def up() -> bool:
            try:
                return requests.get(url + "/static/site.css", timeout=5).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(up, 30, f"runserver at {url}: {(tmp_path / 'runserver.log').read_text()}")
        return url

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)
    for log in logs:
        log.close()


def answers(url: str) -> list[tuple[int, str]]:
    """Status and body of each URL; the debug 404 page names the server's own address."""
    responses = (requests.get(url + p, timeout=15) for p in COMPARED)
    return [(r.status_code, r.text.replace(url, "<server>")) for r in responses]


def test_django_serves_like_runserver(
    project: Path, dev_server: Callable[..., DevServer], runserver: Callable[[], str]
) -> None:
    startproject(project)
    # as users run it: bytecode caches on
    server = dev_server("mysite.wsgi:application", PYTHONDONTWRITEBYTECODE="")
    assert server.wait_for_text("/", "home v1 world").status_code == 200
    base_css = Path(django.__file__).parent / "contrib/admin/static/admin/css/base.css"
    admin_css = server.get("/static/admin/css/base.css")
    assert admin_css.status_code == 200, admin_css.text[:500]
    assert admin_css.content == base_css.read_bytes()
    assert server.get("/static/site.css").text == "p { color: red }\n"
    assert server.get("/static/nope.css").status_code == 404

    write(project / "templates" / "home.html", PAGE.format(version="v2"))
    server.wait_for_text("/", "home v2 world")
    assert "Detected change" not in server.log()  # a template is no code: no restart
    assert answers(server.url) == answers(runserver())
    assert "Traceback" not in server.log()


def test_without_debug_static_files_are_not_served(
    project: Path, dev_server: Callable[..., DevServer]
) -> None:
    """runserver's condition: staticfiles serves in DEBUG only (production serves them itself)."""
    startproject(project)
    settings = project / "mysite" / "settings.py"
    text = settings.read_text() + textwrap.dedent(
        """
        DEBUG = False
        ALLOWED_HOSTS = ["127.0.0.1"]
        """
    )
    write(settings, text)
    server = dev_server("mysite.wsgi:application")
    assert server.wait_for_text("/", "home v1 world").status_code == 200
    assert server.get("/static/site.css").status_code == 404
