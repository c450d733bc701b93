"""Logging, like the tools Flask developers already use. Stdlib only: the monitor and the app
process both use it.

- geventdev's own `` * `` lines go to the ``geventdev`` logger.
- The access log goes to the ``werkzeug`` logger, as under ``flask run``, so the everyday idiom
  ``logging.getLogger("werkzeug").setLevel(logging.ERROR)`` silences it here too.
- ``--log-level`` takes uvicorn's names (``trace`` is 5, below ``debug``); ``--log-config FILE``
  takes uvicorn's formats: ``.json``/``.yaml`` for ``dictConfig``, anything else ``fileConfig``.

A logger gets a plain ``%(message)s`` handler on stderr only if nothing would handle its records
(werkzeug's own rule, ``werkzeug._internal._log``): an app that calls ``logging.basicConfig()``
or a config file that gives the root logger a handler sees every line exactly once, formatted
its way. Handlers are added when the first line is logged, so an app's own set-up at import wins.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import sys
from typing import Any, TextIO

TRACE = 5
LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}
OWN = "geventdev"
#: flask run's access log (and debugger PIN) logger: werkzeug's.
ACCESS = "werkzeug"
logger = logging.getLogger(OWN)


class LogConfigError(Exception):
    """A logging config file that cannot be applied: the message is one actionable line."""


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the stream given, or to whatever ``sys.stderr`` is at the time (pytest's
    capture, a redirect made after start-up)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream or sys.stderr)
        self.fixed = stream is not None
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if not self.fixed:
            self.stream = sys.stderr
        super().emit(record)


def has_level_handler(log: logging.Logger) -> bool:
    """Whether a handler on ``log`` or its ancestors would handle its records
    (``werkzeug._internal._has_level_handler``)."""
    level = log.getEffectiveLevel()
    current: logging.Logger | None = log
    while current is not None:
        if any(handler.level <= level for handler in current.handlers):
            return True
        if not current.propagate:
            break
        current = current.parent
    return False


def ensure_handler(log: logging.Logger, stream: TextIO | None = None) -> logging.Logger:
    """Give ``log`` a plain stderr handler unless something already handles its records."""
    if not has_level_handler(log):
        log.addHandler(_StderrHandler(stream))
    return log


def plain_stream(log: logging.Logger) -> TextIO | None:
    """The stream ``log``'s records end up on when geventdev's own plain handler is the only one
    that would see them (no user configuration), else None. The access log then writes its
    line there directly: the same bytes, without a ``LogRecord`` (13.7 us -> 0.6 us a request,
    about 8 % of a hello-world request's cost)."""
    handlers = log.handlers
    if len(handlers) != 1 or log.filters or (log.propagate and logging.root.handlers):
        return None
    handler = handlers[0]
    if handler.filters or handler.level > logging.INFO:
        return None
    if type(handler) is _StderrHandler:
        return handler.stream if handler.fixed else sys.stderr
    # werkzeug's own: its debugger logs " * Debugger is active!" at start-up, which gives the
    # werkzeug logger its StreamHandler subclass (werkzeug._internal._log, _ColorStreamHandler)
    # before we add ours. Any StreamHandler that emits and formats as the stdlib's does, with
    # the bare message, writes exactly the line itself.
    kind, formatter = type(handler), handler.formatter
    plain = formatter is None or getattr(formatter, "_fmt", None) == "%(message)s"
    stdlib = kind.emit is logging.StreamHandler.emit and kind.format is logging.Handler.format
    if isinstance(handler, logging.StreamHandler) and stdlib and plain:
        return handler.stream  # type: ignore[no-any-return]
    return None


#: colorama's converter (what werkzeug's handler writes to), and the stream wrapper it hands out
#: (``AnsiToWin32(...).stream``, ``colorama.init()``'s ``sys.stderr``): where each keeps it.
_COLORAMA = {"AnsiToWin32": "", "StreamWrapper": "_StreamWrapper__convertor"}


def write_line(stream: TextIO, text: str) -> None:
    """``stream.write(text)``, the way the handler whose stream ``plain_stream`` returned writes.

    werkzeug's handler wraps stderr in colorama's ``AnsiToWin32`` whenever colorama is installed,
    on every platform; off a terminal it strips escape sequences: two regex scans and five calls
    a line. For text with no escape character, and no ``autoreset``, colorama only writes it to
    the stream it wraps and flushes that: so do we, directly (an access-log line to a file:
    3.3-3.6 -> 1.3-1.7 us). Anything else (a coloured line, another stream) goes the usual way."""
    kind = type(stream).__name__
    if kind in _COLORAMA and "\x1b" not in text and type(stream).__module__.startswith("colorama"):
        convertor = stream if kind == "AnsiToWin32" else getattr(stream, _COLORAMA[kind], None)
        wrapped = getattr(convertor, "wrapped", None)
        if wrapped is not None and getattr(convertor, "autoreset", True) is False:
            wrapped.write(text)
            wrapped.flush()
            return
    stream.write(text)


def load_config(path: str) -> None:
    """Apply a logging config file the way uvicorn's ``--log-config`` does."""
    try:
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as file:
                logging.config.dictConfig(json.load(file))
        elif path.endswith((".yaml", ".yml")):
            try:
                import yaml
            except ImportError:
                raise LogConfigError(
                    f"--log-config {path}: a YAML config needs PyYAML (pip install pyyaml), or "
                    "use a .json file."
                ) from None
            with open(path, encoding="utf-8") as file:
                logging.config.dictConfig(yaml.safe_load(file))
        else:
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except LogConfigError:
        raise
    except Exception as exc:  # json, yaml, configparser and dictConfig all raise their own
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LogConfigError(f"--log-config {path}: {reason}") from None
    for name in (OWN, ACCESS):  # never silenced by disable_existing_loggers: levels do that
        logging.getLogger(name).disabled = False


def setup(log_config: str | None, log_level: str | None, stream: TextIO | None = None) -> None:
    """Apply ``--log-config`` then ``--log-level`` (as uvicorn does); called by the monitor at
    start and by each app process before it loads the app, so the app's own settings win."""
    logging.addLevelName(TRACE, "TRACE")
    if log_config:
        load_config(log_config)
    for name in (OWN, ACCESS):
        log = logging.getLogger(name)
        if log_level is not None:
            log.setLevel(LEVELS[log_level])
        elif log.level == logging.NOTSET:
            log.setLevel(logging.INFO)  # what werkzeug does for its logger
    if stream is not None:
        ensure_handler(logger, stream)


def level_of(text: str) -> int:
    """The level of one of geventdev's lines, from its wording (the lines are API)."""
    if text.startswith("Error") or text.startswith((" * App failed", " * App exited")):
        return logging.ERROR
    if text.startswith(" * App was killed"):
        return logging.ERROR
    if text.lower().startswith((" * warning", "warning")):
        return logging.WARNING
    return logging.INFO


def say(text: str, level: int | None = None) -> None:
    """Log one of geventdev's own lines (multi-line reports stay one record)."""
    ensure_handler(logger)
    logger.log(level_of(text) if level is None else level, text.rstrip("\n"))


def color_allowed(stream: Any) -> bool:
    """Colours on a terminal, unless ``NO_COLOR`` is set (no-color.org)."""
    return bool(getattr(stream, "isatty", lambda: False)()) and "NO_COLOR" not in os.environ
