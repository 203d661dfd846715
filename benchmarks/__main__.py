"""``python -m benchmarks NAME [--quick] [--check] [--table]``: see harness.py."""

import sys

from harness import main

sys.exit(main())
