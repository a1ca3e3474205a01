"""Paper Table 12 (training complexity, GMACs) for SSVS and DARL, in both MAC conventions.

Usage::

    python benchmarks/table12.py [--size 256] [--convention both|paper|exact] [--json PATH]

The counting lives in ``darlkit.flops.table12``; this script runs ``darlkit flops``.
"""

import sys

from darlkit.cli import main

if __name__ == "__main__":
    sys.exit(main(["flops", *sys.argv[1:]]))
