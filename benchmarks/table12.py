"""Paper Table 12 (training complexity, GMACs) for SSVS and DARL, in both MAC conventions.

Usage::

    python benchmarks/table12.py [--size 256] [--convention both|paper|exact] [--json PATH]

The logic lives in ``darlkit.flops.table12``; ``darlkit flops`` runs the same thing.
"""

import sys

from darlkit.flops.table12 import table12_main

if __name__ == "__main__":
    sys.exit(table12_main())
