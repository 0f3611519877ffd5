/* Native twin of pgsentry.session.records (built when a C compiler is there; the Python
 * versions there are the reference, and tests/session/test_native_records.py checks that
 * both give the same results). Four files:
 *
 *   _records.c        this module: the Record type, _setup(), the module itself;
 *   _records_line.c   a finished Record's "statement" audit line (encode.statement_line),
 *                     and the statement duration histogram;
 *   _records_paths.c  the hot paths: respond() for every CommandComplete / ReadyForQuery,
 *                     query_known() for a Query of a shape already judged a plain ALLOW,
 *                     execute_batch() for a prepared statement's Bind / Execute / Sync;
 *   _records_lane.c   the Lane: those hot paths called straight from the transports.
 *
 * Python helpers for the rare cases (a verdict's audit members not built yet, new
 * statement and portal names, text that is not valid UTF-8) are handed in once by
 * records.py through _setup().
 */
#include "_records.h"

#include <structmember.h>
#include <string.h>

PyObject *audit_tail_fn, *names_member_fn, *names_cache, *hold_member_fn, *json_value_fn,
    *protocol_members, *hist_bounds, *hist_counts, *hist_sums, *lexical_key_fn, *allow_action,
    *empty_tuple;
Py_ssize_t max_keyed_text;
PyObject *s_queue, *s_done_batches, *s_popleft, *s_extended,
    *s_audit_tail, *s_simple, *s_append, *s_sent_batches, *s_by_lexical, *s_generation,
    *s_holder, *s_policy, *s_plain_labels, *s_empty, *s_decision, *s_action;

/* ------------------------------------------------------------------ SlotCache */

/* Remember where obj's class keeps `name` when it is a plain __slots__ member of a class with
 * the generic attribute access (set: and generic assignment). */
static void
slot_learn(PyObject *obj, PyObject *name, SlotCache *cache)
{
    PyTypeObject *type = Py_TYPE(obj);
    if (type->tp_getattro != PyObject_GenericGetAttr || !PyType_HasFeature(type, Py_TPFLAGS_VALID_VERSION_TAG))
        return;
    PyObject *descr = _PyType_Lookup(type, name); /* borrowed */
    if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type))
        return;
    PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
    if (member->type != T_OBJECT_EX)
        return;
    Py_XSETREF(cache->type, (PyTypeObject *)Py_NewRef(type));
    cache->version = type->tp_version_tag;
    cache->offset = member->offset;
    cache->settable = !(member->flags & READONLY) && type->tp_setattro == PyObject_GenericSetAttr;
}

PyObject *
slot_get_miss(PyObject *obj, PyObject *name, SlotCache *cache)
{
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value != NULL)
        slot_learn(obj, name, cache);
    return value;
}

int
slot_set_miss(PyObject *obj, PyObject *name, PyObject *value, SlotCache *cache)
{
    int rc = PyObject_SetAttr(obj, name, value);
    if (rc == 0)
        slot_learn(obj, name, cache);
    return rc;
}

/* ------------------------------------------------------------------ Record */

static int
record_fill(RecordObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 4 || nargs > 6) {
        PyErr_SetString(PyExc_TypeError,
                        "Record(protocol, text, verdict, batch, statement_name=None, portal=None)");
        return -1;
    }
    if (!PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "Record: protocol must be a str");
        return -1;
    }
    Py_ssize_t batch = PyLong_AsSsize_t(args[3]);
    if (batch == -1 && PyErr_Occurred())
        return -1;
    PyObject *tags = PyList_New(0);
    if (tags == NULL)
        return -1;
    self->protocol = Py_NewRef(args[0]);
    self->text = Py_NewRef(args[1]);
    self->verdict = Py_NewRef(args[2]);
    self->batch = batch;
    self->statement_name = Py_NewRef(nargs > 4 ? args[4] : Py_None);
    self->portal = Py_NewRef(nargs > 5 ? args[5] : Py_None);
    self->tags = tags;
    self->rows = Py_NewRef(Py_None);
    self->sqlstate = Py_NewRef(Py_None);
    self->hold_id = Py_NewRef(Py_None);
    self->effects = Py_NewRef(empty_tuple);
    self->extended = PyUnicode_Compare(args[0], s_extended) == 0;
    self->started = clock_seconds(CLOCK_MONOTONIC); /* time.perf_counter() on Linux */
    self->wall = clock_seconds(CLOCK_REALTIME);     /* time.time() */
    return 0;
}

PyObject *
record_vectorcall(PyObject *type, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames)) {
        PyErr_SetString(PyExc_TypeError, "Record() takes positional arguments only");
        return NULL;
    }
    RecordObject *self = PyObject_New(RecordObject, (PyTypeObject *)type);
    if (self == NULL)
        return NULL;
    memset((char *)self + sizeof(PyObject), 0, sizeof(RecordObject) - sizeof(PyObject));
    if (record_fill(self, args, PyVectorcall_NARGS(nargsf)) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static PyObject *
record_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs)) {
        PyErr_SetString(PyExc_TypeError, "Record() takes positional arguments only");
        return NULL;
    }
    return record_vectorcall((PyObject *)type, &PyTuple_GET_ITEM(args, 0),
                             (size_t)PyTuple_GET_SIZE(args), NULL);
}

static void
record_dealloc(RecordObject *self)
{
    Py_XDECREF(self->protocol);
    Py_XDECREF(self->text);
    Py_XDECREF(self->verdict);
    Py_XDECREF(self->statement_name);
    Py_XDECREF(self->portal);
    Py_XDECREF(self->tags);
    Py_XDECREF(self->rows);
    Py_XDECREF(self->sqlstate);
    Py_XDECREF(self->hold_id);
    Py_XDECREF(self->effects);
    PyObject_Free(self);
}


static PyObject *
record_audit_line(RecordObject *self, PyObject *head)
{
    return audit_line(self, head);
}

static PyObject *
record_line(RecordObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_line(head, duration)");
        return NULL;
    }
    double duration = PyFloat_AsDouble(args[1]);
    if (duration == -1.0 && PyErr_Occurred())
        return NULL;
    return line_for(self, args[0], duration);
}

static PyMethodDef record_methods[] = {
    {"audit_line", (PyCFunction)record_audit_line, METH_O,
     "The finished statement's audit record (and its duration in the histogram)."},
    {"_line", (PyCFunction)(void (*)(void))record_line, METH_FASTCALL,
     "The audit line for a statement that took `duration` seconds."},
    {NULL, NULL, 0, NULL},
};

#define OFF(f) offsetof(RecordObject, f)
static PyMemberDef record_members[] = {
    {"protocol", T_OBJECT, OFF(protocol), READONLY, NULL},
    {"text", T_OBJECT, OFF(text), READONLY, NULL},
    {"verdict", T_OBJECT, OFF(verdict), READONLY, NULL},
    {"batch", T_PYSSIZET, OFF(batch), 0, NULL},
    {"statement_name", T_OBJECT, OFF(statement_name), READONLY, NULL},
    {"portal", T_OBJECT, OFF(portal), READONLY, NULL},
    {"started", T_DOUBLE, OFF(started), 0, NULL},
    {"wall", T_DOUBLE, OFF(wall), 0, NULL},
    {"tags", T_OBJECT, OFF(tags), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

/* rows, sqlstate, hold_id, effects: settable, never deletable (the C code reads them). */
static PyObject *
field_get(RecordObject *self, void *offset)
{
    PyObject *value = *(PyObject **)((char *)self + (size_t)offset);
    return Py_NewRef(value != NULL ? value : Py_None);
}

static int
field_set(RecordObject *self, PyObject *value, void *offset)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "Record attributes cannot be deleted");
        return -1;
    }
    PyObject **slot = (PyObject **)((char *)self + (size_t)offset);
    Py_XSETREF(*slot, Py_NewRef(value));
    return 0;
}

static PyGetSetDef record_getset[] = {
    {"rows", (getter)field_get, (setter)field_set, NULL, (void *)OFF(rows)},
    {"sqlstate", (getter)field_get, (setter)field_set, NULL, (void *)OFF(sqlstate)},
    {"hold_id", (getter)field_get, (setter)field_set, NULL, (void *)OFF(hold_id)},
    {"effects", (getter)field_get, (setter)field_set, NULL, (void *)OFF(effects)},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject RecordType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "pgsentry.session._records.Record",
    .tp_basicsize = sizeof(RecordObject),
    .tp_dealloc = (destructor)record_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One statement on its way: a Query, an Execute, or a FunctionCall.",
    .tp_methods = record_methods,
    .tp_members = record_members,
    .tp_getset = record_getset,
    .tp_new = record_new,
    .tp_vectorcall = record_vectorcall,
};


static PyObject *
setup(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError,
                        "_setup(audit_tail, names_member, names_cache, hold_member, json_value, "
                        "protocol_members, histogram, lexical_key, max_keyed_text, allow)");
        return NULL;
    }
    Py_ssize_t max_text = PyLong_AsSsize_t(args[8]);
    if (max_text == -1 && PyErr_Occurred())
        return NULL;
    if (!PyDict_Check(args[2]) || !PyDict_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError, "_setup: names_cache, protocol_members: dicts");
        return NULL;
    }
    Py_XSETREF(audit_tail_fn, Py_NewRef(args[0]));
    Py_XSETREF(names_member_fn, Py_NewRef(args[1]));
    Py_XSETREF(names_cache, Py_NewRef(args[2]));
    Py_XSETREF(hold_member_fn, Py_NewRef(args[3]));
    Py_XSETREF(json_value_fn, Py_NewRef(args[4]));
    Py_XSETREF(protocol_members, Py_NewRef(args[5]));
    PyObject *bounds = PyObject_GetAttrString(args[6], "bounds");
    PyObject *counts = bounds ? PyObject_GetAttrString(args[6], "counts") : NULL;
    PyObject *sums = counts ? PyObject_GetAttrString(args[6], "sums") : NULL;
    if (sums == NULL || !PyTuple_Check(bounds) || !PyList_Check(counts) || !PyList_Check(sums) ||
        PyList_GET_SIZE(counts) != PyTuple_GET_SIZE(bounds) + 1 || PyList_GET_SIZE(sums) != 1) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "_setup: histogram bounds, counts, sums expected");
        Py_XDECREF(bounds);
        Py_XDECREF(counts);
        Py_XDECREF(sums);
        return NULL;
    }
    Py_XSETREF(hist_bounds, bounds);
    Py_XSETREF(hist_counts, counts);
    Py_XSETREF(hist_sums, sums);
    Py_XSETREF(lexical_key_fn, Py_NewRef(args[7]));
    Py_XSETREF(allow_action, Py_NewRef(args[9]));
    max_keyed_text = max_text;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"respond", (PyCFunction)(void (*)(void))respond, METH_FASTCALL,
     "Bookkeep whole CommandComplete / ReadyForQuery / EmptyQueryResponse / PortalSuspended "
     "messages; see records.py_respond."},
    {"query_known", (PyCFunction)(void (*)(void))query_known, METH_FASTCALL,
     "Forward a Query whose lexical shape has a plain ALLOW verdict; see "
     "records.py_query_known."},
    {"execute_batch", (PyCFunction)(void (*)(void))execute_batch, METH_FASTCALL,
     "Bookkeep a chunk of whole Bind / Execute / Sync messages; see "
     "records.py_execute_batch."},
    {"_lane_setup", (PyCFunction)(void (*)(void))lane_setup, METH_FASTCALL,
     "Hand in the Session class and the constants the Lane needs (session.py does this once)."},
    {"_setup", (PyCFunction)(void (*)(void))setup, METH_FASTCALL,
     "Hand in the Python helpers for the rare cases (records.py does this once)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_records",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__records(void)
{
    if (PyType_Ready(&RecordType) < 0 || PyType_Ready(&LaneType) < 0)
        return NULL;
#define INTERN(var, text)                               \
    if ((var = PyUnicode_InternFromString(text)) == NULL) \
        return NULL;
    INTERN(s_queue, "queue");
    INTERN(s_done_batches, "done_batches");
    INTERN(s_popleft, "popleft");
    INTERN(s_extended, "extended");
    INTERN(s_audit_tail, "audit_tail");
    INTERN(s_simple, "simple");
    INTERN(s_append, "append");
    INTERN(s_sent_batches, "sent_batches");
    INTERN(s_by_lexical, "by_lexical");
    INTERN(s_generation, "generation");
    INTERN(s_holder, "holder");
    INTERN(s_policy, "policy");
    INTERN(s_plain_labels, "plain_labels");
    INTERN(s_empty, "");
    INTERN(s_decision, "decision");
    INTERN(s_action, "action");
    empty_tuple = PyTuple_New(0);
    if (empty_tuple == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Record", (PyObject *)&RecordType) < 0 ||
        PyModule_AddObjectRef(m, "Lane", (PyObject *)&LaneType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
