"""The statement-kind vocabulary: every `StatementFacts.kind` is one of these words.

Owns the kind constants, their one-line descriptions (`KINDS`) and the origin words
(`ORIGINS`). A kind is enough to judge a statement dangerous on its own (e.g. `drop_table`).
The vocabulary is stable: words are added, never renamed or removed. Pure data, no logic.
"""

from __future__ import annotations

# --- reading and writing rows -------------------------------------------------------------
SELECT = "select"
INSERT = "insert"
UPDATE = "update"
DELETE = "delete"
MERGE = "merge"
TRUNCATE = "truncate"
COPY_FROM = "copy_from"
COPY_TO = "copy_to"
COPY_FROM_FILE = "copy_from_file"
COPY_TO_FILE = "copy_to_file"
COPY_FROM_PROGRAM = "copy_from_program"
COPY_TO_PROGRAM = "copy_to_program"
CREATE_TABLE_AS = "create_table_as"
DECLARE_CURSOR = "declare_cursor"
FETCH = "fetch"
CLOSE_CURSOR = "close_cursor"
CALL = "call"
DO_BLOCK = "do_block"
EXPLAIN = "explain"

# --- dropping things ------------------------------------------------------------------------
DROP_TABLE = "drop_table"
DROP_SCHEMA = "drop_schema"
DROP_DATABASE = "drop_database"
DROP_INDEX = "drop_index"
DROP_VIEW = "drop_view"
DROP_MATERIALIZED_VIEW = "drop_materialized_view"
DROP_SEQUENCE = "drop_sequence"
DROP_FUNCTION = "drop_function"
DROP_PROCEDURE = "drop_procedure"
DROP_TRIGGER = "drop_trigger"
DROP_POLICY = "drop_policy"
DROP_ROLE = "drop_role"
DROP_OWNED = "drop_owned"
DROP_EXTENSION = "drop_extension"
DROP_TYPE = "drop_type"
DROP_RULE = "drop_rule"
DROP_OTHER = "drop_other"

# --- changing definitions -------------------------------------------------------------------
ALTER_TABLE = "alter_table"
ALTER_TABLE_DROP_COLUMN = "alter_table_drop_column"
ALTER_TABLE_DISABLE_TRIGGER = "alter_table_disable_trigger"
ALTER_TABLE_DISABLE_RLS = "alter_table_disable_rls"
ALTER_TABLE_DROP_CONSTRAINT = "alter_table_drop_constraint"
ALTER_TABLE_DROP_DEFAULT = "alter_table_drop_default"
ALTER_TABLE_ALTER_COLUMN_TYPE = "alter_table_alter_column_type"
ALTER_TABLE_DISABLE_RULE = "alter_table_disable_rule"
ALTER_TABLE_SET_UNLOGGED = "alter_table_set_unlogged"
ALTER_DOMAIN_DROP_CONSTRAINT = "alter_domain_drop_constraint"
ALTER_DOMAIN_DROP_DEFAULT = "alter_domain_drop_default"
DISABLE_EVENT_TRIGGER = "disable_event_trigger"
ROLE_BYPASS_RLS = "role_bypass_rls"
WEAKEN_POLICY = "weaken_policy"
RENAME = "rename"
ALTER_ROLE = "alter_role"
ALTER_SYSTEM = "alter_system"
ALTER_OTHER = "alter_other"
REASSIGN_OWNED = "reassign_owned"

# --- creating things ------------------------------------------------------------------------
CREATE_TABLE = "create_table"
CREATE_INDEX = "create_index"
CREATE_VIEW = "create_view"
CREATE_FUNCTION = "create_function"
CREATE_OR_REPLACE_FUNCTION = "create_or_replace_function"
CREATE_TRIGGER = "create_trigger"
CREATE_RULE = "create_rule"
CREATE_EXTENSION = "create_extension"
CREATE_ROLE = "create_role"
CREATE_OTHER = "create_other"

# --- privileges and identity ----------------------------------------------------------------
GRANT = "grant"
REVOKE = "revoke"
SET_ROLE = "set_role"

# --- session settings and prepared statements ---------------------------------------------
SET = "set"
RESET = "reset"
SHOW = "show"
PREPARE = "prepare"
EXECUTE = "execute"
DEALLOCATE = "deallocate"
DISCARD = "discard"
LISTEN = "listen"
UNLISTEN = "unlisten"
NOTIFY = "notify"
LOAD = "load"

# --- transactions ---------------------------------------------------------------------------
BEGIN = "begin"
COMMIT = "commit"
ROLLBACK = "rollback"
SAVEPOINT = "savepoint"
RELEASE_SAVEPOINT = "release_savepoint"
ROLLBACK_TO_SAVEPOINT = "rollback_to_savepoint"
PREPARE_TRANSACTION = "prepare_transaction"
COMMIT_PREPARED = "commit_prepared"
ROLLBACK_PREPARED = "rollback_prepared"

# --- maintenance ----------------------------------------------------------------------------
VACUUM = "vacuum"
ANALYZE = "analyze"
REINDEX = "reindex"
CLUSTER = "cluster"
REFRESH_MATERIALIZED_VIEW = "refresh_materialized_view"
CHECKPOINT = "checkpoint"
LOCK = "lock"
COMMENT = "comment"

# --- system catalogs --------------------------------------------------------------------
WRITE_CATALOG = "write_catalog"

OTHER = "other"

KINDS: dict[str, str] = {
    SELECT: "SELECT / VALUES / TABLE (also WITH ... SELECT); reads rows",
    INSERT: "INSERT; ON CONFLICT DO UPDATE adds an `update` fact (origin on_conflict)",
    UPDATE: "UPDATE; `where` says whether it is restricted",
    DELETE: "DELETE; `where` says whether it is restricted",
    MERGE: "MERGE; `where` judges its ON condition",
    TRUNCATE: "TRUNCATE: empties whole tables (`cascade` for CASCADE)",
    COPY_FROM: "COPY ... FROM STDIN (client sends rows)",
    COPY_TO: "COPY ... TO STDOUT (client receives rows)",
    COPY_FROM_FILE: "COPY ... FROM 'server file': reads a file on the database server",
    COPY_TO_FILE: "COPY ... TO 'server file': writes a file on the database server",
    COPY_FROM_PROGRAM: "COPY ... FROM PROGRAM: runs a shell command on the database server",
    COPY_TO_PROGRAM: "COPY ... TO PROGRAM: runs a shell command on the database server",
    CREATE_TABLE_AS: "CREATE TABLE AS, SELECT INTO, CREATE MATERIALIZED VIEW",
    DECLARE_CURSOR: "DECLARE cursor FOR query",
    FETCH: "FETCH / MOVE on a cursor",
    CLOSE_CURSOR: "CLOSE cursor",
    CALL: "CALL procedure(...)",
    DO_BLOCK: "DO block: anonymous code; its static statements follow as nested facts",
    EXPLAIN: "EXPLAIN; with ANALYZE the statement runs and follows as a nested fact",
    DROP_TABLE: "DROP TABLE (also DROP FOREIGN TABLE)",
    DROP_SCHEMA: "DROP SCHEMA (with CASCADE: everything in it)",
    DROP_DATABASE: "DROP DATABASE",
    DROP_INDEX: "DROP INDEX",
    DROP_VIEW: "DROP VIEW",
    DROP_MATERIALIZED_VIEW: "DROP MATERIALIZED VIEW",
    DROP_SEQUENCE: "DROP SEQUENCE",
    DROP_FUNCTION: "DROP FUNCTION / DROP ROUTINE / DROP AGGREGATE",
    DROP_PROCEDURE: "DROP PROCEDURE",
    DROP_TRIGGER: "DROP TRIGGER (and DROP EVENT TRIGGER)",
    DROP_POLICY: "DROP POLICY: removes a row-level-security policy",
    DROP_ROLE: "DROP ROLE / DROP USER / DROP GROUP",
    DROP_OWNED: "DROP OWNED BY: drops every object a role owns",
    DROP_EXTENSION: "DROP EXTENSION",
    DROP_TYPE: "DROP TYPE / DROP DOMAIN",
    DROP_RULE: "DROP RULE: removes a rule (the refused DISABLE RULE, for good)",
    DROP_OTHER: "any other DROP (tablespace, server, collation, ...)",
    ALTER_TABLE: "ALTER TABLE without a more specific alter_table_* kind",
    ALTER_TABLE_DROP_COLUMN: "ALTER TABLE ... DROP COLUMN",
    ALTER_TABLE_DISABLE_TRIGGER: (
        "ALTER TABLE ... DISABLE TRIGGER (name / ALL / USER), ENABLE REPLICA TRIGGER"
    ),
    ALTER_TABLE_DISABLE_RLS: "ALTER TABLE ... DISABLE / NO FORCE ROW LEVEL SECURITY",
    ALTER_TABLE_DROP_CONSTRAINT: (
        "ALTER TABLE ... DROP CONSTRAINT (primary / foreign keys, checks), ... DROP NOT NULL"
    ),
    ALTER_TABLE_DROP_DEFAULT: "ALTER TABLE ... ALTER COLUMN ... DROP DEFAULT / DROP IDENTITY",
    ALTER_TABLE_ALTER_COLUMN_TYPE: (
        "ALTER TABLE ... ALTER COLUMN ... TYPE: rewrites every value (USING, or a lossy cast)"
    ),
    ALTER_TABLE_DISABLE_RULE: "ALTER TABLE ... DISABLE RULE / ENABLE REPLICA RULE",
    ALTER_TABLE_SET_UNLOGGED: "ALTER TABLE ... SET UNLOGGED: a crash empties the table",
    ALTER_DOMAIN_DROP_CONSTRAINT: (
        "ALTER DOMAIN ... DROP CONSTRAINT / DROP NOT NULL: every column of the domain loses"
        " the check"
    ),
    ALTER_DOMAIN_DROP_DEFAULT: "ALTER DOMAIN ... DROP DEFAULT",
    DISABLE_EVENT_TRIGGER: (
        "ALTER EVENT TRIGGER ... DISABLE / ENABLE REPLICA: the event trigger stops firing"
        " in ordinary sessions"
    ),
    ROLE_BYPASS_RLS: (
        "CREATE / ALTER ROLE ... BYPASSRLS (follows the role statement, origin subcommand):"
        " the role ignores row-level security"
    ),
    WEAKEN_POLICY: (
        "CREATE POLICY (permissive) / ALTER POLICY with an always-true USING or WITH CHECK,"
        " or ALTER POLICY ... TO: opens rows row-level security hid"
    ),
    RENAME: "ALTER ... RENAME (table, column, schema, ...)",
    ALTER_ROLE: "ALTER ROLE / ALTER USER (incl. ... SET parameter)",
    ALTER_SYSTEM: "ALTER SYSTEM: changes postgresql.auto.conf",
    ALTER_OTHER: "any other ALTER (index, view, sequence, schema, database, owner, ...)",
    REASSIGN_OWNED: "REASSIGN OWNED BY",
    CREATE_TABLE: "CREATE TABLE",
    CREATE_INDEX: "CREATE INDEX",
    CREATE_VIEW: "CREATE [OR REPLACE] VIEW",
    CREATE_FUNCTION: "CREATE FUNCTION / PROCEDURE; body statements follow as nested facts",
    CREATE_OR_REPLACE_FUNCTION: "CREATE OR REPLACE FUNCTION / PROCEDURE: may replace code",
    CREATE_TRIGGER: "CREATE TRIGGER / CREATE EVENT TRIGGER",
    CREATE_RULE: "CREATE RULE: rule actions follow as nested facts",
    CREATE_EXTENSION: "CREATE EXTENSION",
    CREATE_ROLE: "CREATE ROLE / USER / GROUP",
    CREATE_OTHER: "any other CREATE (schema, sequence, type, database, ...)",
    GRANT: "GRANT privileges or role membership",
    REVOKE: "REVOKE privileges or role membership",
    SET_ROLE: "SET ROLE / SET SESSION AUTHORIZATION",
    SET: "SET parameter (incl. SET LOCAL, SET TRANSACTION)",
    RESET: "RESET parameter / RESET ALL",
    SHOW: "SHOW parameter",
    PREPARE: "PREPARE name AS statement: the statement follows as a nested fact",
    EXECUTE: "EXECUTE name: runs a prepared statement (judged when it was prepared)",
    DEALLOCATE: "DEALLOCATE name / ALL",
    DISCARD: "DISCARD ALL / PLANS / SEQUENCES / TEMP",
    LISTEN: "LISTEN channel",
    UNLISTEN: "UNLISTEN channel",
    NOTIFY: "NOTIFY channel",
    LOAD: "LOAD 'library': loads a shared library into the server process",
    BEGIN: "BEGIN / START TRANSACTION",
    COMMIT: "COMMIT / END",
    ROLLBACK: "ROLLBACK / ABORT",
    SAVEPOINT: "SAVEPOINT name",
    RELEASE_SAVEPOINT: "RELEASE SAVEPOINT name",
    ROLLBACK_TO_SAVEPOINT: "ROLLBACK TO SAVEPOINT name",
    PREPARE_TRANSACTION: "PREPARE TRANSACTION (two-phase commit)",
    COMMIT_PREPARED: "COMMIT PREPARED",
    ROLLBACK_PREPARED: "ROLLBACK PREPARED",
    VACUUM: "VACUUM",
    ANALYZE: "ANALYZE (statistics)",
    REINDEX: "REINDEX",
    CLUSTER: "CLUSTER",
    REFRESH_MATERIALIZED_VIEW: "REFRESH MATERIALIZED VIEW",
    CHECKPOINT: "CHECKPOINT",
    LOCK: "LOCK TABLE",
    COMMENT: "COMMENT ON / SECURITY LABEL",
    WRITE_CATALOG: (
        "INSERT / UPDATE / DELETE / MERGE / TRUNCATE / COPY FROM whose target is a system"
        " catalog (pg_catalog, pg_toast, an unqualified pg_* name), or a view PostgreSQL"
        " could write such a catalog through; follows the statement, with its origin"
    ),
    OTHER: "anything not listed above",
}

ORIGINS: dict[str, str] = {
    "top": "a statement of the SQL text itself",
    "cte": "a data-modifying statement inside WITH (... AS (DELETE ...))",
    "do_block": "a static statement inside a DO block",
    "function_body": "a statement inside a CREATE FUNCTION / PROCEDURE body",
    "rule_action": "an action of CREATE RULE (runs whenever the rule fires)",
    "prepare": "the statement of SQL-level PREPARE name AS ...",
    "explain": "the statement under EXPLAIN ANALYZE (it really runs)",
    "copy": "a data-modifying statement inside COPY (...) TO",
    "subcommand": (
        "a further dangerous action of the same ALTER TABLE statement (or the BYPASSRLS of"
        " a CREATE / ALTER ROLE)"
    ),
    "on_conflict": "the DO UPDATE of INSERT ... ON CONFLICT: an UPDATE of the colliding rows",
    "fdw_options": (
        "what a foreign table's OPTIONS make the server do each time it is read"
        " (file_fdw `program`: copy_from_program, `filename`: copy_from_file)"
    ),
}
