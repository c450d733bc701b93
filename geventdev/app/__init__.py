"""The app process (``python -m geventdev.app``): patches gevent first, loads and serves the app.

Disposable: one per code version, plus a warm standby (``preload``). Empty on purpose: the
package is imported before the patch.
"""
