"""Statement analysis: SQL text -> `StatementFacts` (pglast), and the decision cache.

Owns parsing and the facts vocabulary. Must not know who is asking.
"""
