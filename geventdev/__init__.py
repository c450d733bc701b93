"""geventdev: the Flask development server on gevent.

Kept import-light on purpose: the child process imports this package before it monkey-patches,
so nothing here may import gevent, Flask, click, watchdog or threading. ``run``, ``serve``,
``Server`` and ``ServerError`` are imported on first use (PEP 562); no ``__future__`` or
``typing`` import either, since each would be one more module loaded before the patch.
"""

__version__ = "0.1.0"
__all__ = ["Server", "ServerError", "__version__", "run", "serve"]

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from geventdev.cli.main import run
    from geventdev.testing.api import ServerError, serve
    from geventdev.testing.process import Server

_LAZY = {
    "run": "cli.main",
    "serve": "testing.api",
    "ServerError": "testing.api",
    "Server": "testing.process",
}


def __getattr__(name: str) -> object:
    """``geventdev.serve`` and friends: import their module only when first asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'geventdev' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
