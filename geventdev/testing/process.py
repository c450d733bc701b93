"""A geventdev server started from code: one process group, stopped gracefully, then for sure.

``Server`` owns a ``python -m geventdev`` monitor started in its own session, with its output in a
log file. Stopping is SIGINT to the monitor (it drains its app processes: requests in flight get
about a second), then SIGKILL to the group, then a sweep of anything the app left in the group.
Stdlib only: the caller is never monkey-patched and the pytest plugin stays cheap to import.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from geventdev.config import Config

StrPath = str | os.PathLike[str]

RUNNING = re.compile(r" \* Running on (http://\S+)")  # the banner line (stable, see the README)
POLL = 0.02
#: Servers not stopped yet (strong references): stopped at exit even if their handle was dropped.
_running: set[Server] = set()


class Server:
    """A running ``python -m geventdev`` (the monitor) and its app processes, in one session.

    Made by ``geventdev.serve()``, which returns it once the app answers HTTP. A context
    manager: leaving the ``with`` block calls ``stop()``.
    """

    def __init__(
        self,
        config: Config,
        command: Sequence[str],
        *,
        cwd: StrPath | None = None,
        env: Mapping[str, str] | None = None,
        log_path: StrPath | None = None,
    ) -> None:
        self.config = config
        self._own_log = log_path is None
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix="geventdev-", suffix=".log")
            os.close(fd)
        self.log_path = Path(log_path)
        self._log_file = self.log_path.open("wb")
        self._final_log: str | None = None
        self._url: str | None = None
        try:
            self._proc = subprocess.Popen(
                list(command),
                cwd=cwd,
                env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except BaseException:
            self._log_file.close()
            raise
        _running.add(self)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<geventdev.Server {self.config.app!r} pid={self.pid} url={self._url}>"

    @property
    def pid(self) -> int:
        """The monitor's pid, which is also the id of the process group of the whole server."""
        return self._proc.pid

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, with the real port when port 0 was asked for."""
        if self._url is None and not self.read_url():
            raise RuntimeError("The server has not printed its address yet.")
        assert self._url is not None
        return self._url

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80

    def read_url(self) -> bool:
        """Look for the banner's ``Running on`` line; True once the address is known."""
        match = RUNNING.search(self.log())
        self._url = match.group(1) if match else None
        return match is not None

    @property
    def returncode(self) -> int | None:
        """The monitor's exit status once it has exited (0 after a clean stop), else None.

        Read with ``WNOWAIT``: the monitor stays unreaped until ``stop()``, so its pid, which is
        the group id signalled there, cannot be reused by another process in the meantime.
        """
        if self._proc.returncode is not None or not hasattr(os, "waitid"):  # macOS, Python<3.13
            return self._proc.poll()
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return self._proc.poll()
        if info is None:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

    def log(self) -> str:
        """Everything the server printed so far: banner, access log, tracebacks."""
        if self._final_log is not None:
            return self._final_log
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        """Stop gracefully (requests in flight get about a second), else kill; idempotent.

        Returns the monitor's exit status. Afterwards no process of the group is left and the
        port is closed. The log stays readable with ``log()``.
        """
        if self._final_log is not None:
            return self._proc.wait()
        _running.discard(self)
        # The monitor alone: it passes SIGINT on, and an app process that got it twice (from the
        # group and from the monitor) would cut its requests short instead of draining them.
        _signal(self.pid, signal.SIGINT, group=False)
        if not wait_for(lambda: self.returncode is not None, timeout):
            _signal(self.pid, signal.SIGKILL)
        # The unreaped monitor still reserves the group id: sweep whatever the app left behind.
        _signal(self.pid, signal.SIGKILL)
        code = self._proc.wait()
        wait_for(lambda: not group_members(self.pid), timeout)
        self._log_file.close()
        self._final_log = self.log_path.read_text(errors="replace")
        if self._own_log:
            self.log_path.unlink(missing_ok=True)
        return code


def _signal(pid: int, signum: int, group: bool = True) -> None:
    try:
        (os.killpg if group else os.kill)(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def wait_for(done: Callable[[], bool], timeout: float) -> bool:
    """Poll ``done`` until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL)
    return True


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid`` (Linux ``/proc``; else none)."""
    members = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


@atexit.register
def _stop_forgotten_servers() -> None:
    """A server nobody stopped must not outlive the interpreter that started it."""
    for server in list(_running):
        server.stop()
