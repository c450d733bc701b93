"""The disposable app process: ``python -m geventdev.app``, started by the monitor only.

Its first statement patches, so nothing (the app, Flask, ssl, threading) is imported unpatched.
"""

from gevent import monkey

monkey.patch_all()

import ctypes  # noqa: E402
import gc  # noqa: E402
import importlib  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402
from gevent.socket import wait_read  # noqa: E402

from geventdev import logs  # noqa: E402
from geventdev.app import blocking, bytecode, notify, patch, pristine, routing, stack  # noqa: E402
from geventdev.app.gate import Gate  # noqa: E402
from geventdev.app.loader import (  # noqa: E402
    LoadedApp,
    NoAppError,
    error_app,
    load_app,
    traceback_files,
)
from geventdev.app.preload import preload, split_modules  # noqa: E402
from geventdev.app.pristine import Pristine  # noqa: E402
from geventdev.app.stack import wrap_app  # noqa: E402
from geventdev.app.zygote import Zygote, own_fork  # noqa: E402
from geventdev.config import Config  # noqa: E402
from geventdev.http.server import DevServer, make_server, prepare_fork  # noqa: E402
from geventdev.paths import library_dirs  # noqa: E402
from geventdev.protocol import (  # noqa: E402
    ENV_DEBUG_PIN,
    ENV_FLASK_RUN_FROM_CLI,
    ENV_PIN_FAILURES,
    ENV_WERKZEUG_RUN_MAIN,
    Handoff,
    Message,
    is_restart_command,
    iter_messages,
)
from geventdev.stdio import unbreakable  # noqa: E402
from geventdev.wsgi import WSGIApp  # noqa: E402

#: On Ctrl+C (SIGINT) in-flight requests get this long, so the whole stop stays well under 3 s.
INTERRUPT_DRAIN = 1.0
#: How often the terminal is looked at again while another process group owns it (``bg``).
TERMINAL_POLL = 0.2
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PREFIXES = library_dirs()
#: How a ``drain`` from the monitor is carried out: a standby just exits; ``serve`` drains.
DRAIN: list[Callable[[float], object]] = [lambda _timeout: os._exit(0)]
#: Set in a process the app forked (``os.fork``, ``multiprocessing``): it is not ours.
_forked = False
_fork_placeholders: list[int] = []
#: The server this process runs, once it serves (a forked child detaches from its connections).
SERVING: list[DevServer] = []
#: A standby's gate (``app.gate``): kept for the life of the process.
GATE: list[Gate] = []


def set_name(name: bytes) -> None:
    """Name the process in ``ps``/``top``/``/proc/PID/comm``: ``geventdev-app``, ``-wait`` (a
    standby), ``-load`` (an app process forked from one, loading), ``-old`` (a retired one) or
    ``-base`` (a loaded app kept as it was, which its serving workers are forked from)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, name)


def tie_to_parent(parent_pid: int) -> None:
    """Die with our parent even if it is SIGKILLed: the monitor, or the standby this app
    process was forked from (which dies with the monitor). The kernel signals us (Linux), and
    the control channel's EOF covers the rest (see ``watch_monitor``)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # it died before prctl took effect
        os._exit(1)


def detach_forks(*fds: int) -> None:
    """Keep a process the app forks off our listening socket and control channel.

    A forked child inherits both, and gevent's hub re-initialised with our accept watcher still
    started: it would answer requests with its (old) code, read the monitor's messages, and keep
    the port open after geventdev exits if it blocks outside gevent. In the child, each fd now
    names the read end of a pipe nobody writes to (same number, so the inherited watchers stay
    valid but never fire), and nothing is sent to the monitor. Our stop signals are the child's
    own again (SIGTERM ends it, as ``multiprocessing``'s ``terminate()`` expects): our drain run
    there would close the parent's connections, which the child shares.
    """

    masks: list[set[int | signal.Signals]] = []

    def before() -> None:
        if own_fork():  # a standby forking an app process (``app.zygote``): ours
            return
        # A stop signal sent to the child the moment it exists must wait until its handlers
        # are the defaults again (below): caught by ours in between, it would be lost.
        masks.append(signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT}))

    def in_parent() -> None:
        if own_fork():
            return
        signal.pthread_sigmask(signal.SIG_SETMASK, masks.pop())

    def in_child() -> None:
        global _forked
        if own_fork():
            return
        _forked = True
        read, write = os.pipe()
        for fd in fds:
            os.dup2(read, fd, inheritable=False)
        _fork_placeholders.extend((read, write))  # kept open: the pipe never reads EOF
        for server in SERVING:  # and the client connections it shares with us
            server.detach_connections(read)
        DRAIN[0] = lambda _timeout: os._exit(0)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, masks.pop())

    os.register_at_fork(before=before, after_in_parent=in_parent, after_in_child=in_child)


def watch_monitor(control: socket.socket) -> None:
    """Read the monitor's messages (``load``, ``drain``); EOF means the monitor is gone."""
    try:
        for message in iter_messages(control.makefile("rb")):
            if _forked:  # an app's forked child never reaches here: its fd is a silent pipe
                return
            try:
                handle_message(message, control)
            except Exception:  # noqa: BLE001 - this greenlet is how the monitor reaches us
                traceback.print_exc()
    except OSError:
        pass
    os._exit(1)


def handle_message(message: Message, control: socket.socket) -> None:
    """One message from the monitor."""
    if message.type == "pin_failures":
        os.environ[ENV_PIN_FAILURES] = str(message.data.get("count", 0))
        count, reset = int(message.data.get("count", 0)), bool(message.data.get("reset"))
        notify.pin_failures(count, reset)
    elif message.type == "changed":
        notify.publish(list(message.data.get("paths", ())))
    elif message.type == "drain":
        gevent.spawn(DRAIN[0], float(message.data.get("timeout", 0.0)))
    elif message.type == "patch":
        gevent.spawn(apply_patch, control, list(message.data.get("paths", ())))


def prepare_load(message: Message) -> None:
    """A standby about to fork an app process: what the ``load`` sets for it."""
    os.environ[ENV_PIN_FAILURES] = str(message.data.get("pin_failures", 0))
    os.environ[ENV_DEBUG_PIN] = str(message.data.get("debug_pin", ""))
    # Directory listings cached while waiting may predate a file just created in the same
    # tick of the directory's mtime.
    importlib.invalidate_caches()


def became_app(standby_pid: int, control: socket.socket) -> None:
    """In an app process a standby just forked (``app.zygote``; its channel is in place), or
    in the standby itself when it takes over (``standby_pid`` 0)."""
    if standby_pid:
        tie_to_parent(standby_pid)
    for signum in (signal.SIGINT, signal.SIGTERM):  # nothing to drain until it serves
        signal.signal(signum, lambda _n, _f: os._exit(0))
    set_name(b"geventdev-load")  # not the standby's name: ps and tests tell them apart
    gevent.spawn(watch_monitor, control)


def apply_patch(control: socket.socket, paths: list[str]) -> None:
    """A ``patch`` reaching the serving process: it has no pristine copy to patch
    (``keep_pristine``), so the answer is why not (``patch.decline``), and a restart follows."""
    send(control, Message("patched", patch.attempt(paths).to_message()))


def read_terminal(control: socket.socket, stopping: Callable[[], bool]) -> None:
    """Pass "rs" typed in the terminal to the monitor as a restart request.

    The app process reads the terminal itself (the monitor does not, while an app process is
    alive) so a ``breakpoint()`` is never robbed of its input: pdb blocks the whole gevent hub,
    so this greenlet cannot run while pdb waits for a line. Only from the foreground: after
    Ctrl+Z and ``bg`` the shell owns the terminal, and a read from the background would stop
    the whole server with SIGTTIN (issue 12); the server keeps serving there, as ``flask run``.
    """
    real_select = monkey.get_original("select", "select")
    while not stopping():
        wait_read(0)
        if stopping():
            return
        # Still unread (the real select, non-blocking): no other process took the line.
        readable = terminal_foreground() and real_select([0], [], [], 0)[0]
        data = read_from_terminal() if readable else None
        if data and is_restart_command(data):
            send(control, Message("restart", {}))
        elif not data:  # the shell's line, a background read refused, or a hung-up terminal
            gevent.sleep(TERMINAL_POLL)


def terminal_foreground() -> bool:
    """Whether our process group is the terminal's foreground group (``fg``, not ``bg``). A
    terminal that is not our controlling one (ENOTTY) has no job control: reading it is safe."""
    try:
        return os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return True


def read_from_terminal() -> bytes | None:
    """One read of fd 0 that never stops the process: with SIGTTIN blocked, a read from the
    background (``bg`` between our check and the read) fails with EIO instead (tty job control).
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTIN})
    try:
        return os.read(0, 1024)
    except OSError:
        return None
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def accept_interrupts() -> None:
    """Unblock SIGINT, now that a handler is in place. The monitor spawns us with it blocked
    (``monitor.loop.spawn``): a Ctrl+C while we were still importing is pending, and is
    handled here, at once, instead of printing a KeyboardInterrupt traceback or being lost."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def send(control: socket.socket | None, message: Message) -> None:
    if _forked:  # a process the app forked speaks for nobody
        return
    if control is None:  # serving in one process (--no-reload): say it ourselves
        report_inline(message)
        return
    try:
        control.sendall(message.encode())
    except OSError:
        os._exit(1)


def report_inline(message: Message) -> None:
    """Without a monitor: a wrong target is fatal (status 2), a load error one log line."""
    if message.type != "load_error":
        return
    if message.data.get("kind") == "not_found":
        print(f"Error: {message.data.get('error')}", file=sys.stderr, flush=True)
        os._exit(2)
    error = message.data.get("error")
    logs.say(f" * App failed to load: {error}; fix it and restart")


def load(
    config: Config, control: socket.socket | None, gate: Gate | None = None
) -> tuple[LoadedApp | None, WSGIApp]:
    """Load and wrap the app; a failure becomes an app that shows it, and the monitor is told.
    A standby's ``gate`` holds the load (at a hot file, else here) until it is activated."""
    before, load_started_ns = set(sys.modules), time.time_ns()  # for in-place patches
    try:
        try:
            loaded = load_app(config.app)
        finally:
            if gate is not None:  # for patches, the load began here: what it had read ahead
                gate.finish()  # was unchanged (else it would be stale), the rest is read now
                load_started_ns = gate.released_ns or load_started_ns
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
    # Before "ready": the monitor passes these modules to the standby it starts on "ready".
    modules, files = split_modules(PREFIXES)
    send(control, Message("watch", {"paths": files, "modules": modules}))
    if config.patch and control is not None:
        patch.track(before, load_started_ns, files, config.app or "")
    return loaded, wrap_app(loaded, loaded.app, config)


def main() -> None:
    """The app process the monitor starts: tied to it, told what to do on the control channel."""
    handoff = Handoff.from_environ()
    tie_to_parent(handoff.monitor_pid)
    bytecode.install()  # before any of the project is imported (a standby imports libraries)
    sys.stdout, sys.stderr = unbreakable(sys.stdout), unbreakable(sys.stderr)  # `| head`
    config = Config.from_json(handoff.config_json)
    control = socket.socket(fileno=handoff.control_fd)
    listener = socket.socket(fileno=handoff.listen_fd)
    for sock in (control, listener):
        sock.set_inheritable(False)
    detach_forks(listener.fileno(), control.fileno())
    notify.connect(lambda kind, data: send(control, Message(kind, data)))  # type: ignore[arg-type]
    gate = None
    if handoff.standby:  # import the libraries now, then the project up to a hot file
        gate = standby_gate(handoff, control)  # before preloading: a "load" may come any time
        preload(list(handoff.preload), gate.activated)
        if gate.released_at is None:  # still the standby (not forked while preloading)
            blocking.look_up_plugins()
        gate.start(split_modules(PREFIXES)[1])
    else:  # a standby reads its channel itself (``app.zygote``); its app processes do this
        gevent.spawn(watch_monitor, control)
    serve(config, listener, control, gate)
    exit_now()


def standby_gate(handoff: Handoff, control: socket.socket) -> Gate:
    """The gate a standby loads the project through (``app.gate``), and the channel it forks
    app processes on (``app.zygote``)."""

    zygote = Zygote(
        control.fileno(),
        lambda message: handle_message(message, control),  # PIN failures: for its forks
        prepare_load,
        lambda pid: became_app(pid, control),
        lambda: set_name(b"geventdev-old"),  # retired: waits for its apps (ps, tests)
        keep_fds=(handoff.listen_fd,),
    )
    # Nothing to drain: a stop (Ctrl+C reaches the whole group) retires it, so it exits after
    # the app processes it forked. Plain handlers: gevent's run in its loop, and a standby
    # frozen at its gate runs none.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _n, _f: zygote.retire())
    accept_interrupts()

    def armed(report: dict[str, Any]) -> None:
        zygote.send(Message("standby", dict(report)))
        set_name(b"geventdev-wait")  # armed: ps shows it waiting, tests wait for this

    gate = Gate(zygote, handoff.hot, PREFIXES, armed)
    GATE[:] = [gate]
    return gate


def serve_inline(config: Config, listener: socket.socket) -> int:
    """``--no-reload``: serve from this (already patched) process, for debuggers that cannot
    follow a child process. The CLI patched gevent before importing anything else."""
    os.environ.update({ENV_WERKZEUG_RUN_MAIN: "true", ENV_FLASK_RUN_FROM_CLI: "true"})
    detach_forks(listener.fileno())
    serve(config, listener, None)
    exit_now()
    return 0


def serve(
    config: Config,
    listener: socket.socket,
    control: socket.socket | None,
    gate: Gate | None = None,
) -> None:
    """Load the app, serve it, and return once a signal has drained the server. A standby
    (``gate``) starts here too, and waits inside the load until it is activated."""
    os.environ["FLASK_DEBUG"] = "1" if config.debug else "0"  # before the app (factories) load
    try:  # before the app loads, so the app's own logging set-up wins (as under flask run)
        logs.setup(config.log_config, config.log_level)
    except logs.LogConfigError as exc:  # edited since the monitor checked it: keep serving
        logs.say(f" * Warning: {exc}")
    server: DevServer | None = None
    stopped = Event()

    def stop(timeout: float) -> None:
        if server is None or _forked:  # still loading (nothing to drain), or not ours to drain
            os._exit(0)
        if server.draining:  # Ctrl+C reaches us twice (the terminal's group, and the monitor)
            return
        notify.set_draining()  # no more PIN guesses here: the next process counts on
        server.drain(timeout, closed=lambda: send(control, Message("draining", {})))
        stopped.set()

    DRAIN[0] = stop  # a restart: the monitor says "drain" (the app may own SIGTERM)

    handlers: list[Any] = []

    def stop_on_signals() -> None:
        handlers[:] = [
            gevent.signal_handler(signal.SIGTERM, gevent.spawn, stop, config.graceful_timeout),
            gevent.signal_handler(
                signal.SIGINT, gevent.spawn, stop, min(INTERRUPT_DRAIN, config.graceful_timeout)
            ),
        ]
        accept_interrupts()
        set_name(b"geventdev-app")

    if gate is None:
        stop_on_signals()
    routing.install()  # URL builders made on first use: ~90 % of registering a blueprint
    loading = time.perf_counter()
    loaded, app = load(config, control, gate)
    if gate is not None:  # timed from the activation
        loading = gate.released_at or loading
        gate.zygote.thaw()
    worker = (
        control is not None
        and loaded is not None
        and config.patch
        and keep_pristine(control, listener, config, handlers)
    )
    if gate is not None or worker:  # the stop handlers are gevent's now
        stop_on_signals()
    import_ms = round((time.perf_counter() - loading) * 1000)
    stack.start_threads()  # in the process that serves: a fork has only the forking thread
    started = make_server(listener, app, config)
    started.start()
    server = started
    SERVING[:] = [started]
    send(control, Message("ready", {"pid": os.getpid(), "import_ms": import_ms}))
    if worker:  # what the pristine copy loaded is frozen in us (``Pristine.fork``)
        gevent.spawn_later(0.1, gc.unfreeze)
    if control is not None and sys.stdin is not None and sys.stdin.isatty():
        gevent.spawn(read_terminal, control, lambda: server is None or server.draining or _forked)
    stopped.wait()


def keep_pristine(
    control: socket.socket, listener: socket.socket, config: Config, handlers: list[Any]
) -> bool:
    """With patching on, keep this loaded process as it is and serve from forks of it
    (``app.pristine``): True in such a worker. False if a fork would not be a faithful copy
    (edits then restart: ``patch.decline`` says why)."""
    reason = pristine.keep(control.fileno(), listener.fileno())
    if reason:
        patch.decline(f"the loaded app holds {reason}, which a clean copy cannot share")
        return False
    for handler in handlers:  # gevent's: they run only in the hub, which runs no more here
        handler.cancel()
    set_name(b"geventdev-base")
    prepare_fork(listener)
    keeper = Pristine(control.fileno(), tie_to_parent, config.graceful_timeout)
    return keeper.serve()


def exit_now() -> None:
    """Skip interpreter teardown: app threads and atexit hooks must not hold a restart up."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
