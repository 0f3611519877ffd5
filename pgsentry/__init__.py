"""pgsentry: a PostgreSQL wire-protocol proxy that refuses or holds dangerous statements.

This package root owns nothing but the version string; see the subpackages.
"""

__version__ = "0.1.0"
