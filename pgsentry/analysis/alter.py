"""ALTER statements and role options: which ones destroy data or weaken a protection.

Owns `SUBCOMMANDS` (every `AlterTableType` of libpg_query, each classified as harmless,
destroying data or weakening a protection, with the kind of the dangerous ones), the root
handler of ALTER TABLE / INDEX / VIEW / FOREIGN TABLE / TYPE (`alter_table`), the
judgement of CREATE POLICY / ALTER POLICY (`create_policy`, `alter_policy`), of ALTER
DOMAIN (`alter_domain`: DROP CONSTRAINT / NOT NULL / DEFAULT, as for a table's column) and
ALTER EVENT TRIGGER (`alter_event_trigger`: DISABLE / ENABLE REPLICA, as for a table's
trigger), and the BYPASSRLS option of CREATE / ALTER ROLE (`bypass_rls`). A dangerous
subcommand gets the kind of the statement it is equivalent to (ENABLE REPLICA TRIGGER
stops the trigger firing in ordinary sessions: `alter_table_disable_trigger`). Must not
cache or know who is asking.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pgsentry.analysis import kinds as K
from pgsentry.analysis.facts import StatementFacts, WhereClause
from pgsentry.analysis.where import classify_where

if TYPE_CHECKING:
    from pgsentry.analysis.collector import Collector

Node = dict[str, Any]

HARMLESS = "harmless"  # adds or tunes things; no row, value or protection is lost
DESTROYS = "destroys data"
WEAKENS = "weakens a protection"
INTERNAL = "internal"  # built by PostgreSQL itself while executing; the grammar never makes it

# Every AlterTableType: (effect, kind). The kind is None for harmless subcommands (the
# statement stays alter_table / alter_other) and for those judged elsewhere (noted).
SUBCOMMANDS: dict[str, tuple[str, str | None]] = {
    "AT_AddColumn": (HARMLESS, None),
    "AT_AddColumnToView": (INTERNAL, None),
    "AT_ColumnDefault": (HARMLESS, None),  # SET DEFAULT; DROP DEFAULT: see _kind_of
    "AT_CookedColumnDefault": (INTERNAL, None),
    # A column that may now hold NULLs: the same as dropping CHECK (c IS NOT NULL).
    "AT_DropNotNull": (WEAKENS, K.ALTER_TABLE_DROP_CONSTRAINT),
    "AT_SetNotNull": (HARMLESS, None),
    # Recomputes a STORED generated column from the row's other columns: nothing original
    # is lost (its expression's function calls are flagged as calls).
    "AT_SetExpression": (HARMLESS, None),
    "AT_DropExpression": (HARMLESS, None),  # keeps the values, as an ordinary column
    "AT_SetStatistics": (HARMLESS, None),
    "AT_SetOptions": (HARMLESS, None),
    "AT_ResetOptions": (HARMLESS, None),
    "AT_SetStorage": (HARMLESS, None),
    "AT_SetCompression": (HARMLESS, None),
    "AT_DropColumn": (DESTROYS, K.ALTER_TABLE_DROP_COLUMN),
    "AT_AddIndex": (HARMLESS, None),
    "AT_ReAddIndex": (INTERNAL, None),
    "AT_AddConstraint": (HARMLESS, None),
    "AT_ReAddConstraint": (INTERNAL, None),
    "AT_ReAddDomainConstraint": (INTERNAL, None),
    "AT_AlterConstraint": (HARMLESS, None),  # [NOT] DEFERRABLE: still checked at commit
    "AT_ValidateConstraint": (HARMLESS, None),
    "AT_AddIndexConstraint": (HARMLESS, None),
    "AT_DropConstraint": (WEAKENS, K.ALTER_TABLE_DROP_CONSTRAINT),
    "AT_ReAddComment": (INTERNAL, None),
    # Rewrites every value of the column (on a table; see _kind_of): USING NULL empties it
    # like an UPDATE without WHERE, and without USING the assignment cast can silently
    # round or truncate (numeric(10,2) -> numeric(10,0), float8 -> int, timestamptz -> date).
    # The column's current type is not in the statement, so every type change counts.
    "AT_AlterColumnType": (DESTROYS, K.ALTER_TABLE_ALTER_COLUMN_TYPE),
    "AT_AlterColumnGenericOptions": (HARMLESS, None),  # foreign column options
    "AT_ChangeOwner": (HARMLESS, None),  # a privilege change, like GRANT
    "AT_ClusterOn": (HARMLESS, None),
    "AT_DropCluster": (HARMLESS, None),
    "AT_SetLogged": (HARMLESS, None),
    # An unlogged table is emptied after a crash and is not on physical standbys.
    "AT_SetUnLogged": (WEAKENS, K.ALTER_TABLE_SET_UNLOGGED),
    "AT_DropOids": (HARMLESS, None),  # a no-op since PostgreSQL 12
    "AT_SetAccessMethod": (HARMLESS, None),
    "AT_SetTableSpace": (HARMLESS, None),
    "AT_SetRelOptions": (HARMLESS, None),
    "AT_ResetRelOptions": (HARMLESS, None),
    "AT_ReplaceRelOptions": (INTERNAL, None),
    "AT_EnableTrig": (HARMLESS, None),
    "AT_EnableAlwaysTrig": (HARMLESS, None),  # fires in more sessions, not fewer
    # REPLICA: fires only when session_replication_role = replica, i.e. never in an
    # ordinary session: the same as DISABLE TRIGGER.
    "AT_EnableReplicaTrig": (WEAKENS, K.ALTER_TABLE_DISABLE_TRIGGER),
    "AT_DisableTrig": (WEAKENS, K.ALTER_TABLE_DISABLE_TRIGGER),
    "AT_EnableTrigAll": (HARMLESS, None),
    "AT_DisableTrigAll": (WEAKENS, K.ALTER_TABLE_DISABLE_TRIGGER),
    "AT_EnableTrigUser": (HARMLESS, None),
    "AT_DisableTrigUser": (WEAKENS, K.ALTER_TABLE_DISABLE_TRIGGER),
    "AT_EnableRule": (HARMLESS, None),
    "AT_EnableAlwaysRule": (HARMLESS, None),  # fires in more sessions, not fewer
    "AT_EnableReplicaRule": (WEAKENS, K.ALTER_TABLE_DISABLE_RULE),
    "AT_DisableRule": (WEAKENS, K.ALTER_TABLE_DISABLE_RULE),
    # Inheritance and partitions move rows in or out of a parent's view; every row stays
    # in its own table.
    "AT_AddInherit": (HARMLESS, None),
    "AT_DropInherit": (HARMLESS, None),
    "AT_AddOf": (HARMLESS, None),
    "AT_DropOf": (HARMLESS, None),
    "AT_ReplicaIdentity": (HARMLESS, None),  # NOTHING makes published UPDATEs fail, loudly
    "AT_EnableRowSecurity": (HARMLESS, None),
    "AT_DisableRowSecurity": (WEAKENS, K.ALTER_TABLE_DISABLE_RLS),
    "AT_ForceRowSecurity": (HARMLESS, None),
    "AT_NoForceRowSecurity": (WEAKENS, K.ALTER_TABLE_DISABLE_RLS),
    # Foreign table OPTIONS: `program` / `filename` are reported by analysis/foreign.py.
    "AT_GenericOptions": (HARMLESS, None),
    "AT_AttachPartition": (HARMLESS, None),
    "AT_DetachPartition": (HARMLESS, None),
    "AT_DetachPartitionFinalize": (HARMLESS, None),
    "AT_AddIdentity": (HARMLESS, None),
    "AT_SetIdentity": (HARMLESS, None),
    # The column loses its generated values and its identity sequence is dropped.
    "AT_DropIdentity": (DESTROYS, K.ALTER_TABLE_DROP_DEFAULT),
    "AT_ReAddStatistics": (INTERNAL, None),
}

# The statement's own kind is the first of these it has; the others follow as facts of
# origin "subcommand".
PRIORITY = (
    K.ALTER_TABLE_DISABLE_TRIGGER,
    K.ALTER_TABLE_DROP_COLUMN,
    K.ALTER_TABLE_ALTER_COLUMN_TYPE,
    K.ALTER_TABLE_DISABLE_RLS,
    K.ALTER_TABLE_DISABLE_RULE,
    K.ALTER_TABLE_DROP_CONSTRAINT,
    K.ALTER_TABLE_DROP_DEFAULT,
    K.ALTER_TABLE_SET_UNLOGGED,
)


def _kind_of(at: Node, objtype: str) -> str | None:
    subtype = str(at.get("subtype", ""))
    if subtype == "AT_ColumnDefault" and at.get("def") is None:
        return K.ALTER_TABLE_DROP_DEFAULT
    if subtype == "AT_AlterColumnType" and objtype != "OBJECT_TABLE":
        return None  # a foreign table's or composite type's column: no stored value changes
    return SUBCOMMANDS.get(subtype, (HARMLESS, None))[1]


def alter_table(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
    """ALTER TABLE (and INDEX / VIEW / SEQUENCE / FOREIGN TABLE / TYPE ... ALTER ATTRIBUTE)."""
    c.walk(n, c.scope)
    objtype = str(n.get("objtype", ""))
    found: set[str] = set()
    cascade = False
    for cmd in n.get("cmds", []):
        at = cmd.get("AlterTableCmd", {})
        sub = _kind_of(at, objtype)
        if sub:
            found.add(sub)
        cascade = cascade or at.get("behavior") == "DROP_CASCADE"
    ordered = [k for k in PRIORITY if k in found]
    is_table = objtype in ("OBJECT_TABLE", "OBJECT_FOREIGN_TABLE")
    kind = ordered[0] if ordered else (K.ALTER_TABLE if is_table else K.ALTER_OTHER)
    mine = c.facts(kind, origin, text, cascade=cascade)
    for extra in ordered[1:]:
        c.extra.append(
            StatementFacts(
                kind=extra,
                origin="subcommand",
                relations=mine.relations,
                cascade=cascade,
                text=text,
            )
        )
    return mine


# --- row-level-security policies ------------------------------------------------------------
#
# Permissive policies are OR-ed: one whose USING (rows it lets a role see, update, delete)
# or WITH CHECK (rows it lets a role write) is always true opens every row to its roles,
# whatever the other policies say: the same as disabling row-level security for them.
# Restrictive policies are AND-ed: creating one never opens anything, but altering one to
# an always-true expression removes its restriction. "Always true" is judged like a WHERE
# clause (where.py: no column reference and not provably false, `x = x`, `... OR true`).
# ALTER POLICY ... TO roles changes whom a policy covers, which can open rows in either
# direction (a permissive one given to PUBLIC, a restrictive one taken from a role); it
# cannot be judged without the catalog, so it counts as weakening.


def _always_true(c: Collector, n: Node) -> bool:
    for field in ("qual", "with_check"):
        expr = n.get(field)
        if expr is not None:
            judged = classify_where(expr, n.get("table"), c.run.sens)
            if judged == WhereClause.TAUTOLOGICAL:
                return True
    return False


def create_policy(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
    c.objects[str(n.get("policy_name", ""))] = None
    c.walk(n, c.scope)
    weakens = bool(n.get("permissive")) and _always_true(c, n)
    return c.facts(K.WEAKEN_POLICY if weakens else K.CREATE_OTHER, origin, text)


def alter_policy(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
    c.objects[str(n.get("policy_name", ""))] = None
    c.walk(n, c.scope)
    weakens = bool(n.get("roles")) or _always_true(c, n)
    return c.facts(K.WEAKEN_POLICY if weakens else K.ALTER_OTHER, origin, text)


# --- domains, event triggers, roles ---------------------------------------------------------

# AlterDomainStmt.subtype: X drop constraint, N drop not null, T set / drop default (no
# `def`: drop). Every column of the domain loses the check or the default at once.
_DOMAIN_DROPS = {"X": K.ALTER_DOMAIN_DROP_CONSTRAINT, "N": K.ALTER_DOMAIN_DROP_CONSTRAINT}


def alter_domain(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
    names = [str(x.get("String", {}).get("sval", "")) for x in n.get("typeName") or []]
    c.objects[".".join(names)] = None
    c.walk(n, c.scope)
    subtype = str(n.get("subtype", ""))
    kind = _DOMAIN_DROPS.get(subtype, K.ALTER_OTHER)
    if subtype == "T" and n.get("def") is None:
        kind = K.ALTER_DOMAIN_DROP_DEFAULT
    return c.facts(kind, origin, text, cascade=n.get("behavior") == "DROP_CASCADE")


# tgenabled: O enable, A enable always (fires in more sessions, not fewer), D disable,
# R enable replica (fires only with session_replication_role = replica: never in an
# ordinary session, the same as disabling it).
_EVENT_TRIGGER_OFF = frozenset({"D", "R"})


def alter_event_trigger(
    c: Collector, n: Node, origin: str, text: str, depth: int
) -> StatementFacts:
    c.objects[str(n.get("trigname", ""))] = None
    off = str(n.get("tgenabled", "")) in _EVENT_TRIGGER_OFF
    return c.facts(K.DISABLE_EVENT_TRIGGER if off else K.ALTER_OTHER, origin, text)


def bypass_rls(n: Node, role: StatementFacts) -> list[StatementFacts]:
    """CREATE / ALTER ROLE ... BYPASSRLS: a `role_bypass_rls` fact (origin subcommand)
    following the role statement `role`. A value that is not clearly false counts."""
    for item in n.get("options") or []:
        d = item.get("DefElem", {}) if isinstance(item, dict) else {}
        if d.get("defname") != "bypassrls":
            continue
        arg = d.get("arg") or {}
        if "Boolean" in arg and not arg["Boolean"].get("boolval", False):
            continue  # NOBYPASSRLS
        return [
            StatementFacts(
                kind=K.ROLE_BYPASS_RLS, origin="subcommand", objects=role.objects, text=role.text
            )
        ]
    return []
