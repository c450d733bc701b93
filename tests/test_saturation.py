"""Under saturation the fast route stays fast (issue 15): the per-request work geventdev adds.

1000 requests finishing at once each write an access-log line; werkzeug's handler (added by its
debugger, so in the dev defaults) wraps stderr in colorama's converter whenever colorama is
installed, which off a terminal ran two regex scans and five calls per line. The line now goes
to the stream colorama wraps whenever colorama would only pass it on: the same bytes, flushed.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import colorama  # in the test extras: werkzeug's log handler writes through it
import pytest
import werkzeug._internal as werkzeug_internal

from geventdev import logs
from geventdev.http.server import DevHandler

LINE = '127.0.0.1 - - [30/Nov/2026 01:48:17] "GET /slow HTTP/1.1" 200 9'


class FileLike(io.StringIO):
    """A log file or pipe: not a terminal, so colorama strips escape sequences."""

    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


Access = Callable[[], tuple[logging.Logger, FileLike]]


@pytest.fixture
def access(monkeypatch: pytest.MonkeyPatch) -> Iterator[Access]:
    """Makes a werkzeug-style access logger whose only handler is werkzeug's own (colorama-
    wrapped) stream handler, over a file-like stderr, as in the app process with the debugger
    on. Called by the test itself: pytest >= 9.2 adds its capture handlers to every logger
    when the test starts, after the fixtures, and they are no part of the app process."""
    stderr = FileLike()
    log = logging.getLogger("geventdev-test-saturation")

    def make() -> tuple[logging.Logger, FileLike]:
        monkeypatch.setattr(sys, "stderr", stderr)  # pytest captures it anew for the test
        log.handlers[:] = [werkzeug_internal._ColorStreamHandler()]
        log.setLevel(logging.INFO)
        log.propagate = False
        return log, stderr

    yield make
    log.handlers[:] = []


def handler_for(log: logging.Logger, color: bool = False) -> Any:
    """A DevHandler past its response, ready to log it (no socket needed for log_request)."""
    handler = DevHandler.__new__(DevHandler)
    handler.server = SimpleNamespace(access_log=log, color=color)
    handler.path, handler.requestline, handler.status = "/slow", "GET /slow HTTP/1.1", "200 OK"
    handler._orig_status, handler._client_error = "200", None
    handler.client_address, handler.response_length = ("127.0.0.1", 50000), 9
    return handler


def counted_conversions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    original = colorama.AnsiToWin32.write_and_convert

    def spy(self: Any, text: str) -> None:
        calls.append(text)
        original(self, text)

    monkeypatch.setattr(colorama.AnsiToWin32, "write_and_convert", spy)
    return calls


def test_access_log_line_skips_colorama_and_keeps_its_bytes(
    access: Access, monkeypatch: pytest.MonkeyPatch
) -> None:
    log, stderr = access()
    assert logs.plain_stream(log) is log.handlers[0].stream  # type: ignore[attr-defined]
    conversions = counted_conversions(monkeypatch)
    handler = handler_for(log)
    monkeypatch.setattr("geventdev.http.server.log_time", lambda: "30/Nov/2026 01:48:17")
    flushes = stderr.flushes
    handler.log_request()
    assert stderr.getvalue() == LINE + "\n"  # what colorama would have written
    assert stderr.flushes == flushes + 1  # and flushed, as colorama does
    assert conversions == []  # without its regex scans


def test_a_line_with_escape_sequences_still_goes_through_colorama(
    access: Access, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A coloured line (the server decided on colours, the stream is no terminal): colorama
    strips the sequences, as before."""
    log, stderr = access()
    conversions = counted_conversions(monkeypatch)
    stream = logs.plain_stream(log)
    assert stream is not None
    logs.write_line(stream, "\x1b[33mnot found\x1b[0m\n")
    assert stderr.getvalue() == "not found\n"
    assert len(conversions) == 1


def test_write_line_to_a_plain_stream_writes_it() -> None:
    stream = FileLike()
    logs.write_line(stream, "\x1b[1mbold\x1b[0m\n")  # no colorama here: untouched
    assert stream.getvalue() == "\x1b[1mbold\x1b[0m\n"


def test_colorama_stream_wrapper_is_passed_through_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """``colorama.init()`` replaces ``sys.stderr`` with the wrapper's ``.stream``: same rule."""
    target = FileLike()
    wrapper = colorama.AnsiToWin32(target).stream
    conversions = counted_conversions(monkeypatch)
    logs.write_line(wrapper, LINE + "\n")
    assert target.getvalue() == LINE + "\n" and target.flushes == 1
    assert conversions == []


def test_another_library_s_stream_wrapper_is_written_as_is() -> None:
    """Only colorama's classes are looked into: a same-named class elsewhere is just written to."""

    class AnsiToWin32(FileLike):  # another library's converter, with a .wrapped stream too
        wrapped = FileLike()
        autoreset = False

    stream = AnsiToWin32()
    logs.write_line(stream, LINE + "\n")
    assert stream.getvalue() == LINE + "\n" and AnsiToWin32.wrapped.getvalue() == ""
