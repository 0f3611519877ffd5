"""Held statements awaiting out-of-band approval (issue #4).

Owns the hold registry, approval rules, expiry and the approvers file. Must not import
`pgsentry.proxy` or `pgsentry.admin`, nor do network I/O: notifications go through the
`HoldNotifier` protocol (implemented by `pgsentry.admin.webhooks.WebhookNotifier`).

Audit events emitted here (all carry `hold_id` and `session_id`):

- `hold_held`: `rule`, `user`, `database`, `application_name`, `client_addr`, `statement`,
  `statement_sha256`, `timeout_seconds`, `approvals_required`.
- `hold_approval` (one per approval): `approver`, `reason`, `approvals`, `approvals_required`.
- `hold_released` (approved), `hold_denial`, `hold_expired`, `hold_cancelled`,
  `hold_abandoned`: `rule`, `approvers` (list), `reason`, `waited_seconds`.
- `hold_notified` / `hold_notify_failed` (by the webhook notifier): `url`, `attempt`,
  `status` (HTTP status or null), `error`, `webhook_id`.

- `hold_approval_refused` (`record_refusal`, called by the admin API for every refused
  approve / deny; `hold_id` / `session_id` null for an unknown hold): `requested_id`,
  `action`, `status`, `reason`, `approver`, `client_addr`. Never the token.

The proxy emits `hold_executed` itself after an approved batch ran.
"""

from pgsentry.holds.approvers import (
    Approver,
    ApproversFileError,
    ApproverStore,
    approvers_add_command,
    approvers_remove_command,
    hash_token,
    new_token,
)
from pgsentry.holds.model import Approval, Hold, HoldResult, HoldState, Verdict, statement_sha256
from pgsentry.holds.registry import AuditEmitter, HoldLimitExceeded, HoldNotifier, HoldRegistry

__all__ = [
    "Approval",
    "Approver",
    "ApproverStore",
    "ApproversFileError",
    "AuditEmitter",
    "Hold",
    "HoldLimitExceeded",
    "HoldNotifier",
    "HoldRegistry",
    "HoldResult",
    "HoldState",
    "Verdict",
    "approvers_add_command",
    "approvers_remove_command",
    "hash_token",
    "new_token",
    "statement_sha256",
]
