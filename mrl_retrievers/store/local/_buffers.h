/* Taking numpy arrays (any object with the buffer protocol) into C: shared by the kernel (_kernel.c)
 * and the graph (_graph.cpp). Plain C that also compiles as C++; include after Python.h. */
#ifndef MRL_BUFFERS_H
#define MRL_BUFFERS_H
#include <string.h>

/* Acquire `obj`'s buffer, C-contiguous, with `ndim` dimensions and items of `itemsize` bytes whose
 * format is one of `formats` (NULL: any); raises TypeError/ValueError and returns 0 otherwise. */
static int take(PyObject *obj, Py_buffer *view, int ndim, Py_ssize_t itemsize, const char *formats, int writable,
                const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return 0;
    const char *format = view->format ? view->format : "B";
    if (format[0] == '<' || format[0] == '=' || format[0] == '@') format++;
    if (view->ndim != ndim || (itemsize && view->itemsize != itemsize) ||
        (formats && (strlen(format) != 1 || !strchr(formats, format[0])))) {
        PyErr_Format(PyExc_TypeError, "%s: expected a %d-d C-contiguous array of format %s, got %d-d '%s'",
                     what, ndim, formats ? formats : "(any)", view->ndim, format);
        PyBuffer_Release(view);
        return 0;
    }
    return 1;
}

#endif /* MRL_BUFFERS_H */
