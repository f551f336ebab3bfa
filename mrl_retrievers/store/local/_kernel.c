/* The rerank's inner loop in one call: score candidate rows of the memory-mapped vector file
 * against a query and keep the best k, in one call that hands the GIL over at most once (and only
 * for long work: GIL_HOLD_WORK).
 *
 * Why compiled: in Python the same work is ~25 numpy calls a search (gather, float16 conversion, dot,
 * partition, sort), each taking and releasing the GIL; two threads searching side by side then spend
 * more time handing the GIL over than searching (docs/benchmarks.md, "Two threads, stage by stage").
 *
 * The scoring itself lives in _score.h, shared with the graph's fused search (_graph.cpp), so both
 * rank by the same arithmetic. kernel.py holds the module's Python face and its numpy twin (used
 * where this extension was not built).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include "_buffers.h"
#include "_score.h"

/* ---- The Python module: buffers in (numpy arrays), the GIL released around long arithmetic ---- */

/* Rows outside [0, matrix rows): the caller remaps (a row newer than its map) or raises. */
static int rows_in_range(const int64_t *rows, int64_t n, int64_t limit) {
    for (int64_t i = 0; i < n; i++)
        if (rows[i] < 0 || rows[i] >= limit) return 0;
    return 1;
}

/* What every scoring call reads: the matrix (float16 or float32 rows), the rows, the query. */
typedef struct {
    Py_buffer matrix, rows, query;
} Inputs;

static int take_inputs(PyObject *const *args, Inputs *in) {
    if (!take(args[0], &in->matrix, 2, 0, "ef", 0, "matrix")) return 0;
    if (take(args[1], &in->rows, 1, 8, "qlQL", 0, "rows")) {
        if (take(args[2], &in->query, 1, 4, "f", 0, "query")) {
            if (in->query.shape[0] == in->matrix.shape[1]) return 1;
            PyErr_SetString(PyExc_ValueError, "the query's width is not the matrix's");
            PyBuffer_Release(&in->query);
        }
        PyBuffer_Release(&in->rows);
    }
    PyBuffer_Release(&in->matrix);
    return 0;
}

static void release_inputs(Inputs *in) {
    PyBuffer_Release(&in->query);
    PyBuffer_Release(&in->rows);
    PyBuffer_Release(&in->matrix);
}

/* Work (rows x dims) below which a call keeps the GIL. Releasing it lets another thread's Python run
 * meanwhile, but a short release can cost more than it gains: the call ends before the other thread
 * is awake, takes the GIL back, and the other thread waits again. Measured at 100k (50-row reranks
 * at 1024 dims, ~20 us each; docs/benchmarks.md, "The hits' records from memory"): in two threads
 * the rerank alone did 0.93x one thread's work when it released the GIL and 0.99x when it kept it,
 * rerank + hits 0.90x and 1.00x; whole searches were within noise either way (keeping it halves the
 * futex calls of a two-thread search). 2^18 numbers: a 256-row shortlist at 1024 dims, ~50-100 us. */
#define GIL_HOLD_WORK (1 << 18)

/* Releases the GIL for work above GIL_HOLD_WORK only. */
#define BEGIN_LONG_WORK(work) PyThreadState *_gil_saved = (work) > GIL_HOLD_WORK ? PyEval_SaveThread() : NULL;
#define END_LONG_WORK() if (_gil_saved != NULL) PyEval_RestoreThread(_gil_saved);

/* top_k(matrix, rows, query, out_rows, out_scores) -> count; -1: a row lies outside the matrix;
 * -2: a row is listed twice among the winners (ask again with unique rows). */
static PyObject *py_top_k(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    Inputs in;
    Py_buffer orow, oscore;
    if (nargs != 5) return PyErr_Format(PyExc_TypeError, "top_k takes 5 arguments (%zd given)", nargs);
    if (!take_inputs(args, &in)) return NULL;
    PyObject *result = NULL;
    if (take(args[3], &orow, 1, 8, "qlQL", 1, "out_rows")) {
        if (take(args[4], &oscore, 1, 4, "f", 1, "out_scores")) {
            int64_t n = in.rows.shape[0], k = orow.shape[0], count = -1;
            if (oscore.shape[0] != k) {
                PyErr_SetString(PyExc_ValueError, "top_k: out_rows and out_scores differ in length");
            } else {
                BEGIN_LONG_WORK(n * in.matrix.shape[1])
                if (rows_in_range(in.rows.buf, n, in.matrix.shape[0]))
                    count = top_k(in.matrix.buf, in.matrix.shape[1], in.matrix.itemsize == 2, in.rows.buf, n, in.query.buf,
                                  k, orow.buf, oscore.buf);
                END_LONG_WORK()
                result = PyLong_FromLongLong(count);
            }
            PyBuffer_Release(&oscore);
        }
        PyBuffer_Release(&orow);
    }
    release_inputs(&in);
    return result;
}

/* best_scored(rows int64 (n,), scores f32 (n,), out_rows (k,), out_scores (k,)) -> count (-2: a row
 * twice): the best k of rows already scored, in top_k's order (the adaptive climb's answer, ranked
 * by the rule the fixed search ranks by). Keeps the GIL: a few dozen rows. */
static PyObject *py_best_scored(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    Py_buffer rows, scores, orow, oscore;
    if (nargs != 4) return PyErr_Format(PyExc_TypeError, "best_scored takes 4 arguments (%zd given)", nargs);
    if (!take(args[0], &rows, 1, 8, "qlQL", 0, "rows")) return NULL;
    PyObject *result = NULL;
    if (take(args[1], &scores, 1, 4, "f", 0, "scores")) {
        if (take(args[2], &orow, 1, 8, "qlQL", 1, "out_rows")) {
            if (take(args[3], &oscore, 1, 4, "f", 1, "out_scores")) {
                if (scores.shape[0] != rows.shape[0] || oscore.shape[0] != orow.shape[0])
                    PyErr_SetString(PyExc_ValueError, "best_scored: rows and scores, out_rows and out_scores differ in length");
                else
                    result = PyLong_FromLongLong(best_scored(rows.buf, scores.buf, rows.shape[0], orow.shape[0], orow.buf,
                                                             oscore.buf));
                PyBuffer_Release(&oscore);
            }
            PyBuffer_Release(&orow);
        }
        PyBuffer_Release(&scores);
    }
    PyBuffer_Release(&rows);
    return result;
}

/* scores(matrix, rows, query, out) -> 0, or -1 when a row lies outside the matrix. */
static PyObject *py_scores(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    Inputs in;
    Py_buffer out;
    if (nargs != 4) return PyErr_Format(PyExc_TypeError, "scores takes 4 arguments (%zd given)", nargs);
    if (!take_inputs(args, &in)) return NULL;
    PyObject *result = NULL;
    if (take(args[3], &out, 1, 4, "f", 1, "out")) {
        int64_t n = in.rows.shape[0], status = -1;
        if (out.shape[0] != n) {
            PyErr_SetString(PyExc_ValueError, "scores: out's length is not the rows'");
        } else {
            BEGIN_LONG_WORK(n * in.matrix.shape[1])
            if (rows_in_range(in.rows.buf, n, in.matrix.shape[0])) {
                scores(in.matrix.buf, in.matrix.shape[1], in.matrix.itemsize == 2, in.rows.buf, n, in.query.buf, out.buf);
                status = 0;
            }
            END_LONG_WORK()
            result = PyLong_FromLongLong(status);
        }
        PyBuffer_Release(&out);
    }
    release_inputs(&in);
    return result;
}

/* unchecked(checked, rows) -> how many rows the bitmap (one byte a row) does not mark as checked
 * (rows past its end included): rows whose CRC-32 must be verified before their scores count.
 * Keeps the GIL: it is a few hundred byte reads. */
static PyObject *py_unchecked(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    Py_buffer c, r;
    if (nargs != 2) return PyErr_Format(PyExc_TypeError, "unchecked takes 2 arguments (%zd given)", nargs);
    if (!take(args[0], &c, 1, 1, "?bB", 0, "checked")) return NULL;
    if (!take(args[1], &r, 1, 8, "qlQL", 0, "rows")) {
        PyBuffer_Release(&c);
        return NULL;
    }
    const uint8_t *checked = c.buf;
    const int64_t *rows = r.buf;
    int64_t known = c.shape[0], missing = 0;
    for (int64_t i = 0; i < r.shape[0]; i++) missing += rows[i] < 0 || rows[i] >= known || !checked[rows[i]];
    PyBuffer_Release(&r);
    PyBuffer_Release(&c);
    return PyLong_FromLongLong(missing);
}

/* uses_f16c(allow=None) -> whether float16 rows are converted by the CPU's F16C instructions;
 * allow=False makes the portable loop run instead (tests: both paths give the same bits). */
static PyObject *py_uses_f16c(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs > 1) return PyErr_Format(PyExc_TypeError, "uses_f16c takes at most 1 argument (%zd given)", nargs);
#if defined(__GNUC__) && defined(__x86_64__)
    if (nargs == 1 && args[0] != Py_None) {
        int allow = PyObject_IsTrue(args[0]);
        if (allow < 0) return NULL;
        f16c_state = -1;
        if (!allow) f16c_state = 0;
    }
    return PyBool_FromLong(has_f16c());
#else
    (void)args;
    Py_RETURN_FALSE;
#endif
}

/* unit(vector, out) -> the vector's norm, with out = vector / norm; keeps the GIL (1024 numbers take
 * well under a microsecond: releasing it would cost a hand-over). -1.0: not finite (out untouched). */
static PyObject *py_unit(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    Py_buffer v, out;
    if (nargs != 2) return PyErr_Format(PyExc_TypeError, "unit takes 2 arguments (%zd given)", nargs);
    if (!take(args[0], &v, 1, 4, "f", 0, "vector")) return NULL;
    if (!take(args[1], &out, 1, 4, "f", 1, "out")) {
        PyBuffer_Release(&v);
        return NULL;
    }
    double norm = -1.0;
    if (out.shape[0] == v.shape[0]) {
        const float *x = v.buf;
        float *y = out.buf;
        double total = 0.0;
        for (Py_ssize_t i = 0; i < v.shape[0]; i++) total += (double)x[i] * (double)x[i];
        norm = sqrt(total);
        if (norm >= 1e-12 && norm < 3.4e38) {
            float scale = (float)norm;
            for (Py_ssize_t i = 0; i < v.shape[0]; i++) y[i] = x[i] / scale;
        } else {
            norm = -1.0;
        }
    }
    PyBuffer_Release(&out);
    PyBuffer_Release(&v);
    return PyFloat_FromDouble(norm);
}

/* The k-th largest of v[0..n) (0 < k <= n), v reordered: Hoare's selection. */
static float kth_largest(float *v, Py_ssize_t n, Py_ssize_t k) {
    Py_ssize_t lo = 0, hi = n - 1, want = n - k;  /* the (n - k)-th smallest, counting from 0 */
    while (lo < hi) {
        float pivot = v[lo + (hi - lo) / 2];
        Py_ssize_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot) i++;
            while (v[j] > pivot) j--;
            if (i <= j) {
                float t = v[i]; v[i] = v[j]; v[j] = t;
                i++;
                j--;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else break;
    }
    return v[want];
}

/* confidence(sims f32 (n,), scores f32 (n,), k) -> (z, k-th best score) for n > k: the adaptive
 * climb's judgement of one shortlist (effort.confidence_parts: the formula and why). One call in
 * place of ~10 numpy ones (7 us a search at 100k); sums in float64, in order. Keeps the GIL. */
static PyObject *py_confidence(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    Py_buffer sims, scores;
    if (nargs != 3) return PyErr_Format(PyExc_TypeError, "confidence takes 3 arguments (%zd given)", nargs);
    Py_ssize_t k = PyLong_AsSsize_t(args[2]);
    if (k == -1 && PyErr_Occurred()) return NULL;
    if (!take(args[0], &sims, 1, 4, "f", 0, "sims")) return NULL;
    if (!take(args[1], &scores, 1, 4, "f", 0, "scores")) {
        PyBuffer_Release(&sims);
        return NULL;
    }
    Py_ssize_t n = scores.shape[0];
    PyObject *result = NULL;
    float local[512];
    float *copy = n <= 512 ? local : PyMem_Malloc((size_t)n * sizeof(float));
    if (sims.shape[0] != n || k < 1 || n <= k) {
        PyErr_SetString(PyExc_ValueError, "confidence: sims and scores of one length n > k >= 1");
    } else if (copy == NULL) {
        PyErr_NoMemory();
    } else {
        const float *x = sims.buf, *y = scores.buf;
        memcpy(copy, y, (size_t)n * sizeof(float));
        double kth = (double)kth_largest(copy, n, k);
        Py_ssize_t half = n / 2;
        double m = (double)(n - half), sx = 0, sy = 0, sxx = 0, sxy = 0, syy = 0;
        for (Py_ssize_t i = half; i < n; i++) {
            double a = x[i], b = y[i];
            sx += a;
            sy += b;
            sxx += a * a;
            sxy += a * b;
            syy += b * b;
        }
        double vx = sxx - sx * sx / m;
        double slope = vx > 1e-12 ? (sxy - sx * sy / m) / vx : 0.0;
        double resid = syy - sy * sy / m - slope * (sxy - sx * sy / m);
        double scatter = sqrt((resid > 0.0 ? resid : 0.0) / m) + 1e-6;
        double line = sy / m + slope * ((double)x[n - 1] - sx / m);
        result = Py_BuildValue("(dd)", (kth - line) / scatter, kth);
    }
    if (copy != local) PyMem_Free(copy);
    PyBuffer_Release(&scores);
    PyBuffer_Release(&sims);
    return result;
}

/* simulate(conf f64 (n, ratios, levels), recall (same), b, ladder i64 (m,), last, cumulative f64 (m + 1,),
 * taus f64 (t,), out_cost f64 (n, t), out_got f64 (n, t), out_stop i64 (n, t)) -> 0: one candidate
 * policy run on the calibration's trace for every probe and threshold (calibration._simulate: the
 * meaning of each array). A probe stops at the first of the ladder's first `last` levels whose
 * confidence (of ratio b) is >= the threshold (a NaN passes none), else at `last` (m: the exact scan,
 * which finds everything); it pays the cumulative cost there and gets that level's recall.
 * The calibration simulates thousands of candidates: one call in place of ~15 numpy ones and a mask
 * assignment per level (~0.6 s of a 20k store's ~3 s calibration). Keeps the GIL. */
static PyObject *py_simulate(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    enum { CONF, RECALL, LADDER, CUMULATIVE, TAUS, COST, GOT, STOP, NBUF };
    static const int arg_of[NBUF] = {0, 1, 3, 5, 6, 7, 8, 9};
    static const int ndim[NBUF] = {3, 3, 1, 1, 1, 2, 2, 2};
    static const char *format[NBUF] = {"d", "d", "qlQL", "d", "d", "d", "d", "qlQL"};
    static const char *name[NBUF] = {"conf", "recall", "ladder", "cumulative", "taus", "out_cost", "out_got", "out_stop"};
    Py_buffer v[NBUF];
    if (nargs != 10) return PyErr_Format(PyExc_TypeError, "simulate takes 10 arguments (%zd given)", nargs);
    Py_ssize_t b = PyLong_AsSsize_t(args[2]), last = PyLong_AsSsize_t(args[4]);
    if (PyErr_Occurred()) return NULL;
    int got = 0;
    for (; got < NBUF; got++)
        if (!take(args[arg_of[got]], &v[got], ndim[got], 8, format[got], got >= COST, name[got])) break;
    PyObject *result = NULL;
    if (got == NBUF) {
        Py_ssize_t n = v[CONF].shape[0], ratios = v[CONF].shape[1], levels = v[CONF].shape[2];
        Py_ssize_t m = v[LADDER].shape[0], t = v[TAUS].shape[0];
        const int64_t *ladder = v[LADDER].buf;
        int ok = b >= 0 && b < ratios && m >= 1 && last >= 0 && last <= m && v[CUMULATIVE].shape[0] == m + 1 &&
                 v[RECALL].shape[0] == n && v[RECALL].shape[1] == ratios && v[RECALL].shape[2] == levels;
        for (int i = COST; ok && i <= STOP; i++) ok = v[i].shape[0] == n && v[i].shape[1] == t;
        for (Py_ssize_t s = 0; ok && s < m; s++) ok = ladder[s] >= 0 && ladder[s] < levels;
        if (!ok) {
            PyErr_SetString(PyExc_ValueError, "simulate: arrays of mismatched shapes, or a ratio, level or `last` out of range");
        } else {
            const double *conf = v[CONF].buf, *recall = v[RECALL].buf, *cumulative = v[CUMULATIVE].buf, *tau = v[TAUS].buf;
            double *cost = v[COST].buf, *reached = v[GOT].buf;
            int64_t *stop = v[STOP].buf;
            for (Py_ssize_t i = 0; i < n; i++) {
                const double *c = conf + (i * ratios + b) * levels, *r = recall + (i * ratios + b) * levels;
                Py_ssize_t s = 0;
                for (Py_ssize_t j = 0; j < t; j++) {
                    // Thresholds come ascending: a level that failed the one before fails this one too
                    if (j == 0 || !(tau[j] >= tau[j - 1])) s = 0;
                    while (s < last && !(c[ladder[s]] >= tau[j])) s++;
                    stop[i * t + j] = s;
                    cost[i * t + j] = cumulative[s];
                    reached[i * t + j] = s < m ? r[ladder[s]] : 1.0;
                }
            }
            result = PyLong_FromLong(0);
        }
    }
    while (got > 0) PyBuffer_Release(&v[--got]);
    return result;
}

static PyMethodDef methods[] = {
    {"confidence", (PyCFunction)(void (*)(void))py_confidence, METH_FASTCALL,
     "confidence(sims, scores, k) -> (z, k-th best score)"},
    {"simulate", (PyCFunction)(void (*)(void))py_simulate, METH_FASTCALL,
     "simulate(conf, recall, b, ladder, last, cumulative, taus, out_cost, out_got, out_stop) -> 0"},
    {"unit", (PyCFunction)(void (*)(void))py_unit, METH_FASTCALL, "unit(vector, out) -> norm (-1.0: not finite)"},
    {"top_k", (PyCFunction)(void (*)(void))py_top_k, METH_FASTCALL,
     "top_k(matrix, rows, query, out_rows, out_scores) -> count (-1: a row outside the matrix, -2: a row twice)"},
    {"best_scored", (PyCFunction)(void (*)(void))py_best_scored, METH_FASTCALL,
     "best_scored(rows, scores, out_rows, out_scores) -> count (-2: a row twice)"},
    {"scores", (PyCFunction)(void (*)(void))py_scores, METH_FASTCALL,
     "scores(matrix, rows, query, out) -> 0 (-1: a row outside the matrix)"},
    {"unchecked", (PyCFunction)(void (*)(void))py_unchecked, METH_FASTCALL,
     "unchecked(checked, rows) -> rows the checked bitmap does not mark"},
    {"uses_f16c", (PyCFunction)(void (*)(void))py_uses_f16c, METH_FASTCALL,
     "uses_f16c(allow=None) -> whether float16 rows are converted by the CPU's F16C instructions"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernel", "The rerank's compiled inner loop.", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__kernel(void) { return PyModule_Create(&module); }
