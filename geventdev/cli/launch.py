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
    """``--no-reload``, or ``--no-debug`` without ``--reload``, or ``FLASK_RUN_RELOAD=0``."""
    if "--reload" in argv:
        return False
    if "--no-reload" in argv or "--no-debug" in argv:
        return True
    return environ.get("FLASK_RUN_RELOAD", "").lower() in OFF and "FLASK_RUN_RELOAD" in environ


def main() -> None:
    if wants_inline(sys.argv[1:], os.environ) and "--help" not in sys.argv:
        from gevent import monkey

        monkey.patch_all()
    from geventdev.cli.main import main as cli_main

    cli_main()
