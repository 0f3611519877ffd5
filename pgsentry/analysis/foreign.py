"""Foreign-data options that make the server run a program or read a file.

Owns `server_access`. file_fdw runs `COPY FROM PROGRAM` (option `program`) or `COPY FROM
'file'` (option `filename`) inside the server each time its foreign table is read, so
those options are reported as the COPY they amount to: a fact of kind
`copy_from_program` / `copy_from_file`, origin `fdw_options`, with the foreign table as
relation, following the statement that sets them. Looked at: CREATE FOREIGN TABLE ...
OPTIONS, ALTER FOREIGN TABLE ... OPTIONS (ADD / SET; DROP removes the option), and the
same options on a server, user mapping or wrapper (file_fdw refuses them there, another
wrapper might not). The wrapper behind a server is not in the statement, so the option
name alone decides.

A server's `options` option (postgres_fdw passes it to the server it connects to, which
may be this one, as a connection's startup options: `-c session_replication_role=replica`)
that names a flagged setting, or client_encoding, is reported as the SET it amounts to: a
fact of kind `set`, origin `fdw_options`, calling `set_config`. Otherwise what servers and
user mappings for postgres_fdw or dblink run elsewhere is a statement pgsentry sees (DELETE
on the foreign table) or a flagged call (dblink_*). Must not cache or know who is asking.
"""

from __future__ import annotations

from typing import Any

from pgsentry.analysis import kinds as K
from pgsentry.analysis.facts import Relation, StatementFacts
from pgsentry.analysis.functions import DANGEROUS_SETTINGS, SET_CONFIG

Node = dict[str, Any]

_OPTION_KINDS = {"program": K.COPY_FROM_PROGRAM, "filename": K.COPY_FROM_FILE}
_OPTIONS_OF = {
    "CreateForeignServerStmt": "options",
    "AlterForeignServerStmt": "options",
    "CreateUserMappingStmt": "options",
    "AlterUserMappingStmt": "options",
    "CreateFdwStmt": "options",
    "AlterFdwStmt": "options",
}


def server_access(key: str, n: Node, text: str) -> list[StatementFacts]:
    """COPY-equivalent facts of the program / file options statement `n` sets."""
    if key == "CreateForeignTableStmt":
        rv = (n.get("base") or {}).get("relation")
        return _facts(n.get("options"), rv, text)
    if key == "AlterTableStmt":
        out: list[StatementFacts] = []
        for cmd in n.get("cmds") or []:
            at = cmd.get("AlterTableCmd", {})
            if at.get("subtype") == "AT_GenericOptions":
                options = (at.get("def") or {}).get("List", {}).get("items")
                out.extend(_facts(options, n.get("relation"), text))
        return out
    field = _OPTIONS_OF.get(key)
    return _facts(n.get(field), None, text) if field else []


def _facts(options: Any, rv: Node | None, text: str) -> list[StatementFacts]:
    relations = (Relation(rv.get("schemaname"), rv.get("relname", "")),) if rv else ()
    out: list[StatementFacts] = []
    for item in options or []:
        d = item.get("DefElem", {}) if isinstance(item, dict) else {}
        name = str(d.get("defname", "")).lower()
        if d.get("defaction") == "DEFELEM_DROP":
            continue
        if name == "options" and _sets_flagged(d.get("arg")):
            out.append(
                StatementFacts(kind=K.SET, origin="fdw_options", functions=(SET_CONFIG,), text=text)
            )
        kind = _OPTION_KINDS.get(name)
        if kind is not None:
            out.append(
                StatementFacts(kind=kind, origin="fdw_options", relations=relations, text=text)
            )
    return out


_FLAGGED_NAMES = (*DANGEROUS_SETTINGS, "client_encoding")


def _sets_flagged(arg: Any) -> bool:
    """Startup options that may name a flagged setting: `-c name=value` or `--name=value`,
    where PostgreSQL reads `-` in a name as `_`. Not a constant string: True."""
    value = arg.get("String", {}).get("sval") if isinstance(arg, dict) else None
    if not isinstance(value, str):
        return True
    spelled = value.lower().replace("-", "_")
    return any(name in spelled for name in _FLAGGED_NAMES)
