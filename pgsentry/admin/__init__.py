"""The admin side of pgsentry: HTTP listener (health, metrics, holds API), the outbound
webhook notifier and the `holds` terminal client.

Must not import `pgsentry.proxy`.
"""

from pgsentry.admin.app import bound_port, create_admin_app, start_admin
from pgsentry.admin.holds_cli import holds_command
from pgsentry.admin.signing import generate_secret
from pgsentry.admin.webhooks import WebhookNotifier, WebhookTarget

__all__ = [
    "WebhookNotifier",
    "WebhookTarget",
    "bound_port",
    "create_admin_app",
    "generate_secret",
    "holds_command",
    "start_admin",
]
