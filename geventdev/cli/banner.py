"""What the CLI prints when the server starts: the banner, like ``flask run``'s."""

from __future__ import annotations

import socket
from importlib.metadata import PackageNotFoundError, version
from typing import TextIO

from geventdev.config import Config
from geventdev.logs import color_allowed
from geventdev.net import is_local_host, is_loopback


def colour(text: str, code: str, out: TextIO) -> str:
    if not color_allowed(out):
        return text
    return f"\x1b[{code}m{text}\x1b[0m"


def url(host: str, port: int, scheme: str = "http") -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def wildcard_addresses(host: str) -> list[str]:
    """Where a server bound to ``0.0.0.0``/``::`` is reached: loopback, then the LAN address of
    the interface with the default route (werkzeug's ``get_interface_ip``, as flask run prints),
    unless there is none (no network: that is loopback too)."""
    from werkzeug.serving import get_interface_ip

    family = socket.AF_INET6 if host == "::" else socket.AF_INET
    loopback = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    lan = get_interface_ip(family)
    return [loopback] if is_loopback(lan) else [loopback, lan]


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
    if config.unix_socket:
        lines.append(f" * Running on unix://{config.unix_socket}")
    elif config.host in ("0.0.0.0", "::"):
        lines.append(f" * Running on all addresses ({config.host})")
        lines.extend(
            f" * Running on {url(a, port, scheme)}" for a in wildcard_addresses(config.host)
        )
    else:
        lines.append(f" * Running on {url(config.host, port, scheme)}")
    if config.use_debugger and not is_local_host(config.host) and not config.unix_socket:
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
