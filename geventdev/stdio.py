"""Output that never takes the server down: a pipe whose reader went away is dropped.

Output piped to a reader that goes away (``geventdev app.py 2>&1 | head -3``, a closed
terminal): the next write raises ``BrokenPipeError`` (Python ignores SIGPIPE), and the monitor
died on its next log line (issue 12). A dev server keeps serving: ``Unbreakable`` drops what
cannot be written, and points the fd at ``/dev/null`` so later writes (C code, subprocesses
started afterwards) succeed too. Used by the monitor (its log) and each app process (its
``sys.stdout``/``sys.stderr``). Stdlib only (kernel).
"""

from __future__ import annotations

import os
from typing import Any, TextIO


def silence(stream: TextIO) -> None:
    """Point ``stream``'s fd at ``/dev/null``: what is written from now on goes nowhere."""
    try:
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError, AttributeError):
        return
    try:
        os.dup2(null, fd)
    except OSError:
        pass
    finally:
        os.close(null)


class Unbreakable:
    """A text stream whose writes never raise ``BrokenPipeError``: the first one silences the
    stream (``silence``) and the text is dropped. Everything else is the wrapped stream's."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            silence(self._stream)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            silence(self._stream)
            try:  # what was buffered now goes to /dev/null
                self._stream.flush()
            except OSError:
                pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def unbreakable(stream: TextIO) -> TextIO:
    """``stream`` wrapped in ``Unbreakable`` (once), typed as the text stream it stands for."""
    if stream is None or isinstance(stream, Unbreakable):
        return stream
    return Unbreakable(stream)  # type: ignore[return-value]
