"""``python -m odeflows``: the command line, as the ``odeflows`` command."""

from odeflows.cli import main

raise SystemExit(main())
