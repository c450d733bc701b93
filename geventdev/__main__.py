"""``python -m geventdev``."""

from geventdev.cli.launch import main

main()
