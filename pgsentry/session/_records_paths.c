/* The hot paths of pgsentry.session._records, each the twin of a records.py function:
 * respond() (py_respond), query_known() (py_query_known), execute_batch()
 * (py_execute_batch). Python helpers and interned names: see _records.h.
 */
#include "_records.h"

#include <string.h>


/* The length field of the message whose type byte is at `pos` (big-endian, 4 bytes). */
static inline unsigned long
message_length(const unsigned char *buf, Py_ssize_t pos)
{
    return ((unsigned long)buf[pos + 1] << 24) | ((unsigned long)buf[pos + 2] << 16) |
           ((unsigned long)buf[pos + 3] << 8) | (unsigned long)buf[pos + 4];
}

/* Where the attributes read and written below live (see SlotCache in _records.h). */
static SlotCache c_action, c_by_lexical, c_decider_generation, c_decision, c_done_batches, c_holder, c_plain_labels, c_policy, c_policy_generation, c_queue, c_sent_batches;

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
    Py_INCREF(rec); /* kept across calls that may run Python code */
    int rc = -1;
    while (len > 0 && body[len - 1] == '\0')
        len--;
    PyObject *tag = PyUnicode_DecodeUTF8(body, len, "replace");
    if (tag == NULL)
        goto done;
    int appended = PyList_Append(rec->tags, tag);
    Py_DECREF(tag);
    if (appended < 0)
        goto done;
    Py_ssize_t start = len;
    while (start > 0 && body[start - 1] != ' ')
        start--;
    if (start < len) {
        int digits = 1;
        for (Py_ssize_t i = start; i < len; i++)
            if (body[i] < '0' || body[i] > '9')
                digits = 0;
        if (digits && add_rows(rec, body + start, len - start) < 0)
            goto done;
    }
    rc = rec->extended ? pop_and_finish(queue, head, emit_line, emit_record) : 0;
done:
    Py_DECREF(rec);
    return rc;
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
    PyObject *done_obj = slot_get(inflight, s_done_batches, &c_done_batches);
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
    int rc = slot_set(inflight, s_done_batches, done_obj, &c_done_batches);
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

/* respond() without its argument checks and result tuple (also the Lane's): returns where
 * it stopped, or -1 with an exception set; *status_out becomes the last ReadyForQuery's
 * status (a new reference) or stays NULL. data is bytes, table 256 bytes, 0 <= pos <= len. */
Py_ssize_t
respond_at(PyObject *data, Py_ssize_t pos, PyObject *table, PyObject *inflight, PyObject *head,
           PyObject *emit_line, PyObject *emit_record, PyObject **status_out)
{
    PyObject *queue = slot_get(inflight, s_queue, &c_queue);
    if (queue == NULL)
        return -1;
    const unsigned char *buf = (const unsigned char *)PyBytes_AS_STRING(data);
    const unsigned char *tab = (const unsigned char *)PyBytes_AS_STRING(table);
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    PyObject *status = Py_NewRef(Py_None);
    int rc = 0;
    while (rc == 0 && pos + 5 <= n) {
        unsigned char t = buf[pos];
        unsigned long length = message_length(buf, pos);
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
        return -1;
    }
    if (status == Py_None)
        Py_DECREF(status);
    else
        *status_out = status;
    return pos;
}

PyObject *
respond(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "respond(data, pos, table, inflight, head, emit_line, emit_record)");
        return NULL;
    }
    PyObject *data = args[0], *table = args[2];
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
    if (pos > PyBytes_GET_SIZE(data))
        return Py_BuildValue("(nO)", pos, Py_None); /* nothing there (as py_respond) */
    PyObject *status = NULL;
    pos = respond_at(data, pos, table, args[3], args[4], args[5], args[6], &status);
    if (pos < 0)
        return NULL;
    return Py_BuildValue("(nN)", pos, status ? status : Py_NewRef(Py_None));
}

/* ------------------------------------------------------------------ query_known */

/* decider.by_lexical[in_tx] when the decider's caches belong to the policy in force
 * (new reference), NULL with no error set when they do not (or are not built yet). */
static PyObject *
current_lexical_cache(PyObject *decider, int in_tx)
{
    PyObject *caches = slot_get(decider, s_by_lexical, &c_by_lexical);
    if (caches == NULL || caches == Py_None) {
        Py_XDECREF(caches);
        return NULL;
    }
    PyObject *cache = NULL;
    PyObject *generation = slot_get(decider, s_generation, &c_decider_generation);
    PyObject *holder = generation ? slot_get(decider, s_holder, &c_holder) : NULL;
    PyObject *policy = holder ? slot_get(holder, s_policy, &c_policy) : NULL;
    PyObject *current = policy ? slot_get(policy, s_generation, &c_policy_generation) : NULL;
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
PyObject *
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
    if (!PyBytes_Check(msg) || !(PyList_Check(to_server) || to_server == Py_None) ||
        !PyDict_Check(counts)) {
        PyErr_SetString(PyExc_TypeError, "query_known: bytes, list (or None) and dict expected");
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
    labels = slot_get(verdict, s_plain_labels, &c_plain_labels);
    if (labels == NULL || labels == Py_None) {
        if (labels != NULL)
            result = Py_NewRef(Py_False);
        Py_DECREF(verdict);
        goto done;
    }
    /* Defence in depth: the decider marks only ALLOW verdicts plain; check it again. */
    PyObject *decision = slot_get(verdict, s_decision, &c_decision);
    PyObject *action = decision ? slot_get(decision, s_action, &c_action) : NULL;
    Py_XDECREF(decision);
    if (action != allow_action) {
        if (action != NULL)
            result = Py_NewRef(Py_False);
        Py_XDECREF(action);
        Py_DECREF(verdict);
        goto done;
    }
    Py_DECREF(action);
    PyObject *sent_obj = slot_get(inflight, s_sent_batches, &c_sent_batches);
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
    queue = slot_get(inflight, s_queue, &c_queue);
    PyObject *appended = queue ? PyObject_CallMethodOneArg(queue, s_append, rec) : NULL;
    if (appended == NULL) {
        Py_DECREF(batch);
        goto done;
    }
    Py_DECREF(appended);
    int rc = slot_set(inflight, s_sent_batches, batch, &c_sent_batches);
    Py_DECREF(batch);
    if (rc < 0 || (to_server != Py_None && PyList_Append(to_server, msg) < 0) ||
        count_labels(counts, labels) < 0)
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
        unsigned long length = message_length(buf, pos);
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

#define MAX_BINDS 16 /* a chunk with more Binds declines (the general path takes it) */

/* Pass 2 of execute_batch: 1 when every Bind names a statement in `statements` and every
 * Execute runs a portal bound in this chunk or bound earlier to such a statement; 0
 * (decline: the general path judges it) otherwise; -1 on error. The Binds' statement
 * names are left in `names` (new references, `*count` of them) for pass 3. */
static int
statements_known(const unsigned char *buf, Py_ssize_t n, const unsigned char *tab,
                 PyObject *portals, PyObject *statements, PyObject **names, int *count)
{
    const unsigned char *bound[MAX_BINDS]; /* portal names bound in this chunk */
    Py_ssize_t bound_len[MAX_BINDS];
    int ok = 1;
    Py_ssize_t pos = 0;
    *count = 0;
    while (ok == 1 && pos < n) {
        unsigned char t = buf[pos];
        Py_ssize_t end = pos + 1 + (Py_ssize_t)message_length(buf, pos);
        if ((t == 'B' || t == 'E') && tab[t]) {
            Py_ssize_t p_nul = cstring_end(buf, pos + 5, end);
            PyObject *stmt = NULL;
            if (t == 'B') {
                if (*count == MAX_BINDS)
                    ok = 0;
                else {
                    bound[*count] = buf + pos + 5;
                    bound_len[*count] = p_nul - (pos + 5);
                    stmt = decode_name(buf, p_nul + 1, cstring_end(buf, p_nul + 1, end));
                    if (stmt == NULL)
                        ok = -1;
                    else
                        names[(*count)++] = Py_NewRef(stmt);
                }
            }
            else {
                int seen = 0;
                for (int i = 0; i < *count && !seen; i++)
                    seen = bound_len[i] == p_nul - (pos + 5) &&
                           memcmp(bound[i], buf + pos + 5, (size_t)bound_len[i]) == 0;
                if (!seen) {
                    PyObject *portal = decode_name(buf, pos + 5, p_nul);
                    if (portal == NULL)
                        ok = -1;
                    else {
                        stmt = PyDict_GetItemWithError(portals, portal);
                        if (stmt == NULL)
                            ok = PyErr_Occurred() ? -1 : 0;
                        else
                            Py_INCREF(stmt);
                        Py_DECREF(portal);
                    }
                }
            }
            if (ok == 1 && stmt != NULL) {
                int known = PyDict_Contains(statements, stmt);
                ok = known < 0 ? -1 : known;
            }
            Py_XDECREF(stmt);
        }
        pos = end;
    }
    return ok;
}

/* records.py_execute_batch: see there. */
PyObject *
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
        !PyDict_Check(portals) || !PyDict_Check(statements) ||
        !(PyList_Check(to_server) || to_server == Py_None)) {
        PyErr_SetString(PyExc_TypeError, "execute_batch: bad argument types");
        return NULL;
    }
    const unsigned char *buf = (const unsigned char *)PyBytes_AS_STRING(data);
    const unsigned char *tab = (const unsigned char *)PyBytes_AS_STRING(table);
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    if (!is_execute_batch(buf, n, tab))
        Py_RETURN_FALSE;
    PyObject *names[MAX_BINDS];
    int n_names = 0;
    int known = statements_known(buf, n, tab, portals, statements, names, &n_names);
    if (known != 1) {
        for (int i = 0; i < n_names; i++)
            Py_DECREF(names[i]);
        if (known < 0)
            return NULL;
        Py_RETURN_FALSE;
    }
    int next_name = 0;
    PyObject *queue = NULL;
    PyObject *sent_obj = slot_get(inflight, s_sent_batches, &c_sent_batches);
    Py_ssize_t sent = sent_obj == NULL ? -1 : PyLong_AsSsize_t(sent_obj);
    Py_XDECREF(sent_obj);
    if (!(sent == -1 && PyErr_Occurred()))
        queue = slot_get(inflight, s_queue, &c_queue);
    if (queue == NULL) {
        for (int i = 0; i < n_names; i++)
            Py_DECREF(names[i]);
        return NULL;
    }
    int rc = 0;
    Py_ssize_t pos = 0;
    while (rc == 0 && pos < n) {
        unsigned char t = buf[pos];
        Py_ssize_t end = pos + 1 + (Py_ssize_t)message_length(buf, pos);
        if (t == 'S' && tab[t])
            sent += 1;
        else if (t == 'B' && tab[t]) { /* the portal runs this statement */
            Py_ssize_t p_nul = cstring_end(buf, pos + 5, end);
            PyObject *portal = decode_name(buf, pos + 5, p_nul);
            PyObject *stmt = names[next_name++]; /* decoded by statements_known */
            rc = portal == NULL ? -1 : PyDict_SetItem(portals, portal, stmt);
            Py_XDECREF(portal);
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
                    PyObject *labels = slot_get(PyTuple_GET_ITEM(entry, 1), s_plain_labels, &c_plain_labels);
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
    for (int i = 0; i < n_names; i++)
        Py_DECREF(names[i]);
    if (rc < 0)
        return NULL;
    PyObject *sent_new = PyLong_FromSsize_t(sent);
    if (sent_new == NULL)
        return NULL;
    rc = slot_set(inflight, s_sent_batches, sent_new, &c_sent_batches);
    Py_DECREF(sent_new);
    if (rc < 0 || (to_server != Py_None && PyList_Append(to_server, data) < 0))
        return NULL;
    Py_RETURN_TRUE;
}

