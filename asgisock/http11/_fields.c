/*
 * The header fields of an HTTP/1.1 response head, checked and encoded.
 *
 * asgisock.http11.writer.encode_fields_python is the same routine in Python, used where this
 * module is not built or ASGISOCK_NO_EXTENSIONS is set; the two give the same results and
 * raise the same exceptions. It runs once for every field of every response: in Python each
 * field costs a dozen look-ups and comparisons, about a tenth of a small keep-alive request
 * for two fields; here a field is one pass over its bytes.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* asgisock.exceptions.InvalidResponse, looked up when the module is loaded. */
static PyObject *InvalidResponse;

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

static PyObject *
encode_fields(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *headers;
    PyObject *special;
    PyObject *iterator;
    PyObject *item;
    PyObject *content_length = NULL;
    PyObject *seen = NULL;
    PyObject *fields;
    PyObject *result;
    int close = 0;
    Buffer buffer;

    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "encode_fields expected 2 arguments, got %zd", nargs);
        return NULL;
    }
    headers = args[0];
    special = args[1];
    if (!PyAnySet_Check(special)) {
        PyErr_SetString(PyExc_TypeError, "special must be a set or frozenset");
        return NULL;
    }
    iterator = PyObject_GetIter(headers);
    if (iterator == NULL) {
        return NULL;
    }
    buffer.data = buffer.inline_data;
    buffer.size = 0;
    buffer.capacity = INLINE_SIZE;
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
                if (content_length != NULL) {
                    PyErr_Format(InvalidResponse, "invalid content-length %R", value);
                    goto field_error;
                }
                content_length = content_length_of(value);
                if (content_length == NULL) {
                    goto field_error;
                }
            }
            else if (IS_NAME(lower, "transfer-encoding")) {
                /* ASGI: the server ignores it; the framing is the server's own. */
                write = 0;
            }
            else if (IS_NAME(lower, "connection")) {
                close |= lists_close(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value));
                write = 0;
            }
            else {
                if (seen == NULL && (seen = PySet_New(NULL)) == NULL) {
                    goto field_error;
                }
                if (PySet_Add(seen, lower) < 0) {
                    goto field_error;
                }
            }
        }
        if (write && buffer_add_field(&buffer, PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name),
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
    fields = PyBytes_FromStringAndSize(buffer.data, buffer.size);
    buffer_free(&buffer);
    if (fields == NULL) {
        Py_XDECREF(content_length);
        Py_XDECREF(seen);
        return NULL;
    }
    result = PyTuple_Pack(4, fields, content_length != NULL ? content_length : Py_None,
                          close ? Py_True : Py_False, seen != NULL ? seen : Py_None);
    Py_DECREF(fields);
    Py_XDECREF(content_length);
    Py_XDECREF(seen);
    return result;
error:
    Py_DECREF(iterator);
    buffer_free(&buffer);
    Py_XDECREF(content_length);
    Py_XDECREF(seen);
    return NULL;
}

static PyMethodDef fields_methods[] = {
    {"encode_fields", (PyCFunction)(void (*)(void))encode_fields, METH_FASTCALL,
     "encode_fields(headers, special, /)\n--\n\n"
     "The fields of a response head, checked and encoded: (fields, content_length, close, seen).\n\n"
     "See asgisock.http11.writer.encode_fields_python, which gives the same results."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fields_module = {
    PyModuleDef_HEAD_INIT,
    "asgisock.http11._fields",
    "C encoding of the header fields of a response head.",
    -1,
    fields_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__fields(void)
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
    return PyModule_Create(&fields_module);
}
