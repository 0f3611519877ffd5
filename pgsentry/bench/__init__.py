"""The benchmark suite (issue 5): direct vs pgsentry vs pgbouncer on one machine.

Owns `python -m pgsentry.bench`: a throwaway cluster, the middles in front of it, the
workloads (pgbench, bulk COPY, idle connections, decision cost) and the markdown report.
Must not be imported by the proxy or any other runtime package, and must never be part of
the test suite's pass/fail except its quick smoke mode (tests/bench/test_smoke.py).
"""
