"""Start geventdev from tests and tools: ``serve()`` runs it in a subprocess.

``serve()`` runs the real stack (``python -m geventdev``) in a subprocess in its own session, so
the caller is never monkey-patched and the whole tree is stopped by process group. The monitor
binds port 0 before any app process exists, so parallel test runs never race for a port. Stdlib
only: the pytest plugin imports this module.
"""

from __future__ import annotations

import dataclasses
import http.client
import os
import re
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import SplitResult, urlsplit

from geventdev.config import Config
from geventdev.testing.process import POLL, Server, StrPath, wait_for

#: Monitor log lines (stable, see the README) that mean the app will not serve this code.
FAILED = re.compile(r"^ \* (App (?:failed to load|exited|was killed).*?)(?:; wait.*)?$", re.M)
ERROR = re.compile(r"^Error: .*$|\Z", re.M)  # the monitor's one-line fatal error, if any
#: A 5xx at start-up is the app's own answer, or the page for a load error (500) or a dead app
#: (503). Both failures are logged by the monitor within milliseconds of being served; this is
#: only how long a 5xx waits for that line before counting as the app's own answer.
LOAD_ERROR_GRACE = 3.0


class ServerError(RuntimeError):
    """The server did not start; the message ends with its log (the app's traceback).

    ``server`` is the stopped ``Server``: its ``pid``, ``log()`` and, if it got that far, ``url``.
    """

    def __init__(self, message: str, server: Server) -> None:
        super().__init__(f"{message}\n--- geventdev log ---\n{server.log()}")
        self.server = server


def serve(
    target: StrPath | None = None,
    *,
    cwd: StrPath | None = None,
    env: Mapping[str, str] | None = None,
    log_path: StrPath | None = None,
    startup_timeout: float = 30.0,
    **options: Any,
) -> Server:
    """Start geventdev in a subprocess and return it once the app answers HTTP.

    Use it as a context manager (``with serve("app.py") as srv: requests.get(srv.url)``): leaving
    the block stops the server. Options are ``Config`` fields; here ``port`` defaults to 0 (a free
    port, bound by the monitor), ``reload`` and ``livereload`` to False (your browser tests see
    the app's own HTML). ``cwd`` is where the target is looked up,
    ``env`` adds environment variables, ``log_path`` keeps the log in a file of your choosing.

    Raises:
        ServerError: the app failed to load, the target was not found, or nothing answered
            within ``startup_timeout`` seconds. The server is stopped before this is raised.
    """
    if target is not None:
        options["app"] = os.fspath(target)
    config = Config(**{"port": 0, "reload": False, "livereload": False, **options})
    # geventdev.cli, not geventdev: even with reload off, keep the monitor (crash reports, 503s)
    # and never serve from the patched process itself (launch.py's --no-reload mode).
    command = [sys.executable, "-m", "geventdev.cli", *config_argv(config)]
    server = Server(config, command, cwd=cwd, env=env, log_path=log_path)
    try:
        wait_ready(server, startup_timeout)
    except BaseException:
        server.stop()
        raise
    return server


def wait_ready(server: Server, timeout: float) -> None:
    """Wait for the banner's address, then for one HTTP answer from the app itself.

    A request sent while the app still loads waits in the kernel's backlog of the listening
    socket until the app serves it, so one GET is a real readiness probe.
    """
    deadline = time.monotonic() + timeout
    if not wait_for(lambda: _check_alive(server) or server.read_url(), timeout):
        raise ServerError(f"geventdev did not bind within {timeout} s.", server)
    probe = _Probe(server.url, max(deadline - time.monotonic(), POLL))
    grace: float | None = None
    while True:
        _check_alive(server)
        if failed := FAILED.search(server.log()):
            raise ServerError(f"The app did not start: {failed.group(1)}", server)
        now = time.monotonic()
        if probe.done.is_set() and probe.error is not None:  # e.g. reset: ask again
            probe = _Probe(server.url, max(deadline - now, POLL))
        elif probe.done.is_set():
            grace = grace or now + LOAD_ERROR_GRACE
            if (probe.status or 500) < 500 or now > grace:
                return
        if now > deadline:
            raise ServerError(f"The app did not answer HTTP within {timeout} s.", server)
        time.sleep(POLL)


def _check_alive(server: Server) -> bool:
    """Raise if the monitor has exited (a wrong target exits with status 2); else False."""
    if (code := server.returncode) is not None:
        error = ERROR.search(server.log())
        raise ServerError(f"geventdev exited with status {code}. {error and error[0]}", server)
    return False


class _Probe:
    """One GET / in a thread, so the caller can watch the log while the app loads."""

    def __init__(self, url: str, timeout: float) -> None:
        self.status: int | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        threading.Thread(target=self._get, args=(urlsplit(url), timeout), daemon=True).start()

    def _get(self, url: SplitResult, timeout: float) -> None:
        conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)
        try:
            conn.request("GET", "/", headers={"Connection": "close"})
            response = conn.getresponse()
            response.read()
            self.status = response.status
        except (OSError, http.client.HTTPException) as exc:
            self.error = exc
        finally:
            conn.close()
            self.done.set()


def config_argv(config: Config) -> list[str]:
    """The ``geventdev`` command-line options for ``config``, every option explicit.

    Explicit options win over ``FLASK_RUN_*`` variables and ``.flaskenv``, so a server started
    from code does what the code says (the app still sees the whole environment).
    """
    config = dataclasses.replace(
        config,
        reload=config.use_reloader,
        debugger=config.use_debugger,
        livereload=config.use_livereload,
    )
    argv: list[str] = []
    for field in dataclasses.fields(Config):
        value = getattr(config, field.name)
        flag = next((d for d in field.metadata.get("decls", ()) if d.startswith("--")), None)
        if value is None or flag is None:
            continue
        if "/" in flag:
            on, off = flag.split("/")
            argv.append(on if value else off)
        elif isinstance(value, tuple):
            argv += [f"{flag}={item}" for item in value]
        else:
            argv.append(f"{flag}={value}")
    return argv
