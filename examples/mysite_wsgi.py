"""A plain WSGI callable, no framework: `geventdev examples/mysite_wsgi.py:application`.

Any WSGI app works the way `mysite.wsgi:application` works for Django, Bottle or Falcon. A real
Django project gets what `manage.py runserver` adds on top (static files in DEBUG, template
reload): see README "How the app is found" and tests/test_django.py.
"""


def application(environ, start_response):
    body = f"plain WSGI at {environ.get('PATH_INFO', '/')}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
