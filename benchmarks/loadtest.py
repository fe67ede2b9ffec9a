"""Load-testing harness entry point; the same as ``ade loadtest`` (see docs/loadtest.md).

.venv/bin/python benchmarks/loadtest.py --clients 50 --duration 30
"""

from __future__ import annotations

import sys

from ade.loadtest import main

if __name__ == "__main__":
    sys.exit(main())
