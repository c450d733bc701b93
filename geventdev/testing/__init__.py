"""geventdev from tests: ``serve()``, the ``Server`` process handle and the pytest plugin.

Stdlib only (and pytest for the plugin): the caller is never monkey-patched.
"""
