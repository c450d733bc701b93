"""HTTPS like ``flask run --cert/--key``: checked and resolved once, in the monitor.

``--cert adhoc`` makes one throwaway self-signed certificate when the server starts and reuses it
for every app process, so a browser's "accept the risk" survives code reloads. Stdlib only,
ad-hoc certificates are made by the CLI (werkzeug + the optional ``cryptography`` package).
"""

from __future__ import annotations

import os
import ssl
from importlib.util import find_spec

from geventdev.config import Config


class TLSError(Exception):
    """A bad --cert/--key combination: the message is one actionable line."""


def check(config: Config) -> None:
    """Flask's rules: a cert file needs a key, ``adhoc`` takes none, and both files must exist."""
    cert, key = config.cert, config.key
    if key and not cert:
        raise TLSError('"--key" is given without "--cert": pass both, or "--cert adhoc".')
    if cert == "adhoc":
        if key:
            raise TLSError('"--key" is not used with "--cert adhoc".')
        if find_spec("cryptography") is None:
            raise TLSError(
                "Ad-hoc certificates need the 'cryptography' package: "
                "pip install 'geventdev[tls]', or pass --cert FILE --key FILE."
            )
        return
    if cert and not key:
        raise TLSError('"--key" is required with "--cert FILE" (or use "--cert adhoc").')
    for path in (cert, key):
        if path and not os.path.isfile(path):
            raise TLSError(f"No such file: {path!r}.")


def server_context(config: Config) -> ssl.SSLContext | None:
    """The server-side context, the same for the app processes (gevent's ``ssl`` there: they
    patch first) and for the monitor's own 503 answers. No client certificates are asked for."""
    if not config.cert:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(config.cert, config.key)
    return context
