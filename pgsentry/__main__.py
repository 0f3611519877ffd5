"""`python -m pgsentry` is the `pgsentry` command."""

from pgsentry.cli import main

raise SystemExit(main())
