"""werkzeug's debugger, fenced in: only this machine may use it; its PIN lockout survives reloads.

werkzeug's own Host check (``trusted_hosts``, CVE-2024-34069) stops DNS rebinding, not a client
that can reach the port: anyone may send ``Host: 127.0.0.1`` (werkzeug #3257). The PIN is the
real barrier, and its 10-try lockout lives in one process, so every reload used to grant ten
more guesses. Here the console, PIN entry and code execution answer loopback peers only (unless
``--debugger-remote``), and the failure count is reported to the monitor, which hands it to
every new app process. Traceback pages still render for everyone: they are the app's error page.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from werkzeug.debug import DebuggedApplication, get_pin_and_cookie_name
from werkzeug.wrappers import Request, Response

from geventdev.app import notify
from geventdev.config import Config
from geventdev.net import is_loopback
from geventdev.protocol import ENV_DEBUG_PIN, ENV_PIN_FAILURES

#: Failed PIN entries before the lockout (werkzeug >= 3.1.4's count).
PIN_ATTEMPTS = 10
#: werkzeug's defaults plus the loopback names ``run_simple`` would add.
LOCAL_HOSTS = (".localhost", "127.0.0.1", "localhost", "[::1]")
FORBIDDEN = (
    "The debugger console and PIN entry answer only this machine (a loopback client).\n"
    "Start geventdev with --debugger-remote to let other machines use them (dangerous: whoever\n"
    "gets the PIN can run code on this machine).\n"
)
DRAINING = "This app process is restarting; enter the PIN again in a moment.\n"


def trusted_hosts(host: str) -> list[str]:
    """The Host values the debugger trusts: loopback names, plus ``--host`` if it names one
    interface (never ``0.0.0.0``/``::``: that would trust any Host, werkzeug PR #3095)."""
    hosts = list(LOCAL_HOSTS)
    if host not in ("0.0.0.0", "::", ""):
        hosts.append(f"[{host}]" if ":" in host else host)
    return list(dict.fromkeys(hosts))


def released(environ: dict[str, Any], body: Iterable[bytes]) -> Iterator[bytes]:
    """``body``, then the environ's hold on werkzeug's list of preserved contexts dropped.

    Flask appends each request's contexts to that list, so environ -> list -> request context ->
    environ is a cycle that only the garbage collector frees: 27 objects, a whole request
    context, per request. Collecting them cost ~30 us a request in the app process (gc
    callbacks: 34 us vs pywsgi's 5); dropped here, refcounting frees them at once. After an
    exception the debugger keeps the list itself (``frame_contexts``), for its console."""
    try:
        yield from body
    finally:
        environ.pop("werkzeug.debug.preserve_context", None)


class GuardedDebugger(DebuggedApplication):
    """``DebuggedApplication`` that refuses remote peers, shares its PIN lockout and keeps one
    PIN for the whole server run."""

    def __init__(self, app: Any, config: Config) -> None:
        handed = handed_pin(app)
        if handed is not None:  # before werkzeug's __init__, which prints the PIN
            self._pin, self._pin_cookie = handed
        super().__init__(app, evalex=True)
        self.allow_remote = config.debugger_remote
        self.trusted_hosts = trusted_hosts(config.host)
        self._failed_pin_auth.value = min(int(os.environ.get(ENV_PIN_FAILURES) or 0), 255)
        notify.on_pin_failures(self.share_failures)
        if handed is None and self.pin is not None:  # the first one: every later one uses it
            notify.tell_monitor("debug_pin", {"pin": self.pin, "cookie": self.pin_cookie_name})

    def share_failures(self, count: int, reset: bool) -> None:
        """The count across every app process (from the monitor): it only grows (a failure
        here may not have reached the monitor yet), but for a right PIN, which resets it."""
        with self._failed_pin_auth.get_lock():
            mine = 0 if reset else self._failed_pin_auth.value
            self._failed_pin_auth.value = min(max(mine, count), 255)

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if "__debugger__" not in environ.get("QUERY_STRING", "") and not (
            self.console_path and str(environ.get("PATH_INFO", "")).endswith(self.console_path)
        ):  # the fast path: not the debugger's own URL, so skip werkzeug's Request object
            return released(environ, self.debug_application(environ, start_response))
        if not self.allow_remote and not is_loopback(environ.get("REMOTE_ADDR")):
            if self.is_debugger_request(Request(environ)):
                response = Response(FORBIDDEN, status=403, mimetype="text/plain")
                return response(environ, start_response)
        return super().__call__(environ, start_response)

    def is_debugger_request(self, request: Request) -> bool:
        """The console, PIN entry and command execution; the debugger's static files are fine."""
        if request.args.get("__debugger__") == "yes":
            return request.args.get("cmd") != "resource"
        return bool(self.console_path and request.path == self.console_path)

    def pin_auth(self, request: Request) -> Response:
        if notify.draining():
            # A process on its way out evaluates no PIN: its count may already be behind the
            # new process's, and guesses spread over both would pass the lockout (issue 12).
            return Response(DRAINING, status=503, mimetype="text/plain")
        if self._failed_pin_auth.value >= PIN_ATTEMPTS and not self.check_pin_trust(
            request.environ
        ):  # werkzeug < 3.1.4 allowed an 11th attempt (``> 10``): the same rule on every version
            return Response(
                json.dumps({"auth": False, "exhausted": True}), mimetype="application/json"
            )
        before = self._failed_pin_auth.value
        response: Response = super().pin_auth(request)
        if self._failed_pin_auth.value < before:  # a right PIN resets; failures are told below
            notify.tell_monitor("pin_failures", {"reset": True})
        return response

    def _fail_pin_auth(self) -> None:
        """werkzeug's, but the monitor is told of the failure before the deliberate sleep (so
        a reload in between keeps it), and after counting it here: telling may yield to
        another guess, which must see this one."""
        with self._failed_pin_auth.get_lock():
            count = self._failed_pin_auth.value
            self._failed_pin_auth.value = count + 1
        # One failure, not our count: the monitor adds them up over every app process.
        notify.tell_monitor("pin_failures", {"failed": 1})
        time.sleep(5.0 if count > 5 else 0.5)  # werkzeug's delay (DebuggedApplication)


def handed_pin(app: Any) -> tuple[str | None, str] | None:
    """The PIN and cookie name this server run's first debugger chose (``ENV_DEBUG_PIN``, from
    the monitor), so error pages and reloads keep them: werkzeug derives both from the app
    object, and the error page's app is another one. ``WERKZEUG_DEBUG_PIN`` still wins for
    the PIN, read by werkzeug's own rules."""
    handed = os.environ.get(ENV_DEBUG_PIN, "")
    if "|" not in handed:
        return None
    pin, cookie = handed.split("|", 1)
    if os.environ.get("WERKZEUG_DEBUG_PIN"):  # the user's choice, maybe edited in .env
        return get_pin_and_cookie_name(app)[0], cookie
    return pin, cookie
