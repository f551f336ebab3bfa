/* The coarse index's graph: hnswlib's HNSW (vendored headers, _hnswlib/, v0.8.0, Apache-2.0) behind a
 * small CPython type, and the whole fixed-effort search in one call.
 *
 * Why not the hnswlib package: its Python binding takes the search breadth as a setting of the index
 * (set_ef), so searches at different breadths must take turns (ann._EfGate), and its knn_query is
 * one GIL-free call with Python on both sides. A search here is the graph walk, the checksum-bitmap
 * look-up and the exact rerank of the shortlist in one call that releases the GIL once: with two
 * threads searching, each hand-over of the GIL costs a wake-up of the other thread, and the Python
 * between hnswlib and the kernel kept the GIL ~50-60 us a search (docs/benchmarks.md, "One call from
 * the query to the ranked rows"). The files it reads and writes are hnswlib's own (saveIndex /
 * loadIndex of the same code): a store written with the package opens here and the other way round.
 * ann.py holds the Python face; where this extension was not built, the hnswlib package serves.
 *
 * Memory: with `half` (the default where the CPU converts float16, _half.h), the prefixes are float16
 * in RAM and float32 in the file, widened on save and narrowed on load. The write locks hnswlib
 * allocates on load (40 bytes an element, 2.6 MB of label-operation locks) are allocated at the
 * first write instead: a handle that only searches never needs them.
 *
 * Thread safety: as hnswlib's. Searches run side by side; adds, resizes and deletions need the
 * store's write lock (the caller holds it).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <fstream>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "_hnswlib/hnswlib.h"
#include "_buffers.h"
#include "_half.h"
#include "_score.h"

namespace {

using Alg = hnswlib::HierarchicalNSW<float>;

struct Graph {
    PyObject_HEAD
    hnswlib::SpaceInterface<float> *space;  // float32 (hnswlib's) or float16 (_half.h) elements
    Alg *alg;
    Py_ssize_t dim;
    bool half;  // the prefixes are float16 in RAM
};

/* hnswlib's binding's ParallelFor: rows handed out one at a time to `threads` threads; the first
 * exception stops the others and is rethrown here. */
template <class Function>
void parallel_for(size_t start, size_t end, size_t threads, Function fn) {
    if (threads <= 1 || end - start <= 1) {
        for (size_t id = start; id < end; id++) fn(id);
        return;
    }
    std::vector<std::thread> pool;
    std::atomic<size_t> next(start);
    std::exception_ptr failure = nullptr;
    std::mutex failure_lock;
    for (size_t t = 0; t < threads; t++) {
        pool.emplace_back([&] {
            for (;;) {
                size_t id = next.fetch_add(1);
                if (id >= end) break;
                try {
                    fn(id);
                } catch (...) {
                    std::lock_guard<std::mutex> guard(failure_lock);
                    failure = std::current_exception();
                    next = end;
                    break;
                }
            }
        });
    }
    for (auto &thread : pool) thread.join();
    if (failure) std::rethrow_exception(failure);
}

size_t thread_count(long asked, size_t work) {
    size_t threads = asked > 0 ? (size_t)asked : std::max(1u, std::thread::hardware_concurrency());
    return work <= threads * 4 ? 1 : threads;  // a few rows: one thread (the binding's rule)
}

/* float32 rows (queries, or items to add) in the graph's element type: as they are, or narrowed to
 * float16. */
class Elements {
    std::vector<uint16_t> narrowed_;
    const void *rows_;
    size_t row_bytes_;

public:
    Elements(const Graph *graph, const float *rows, size_t count) : rows_(rows), row_bytes_(graph->dim * sizeof(float)) {
#if HALF_GRAPH
        if (graph->half) {
            narrowed_.resize(count * graph->dim);
            half::narrow(rows, narrowed_.data(), narrowed_.size());
            rows_ = narrowed_.data();
            row_bytes_ = graph->dim * sizeof(uint16_t);
        }
#endif
    }
    const void *row(size_t i) const { return (const char *)rows_ + i * row_bytes_; }
};

/* hnswlib's locks for its writes: one mutex per element slot (link_list_locks_, 40 bytes each,
 * allocated on load and resize) and 65,536 for label operations (label_op_locks_, 2.6 MB a graph).
 * Searches and get_items never take them (the store's write lock keeps writers out of every read).
 * A loaded graph drops them; the first add or deletion allocates them again (under the store's
 * write lock: no search or other write runs beside it). */
void drop_write_locks(Alg *alg) {
    std::vector<std::mutex>().swap(alg->link_list_locks_);
    std::vector<std::mutex>().swap(alg->label_op_locks_);
}

void ensure_write_locks(Alg *alg) {
    if (alg->link_list_locks_.size() != alg->max_elements_) std::vector<std::mutex>(alg->max_elements_).swap(alg->link_list_locks_);
    if (alg->label_op_locks_.empty()) std::vector<std::mutex>(Alg::MAX_LABEL_OPERATION_LOCKS).swap(alg->label_op_locks_);
}

#if HALF_GRAPH
/* The header of hnswlib's file (hnswalg.h saveIndex/loadIndex, v0.8.0), field by field in its order:
 * `visit` reads or writes each. The element count and the float32 element layout are the caller's
 * (the graph's own layout is float16). */
template <class Index, class Visit>  // Index: Alg or const Alg
void header_fields(Index *alg, size_t &count, size_t &per_element, size_t &label_offset, Visit visit) {
    visit(alg->offsetLevel0_);
    visit(alg->max_elements_);
    visit(count);
    visit(per_element);
    visit(label_offset);
    visit(alg->offsetData_);
    visit(alg->maxlevel_);
    visit(alg->enterpoint_node_);
    visit(alg->maxM_);
    visit(alg->maxM0_);
    visit(alg->M_);
    visit(alg->mult_);
    visit(alg->ef_construction_);
}

/* hnswlib's loadIndex (hnswalg.h, v0.8.0) for a float16 graph: the same float32 file, each element's
 * prefix narrowed as it is read (RAM never holds the float32 copy). Field for field as loadIndex,
 * except the write locks (allocated at the first write: ensure_write_locks) and the element layout
 * (float16 data). */
Alg *load_half(hnswlib::SpaceInterface<float> *space, const std::string &location, size_t dim) {
    using hnswlib::readBinaryPOD;
    std::ifstream input(location, std::ios::binary);
    if (!input.is_open()) throw std::runtime_error("Cannot open file");
    std::unique_ptr<Alg> alg(new Alg(space));
    size_t count = 0, file_per_element = 0, file_label_offset = 0;
    header_fields(alg.get(), count, file_per_element, file_label_offset, [&](auto &field) { readBinaryPOD(input, field); });
    if (!input) throw std::runtime_error("Index seems to be corrupted or unsupported");
    size_t links0 = alg->maxM0_ * sizeof(hnswlib::tableint) + sizeof(hnswlib::linklistsizeint);
    if (alg->offsetData_ != links0 || file_label_offset != links0 + dim * sizeof(float) ||
        file_per_element != file_label_offset + sizeof(hnswlib::labeltype) || count > alg->max_elements_)
        throw std::runtime_error("Index seems to be corrupted or unsupported");
    size_t max_elements = alg->max_elements_;
    alg->data_size_ = space->get_data_size();
    alg->fstdistfunc_ = space->get_dist_func();
    alg->dist_func_param_ = space->get_dist_func_param();
    alg->size_links_level0_ = links0;
    alg->label_offset_ = links0 + alg->data_size_;
    alg->size_data_per_element_ = alg->label_offset_ + sizeof(hnswlib::labeltype);
    alg->size_links_per_element_ = alg->maxM_ * sizeof(hnswlib::tableint) + sizeof(hnswlib::linklistsizeint);

    // Allocated before the count is set: if a read below throws, the destructor (clear) frees the link
    // lists of the elements read so far (levels 0 and null lists for the rest).
    alg->data_level0_memory_ = (char *)malloc(max_elements * alg->size_data_per_element_);
    alg->linkLists_ = (char **)calloc(max_elements, sizeof(void *));
    if (alg->data_level0_memory_ == nullptr || alg->linkLists_ == nullptr) throw std::bad_alloc();
    alg->element_levels_ = std::vector<int>(max_elements);
    alg->cur_element_count = count;
    std::vector<char> element(file_per_element);
    for (size_t i = 0; i < count; i++) {
        if (!input.read(element.data(), (std::streamsize)file_per_element))
            throw std::runtime_error("Index seems to be corrupted or unsupported");
        char *slot = alg->data_level0_memory_ + i * alg->size_data_per_element_;
        memcpy(slot, element.data(), links0);
        half::narrow((const float *)(element.data() + links0), (uint16_t *)(slot + links0), dim);
        memcpy(slot + alg->label_offset_, element.data() + file_label_offset, sizeof(hnswlib::labeltype));
    }

    alg->visited_list_pool_.reset(new hnswlib::VisitedListPool(1, max_elements));
    alg->revSize_ = 1.0 / alg->mult_;
    alg->ef_ = 10;
    for (size_t i = 0; i < count; i++) {
        alg->label_lookup_[alg->getExternalLabel((hnswlib::tableint)i)] = (hnswlib::tableint)i;
        unsigned int size;
        readBinaryPOD(input, size);
        if (!input || size % alg->size_links_per_element_) throw std::runtime_error("Index seems to be corrupted or unsupported");
        if (size) {
            alg->linkLists_[i] = (char *)malloc(size);
            if (alg->linkLists_[i] == nullptr) throw std::bad_alloc();
            alg->element_levels_[i] = (int)(size / alg->size_links_per_element_);
            if (!input.read(alg->linkLists_[i], size)) throw std::runtime_error("Index seems to be corrupted or unsupported");
        }
    }
    if (input.peek() != EOF) throw std::runtime_error("Index seems to be corrupted or unsupported");
    for (size_t i = 0; i < count; i++)
        if (alg->isMarkedDeleted((hnswlib::tableint)i)) alg->num_deleted_ += 1;
    return alg.release();
}

/* hnswlib's saveIndex for a float16 graph: the same float32 file hnswlib writes (each prefix widened),
 * so the hnswlib package and a float32 graph open it. */
void save_widened(const Alg *alg, const std::string &location, size_t dim) {
    using hnswlib::writeBinaryPOD;
    std::ofstream output(location, std::ios::binary);
    size_t count = alg->cur_element_count, links0 = alg->size_links_level0_;
    size_t file_label_offset = links0 + dim * sizeof(float);
    size_t file_per_element = file_label_offset + sizeof(hnswlib::labeltype);
    header_fields(alg, count, file_per_element, file_label_offset, [&](const auto &field) { writeBinaryPOD(output, field); });
    std::vector<char> element(file_per_element);
    for (size_t i = 0; i < count; i++) {
        const char *slot = alg->data_level0_memory_ + i * alg->size_data_per_element_;
        memcpy(element.data(), slot, links0);
        half::widen((const uint16_t *)(slot + links0), (float *)(element.data() + links0), dim);
        memcpy(element.data() + file_label_offset, slot + alg->label_offset_, sizeof(hnswlib::labeltype));
        output.write(element.data(), (std::streamsize)file_per_element);
    }
    for (size_t i = 0; i < count; i++) {
        unsigned int size = alg->element_levels_[i] > 0 ? alg->size_links_per_element_ * alg->element_levels_[i] : 0;
        writeBinaryPOD(output, size);
        if (size) output.write(alg->linkLists_[i], size);
    }
    output.close();  // a short write is caught by the caller's header check (ann.AnnIndex.save)
}
#endif

/* hnswlib's searchKnn with the breadth as an argument and without its metric counters (atomics every
 * thread would write). Writes up to k labels and similarities (1 - distance), best first; returns how
 * many (fewer than k when the graph walk found fewer live items), or -1 on a broken link list. */
int64_t search(const Alg *alg, const void *query, size_t k, size_t ef, int64_t *labels, float *sims) {
    if (alg->cur_element_count == 0 || k == 0) return 0;
    hnswlib::tableint current = alg->enterpoint_node_;
    float best = alg->fstdistfunc_(query, alg->getDataByInternalId(current), alg->dist_func_param_);
    for (int level = alg->maxlevel_; level > 0; level--) {
        bool changed = true;
        while (changed) {
            changed = false;
            unsigned int *data = (unsigned int *)alg->get_linklist(current, level);
            int size = alg->getListCount(data);
            hnswlib::tableint *links = (hnswlib::tableint *)(data + 1);
            for (int i = 0; i < size; i++) {
                hnswlib::tableint candidate = links[i];
                if (candidate > alg->max_elements_) return -1;
                float d = alg->fstdistfunc_(query, alg->getDataByInternalId(candidate), alg->dist_func_param_);
                if (d < best) {
                    best = d;
                    current = candidate;
                    changed = true;
                }
            }
        }
    }
    size_t breadth = std::max(ef, k);
    auto found = alg->num_deleted_ ? alg->searchBaseLayerST<false>(current, query, breadth)
                                   : alg->searchBaseLayerST<true>(current, query, breadth);
    while (found.size() > k) found.pop();
    int64_t count = (int64_t)found.size();
    for (int64_t i = count - 1; i >= 0; i--) {  // the queue pops the farthest first
        labels[i] = (int64_t)alg->getExternalLabel(found.top().second);
        sims[i] = 1.0f - found.top().first;
        found.pop();
    }
    return count;
}

/* ---- buffers ---- */

/* Buffers released on every way out of a method. */
struct Views {
    Py_buffer views[8];
    int held = 0;
    Py_buffer *take(PyObject *obj, int ndim, Py_ssize_t itemsize, const char *formats, bool writable, const char *what) {
        Py_buffer *view = &views[held];
        if (!::take(obj, view, ndim, itemsize, formats, writable, what)) return nullptr;
        held++;
        return view;
    }
    ~Views() {
        for (int i = 0; i < held; i++) PyBuffer_Release(&views[i]);
    }
};

const char *const INT64 = "qlQL";

bool ready(Graph *self) {
    if (self->alg != nullptr) return true;
    PyErr_SetString(PyExc_RuntimeError, "the graph holds no index (call init or load first)");
    return false;
}

/* Runs `fn` without the GIL; a C++ exception becomes RuntimeError (MemoryError for bad_alloc). */
template <class Function>
bool without_gil(Function fn) {
    std::string message;
    bool memory = false;
    Py_BEGIN_ALLOW_THREADS
    try {
        fn();
    } catch (const std::bad_alloc &) {
        memory = true;
    } catch (const std::exception &exc) {
        message = exc.what();
        if (message.empty()) message = "hnswlib failed";
    }
    Py_END_ALLOW_THREADS
    if (memory) {
        PyErr_NoMemory();
        return false;
    }
    if (!message.empty()) {
        PyErr_SetString(PyExc_RuntimeError, message.c_str());
        return false;
    }
    return true;
}

/* ---- the type ---- */

PyObject *graph_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    Py_ssize_t dim;
    int half = 0;
    static const char *names[] = {"dim", "half", nullptr};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "n|p", (char **)names, &dim, &half)) return nullptr;
    if (dim <= 0) return PyErr_Format(PyExc_ValueError, "dim must be positive (got %zd)", dim);
    if (half && !HALF_GRAPH) return PyErr_Format(PyExc_ValueError, "float16 prefixes need the CPU's F16C (not compiled in)");
    Graph *self = (Graph *)type->tp_alloc(type, 0);
    if (self == nullptr) return nullptr;
    self->space = nullptr;
    self->alg = nullptr;
    self->dim = dim;
    self->half = half != 0;
    try {
#if HALF_GRAPH
        if (half) self->space = new half::InnerProductSpace((size_t)dim);
#endif
        if (!half) self->space = new hnswlib::InnerProductSpace((size_t)dim);
    } catch (const std::bad_alloc &) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

void graph_dealloc(Graph *self) {
    delete self->alg;
    delete self->space;
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* init(max_elements, M, ef_construction, seed): a new empty index (hnswlib's init_index). */
PyObject *graph_init(Graph *self, PyObject *args) {
    Py_ssize_t max_elements, M, ef_construction, seed;
    if (!PyArg_ParseTuple(args, "nnnn", &max_elements, &M, &ef_construction, &seed)) return nullptr;
    if (self->alg != nullptr) return PyErr_Format(PyExc_RuntimeError, "the graph already holds an index");
    if (max_elements < 1 || M < 2 || ef_construction < 1 || seed < 0)
        return PyErr_Format(PyExc_ValueError, "bad graph parameters");
    Alg *alg = nullptr;
    if (!without_gil([&] { alg = new Alg(self->space, (size_t)max_elements, (size_t)M, (size_t)ef_construction, (size_t)seed); }))
        return nullptr;
    self->alg = alg;
    Py_RETURN_NONE;
}

/* load(path, max_elements): hnswlib's loadIndex (the caller checked the file: ann.check_header). */
PyObject *graph_load(Graph *self, PyObject *args) {
    const char *path;
    Py_ssize_t max_elements;
    if (!PyArg_ParseTuple(args, "sn", &path, &max_elements)) return nullptr;
    if (self->alg != nullptr) return PyErr_Format(PyExc_RuntimeError, "the graph already holds an index");
    std::string location(path);
    Alg *alg = nullptr;
    bool ok = without_gil([&] {
#if HALF_GRAPH
        if (self->half) alg = load_half(self->space, location, (size_t)self->dim);
#endif
        if (!self->half) alg = new Alg(self->space, location, false, (size_t)std::max<Py_ssize_t>(max_elements, 0));
        drop_write_locks(alg);
    });
    if (!ok) return nullptr;
    self->alg = alg;
    Py_RETURN_NONE;
}

PyObject *graph_save(Graph *self, PyObject *args) {
    const char *path;
    if (!PyArg_ParseTuple(args, "s", &path) || !ready(self)) return nullptr;
    std::string location(path);
    bool ok = without_gil([&] {
#if HALF_GRAPH
        if (self->half) return save_widened(self->alg, location, (size_t)self->dim);
#endif
        self->alg->saveIndex(location);
    });
    if (!ok) return nullptr;
    Py_RETURN_NONE;
}

PyObject *graph_is_half(Graph *self, PyObject *) { return PyBool_FromLong(self->half); }

PyObject *graph_count(Graph *self, PyObject *) {
    if (!ready(self)) return nullptr;
    return PyLong_FromSize_t(self->alg->cur_element_count);
}

PyObject *graph_capacity(Graph *self, PyObject *) {
    if (!ready(self)) return nullptr;
    return PyLong_FromSize_t(self->alg->max_elements_);
}

PyObject *graph_resize(Graph *self, PyObject *args) {
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "n", &size) || !ready(self)) return nullptr;
    if (size < (Py_ssize_t)self->alg->cur_element_count)
        return PyErr_Format(PyExc_ValueError, "cannot resize below the element count");
    if (!without_gil([&] { self->alg->resizeIndex((size_t)size); })) return nullptr;  // allocates the write locks
    Py_RETURN_NONE;
}

/* add(items float32 (n, dim), labels int64 (n,), threads): hnswlib's add_items (the first element
 * of an empty graph alone: it becomes the entry point). */
PyObject *graph_add(Graph *self, PyObject *args) {
    PyObject *items_obj, *labels_obj;
    long threads;
    if (!PyArg_ParseTuple(args, "OOl", &items_obj, &labels_obj, &threads) || !ready(self)) return nullptr;
    Views v;
    Py_buffer *items = v.take(items_obj, 2, 4, "f", false, "items");
    Py_buffer *labels = items ? v.take(labels_obj, 1, 8, INT64, false, "labels") : nullptr;
    if (labels == nullptr) return nullptr;
    size_t n = (size_t)items->shape[0];
    if (items->shape[1] != self->dim || (size_t)labels->shape[0] != n)
        return PyErr_Format(PyExc_ValueError, "add: items must be (n, %zd) with n labels", self->dim);
    const int64_t *ids = (const int64_t *)labels->buf;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0) return PyErr_Format(PyExc_ValueError, "add: labels must not be negative");
    Alg *alg = self->alg;
    bool ok = without_gil([&] {
        ensure_write_locks(alg);
        Elements rows(self, (const float *)items->buf, n);
        size_t start = 0;
        if (n && alg->cur_element_count == 0) {
            alg->addPoint(rows.row(0), (hnswlib::labeltype)ids[0]);
            start = 1;
        }
        parallel_for(start, n, thread_count(threads, n), [&](size_t i) { alg->addPoint(rows.row(i), (hnswlib::labeltype)ids[i]); });
    });
    if (!ok) return nullptr;
    Py_RETURN_NONE;
}

/* mark_deleted(label): RuntimeError when the label is unknown or already deleted (as hnswlib). */
PyObject *graph_mark_deleted(Graph *self, PyObject *arg) {
    long long label = PyLong_AsLongLong(arg);
    if ((label == -1 && PyErr_Occurred()) || !ready(self)) return nullptr;
    if (label < 0) return PyErr_Format(PyExc_RuntimeError, "Label not found");
    try {
        ensure_write_locks(self->alg);
        self->alg->markDelete((hnswlib::labeltype)label);
    } catch (const std::exception &exc) {
        return PyErr_Format(PyExc_RuntimeError, "%s", exc.what());
    }
    Py_RETURN_NONE;
}

/* get_items(labels int64 (n,), out float32 (n, dim)): the stored vectors; RuntimeError when a label
 * is unknown or deleted (as hnswlib's getDataByLabel, without its label-operation lock: no write
 * runs beside a read, see drop_write_locks). */
PyObject *graph_get_items(Graph *self, PyObject *args) {
    PyObject *labels_obj, *out_obj;
    if (!PyArg_ParseTuple(args, "OO", &labels_obj, &out_obj) || !ready(self)) return nullptr;
    Views v;
    Py_buffer *labels = v.take(labels_obj, 1, 8, INT64, false, "labels");
    Py_buffer *out = labels ? v.take(out_obj, 2, 4, "f", true, "out") : nullptr;
    if (out == nullptr) return nullptr;
    if (out->shape[0] != labels->shape[0] || out->shape[1] != self->dim)
        return PyErr_Format(PyExc_ValueError, "get_items: out must be (n, %zd)", self->dim);
    const int64_t *ids = (const int64_t *)labels->buf;
    float *dest = (float *)out->buf;
    const Alg *alg = self->alg;
    size_t dim = (size_t)self->dim;
    try {
        for (Py_ssize_t i = 0; i < labels->shape[0]; i++) {
            if (ids[i] < 0) throw std::runtime_error("Label not found");
            std::unique_lock<std::mutex> lock_table(alg->label_lookup_lock);
            auto found = alg->label_lookup_.find((hnswlib::labeltype)ids[i]);
            if (found == alg->label_lookup_.end() || alg->isMarkedDeleted(found->second))
                throw std::runtime_error("Label not found");
            const char *data = alg->getDataByInternalId(found->second);
            lock_table.unlock();
#if HALF_GRAPH
            if (self->half) {
                half::widen((const uint16_t *)data, dest + i * dim, dim);
                continue;
            }
#endif
            memcpy(dest + i * dim, data, dim * sizeof(float));
        }
    } catch (const std::exception &exc) {
        return PyErr_Format(PyExc_RuntimeError, "%s", exc.what());
    }
    Py_RETURN_NONE;
}

/* knn(queries float32 (q, dim), k, ef, threads, out_labels int64 (q, k), out_sims float32 (q, k))
 * -> the fewest results any query got (< k: the walk found fewer live items; the columns past it
 * are unset for that query). Searches at any ef run side by side. */
PyObject *graph_knn(Graph *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) return PyErr_Format(PyExc_TypeError, "knn takes 6 arguments (%zd given)", nargs);
    Py_ssize_t k = PyLong_AsSsize_t(args[1]), ef = PyLong_AsSsize_t(args[2]);
    long threads = PyLong_AsLong(args[3]);
    if (PyErr_Occurred() || !ready(self)) return nullptr;
    Views v;
    Py_buffer *queries = v.take(args[0], 2, 4, "f", false, "queries");
    Py_buffer *labels = queries ? v.take(args[4], 2, 8, INT64, true, "out_labels") : nullptr;
    Py_buffer *sims = labels ? v.take(args[5], 2, 4, "f", true, "out_sims") : nullptr;
    if (sims == nullptr) return nullptr;
    size_t n = (size_t)queries->shape[0];
    if (queries->shape[1] != self->dim || k < 1 || ef < 1 || (size_t)labels->shape[0] != n || labels->shape[1] != k ||
        (size_t)sims->shape[0] != n || sims->shape[1] != k)
        return PyErr_Format(PyExc_ValueError, "knn: queries (q, %zd), outputs (q, k), k and ef positive", self->dim);
    const Alg *alg = self->alg;
    int64_t *out_labels = (int64_t *)labels->buf;
    float *out_sims = (float *)sims->buf;
    std::atomic<int64_t> fewest((int64_t)k);
    bool ok = without_gil([&] {
        Elements q(self, (const float *)queries->buf, n);
        parallel_for(0, n, thread_count(threads, n), [&](size_t i) {
            int64_t got = search(alg, q.row(i), (size_t)k, (size_t)ef, out_labels + i * k, out_sims + i * k);
            if (got < 0) throw std::runtime_error("a link list of the graph is broken");
            int64_t seen = fewest.load();
            while (got < seen && !fewest.compare_exchange_weak(seen, got)) {
            }
        });
    });
    if (!ok) return nullptr;
    return PyLong_FromLongLong(fewest.load());
}

/* The fused calls' shared first half: the graph walk for `shortlist` candidates at `ef` into
 * cand/sims (prefix order, nearest first), then every candidate looked up in the map and the checked
 * bitmap. 0 when all is well, else the status the fused calls return (see search_best_of). */
int64_t walk_checked(Graph *self, const float *prefix, Py_ssize_t shortlist, Py_ssize_t ef, int64_t mapped,
                     const uint8_t *bitmap, int64_t known, int64_t *cand, float *sims) {
    Elements walk(self, prefix, 1);
    int64_t got = search(self->alg, walk.row(0), (size_t)shortlist, (size_t)ef, cand, sims);
    if (got < 0) throw std::runtime_error("a link list of the graph is broken");
    if (got < shortlist) return -3;
    for (int64_t i = 0; i < got; i++) {
        if (cand[i] >= mapped) return -1;
        if (cand[i] >= known || !bitmap[cand[i]]) return -4;
    }
    return 0;
}

/* The fused calls' arguments, shapes checked: (prefix_query, shortlist, ef, matrix, checked, query,
 * candidates, out_a, out_b), the last two of the given formats. */
struct FusedArgs {
    Views v;
    Py_ssize_t shortlist = 0, ef = 0;
    Py_buffer *prefix = nullptr, *matrix = nullptr, *checked = nullptr, *query = nullptr, *candidates = nullptr,
              *out_a = nullptr, *out_b = nullptr;

    bool take(Graph *self, const char *name, PyObject *const *args, Py_ssize_t nargs, int a_size, const char *a_format,
              const char *a_name, const char *b_name) {
        if (nargs != 9) {
            PyErr_Format(PyExc_TypeError, "%s takes 9 arguments (%zd given)", name, nargs);
            return false;
        }
        shortlist = PyLong_AsSsize_t(args[1]);
        ef = PyLong_AsSsize_t(args[2]);
        if (PyErr_Occurred() || !ready(self)) return false;
        prefix = v.take(args[0], 1, 4, "f", false, "prefix_query");
        matrix = prefix ? v.take(args[3], 2, 0, "ef", false, "matrix") : nullptr;
        checked = matrix ? v.take(args[4], 1, 1, "?bB", false, "checked") : nullptr;
        query = checked ? v.take(args[5], 1, 4, "f", false, "query") : nullptr;
        candidates = query ? v.take(args[6], 1, 8, INT64, true, "candidates") : nullptr;
        out_a = candidates ? v.take(args[7], 1, a_size, a_format, true, a_name) : nullptr;
        out_b = out_a ? v.take(args[8], 1, 4, "f", true, b_name) : nullptr;
        if (out_b == nullptr) return false;
        if (prefix->shape[0] != self->dim || query->shape[0] != matrix->shape[1] || shortlist < 1 || ef < 1 ||
            candidates->shape[0] != shortlist || out_a->shape[0] != out_b->shape[0]) {
            PyErr_Format(PyExc_ValueError, "%s: argument shapes do not agree", name);
            return false;
        }
        return true;
    }

    int64_t walk(Graph *self, float *sims) {
        return walk_checked(self, (const float *)prefix->buf, shortlist, ef, matrix->shape[0],
                            (const uint8_t *)checked->buf, checked->shape[0], (int64_t *)candidates->buf, sims);
    }
};

/* search_best_of(prefix_query f32 (dim,), shortlist, ef, matrix (rows, full) f16/f32, checked u8
 * bitmap, query f32 (full,), candidates int64 (shortlist,), out_rows int64 (k,), out_scores f32 (k,))
 * -> the number of hits written, best first: the graph walk for `shortlist` candidates at `ef`, then
 * the exact rerank of those candidates (the kernel's top_k), in one call without the GIL. Negative:
 *   -1  a candidate lies outside the matrix (a read-only handle's map is older than its graph),
 *   -3  the walk found fewer than `shortlist` live items (the caller widens ef and asks again),
 *   -4  a candidate's checksum was never verified by this handle (the checked bitmap): `candidates`
 *       holds the whole shortlist, for the caller to verify and rerank,
 *   -2  a candidate listed twice (the graph's labels are unique: not expected).
 * The same answer as knn followed by the kernel's top_k over the candidates. */
PyObject *graph_search_best_of(Graph *self, PyObject *const *args, Py_ssize_t nargs) {
    FusedArgs a;
    if (!a.take(self, "search_best_of", args, nargs, 8, INT64, "out_rows", "out_scores")) return nullptr;
    std::vector<float> sims((size_t)a.shortlist);
    int64_t count = 0;
    bool ok = without_gil([&] {
        count = a.walk(self, sims.data());
        if (count == 0)
            count = top_k(a.matrix->buf, a.matrix->shape[1], a.matrix->itemsize == 2, (const int64_t *)a.candidates->buf,
                          a.shortlist, (const float *)a.query->buf, a.out_a->shape[0], (int64_t *)a.out_a->buf,
                          (float *)a.out_b->buf);
    });
    if (!ok) return nullptr;
    return PyLong_FromLongLong(count);
}

/* search_scored(prefix_query, shortlist, ef, matrix, checked, query, candidates int64 (shortlist,),
 * out_sims f32 (shortlist,), out_scores f32 (shortlist,)) -> `shortlist`, or search_best_of's
 * negative statuses: the graph walk, then the full score of every candidate, all in prefix order (the
 * adaptive climb's first level: it judges the whole shortlist, not only its best k). The same
 * numbers as knn followed by the kernel's scores over the candidates. */
PyObject *graph_search_scored(Graph *self, PyObject *const *args, Py_ssize_t nargs) {
    FusedArgs a;
    if (!a.take(self, "search_scored", args, nargs, 4, "f", "out_sims", "out_scores")) return nullptr;
    if (a.out_a->shape[0] != a.shortlist)
        return PyErr_Format(PyExc_ValueError, "search_scored: out_sims and out_scores must hold the shortlist");
    int64_t count = 0;
    bool ok = without_gil([&] {
        count = a.walk(self, (float *)a.out_a->buf);
        if (count == 0) {
            scores(a.matrix->buf, a.matrix->shape[1], a.matrix->itemsize == 2, (const int64_t *)a.candidates->buf,
                   a.shortlist, (const float *)a.query->buf, (float *)a.out_b->buf);
            count = a.shortlist;
        }
    });
    if (!ok) return nullptr;
    return PyLong_FromLongLong(count);
}

PyMethodDef graph_methods[] = {
    {"init", (PyCFunction)graph_init, METH_VARARGS, "init(max_elements, M, ef_construction, seed)"},
    {"load", (PyCFunction)graph_load, METH_VARARGS, "load(path, max_elements): an hnswlib index file"},
    {"save", (PyCFunction)graph_save, METH_VARARGS, "save(path): an hnswlib index file"},
    {"is_half", (PyCFunction)graph_is_half, METH_NOARGS, "whether the prefixes are float16 in RAM"},
    {"count", (PyCFunction)graph_count, METH_NOARGS, "elements ever added (deleted included)"},
    {"capacity", (PyCFunction)graph_capacity, METH_NOARGS, "elements the index has room for"},
    {"resize", (PyCFunction)graph_resize, METH_VARARGS, "resize(max_elements)"},
    {"add", (PyCFunction)graph_add, METH_VARARGS, "add(items, labels, threads)"},
    {"mark_deleted", (PyCFunction)graph_mark_deleted, METH_O, "mark_deleted(label)"},
    {"get_items", (PyCFunction)graph_get_items, METH_VARARGS, "get_items(labels, out)"},
    {"knn", (PyCFunction)(void (*)(void))graph_knn, METH_FASTCALL,
     "knn(queries, k, ef, threads, out_labels, out_sims) -> the fewest results a query got"},
    {"search_best_of", (PyCFunction)(void (*)(void))graph_search_best_of, METH_FASTCALL,
     "search_best_of(prefix_query, shortlist, ef, matrix, checked, query, candidates, out_rows, out_scores) -> hits or a "
     "negative status"},
    {"search_scored", (PyCFunction)(void (*)(void))graph_search_scored, METH_FASTCALL,
     "search_scored(prefix_query, shortlist, ef, matrix, checked, query, candidates, out_sims, out_scores) -> the "
     "shortlist's length or a negative status"},
    {nullptr, nullptr, 0, nullptr},
};

PyTypeObject GraphType = {PyVarObject_HEAD_INIT(nullptr, 0)};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_graph", "The coarse index's HNSW graph (vendored hnswlib) and the fused search.",
                      -1, nullptr, nullptr, nullptr, nullptr, nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__graph(void) {
    GraphType.tp_name = "mrl_retrievers.store.local._graph.Graph";
    GraphType.tp_basicsize = sizeof(Graph);
    GraphType.tp_flags = Py_TPFLAGS_DEFAULT;
    GraphType.tp_doc = "Graph(dim, half=False): an HNSW inner-product index (hnswlib's, vendored); half: float16 prefixes in RAM";
    GraphType.tp_new = graph_new;
    GraphType.tp_dealloc = (destructor)graph_dealloc;
    GraphType.tp_methods = graph_methods;
    if (PyType_Ready(&GraphType) < 0) return nullptr;
    PyObject *m = PyModule_Create(&module);
    if (m == nullptr) return nullptr;
    if (PyModule_AddIntConstant(m, "HALF", HALF_GRAPH) < 0) {  // whether Graph(dim, half=True) is available
        Py_DECREF(m);
        return nullptr;
    }
    Py_INCREF(&GraphType);
    if (PyModule_AddObject(m, "Graph", (PyObject *)&GraphType) < 0) {
        Py_DECREF(&GraphType);
        Py_DECREF(m);
        return nullptr;
    }
    return m;
}
