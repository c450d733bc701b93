"""Live reload in the browser: the WSGI middleware, the script it injects, CSP nonces."""
