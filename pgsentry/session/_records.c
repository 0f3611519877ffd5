/* Native twin of pgsentry.session.records: the Record type, its audit line, and respond(),
 * the per-response hot path (what every CommandComplete and ReadyForQuery costs).
 *
 * records.py holds the reference Python version of each piece (PyRecord, py_respond and
 * encode.statement_line); tests/session/test_native_records.py checks that both give the
 * same records, audit lines and histogram. Python helpers for the rare cases (a verdict's
 * audit members not built yet, statement and portal names, text that is not valid UTF-8)
 * are handed in once by records.py through _setup().
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <string.h>
#include <time.h>

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

/* Handed in by records._setup(): see setup() below. */
static PyObject *audit_tail_fn;    /* decider.audit_tail(verdict) -> (all, first, second) */
static PyObject *names_member_fn;  /* records._names_member(statement_name, portal) -> bytes */
static PyObject *names_cache;      /* records._names_json, the cache behind it */
static PyObject *hold_member_fn;   /* records._hold_member(hold_id) -> bytes */
static PyObject *json_value_fn;    /* encode.json_value(str) -> bytes (invalid UTF-8 text) */
static PyObject *protocol_members; /* dict: protocol -> b',"protocol":"..."' */
static PyObject *histogram;        /* metrics.STATEMENT_DURATION (bounds, counts, sum) */
static PyObject *lexical_key_fn;   /* analysis.lexical.lexical_key(str) -> str | None */
static Py_ssize_t max_keyed_text;  /* analyzer.MAX_CACHED_TEXT */
static PyObject *empty_tuple;

static PyObject *s_queue, *s_done_batches, *s_popleft, *s_counts, *s_bounds, *s_sum,
    *s_extended, *s_audit_tail, *s_simple, *s_append, *s_sent_batches, *s_by_lexical,
    *s_generation, *s_holder, *s_policy, *s_plain_labels, *s_empty;

static PyTypeObject RecordType;

static double
clock_seconds(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
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

static PyObject *
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

/* ------------------------------------------------------------------ JSON line */

typedef struct {
    char *p;
    Py_ssize_t len;
    Py_ssize_t cap;
    char local[1024];
} Buf;

static int
buf_grow(Buf *b, Py_ssize_t extra)
{
    Py_ssize_t need = b->len + extra;
    if (need <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap * 2 > need ? b->cap * 2 : need;
    char *p;
    if (b->p == b->local) {
        p = PyMem_Malloc((size_t)cap);
        if (p != NULL)
            memcpy(p, b->local, (size_t)b->len);
    }
    else
        p = PyMem_Realloc(b->p, (size_t)cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static int
buf_put(Buf *b, const char *s, Py_ssize_t n)
{
    if (buf_grow(b, n) < 0)
        return -1;
    memcpy(b->p + b->len, s, (size_t)n);
    b->len += n;
    return 0;
}

#define PUT_LIT(b, s) buf_put((b), (s), (Py_ssize_t)(sizeof(s) - 1))

static int
buf_put_bytes(Buf *b, PyObject *o)
{
    if (!PyBytes_Check(o)) {
        PyErr_SetString(PyExc_TypeError, "audit fragment must be bytes");
        return -1;
    }
    return buf_put(b, PyBytes_AS_STRING(o), PyBytes_GET_SIZE(o));
}

static const char hexdigits[] = "0123456789abcdef";

/* A JSON string exactly as orjson writes it: ", \ and control characters escaped,
 * everything else (DEL, non-ASCII) as UTF-8. Text that has no UTF-8 form (lone
 * surrogates) goes through encode.json_value, as the Python version does. */
static int
buf_put_json_str(Buf *b, PyObject *s)
{
    if (!PyUnicode_Check(s)) {
        PyErr_SetString(PyExc_TypeError, "expected a str");
        return -1;
    }
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    if (u == NULL) {
        PyErr_Clear();
        PyObject *encoded = PyObject_CallOneArg(json_value_fn, s);
        if (encoded == NULL)
            return -1;
        int rc = buf_put_bytes(b, encoded);
        Py_DECREF(encoded);
        return rc;
    }
    if (buf_grow(b, n * 6 + 2) < 0)
        return -1;
    char *out = b->p + b->len;
    *out++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)u[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *out++ = (char)c;
            continue;
        }
        *out++ = '\\';
        switch (c) {
        case '"': *out++ = '"'; break;
        case '\\': *out++ = '\\'; break;
        case '\b': *out++ = 'b'; break;
        case '\t': *out++ = 't'; break;
        case '\n': *out++ = 'n'; break;
        case '\f': *out++ = 'f'; break;
        case '\r': *out++ = 'r'; break;
        default:
            *out++ = 'u';
            *out++ = '0';
            *out++ = '0';
            *out++ = hexdigits[c >> 4];
            *out++ = hexdigits[c & 15];
        }
    }
    *out++ = '"';
    b->len = out - b->p;
    return 0;
}

static int
buf_put_json_opt_str(Buf *b, PyObject *s)
{
    if (s == Py_None)
        return PUT_LIT(b, "null");
    return buf_put_json_str(b, s);
}

/* A decimal integer, zero-padded to `width` digits (what "%0*lld" writes, without printf). */
static int
buf_put_int(Buf *b, long long v, int width)
{
    char tmp[24];
    char *end = tmp + sizeof tmp, *p = end;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    while (end - p < width)
        *--p = '0';
    if (v < 0)
        *--p = '-';
    return buf_put(b, p, end - p);
}

/* Python's round(): to nearest, ties to even (the default rounding mode). */
static int
round_even(double x, long long *out)
{
    double r = nearbyint(x);
    if (!(r > -9.0e18 && r < 9.0e18)) {
        PyErr_SetString(PyExc_OverflowError, "audit timestamp or duration out of range");
        return -1;
    }
    *out = (long long)r;
    return 0;
}

/* Python's divmod() for a positive divisor. */
static void
floor_divmod(long long x, long long d, long long *q, long long *r)
{
    *q = x / d;
    *r = x % d;
    if (*r < 0) {
        *r += d;
        *q -= 1;
    }
}

static long long ts_cached_seconds = -1;
static char ts_prefix[32];
static Py_ssize_t ts_prefix_len;

/* "YYYY-MM-DDTHH:MM:SS." for a UTC second, cached (encode.format_ts_bytes). */
static int
buf_put_ts_prefix(Buf *b, long long seconds)
{
    if (seconds != ts_cached_seconds) {
        time_t t = (time_t)seconds;
        struct tm tm;
        if (gmtime_r(&t, &tm) == NULL) {
            PyErr_SetString(PyExc_OverflowError, "timestamp out of range");
            return -1;
        }
        ts_prefix_len = (Py_ssize_t)strftime(ts_prefix, sizeof ts_prefix, "%Y-%m-%dT%H:%M:%S.", &tm);
        ts_cached_seconds = seconds;
    }
    return buf_put(b, ts_prefix, ts_prefix_len);
}

/* decider.audit_tail(verdict), read straight from the verdict when it is built. */
static PyObject *
verdict_tails(PyObject *verdict)
{
    PyObject *tails = PyObject_GetAttr(verdict, s_audit_tail);
    if (tails == NULL)
        return NULL;
    if (tails == Py_None) {
        Py_DECREF(tails);
        tails = PyObject_CallOneArg(audit_tail_fn, verdict);
        if (tails == NULL)
            return NULL;
    }
    if (!PyTuple_Check(tails) || PyTuple_GET_SIZE(tails) != 3) {
        Py_DECREF(tails);
        PyErr_SetString(PyExc_TypeError, "audit_tail must be a 3-tuple");
        return NULL;
    }
    return tails;
}

static int
observe_duration(double duration)
{
    PyObject *bounds = PyObject_GetAttr(histogram, s_bounds);
    if (bounds == NULL)
        return -1;
    PyObject *counts = PyObject_GetAttr(histogram, s_counts);
    if (counts == NULL) {
        Py_DECREF(bounds);
        return -1;
    }
    int rc = -1;
    if (!PyTuple_Check(bounds) || !PyList_Check(counts) ||
        PyList_GET_SIZE(counts) != PyTuple_GET_SIZE(bounds) + 1) {
        PyErr_SetString(PyExc_TypeError, "histogram: bounds tuple and counts list expected");
        goto done;
    }
    Py_ssize_t lo = 0, hi = PyTuple_GET_SIZE(bounds);
    while (lo < hi) { /* bisect_left */
        Py_ssize_t mid = (lo + hi) / 2;
        double bound = PyFloat_AsDouble(PyTuple_GET_ITEM(bounds, mid));
        if (bound == -1.0 && PyErr_Occurred())
            goto done;
        if (bound < duration)
            lo = mid + 1;
        else
            hi = mid;
    }
    PyObject *old = PyList_GET_ITEM(counts, lo);
    Py_ssize_t count = PyLong_AsSsize_t(old);
    if (count == -1 && PyErr_Occurred())
        goto done;
    PyObject *new = PyLong_FromSsize_t(count + 1);
    if (new == NULL)
        goto done;
    PyList_SET_ITEM(counts, lo, new);
    Py_DECREF(old);
    PyObject *sum = PyObject_GetAttr(histogram, s_sum);
    if (sum == NULL)
        goto done;
    double total = PyFloat_AsDouble(sum);
    Py_DECREF(sum);
    if (total == -1.0 && PyErr_Occurred())
        goto done;
    PyObject *newsum = PyFloat_FromDouble(total + duration);
    if (newsum == NULL)
        goto done;
    rc = PyObject_SetAttr(histogram, s_sum, newsum);
    Py_DECREF(newsum);
done:
    Py_DECREF(bounds);
    Py_DECREF(counts);
    return rc;
}

/* The members after "sqlstate" (see PyRecord.audit_line / _extra_members). */
static int
buf_put_tail(Buf *b, RecordObject *rec)
{
    PyObject *tails = verdict_tails(rec->verdict);
    if (tails == NULL)
        return -1;
    int rc = -1;
    if (rec->statement_name == Py_None && rec->hold_id == Py_None) {
        rc = buf_put_bytes(b, PyTuple_GET_ITEM(tails, 0));
        goto done;
    }
    if (buf_put_bytes(b, PyTuple_GET_ITEM(tails, 1)) < 0)
        goto done;
    PyObject *key = PyTuple_Pack(2, rec->statement_name, rec->portal);
    if (key == NULL)
        goto done;
    PyObject *names = PyDict_GetItemWithError(names_cache, key); /* the common case */
    Py_DECREF(key);
    if (names != NULL)
        Py_INCREF(names);
    else if (!PyErr_Occurred())
        names = PyObject_CallFunctionObjArgs(names_member_fn, rec->statement_name, rec->portal,
                                             NULL);
    if (names == NULL)
        goto done;
    int put = buf_put_bytes(b, names);
    Py_DECREF(names);
    if (put < 0 || buf_put_bytes(b, PyTuple_GET_ITEM(tails, 2)) < 0)
        goto done;
    if (rec->hold_id != Py_None) {
        PyObject *hold = PyObject_CallOneArg(hold_member_fn, rec->hold_id);
        if (hold == NULL)
            goto done;
        put = buf_put_bytes(b, hold);
        Py_DECREF(hold);
        if (put < 0)
            goto done;
    }
    rc = 0;
done:
    Py_DECREF(tails);
    return rc;
}

static int
buf_put_command_tag(Buf *b, PyObject *tags)
{
    if (!PyList_Check(tags)) {
        PyErr_SetString(PyExc_TypeError, "Record.tags must be a list");
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(tags);
    if (n == 0)
        return PUT_LIT(b, "null");
    if (n == 1)
        return buf_put_json_str(b, PyList_GET_ITEM(tags, 0));
    PyObject *sep = PyUnicode_FromString("; ");
    if (sep == NULL)
        return -1;
    PyObject *joined = PyUnicode_Join(sep, tags);
    Py_DECREF(sep);
    if (joined == NULL)
        return -1;
    int rc = buf_put_json_str(b, joined);
    Py_DECREF(joined);
    return rc;
}

/* PyRecord._line: the "statement" record (one JSON line) of a statement that took
 * `duration` seconds. */
static PyObject *
line_for(RecordObject *rec, PyObject *head, double duration)
{
    if (histogram == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_records: _setup() was not called");
        return NULL;
    }
    PyObject *protocol = PyDict_GetItemWithError(protocol_members, rec->protocol);
    if (protocol == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetObject(PyExc_KeyError, rec->protocol);
        return NULL;
    }
    Buf b = {.p = NULL, .len = 0, .cap = sizeof b.local};
    b.p = b.local;
    PyObject *result = NULL;
    long long stamp, seconds, fraction, micros, millis, rest, started, started_s, started_us;
    if (round_even((rec->wall + duration) * 1000000.0, &stamp) < 0 ||
        round_even(duration * 1000000.0, &micros) < 0 ||
        round_even(rec->wall * 1000000.0, &started) < 0)
        return NULL;
    floor_divmod(stamp, 1000000, &seconds, &fraction);
    floor_divmod(micros, 1000, &millis, &rest);
    floor_divmod(started, 1000000, &started_s, &started_us);
    int put;
    if (PUT_LIT(&b, "{\"ts\":\"") < 0 || buf_put_ts_prefix(&b, seconds) < 0 ||
        buf_put_int(&b, fraction, 6) < 0 || PUT_LIT(&b, "Z\",\"event\":\"statement\",") < 0 ||
        buf_put_bytes(&b, head) < 0 || buf_put_bytes(&b, protocol) < 0 ||
        PUT_LIT(&b, ",\"text\":") < 0 || buf_put_json_str(&b, rec->text) < 0 ||
        PUT_LIT(&b, ",\"started_at\":") < 0 || buf_put_int(&b, started_s, 0) < 0 ||
        PUT_LIT(&b, ".") < 0 || buf_put_int(&b, started_us, 6) < 0 ||
        PUT_LIT(&b, ",\"duration_ms\":") < 0 || buf_put_int(&b, millis, 0) < 0 ||
        PUT_LIT(&b, ".") < 0 || buf_put_int(&b, rest, 3) < 0 ||
        PUT_LIT(&b, ",\"command_tag\":") < 0 || buf_put_command_tag(&b, rec->tags) < 0 ||
        PUT_LIT(&b, ",\"rows\":") < 0)
        goto done;
    if (rec->rows == Py_None) {
        if (PUT_LIT(&b, "null") < 0)
            goto done;
    }
    else {
        int overflow = 0;
        long long rows = PyLong_Check(rec->rows) ? PyLong_AsLongLongAndOverflow(rec->rows, &overflow)
                                                 : (overflow = 1, 0);
        if (rows == -1 && PyErr_Occurred())
            goto done;
        if (overflow) {
            PyObject *text = PyObject_Str(rec->rows);
            if (text == NULL)
                goto done;
            Py_ssize_t len;
            const char *s = PyUnicode_AsUTF8AndSize(text, &len);
            put = s == NULL ? -1 : buf_put(&b, s, len);
            Py_DECREF(text);
            if (put < 0)
                goto done;
        }
        else if (buf_put_int(&b, rows, 0) < 0)
            goto done;
    }
    if (PUT_LIT(&b, ",\"sqlstate\":") < 0 || buf_put_json_opt_str(&b, rec->sqlstate) < 0 ||
        buf_put_tail(&b, rec) < 0 || PUT_LIT(&b, "}\n") < 0)
        goto done;
    result = PyBytes_FromStringAndSize(b.p, b.len);
done:
    if (b.p != b.local)
        PyMem_Free(b.p);
    return result;
}

/* PyRecord.audit_line: the finished statement's audit record (and its duration in the
 * histogram). */
static PyObject *
audit_line(RecordObject *rec, PyObject *head)
{
    if (histogram == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_records: _setup() was not called");
        return NULL;
    }
    double duration = clock_seconds(CLOCK_MONOTONIC) - rec->started;
    if (observe_duration(duration) < 0)
        return NULL;
    return line_for(rec, head, duration);
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
    {"rows", T_OBJECT, OFF(rows), 0, NULL},
    {"sqlstate", T_OBJECT, OFF(sqlstate), 0, NULL},
    {"hold_id", T_OBJECT, OFF(hold_id), 0, NULL},
    {"effects", T_OBJECT, OFF(effects), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject RecordType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "pgsentry.session._records.Record",
    .tp_basicsize = sizeof(RecordObject),
    .tp_dealloc = (destructor)record_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One statement on its way: a Query, an Execute, or a FunctionCall.",
    .tp_methods = record_methods,
    .tp_members = record_members,
    .tp_new = record_new,
    .tp_vectorcall = record_vectorcall,
};

/* ------------------------------------------------------------------ respond */

/* Audit a finished record: effects and holds go to the session (emit_record), the rest
 * become one audit line here (emit_line). */
static int
finish(RecordObject *rec, PyObject *head, PyObject *emit_line, PyObject *emit_record)
{
    PyObject *r;
    if (rec->hold_id != Py_None || !PyTuple_Check(rec->effects) || PyTuple_GET_SIZE(rec->effects))
        r = PyObject_CallOneArg(emit_record, (PyObject *)rec);
    else {
        PyObject *line = audit_line(rec, head);
        if (line == NULL)
            return -1;
        r = PyObject_CallOneArg(emit_line, line);
        Py_DECREF(line);
    }
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* queue[0] as a Record (borrowed), NULL when the queue is empty (no error set). */
static RecordObject *
queue_head(PyObject *queue)
{
    if (PySequence_Length(queue) <= 0)
        return NULL;
    PyObject *first = PySequence_GetItem(queue, 0);
    if (first == NULL)
        return NULL;
    Py_DECREF(first); /* the queue keeps it alive until popleft */
    if (!PyObject_TypeCheck(first, &RecordType)) {
        PyErr_SetString(PyExc_TypeError, "in-flight queue holds a non-Record");
        return NULL;
    }
    return (RecordObject *)first;
}

static int
pop_and_finish(PyObject *queue, PyObject *head, PyObject *emit_line, PyObject *emit_record)
{
    PyObject *rec = PyObject_CallMethodNoArgs(queue, s_popleft);
    if (rec == NULL)
        return -1;
    int rc = finish((RecordObject *)rec, head, emit_line, emit_record);
    Py_DECREF(rec);
    return rc;
}

/* rows += int(digits) (rows None counts as 0). */
static int
add_rows(RecordObject *rec, const char *digits, Py_ssize_t n)
{
    PyObject *count;
    if (n <= 18) {
        long long v = 0;
        for (Py_ssize_t i = 0; i < n; i++)
            v = v * 10 + (digits[i] - '0');
        count = PyLong_FromLongLong(v);
    }
    else {
        char *copy = PyMem_Malloc((size_t)n + 1);
        if (copy == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(copy, digits, (size_t)n);
        copy[n] = '\0';
        count = PyLong_FromString(copy, NULL, 10);
        PyMem_Free(copy);
    }
    if (count == NULL)
        return -1;
    if (rec->rows != Py_None) {
        PyObject *sum = PyNumber_Add(rec->rows, count);
        Py_DECREF(count);
        if (sum == NULL)
            return -1;
        count = sum;
    }
    Py_SETREF(rec->rows, count);
    return 0;
}

/* CommandComplete: its tag (and row count) on the oldest record (InFlight.add_tag). */
static int
command_complete(PyObject *queue, const char *body, Py_ssize_t len, PyObject *head,
                 PyObject *emit_line, PyObject *emit_record)
{
    RecordObject *rec = queue_head(queue);
    if (rec == NULL)
        return PyErr_Occurred() ? -1 : 0;
    while (len > 0 && body[len - 1] == '\0')
        len--;
    PyObject *tag = PyUnicode_DecodeUTF8(body, len, "replace");
    if (tag == NULL)
        return -1;
    int rc = PyList_Append(rec->tags, tag);
    Py_DECREF(tag);
    if (rc < 0)
        return -1;
    Py_ssize_t start = len;
    while (start > 0 && body[start - 1] != ' ')
        start--;
    if (start < len) {
        int digits = 1;
        for (Py_ssize_t i = start; i < len; i++)
            if (body[i] < '0' || body[i] > '9')
                digits = 0;
        if (digits && add_rows(rec, body + start, len - start) < 0)
            return -1;
    }
    if (rec->extended)
        return pop_and_finish(queue, head, emit_line, emit_record);
    return 0;
}

/* EmptyQueryResponse or PortalSuspended: the end of an Execute (InFlight.end_execute). */
static int
end_execute(PyObject *queue, PyObject *head, PyObject *emit_line, PyObject *emit_record)
{
    RecordObject *rec = queue_head(queue);
    if (rec == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!rec->extended)
        return 0;
    return pop_and_finish(queue, head, emit_line, emit_record);
}

/* ReadyForQuery: the oldest batch is done; audit every record that belonged to it. */
static int
ready(PyObject *inflight, PyObject *queue, PyObject *head, PyObject *emit_line,
      PyObject *emit_record)
{
    PyObject *done_obj = PyObject_GetAttr(inflight, s_done_batches);
    if (done_obj == NULL)
        return -1;
    Py_ssize_t done = PyLong_AsSsize_t(done_obj);
    Py_DECREF(done_obj);
    if (done == -1 && PyErr_Occurred())
        return -1;
    done += 1;
    done_obj = PyLong_FromSsize_t(done);
    if (done_obj == NULL)
        return -1;
    int rc = PyObject_SetAttr(inflight, s_done_batches, done_obj);
    Py_DECREF(done_obj);
    if (rc < 0)
        return -1;
    for (;;) {
        RecordObject *rec = queue_head(queue);
        if (rec == NULL)
            return PyErr_Occurred() ? -1 : 0;
        if (rec->batch > done)
            return 0;
        if (pop_and_finish(queue, head, emit_line, emit_record) < 0)
            return -1;
    }
}

static PyObject *
respond(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "respond(data, pos, table, inflight, head, emit_line, emit_record)");
        return NULL;
    }
    PyObject *data = args[0], *table = args[2], *inflight = args[3], *head = args[4];
    PyObject *emit_line = args[5], *emit_record = args[6];
    if (!PyBytes_Check(data) || !PyBytes_Check(table) || PyBytes_GET_SIZE(table) != 256) {
        PyErr_SetString(PyExc_TypeError, "respond: data must be bytes, table 256 bytes");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred())
        return NULL;
    if (pos < 0) {
        PyErr_SetString(PyExc_ValueError, "respond: pos must be >= 0");
        return NULL;
    }
    PyObject *queue = PyObject_GetAttr(inflight, s_queue);
    if (queue == NULL)
        return NULL;
    const unsigned char *buf = (const unsigned char *)PyBytes_AS_STRING(data);
    const unsigned char *tab = (const unsigned char *)PyBytes_AS_STRING(table);
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    PyObject *status = Py_NewRef(Py_None);
    int rc = 0;
    while (rc == 0 && pos + 5 <= n) {
        unsigned char t = buf[pos];
        unsigned long length = ((unsigned long)buf[pos + 1] << 24) |
                               ((unsigned long)buf[pos + 2] << 16) |
                               ((unsigned long)buf[pos + 3] << 8) | (unsigned long)buf[pos + 4];
        if (length < 4 || (unsigned long)(n - pos - 1) < length)
            break; /* malformed or incomplete: the walker takes over from here */
        Py_ssize_t end = pos + 1 + (Py_ssize_t)length;
        if (tab[t]) {
            const char *body = (const char *)buf + pos + 5;
            if (t == 'C')
                rc = command_complete(queue, body, end - pos - 5, head, emit_line, emit_record);
            else if (t == 'Z') {
                Py_SETREF(status, PyBytes_FromStringAndSize(body, length > 4 ? 1 : 0));
                rc = status == NULL ? -1 : ready(inflight, queue, head, emit_line, emit_record);
            }
            else if (t == 'I' || t == 's')
                rc = end_execute(queue, head, emit_line, emit_record);
            else
                break; /* everything else is the session's */
        }
        pos = end;
    }
    Py_DECREF(queue);
    if (rc < 0) {
        Py_XDECREF(status);
        return NULL;
    }
    PyObject *result = Py_BuildValue("(nN)", pos, status);
    return result;
}

/* ------------------------------------------------------------------ query_known */

/* decider.by_lexical[in_tx] when the decider's caches belong to the policy in force
 * (new reference), NULL with no error set when they do not (or are not built yet). */
static PyObject *
current_lexical_cache(PyObject *decider, int in_tx)
{
    PyObject *caches = PyObject_GetAttr(decider, s_by_lexical);
    if (caches == NULL || caches == Py_None) {
        Py_XDECREF(caches);
        return NULL;
    }
    PyObject *cache = NULL;
    PyObject *generation = PyObject_GetAttr(decider, s_generation);
    PyObject *holder = generation ? PyObject_GetAttr(decider, s_holder) : NULL;
    PyObject *policy = holder ? PyObject_GetAttr(holder, s_policy) : NULL;
    PyObject *current = policy ? PyObject_GetAttr(policy, s_generation) : NULL;
    if (current != NULL) {
        int same = PyObject_RichCompareBool(generation, current, Py_EQ);
        if (same > 0 && PyTuple_Check(caches) && PyTuple_GET_SIZE(caches) == 2) {
            cache = PyTuple_GET_ITEM(caches, in_tx ? 1 : 0);
            if (PyDict_Check(cache))
                Py_INCREF(cache);
            else
                cache = NULL;
        }
    }
    Py_XDECREF(current);
    Py_XDECREF(policy);
    Py_XDECREF(holder);
    Py_XDECREF(generation);
    Py_DECREF(caches);
    return cache;
}

/* counts[labels] += 1 (metrics.HotPathCounter.values). */
static int
count_labels(PyObject *counts, PyObject *labels)
{
    PyObject *old = PyDict_GetItemWithError(counts, labels);
    if (old == NULL && PyErr_Occurred())
        return -1;
    Py_ssize_t value = 0;
    if (old != NULL) {
        value = PyLong_AsSsize_t(old);
        if (value == -1 && PyErr_Occurred())
            return -1;
    }
    PyObject *new = PyLong_FromSsize_t(value + 1);
    if (new == NULL)
        return -1;
    int rc = PyDict_SetItem(counts, labels, new);
    Py_DECREF(new);
    return rc;
}

/* records.py_query_known: see there. */
static PyObject *
query_known(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "query_known(msg, decider, in_tx, inflight, to_server, counts)");
        return NULL;
    }
    PyObject *msg = args[0], *decider = args[1], *inflight = args[3], *to_server = args[4];
    PyObject *counts = args[5];
    if (lexical_key_fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_records: _setup() was not called");
        return NULL;
    }
    if (!PyBytes_Check(msg) || !PyList_Check(to_server) || !PyDict_Check(counts)) {
        PyErr_SetString(PyExc_TypeError, "query_known: bytes, list and dict expected");
        return NULL;
    }
    int in_tx = PyObject_IsTrue(args[2]);
    if (in_tx < 0)
        return NULL;
    const unsigned char *m = (const unsigned char *)PyBytes_AS_STRING(msg);
    Py_ssize_t n = PyBytes_GET_SIZE(msg), len = n - 6;
    if (n < 6 || m[0] != 'Q' || m[n - 1] != 0 || len > max_keyed_text)
        Py_RETURN_FALSE;
    for (Py_ssize_t i = 0; i < len; i++)
        if (m[5 + i] >= 0x80)
            Py_RETURN_FALSE; /* not ASCII: no lexical key */
    PyObject *cache = current_lexical_cache(decider, in_tx);
    if (cache == NULL)
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_False);
    PyObject *result = NULL, *key = NULL, *labels = NULL, *queue = NULL, *rec = NULL;
    PyObject *sql = PyUnicode_DecodeASCII((const char *)m + 5, len, "strict");
    if (sql == NULL)
        goto done;
    key = PyObject_CallOneArg(lexical_key_fn, sql);
    if (key == NULL)
        goto done;
    PyObject *verdict = key == Py_None ? NULL : PyDict_GetItemWithError(cache, key);
    if (verdict == NULL) {
        if (!PyErr_Occurred())
            result = Py_NewRef(Py_False);
        goto done;
    }
    Py_INCREF(verdict);
    labels = PyObject_GetAttr(verdict, s_plain_labels);
    if (labels == NULL || labels == Py_None) {
        if (labels != NULL)
            result = Py_NewRef(Py_False);
        Py_DECREF(verdict);
        goto done;
    }
    PyObject *sent_obj = PyObject_GetAttr(inflight, s_sent_batches);
    Py_ssize_t sent = sent_obj ? PyLong_AsSsize_t(sent_obj) : -1;
    Py_XDECREF(sent_obj);
    if (sent == -1 && PyErr_Occurred()) {
        Py_DECREF(verdict);
        goto done;
    }
    PyObject *record_args[4] = {s_simple, sql, verdict, NULL};
    PyObject *batch = PyLong_FromSsize_t(sent + 1);
    if (batch == NULL) {
        Py_DECREF(verdict);
        goto done;
    }
    record_args[3] = batch;
    rec = record_vectorcall((PyObject *)&RecordType, record_args, 4, NULL);
    Py_DECREF(verdict);
    if (rec == NULL) {
        Py_DECREF(batch);
        goto done;
    }
    queue = PyObject_GetAttr(inflight, s_queue);
    PyObject *appended = queue ? PyObject_CallMethodOneArg(queue, s_append, rec) : NULL;
    if (appended == NULL) {
        Py_DECREF(batch);
        goto done;
    }
    Py_DECREF(appended);
    int rc = PyObject_SetAttr(inflight, s_sent_batches, batch);
    Py_DECREF(batch);
    if (rc < 0 || PyList_Append(to_server, msg) < 0 || count_labels(counts, labels) < 0)
        goto done;
    result = Py_NewRef(Py_True);
done:
    Py_XDECREF(rec);
    Py_XDECREF(queue);
    Py_XDECREF(labels);
    Py_XDECREF(key);
    Py_XDECREF(sql);
    Py_DECREF(cache);
    return result;
}

/* ------------------------------------------------------------------ execute_batch */

/* The end of the NUL-terminated string at `pos` (before `end`), or -1. */
static Py_ssize_t
cstring_end(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t end)
{
    const unsigned char *nul = memchr(buf + pos, 0, (size_t)(end - pos));
    return nul == NULL ? -1 : nul - buf;
}

/* protocol.cstring: a name, "" for the unnamed one. */
static PyObject *
decode_name(const unsigned char *buf, Py_ssize_t start, Py_ssize_t nul)
{
    if (nul == start)
        return Py_NewRef(s_empty);
    return PyUnicode_DecodeUTF8((const char *)buf + start, nul - start, "surrogateescape");
}

/* Pass 1 of execute_batch: only whole Bind / Execute / Sync messages (and pass-through
 * ones between them), their names terminated, the last one a Sync ending the chunk. */
static int
is_execute_batch(const unsigned char *buf, Py_ssize_t n, const unsigned char *tab)
{
    Py_ssize_t pos = 0, last_end = -1;
    unsigned char last = 0;
    while (pos < n) {
        if (pos + 5 > n)
            return 0;
        unsigned char t = buf[pos];
        unsigned long length = ((unsigned long)buf[pos + 1] << 24) |
                               ((unsigned long)buf[pos + 2] << 16) |
                               ((unsigned long)buf[pos + 3] << 8) | (unsigned long)buf[pos + 4];
        if (length < 4 || (unsigned long)(n - pos - 1) < length)
            return 0;
        Py_ssize_t end = pos + 1 + (Py_ssize_t)length;
        if (tab[t]) {
            if (t == 'B') {
                Py_ssize_t portal = cstring_end(buf, pos + 5, end);
                if (portal < 0 || cstring_end(buf, portal + 1, end) < 0)
                    return 0;
            }
            else if (t == 'E') {
                if (cstring_end(buf, pos + 5, end) < 0)
                    return 0;
            }
            else if (t != 'S')
                return 0;
            last = t;
            last_end = end;
        }
        pos = end;
    }
    return last == 'S' && last_end == n;
}

/* records.py_execute_batch: see there. */
static PyObject *
execute_batch(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError,
                        "execute_batch(data, table, portals, statements, unknown, inflight, "
                        "to_server, note_effects)");
        return NULL;
    }
    PyObject *data = args[0], *table = args[1], *portals = args[2], *statements = args[3];
    PyObject *unknown = args[4], *inflight = args[5], *to_server = args[6], *note = args[7];
    if (!PyBytes_Check(data) || !PyBytes_Check(table) || PyBytes_GET_SIZE(table) != 256 ||
        !PyDict_Check(portals) || !PyDict_Check(statements) || !PyList_Check(to_server)) {
        PyErr_SetString(PyExc_TypeError, "execute_batch: bad argument types");
        return NULL;
    }
    const unsigned char *buf = (const unsigned char *)PyBytes_AS_STRING(data);
    const unsigned char *tab = (const unsigned char *)PyBytes_AS_STRING(table);
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    if (!is_execute_batch(buf, n, tab))
        Py_RETURN_FALSE;
    PyObject *sent_obj = PyObject_GetAttr(inflight, s_sent_batches);
    if (sent_obj == NULL)
        return NULL;
    Py_ssize_t sent = PyLong_AsSsize_t(sent_obj);
    Py_DECREF(sent_obj);
    if (sent == -1 && PyErr_Occurred())
        return NULL;
    PyObject *queue = PyObject_GetAttr(inflight, s_queue);
    if (queue == NULL)
        return NULL;
    int rc = 0;
    Py_ssize_t pos = 0;
    while (rc == 0 && pos < n) {
        unsigned char t = buf[pos];
        Py_ssize_t end = pos + 1 + (Py_ssize_t)(((unsigned long)buf[pos + 1] << 24) |
                                                ((unsigned long)buf[pos + 2] << 16) |
                                                ((unsigned long)buf[pos + 3] << 8) |
                                                (unsigned long)buf[pos + 4]);
        if (t == 'S' && tab[t])
            sent += 1;
        else if (t == 'B' && tab[t]) { /* the portal runs this statement */
            Py_ssize_t p_nul = cstring_end(buf, pos + 5, end);
            Py_ssize_t s_nul = cstring_end(buf, p_nul + 1, end);
            PyObject *portal = decode_name(buf, pos + 5, p_nul);
            PyObject *stmt = portal ? decode_name(buf, p_nul + 1, s_nul) : NULL;
            rc = stmt == NULL ? -1 : PyDict_SetItem(portals, portal, stmt);
            Py_XDECREF(portal);
            Py_XDECREF(stmt);
        }
        else if (t == 'E' && tab[t]) { /* the in-flight record of the portal's statement */
            rc = -1;
            PyObject *portal = decode_name(buf, pos + 5, cstring_end(buf, pos + 5, end));
            if (portal == NULL)
                break;
            PyObject *stmt = PyDict_GetItemWithError(portals, portal);
            if (stmt == NULL && PyErr_Occurred()) {
                Py_DECREF(portal);
                break;
            }
            if (stmt == NULL)
                stmt = s_empty;
            Py_INCREF(stmt);
            PyObject *entry = PyDict_GetItemWithError(statements, stmt);
            if (entry == NULL && !PyErr_Occurred())
                entry = unknown;
            PyObject *batch = entry ? PyLong_FromSsize_t(sent + 1) : NULL;
            PyObject *rec = NULL;
            if (batch != NULL && PyTuple_Check(entry) && PyTuple_GET_SIZE(entry) == 2) {
                PyObject *rec_args[6] = {s_extended, PyTuple_GET_ITEM(entry, 0),
                                         PyTuple_GET_ITEM(entry, 1), batch, stmt, portal};
                Py_INCREF(entry); /* note_effects may change `statements` */
                rec = record_vectorcall((PyObject *)&RecordType, rec_args, 6, NULL);
                PyObject *done = rec ? PyObject_CallMethodOneArg(queue, s_append, rec) : NULL;
                if (done != NULL) {
                    Py_DECREF(done);
                    rc = 0;
                    PyObject *labels = PyObject_GetAttr(PyTuple_GET_ITEM(entry, 1), s_plain_labels);
                    if (labels == NULL)
                        rc = -1;
                    else if (labels == Py_None) {
                        PyObject *r = PyObject_CallFunctionObjArgs(
                            note, rec, PyTuple_GET_ITEM(entry, 0), PyTuple_GET_ITEM(entry, 1), NULL);
                        rc = r == NULL ? -1 : 0;
                        Py_XDECREF(r);
                    }
                    Py_XDECREF(labels);
                }
                Py_DECREF(entry);
            }
            else if (batch != NULL)
                PyErr_SetString(PyExc_TypeError, "execute_batch: statements hold (sql, verdict)");
            Py_XDECREF(rec);
            Py_XDECREF(batch);
            Py_DECREF(stmt);
            Py_DECREF(portal);
        }
        pos = end;
    }
    Py_DECREF(queue);
    if (rc < 0)
        return NULL;
    PyObject *sent_new = PyLong_FromSsize_t(sent);
    if (sent_new == NULL)
        return NULL;
    rc = PyObject_SetAttr(inflight, s_sent_batches, sent_new);
    Py_DECREF(sent_new);
    if (rc < 0 || PyList_Append(to_server, data) < 0)
        return NULL;
    Py_RETURN_TRUE;
}

static PyObject *
setup(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError,
                        "_setup(audit_tail, names_member, names_cache, hold_member, json_value, "
                        "protocol_members, histogram, lexical_key, max_keyed_text)");
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
    Py_XSETREF(histogram, Py_NewRef(args[6]));
    Py_XSETREF(lexical_key_fn, Py_NewRef(args[7]));
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
    if (PyType_Ready(&RecordType) < 0)
        return NULL;
#define INTERN(var, text)                               \
    if ((var = PyUnicode_InternFromString(text)) == NULL) \
        return NULL;
    INTERN(s_queue, "queue");
    INTERN(s_done_batches, "done_batches");
    INTERN(s_popleft, "popleft");
    INTERN(s_counts, "counts");
    INTERN(s_bounds, "bounds");
    INTERN(s_sum, "sum");
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
    empty_tuple = PyTuple_New(0);
    if (empty_tuple == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Record", (PyObject *)&RecordType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
