"""Build each URL rule's ``url_for`` function on first use instead of when the rule is added.

Werkzeug compiles two Python functions per URL rule the moment the rule is added (the URL
builders, emitted as an AST and ``compile()``d: https://github.com/pallets/werkzeug/pull/1281).
That is ~0.25 ms a rule, ~90 % of what ``register_blueprint`` costs: a project of 400 blueprints
with 1,600 routes spends ~0.4 s of every restart in it, most of it for rules whose URL is never
built in that process's short life. In the app process, ``Rule.compile`` still parses the rule
and builds its matcher parts at once (a malformed rule fails where it always did); only the two
builders are made on the first ``url_for`` that needs them, by werkzeug's own
``_compile_builder``, so they are the same functions. A rule whose URL building runs user code
at compile time (a converter's ``to_url`` for a default that appears in the rule) is built
eagerly, as before. Development only: production servers never import this.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from werkzeug.routing import Rule

_original_compile = Rule.compile
_compile_builder = Rule._compile_builder
_installed = False


class LazyBuilder:
    """Stands in for ``rule._build`` / ``rule._build_unknown`` until first called.

    ``Rule.compile`` binds what ``_compile_builder`` returns with ``__get__``; this object is
    already bound to its rule. Its first call builds the real function, puts it where werkzeug
    keeps it (so later calls never come here) and calls it.
    """

    __slots__ = ("rule", "append_unknown")

    def __init__(self, rule: Rule, append_unknown: bool) -> None:
        self.rule, self.append_unknown = rule, append_unknown

    def __get__(self, obj: object, objtype: type | None = None) -> LazyBuilder:
        return self

    def __call__(self, **values: Any) -> tuple[str, str]:
        real: Callable[..., tuple[str, str]]
        real = _compile_builder(self.rule, self.append_unknown).__get__(self.rule, None)
        name = "_build_unknown" if self.append_unknown else "_build"
        setattr(self.rule, name, real)
        return real(**values)


def runs_user_code(rule: Rule) -> bool:
    """Whether building the rule's builders calls a converter (a default inside the rule)."""
    defaults = rule.defaults
    if not defaults:
        return False
    return any(dynamic and data in defaults for dynamic, data in getattr(rule, "_trace", ()))


def _lazy_compile(self: Rule) -> None:
    if type(self)._compile_builder is not _compile_builder:  # a subclass builds its own way
        _original_compile(self)
        return

    def deferred(append_unknown: bool = True) -> Any:
        if runs_user_code(self):
            return _compile_builder(self, append_unknown)
        return LazyBuilder(self, append_unknown)

    self.__dict__["_compile_builder"] = deferred  # shadows the method for this one call
    try:
        _original_compile(self)
    finally:
        self.__dict__.pop("_compile_builder", None)


def install() -> None:
    """Make URL builders lazy for every rule compiled from now on (idempotent). Checked on a
    sample rule first: a Werkzeug that compiles differently keeps its own ``compile``."""
    global _installed
    if _installed:
        return
    from werkzeug.routing import Map

    Rule.compile = _lazy_compile  # type: ignore[method-assign]
    probe = Rule("/<int:x>/probe", endpoint="probe")
    try:
        Map([probe])
        works = isinstance(probe.__dict__.get("_build"), LazyBuilder)
        works = works and probe.build({"x": 1}) == ("", "/1/probe")
    except Exception:  # noqa: BLE001 - any surprise: werkzeug's own behaviour
        works = False
    if not works:
        Rule.compile = _original_compile  # type: ignore[method-assign]
        return
    _installed = True


def uninstall() -> None:
    """Werkzeug's eager ``compile`` again (tests compare both)."""
    global _installed
    Rule.compile = _original_compile  # type: ignore[method-assign]
    _installed = False
