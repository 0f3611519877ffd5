"""`python -m pgsentry.devtools.pgcheck`: exit 0 when the PostgreSQL server binaries exist.

Otherwise print the one-line install hint on stderr and exit 1, so `make test` fails loudly
instead of skipping the database tests. Must not start anything.
"""

from __future__ import annotations

import sys

from pgsentry.devtools.pgcluster import PgBinariesMissing, find_bindir


def main() -> int:
    try:
        find_bindir()
    except PgBinariesMissing as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
