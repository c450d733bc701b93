"""Other projects' conformance suites, run against geventdev (issue 13).

- **gevent's own pywsgi suite** (``gevent.tests.test__pywsgi``, shipped in gevent's wheel), with
  our server and handler (``geventdev.http.server.DevServer``/``DevHandler``, strict framing
  included) swapped in before the suite is imported, so every one of its handler classes derives
  from ours. It runs in a subprocess (it monkey-patches) as this file's ``__main__``. The cases we
  fail on purpose are listed in ``GEVENT_REFUSED`` with the reason; anything else failing, or one
  of them passing, fails the test.
- **Autobahn TestSuite**'s fuzzing client (``wstest``, Python 2.7 only) against a flask-sock
  echo app served by geventdev: no case may fail, and every close must be clean. A Python 2.7
  virtualenv with ``autobahntestsuite`` is made once in ``~/.cache/geventdev-tests`` (found as
  ``GEVENTDEV_PYTHON27``, ``python2.7`` on PATH or a pyenv 2.7); without Python 2.7 the test is
  skipped and says so. Which cases: ``AUTOBAHN_EXCLUDED``; README "HTTP and WebSocket
  conformance" has the full run's counts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

#: gevent's cases that fail against us on purpose, with every reason each one has.
HOST = (
    "its HTTP/1.1 request has no Host header: RFC 9112 §3.2 says a server MUST answer 400, and we"
    " do (pywsgi serves it)"
)
TE_CL = (
    "Transfer-Encoding with Content-Length: the body is read as chunked and then the connection"
    " is closed (RFC 9112 §6.1: a proxy may have framed it by the length), so the suite's next"
    " request on that connection finds it closed"
)
CUT_BODY = (
    "a body the client cuts off is the client's error: the app's read raises, Flask answers 400"
    " and the log gets one line; pywsgi reports it to the hub as a server error (a traceback),"
    " which is what the case waits for"
)
OBS_FOLD = (
    "a folded (obs-fold) header line: RFC 9112 §5.2 lets a server reject it with 400 or unfold"
    " it; we reject, as a proxy in front may read the fold differently"
)
ACCESS_LOGGER = (
    "the access log goes through the `werkzeug` logger, as flask run's does (so"
    " `logging.getLogger('werkzeug').setLevel(...)` silences it), not to the `log=` file object"
    " pywsgi is built with, which this case reads"
)
GEVENT_REFUSED = {
    "ChunkedInputTests.test_chunked_readline": (HOST,),
    "ChunkedInputTests.test_close_before_finished": (HOST, CUT_BODY),
    "ChunkedInputTests.test_dirt": (HOST,),
    "ChunkedInputTests.test_short_read": (HOST,),
    "ChunkedInputTests.test_short_read_with_content_length": (HOST, TE_CL),
    "ChunkedInputTests.test_short_read_with_zero_content_length": (HOST, TE_CL),
    "TestNonLatin1HeaderFromApplication.test": (HOST,),
    "TestNonLatin1UnicodeHeaderFromApplication.test": (HOST,),
    "TestMultiLineHeader.test_multiline_116": (OBS_FOLD,),
    "TestLogging.test_status_log": (ACCESS_LOGGER,),
}


def run_gevent_suite(host_required: bool) -> dict[str, Any]:
    argv = [sys.executable, __file__, "gevent-pywsgi"]
    env = {**os.environ, "GEVENTDEV_HOST_REQUIRED": "1" if host_required else "0"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_gevent_pywsgi_suite() -> None:
    result = run_gevent_suite(host_required=True)
    assert result["ran"] > 100, result
    assert sorted(result["failed"]) == sorted(GEVENT_REFUSED), result["failed"]


def test_gevent_pywsgi_suite_fails_for_host_alone() -> None:
    """With the Host check off, exactly the cases with another reason still fail: the rest of
    the suite's chunked-input cases pass through our handler."""
    result = run_gevent_suite(host_required=False)
    others = [case for case, reasons in GEVENT_REFUSED.items() if set(reasons) - {HOST}]
    assert sorted(result["failed"]) == sorted(others), result["failed"]


# --- Autobahn TestSuite ---------------------------------------------------------------------------

#: The CI runs the 247 cases of 1.* to 7.* and 10.* (framing, pings, reserved bits, opcodes,
#: fragmentation, UTF-8, close handling, auto-fragmentation), about 12 s.
#: ``GEVENTDEV_AUTOBAHN_FULL=1`` adds 12.* and 13.* (permessage-deflate): 463 cases, 22 minutes
#: here, none failed, every close clean. 9.* (limits and performance, up to 16 MB messages) is left
#: out of both: simple-websocket 1.1.0 sends with socket.send(), not sendall(), so a message larger
#: than the socket buffer is cut short and 9.1.4 on hangs under any gevent server
#: (miguelgrinberg/simple-websocket#45, fixed after 1.1.0, unreleased).
AUTOBAHN_FULL = bool(os.environ.get("GEVENTDEV_AUTOBAHN_FULL"))
AUTOBAHN_EXCLUDED = ["9.*"] if AUTOBAHN_FULL else ["9.*", "12.*", "13.*"]
ECHO_APP = """
from flask import Flask
from flask_sock import Sock

app = Flask(__name__)


@Sock(app).route("/echo")
def echo(ws):
    while True:
        ws.send(ws.receive())
"""
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "geventdev-tests"


def python27() -> str | None:
    """The first Python 2.7 that runs: ``GEVENTDEV_PYTHON27``, pyenv's, ``python2.7`` on PATH
    (a pyenv shim is on PATH even when no 2.7 is selected, so each one is tried)."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [
        os.environ.get("GEVENTDEV_PYTHON27"),
        *map(str, sorted(pyenv.glob("2.7*/bin/python2.7"), reverse=True)),
        shutil.which("python2.7"),
    ]
    for python in filter(None, candidates):
        try:
            done = subprocess.run(
                [python, "-c", "import sys; print(sys.version_info[:2] == (2, 7))"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except OSError:
            continue
        if done.stdout.strip() == "True":
            return python
    return None


@pytest.fixture(scope="session")
def wstest() -> str:
    """``wstest`` from a Python 2.7 virtualenv with autobahntestsuite, made once and kept."""
    python = python27()
    if python is None:
        pytest.skip("Autobahn's wstest needs Python 2.7 (none found: set GEVENTDEV_PYTHON27)")
    venv = CACHE / "autobahn-py27"
    wstest = venv / "bin" / "wstest"
    if not wstest.exists():
        shutil.rmtree(venv, ignore_errors=True)
        steps = [
            [python, "-m", "pip", "install", "-q", "--user", "virtualenv<20.22"],
            [python, "-m", "virtualenv", "-q", str(venv)],
            [str(venv / "bin" / "pip"), "install", "-q", "autobahntestsuite==25.10.1"],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"{step}: {done.stdout}{done.stderr}"
    return str(wstest)


@pytest.fixture
def echo_server(tmp_path: Path) -> Iterator[Any]:
    from conftest import DevServer, geventdev_env, wait_until, write

    write(tmp_path / "project" / "app.py", ECHO_APP)
    argv = [sys.executable, "-m", "geventdev", "app.py", "--no-reload", "--no-debug"]
    log = tmp_path / "server-0.log"
    srv = DevServer(tmp_path / "project", log, [*argv, "--port", "0"], geventdev_env())
    try:
        wait_until(lambda: srv.port, 30, "the server")
        yield srv
    finally:
        srv.stop()


@pytest.mark.timeout(4000 if AUTOBAHN_FULL else 900)  # the first run also makes the virtualenv
def test_autobahn_fuzzingclient(wstest: str, echo_server: Any, tmp_path: Path) -> None:
    spec = {
        "outdir": str(tmp_path / "reports"),
        "servers": [{"agent": "geventdev", "url": f"ws://127.0.0.1:{echo_server.port}/echo"}],
        "cases": ["*"],
        "exclude-cases": AUTOBAHN_EXCLUDED,
        "exclude-agent-cases": {},
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    started = time.monotonic()
    done = subprocess.run(
        [wstest, "-m", "fuzzingclient", "-s", "spec.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=3600 if AUTOBAHN_FULL else 600,
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "reports" / "index.json").read_text())["geventdev"]
    assert len(report) >= (400 if AUTOBAHN_FULL else 244), sorted(report)
    # Autobahn's verdicts: OK, NON-STRICT (allowed, e.g. a bad frame answered by a close after the
    # echo) and INFORMATIONAL (nothing to judge: 7.1.6, 7.13.*); FAILED, UNIMPLEMENTED, and for
    # the close WRONG CODE, UNCLEAN or FAILED BY CLIENT are failures.
    failed = {
        case: (result["behavior"], result["behaviorClose"])
        for case, result in report.items()
        if result["behavior"] not in ("OK", "NON-STRICT", "INFORMATIONAL")
        or result["behaviorClose"] not in ("OK", "INFORMATIONAL")
        or result["behaviorClose"] == "INFORMATIONAL" != result["behavior"]
    }
    assert failed == {}, f"{len(failed)} of {len(report)} cases failed, in {took:.0f} s"


# --- the runner, in its own process: ``python tests/test_peer_suites.py gevent-pywsgi`` ----------


def _run_gevent_pywsgi() -> None:
    from gevent import monkey

    monkey.patch_all()
    import unittest

    from gevent import pywsgi

    from geventdev.config import Config
    from geventdev.http.server import DevHandler, DevServer

    class PeerHandler(DevHandler):  # type: ignore[misc]
        host_required = os.environ.get("GEVENTDEV_HOST_REQUIRED") != "0"

    class PeerServer(DevServer):  # type: ignore[misc]
        """``DevServer`` built the way the suite builds pywsgi's (listener, app, keywords)."""

        def __init__(self, listener: Any, application: Any = None, **kwargs: Any) -> None:
            super(DevServer, self).__init__(listener, application, **kwargs)  # pywsgi's own
            self.configure(
                Config(header_timeout=5, keepalive_timeout=5, body_timeout=5), sys.stderr
            )

    pywsgi.WSGIHandler, pywsgi.WSGIServer = PeerHandler, PeerServer
    from gevent.tests import test__pywsgi as suite

    tests = unittest.TestLoader().loadTestsFromModule(suite)
    result = unittest.TextTestRunner(verbosity=0, stream=sys.stderr).run(tests)
    failed = {
        test.id().removeprefix("gevent.tests.test__pywsgi."): trace.strip().splitlines()[-1]
        for test, trace in (*result.failures, *result.errors)
    }
    print(json.dumps({"ran": result.testsRun, "failed": failed, "skipped": len(result.skipped)}))


if __name__ == "__main__" and sys.argv[1:] == ["gevent-pywsgi"]:
    _run_gevent_pywsgi()
