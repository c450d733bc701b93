"""``python -m geventdev``."""

from geventdev.cli import main

main()
