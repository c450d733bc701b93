"""The WSGI types shared by every side that handles an app (PEP 3333). Stdlib only."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
