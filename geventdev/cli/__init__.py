"""The commands: ``geventdev``, ``python -m geventdev``, ``flask gevent`` and ``geventdev.run()``.

They map options to a ``Config``, bind the socket and hand over to the monitor. Nothing here is
imported before ``launch`` has decided whether this process patches (``--no-reload``), so this
file stays empty.
"""
