"""Entry point: `python -m pgsentry.bench [--quick] [--out PATH]`.

Owns nothing but the call into `pgsentry.bench.runner.main`.
"""

from pgsentry.bench.runner import main

raise SystemExit(main())
