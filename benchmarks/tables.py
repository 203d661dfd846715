"""The README's headline table, from benchmarks/results/ (``python -m benchmarks tables``).

python benchmarks/tables.py          # rewrite the headline table in README.md
python benchmarks/tables.py --check  # exit 1 if README.md is out of date

Every other table is its benchmark's ``table(result)``, filled into the docs
pages by docs/hooks.py.
"""

import sys

from harness import main

if __name__ == "__main__":
    sys.exit(main(["tables", *sys.argv[1:]]))
