"""Policy files: YAML model, loading with file:line errors, evaluation.

Owns `(analysis, principal, now) -> Decision`. Must not do I/O during evaluation
(loading and watching files happen outside the hot path).
"""

from pgsentry.policy.decision import ALLOW, Action, Decision, HoldSpec, Principal
from pgsentry.policy.engine import Policy
from pgsentry.policy.load import PolicyError, load_policy, policy_files

__all__ = [
    "ALLOW",
    "Action",
    "Decision",
    "HoldSpec",
    "Policy",
    "PolicyError",
    "Principal",
    "load_policy",
    "policy_files",
]
