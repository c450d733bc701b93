"""The monitor process: plain Python, permanent, never imports gevent or the user's app.

``loop`` performs what ``plan`` (a pure state machine) decides; ``watch`` feeds it file changes,
``responder`` answers 503 while no app process runs, ``terminal`` reads "rs", ``envfiles``
builds each app process's environment.
"""
