"""Each app process's environment: ``.flaskenv``, ``.env`` and ``--env-file`` with Flask's
precedence, re-read for every child, and ``GEVENT_SUPPORT`` when an IDE debugger is loaded.

Flask's order (``flask.cli.load_dotenv``): variables already in the environment win, then
``-e FILE``, then ``.env``, then ``.flaskenv``; the two default files are found from the current
directory upwards, and ``FLASK_SKIP_DOTENV=1`` turns them off. Unlike ``flask run`` (and uvicorn),
geventdev builds each child's environment afresh from the monitor's original environment, so an
edited value is in force after the restart that the edit caused.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from dotenv import dotenv_values, find_dotenv

from geventdev.config import ENV_FILES
from geventdev.protocol import DEBUGGER_MODULES


def skip_defaults(environ: Mapping[str, str]) -> bool:
    return environ.get("FLASK_SKIP_DOTENV", "").lower() not in ("", "0", "false", "no")


def env_files(env_file: str | None, environ: Mapping[str, str]) -> list[str]:
    """The files to read, lowest precedence first."""
    files = [] if skip_defaults(environ) else [find_dotenv(n, usecwd=True) for n in ENV_FILES]
    return [f for f in (*files, env_file) if f]


def file_values(env_file: str | None, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables the env files set, the later file winning."""
    values: dict[str, str] = {}
    for path in env_files(env_file, environ):
        values.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    return values


def environ_with_env_files(env_file: str | None, environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` plus the variables from the env files that it does not already set."""
    return {**file_values(env_file, environ), **environ}


def without_env_files(env_file: str | None, environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` minus what the env files put there: ``flask``'s group loads them into
    ``os.environ`` before it imports plugin commands such as ``flask gevent``. Told apart by
    value, so a variable exported with the very value its file has counts as the file's."""
    loaded = file_values(env_file, environ)
    return {k: v for k, v in environ.items() if loaded.get(k) != v}


def debugger_env(
    environ: Mapping[str, str],
    modules: Mapping[str, object] | None = None,
    traced: bool | None = None,
) -> dict[str, str]:
    """``{"GEVENT_SUPPORT": "True"}`` for a child when the calling process runs under a debugger.

    pydevd (debugpy, PyCharm) reads the variable when it starts in the child, so it must be in
    the child's environment from the start. Detected: ``pydevd``/``debugpy`` imported, or a trace
    function set (``sys.gettrace()``: pdb-style debuggers, coverage; harmless, only pydevd reads
    the variable). A value the user set is kept.
    """
    if "GEVENT_SUPPORT" in environ:
        return {}
    loaded = sys.modules if modules is None else modules
    if sys.gettrace() is not None if traced is None else traced:
        return {"GEVENT_SUPPORT": "True"}
    if any(name in loaded for name in DEBUGGER_MODULES):
        return {"GEVENT_SUPPORT": "True"}
    return {}
