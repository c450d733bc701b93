"""The debugger nobody else can use, its PIN lockout across reloads, and TLS."""

from __future__ import annotations

import io
import re
import signal
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from conftest import HELLO_APP, run_cli, write
from werkzeug.test import Client

from geventdev.app.debugger import GuardedDebugger, trusted_hosts
from geventdev.cli.banner import banner
from geventdev.config import Config
from geventdev.net import is_loopback

BOOM_APP = (
    HELLO_APP
    + """
@app.route("/boom")
def boom():
    answer = 41
    raise RuntimeError("boom")
"""
)


def debugger_page(server) -> tuple[str, str]:
    """The secret and a frame id from a traceback page."""
    page = server.get("/boom").text
    secret = re.search(r'SECRET = "(\w+)"', page)
    frame = re.findall(r'<div class="frame" id="frame-(\d+)"', page)
    assert secret and frame, page[:500]
    return secret.group(1), frame[-1]


def pin_of(server) -> str:
    match = re.search(r"Debugger PIN: ([\d-]+)", server.wait_for_log("Debugger PIN"))
    assert match
    return match.group(1)


def raw_get(port: int, path: str, host: str) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        status = sock.makefile("rb").readline().split()[1]
    return int(status)


@pytest.fixture
def booming(project: Path, dev_server):
    write(project / "app.py", BOOM_APP)
    server = dev_server("app.py")
    server.get("/")
    return server


def test_host_matrix_against_the_debugger_endpoints(booming) -> None:
    secret, _ = debugger_page(booming)
    port = booming.port
    printpin = f"/?__debugger__=yes&cmd=printpin&s={secret}"
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", "app.localhost"):
        assert raw_get(port, printpin, host) == 200, host
    for host in ("evil.test", f"evil.test:{port}", "localhost,evil.test", f"0.0.0.0:{port}"):
        assert raw_get(port, printpin, host) == 400, host
    assert raw_get(port, "/console", "evil.test") == 400
    assert raw_get(port, "/console", f"127.0.0.1:{port}") == 200


def test_code_runs_only_with_the_pin_cookie(booming) -> None:
    secret, frame = debugger_page(booming)
    command = f"/?__debugger__=yes&cmd=answer%2B1&frm={frame}&s={secret}"
    without = booming.get(command)
    assert "42" not in without.text  # no cookie: the app's traceback page, no evaluation
    with requests.Session() as session:
        auth = session.get(
            f"{booming.url}/?__debugger__=yes&cmd=pinauth&pin={pin_of(booming)}&s={secret}"
        )
        assert auth.json() == {"auth": True, "exhausted": False}
        cookie = auth.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        evaluated = session.get(booming.url + command)
        assert evaluated.status_code == 200 and "42" in evaluated.text
        assert "Traceback" not in evaluated.text


def test_pin_lockout_survives_reloads(project: Path, booming) -> None:
    secret, _ = debugger_page(booming)
    url = f"{booming.url}/?__debugger__=yes&cmd=pinauth&s={secret}&pin="
    with ThreadPoolExecutor(10) as pool:  # werkzeug sleeps after each failure: in parallel
        answers = list(pool.map(lambda _: requests.get(url + "000-000-000", timeout=30), range(10)))
    assert all(a.json()["auth"] is False for a in answers)
    good = url + pin_of(booming)
    assert requests.get(good, timeout=30).json() == {"auth": False, "exhausted": True}
    write(project / "app.py", BOOM_APP.replace("hello v1", "hello v2"))  # standby activation
    booming.wait_for_text("/", "hello v2")
    secret, _ = debugger_page(booming)
    url = f"{booming.url}/?__debugger__=yes&cmd=pinauth&s={secret}&pin={pin_of(booming)}"
    assert requests.get(url, timeout=30).json() == {"auth": False, "exhausted": True}
    booming.proc.send_signal(signal.SIGHUP)  # a cold process too
    booming.wait_for_log(" * Restarted in ")
    secret, _ = debugger_page(booming)
    url = f"{booming.url}/?__debugger__=yes&cmd=pinauth&s={secret}&pin={pin_of(booming)}"
    assert requests.get(url, timeout=30).json() == {"auth": False, "exhausted": True}


def failing_app(environ, start_response):
    raise RuntimeError("boom")


@pytest.mark.parametrize("remote", ["10.1.2.3", "192.168.0.7", "2001:db8::1"])
def test_remote_peers_cannot_use_the_console_or_pin(remote: str) -> None:
    client = Client(GuardedDebugger(failing_app, Config()))
    base = {"REMOTE_ADDR": remote}
    page = client.get("/", environ_base=base)
    assert page.status_code == 500 and "Werkzeug Debugger" in page.text  # the error page shows
    secret = re.search(r'SECRET = "(\w+)"', page.text).group(1)
    for path in (
        "/console",
        f"/?__debugger__=yes&cmd=pinauth&pin=1&s={secret}",
        f"/?__debugger__=yes&cmd=printpin&s={secret}",
        f"/?__debugger__=yes&cmd=1&frm=1&s={secret}",
    ):
        response = client.get(path, environ_base=base, headers={"Host": "127.0.0.1"})
        assert response.status_code == 403, path
        assert "--debugger-remote" in response.text
    assert (
        client.get("/?__debugger__=yes&cmd=resource&f=style.css", environ_base=base).status_code
        == 200
    )


def test_debugger_remote_lets_them_through() -> None:
    client = Client(GuardedDebugger(failing_app, Config(debugger_remote=True)))
    response = client.get(
        "/console", environ_base={"REMOTE_ADDR": "10.1.2.3"}, headers={"Host": "127.0.0.1"}
    )
    assert response.status_code == 200


def test_loopback_peers_and_trusted_hosts() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.5.0.1", "::1", "::ffff:127.0.0.1", "localhost"]))
    assert not any(map(is_loopback, ["10.0.0.1", "0.0.0.0", "", None, "example.com"]))
    assert "0.0.0.0" not in trusted_hosts("0.0.0.0") and "::" not in trusted_hosts("::")
    assert "myhost.test" in trusted_hosts("myhost.test")


def test_banner_warns_in_red_when_the_debugger_is_exposed() -> None:
    out = io.StringIO()
    lines = banner(Config(host="0.0.0.0"), 5000, out)
    assert any("WARNING: the debugger is on" in line for line in lines)
    assert not any("WARNING" in line for line in banner(Config(), 5000, out))
    assert not any(
        "WARNING" in line for line in banner(Config(host="0.0.0.0", debug=False), 5000, out)
    )


def test_pin_off_on_a_network_host_refuses_to_start(project: Path) -> None:
    write(project / "app.py", HELLO_APP)
    result = run_cli(
        project,
        "app.py",
        "--host",
        "0.0.0.0",
        "--port",
        "0",
        WERKZEUG_DEBUG_PIN="off",
        timeout=30,
    )
    assert result.returncode == 2
    assert "WERKZEUG_DEBUG_PIN=off" in result.stderr and "Running on" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--key", "k.pem"], '"--key" is given without "--cert"'),
        (["--cert", "c.pem"], '"--key" is required with "--cert FILE"'),
        (["--cert", "adhoc", "--key", "k.pem"], '"--key" is not used with "--cert adhoc"'),
        (["--cert", "missing.pem", "--key", "missing.key"], "No such file: 'missing.pem'"),
    ],
)
def test_tls_option_errors(project: Path, args: list[str], message: str) -> None:
    result = run_cli(project, "app.py", "--port", "0", *args, timeout=30)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[str, str]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return str(cert), str(key)


def test_https_with_cert_and_key(project: Path, dev_server, certificate: tuple[str, str]) -> None:
    write(project / "app.py", BOOM_APP)
    server = dev_server("app.py", "--cert", certificate[0], "--key", certificate[1])
    assert server.url.startswith("https://")
    assert requests.get(server.url + "/", verify=certificate[0], timeout=15).text == "hello v1"
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url.replace("https", "http") + "/", timeout=15)
    log = server.wait_for_log("TLS handshake failed")
    assert "plain HTTP sent to the HTTPS port?" in log and "Traceback" not in log
    page = requests.get(server.url + "/boom", verify=certificate[0], timeout=15)
    secret = re.search(r'SECRET = "(\w+)"', page.text).group(1)
    auth = requests.get(
        f"{server.url}/?__debugger__=yes&cmd=pinauth&pin={pin_of(server)}&s={secret}",
        verify=certificate[0], timeout=15,
    )  # fmt: skip
    assert "Secure" in auth.headers["Set-Cookie"]


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_adhoc_certificate_is_kept_across_restarts(project: Path, dev_server) -> None:
    app = write(project / "app.py", HELLO_APP)
    server = dev_server("app.py", "--cert", "adhoc")
    first = ssl_certificate(server.port)
    assert requests.get(server.url + "/", verify=False, timeout=15).text == "hello v1"
    write(app, HELLO_APP.replace("hello v1", "hello v2"))
    server.wait_for_log(" * Restarted in ")
    assert ssl_certificate(server.port) == first


def ssl_certificate(port: int) -> bytes:
    import ssl

    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with context.wrap_socket(sock, server_hostname="localhost") as tls:
            return tls.getpeercert(binary_form=True) or b""
