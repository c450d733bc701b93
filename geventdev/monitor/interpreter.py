"""The interpreter options the user started us with, for the app processes we start.

``python -X dev -W error::DeprecationWarning -m geventdev`` must serve the app in dev mode with
that warning filter, as werkzeug's reloader does (it re-runs ``sys.orig_argv``) and hupper and
uvicorn do. Only the options before the program (``-m``, ``-c``, a script, ``-``) are copied:
environment-derived settings (``PYTHONDEVMODE``, ``PYTHONWARNINGS``) reach the child through its
environment anyway. Stdlib only, a pure function of ``argv``.
"""

from __future__ import annotations

#: Short options that take a value (``-W error`` or ``-Werror``), per ``python --help``.
VALUED = frozenset("WX")
#: Short options that end the interpreter's options: the program follows.
PROGRAM = frozenset("cm")
#: Options that make no sense for an app process we start: ``-i`` (an interactive prompt at
#: exit), ``-x`` (skip a script's first line), and ``-h``/``-V``/``-?`` (which never get here).
DROPPED = frozenset("ixhV?")
#: Long options that take a value.
LONG_VALUED = frozenset({"--check-hash-based-pycs"})


def interpreter_options(argv: list[str]) -> list[str]:
    """The interpreter options in ``argv`` (``sys.orig_argv``), normalised one per argument."""
    options: list[str] = []
    args = iter(argv[1:])
    for arg in args:
        if arg == "--" or arg == "-" or not arg.startswith("-"):
            break  # a script, stdin, or the end of the options
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if name in LONG_VALUED:
                options += [name, value if eq else next(args, "")]
            elif name not in ("--help", "--version"):
                options.append(name)
            continue
        for i, char in enumerate(arg[1:], start=1):
            if char in PROGRAM:
                return options
            if char in VALUED:
                options += [f"-{char}", arg[i + 1 :] or next(args, "")]
                break
            if char not in DROPPED:
                options.append(f"-{char}")
    return options
