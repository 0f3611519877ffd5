"""The words a policy may use for facts: statement kinds and origins.

Owns the bridge to the analysis vocabulary (`pgsentry.analysis.kinds`) plus the one
kind only the policy knows: `function_call` (the FunctionCall protocol message, which
carries a function OID and no SQL). Must not evaluate anything.
"""

from __future__ import annotations

from pgsentry.analysis import kinds

FUNCTION_CALL = "function_call"

KINDS: frozenset[str] = frozenset(kinds.KINDS) | {FUNCTION_CALL}
ORIGINS: frozenset[str] = frozenset(kinds.ORIGINS)
