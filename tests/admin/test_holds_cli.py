"""`holds_command` (pgsentry holds list|show|approve|deny) against a real admin listener.

The command runs its own event loop, so it is called in a worker thread while the
listener keeps serving on the test's loop.
"""

from __future__ import annotations

import asyncio
import io
import socket

from admin_support import Admin, hold_on

from pgsentry.admin import holds_command
from pgsentry.holds import HoldState
from pgsentry.policy.decision import HoldSpec


async def run(
    admin: Admin, action: str, hold_id: str | None = None, reason: str | None = None, **kw: str
) -> tuple[int, str]:
    out = io.StringIO()
    url = kw.get("url", admin.base)
    token = kw.get("token", admin.tokens["alice"])
    code = await asyncio.to_thread(
        holds_command, action, hold_id, reason, url=url, token=token, out=out
    )
    return code, out.getvalue()


async def test_list_show_approve(admin: Admin) -> None:
    code, text = await run(admin, "list")
    assert (code, text) == (0, "no holds waiting\n")
    hold = hold_on(admin.registry, HoldSpec(approvals=2))
    code, text = await run(admin, "list")
    assert code == 0 and hold.id in text and "DROP TABLE accounts" in text
    code, text = await run(admin, "show", hold.id)
    assert code == 0 and "state       waiting" in text and "approvals   0/2" in text
    code, text = await run(admin, "approve", hold.id, "reviewed")
    assert code == 0 and "hold is now waiting" in text and "alice: reviewed" in text
    code, text = await run(admin, "approve", hold.id, token=admin.tokens["bob"])
    assert code == 0 and "hold is now approved" in text
    assert (await hold.wait()).outcome is HoldState.APPROVED


async def test_deny_and_refusals(admin: Admin) -> None:
    hold = hold_on(admin.registry)
    code, text = await run(admin, "approve", hold.id, token=admin.tokens["mallory"])
    assert code == 1 and "HTTP 403" in text
    code, text = await run(admin, "deny", hold.id, "not today")
    assert code == 0 and "hold is now denied" in text
    code, text = await run(admin, "approve", hold.id)
    assert code == 1 and "HTTP 409" in text and "is denied" in text
    code, text = await run(admin, "show", "h_missing")
    assert code == 1 and "HTTP 404" in text
    code, text = await run(admin, "list", token="pgsa_wrong")
    assert code == 1 and "HTTP 401" in text


async def test_usage_errors_and_unreachable_server(admin: Admin) -> None:
    assert (await run(admin, "approve"))[0] == 2
    assert (await run(admin, "frobnicate", "h_x"))[0] == 2
    assert (await run(admin, "list", token=""))[0] == 2
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, text = await run(admin, "list", url=f"http://127.0.0.1:{port}")
    assert code == 3 and "cannot reach" in text
