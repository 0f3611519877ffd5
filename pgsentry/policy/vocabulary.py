"""The words a policy may use for facts: statement kinds and origins.

Owns the bridge to the analysis vocabulary (`pgsentry.analysis.kinds`) plus the one
kind only the policy knows: `function_call` (the FunctionCall protocol message). Must
not evaluate anything.
"""

from __future__ import annotations

import importlib
from functools import cache

FUNCTION_CALL = "function_call"

ORIGINS = frozenset(
    {"top", "cte", "do_block", "function_body", "rule_action", "prepare", "explain"}
)


@cache
def known_kinds() -> frozenset[str] | None:
    """Every kind a statement can have, or None if the analysis has not published them."""
    try:
        kinds = importlib.import_module("pgsentry.analysis.kinds")
    except ImportError:
        return None
    names: set[str] = set()
    for attr in ("KINDS", "ALL_KINDS", "ALL"):
        value = getattr(kinds, attr, None)
        if isinstance(value, dict | set | frozenset | list | tuple):
            names.update(str(k) for k in value)
    if not names:
        return None
    names.add(FUNCTION_CALL)
    return frozenset(names)
