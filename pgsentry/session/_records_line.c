/* The "statement" audit line of a finished Record, byte for byte what
 * encode.statement_line writes (see PyRecord.audit_line), and the statement duration
 * histogram (metrics.HotPathHistogram.observe). Part of pgsentry.session._records.
 */
#include "_records.h"

#include <math.h>
#include <string.h>

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

/* The bytes a JSON string cannot hold as they are: control characters, '"' and '\\'. */
static const unsigned char json_escaped[256] = {
    [0x00 ... 0x1f] = 1,
    ['"'] = 1,
    ['\\'] = 1,
};

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
    for (Py_ssize_t i = 0; i < n;) {
        Py_ssize_t run = i; /* the characters written as they are, copied at once */
        while (run < n && !json_escaped[(unsigned char)u[run]])
            run++;
        memcpy(out, u + i, (size_t)(run - i));
        out += run - i;
        if (run == n)
            break;
        unsigned char c = (unsigned char)u[run];
        i = run + 1;
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
    static SlotCache c_audit_tail;
    PyObject *tails = slot_get(verdict, s_audit_tail, &c_audit_tail);
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
    /* metrics.HotPathHistogram.observe: `bounds`, `counts` and `sums` were taken at
     * _setup() (the histogram updates its lists in place, never rebinds them). */
    Py_ssize_t lo = 0, hi = PyTuple_GET_SIZE(hist_bounds);
    while (lo < hi) { /* bisect_left */
        Py_ssize_t mid = (lo + hi) / 2;
        double bound = PyFloat_AsDouble(PyTuple_GET_ITEM(hist_bounds, mid));
        if (bound == -1.0 && PyErr_Occurred())
            return -1;
        if (bound < duration)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (PyList_GET_SIZE(hist_counts) <= lo || PyList_GET_SIZE(hist_sums) != 1) {
        PyErr_SetString(PyExc_RuntimeError, "histogram lists changed size");
        return -1;
    }
    PyObject *old = PyList_GET_ITEM(hist_counts, lo);
    Py_ssize_t count = PyLong_AsSsize_t(old);
    if (count == -1 && PyErr_Occurred())
        return -1;
    PyObject *new = PyLong_FromSsize_t(count + 1);
    if (new == NULL)
        return -1;
    PyList_SET_ITEM(hist_counts, lo, new);
    Py_DECREF(old);
    old = PyList_GET_ITEM(hist_sums, 0);
    double total = PyFloat_AsDouble(old);
    if (total == -1.0 && PyErr_Occurred())
        return -1;
    new = PyFloat_FromDouble(total + duration);
    if (new == NULL)
        return -1;
    PyList_SET_ITEM(hist_sums, 0, new);
    Py_DECREF(old);
    return 0;
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
PyObject *
line_for(RecordObject *rec, PyObject *head, double duration)
{
    if (hist_sums == NULL) {
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
PyObject *
audit_line(RecordObject *rec, PyObject *head)
{
    if (hist_sums == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_records: _setup() was not called");
        return NULL;
    }
    double duration = clock_seconds(CLOCK_MONOTONIC) - rec->started;
    if (observe_duration(duration) < 0)
        return NULL;
    return line_for(rec, head, duration);
}

