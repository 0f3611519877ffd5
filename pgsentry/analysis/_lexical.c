/* Native lexical shape key for pgsentry.analysis.lexical (see lexical.py for the rules).
 *
 * lexical_key(text) -> str | None. The text, read as tokens the way PostgreSQL's scanner
 * reads them, with every constant replaced by "?":
 *   '...'   a string whose characters are all in the lexical alphabet (so no quote of
 *           either kind, no backslash)                        -> "?"
 *   "..."   a quoted identifier of printable ASCII without ' -> kept as it is
 *   a run of digits with an optional .digits fraction that starts and ends at a word
 *   boundary (word characters: letters, digits, underscore)    -> "?"
 *   any other character of the alphabet: ASCII letters, digits, space, tab, CR, LF and
 *   _ , . ( ) = < > * + - ;                                    -> kept as it is
 * None for anything else: a character outside the alphabet (outside quoted identifiers),
 * a quote that is not closed, "--" anywhere, or two constants side by side ("??": '?' is
 * not in the alphabet; 'it''s' is one string to PostgreSQL, 1'a' a syntax error).
 * The regular expressions of the Python twin give the same result for every text.
 * One pass; no allocation besides the result.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static unsigned char alphabet[256]; /* outside quotes; the quote characters are not in it */
static unsigned char word[256];

static int
is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static PyObject *
lexical_key(PyObject *self, PyObject *arg)
{
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "lexical_key: str expected");
        return NULL;
    }
    if (PyUnicode_READY(arg) < 0)
        return NULL;
    if (!PyUnicode_IS_ASCII(arg))
        Py_RETURN_NONE;
    const unsigned char *s = (const unsigned char *)PyUnicode_DATA(arg);
    Py_ssize_t n = PyUnicode_GET_LENGTH(arg);
    for (Py_ssize_t i = 0; i + 1 < n; i++) {
        if (s[i] == '-' && s[i + 1] == '-')
            Py_RETURN_NONE;
    }
    char small[512];
    char *out = n <= (Py_ssize_t)sizeof(small) ? small : PyMem_Malloc((size_t)n);
    if (out == NULL)
        return PyErr_NoMemory();
    Py_ssize_t o = 0, i = 0;
#define CONSTANT()                                                                         \
    do {                                                                                   \
        if (o > 0 && out[o - 1] == '?')                                                    \
            goto none;                                                                     \
        out[o++] = '?';                                                                    \
    } while (0)
    while (i < n) {
        unsigned char c = s[i];
        if (c == '\'') {
            Py_ssize_t j = i + 1;
            while (j < n && s[j] != '\'') {
                if (!alphabet[s[j]])
                    goto none;
                j++;
            }
            if (j == n)
                goto none;
            CONSTANT();
            i = j + 1;
            continue;
        }
        if (c == '"') {
            Py_ssize_t j = i + 1;
            while (j < n && s[j] != '"') {
                if (s[j] < 0x20 || s[j] > 0x7e || s[j] == '\'')
                    goto none;
                j++;
            }
            if (j == n)
                goto none;
            memcpy(out + o, s + i, (size_t)(j + 1 - i));
            o += j + 1 - i;
            i = j + 1;
            continue;
        }
        if (!alphabet[c])
            goto none;
        if (is_digit(c) && (i == 0 || !word[s[i - 1]])) {
            Py_ssize_t j = i;
            while (j < n && is_digit(s[j]))
                j++;
            if (j + 1 < n && s[j] == '.' && is_digit(s[j + 1])) {
                Py_ssize_t k = j + 1;
                while (k < n && is_digit(s[k]))
                    k++;
                if (k == n || !word[s[k]]) {
                    CONSTANT();
                    i = k;
                    continue;
                }
            }
            if (j == n || !word[s[j]]) {
                CONSTANT();
                i = j;
                continue;
            }
        }
        out[o++] = (char)c;
        i++;
    }
#undef CONSTANT
    PyObject *result = PyUnicode_FromStringAndSize(out, o);
    if (out != small)
        PyMem_Free(out);
    return result;
none:
    if (out != small)
        PyMem_Free(out);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"lexical_key", lexical_key, METH_O, "Shape key of a text; see pgsentry/analysis/lexical.py."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_lexical", NULL, -1, methods};

PyMODINIT_FUNC
PyInit__lexical(void)
{
    const char *letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_";
    for (const char *p = letters; *p; p++)
        alphabet[(unsigned char)*p] = word[(unsigned char)*p] = 1;
    for (const char *p = " \t\n\r,.()=<>*+-;"; *p; p++)
        alphabet[(unsigned char)*p] = 1;
    return PyModule_Create(&module);
}
