"""Let the live-reload script through a page's Content-Security-Policy, changing as little as
possible.

The script is an external, same-origin ``<script src>`` and opens an ``EventSource`` to the same
origin. A policy that already allows both is left alone (its nonce, if any, goes on our tag). A
policy that would block it gets the page's own nonce (or a new one) added to its script
directive, or ``'self'`` where adding a nonce would switch off the page's ``'unsafe-inline'``;
and ``'self'`` in ``connect-src``. A directive that fell back to ``default-src`` is written out
(``default-src`` itself never widens). Report-only policies block nothing and are left alone.
"""

from __future__ import annotations

import re
import secrets

Directive = tuple[str, list[str]]

NONCE = re.compile(r"'nonce-([A-Za-z0-9+/=_-]+)'")
#: ``<meta http-equiv="Content-Security-Policy" content="...">`` in a page, and its nonce if any.
META = re.compile(rb"<meta[^>]+http-equiv\s*=\s*[\"']?content-security-policy", re.IGNORECASE)
META_NONCE = re.compile(NONCE.pattern.encode())
SCRIPT_ORDER = ("script-src-elem", "script-src", "default-src")
CONNECT_ORDER = ("connect-src", "default-src")


def parse(policy: str) -> list[Directive]:
    directives: list[Directive] = []
    for part in policy.split(";"):
        tokens = part.split()
        if tokens:
            directives.append((tokens[0].lower(), tokens[1:]))
    return directives


def serialize(directives: list[Directive]) -> str:
    return "; ".join(" ".join([name, *values]) for name, values in directives)


def effective(directives: list[Directive], order: tuple[str, ...]) -> Directive | None:
    by_name = {name: (name, values) for name, values in reversed(directives)}  # first one wins
    return next((by_name[name] for name in order if name in by_name), None)


def _lower(values: list[str]) -> set[str]:
    return {v.lower() for v in values}


def allows_script(values: list[str], nonce: str | None) -> bool:
    if nonce is not None and f"'nonce-{nonce}'" in values:
        return True
    low = _lower(values)
    return "'strict-dynamic'" not in low and ("'self'" in low or "*" in low)


def allows_connect(values: list[str]) -> bool:
    return bool(_lower(values) & {"'self'", "*"})


def _set(directives: list[Directive], name: str, values: list[str]) -> None:
    values = [v for v in values if v.lower() != "'none'"]
    for i, (existing, _) in enumerate(directives):
        if existing == name:
            directives[i] = (name, values)
            return
    directives.append((name, values))


def script_nonce(policies: list[list[Directive]]) -> str | None:
    """The page's own script nonce, if one of its policies has one."""
    for directives in policies:
        found = effective(directives, SCRIPT_ORDER)
        for value in found[1] if found else ():
            match = NONCE.fullmatch(value)
            if match:
                return match.group(1)
    return None


def open_policy(
    directives: list[Directive], nonce: str | None
) -> tuple[list[Directive], str | None]:
    """One policy, changed so it lets our script and its stream through; and the nonce to use."""
    directives = list(directives)
    script = effective(directives, SCRIPT_ORDER)
    if script is not None and not allows_script(script[1], nonce):
        name = "script-src" if script[0] == "default-src" else script[0]
        low = _lower(script[1])
        if (
            "'unsafe-inline'" in low
            and "'strict-dynamic'" not in low
            and not NONCE.search(" ".join(script[1]))
        ):
            _set(directives, name, [*script[1], "'self'"])  # a nonce would disable unsafe-inline
        else:
            nonce = nonce or secrets.token_urlsafe(16)
            _set(directives, name, [*script[1], f"'nonce-{nonce}'"])
    connect = effective(directives, CONNECT_ORDER)
    if connect is not None and not allows_connect(connect[1]):
        _set(directives, "connect-src", [*connect[1], "'self'"])
    return directives, nonce


def open_headers(headers: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], str | None]:
    """The response headers with every enforced CSP opened for live reload, and the nonce our
    tag must carry (None: no nonce needed)."""
    csp = [i for i, (k, _) in enumerate(headers) if k.lower() == "content-security-policy"]
    if not csp:
        return headers, None
    parsed = {i: [parse(p) for p in headers[i][1].split(",")] for i in csp}
    nonce = script_nonce([directives for policies in parsed.values() for directives in policies])
    out = list(headers)
    for i, policies in parsed.items():
        opened, touched = [], False
        for directives in policies:
            changed, nonce = open_policy(directives, nonce)  # a copy: directives stay as parsed
            touched = touched or changed != directives
            opened.append(serialize(changed))
        if touched:
            out[i] = (headers[i][0], ", ".join(opened))
    return out, nonce


def meta_policy(body: bytes) -> tuple[bool, str | None]:
    """Whether the page sets a CSP in a ``<meta>`` tag (not changed here), and a nonce in it."""
    match = META.search(body)
    if match is None:
        return False, None
    tag_end = body.find(b">", match.start())
    nonce = META_NONCE.search(body, match.start(), tag_end if tag_end > 0 else len(body))
    return True, nonce.group(1).decode() if nonce else None
