"""``python -m tasks_app.simulator``: see :mod:`tasks_app.simulator.cli`."""

import sys

from .cli import main

sys.exit(main())
