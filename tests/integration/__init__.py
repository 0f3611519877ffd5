"""Integration tests: a real PostgreSQL, the real pgsentry subprocess, real clients."""
