"""``python -m pushpy``: the ``pushpy`` command (see :mod:`pushpy.client.cli`)."""

from pushpy.client.cli import main

main()
