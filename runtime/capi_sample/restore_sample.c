/* restore_sample: a small C extension that uses restore's C API (include/restore.h).
 *
 *   restore_sample.version() -> str
 *   restore_sample.restore(model, backend, image, tile=0, overlap=-1) -> (bytes, height, width, channels)
 *       image: any buffer (e.g. a NumPy array) H x W x C of uint8 / uint16 / float32 whose pixels
 *       are contiguous within a row (rows may be strided). Creates a restorer, restores the frame
 *       with the GIL released, destroys the restorer.
 *   restore_sample.restore_video(model, backend, frames, height, width, channels) -> [bytes, ...]
 *       frames: a sequence of packed uint8 H x W x C frames (bytes-like) of one video, restored
 *       in order as a video by one restorer (the API's video mode), with the GIL released.
 *   restore_sample.restore_device(model, backend, src, dst, height, width, channels, stream) -> None
 *       src/dst: device pointers (ints) of uint8 frames with packed rows; stream: a cudaStream_t.
 *
 * Failures raise RuntimeError(status, message) with the API's status code and last_error().
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "restore.h"

/* Raise RuntimeError(status, last_error()) and destroy `r` (may be NULL). The message is read
 * first and the exception set last: no API call may run with a Python exception pending. */
static PyObject *fail(int status, RestoreHandle *r)
{
    PyObject *args = Py_BuildValue("(is)", status, Restore_API->last_error());
    Restore_API->destroy(r);
    if (args != NULL) {
        PyErr_SetObject(PyExc_RuntimeError, args);
        Py_DECREF(args);
    }
    return NULL;
}

static int dtype_code(const Py_buffer *view)
{
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@')
        f++;
    if (view->itemsize == 1 && (*f == 'B' || *f == 'b'))
        return RESTORE_UINT8;
    if (view->itemsize == 2 && *f == 'H')
        return RESTORE_UINT16;
    if (view->itemsize == 4 && *f == 'f')
        return RESTORE_FLOAT32;
    return -1;
}

static PyObject *sample_version(PyObject *self, PyObject *unused)
{
    return PyUnicode_FromString(Restore_API->version());
}

static PyObject *sample_restore(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"model", "backend", "image", "tile", "overlap", NULL};
    const char *model, *backend;
    PyObject *image;
    int tile = 0, overlap = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "zzO|ii", keywords, &model, &backend, &image, &tile, &overlap))
        return NULL;

    Py_buffer view;
    if (PyObject_GetBuffer(image, &view, PyBUF_STRIDES | PyBUF_FORMAT) < 0)
        return NULL;
    PyObject *result = NULL;
    int dtype = dtype_code(&view);
    int channels = view.ndim == 3 ? (int)view.shape[2] : 1;
    if (dtype < 0 || (view.ndim != 2 && view.ndim != 3)
        || view.strides[1] != channels * view.itemsize
        || (view.ndim == 3 && view.strides[2] != view.itemsize)) {
        PyErr_SetString(PyExc_ValueError, "image must be H x W [x C] uint8/uint16/float32 with packed pixels");
        goto done;
    }
    int height = (int)view.shape[0], width = (int)view.shape[1];

    RestoreHandle *r = NULL;
    int status = Restore_API->create(model, backend, tile, overlap, &r);
    if (status != RESTORE_OK) {
        fail(status, NULL);
        goto done;
    }
    int scale = 1;
    Restore_API->scale(r, &scale);
    Py_ssize_t out_stride = (Py_ssize_t)width * scale * channels * view.itemsize;
    PyObject *out = PyBytes_FromStringAndSize(NULL, out_stride * height * scale);
    if (out == NULL) {
        Restore_API->destroy(r);
        goto done;
    }
    char *dst = PyBytes_AS_STRING(out);
    /* The API takes the GIL for itself; releasing ours lets other Python threads run meanwhile. */
    Py_BEGIN_ALLOW_THREADS
    status = Restore_API->restore_host(r, view.buf, height, width, channels, dtype, view.strides[0], dst, out_stride);
    Py_END_ALLOW_THREADS
    if (status != RESTORE_OK) {
        Py_DECREF(out);
        fail(status, r);
    } else {
        Restore_API->destroy(r);
        result = Py_BuildValue("(Niii)", out, height * scale, width * scale, channels);
    }
done:
    PyBuffer_Release(&view);
    return result;
}

static PyObject *sample_restore_video(PyObject *self, PyObject *args)
{
    const char *model, *backend;
    PyObject *frames;
    int height, width, channels;
    if (!PyArg_ParseTuple(args, "zzOiii", &model, &backend, &frames, &height, &width, &channels))
        return NULL;
    PyObject *seq = PySequence_Fast(frames, "frames must be a sequence");
    if (seq == NULL)
        return NULL;
    RestoreHandle *r = NULL;
    int status = Restore_API->create(model, backend, 0, -1, &r);
    if (status == RESTORE_OK)
        status = Restore_API->video(r, 1);
    if (status != RESTORE_OK) {
        Py_DECREF(seq);
        return fail(status, r);
    }
    int scale = 1;
    Restore_API->scale(r, &scale);
    Py_ssize_t in_stride = (Py_ssize_t)width * channels, out_stride = in_stride * scale;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *result = PyList_New(n);
    for (Py_ssize_t i = 0; result != NULL && i < n; i++) {
        Py_buffer view;
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, i), &view, PyBUF_SIMPLE) < 0) {
            Py_CLEAR(result);
            break;
        }
        PyObject *out = view.len == in_stride * height ? PyBytes_FromStringAndSize(NULL, out_stride * height * scale) : NULL;
        if (out == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "a frame is not height x width x channels bytes");
            PyBuffer_Release(&view);
            Py_CLEAR(result);
            break;
        }
        char *dst = PyBytes_AS_STRING(out);
        Py_BEGIN_ALLOW_THREADS
        status = Restore_API->restore_host(r, view.buf, height, width, channels, RESTORE_UINT8, in_stride, dst, out_stride);
        Py_END_ALLOW_THREADS
        PyBuffer_Release(&view);
        if (status != RESTORE_OK) {
            Py_DECREF(out);
            Py_CLEAR(result);
            Py_DECREF(seq);
            return fail(status, r);
        }
        PyList_SET_ITEM(result, i, out);
    }
    Py_DECREF(seq);
    Restore_API->destroy(r);
    return result;
}

static PyObject *sample_restore_device(PyObject *self, PyObject *args)
{
    const char *model, *backend;
    unsigned long long src, dst, stream;
    int height, width, channels;
    if (!PyArg_ParseTuple(args, "zzKKiiiK", &model, &backend, &src, &dst, &height, &width, &channels, &stream))
        return NULL;
    RestoreHandle *r = NULL;
    int status = Restore_API->create(model, backend, 0, -1, &r);
    if (status != RESTORE_OK)
        return fail(status, NULL);
    int scale = 1;
    Restore_API->scale(r, &scale);
    Py_BEGIN_ALLOW_THREADS
    status = Restore_API->restore_device(r, (const void *)(uintptr_t)src, height, width, channels, RESTORE_UINT8,
                                         (ptrdiff_t)width * channels, (void *)(uintptr_t)dst,
                                         (ptrdiff_t)width * scale * channels, (void *)(uintptr_t)stream);
    Py_END_ALLOW_THREADS
    if (status != RESTORE_OK)
        return fail(status, r);
    Restore_API->destroy(r);
    Py_RETURN_NONE;
}

static PyMethodDef sample_methods[] = {
    {"version", sample_version, METH_NOARGS, "restore's version, through the C API."},
    {"restore", (PyCFunction)(void (*)(void))sample_restore, METH_VARARGS | METH_KEYWORDS,
     "restore(model, backend, image, tile=0, overlap=-1) -> (bytes, height, width, channels)"},
    {"restore_video", sample_restore_video, METH_VARARGS,
     "restore_video(model, backend, frames, height, width, channels) -> [bytes, ...]"},
    {"restore_device", sample_restore_device, METH_VARARGS,
     "restore_device(model, backend, src, dst, height, width, channels, stream) -> None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef sample_module = {
    PyModuleDef_HEAD_INIT, "restore_sample", "A C extension using restore's C API.", -1, sample_methods,
};

PyMODINIT_FUNC PyInit_restore_sample(void)
{
    if (import_restore() < 0)
        return NULL;
    return PyModule_Create(&sample_module);
}
