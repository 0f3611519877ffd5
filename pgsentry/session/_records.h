/* Shared by the C files of pgsentry.session._records, the native twin of records.py:
 * the Record object, the Python helpers and interned names handed in by _setup(), and the
 * functions one file gives another. See _records.c for the whole picture.
 */
#ifndef PGSENTRY_RECORDS_H
#define PGSENTRY_RECORDS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <time.h>

/* Everything shared between the files stays inside the extension (PyInit__records is
 * exported by PyMODINIT_FUNC regardless). */
#pragma GCC visibility push(hidden)

typedef struct {
    PyObject_HEAD
    PyObject *protocol;
    PyObject *text;
    PyObject *verdict;
    PyObject *statement_name;
    PyObject *portal;
    PyObject *tags;
    PyObject *rows;
    PyObject *sqlstate;
    PyObject *hold_id;
    PyObject *effects;
    Py_ssize_t batch;
    double started;
    double wall;
    int extended;
} RecordObject;

extern PyTypeObject RecordType;

/* Handed in by records._setup() (see setup() in _records.c). */
extern PyObject *audit_tail_fn;    /* decider.audit_tail(verdict) -> (all, first, second) */
extern PyObject *names_member_fn;  /* records._names_member(statement_name, portal) -> bytes */
extern PyObject *names_cache;      /* records._names_json, the cache behind it */
extern PyObject *hold_member_fn;   /* records._hold_member(hold_id) -> bytes */
extern PyObject *json_value_fn;    /* encode.json_value(str) -> bytes (invalid UTF-8 text) */
extern PyObject *protocol_members; /* dict: protocol -> b',"protocol":"..."' */
extern PyObject *hist_bounds;      /* metrics.STATEMENT_DURATION.bounds (a tuple) */
extern PyObject *hist_counts;      /* ... .counts (a list, one more than bounds) */
extern PyObject *hist_sums;        /* ... .sums (a list of one float) */
extern PyObject *lexical_key_fn;   /* analysis.lexical.lexical_key(str) -> str | None */
extern PyObject *allow_action;     /* policy.decision.Action.ALLOW */
extern Py_ssize_t max_keyed_text;  /* analyzer.MAX_CACHED_TEXT */
extern PyObject *empty_tuple;

/* Interned attribute names and constants (module init). */
extern PyObject *s_queue, *s_done_batches, *s_popleft, *s_extended, *s_audit_tail, *s_simple, *s_append, *s_sent_batches, *s_by_lexical,
    *s_generation, *s_holder, *s_policy, *s_plain_labels, *s_empty, *s_decision, *s_action;

/* time.perf_counter() (CLOCK_MONOTONIC) and time.time() (CLOCK_REALTIME) on Linux. */
static inline double
clock_seconds(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* An attribute of a __slots__ class read or written at a call site that remembers where the
 * slot is (as CPython's own attribute specialization does): checked against the object's
 * exact type and that type's version tag, so a changed class or another class falls back to
 * PyObject_GetAttr / PyObject_SetAttr. One static SlotCache per call site. */
typedef struct {
    PyTypeObject *type; /* strong reference */
    unsigned int version;
    Py_ssize_t offset;
    int settable;
} SlotCache;

PyObject *slot_get_miss(PyObject *obj, PyObject *name, SlotCache *cache);
int slot_set_miss(PyObject *obj, PyObject *name, PyObject *value, SlotCache *cache);

static inline int
slot_hit(PyObject *obj, SlotCache *cache)
{
    PyTypeObject *type = Py_TYPE(obj);
    return type == cache->type && type->tp_version_tag == cache->version &&
           (type->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG);
}

/* obj.name: a new reference, or NULL with an exception set. */
static inline PyObject *
slot_get(PyObject *obj, PyObject *name, SlotCache *cache)
{
    if (slot_hit(obj, cache)) {
        PyObject *value = *(PyObject **)((char *)obj + cache->offset);
        if (value != NULL)
            return Py_NewRef(value);
    }
    return slot_get_miss(obj, name, cache);
}

/* obj.name = value: 0, or -1 with an exception set. */
static inline int
slot_set(PyObject *obj, PyObject *name, PyObject *value, SlotCache *cache)
{
    if (slot_hit(obj, cache) && cache->settable) {
        Py_XSETREF(*(PyObject **)((char *)obj + cache->offset), Py_NewRef(value));
        return 0;
    }
    return slot_set_miss(obj, name, value, cache);
}

/* _records.c */
PyObject *record_vectorcall(PyObject *type, PyObject *const *args, size_t nargsf,
                            PyObject *kwnames);

/* _records_line.c: the "statement" audit line (PyRecord._line / audit_line). */
PyObject *line_for(RecordObject *rec, PyObject *head, double duration);
PyObject *audit_line(RecordObject *rec, PyObject *head);

/* _records_paths.c: the hot paths (records.py_respond, py_query_known, py_execute_batch). */
PyObject *respond(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
Py_ssize_t respond_at(PyObject *data, Py_ssize_t pos, PyObject *table, PyObject *inflight,
                      PyObject *head, PyObject *emit_line, PyObject *emit_record,
                      PyObject **status_out);
PyObject *query_known(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *execute_batch(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

/* _records_lane.c: the Lane (Session.lane) and its constants. */
extern PyTypeObject LaneType;
PyObject *lane_setup(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

#pragma GCC visibility pop

#endif
