"""Django served through ``mysite.wsgi:application`` the way ``manage.py runserver`` serves it.

runserver does two things beyond calling the WSGI handler, and both are needed in development:

- **Static files in DEBUG.** ``django.contrib.staticfiles``' runserver wraps the handler in
  ``StaticFilesHandler`` when ``DEBUG`` is on (``--nostatic`` off), so ``/static/admin/css/
  base.css`` and the apps' static files are served from their finders. Without it the admin is
  unstyled (404). We wrap the same way, on the same condition.
- **Template edits.** Since Django 4.1 the cached template loader is on in DEBUG too; runserver's
  autoreloader calls ``django.template.autoreload.template_changed`` on every non-code change,
  which resets the loaders when the file is under a template directory. We call that very
  function for the changes the monitor sends (``notify``), before live reload tells the tabs.

Nothing here runs for an app that is not Django's ``WSGIHandler``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from geventdev.app import notify
from geventdev.wsgi import WSGIApp


def is_django(app: Any) -> bool:
    """Django's WSGI handler (``get_wsgi_application()``), without importing Django."""
    handlers = sys.modules.get("django.core.handlers.wsgi")
    handler = getattr(handlers, "WSGIHandler", None)
    return handler is not None and isinstance(app, handler)


def serves_static(settings: Any, installed: bool) -> bool:
    """runserver's condition (``django.contrib.staticfiles.management.commands.runserver``):
    staticfiles installed and ``DEBUG`` on."""
    return installed and bool(getattr(settings, "DEBUG", False))


def reset_templates(paths: list[str]) -> None:
    """runserver's own reaction to a changed file: reset the template loaders (the cached
    loader's templates) when it is under a template directory."""
    try:
        from django.template.autoreload import template_changed
    except ImportError:  # Django < 3.2 has no template reset to call
        return
    for path in paths:
        if template_changed(None, Path(path)):
            return


def prepare_django(app: WSGIApp) -> WSGIApp:
    """Wire template resets to the monitor's changes; wrap in ``StaticFilesHandler`` like
    runserver does."""
    from django.apps import apps
    from django.conf import settings

    notify.subscribe(reset_templates)
    if serves_static(settings, apps.is_installed("django.contrib.staticfiles")):
        from django.contrib.staticfiles.handlers import StaticFilesHandler

        return StaticFilesHandler(app)  # type: ignore[no-any-return]
    return app
