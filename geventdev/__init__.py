"""geventdev: the Flask development server on gevent.

Kept import-light on purpose: the child process imports this package before it monkey-patches,
so nothing here may import gevent, Flask, click, watchdog or threading.
"""

__version__ = "0.1.0"
