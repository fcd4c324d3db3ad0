"""``python -m cartpole_core``: see :mod:`cartpole_core.cli`."""

import sys

from cartpole_core.cli import main

sys.exit(main())
