/* The rerank's scoring, shared by the kernel (_kernel.c) and the graph's fused search (_graph.cpp):
 * dot products of stored rows (float16 or float32, read in place through the map) with a unit query,
 * and the best k of them. Plain C that also compiles as C++; every function is static (each
 * extension gets its own copy, with the same arithmetic).
 *
 * Deterministic: the same arithmetic on every machine (16 running sums per row in a fixed order, no
 * fused multiply-add: both extensions are compiled with -ffp-contract=off), whether the CPU converts
 * float16 itself (F16C) or the portable loop does. float16 is converted exactly, without float
 * subnormal arithmetic.
 */
#ifndef MRL_SCORE_H
#define MRL_SCORE_H
#include <stdint.h>
#include <string.h>

#define LANES 16
#define AHEAD 2 /* rows prefetched ahead of the one being scored */

/* Exact float16 -> float32, branch-free so the loops below vectorize: the exponent rebiased for
 * normal numbers; zeros and subnormals via one exact float subtraction (2**-14 * (1 + m/1024) -
 * 2**-14), so no float subnormal arithmetic (slow on x86) is ever done. Stored rows are finite unit
 * vectors (a damaged row fails its CRC), so the infinity/NaN exponent needs no case of its own. */
static inline float bits_to_float(uint32_t bits) {
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint32_t float_to_bits(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    return bits;
}

static inline float half_to_float(uint16_t h) {
    uint32_t magnitude = (uint32_t)(h & 0x7FFFu) << 13;
    uint32_t normal = magnitude + (112u << 23);
    uint32_t small = float_to_bits(bits_to_float(magnitude + (113u << 23)) - 6.103515625e-05f);
    uint32_t is_normal = 0u - (uint32_t)((magnitude & (0x1Fu << 23)) != 0);  /* all ones or zero */
    return bits_to_float((normal & is_normal) | (small & ~is_normal) | ((uint32_t)(h & 0x8000u) << 16));
}

/* The sum of a row's 16 running sums, in lane order, and the tail past the last full 16. */
static inline float finish(float acc[LANES], const uint16_t *row, const float *q, int64_t j, int64_t dim) {
    for (int l = 0; j < dim; j++, l++) acc[l] += half_to_float(row[j]) * q[j];
    float total = 0.0f;
    for (int l = 0; l < LANES; l++) total += acc[l];
    return total;
}

static float dot_f16_portable(const uint16_t *row, const float *q, int64_t dim) {
    float acc[LANES] = {0};
    int64_t j = 0;
    for (; j + LANES <= dim; j += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += half_to_float(row[j + l]) * q[j + l];
    return finish(acc, row, q, j, dim);
}

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
/* The same sums with the CPU's float16 conversion (F16C): lanes 0-7 and 8-15 of each 16, multiplied
 * then added (no fused multiply-add), so the result equals the portable loop's to the bit. */
__attribute__((target("avx,f16c"))) static float dot_f16_f16c(const uint16_t *row, const float *q, int64_t dim) {
    __m256 low = _mm256_setzero_ps(), high = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + LANES <= dim; j += LANES) {
        __m256 a = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + j)));
        __m256 b = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + j + 8)));
        low = _mm256_add_ps(low, _mm256_mul_ps(a, _mm256_loadu_ps(q + j)));
        high = _mm256_add_ps(high, _mm256_mul_ps(b, _mm256_loadu_ps(q + j + 8)));
    }
    float acc[LANES];
    _mm256_storeu_ps(acc, low);
    _mm256_storeu_ps(acc + 8, high);
    return finish(acc, row, q, j, dim);
}

static int f16c_state = -1; /* -1: not asked yet; a benign race: every thread computes the same answer */

static int has_f16c(void) {
    if (f16c_state < 0) {
        __builtin_cpu_init();
        f16c_state = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
    }
    return f16c_state;
}

static float dot_f16(const uint16_t *row, const float *q, int64_t dim) {
    return has_f16c() ? dot_f16_f16c(row, q, dim) : dot_f16_portable(row, q, dim);
}
#else
static float dot_f16(const uint16_t *row, const float *q, int64_t dim) { return dot_f16_portable(row, q, dim); }
#endif

static float dot_f32(const float *row, const float *q, int64_t dim) {
    float acc[LANES] = {0};
    int64_t j = 0;
    for (; j + LANES <= dim; j += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += row[j + l] * q[j + l];
    for (int l = 0; j < dim; j++, l++) acc[l] += row[j] * q[j];
    float total = 0.0f;
    for (int l = 0; l < LANES; l++) total += acc[l];
    return total;
}

/* Ask for a row's cache lines ahead of its turn: candidate rows are scattered over the map, so each
 * one is a DRAM (and TLB) miss the hardware prefetcher cannot guess; overlapping them matters more
 * than the arithmetic (measured at 100k x 1024 float16, 50 rows: 22 -> 16 us a rerank). */
static inline void prefetch_row(const void *base, int64_t dim, int f16, int64_t row) {
    const char *start = (const char *)base + row * dim * (f16 ? 2 : 4);
    int64_t bytes = dim * (f16 ? 2 : 4);
    for (int64_t offset = 0; offset < bytes; offset += 64) __builtin_prefetch(start + offset, 0, 0);
}

static float score_row(const void *base, int64_t dim, int f16, int64_t row, const float *q) {
    if (f16) return dot_f16((const uint16_t *)base + row * dim, q, dim);
    return dot_f32((const float *)base + row * dim, q, dim);
}

/* Full-width scores of rows[0..n) (exact scans, the adaptive climb's scored rows). */
static void scores(const void *base, int64_t dim, int f16, const int64_t *rows, int64_t n, const float *q, float *out) {
    for (int64_t i = 0; i < n && i < AHEAD; i++) prefetch_row(base, dim, f16, rows[i]);
    for (int64_t i = 0; i < n; i++) {
        if (i + AHEAD < n) prefetch_row(base, dim, f16, rows[i + AHEAD]);
        out[i] = score_row(base, dim, f16, rows[i], q);
    }
}

/* a ranks before b: higher score, then lower row (the numpy twin's order: deterministic on ties). */
static inline int before(float sa, int64_t ra, float sb, int64_t rb) {
    return sa > sb || (sa == sb && ra < rb);
}

static inline void swap(float *s, int64_t *r, int64_t a, int64_t b) {
    float ts = s[a]; s[a] = s[b]; s[b] = ts;
    int64_t tr = r[a]; r[a] = r[b]; r[b] = tr;
}

/* Sift the heap's root down. The heap keeps the k best seen so far with the worst at the root. */
static void sift_down(float *s, int64_t *r, int64_t size, int64_t i) {
    for (;;) {
        int64_t worst = i, left = 2 * i + 1, right = left + 1;
        if (left < size && before(s[worst], r[worst], s[left], r[left])) worst = left;
        if (right < size && before(s[worst], r[worst], s[right], r[right])) worst = right;
        if (worst == i) return;
        swap(s, r, i, worst);
        i = worst;
    }
}

/* Offer (s, r) to the heap of the best `k` seen so far (out_scores/out_rows, `size` of them, the worst
 * at the root); returns the heap's new size. */
static inline int64_t offer(float s, int64_t r, int64_t k, int64_t size, int64_t *out_rows, float *out_scores) {
    if (size < k) {  /* fill, keeping the heap property (worst at the root) */
        int64_t c = size++;
        out_scores[c] = s; out_rows[c] = r;
        while (c > 0) {
            int64_t p = (c - 1) / 2;
            if (!before(out_scores[p], out_rows[p], out_scores[c], out_rows[c])) break;
            swap(out_scores, out_rows, p, c);
            c = p;
        }
    } else if (before(s, r, out_scores[0], out_rows[0])) {
        out_scores[0] = s; out_rows[0] = r;
        sift_down(out_scores, out_rows, size, 0);
    }
    return size;
}

/* The heap -> sorted, best first; returns `size`, or -2 when a row listed twice took two places
 * (equal rows have equal scores, so they end up side by side). */
static int64_t sorted_best(int64_t size, int64_t *out_rows, float *out_scores) {
    for (int64_t end = size - 1; end > 0; end--) {  /* pop the worst to the back */
        swap(out_scores, out_rows, 0, end);
        sift_down(out_scores, out_rows, end, 0);
    }
    for (int64_t i = 1; i < size; i++)
        if (out_rows[i] == out_rows[i - 1]) return -2;
    return size;
}

/* Score rows[0..n) and write the best min(n, k) to out_rows/out_scores, best first; returns how
 * many, or -2 when a row listed twice took two places: the caller asks again with unique rows. */
static int64_t top_k(const void *base, int64_t dim, int f16, const int64_t *rows, int64_t n, const float *q,
                     int64_t k, int64_t *out_rows, float *out_scores) {
    int64_t size = 0;
    if (k <= 0) return 0;
    for (int64_t i = 0; i < n && i < AHEAD; i++) prefetch_row(base, dim, f16, rows[i]);
    for (int64_t i = 0; i < n; i++) {
        if (i + AHEAD < n) prefetch_row(base, dim, f16, rows[i + AHEAD]);
        size = offer(score_row(base, dim, f16, rows[i], q), rows[i], k, size, out_rows, out_scores);
    }
    return sorted_best(size, out_rows, out_scores);
}

/* The best min(n, k) of rows[0..n) by scores[0..n) (scored already), in top_k's order and with its
 * answer for a row listed twice. */
static int64_t best_scored(const int64_t *rows, const float *scores, int64_t n, int64_t k, int64_t *out_rows,
                           float *out_scores) {
    int64_t size = 0;
    if (k <= 0) return 0;
    for (int64_t i = 0; i < n; i++) size = offer(scores[i], rows[i], k, size, out_rows, out_scores);
    return sorted_best(size, out_rows, out_scores);
}

#endif /* MRL_SCORE_H */
