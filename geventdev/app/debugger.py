"""werkzeug's debugger, fenced in: only this machine may use it; its PIN lockout survives reloads.

werkzeug's own Host check (``trusted_hosts``, CVE-2024-34069) stops DNS rebinding, not a client
that can reach the port: anyone may send ``Host: 127.0.0.1`` (werkzeug #3257). The PIN is the
real barrier, and its 10-try lockout lives in one process, so every reload used to grant ten
more guesses. Here the console, PIN entry and code execution answer loopback peers only (unless
``--debugger-remote``), and the failure count is reported to the monitor, which hands it to
every new app process. Traceback pages still render for everyone: they are the app's error page.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from werkzeug.debug import DebuggedApplication
from werkzeug.wrappers import Request, Response

from geventdev.app import notify
from geventdev.config import Config
from geventdev.net import is_loopback
from geventdev.protocol import ENV_PIN_FAILURES

#: werkzeug's defaults plus the loopback names ``run_simple`` would add.
LOCAL_HOSTS = (".localhost", "127.0.0.1", "localhost", "[::1]")
FORBIDDEN = (
    "The debugger console and PIN entry answer only this machine (a loopback client).\n"
    "Start geventdev with --debugger-remote to let other machines use them (dangerous: whoever\n"
    "gets the PIN can run code on this machine).\n"
)


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
    """``DebuggedApplication`` that refuses remote peers and shares its PIN lockout."""

    def __init__(self, app: Any, config: Config) -> None:
        super().__init__(app, evalex=True)
        self.allow_remote = config.debugger_remote
        self.trusted_hosts = trusted_hosts(config.host)
        self._failed_pin_auth.value = min(int(os.environ.get(ENV_PIN_FAILURES) or 0), 255)

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
        before = self._failed_pin_auth.value
        response: Response = super().pin_auth(request)
        if self._failed_pin_auth.value < before:  # a right PIN resets; failures are told below
            notify.tell_monitor("pin_failures", {"count": self._failed_pin_auth.value})
        return response

    def _fail_pin_auth(self) -> None:
        # Tell the monitor before werkzeug's deliberate sleep, so a reload in between keeps it.
        with self._failed_pin_auth.get_lock():
            count = self._failed_pin_auth.value
        notify.tell_monitor("pin_failures", {"count": count + 1})
        super()._fail_pin_auth()
