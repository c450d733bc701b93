"""``python -m geventdev.cli``: the command without ``launch``'s in-process mode (used by
``geventdev.serve()``, which always wants the monitor)."""

from geventdev.cli.main import main

main()
