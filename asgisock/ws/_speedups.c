/*
 * XOR masking of WebSocket payloads (RFC 6455 §5.3).
 *
 * Every frame a client sends is masked, so the server unmasks every byte it
 * receives. In pure Python that is the single most expensive step of reading
 * a large message; this loop does it eight bytes at a time.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Below this size the GIL round trip costs more than it saves. */
#define RELEASE_GIL_THRESHOLD 65536

static void
xor_mask(const unsigned char *src, unsigned char *dst, Py_ssize_t len,
         const unsigned char *key)
{
    Py_ssize_t i = 0;
    uint64_t key64;
    unsigned char key8[8];

    memcpy(key8, key, 4);
    memcpy(key8 + 4, key, 4);
    memcpy(&key64, key8, 8);

    /* memcpy keeps the loads and stores legal on any alignment; compilers
       turn it into plain 64-bit moves. */
    for (; i + 8 <= len; i += 8) {
        uint64_t chunk;
        memcpy(&chunk, src + i, 8);
        chunk ^= key64;
        memcpy(dst + i, &chunk, 8);
    }
    for (; i < len; i++) {
        dst[i] = src[i] ^ key[i & 3];
    }
}

static PyObject *
apply_mask(PyObject *self, PyObject *args)
{
    Py_buffer data;
    Py_buffer key;
    PyObject *result = NULL;

    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*:apply_mask", &data, &key)) {
        return NULL;
    }
    if (key.len != 4) {
        PyErr_SetString(PyExc_ValueError, "mask key must be 4 bytes long");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result == NULL) {
        goto done;
    }
    if (data.len >= RELEASE_GIL_THRESHOLD) {
        Py_BEGIN_ALLOW_THREADS
        xor_mask(data.buf, (unsigned char *)PyBytes_AS_STRING(result),
                 data.len, key.buf);
        Py_END_ALLOW_THREADS
    }
    else {
        xor_mask(data.buf, (unsigned char *)PyBytes_AS_STRING(result),
                 data.len, key.buf);
    }

done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&key);
    return result;
}

static PyMethodDef speedups_methods[] = {
    {"apply_mask", apply_mask, METH_VARARGS,
     "apply_mask(data, key) -> bytes\n\n"
     "XOR data with the 4-byte key repeated (RFC 6455 section 5.3)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    "asgisock.ws._speedups",
    "C speedups for the WebSocket protocol core.",
    -1,
    speedups_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&speedups_module);
}
