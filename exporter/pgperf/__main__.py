"""``python -m pgperf``: the same as the ``pgperf`` command."""

import sys

from .cli import main

sys.exit(main())
