/* The Lane: one session's per-message hot path, from the transport's read straight to the
 * other transport's write, with no Python frame in between (Session.lane() makes one).
 *
 * lane.client_data(data) does what the connection's Python path does for a chunk that is one
 * whole Query of a shape already judged a plain ALLOW (query_known) or a prepared statement's
 * Bind/Execute/Sync (execute_batch): bookkeep, count the bytes, write the chunk upstream.
 * lane.server_data(data) does what it does for a chunk whose leading messages need no
 * rewriting (respond): bookkeep and audit them and, when they are the whole chunk, count the
 * bytes and write it to the client. Anything else, and everything once detach() was called,
 * goes to the Python path (client_slow(data), server_slow(data) or, after respond took the
 * first `done` bytes, server_slow(data, done)): the Lane decides nothing of its own.
 *
 * The session's state is read and written through its __slots__ (the offsets come from the
 * member descriptors of the Session class, checked when the Lane is made; every call checks
 * the session is still exactly that class). Constants come from _lane_setup().
 */
#include "_records.h"

#include <structmember.h>

static PyTypeObject *session_type, *walker_type;
static PyObject *ready_phase, *client_table, *server_table, *unknown_statement, *statement_counts;
static PyObject *s_emit_line, *s_emit, *s_note_effects;

/* Offsets of the Session slots (and the walker's at_boundary) the Lane reads or writes. */
static Py_ssize_t o_hold, o_skip_to_sync, o_batch_open, o_terminated, o_client, o_server,
    o_to_server, o_to_client, o_status, o_decider, o_inflight, o_from_client, o_from_server,
    o_phase, o_markers, o_audit_head, o_audit, o_portals, o_statements, o_at_boundary;

#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

typedef struct {
    PyObject_HEAD
    PyObject *session;
    PyObject *write_server;  /* upstream transport's write */
    PyObject *write_client;  /* client transport's write */
    PyObject *client_slow;   /* the connection's Python client path: f(data) */
    PyObject *server_slow;   /* ... server path: f(data) or f(data, done) */
    PyObject *after_client;  /* the connection's flush, when the audit log may be congested */
    PyObject *audit_lines;   /* the audit log's queue (only its length is read) */
    PyObject *emit_record;   /* session._emit */
    PyObject *note_effects;  /* session._note_effects */
    Py_ssize_t congested_above;
    int detached;
} LaneObject;

static int
slot_offset(PyTypeObject *type, const char *name, Py_ssize_t *out)
{
    PyObject *descr = PyObject_GetAttrString((PyObject *)type, name);
    if (descr == NULL)
        return -1;
    int ok = Py_IS_TYPE(descr, &PyMemberDescr_Type) &&
             ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX &&
             !(((PyMemberDescrObject *)descr)->d_member->flags & READONLY);
    if (ok)
        *out = ((PyMemberDescrObject *)descr)->d_member->offset;
    else
        PyErr_Format(PyExc_TypeError, "_lane_setup: %s.%s is not a __slots__ member",
                     type->tp_name, name);
    Py_DECREF(descr);
    return ok ? 0 : -1;
}

/* _lane_setup(Session, MessageWalker, Phase.READY, client_table, server_table, unknown,
 * counts): once, from session.py. */
PyObject *
lane_setup(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7 || !PyType_Check(args[0]) || !PyType_Check(args[1]) ||
        !PyBytes_Check(args[3]) || PyBytes_GET_SIZE(args[3]) != 256 ||
        !PyBytes_Check(args[4]) || PyBytes_GET_SIZE(args[4]) != 256 || !PyDict_Check(args[6])) {
        PyErr_SetString(PyExc_TypeError,
                        "_lane_setup(Session, MessageWalker, ready_phase, client_table, "
                        "server_table, unknown, counts)");
        return NULL;
    }
    PyTypeObject *st = (PyTypeObject *)args[0], *wt = (PyTypeObject *)args[1];
    struct {
        const char *name;
        Py_ssize_t *offset;
    } slots[] = {
        {"hold", &o_hold},           {"_skip_to_sync", &o_skip_to_sync},
        {"_batch_open", &o_batch_open},
        {"terminated", &o_terminated}, {"_client", &o_client},
        {"_server", &o_server},
        {"to_server", &o_to_server}, {"to_client", &o_to_client},
        {"status", &o_status},       {"decider", &o_decider},
        {"_inflight", &o_inflight},  {"bytes_from_client", &o_from_client},
        {"bytes_from_server", &o_from_server}, {"phase", &o_phase},
        {"_markers", &o_markers},    {"_audit_head", &o_audit_head},
        {"audit", &o_audit},         {"_portals", &o_portals},
        {"_statements", &o_statements},
    };
    for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++)
        if (slot_offset(st, slots[i].name, slots[i].offset) < 0)
            return NULL;
    if (slot_offset(wt, "at_boundary", &o_at_boundary) < 0)
        return NULL;
    Py_XSETREF(session_type, (PyTypeObject *)Py_NewRef(st));
    Py_XSETREF(walker_type, (PyTypeObject *)Py_NewRef(wt));
    Py_XSETREF(ready_phase, Py_NewRef(args[2]));
    Py_XSETREF(client_table, Py_NewRef(args[3]));
    Py_XSETREF(server_table, Py_NewRef(args[4]));
    Py_XSETREF(unknown_statement, Py_NewRef(args[5]));
    Py_XSETREF(statement_counts, Py_NewRef(args[6]));
    if (s_emit_line == NULL &&
        ((s_emit_line = PyUnicode_InternFromString("emit_line")) == NULL ||
         (s_emit = PyUnicode_InternFromString("_emit")) == NULL ||
         (s_note_effects = PyUnicode_InternFromString("_note_effects")) == NULL))
        return NULL;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ the object */

static PyObject *
lane_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"session",      "write_server", "write_client",    "client_slow",
                            "server_slow",  "after_client", "audit_lines",     "congested_above",
                            NULL};
    PyObject *session, *write_server, *write_client, *client_slow, *server_slow, *after_client;
    PyObject *audit_lines;
    Py_ssize_t congested_above;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOOOn:Lane", names, &session,
                                     &write_server, &write_client, &client_slow, &server_slow,
                                     &after_client, &audit_lines, &congested_above))
        return NULL;
    if (session_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_records: _lane_setup() was not called");
        return NULL;
    }
    if (!Py_IS_TYPE(session, session_type)) {
        PyErr_SetString(PyExc_TypeError, "Lane: the session must be a Session");
        return NULL;
    }
    PyObject *emit_record = PyObject_GetAttr(session, s_emit);
    PyObject *note_effects = emit_record ? PyObject_GetAttr(session, s_note_effects) : NULL;
    LaneObject *self = note_effects ? (LaneObject *)type->tp_alloc(type, 0) : NULL;
    if (self == NULL) {
        Py_XDECREF(emit_record);
        Py_XDECREF(note_effects);
        return NULL;
    }
    self->session = Py_NewRef(session);
    self->write_server = Py_NewRef(write_server);
    self->write_client = Py_NewRef(write_client);
    self->client_slow = Py_NewRef(client_slow);
    self->server_slow = Py_NewRef(server_slow);
    self->after_client = Py_NewRef(after_client);
    self->audit_lines = Py_NewRef(audit_lines);
    self->emit_record = emit_record;
    self->note_effects = note_effects;
    self->congested_above = congested_above;
    return (PyObject *)self;
}

static int
lane_traverse(LaneObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->session);
    Py_VISIT(self->write_server);
    Py_VISIT(self->write_client);
    Py_VISIT(self->client_slow);
    Py_VISIT(self->server_slow);
    Py_VISIT(self->after_client);
    Py_VISIT(self->audit_lines);
    Py_VISIT(self->emit_record);
    Py_VISIT(self->note_effects);
    return 0;
}

static int
lane_clear(LaneObject *self)
{
    Py_CLEAR(self->session);
    Py_CLEAR(self->write_server);
    Py_CLEAR(self->write_client);
    Py_CLEAR(self->client_slow);
    Py_CLEAR(self->server_slow);
    Py_CLEAR(self->after_client);
    Py_CLEAR(self->audit_lines);
    Py_CLEAR(self->emit_record);
    Py_CLEAR(self->note_effects);
    self->detached = 1;
    return 0;
}

static void
lane_dealloc(LaneObject *self)
{
    PyObject_GC_UnTrack(self);
    lane_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* ------------------------------------------------------------------ the paths */

static inline int
empty_list(PyObject *obj)
{
    return obj != NULL && PyList_CheckExact(obj) && PyList_GET_SIZE(obj) == 0;
}

/* session.<slot> += n (an int slot). */
static int
add_bytes(PyObject *session, Py_ssize_t offset, Py_ssize_t n)
{
    PyObject *old = SLOT(session, offset);
    PyObject *sum;
    if (old == NULL) {
        PyErr_SetString(PyExc_AttributeError, "Lane: the session's byte count is not set");
        return -1;
    }
    Py_ssize_t value = PyLong_CheckExact(old) ? PyLong_AsSsize_t(old) : -1;
    if (value >= 0 && value < PY_SSIZE_T_MAX - n)
        sum = PyLong_FromSsize_t(value + n);
    else {
        PyErr_Clear();
        PyObject *add = PyLong_FromSsize_t(n);
        sum = add ? PyNumber_Add(old, add) : NULL;
        Py_XDECREF(add);
    }
    if (sum == NULL)
        return -1;
    Py_SETREF(SLOT(session, offset), sum);
    return 0;
}

static inline int
walker_aligned(PyObject *walker)
{
    return walker != NULL && Py_IS_TYPE(walker, walker_type) &&
           SLOT(walker, o_at_boundary) == Py_True;
}

/* fn(arg), its result dropped: 0, or -1 with an exception set. */
static int
call_dropping(PyObject *fn, PyObject *arg)
{
    PyObject *r = PyObject_CallOneArg(fn, arg);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* The Python path; after detach() only these two callables are kept. */
static PyObject *
slow(PyObject *fn, PyObject *data)
{
    if (fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Lane: cleared");
        return NULL;
    }
    return PyObject_CallOneArg(fn, data);
}

static PyObject *
lane_client_data(LaneObject *self, PyObject *data)
{
    PyObject *s = self->session;
    if (self->detached || !PyBytes_CheckExact(data) || !Py_IS_TYPE(s, session_type))
        return slow(self->client_slow, data);
    const unsigned char *m = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    if (n <= 5 || SLOT(s, o_hold) != Py_None || SLOT(s, o_skip_to_sync) != Py_False ||
        SLOT(s, o_batch_open) != Py_False ||
        SLOT(s, o_terminated) != Py_False || !walker_aligned(SLOT(s, o_client)) ||
        !empty_list(SLOT(s, o_to_server)) ||
        !empty_list(SLOT(s, o_to_client)) || SLOT(s, o_inflight) == NULL ||
        SLOT(s, o_decider) == NULL)
        return slow(self->client_slow, data);
    /* Held for the call: the hot paths may run Python code (lexical_key, note_effects). */
    PyObject *inflight = Py_NewRef(SLOT(s, o_inflight)), *result = NULL;
    if (m[0] == 'Q') {
        Py_ssize_t length = ((Py_ssize_t)m[1] << 24) | ((Py_ssize_t)m[2] << 16) |
                            ((Py_ssize_t)m[3] << 8) | (Py_ssize_t)m[4];
        PyObject *status = SLOT(s, o_status);
        if (length == n - 1 && status != NULL && PyBytes_CheckExact(status)) {
            int idle = PyBytes_GET_SIZE(status) == 1 && PyBytes_AS_STRING(status)[0] == 'I';
            PyObject *decider = Py_NewRef(SLOT(s, o_decider));
            PyObject *args[6] = {data,     decider, idle ? Py_False : Py_True,
                                 inflight, Py_None, statement_counts};
            result = query_known(NULL, args, 6);
            Py_DECREF(decider);
        }
        else
            result = Py_NewRef(Py_False);
    }
    else if (m[0] == 'B' && SLOT(s, o_portals) != NULL && SLOT(s, o_statements) != NULL) {
        PyObject *portals = Py_NewRef(SLOT(s, o_portals));
        PyObject *statements = Py_NewRef(SLOT(s, o_statements));
        PyObject *args[8] = {data,     client_table, portals, statements, unknown_statement,
                             inflight, Py_None,      self->note_effects};
        result = execute_batch(NULL, args, 8);
        Py_DECREF(portals);
        Py_DECREF(statements);
    }
    else
        result = Py_NewRef(Py_False);
    Py_DECREF(inflight);
    if (result == NULL)
        return NULL;
    Py_DECREF(result);
    if (result != Py_True) /* declined: nothing was done */
        return slow(self->client_slow, data);
    if (add_bytes(s, o_from_client, n) < 0)
        return NULL;
    PyObject *to_server = SLOT(s, o_to_server);
    if (!empty_list(to_server)) {
        /* Something queued upstream meanwhile: the message goes after it, as in Python. */
        if (to_server == NULL || !PyList_Check(to_server)) {
            PyErr_SetString(PyExc_TypeError, "Lane: session.to_server is not a list");
            return NULL;
        }
        if (PyList_Append(to_server, data) < 0)
            return NULL;
        return PyObject_CallNoArgs(self->after_client);
    }
    if (call_dropping(self->write_server, data) < 0)
        return NULL;
    /* What the Python path checks after a chunk: output for the client, a hold, the end,
     * or an audit log that may be congested (the flush looks at it closely). */
    Py_ssize_t waiting = PyObject_Length(self->audit_lines);
    if (waiting < 0)
        return NULL;
    if (!empty_list(SLOT(s, o_to_client)) || SLOT(s, o_hold) != Py_None ||
        SLOT(s, o_terminated) != Py_False || waiting > self->congested_above)
        return PyObject_CallNoArgs(self->after_client);
    Py_RETURN_NONE;
}

static PyObject *
lane_server_data(LaneObject *self, PyObject *data)
{
    PyObject *s = self->session;
    if (self->detached || !PyBytes_CheckExact(data) || !Py_IS_TYPE(s, session_type))
        return slow(self->server_slow, data);
    PyObject *markers = SLOT(s, o_markers), *head = SLOT(s, o_audit_head);
    if (!walker_aligned(SLOT(s, o_server)) || SLOT(s, o_phase) != ready_phase ||
        markers == NULL || !PyDict_CheckExact(markers) || PyDict_GET_SIZE(markers) != 0 ||
        !empty_list(SLOT(s, o_to_client)) || head == NULL || !PyBytes_CheckExact(head) ||
        PyBytes_GET_SIZE(head) == 0 || SLOT(s, o_inflight) == NULL || SLOT(s, o_audit) == NULL)
        return slow(self->server_slow, data);
    PyObject *emit_line = PyObject_GetAttr(SLOT(s, o_audit), s_emit_line);
    if (emit_line == NULL)
        return NULL;
    /* Held for the call: audit callbacks are Python code. */
    PyObject *inflight = Py_NewRef(SLOT(s, o_inflight));
    Py_INCREF(head);
    PyObject *status = NULL;
    Py_ssize_t done = respond_at(data, 0, server_table, inflight, head, emit_line,
                                 self->emit_record, &status);
    Py_DECREF(head);
    Py_DECREF(inflight);
    Py_DECREF(emit_line);
    if (done < 0)
        return NULL;
    if (status != NULL)
        Py_XSETREF(SLOT(s, o_status), status);
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    if (done < n || !empty_list(SLOT(s, o_to_client))) {
        /* The rest (or output a callback queued meanwhile): the Python path, from `done`. */
        PyObject *at = PyLong_FromSsize_t(done);
        if (at == NULL)
            return NULL;
        PyObject *args[2] = {data, at};
        PyObject *r = PyObject_Vectorcall(self->server_slow, args, 2, NULL);
        Py_DECREF(at);
        return r;
    }
    if (add_bytes(s, o_from_server, n) < 0 || call_dropping(self->write_client, data) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
lane_detach(LaneObject *self, PyObject *unused)
{
    /* Only the Python paths are called from now on: let go of everything else. */
    self->detached = 1;
    Py_CLEAR(self->session);
    Py_CLEAR(self->write_server);
    Py_CLEAR(self->write_client);
    Py_CLEAR(self->after_client);
    Py_CLEAR(self->audit_lines);
    Py_CLEAR(self->emit_record);
    Py_CLEAR(self->note_effects);
    Py_RETURN_NONE;
}

static PyMethodDef lane_methods[] = {
    {"client_data", (PyCFunction)lane_client_data, METH_O,
     "The client's bytes: the hot path when it applies, else client_slow(data)."},
    {"server_data", (PyCFunction)lane_server_data, METH_O,
     "The server's bytes: the hot path when it applies, else server_slow(data[, done])."},
    {"detach", (PyCFunction)lane_detach, METH_NOARGS,
     "From now on, every chunk takes the Python path (closing, shutting down); the Lane "
     "keeps only client_slow and server_slow."},
    {NULL, NULL, 0, NULL},
};

static PyObject *
lane_get_detached(LaneObject *self, void *closure)
{
    return PyBool_FromLong(self->detached);
}

static PyGetSetDef lane_getset[] = {
    {"detached", (getter)lane_get_detached, NULL, "True once detach() was called.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject LaneType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "pgsentry.session._records.Lane",
    .tp_basicsize = sizeof(LaneObject),
    .tp_dealloc = (destructor)lane_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One session's hot path between its two transports (see _records_lane.c).",
    .tp_traverse = (traverseproc)lane_traverse,
    .tp_clear = (inquiry)lane_clear,
    .tp_methods = lane_methods,
    .tp_getset = lane_getset,
    .tp_new = lane_new,
};
