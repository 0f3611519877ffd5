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


async def run_split(
    admin: Admin, action: str, hold_id: str | None = None, reason: str | None = None, **kw: str
) -> tuple[int, str, str]:
    """(exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    url = kw.get("url", admin.base)
    token = kw.get("token", admin.tokens["alice"])
    code = await asyncio.to_thread(
        holds_command, action, hold_id, reason, url=url, token=token, out=out, err=err
    )
    return code, out.getvalue(), err.getvalue()


async def run(
    admin: Admin, action: str, hold_id: str | None = None, reason: str | None = None, **kw: str
) -> tuple[int, str]:
    """(exit code, stdout and stderr together)."""
    code, out, err = await run_split(admin, action, hold_id, reason, **kw)
    return code, out + err


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


async def test_errors_go_to_stderr_and_ids_cannot_leave_the_holds_api(admin: Admin) -> None:
    hold_on(admin.registry)
    code, out, err = await run_split(admin, "show", "h_missing")
    assert (code, out) == (1, "") and "HTTP 404: no such hold" in err
    for bad in ("../../metrics", "..", "h_x/approve", "h_x?all=1"):
        code, out, err = await run_split(admin, "show", bad)
        assert (code, out) == (2, "") and err.startswith("not a hold id"), (bad, err)
    code, out, err = await run_split(admin, "approve", "../../metrics")
    assert code == 2 and "Traceback" not in err


async def test_url_without_scheme_and_a_server_that_is_not_pgsentry(admin: Admin) -> None:
    hostport = admin.base.removeprefix("http://")
    code, out, err = await run_split(admin, "list", url=hostport)
    assert (code, out) == (2, "")
    assert err == f"--url must be http(s)://HOST:PORT (e.g. http://{hostport}), got {hostport!r}\n"
    for action, hold_id in (("list", None), ("show", "h_x")):
        code, out, err = await run_split(admin, action, hold_id, url=admin.base + "/metrics?x=")
        assert (code, out) == (1, "") and err.startswith("unexpected answer from"), err
