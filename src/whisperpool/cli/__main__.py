"""``python -m whisperpool.cli``: the ``whisperpool`` command."""

import sys

from . import main

sys.exit(main())
