"""``python -m geventdev.app``: the app process the monitor starts."""

from geventdev.app.main import main

main()
