/* The generic parse-tree walk of `Collector` (collector.py) in C.
 *
 * Owns `walk`: the same visit, in the same order, as `collector.py`'s `py_walk` (its Python
 * twin and reference), over libpg_query's JSON trees read as plain dicts and lists. A dict
 * of one key whose first character is upper case is a node: its handler is called, or it is
 * walked into unless it is a leaf; a dict with "relname" is a RangeVar field; a dict whose
 * "kind" starts with "VAR_" is a VariableSetStmt field; any other dict or list is walked
 * into, value by value. Handlers, leaves and the VariableSetStmt handler are the Python
 * ones, given once by `configure`; `method(cls)` returns `walk` as a method of `cls`.
 * Decides nothing: every judgement stays in the Python handlers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *handlers;      /* dict: node type -> handler(collector, node, scope) */
static PyObject *leaves;        /* frozenset of node types never walked into */
static PyObject *varset;        /* handler(collector, field, scope) of a VariableSetStmt field */
static PyObject *str_relname;   /* "relname" */
static PyObject *str_kind;      /* "kind" */
static PyObject *str_add_rangevar;
static PyObject *str_var;       /* "VAR_" */

static int walk(PyObject *self, PyObject *v, PyObject *scope);

static int call3(PyObject *fn, PyObject *self, PyObject *node, PyObject *scope) {
    PyObject *args[3] = {self, node, scope};
    PyObject *r = PyObject_Vectorcall(fn, args, 3, NULL);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* `str(kind).startswith("VAR_")`: 1, 0, or -1 on error. */
static int var_kind(PyObject *kind) {
    if (PyUnicode_CheckExact(kind))
        return (int)PyUnicode_Tailmatch(kind, str_var, 0, PY_SSIZE_T_MAX, -1);
    PyObject *s = PyObject_Str(kind);
    if (s == NULL)
        return -1;
    Py_ssize_t m = PyUnicode_Tailmatch(s, str_var, 0, PY_SSIZE_T_MAX, -1);
    Py_DECREF(s);
    return (int)m;
}

/* A node ({"Type": {...}}): its handler, or a walk into it unless it is a leaf. */
static int walk_node(PyObject *self, PyObject *key, PyObject *inner, PyObject *scope) {
    PyObject *handler = PyDict_GetItemWithError(handlers, key);
    if (handler != NULL)
        return call3(handler, self, inner, scope);
    if (PyErr_Occurred())
        return -1;
    int leaf = PySet_Contains(leaves, key);
    if (leaf != 0)
        return leaf < 0 ? -1 : 0;
    return walk(self, inner, scope);
}

static int walk_dict(PyObject *self, PyObject *v, PyObject *scope) {
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    if (PyDict_GET_SIZE(v) == 1 && PyDict_Next(v, &pos, &key, &value)) {
        if (!PyUnicode_Check(key)) {
            PyErr_SetString(PyExc_TypeError, "parse tree key is not a string");
            return -1;
        }
        if (PyUnicode_GET_LENGTH(key) == 0) {
            PyErr_SetString(PyExc_IndexError, "string index out of range");
            return -1;
        }
        if (Py_UNICODE_ISUPPER(PyUnicode_READ_CHAR(key, 0))) {
            Py_INCREF(key);
            Py_INCREF(value);
            int rc = walk_node(self, key, value, scope);
            Py_DECREF(value);
            Py_DECREF(key);
            return rc;
        }
    }
    int has = PyDict_Contains(v, str_relname);
    if (has != 0) {
        if (has < 0)
            return -1;
        PyObject *r = PyObject_CallMethodOneArg(self, str_add_rangevar, v);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
        return 0;
    }
    PyObject *kind = PyDict_GetItemWithError(v, str_kind);
    if (kind != NULL) {
        Py_INCREF(kind);
        int var = var_kind(kind);
        Py_DECREF(kind);
        if (var != 0)
            return var < 0 ? -1 : call3(varset, self, v, scope);
    } else if (PyErr_Occurred()) {
        return -1;
    }
    Py_ssize_t size = PyDict_GET_SIZE(v);
    pos = 0;
    while (PyDict_Next(v, &pos, NULL, &value)) {
        if (!PyDict_CheckExact(value) && !PyList_CheckExact(value))
            continue;
        Py_INCREF(value);
        int rc = walk(self, value, scope);
        Py_DECREF(value);
        if (rc < 0)
            return -1;
        if (PyDict_GET_SIZE(v) != size) {  /* as `for x in v.values()` would */
            PyErr_SetString(PyExc_RuntimeError, "dictionary changed size during iteration");
            return -1;
        }
    }
    return 0;
}

static int walk(PyObject *self, PyObject *v, PyObject *scope) {
    int rc = 0;
    if (PyDict_CheckExact(v)) {
        if (Py_EnterRecursiveCall(" while walking a parse tree"))
            return -1;
        rc = walk_dict(self, v, scope);
        Py_LeaveRecursiveCall();
    } else if (PyList_CheckExact(v)) {
        if (Py_EnterRecursiveCall(" while walking a parse tree"))
            return -1;
        for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(v); i++) {
            PyObject *x = PyList_GET_ITEM(v, i);
            Py_INCREF(x);
            rc = walk(self, x, scope);
            Py_DECREF(x);
        }
        Py_LeaveRecursiveCall();
    }
    return rc;
}

static PyObject *walk_method(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "walk(v, scope) takes exactly 2 arguments");
        return NULL;
    }
    if (handlers == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_walk.configure() was not called");
        return NULL;
    }
    if (walk(self, args[0], args[1]) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef walk_def = {
    "walk", (PyCFunction)(void (*)(void))walk_method, METH_FASTCALL,
    "walk(v, scope): visit a parse tree value (see collector.py py_walk)."};

static PyObject *configure(PyObject *module, PyObject *args) {
    PyObject *h, *l, *vs;
    if (!PyArg_ParseTuple(args, "O!O!O:configure", &PyDict_Type, &h, &PyFrozenSet_Type, &l, &vs))
        return NULL;
    Py_INCREF(h);
    Py_INCREF(l);
    Py_INCREF(vs);
    Py_XSETREF(handlers, h);
    Py_XSETREF(leaves, l);
    Py_XSETREF(varset, vs);
    Py_RETURN_NONE;
}

static PyObject *method(PyObject *module, PyObject *cls) {
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "method(cls) needs a class");
        return NULL;
    }
    return PyDescr_NewMethod((PyTypeObject *)cls, &walk_def);
}

static PyMethodDef module_methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(handlers: dict, leaves: frozenset, varset): the Python pieces of the walk."},
    {"method", method, METH_O, "method(cls): `walk` as a method of `cls`."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_walk", "The generic parse-tree walk of collector.py in C.", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__walk(void) {
    str_relname = PyUnicode_InternFromString("relname");
    str_kind = PyUnicode_InternFromString("kind");
    str_add_rangevar = PyUnicode_InternFromString("add_rangevar");
    str_var = PyUnicode_InternFromString("VAR_");
    if (!str_relname || !str_kind || !str_add_rangevar || !str_var)
        return NULL;
    return PyModule_Create(&module_def);
}
