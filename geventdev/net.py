"""The listening socket (bound once by the monitor, inherited by every app process) and what
counts as a loopback address. Stdlib only."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import stat

BACKLOG = 2048
#: ``REMOTE_ADDR`` of a Unix-socket peer (what werkzeug's server sets): always this machine.
LOCAL_PEER = "<local>"
#: ``--host unix://PATH``: werkzeug's (flask run's) spelling of a Unix socket.
UNIX_SCHEME = "unix://"


class BindError(Exception):
    """The socket could not be bound: the message is one actionable line."""


def bind_listener(host: str, port: int) -> socket.socket:
    """Bind and listen once, for the monitor's whole life; children inherit the socket.

    ``TCP_NODELAY`` is set on the listener, and accepted sockets inherit it: pywsgi writes headers
    and body in two sends, and with Nagle on, every keep-alive response waits ~40 ms for an ACK.
    """
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror:
        raise BindError(
            f"Could not resolve host {host!r}: use an IP address or a known name."
        ) from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise BindError(bind_error_message(exc, host, port)) from None
    sock.set_inheritable(True)
    # Non-blocking, as gevent makes it anyway (the flag is shared by every process holding the
    # socket): the monitor's 503 responder must never sit in accept() after an app process
    # won the race for a connection, or it could answer a later one with a stale page.
    sock.setblocking(False)
    return sock


def bind_unix_listener(path: str) -> socket.socket:
    """Bind and listen on a Unix socket (``--uds PATH``, ``--host unix://PATH``).

    A socket file left by a server that is gone (a crash, SIGKILL) is replaced; one that still
    answers is in use; any other file there is never touched.
    """
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise BindError(f"Cannot serve on {path}: it exists and is not a socket.")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)  # a live server with a full backlog must not hang the start
        try:
            probe.connect(path)
        except ConnectionRefusedError:  # nobody listens: a stale socket file
            os.unlink(path)
        except OSError as exc:  # EACCES, a timeout...: maybe live, never ours to remove
            raise BindError(f"Cannot serve on {path}: {exc.strerror or exc}.") from None
        else:
            raise BindError(f"{path} is in use by another server: stop it, or pick another path.")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise BindError(f"Cannot listen on unix://{path}: {exc.strerror or exc}.") from None
    sock.set_inheritable(True)
    sock.setblocking(False)  # as bind_listener's, for the same reason
    return sock


def remove_unix_socket(path: str) -> None:
    """Remove our socket file on exit (only a socket: never a file put there meanwhile)."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass


def bind_error_message(exc: OSError, host: str, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        hint = " On macOS, try disabling the 'AirPlay Receiver' service." if port == 5000 else ""
        return (
            f"Port {port} is in use by another program. Stop that program, or start the server "
            f"with a different port (-p).{hint}"
        )
    if exc.errno == errno.EACCES:
        return f"Permission denied binding port {port}: ports below 1024 need root; use -p 5000."
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"Cannot bind {host!r}: no network interface has that address."
    return f"Cannot listen on {host}:{port}: {exc.strerror or exc}."


def is_loopback(address: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 (also IPv4-mapped), "localhost" and a Unix-socket peer."""
    if not address:
        return False
    if address == LOCAL_PEER:
        return True
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address == "localhost"
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def is_local_host(host: str) -> bool:
    """Whether ``--host`` is reachable from this machine only: loopback or a Unix socket."""
    return host.startswith(UNIX_SCHEME) or is_loopback(host)
