"""The disposable app process: ``python -m geventdev.child``, started by the monitor only.

Its first statement patches, so nothing (the app, Flask, ssl, threading) is imported unpatched.
"""

from gevent import monkey

monkey.patch_all()

import ctypes  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402
from gevent.socket import wait_read  # noqa: E402

from geventdev import notify  # noqa: E402
from geventdev.config import Config  # noqa: E402
from geventdev.fallback import is_restart_command  # noqa: E402
from geventdev.loader import (  # noqa: E402
    LoadedApp,
    NoAppError,
    WSGIApp,
    error_app,
    load_app,
    module_files,
    traceback_files,
)
from geventdev.middleware import wrap_app  # noqa: E402
from geventdev.preload import interpreter_prefixes, library_modules, preload  # noqa: E402
from geventdev.protocol import Handoff, Message, iter_messages  # noqa: E402
from geventdev.server import DevServer, make_server  # noqa: E402

#: On Ctrl+C (SIGINT) in-flight requests get this long, so the whole stop stays well under 3 s.
INTERRUPT_DRAIN = 1.0
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PREFIXES = interpreter_prefixes()


def set_name(name: bytes) -> None:
    """Name the process in ``ps``/``top``/``/proc/PID/comm``: ``geventdev-app`` or ``-wait``."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, name)


def tie_to_monitor(monitor_pid: int) -> None:
    """Die with the monitor even if it is SIGKILLed: the kernel signals us (Linux), and the
    control channel's EOF covers the rest (see ``watch_monitor``)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != monitor_pid:  # the monitor died before prctl took effect
        os._exit(1)


def watch_monitor(control: socket.socket, load_now: Event) -> None:
    """Read the monitor's messages (``load``, to a standby); EOF means the monitor is gone."""
    try:
        for message in iter_messages(control.makefile("rb")):
            if message.type == "load":
                load_now.set()
            elif message.type == "changed":
                notify.publish(list(message.data.get("paths", ())))
    except OSError:
        pass
    os._exit(1)


def read_terminal(control: socket.socket, stopping: Callable[[], bool]) -> None:
    """Pass "rs" typed in the terminal to the monitor as a restart request.

    The app process reads the terminal itself (the monitor does not, while an app process is
    alive) so a ``breakpoint()`` is never robbed of its input: pdb blocks the whole gevent hub,
    so this greenlet cannot run while pdb waits for a line.
    """
    while not stopping():
        wait_read(0)
        if stopping():
            return
        # Still unread (the real select, non-blocking): no other process took the line.
        readable, _, _ = monkey.get_original("select", "select")([0], [], [], 0)
        if readable and is_restart_command(os.read(0, 1024)):
            send(control, Message("restart", {}))


def send(control: socket.socket, message: Message) -> None:
    try:
        control.sendall(message.encode())
    except OSError:
        os._exit(1)


def load(config: Config, control: socket.socket) -> tuple[LoadedApp | None, WSGIApp]:
    """Load and wrap the app; a failure becomes an app that shows it, and the monitor is told."""
    try:
        loaded = load_app(config.app)
    except NoAppError as exc:
        # A usage error, not a code error: a plain page, no debugger (and no PIN banner).
        send(control, Message("load_error", {"kind": "not_found", "error": str(exc), "paths": []}))
        return None, error_app(exc, debugger=False)
    except (Exception, SystemExit) as exc:
        traceback.print_exc()
        summary = traceback.format_exception_only(type(exc), exc)[-1].strip()
        paths = traceback_files(exc)
        send(
            control, Message("load_error", {"kind": "exception", "error": summary, "paths": paths})
        )
        return None, wrap_app(None, error_app(exc, config.use_debugger), config)
    modules = library_modules(PREFIXES)
    send(control, Message("watch", {"paths": module_files(PREFIXES), "modules": modules}))
    return loaded, wrap_app(loaded, loaded.app, config)


def main() -> None:
    handoff = Handoff.from_environ()
    tie_to_monitor(handoff.monitor_pid)
    config = Config.from_json(handoff.config_json)
    os.environ["FLASK_DEBUG"] = "1" if config.debug else "0"  # before the app (factories) load
    control = socket.socket(fileno=handoff.control_fd)
    listener = socket.socket(fileno=handoff.listen_fd)
    for sock in (control, listener):
        sock.set_inheritable(False)
    load_now = Event()
    gevent.spawn(watch_monitor, control, load_now)
    server: DevServer | None = None
    stopped = Event()

    def stop(timeout: float) -> None:
        if server is None:  # asked to stop while still loading the app: nothing to drain
            os._exit(0)
        if server.draining:  # Ctrl+C reaches us twice (the terminal's group, and the monitor)
            return
        server.drain(timeout)
        stopped.set()

    gevent.signal_handler(signal.SIGTERM, gevent.spawn, stop, config.graceful_timeout)
    gevent.signal_handler(
        signal.SIGINT, gevent.spawn, stop, min(INTERRUPT_DRAIN, config.graceful_timeout)
    )
    if handoff.standby:  # import the libraries now, the project when a change comes
        preload(list(handoff.preload))
        send(control, Message("standby", {"paths": module_files(PREFIXES)}))
        set_name(b"geventdev-wait")  # armed: ps shows it waiting, tests wait for this
        load_now.wait()
    set_name(b"geventdev-app")
    loading = time.perf_counter()
    loaded, app = load(config, control)
    import_ms = round((time.perf_counter() - loading) * 1000)
    started = make_server(listener, app, config)
    started.start()
    server = started
    send(control, Message("ready", {"pid": os.getpid(), "import_ms": import_ms}))
    if sys.stdin is not None and sys.stdin.isatty():
        gevent.spawn(read_terminal, control, lambda: server is None or server.draining)
    stopped.wait()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(
        0
    )  # skip interpreter teardown: app threads and atexit hooks must not hold a restart up


if __name__ == "__main__":
    main()
