"""Lazy URL builders (``app.routing``): every URL built exactly as werkzeug's eager ones build it.

A differential corpus: the same rules in two maps, one compiled by werkzeug's own ``compile``,
one with the lazy builders; every (endpoint, values, method, append_unknown, url scheme) build
must give the same URL or the same error.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Blueprint, Flask, url_for
from werkzeug.routing import BaseConverter, BuildError, Map, Rule, Subdomain, Submount

from geventdev.app import routing


class Tag(BaseConverter):
    """A converter with user code in ``to_url`` (it counts its calls)."""

    calls = 0

    def to_python(self, value: str) -> str:
        return value.upper()

    def to_url(self, value: Any) -> str:
        Tag.calls += 1
        return str(value).lower().replace(" ", "-")


def rules() -> list[Any]:
    return [
        Rule("/", endpoint="index"),
        Rule("/static/<path:filename>", endpoint="static"),
        Rule("/users/<int:user_id>", endpoint="user", methods=["GET", "POST"]),
        Rule("/users/<int:user_id>/edit", endpoint="user_edit", methods=["PUT"]),
        Rule("/price/<float:amount>", endpoint="price"),
        Rule("/u/<uuid:key>", endpoint="by_uuid"),
        Rule("/lang/<any(en, fr, 'de-at'):lang>/", endpoint="lang"),
        Rule("/s/<string(length=2):code>", endpoint="code"),
        Rule("/s/<string(minlength=3, maxlength=5):name>", endpoint="named"),
        Rule("/page/<int(min=1):page>", endpoint="page", defaults={}),
        Rule("/blog/", defaults={"page": 1}, endpoint="blog"),
        Rule("/blog/page/<int:page>", endpoint="blog"),
        Rule("/tag/<tag:name>", endpoint="tag"),
        Rule("/tagged/<tag:name>/x", defaults={"name": "Hello World"}, endpoint="tag_default"),
        Rule("/spaces and ünïcode/<name>", endpoint="quoted"),
        Rule("/odd!$&'()*+,;=:@/<name>", endpoint="odd"),
        Rule("//double//slashes/<a>", endpoint="double", merge_slashes=True),
        Rule("/strict", endpoint="strict", strict_slashes=False),
        Rule("/old/<int:n>", endpoint="old", redirect_to="/new/<n>"),
        Rule("/alias", endpoint="index", alias=True),
        Submount("/api", [Rule("/v<int:version>/<path:rest>", endpoint="api")]),
        Subdomain("<sub>", [Rule("/sub/<int:n>", endpoint="on_sub")]),
        Subdomain("static", [Rule("/files/<path:f>", endpoint="files")]),
    ]


VALUES: list[dict[str, Any]] = [
    {},
    {"filename": "a/b c.css"},
    {"user_id": 3},
    {"user_id": -3},
    {"user_id": "x"},
    {"amount": 2.5},
    {"key": uuid.UUID(int=7)},
    {"lang": "de-at"},
    {"lang": "es"},
    {"code": "ab"},
    {"code": "abc"},
    {"name": "Ab Cd"},
    {"name": "Ab Cd", "extra": ["1", "2"], "q": "ü"},
    {"page": 1},
    {"page": 4},
    {"page": 0},
    {"a": "x/y"},
    {"n": 5},
    {"n": 5, "sub": "shop"},
    {"version": 2, "rest": "x/y z"},
    {"f": "img.png"},
    {"user_id": 3, "_x": None},
]
ENDPOINTS = sorted(
    {r.endpoint for r in Map(rules(), converters={"tag": Tag}).iter_rules()} | {"missing"}
)


def outcomes(host_matching: bool = False) -> Iterator[tuple[Any, ...]]:
    url_map = Map(rules(), converters={"tag": Tag}, host_matching=host_matching)
    adapter = url_map.bind("example.test", subdomain="www" if not host_matching else None)
    for endpoint, values, method, append, external in itertools.product(
        ENDPOINTS, VALUES, (None, "GET", "PUT", "POST"), (True, False), (False, True)
    ):
        try:
            result: Any = adapter.build(endpoint, values, method, external, append)
        except BuildError as exc:
            result = ("BuildError", exc.endpoint, tuple(sorted(exc.values)), exc.method)
        except Exception as exc:  # noqa: BLE001 - compared, not judged
            result = (type(exc).__name__, str(exc))
        yield endpoint, repr(values), method, append, external, result


@pytest.fixture
def lazy() -> Iterator[None]:
    routing.install()
    assert routing._installed
    yield
    routing.uninstall()


def both(build: Callable[[], list[Any]]) -> tuple[list[Any], list[Any]]:
    routing.uninstall()
    eager = build()
    routing.install()
    try:
        return eager, build()
    finally:
        routing.uninstall()


@pytest.mark.parametrize("host_matching", [False, True])
def test_every_build_equals_werkzeugs(host_matching: bool) -> None:
    eager, lazy = both(lambda: list(outcomes(host_matching)))
    assert len(eager) > 5000
    differences = [(a, b) for a, b in zip(eager, lazy, strict=True) if a != b]
    assert differences == []


def test_builders_are_made_on_first_use_only(lazy: None) -> None:
    rule = Rule("/x/<int:n>", endpoint="x")
    Map([rule])
    assert isinstance(rule.__dict__["_build"], routing.LazyBuilder)
    assert rule.build({"n": 2}, append_unknown=False) == ("", "/x/2")
    assert not isinstance(rule.__dict__["_build"], routing.LazyBuilder)  # built, kept
    assert isinstance(rule.__dict__["_build_unknown"], routing.LazyBuilder)  # still deferred


def test_a_default_inside_the_rule_still_calls_to_url_when_added(lazy: None) -> None:
    Tag.calls = 0
    rule = Rule("/t/<tag:name>", defaults={"name": "A B"}, endpoint="t")
    Map([rule], converters={"tag": Tag})
    assert Tag.calls == 2  # both builders, at once, as werkzeug does
    assert not isinstance(rule.__dict__["_build"], routing.LazyBuilder)


def test_a_malformed_rule_still_fails_when_added(lazy: None) -> None:
    with pytest.raises(ValueError, match="malformed"):
        Map([Rule("/<int:broken", endpoint="broken")])


def test_a_subclass_with_its_own_builder_is_left_alone(lazy: None) -> None:
    class Custom(Rule):
        def _compile_builder(self, append_unknown: bool = True) -> Any:
            return super()._compile_builder(append_unknown)

    rule = Custom("/c", endpoint="c")
    Map([rule])
    assert not isinstance(rule.__dict__["_build"], routing.LazyBuilder)


def make_app() -> Flask:
    app = Flask(__name__)
    for i in range(40):
        bp = Blueprint(f"b{i}", __name__, url_prefix=f"/b{i}", subdomain=None)
        bp.add_url_rule("/", "index", lambda: "x")
        bp.add_url_rule("/item/<int:item>", "item", lambda item: "x", methods=["GET", "POST"])
        bp.add_url_rule("/f/<path:f>", "f", lambda f: "x")
        app.register_blueprint(bp)
    return app


def test_flask_url_for_is_unchanged() -> None:
    def build() -> list[str]:
        app = make_app()
        app.config["SERVER_NAME"] = "example.test"
        urls = []
        with app.test_request_context("/"):
            for i in range(40):
                urls += [
                    url_for(f"b{i}.index"),
                    url_for(f"b{i}.item", item=i, page=2, _anchor="top"),
                    url_for(f"b{i}.item", item=i, _method="POST", _external=True),
                    url_for(f"b{i}.f", f="a b/ü", _scheme="https", _external=True),
                ]
        return urls

    eager, lazy = both(build)
    assert eager == lazy
