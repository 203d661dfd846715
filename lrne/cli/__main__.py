"""``python -m lrne.cli``: the ``lrne`` command."""

import sys

from lrne.cli import main

sys.exit(main())
