"""`pgsentry holds list|show|approve|deny`: a terminal client of the admin holds API.

Owns the command logic (HTTP calls through aiohttp, output formatting, exit codes); the
lead's cli.py parses arguments and calls `holds_command`. Must not reach into the
registry directly: it talks to a running pgsentry only over HTTP, like any approver.

Exit codes: 0 success, 1 the server refused or answered something that is not the holds
API (the HTTP status and error are printed), 2 usage error (a hold id that cannot be one,
a --url without http(s)://), 3 could not reach the server. Errors go to stderr; hold ids
are URL-encoded, so an id can never reach another admin path.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from typing import Any, TextIO
from urllib.parse import quote, urlsplit

import aiohttp

ACTIONS = ("list", "show", "approve", "deny")
_HOLD_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")  # what HoldRegistry makes: h_ + token_urlsafe


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


class UnexpectedAnswer(Exception):
    """The server's answer is not what the holds API sends (wrong --url, another service)."""


def _error_of(data: object, text: str) -> str:
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])
    return _one_line(text, 200) or "(empty answer)"


async def _run(
    action: str,
    hold_id: str | None,
    reason: str | None,
    url: str,
    token: str,
    out: TextIO,
    err: TextIO,
) -> int:
    base = url.rstrip("/")
    path = f"{base}/v1/holds"
    if hold_id is not None:
        path += "/" + quote(hold_id, safe="")  # never a path of its own (../../metrics)
    headers = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        if action in ("list", "show"):
            request = session.get(path)
        else:
            request = session.post(f"{path}/{action}", json={"reason": reason or ""})
        async with request as resp:
            text = await resp.text()
            try:
                data = json.loads(text)
            except ValueError:
                data = None
            if resp.status != 200:
                err.write(f"error: HTTP {resp.status}: {_error_of(data, text)}\n")
                hold = data.get("hold") if isinstance(data, dict) else None
                if isinstance(hold, dict) and {"id", "state"} <= hold.keys():
                    err.write(f"hold {hold['id']} is {hold['state']}\n")
                return 1
    try:
        if action == "list":
            _print_list(data["holds"], out)
        else:
            if action in ("approve", "deny"):
                out.write(f"{action} recorded; hold is now {data['state']}\n")
            _print_hold(data, out)
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise UnexpectedAnswer(_one_line(text, 80)) from exc
    return 0


def holds_command(
    action: str,
    hold_id: str | None,
    reason: str | None,
    *,
    url: str,
    token: str,
    out: TextIO,
    err: TextIO | None = None,
) -> int:
    """Run one holds subcommand against the admin API at `url` (e.g. http://127.0.0.1:9187).
    Results go to `out`, errors to `err` (default stderr)."""
    err = err if err is not None else sys.stderr
    if action not in ACTIONS:
        err.write(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}\n")
        return 2
    if action != "list" and not hold_id:
        err.write(f"'holds {action}' needs a hold id\n")
        return 2
    if action == "list":
        hold_id = None
    elif hold_id is not None and not _HOLD_ID.fullmatch(hold_id):
        err.write(f"not a hold id: {hold_id!r} (hold ids look like h_Jx3...)\n")
        return 2
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        err.write(f"--url must be http(s)://HOST:PORT (e.g. http://{url}), got {url!r}\n")
        return 2
    if not token:
        err.write("an approver token is needed (--token or PGSENTRY_TOKEN)\n")
        return 2
    try:
        return asyncio.run(_run(action, hold_id, reason, url, token, out, err))
    except UnexpectedAnswer as exc:
        err.write(f"unexpected answer from {url} (is it pgsentry's admin listener?): {exc}\n")
        return 1
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        err.write(f"cannot reach pgsentry admin API at {url}: {exc}\n")
        return 3
