/* Native header walker for pgsentry.wire.scan: the hot loop of the protocol codec.
 *
 * scan(data, pos, table) walks whole protocol messages in `data` from `pos` while the
 * message type's entry in `table` (256 bytes) is 0 ("pass through"), and returns
 * (pos, type, length) of the first message it stops at: a type whose entry is not 0 (the
 * caller inspects it or rejects it), or type -1 when the message or its header is
 * incomplete, or -2 when a length is below 4. `length` is the int32 after the type byte.
 * It only reads; it never allocates per message. See scan.py for the Python twin.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
scan(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "scan(data, pos, table) takes 3 arguments");
        return NULL;
    }
    Py_buffer data, table;
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred())
        return NULL;
    /* bytes (the common case) without the buffer protocol; anything else through it */
    int data_view = !PyBytes_CheckExact(args[0]);
    int table_view = !PyBytes_CheckExact(args[2]);
    if (data_view) {
        if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0)
            return NULL;
    }
    else {
        data.buf = PyBytes_AS_STRING(args[0]);
        data.len = PyBytes_GET_SIZE(args[0]);
    }
    if (table_view) {
        if (PyObject_GetBuffer(args[2], &table, PyBUF_SIMPLE) < 0) {
            if (data_view)
                PyBuffer_Release(&data);
            return NULL;
        }
    }
    else {
        table.buf = PyBytes_AS_STRING(args[2]);
        table.len = PyBytes_GET_SIZE(args[2]);
    }
    PyObject *result = NULL;
    if (table.len != 256 || pos < 0) {
        PyErr_SetString(PyExc_ValueError, "scan: table must have 256 entries, pos >= 0");
        goto done;
    }
    const unsigned char *buf = (const unsigned char *)data.buf;
    const unsigned char *tab = (const unsigned char *)table.buf;
    Py_ssize_t n = data.len;
    long type = -1;
    unsigned long length = 0;
    while (pos + 5 <= n) {
        unsigned char t = buf[pos];
        length = ((unsigned long)buf[pos + 1] << 24) | ((unsigned long)buf[pos + 2] << 16) |
                 ((unsigned long)buf[pos + 3] << 8) | (unsigned long)buf[pos + 4];
        if (length < 4) {
            type = -2;
            break;
        }
        if (tab[t]) {
            type = t;
            break;
        }
        if ((unsigned long)(n - pos - 1) < length) {
            type = -1;
            break;
        }
        pos += 1 + (Py_ssize_t)length;
    }
    if (pos + 5 > n)
        length = 0;
    result = Py_BuildValue("nlk", pos, type, length);
done:
    if (data_view)
        PyBuffer_Release(&data);
    if (table_view)
        PyBuffer_Release(&table);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL, "Walk pass-through messages; see pgsentry/wire/scan.py."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_scan", NULL, -1, methods};

PyMODINIT_FUNC
PyInit__scan(void)
{
    return PyModule_Create(&module);
}
