"""What a StartupMessage may set: the login's settings, judged before anything goes upstream.

Owns `login_refusal(msg, decider, who)` and `StartupRefused`. The server applies every
startup parameter but user, database, replication and options as a setting, and reads
options as command-line switches (`StartupMessage.settings()` reads them the same way);
each setting is judged as the `SET` that would make it, so a login cannot make a setting
the policy refuses to a statement. A physical replication connection speaks commands that
are not SQL: the policy's on_unparseable decides for it as a whole. Pure: no I/O.
"""

from __future__ import annotations

from pgsentry.policy.decision import Action, Principal
from pgsentry.session.decider import SessionDecider
from pgsentry.wire import errors as E
from pgsentry.wire.startup import StartupMessage


class StartupRefused(Exception):
    """A StartupMessage the proxy refuses: the connection ends with this FATAL error."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def login_refusal(
    msg: StartupMessage, decider: SessionDecider, who: Principal
) -> StartupRefused | None:
    """Why this login must be refused, or None."""
    if _physical_replication(msg.params.get("replication", "")):
        decision = decider.decide_unreadable(
            "a physical replication connection, whose commands are not SQL", who
        ).decision
        if decision.action is not Action.ALLOW:
            return StartupRefused(
                E.INSUFFICIENT_PRIVILEGE,
                f"pgsentry: physical replication connections are refused: {decision.reason}",
            )
    try:
        settings = msg.settings()
    except E.ProtocolError as exc:
        return StartupRefused(exc.sqlstate, str(exc))
    for name, value in settings:
        sql = f"SET {_quote_setting(name)} TO {_quote_literal(value)}"
        decision = decider.decide(sql, who, True).decision
        if decision.action is not Action.ALLOW:
            return StartupRefused(
                E.INSUFFICIENT_PRIVILEGE,
                f"pgsentry: connection setting {name}={value!r} refused, as the same "
                f"SET would be: {decision.reason}",
            )
    return None


def _physical_replication(value: str) -> bool:
    """The server's parse_bool of the replication parameter ("database" is logical)."""
    v = value.strip().lower()
    return v in ("1", "on") or (bool(v) and ("true".startswith(v) or "yes".startswith(v)))


def _quote_setting(name: str) -> str:
    """A setting name as SET spells it (custom settings are dotted: "my"."option")."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
