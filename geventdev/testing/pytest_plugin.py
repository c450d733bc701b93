"""The pytest plugin (entry point ``pytest11``): the ``gevent_server`` fixture.

pytest loads this module in every test run of everyone who has geventdev installed, so it imports
nothing but pytest and the standard library; ``geventdev.api`` is imported when the fixture is
first used. The fixture is deliberately not called ``live_server``: pytest-flask and pytest-django
own that name, and both may be installed next to geventdev.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from geventdev.testing.process import Server

#: The servers a test started, so a failing test's report can show their logs.
SERVERS = pytest.StashKey[list["Server"]]()


@pytest.fixture
def gevent_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Server]]:
    """Start real geventdev servers for one test: ``srv = gevent_server("app.py")``.

    A factory taking ``geventdev.serve``'s arguments (a target as the CLI takes it, ``cwd=``,
    ``env=``, and options such as ``reload=True``); it returns once the app answers HTTP, on a
    free port (``srv.url``). Each server is stopped when the test ends, and its log is added to
    the report of a failing test. Function scope: for one server shared by many tests, write a
    session-scoped fixture around ``geventdev.serve`` (see the README).
    """
    from geventdev.testing.api import serve

    started = request.node.stash.setdefault(SERVERS, [])

    def start(target: str | os.PathLike[str] | None = None, **options: Any) -> Server:
        if options.get("log_path") is None:
            options["log_path"] = tmp_path_factory.mktemp("geventdev") / "server.log"
        server = serve(target, **options)  # a start-up failure raises with the log in it
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """Attach each server's log to the report of a test that failed (setup, call or teardown)."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.failed:
        for server in item.stash.get(SERVERS, []):
            report.sections.append((f"geventdev log: {server.config.app}", server.log()))
