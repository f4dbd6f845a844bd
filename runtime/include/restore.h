/* restore.h -- the C API of restore's runtime, for Python C extensions.
 *
 * The runtime exports a table of function pointers as the PyCapsule
 * "restore.runtime.capi._C_API" (the way NumPy exports its C API). In your module's init:
 *
 *     if (import_restore() < 0) return NULL;        // Python exception set
 *
 * then, with the GIL held or not (every call takes the GIL itself) but never with a Python
 * exception pending (read last_error() and clean up first, set your exception last):
 *
 *     RestoreHandle *r;
 *     if (Restore_API->create("path/to/artifact", "onnxruntime", 0, -1, &r) != RESTORE_OK)
 *         fprintf(stderr, "%s\n", Restore_API->last_error());
 *     int scale; Restore_API->scale(r, &scale);
 *     Restore_API->restore_host(r, src, h, w, 3, RESTORE_UINT8, src_stride,
 *                               dst, w * scale * 3);                  // dst: h*scale rows
 *     Restore_API->destroy(r);
 *
 * Frames are H x W x C interleaved (C = 1..4, RGB(A) or gray; a 4th channel is alpha and passed
 * through), rows `row_stride` bytes apart (>= W * C * sizeof(pixel)). The output frame has the
 * input's dtype and channels and is (H * scale) x (W * scale). Calls on one restorer are
 * serialised; use one restorer per thread for parallelism.
 *
 * Every int-returning call gives RESTORE_OK (0) or a status (the same codes as the `restore`
 * command's exit codes); last_error() then has a one-line message for the calling thread, valid
 * until that thread's next call.
 *
 * Build: include dir from `python -c "import restore.runtime.capi as c; print(c.get_include())"`
 * plus Python's headers. Define RESTORE_API_UNIQUE_SYMBOL in a multi-file extension as NumPy
 * does: in one file `#define RESTORE_API_UNIQUE_SYMBOL MyExt_Restore_API`, in the others also
 * `#define NO_IMPORT_RESTORE`.
 */
#ifndef RESTORE_RUNTIME_RESTORE_H
#define RESTORE_RUNTIME_RESTORE_H

#include <Python.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RESTORE_ABI_VERSION 1
#define RESTORE_CAPI_MODULE "restore.runtime.capi"
#define RESTORE_CAPSULE_NAME "restore.runtime.capi._C_API"

typedef enum {
    RESTORE_OK = 0,
    RESTORE_ERROR_INTERNAL = 1, /* a bug in restore: please report the message */
    RESTORE_ERROR_INPUT = 3,    /* bad frame: NULL pointer, size, stride */
    RESTORE_ERROR_MODEL = 4,    /* model file corrupt / built for another TensorRT or GPU */
    RESTORE_ERROR_BACKEND = 6,  /* backend not installed, no GPU */
    RESTORE_ERROR_CONFIG = 7    /* bad argument: unknown model path, backend, tile, handle */
} RestoreStatus;

typedef enum { RESTORE_UINT8 = 0, RESTORE_UINT16 = 1, RESTORE_FLOAT32 = 2 } RestoreDtype;

typedef struct RestoreHandle RestoreHandle; /* opaque */

typedef struct RestoreCAPI {
    unsigned int abi_version; /* RESTORE_ABI_VERSION of the exporting runtime */
    unsigned int struct_size; /* sizeof(RestoreCAPI) as exported; >= the one compiled against */

    /* restore's package version, e.g. "0.1.0" (static string). */
    const char *(*version)(void);

    /* Load `model` ("default", an artifact directory, an .onnx/.engine file or a checkpoint) on
     * `backend` ("auto", "onnxruntime", "torch", "tensorrt"; NULL = auto). tile = 0 and
     * overlap < 0 take the model's advice. On success *out is the new restorer. */
    int (*create)(const char *model, const char *backend, int tile, int overlap, RestoreHandle **out);

    /* The model's upscaling factor (1 or 4). */
    int (*scale)(RestoreHandle *r, int *out);

    /* Restore one frame from host memory into host memory. */
    int (*restore_host)(RestoreHandle *r, const void *src, int height, int width, int channels,
                        int dtype, ptrdiff_t src_row_stride, void *dst, ptrdiff_t dst_row_stride);

    /* The same with device pointers, ordered on `cuda_stream` (a cudaStream_t; NULL = legacy
     * default stream). Returns when dst is written. Currently staged through pinned host memory;
     * RESTORE_ERROR_BACKEND where there is no GPU. */
    int (*restore_device)(RestoreHandle *r, const void *src, int height, int width, int channels,
                          int dtype, ptrdiff_t src_row_stride, void *dst, ptrdiff_t dst_row_stride,
                          void *cuda_stream);

    /* Message of the calling thread's last failed call ("" if it succeeded). */
    const char *(*last_error)(void);

    /* Release the restorer (NULL or an already destroyed handle is ignored). */
    void (*destroy)(RestoreHandle *r);

    /* on != 0: the restorer's next frames (restore_host / restore_device) are one video's, in
     * order: the blur estimate is averaged over them and, where the picture did not move, the
     * previous frame's correction is held (a static scene does not flicker). Each call with
     * on != 0 starts a new video; on = 0 goes back to still pictures (the default). */
    int (*video)(RestoreHandle *r, int on);
} RestoreCAPI;

#if defined(RESTORE_API_UNIQUE_SYMBOL)
#define Restore_API RESTORE_API_UNIQUE_SYMBOL
#endif

#if defined(NO_IMPORT_RESTORE)
extern const RestoreCAPI *Restore_API;
#else
#if defined(RESTORE_API_UNIQUE_SYMBOL)
const RestoreCAPI *Restore_API = NULL;
#else
static const RestoreCAPI *Restore_API = NULL;
#endif

/* Import restore.runtime.capi and fetch its table. 0 on success; -1 with a Python exception. */
static inline int import_restore(void)
{
    PyObject *module = PyImport_ImportModule(RESTORE_CAPI_MODULE);
    if (module == NULL)
        return -1;
    PyObject *capsule = PyObject_GetAttrString(module, "_C_API");
    Py_DECREF(module);
    if (capsule == NULL)
        return -1;
    const RestoreCAPI *api = (const RestoreCAPI *)PyCapsule_GetPointer(capsule, RESTORE_CAPSULE_NAME);
    Py_DECREF(capsule); /* the table is static in the module, which stays imported */
    if (api == NULL)
        return -1;
    if (api->abi_version != RESTORE_ABI_VERSION || api->struct_size < sizeof(RestoreCAPI)) {
        PyErr_Format(PyExc_ImportError,
                     "restore C API ABI %u (table of %u bytes) does not match this extension's "
                     "ABI %d (%u bytes): rebuild the extension against the installed restore",
                     api->abi_version, api->struct_size, RESTORE_ABI_VERSION,
                     (unsigned int)sizeof(RestoreCAPI));
        return -1;
    }
    Restore_API = api;
    return 0;
}
#endif

#ifdef __cplusplus
}
#endif
#endif /* RESTORE_RUNTIME_RESTORE_H */
