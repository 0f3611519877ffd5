"""The documented list of functions that destroy data or bypass safety.

Owns `DANGEROUS_FUNCTIONS` (name -> why), `DYNAMIC_SQL_FUNCTIONS` (functions that run SQL
text pgsentry cannot see) and `DANGEROUS_SETTINGS` (parameters whose change bypasses
safety). A call of any listed function anywhere in a statement (target list, WHERE,
subquery, FROM, DEFAULT, index expression, ALTER ... USING, CALL argument ...) puts its
lower-case name in `StatementFacts.functions`; so does DDL that binds it by name to run
later (CREATE OPERATOR ... FUNCTION =, CREATE AGGREGATE, CREATE CAST ...: see
bindings.py). Pure data, no logic.
"""

from __future__ import annotations

# Marker used for every way of changing a DANGEROUS_SETTINGS parameter:
# set_config('session_replication_role', ...), SET [LOCAL] session_replication_role,
# ALTER ROLE / DATABASE / FUNCTION ... SET session_replication_role, and set_config whose
# first argument is not a constant.
SET_CONFIG = "set_config"

DANGEROUS_SETTINGS: dict[str, str] = {
    "session_replication_role": "'replica' disables ordinary triggers and foreign-key checks",
    "role": "same as SET ROLE (only through set_config; SET ROLE is kind set_role)",
    "session_authorization": "same as SET SESSION AUTHORIZATION (through set_config)",
}

DANGEROUS_FUNCTIONS: dict[str, str] = {
    # other sessions and the server
    "pg_terminate_backend": "kills another session",
    "pg_cancel_backend": "cancels another session's query",
    "pg_reload_conf": "reloads the server configuration",
    "pg_rotate_logfile": "rotates the server log",
    "pg_promote": "promotes a standby to primary",
    "pg_switch_wal": "forces a WAL switch",
    "pg_wal_replay_pause": "pauses recovery on a standby",
    "pg_wal_replay_resume": "resumes recovery on a standby",
    # replication
    "pg_drop_replication_slot": "drops a replication slot (replicas / CDC lose data)",
    "pg_replication_origin_drop": "drops a replication origin",
    "pg_replication_slot_advance": "skips changes a replication slot has not consumed",
    "pg_logical_slot_get_changes": "consumes a logical slot's changes",
    "pg_logical_slot_get_binary_changes": "consumes a logical slot's changes",
    # server files
    "pg_read_file": "reads a file on the database server",
    "pg_read_binary_file": "reads a file on the database server",
    "pg_ls_dir": "lists a directory on the database server",
    "pg_stat_file": "inspects a file on the database server",
    "pg_file_write": "adminpack: writes a file on the database server",
    "pg_file_rename": "adminpack: renames a file on the database server",
    "pg_file_unlink": "adminpack: deletes a file on the database server",
    "pg_file_sync": "adminpack: syncs a file on the database server",
    "pg_logdir_ls": "adminpack: lists the server log directory",
    # large objects
    "lo_unlink": "deletes a large object",
    "lo_truncate": "truncates a large object",
    "lo_truncate64": "truncates a large object",
    "lo_import": "reads a server file into a large object",
    "lo_export": "writes a large object to a server file",
    "lo_put": "overwrites bytes of a large object",
    "lowrite": "overwrites bytes of a large object",
    # data surgery
    "heap_force_kill": "pg_surgery: destroys tuples",
    "heap_force_freeze": "pg_surgery: forces tuples frozen",
    "pg_truncate_visibility_map": "pg_visibility: truncates the visibility map",
    # SQL that pgsentry cannot see (also in DYNAMIC_SQL_FUNCTIONS)
    "dblink": "runs SQL text on a (possibly the same) database",
    "dblink_exec": "runs SQL text on a (possibly the same) database",
    "dblink_send_query": "runs SQL text on a (possibly the same) database",
    "dblink_open": "opens a cursor for SQL text on another connection",
    "dblink_connect": "opens a connection from the server",
    "dblink_connect_u": "opens a connection from the server, without password checks",
    "query_to_xml": "runs SQL text given as a string",
    "query_to_xmlschema": "runs SQL text given as a string",
    "query_to_xml_and_xmlschema": "runs SQL text given as a string",
    "ts_stat": "runs SQL text given as a string",
    "ts_rewrite": "with two arguments: runs SQL text given as a string",
    "xpath_table": "xml2: runs SQL text built from its arguments (writes, several statements)",
    "crosstab": "tablefunc: runs SQL text given as a string",
    "crosstab2": "tablefunc: runs SQL text given as a string",
    "crosstab3": "tablefunc: runs SQL text given as a string",
    "crosstab4": "tablefunc: runs SQL text given as a string",
    "connectby": "tablefunc: runs SQL text built from its arguments",
    "check_foreign_key": "refint: a trigger that runs SQL text built from its arguments",
    "check_primary_key": "refint: a trigger that runs SQL text built from its arguments",
    # settings (see DANGEROUS_SETTINGS)
    SET_CONFIG: "changes a setting in DANGEROUS_SETTINGS, or one whose name is not a constant",
}

DYNAMIC_SQL_FUNCTIONS: frozenset[str] = frozenset(
    {
        "dblink",
        "dblink_exec",
        "dblink_send_query",
        "dblink_open",
        "query_to_xml",
        "query_to_xmlschema",
        "query_to_xml_and_xmlschema",
        "ts_stat",
        "ts_rewrite",
        "xpath_table",
        "crosstab",
        "crosstab2",
        "crosstab3",
        "crosstab4",
        "connectby",
        "check_foreign_key",
        "check_primary_key",
    }
)

# Flagged only when called with this many arguments (the other forms run no SQL text).
FLAGGED_WITH_ARGS: dict[str, int] = {"ts_rewrite": 2}
