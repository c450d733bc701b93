"""``python -m geventdev``."""

from geventdev.launch import main

main()
