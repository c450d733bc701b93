"""What the CLI prints when the server starts: the banner, like ``flask run``'s."""

from __future__ import annotations

import os
import socket
from importlib.metadata import PackageNotFoundError, version
from typing import TextIO

from geventdev.config import Config
from geventdev.net import is_loopback


def colour(text: str, code: str, out: TextIO) -> str:
    if not out.isatty() or "NO_COLOR" in os.environ:
        return text
    return f"\x1b[{code}m{text}\x1b[0m"


def url(host: str, port: int, scheme: str = "http") -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def banner(config: Config, port: int, out: TextIO) -> list[str]:
    """Like flask run's: what is served, debug mode, where, and how to stop."""
    try:
        gevent_version = version("gevent")
    except PackageNotFoundError:  # pragma: no cover - gevent is a dependency
        gevent_version = "?"
    lines = [
        f" * Serving app '{config.app or 'wsgi.py or app.py'}' with gevent {gevent_version}",
        f" * Debug mode: {'on' if config.debug else 'off'}",
    ]
    scheme = "https" if config.cert else "http"
    if config.host in ("0.0.0.0", "::"):
        lines.append(f" * Running on all addresses ({config.host})")
        loopback = "127.0.0.1" if config.host == "0.0.0.0" else "::1"
        lines.append(f" * Running on {url(loopback, port, scheme)}")
        try:
            lan = socket.gethostbyname(socket.gethostname())
            lines.append(f" * Running on {url(lan, port, scheme)}")
        except OSError:
            pass
    else:
        lines.append(f" * Running on {url(config.host, port, scheme)}")
    if config.use_debugger and not is_loopback(config.host):
        remote = " (but --debugger-remote is on)." if config.debugger_remote else "."
        warning = (
            f" * WARNING: the debugger is on and {config.host} is reachable from the network:"
            " anyone who gets the PIN can run code on this machine. Its console answers only"
            f" this machine{remote}"
        )
        lines.append(colour(warning, "1;31", out))
    lines.append(colour("Press CTRL+C to quit", "33", out))
    if config.use_reloader:
        lines.append(" * Restarting with watchdog (gevent child processes)")
    return lines
