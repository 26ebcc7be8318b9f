/*
 * An HTTP/1.1 response head, checked and encoded: the status line, the app's fields, the
 * framing field, the default fields and the connection option.
 *
 * asgisock.http11.writer.encode_head_python is the same routine in Python, used where this
 * module is not built or ASGISOCK_NO_EXTENSIONS is set; the two give the same results and
 * raise the same exceptions. It runs once for every response, and its loop once for every
 * field: in Python each field costs a dozen look-ups and comparisons, and a head with two
 * fields about a tenth of a small keep-alive request; here a field is one pass over its bytes.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* asgisock.exceptions.InvalidResponse, looked up when the module is loaded. */
static PyObject *InvalidResponse;

/* Handed in by asgisock.http11.writer with configure(): the status lines by status, and the
 * members of Framing. */
static PyObject *status_lines;
static PyObject *no_body;
static PyObject *content_length_framing;
static PyObject *chunked;
static PyObject *close_delimited;

static PyObject *special_name;
static PyObject *ending_name;
static PyObject *without_name;

/* tchar of RFC 9110 §5.6.2: the bytes a field name is made of. */
static unsigned char tchar[256];

#define INLINE_SIZE 512

/* The encoded fields, on the stack while they fit. */
typedef struct {
    char *data;
    Py_ssize_t size;
    Py_ssize_t capacity;
    char inline_data[INLINE_SIZE];
} Buffer;

static int
buffer_grow(Buffer *buffer, Py_ssize_t needed)
{
    Py_ssize_t capacity = buffer->capacity;
    char *data;

    while (capacity < needed) {
        if (capacity > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        capacity *= 2;
    }
    if (buffer->data == buffer->inline_data) {
        data = PyMem_Malloc(capacity);
        if (data != NULL) {
            memcpy(data, buffer->data, buffer->size);
        }
    }
    else {
        data = PyMem_Realloc(buffer->data, capacity);
    }
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    buffer->data = data;
    buffer->capacity = capacity;
    return 0;
}

static int
buffer_add(Buffer *buffer, const char *data, Py_ssize_t size)
{
    Py_ssize_t needed = buffer->size + size;

    if (needed > buffer->capacity && buffer_grow(buffer, needed) < 0) {
        return -1;
    }
    memcpy(buffer->data + buffer->size, data, size);
    buffer->size = needed;
    return 0;
}

/* Append "name: value\r\n". */
static int
buffer_add_field(Buffer *buffer, const char *name, Py_ssize_t name_size, const char *value,
                 Py_ssize_t value_size)
{
    Py_ssize_t needed = buffer->size + name_size + value_size + 4;
    char *out;

    if (needed > buffer->capacity && buffer_grow(buffer, needed) < 0) {
        return -1;
    }
    out = buffer->data + buffer->size;
    memcpy(out, name, name_size);
    out += name_size;
    *out++ = ':';
    *out++ = ' ';
    memcpy(out, value, value_size);
    out += value_size;
    *out++ = '\r';
    *out++ = '\n';
    buffer->size = needed;
    return 0;
}

static void
buffer_free(Buffer *buffer)
{
    if (buffer->data != buffer->inline_data) {
        PyMem_Free(buffer->data);
    }
}

/* Whether a comma-separated value lists "close", in any case (has_token's rule: each
 * member stripped of ASCII whitespace, as bytes.strip() does). */
static int
lists_close(const char *value, Py_ssize_t size)
{
    Py_ssize_t start = 0;

    while (start <= size) {
        Py_ssize_t end = start;
        Py_ssize_t first;
        Py_ssize_t last;

        while (end < size && value[end] != ',') {
            end++;
        }
        first = start;
        last = end;
        while (first < last && Py_ISSPACE(value[first])) {
            first++;
        }
        while (last > first && Py_ISSPACE(value[last - 1])) {
            last--;
        }
        if (last - first == 5 && Py_TOLOWER(value[first]) == 'c' && Py_TOLOWER(value[first + 1]) == 'l'
            && Py_TOLOWER(value[first + 2]) == 'o' && Py_TOLOWER(value[first + 3]) == 's'
            && Py_TOLOWER(value[first + 4]) == 'e') {
            return 1;
        }
        start = end + 1;
    }
    return 0;
}

/* The name's lower-case form as an exact bytes object (a new reference), or NULL with
 * InvalidResponse set when it is not a token. */
static PyObject *
checked_lower_name(PyObject *name)
{
    const unsigned char *data;
    Py_ssize_t size;
    Py_ssize_t i;
    int upper = 0;
    PyObject *lower;
    char *out;

    if (!PyBytes_Check(name) || PyBytes_GET_SIZE(name) == 0) {
        PyErr_Format(InvalidResponse, "invalid header name %R", name);
        return NULL;
    }
    data = (const unsigned char *)PyBytes_AS_STRING(name);
    size = PyBytes_GET_SIZE(name);
    for (i = 0; i < size; i++) {
        if (!tchar[data[i]]) {
            PyErr_Format(InvalidResponse, "invalid header name %R", name);
            return NULL;
        }
        upper |= (data[i] >= 'A' && data[i] <= 'Z');
    }
    if (!upper && PyBytes_CheckExact(name)) {
        Py_INCREF(name);
        return name;
    }
    lower = PyBytes_FromStringAndSize(NULL, size);
    if (lower == NULL) {
        return NULL;
    }
    out = PyBytes_AS_STRING(lower);
    for (i = 0; i < size; i++) {
        out[i] = (char)Py_TOLOWER(data[i]);
    }
    return lower;
}

/* 0 if the value may be sent (RFC 9110 §5.5: no CR, LF or NUL), else -1 with InvalidResponse. */
static int
check_value(PyObject *value)
{
    const unsigned char *data;
    Py_ssize_t size;
    Py_ssize_t i;

    if (!PyBytes_Check(value)) {
        PyErr_Format(InvalidResponse, "invalid header value %R", value);
        return -1;
    }
    data = (const unsigned char *)PyBytes_AS_STRING(value);
    size = PyBytes_GET_SIZE(value);
    for (i = 0; i < size; i++) {
        unsigned char c = data[i];
        if (c == '\r' || c == '\n' || c == '\0') {
            PyErr_Format(InvalidResponse, "invalid header value %R", value);
            return -1;
        }
    }
    return 0;
}

/* The content length a checked value states, or NULL with InvalidResponse set. */
static PyObject *
content_length_of(PyObject *value)
{
    const char *data = PyBytes_AS_STRING(value);
    Py_ssize_t size = PyBytes_GET_SIZE(value);
    Py_ssize_t i;

    if (size == 0) {
        PyErr_Format(InvalidResponse, "invalid content-length %R", value);
        return NULL;
    }
    for (i = 0; i < size; i++) {
        if (data[i] < '0' || data[i] > '9') {
            PyErr_Format(InvalidResponse, "invalid content-length %R", value);
            return NULL;
        }
    }
    /* Digits only, and a bytes object ends with a NUL: int() of it. ValueError past
     * sys.get_int_max_str_digits(), as in Python. */
    return PyLong_FromString(data, NULL, 10);
}

#define IS_NAME(lower, literal) \
    (PyBytes_GET_SIZE(lower) == (Py_ssize_t)sizeof(literal) - 1 \
     && memcmp(PyBytes_AS_STRING(lower), literal, sizeof(literal) - 1) == 0)

/* One (name, value) pair of the headers, as two new references; -1 with TypeError or
 * ValueError set when the item is not a pair, as unpacking it in Python would. */
static int
unpack_pair(PyObject *item, PyObject **name, PyObject **value)
{
    PyObject *pair;

    if ((PyTuple_CheckExact(item) && PyTuple_GET_SIZE(item) == 2)) {
        *name = PyTuple_GET_ITEM(item, 0);
        *value = PyTuple_GET_ITEM(item, 1);
    }
    else if (PyList_CheckExact(item) && PyList_GET_SIZE(item) == 2) {
        *name = PyList_GET_ITEM(item, 0);
        *value = PyList_GET_ITEM(item, 1);
    }
    else {
        pair = PySequence_Tuple(item);
        if (pair == NULL) {
            if (PyErr_ExceptionMatches(PyExc_TypeError)) {
                PyErr_Format(PyExc_TypeError, "cannot unpack non-iterable %.200s object",
                             Py_TYPE(item)->tp_name);
            }
            return -1;
        }
        if (PyTuple_GET_SIZE(pair) != 2) {
            PyErr_Format(PyExc_ValueError, "%s values to unpack (expected 2)",
                         PyTuple_GET_SIZE(pair) > 2 ? "too many" : "not enough");
            Py_DECREF(pair);
            return -1;
        }
        *name = PyTuple_GET_ITEM(pair, 0);
        *value = PyTuple_GET_ITEM(pair, 1);
        Py_INCREF(*name);
        Py_INCREF(*value);
        Py_DECREF(pair);
        return 0;
    }
    Py_INCREF(*name);
    Py_INCREF(*value);
    return 0;
}

/* The fields of ``headers``, appended to the buffer; the rest as encode_fields_python returns
 * it (content_length and seen are new references or NULL). -1 with an exception set:
 * InvalidResponse, or TypeError or ValueError where the headers are not pairs. */
static int
encode_fields_into(Buffer *buffer, PyObject *headers, PyObject *special, PyObject **content_length,
                   int *close, PyObject **seen)
{
    PyObject *iterator;
    PyObject *item;

    *content_length = NULL;
    *seen = NULL;
    *close = 0;
    if (!PyAnySet_Check(special)) {
        PyErr_SetString(PyExc_TypeError, "special must be a set or frozenset");
        return -1;
    }
    iterator = PyObject_GetIter(headers);
    if (iterator == NULL) {
        return -1;
    }
    while ((item = PyIter_Next(iterator)) != NULL) {
        PyObject *name;
        PyObject *value;
        PyObject *lower;
        int is_special;
        int write = 1;

        if (unpack_pair(item, &name, &value) < 0) {
            Py_DECREF(item);
            goto error;
        }
        Py_DECREF(item);
        lower = checked_lower_name(name);
        if (lower == NULL || check_value(value) < 0) {
            Py_XDECREF(lower);
            Py_DECREF(name);
            Py_DECREF(value);
            goto error;
        }
        is_special = PySet_Contains(special, lower);
        if (is_special < 0) {
            goto field_error;
        }
        if (is_special) {
            if (IS_NAME(lower, "content-length")) {
                if (*content_length != NULL) {
                    PyErr_Format(InvalidResponse, "invalid content-length %R", value);
                    goto field_error;
                }
                *content_length = content_length_of(value);
                if (*content_length == NULL) {
                    goto field_error;
                }
            }
            else if (IS_NAME(lower, "transfer-encoding")) {
                /* ASGI: the server ignores it; the framing is the server's own. */
                write = 0;
            }
            else if (IS_NAME(lower, "connection")) {
                *close |= lists_close(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value));
                write = 0;
            }
            else {
                if (*seen == NULL && (*seen = PySet_New(NULL)) == NULL) {
                    goto field_error;
                }
                if (PySet_Add(*seen, lower) < 0) {
                    goto field_error;
                }
            }
        }
        if (write && buffer_add_field(buffer, PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name),
                                      PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value)) < 0) {
            goto field_error;
        }
        Py_DECREF(lower);
        Py_DECREF(name);
        Py_DECREF(value);
        continue;
    field_error:
        Py_DECREF(lower);
        Py_DECREF(name);
        Py_DECREF(value);
        goto error;
    }
    if (PyErr_Occurred()) {
        goto error;
    }
    Py_DECREF(iterator);
    return 0;
error:
    Py_DECREF(iterator);
    Py_CLEAR(*content_length);
    Py_CLEAR(*seen);
    return -1;
}

/* What the head ends with when no default field was replaced: defaults.ending(). */
static PyObject *
call_ending(PyObject *defaults, int keep_alive, int http11)
{
    PyObject *ending = PyObject_CallMethodObjArgs(defaults, ending_name, keep_alive ? Py_True : Py_False,
                                                  http11 ? Py_True : Py_False, NULL);
    if (ending != NULL && !PyBytes_Check(ending)) {
        PyErr_SetString(PyExc_TypeError, "DefaultHeaders.ending() must return bytes");
        Py_CLEAR(ending);
    }
    return ending;
}

/* The connection option and the empty line (writer._connection_end). */
static const char *
connection_end(int keep_alive, int http11)
{
    if (!keep_alive) {
        return "connection: close\r\n\r\n";
    }
    return http11 ? "\r\n" : "connection: keep-alive\r\n\r\n";
}

static PyObject *
encode_head(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *status;
    PyObject *headers;
    PyObject *defaults;
    PyObject *body_length;
    PyObject *status_line;
    PyObject *special;
    PyObject *content_length = NULL;
    PyObject *seen = NULL;
    PyObject *framing;
    PyObject *ending = NULL;
    PyObject *data;
    PyObject *result;
    long code;
    int head_request;
    int http11;
    int keep_alive;
    int close;
    int failed;
    char line[64];
    Buffer buffer;

    if (nargs != 7) {
        PyErr_Format(PyExc_TypeError, "encode_head expected 7 arguments, got %zd", nargs);
        return NULL;
    }
    if (status_lines == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "asgisock.http11._head is not configured");
        return NULL;
    }
    status = args[0];
    headers = args[1];
    defaults = args[2];
    body_length = args[6];
    if ((head_request = PyObject_IsTrue(args[3])) < 0 || (http11 = PyObject_IsTrue(args[4])) < 0
        || (keep_alive = PyObject_IsTrue(args[5])) < 0) {
        return NULL;
    }
    code = PyLong_CheckExact(status) ? PyLong_AsLong(status) : -1;
    if (code == -1 && PyErr_Occurred()) {
        PyErr_Clear();
    }
    if (code < 100 || code > 599) {
        PyErr_Format(InvalidResponse, "invalid status %R", status);
        return NULL;
    }
    special = PyObject_GetAttr(defaults, special_name);
    if (special == NULL) {
        return NULL;
    }
    buffer.data = buffer.inline_data;
    buffer.size = 0;
    buffer.capacity = INLINE_SIZE;
    status_line = PyDict_GetItemWithError(status_lines, status); /* borrowed */
    if (status_line == NULL || !PyBytes_Check(status_line) || PyBytes_GET_SIZE(status_line) < 8) {
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_RuntimeError, "no status line for %R", status);
        }
        goto error;
    }
    if (http11) {
        failed = buffer_add(&buffer, PyBytes_AS_STRING(status_line), PyBytes_GET_SIZE(status_line));
    }
    else {
        failed = buffer_add(&buffer, "HTTP/1.0", 8) < 0
                 || buffer_add(&buffer, PyBytes_AS_STRING(status_line) + 8, PyBytes_GET_SIZE(status_line) - 8) < 0;
    }
    if (failed) {
        goto error;
    }
    if (encode_fields_into(&buffer, headers, special, &content_length, &close, &seen) < 0) {
        if (PyErr_ExceptionMatches(PyExc_TypeError) || PyErr_ExceptionMatches(PyExc_ValueError)) {
            /* not an iterable of [bytes, bytes] pairs */
            PyObject *type, *exc, *traceback;

            PyErr_Fetch(&type, &exc, &traceback);
            PyErr_NormalizeException(&type, &exc, &traceback);
            PyErr_Format(InvalidResponse, "invalid headers %R: %S", headers, exc);
            Py_XDECREF(type);
            Py_XDECREF(exc);
            Py_XDECREF(traceback);
        }
        goto error;
    }
    if (close) {
        keep_alive = 0;
    }
    if (head_request || (code >= 100 && code < 200) || code == 204 || code == 304) {
        framing = no_body;
    }
    else if (content_length != NULL) {
        framing = content_length_framing;
    }
    else if (body_length != Py_None) {
        Py_ssize_t length = PyLong_AsSsize_t(body_length);
        int size;

        if (length == -1 && PyErr_Occurred()) {
            goto error;
        }
        framing = content_length_framing;
        content_length = body_length;
        Py_INCREF(content_length);
        size = PyOS_snprintf(line, sizeof(line), "content-length: %zd\r\n", length);
        if (buffer_add(&buffer, line, size) < 0) {
            goto error;
        }
    }
    else if (http11) {
        framing = chunked;
        if (buffer_add(&buffer, "transfer-encoding: chunked\r\n", 28) < 0) {
            goto error;
        }
    }
    else {
        framing = close_delimited;
        keep_alive = 0;
    }
    if (seen == NULL) {
        ending = call_ending(defaults, keep_alive, http11);
        failed = ending == NULL || buffer_add(&buffer, PyBytes_AS_STRING(ending), PyBytes_GET_SIZE(ending)) < 0;
    }
    else {
        const char *end = connection_end(keep_alive, http11);

        ending = PyObject_CallMethodObjArgs(defaults, without_name, seen, NULL);
        if (ending != NULL && !PyBytes_Check(ending)) {
            PyErr_SetString(PyExc_TypeError, "DefaultHeaders.without() must return bytes");
            Py_CLEAR(ending);
        }
        failed = ending == NULL || buffer_add(&buffer, PyBytes_AS_STRING(ending), PyBytes_GET_SIZE(ending)) < 0
                 || buffer_add(&buffer, end, (Py_ssize_t)strlen(end)) < 0;
    }
    if (failed) {
        goto error;
    }
    data = PyBytes_FromStringAndSize(buffer.data, buffer.size);
    if (data == NULL) {
        goto error;
    }
    result = PyTuple_Pack(4, data, framing, content_length != NULL ? content_length : Py_None,
                          keep_alive ? Py_True : Py_False);
    Py_DECREF(data);
    Py_XDECREF(ending);
    Py_XDECREF(content_length);
    Py_XDECREF(seen);
    Py_DECREF(special);
    buffer_free(&buffer);
    return result;
error:
    Py_XDECREF(ending);
    Py_XDECREF(content_length);
    Py_XDECREF(seen);
    Py_DECREF(special);
    buffer_free(&buffer);
    return NULL;
}

static PyObject *
configure(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int i;

    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "configure expected 5 arguments, got %zd", nargs);
        return NULL;
    }
    if (!PyDict_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "status_lines must be a dict");
        return NULL;
    }
    for (i = 0; i < 5; i++) {
        Py_INCREF(args[i]);
    }
    Py_XSETREF(status_lines, args[0]);
    Py_XSETREF(no_body, args[1]);
    Py_XSETREF(content_length_framing, args[2]);
    Py_XSETREF(chunked, args[3]);
    Py_XSETREF(close_delimited, args[4]);
    Py_RETURN_NONE;
}

static PyMethodDef head_methods[] = {
    {"encode_head", (PyCFunction)(void (*)(void))encode_head, METH_FASTCALL,
     "encode_head(status, headers, defaults, head_request, http11, keep_alive, body_length, /)\n--\n\n"
     "A response head, checked and encoded: (data, framing, content_length, keep_alive).\n\n"
     "See asgisock.http11.writer.encode_head_python, which gives the same results."},
    {"configure", (PyCFunction)(void (*)(void))configure, METH_FASTCALL,
     "configure(status_lines, no_body, content_length, chunked, close_delimited, /)\n--\n\n"
     "The status lines by status, and the members of Framing, from asgisock.http11.writer."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef head_module = {
    PyModuleDef_HEAD_INIT,
    "asgisock.http11._head",
    "C encoding of HTTP/1.1 response heads.",
    -1,
    head_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__head(void)
{
    static const char others[] = "!#$%&'*+-.^_`|~";
    PyObject *exceptions;
    int c;
    const char *other;

    for (c = 0; c < 256; c++) {
        tchar[c] = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    }
    for (other = others; *other; other++) {
        tchar[(unsigned char)*other] = 1;
    }
    exceptions = PyImport_ImportModule("asgisock.exceptions");
    if (exceptions == NULL) {
        return NULL;
    }
    InvalidResponse = PyObject_GetAttrString(exceptions, "InvalidResponse");
    Py_DECREF(exceptions);
    if (InvalidResponse == NULL) {
        return NULL;
    }
    special_name = PyUnicode_InternFromString("special");
    ending_name = PyUnicode_InternFromString("ending");
    without_name = PyUnicode_InternFromString("without");
    if (special_name == NULL || ending_name == NULL || without_name == NULL) {
        return NULL;
    }
    return PyModule_Create(&head_module);
}
