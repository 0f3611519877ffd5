"""Statement analysis: SQL text -> `StatementFacts` (pglast), and the analysis cache.

Owns parsing and the facts vocabulary. Must not know who is asking.
Public API: `analyze`, `clear_cache`, the fact types, `kinds`, `functions`.
"""

from pgsentry.analysis.analyzer import analyze, cache_sizes, clear_cache
from pgsentry.analysis.facts import Analysis, Relation, StatementFacts, WhereClause

__all__ = [
    "Analysis",
    "Relation",
    "StatementFacts",
    "WhereClause",
    "analyze",
    "cache_sizes",
    "clear_cache",
]
