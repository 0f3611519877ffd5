"""Policy files: YAML model, loading with file:line errors, evaluation.

Owns `(analysis, principal, now) -> Decision`. Must not do I/O during evaluation.
"""
