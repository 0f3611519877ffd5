"""`pgsentry holds list|show|approve|deny`: a terminal client of the admin holds API.

Owns the command logic (HTTP calls through aiohttp, output formatting, exit codes); the
lead's cli.py parses arguments and calls `holds_command`. Must not reach into the
registry directly: it talks to a running pgsentry only over HTTP, like any approver.

Exit codes: 0 success, 1 the server refused (the HTTP status and error are printed), 2
usage error, 3 could not reach the server.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, TextIO

import aiohttp

ACTIONS = ("list", "show", "approve", "deny")


def _one_line(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _print_hold(hold: dict[str, Any], out: TextIO) -> None:
    approvals = hold.get("approvals") or []
    lines = [
        f"hold        {hold['id']}",
        f"state       {hold['state']}",
        f"rule        {hold['rule']}",
        f"requester   {hold['user']}@{hold['database']}"
        f" app={hold.get('application_name') or '-'} from={hold.get('client_addr') or 'local'}",
        f"created     {hold['created_at']}",
        f"expires     {hold['expires_at']}",
        f"approvals   {len(approvals)}/{hold['approvals_required']}"
        + "".join(f"\n              {a['approver']}: {a['reason']}" for a in approvals),
    ]
    if hold.get("decided_by"):
        lines.append(f"decided by  {', '.join(hold['decided_by'])}: {hold.get('reason', '')}")
    if hold.get("message"):
        lines.append(f"message     {hold['message']}")
    lines.append(f"sha256      {hold['statement_sha256']}")
    lines.append("statement:")
    lines.extend("    " + line for line in str(hold["statement"]).splitlines() or [""])
    out.write("\n".join(lines) + "\n")


def _print_list(holds: list[dict[str, Any]], out: TextIO) -> None:
    if not holds:
        out.write("no holds waiting\n")
        return
    out.write(f"{'HOLD':<28} {'STATE':<9} {'RULE':<20} {'USER':<16} {'EXPIRES':<21} STATEMENT\n")
    for h in holds:
        user = f"{h['user']}@{h['database']}"
        out.write(
            f"{h['id']:<28} {h['state']:<9} {h['rule'][:20]:<20} {user[:16]:<16} "
            f"{h['expires_at']:<21} {_one_line(h['statement'])}\n"
        )


async def _run(
    action: str, hold_id: str | None, reason: str | None, url: str, token: str, out: TextIO
) -> int:
    base = url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        if action == "list":
            request = session.get(f"{base}/v1/holds")
        elif action == "show":
            request = session.get(f"{base}/v1/holds/{hold_id}")
        else:
            body = {"reason": reason or ""}
            request = session.post(f"{base}/v1/holds/{hold_id}/{action}", json=body)
        async with request as resp:
            text = await resp.text()
            try:
                data = json.loads(text)
            except ValueError:
                data = {"error": text.strip()}
            if resp.status != 200:
                out.write(f"error: HTTP {resp.status}: {data.get('error', text.strip())}\n")
                if isinstance(data.get("hold"), dict):
                    out.write(f"hold {data['hold']['id']} is {data['hold']['state']}\n")
                return 1
    if action == "list":
        _print_list(data["holds"], out)
    else:
        if action in ("approve", "deny"):
            out.write(f"{action} recorded; hold is now {data['state']}\n")
        _print_hold(data, out)
    return 0


def holds_command(
    action: str,
    hold_id: str | None,
    reason: str | None,
    *,
    url: str,
    token: str,
    out: TextIO,
) -> int:
    """Run one holds subcommand against the admin API at `url` (e.g. http://127.0.0.1:9187)."""
    if action not in ACTIONS:
        out.write(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}\n")
        return 2
    if action != "list" and not hold_id:
        out.write(f"'holds {action}' needs a hold id\n")
        return 2
    if not token:
        out.write("an approver token is needed (--token or PGSENTRY_TOKEN)\n")
        return 2
    try:
        return asyncio.run(_run(action, hold_id, reason, url, token, out))
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        out.write(f"cannot reach pgsentry admin API at {url}: {exc}\n")
        return 3
