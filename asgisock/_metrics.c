/*
 * The per-request counting of --metrics-port: responses by method, status class and
 * duration bucket, and the sum of the durations.
 *
 * One call per request, on the hot path of every response. In Python the call and its
 * few look-ups cost about 4% of a small keep-alive request; here the counts are plain C
 * integers and the clock is read without a Python call. asgisock.metrics has the
 * pure-Python Responses with the same methods and the same results, used where this
 * module is not built or ASGISOCK_NO_EXTENSIONS is set.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define STATUSES 600 /* statuses 0 (no response started) to 599 */
#define CLASSES 6    /* none, then 1xx to 5xx */
#define MAX_BOUNDS 64

typedef struct {
    PyObject_HEAD
    PyObject *rows;        /* dict: method -> index of its row in counts */
    uint64_t *counts;      /* one row of CLASSES * buckets per method */
    Py_ssize_t row_count;
    Py_ssize_t buckets;    /* bounds + 1: the last one is +Inf */
    double bounds[MAX_BOUNDS];
    double duration_sum;
} Responses;

static int
Responses_init(Responses *self, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"bounds", NULL};
    PyObject *bounds;
    PyObject *sequence;
    Py_ssize_t i;
    Py_ssize_t size;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:Responses", keywords, &bounds)) {
        return -1;
    }
    sequence = PySequence_Fast(bounds, "bounds must be a sequence of numbers");
    if (sequence == NULL) {
        return -1;
    }
    size = PySequence_Fast_GET_SIZE(sequence);
    if (size > MAX_BOUNDS) {
        Py_DECREF(sequence);
        PyErr_Format(PyExc_ValueError, "at most %d bounds", MAX_BOUNDS);
        return -1;
    }
    for (i = 0; i < size; i++) {
        double bound = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(sequence, i));
        if (bound == -1.0 && PyErr_Occurred()) {
            Py_DECREF(sequence);
            return -1;
        }
        if (i > 0 && !(bound > self->bounds[i - 1])) {
            Py_DECREF(sequence);
            PyErr_SetString(PyExc_ValueError, "bounds must increase");
            return -1;
        }
        self->bounds[i] = bound;
    }
    Py_DECREF(sequence);
    Py_XSETREF(self->rows, PyDict_New());
    if (self->rows == NULL) {
        return -1;
    }
    PyMem_Free(self->counts);
    self->counts = NULL;
    self->row_count = 0;
    self->buckets = size + 1;
    self->duration_sum = 0.0;
    return 0;
}

static void
Responses_dealloc(Responses *self)
{
    Py_XDECREF(self->rows);
    PyMem_Free(self->counts);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The row of ``method``, added (all zeros) the first time it is seen; NULL on error. */
static uint64_t *
row_of(Responses *self, PyObject *method)
{
    Py_ssize_t width = CLASSES * self->buckets;
    Py_ssize_t index;
    PyObject *found = PyDict_GetItemWithError(self->rows, method);
    uint64_t *counts;
    PyObject *number;

    if (found != NULL) {
        return self->counts + PyLong_AsSsize_t(found) * width;
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    index = self->row_count;
    counts = PyMem_Realloc(self->counts, (size_t)((index + 1) * width) * sizeof(uint64_t));
    if (counts == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    self->counts = counts;
    memset(counts + index * width, 0, (size_t)width * sizeof(uint64_t));
    number = PyLong_FromSsize_t(index);
    if (number == NULL || PyDict_SetItem(self->rows, method, number) < 0) {
        Py_XDECREF(number);
        return NULL;
    }
    Py_DECREF(number);
    self->row_count = index + 1;
    return counts + index * width;
}

static int
count(Responses *self, PyObject *method, PyObject *status_object, double duration)
{
    long status = PyLong_AsLong(status_object);
    Py_ssize_t bucket = 0;
    Py_ssize_t last = self->buckets - 1;
    uint64_t *row;

    if (status == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (self->rows == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Responses.__init__() was not called");
        return -1;
    }
    if (status < 0 || status >= STATUSES) {
        PyErr_Format(PyExc_ValueError, "status %ld is not in 0..%d", status, STATUSES - 1);
        return -1;
    }
    row = row_of(self, method);
    if (row == NULL) {
        return -1;
    }
    /* The first bound at or above the duration: Prometheus buckets are "less or equal". */
    while (bucket < last && duration > self->bounds[bucket]) {
        bucket++;
    }
    row[(status / 100) * self->buckets + bucket] += 1;
    self->duration_sum += duration;
    return 0;
}

static PyObject *
Responses_add(Responses *self, PyObject *const *args, Py_ssize_t nargs)
{
    double duration;

    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "add() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    duration = PyFloat_AsDouble(args[2]);
    if (duration == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (count(self, args[0], args[1], duration) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* time.monotonic(), without the call. */
static int
monotonic(double *now)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyTime_t ticks;
    if (PyTime_Monotonic(&ticks) < 0) {
        return -1;
    }
    *now = PyTime_AsSecondsDouble(ticks);
#else
    *now = _PyTime_AsSecondsDouble(_PyTime_GetMonotonicClock());
#endif
    return 0;
}

static PyObject *
Responses_response(Responses *self, PyObject *const *args, Py_ssize_t nargs)
{
    double started;
    double now;

    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "response() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    started = PyFloat_AsDouble(args[2]);
    if (started == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (monotonic(&now) < 0 || count(self, args[0], args[1], now - started) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* The counts are copied first, in one step: building the lists allocates, an allocation can
 * run the garbage collector, and a finaliser can let another thread count (and move the rows)
 * meanwhile. The metrics listener calls this from its own thread. */
static PyObject *
Responses_by_method(Responses *self, PyObject *Py_UNUSED(ignored))
{
    Py_ssize_t width = CLASSES * self->buckets;
    Py_ssize_t item;
    Py_ssize_t rows;
    uint64_t *counts = NULL;
    PyObject *items;
    PyObject *result = NULL;

    if (self->rows == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Responses.__init__() was not called");
        return NULL;
    }
    items = PyDict_Items(self->rows);
    if (items == NULL) {
        return NULL;
    }
    rows = self->row_count;
    if (rows > 0) {
        counts = PyMem_Malloc((size_t)(rows * width) * sizeof(uint64_t));
        if (counts == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        memcpy(counts, self->counts, (size_t)(rows * width) * sizeof(uint64_t));
    }
    result = PyDict_New();
    if (result == NULL) {
        goto done;
    }
    for (item = 0; item < PyList_GET_SIZE(items); item++) {
        PyObject *pair = PyList_GET_ITEM(items, item);
        Py_ssize_t index = PyLong_AsSsize_t(PyTuple_GET_ITEM(pair, 1));
        PyObject *row;
        Py_ssize_t i;

        if (index < 0 || index >= rows) {
            continue; /* a method first seen after the copy */
        }
        row = PyList_New(width);
        if (row == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        for (i = 0; i < width; i++) {
            PyObject *number = PyLong_FromUnsignedLongLong(counts[index * width + i]);
            if (number == NULL) {
                Py_DECREF(row);
                Py_CLEAR(result);
                goto done;
            }
            PyList_SET_ITEM(row, i, number);
        }
        if (PyDict_SetItem(result, PyTuple_GET_ITEM(pair, 0), row) < 0) {
            Py_DECREF(row);
            Py_CLEAR(result);
            goto done;
        }
        Py_DECREF(row);
    }

done:
    PyMem_Free(counts);
    Py_DECREF(items);
    return result;
}

static PyObject *
Responses_get_duration_sum(Responses *self, void *Py_UNUSED(closure))
{
    return PyFloat_FromDouble(self->duration_sum);
}

static PyMethodDef Responses_methods[] = {
    {"add", (PyCFunction)(void (*)(void))Responses_add, METH_FASTCALL,
     "add(method, status, duration)\n\n"
     "Count one request of ``method`` answered with ``status`` (0: no response started) "
     "that took ``duration`` seconds."},
    {"response", (PyCFunction)(void (*)(void))Responses_response, METH_FASTCALL,
     "response(method, status, started)\n\n"
     "add() with the time since ``started``, a time.monotonic() value."},
    {"by_method", (PyCFunction)Responses_by_method, METH_NOARGS,
     "by_method() -> dict[str, list[int]]\n\n"
     "A copy of the counts: for each method, by status class, then by bucket."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Responses_getset[] = {
    {"duration_sum", (getter)Responses_get_duration_sum, NULL,
     "The sum of the durations counted, in seconds.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ResponsesType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "asgisock._metrics.Responses",
    .tp_doc = "Responses(bounds)\n\nRequests counted by method, status class and duration "
              "bucket (the upper bounds ``bounds``, then +Inf).",
    .tp_basicsize = sizeof(Responses),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Responses_init,
    .tp_dealloc = (destructor)Responses_dealloc,
    .tp_methods = Responses_methods,
    .tp_getset = Responses_getset,
};

static struct PyModuleDef metrics_module = {
    PyModuleDef_HEAD_INIT,
    "asgisock._metrics",
    "C counting for --metrics-port.",
    -1,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__metrics(void)
{
    PyObject *module;

    if (PyType_Ready(&ResponsesType) < 0) {
        return NULL;
    }
    module = PyModule_Create(&metrics_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&ResponsesType);
    if (PyModule_AddObject(module, "Responses", (PyObject *)&ResponsesType) < 0) {
        Py_DECREF(&ResponsesType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
