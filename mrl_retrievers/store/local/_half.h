/* float16 prefixes in the graph's memory: an hnswlib space whose elements are float16 and whose
 * distance (1 - inner product) sums in float32, and the conversions at its edges. C++ (hnswlib's
 * SpaceInterface); included by _graph.cpp only.
 *
 * Why: the graph's prefixes were float32, 4 x prefix_dim bytes of RAM per item (1M x 128: 512 MB of
 * the store's 788), the one part of the store that grows with the prefix width. float16 halves it.
 * The coarse stage only shortlists (the full vectors rerank), and float16 keeps 11 significant bits
 * of each unit-vector component: the shortlist's order changes only among near-ties (measured in
 * docs/benchmarks.md, "float16 prefixes in the graph").
 *
 * The files stay hnswlib's float32 ones (_graph.cpp widens on save and narrows on load), so the
 * hnswlib package still opens every store. Needs the CPU's float16 conversion (F16C): without it
 * (a portable build) HALF_GRAPH is 0 and the graph keeps float32.
 */
#ifndef MRL_HALF_H
#define MRL_HALF_H

#include <stdint.h>

#include "_hnswlib/hnswlib.h"

#if defined(__F16C__) && defined(__AVX__)
#include <immintrin.h>  // only here: a build for another architecture has no such header
#define HALF_GRAPH 1

namespace half {

/* float32 -> float16, round to nearest even (the CPU's conversion). */
inline void narrow(const float *in, uint16_t *out, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(out + i), _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) out[i] = _cvtss_sh(in[i], _MM_FROUND_TO_NEAREST_INT);
}

/* float16 -> float32 (exact). */
inline void widen(const uint16_t *in, float *out, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(in + i))));
    for (; i < n; i++) out[i] = _cvtsh_ss(in[i]);
}

/* 1 - <a, b> over `*dim` float16 components, summed in float32. (GCC 12 warns inside its own
 * _mm512_cvtph_ps and _mm512_reduce_add_ps, whose undefined operands it takes for uninitialized: GCC
 * bug 105593; hnswlib's AVX-512 distance draws the same warning.) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
inline float inner_product_distance(const void *a, const void *b, const void *param) {
    const uint16_t *x = (const uint16_t *)a, *y = (const uint16_t *)b;
    size_t n = *(const size_t *)param, i = 0;
    float sum = 0.0f;
#if defined(__AVX512F__)
    __m512 lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps();  // two chains: the loads overlap the adds
    for (; i + 32 <= n; i += 32) {
        lo = _mm512_add_ps(lo, _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i))),
                                             _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(y + i)))));
        hi = _mm512_add_ps(hi, _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i + 16))),
                                             _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(y + i + 16)))));
    }
    for (; i + 16 <= n; i += 16)
        lo = _mm512_add_ps(lo, _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i))),
                                             _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(y + i)))));
    sum = _mm512_reduce_add_ps(_mm512_add_ps(lo, hi));
#endif
    __m256 acc = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8)
        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))),
                                               _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(y + i)))));
    float lanes[8];
    _mm256_storeu_ps(lanes, acc);
    for (int j = 0; j < 8; j++) sum += lanes[j];
    for (; i < n; i++) sum += _cvtsh_ss(x[i]) * _cvtsh_ss(y[i]);
    return 1.0f - sum;
}
#pragma GCC diagnostic pop

/* hnswlib's InnerProductSpace with float16 elements. */
class InnerProductSpace : public hnswlib::SpaceInterface<float> {
    size_t dim_;

public:
    explicit InnerProductSpace(size_t dim) : dim_(dim) {}
    size_t get_data_size() override { return dim_ * sizeof(uint16_t); }
    hnswlib::DISTFUNC<float> get_dist_func() override { return inner_product_distance; }
    void *get_dist_func_param() override { return &dim_; }
};

}  // namespace half

#else
#define HALF_GRAPH 0
#endif

#endif /* MRL_HALF_H */
