"""The ``geventdev`` command's entry point: patch first when serving in this very process.

``--no-reload`` serves from the process the user started (debuggers such as debugpy and
PyCharm's attach to it and cannot follow a child process). gevent must patch before click, ssl
and threading are imported, so this tiny entry point reads the command line before anything
else is imported; otherwise the monitor/child split applies and this process never patches.
"""

import os
import sys

OFF = ("0", "false", "no", "off")


def wants_inline(argv: list[str], environ: "os._Environ[str] | dict[str, str]") -> bool:
    """``--no-reload``, or ``--no-debug`` without ``--reload``, or ``FLASK_RUN_RELOAD=0`` (else
    ``GEVENTDEV_RELOAD=0``: the first of the two that is set wins, as in the CLI)."""
    if "--reload" in argv:
        return False
    if "--no-reload" in argv:
        return True
    for name in ("FLASK_RUN_RELOAD", "GEVENTDEV_RELOAD"):  # an explicit choice beats --no-debug
        if environ.get(name):
            return environ[name].lower() in OFF
    return "--no-debug" in argv


def ensure_std_fds() -> None:
    """Open ``/dev/null`` onto each of fds 0, 1 and 2 that is closed, first thing.

    Started with one closed (``geventdev app.py <&-``, some process managers), the next file or
    socket opened takes its number: the listening socket became fd 0 in every process, and the
    app's ``input()`` or pdb read from it (issue 12). Now they read EOF, and writes go nowhere.
    """
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:  # a higher fd was closed while a lower one is open
            os.dup2(null, fd)
            os.close(null)
        os.set_inheritable(fd, True)  # os.open's are not (PEP 446): app processes need it too
        if getattr(sys, name) is None:  # Python saw it closed at start-up and made no stream
            setattr(sys, name, open(fd, mode, closefd=False))  # noqa: SIM115


def main() -> None:
    ensure_std_fds()
    if wants_inline(sys.argv[1:], os.environ) and "--help" not in sys.argv:
        from gevent import monkey

        monkey.patch_all()
    from geventdev.cli.main import main as cli_main

    cli_main()
