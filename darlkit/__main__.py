"""``python -m darlkit``: the same as the ``darlkit`` command."""

import sys

from darlkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
