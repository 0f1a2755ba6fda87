/*
 * CommP kernel: Fr32 padding and the truncated SHA-256 binary tree, in C.
 *
 * The Python layer (ptolemy_tui/core/commp.py) owns the streaming state (partial quads, the carry stack,
 * the deferred prefix, threads). This module only computes roots of complete, aligned subtrees:
 *
 *   root(data, k, impl=None) -> 32 bytes
 *       data holds 127 * 2**k payload bytes (2**k "quads"); returns the root of the 4 * 2**k leaf tree.
 *       The GIL is released while hashing, so two Python threads hash two batches in parallel.
 *   hash_pairs(data, impl=None) -> bytes     each 64-byte block -> SHA-256, last byte &= 0x3f
 *   fr32(data) -> bytes                      127-byte quads -> 128-byte Fr32-padded quads
 *   impls() -> tuple                         the SHA-256 implementations this CPU runs, fastest first
 *   sha_ni() -> bool                         the SHA-NI implementation is available
 *
 * impl is None (the fastest), "avx512", "sha-ni" or "portable"; availability is checked at run time (cpuid,
 * and XGETBV for the OS's AVX-512 state), so one binary runs on every x86-64 CPU.
 *
 * Every tree node is SHA-256 of exactly 64 bytes: one compression of the data block and one of the constant
 * padding block, whose message schedule (W[t] + K[t]) is precomputed.
 *  - "sha-ni": the SHA extensions, two independent pairs interleaved (measured here: 1 lane 425 MB/s,
 *    2 lanes 463, 4 lanes 442; sha256rnds2 throughput is the ceiling, about 15 M pairs/s per core).
 *  - "avx512": sixteen pairs at once, one per 32-bit lane of a zmm register (vprord + vpternlogd make a
 *    round about 17 instructions for 16 lanes). Leaves are gathered into lanes once; above them each level
 *    stays lane-major, so the next level needs one permute per word instead of gathers and scatters. On this
 *    Xeon: 902 MB of payload per CPU-second against 473 for SHA-NI (4 MB subtrees, fr32 included; 823 when
 *    every level was gathered and scattered). The last 15 pairs of each 512-quad chunk go to SHA-NI.
 *  - "portable": plain C.
 * Everything is 64-bit clean (pieces up to 64 GiB).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if !defined(COMMP_NO_SHANI) && (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define COMMP_X86 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define COMMP_X86 0
#endif

/* AVX-512 intrinsics need GCC >= 7 or clang >= 5; older compilers still get SHA-NI and portable C. */
#if COMMP_X86 && !defined(COMMP_NO_AVX512) && (defined(__clang__) ? __clang_major__ >= 5 : __GNUC__ >= 7)
#define COMMP_AVX512 1
#else
#define COMMP_AVX512 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define ALIGNED(n) __attribute__((aligned(n)))
#else
#define ALIGNED(n)
#endif

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static const uint32_t IV256[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

/* W[t] + K[t] for the padding block of a 64-byte message (0x80, zeros, bit length 512). */
static uint32_t PADWK[64] ALIGNED(16);

/* impls() lists them from the last to the first: a static preference only; commp.py calibrates and chooses. */
enum { IMPL_PORTABLE = 0, IMPL_SHANI = 1, IMPL_AVX512 = 2, IMPL_SHANI4 = 3, IMPL_COUNT = 4 };
static const char *const IMPL_NAMES[IMPL_COUNT] = {"portable", "sha-ni", "avx512", "sha-ni-x4"};
static int g_avail[IMPL_COUNT] = {1, 0, 0, 0};
static int g_best = IMPL_PORTABLE;

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
#define S0(x) (ROTR(x, 2) ^ ROTR(x, 13) ^ ROTR(x, 22))
#define S1(x) (ROTR(x, 6) ^ ROTR(x, 11) ^ ROTR(x, 25))
#define s0(x) (ROTR(x, 7) ^ ROTR(x, 18) ^ ((x) >> 3))
#define s1(x) (ROTR(x, 17) ^ ROTR(x, 19) ^ ((x) >> 10))
#define CH(x, y, z) (((x) & (y)) ^ (~(x) & (z)))
#define MAJ(x, y, z) (((x) & (y)) ^ ((x) & (z)) ^ ((y) & (z)))

static inline uint32_t load_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline void store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline uint64_t load_le64(const uint8_t *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
#else
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
#endif
}

static inline void store_le64(uint8_t *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(p, &v, 8);
#else
    for (int i = 0; i < 8; i++) { p[i] = (uint8_t)v; v >>= 8; }
#endif
}

/* ---------------------------------------------------------------- portable SHA-256 */

/* 64 rounds over wk[t] = W[t] + K[t]. */
static inline void rounds_wk(uint32_t st[8], const uint32_t wk[64])
{
    uint32_t a = st[0], b = st[1], c = st[2], d = st[3], e = st[4], f = st[5], g = st[6], h = st[7];
    for (int t = 0; t < 64; t++) {
        uint32_t t1 = h + S1(e) + CH(e, f, g) + wk[t];
        uint32_t t2 = S0(a) + MAJ(a, b, c);
        h = g; g = f; f = e; e = d + t1;
        d = c; c = b; b = a; a = t1 + t2;
    }
    st[0] += a; st[1] += b; st[2] += c; st[3] += d; st[4] += e; st[5] += f; st[6] += g; st[7] += h;
}

static void pair_portable(const uint8_t in[64], uint8_t out[32])
{
    uint32_t w[64], st[8];
    for (int t = 0; t < 16; t++) w[t] = load_be32(in + 4 * t);
    for (int t = 16; t < 64; t++) w[t] = s1(w[t - 2]) + w[t - 7] + s0(w[t - 15]) + w[t - 16];
    for (int t = 0; t < 64; t++) w[t] += K256[t];
    memcpy(st, IV256, sizeof st);
    rounds_wk(st, w);
    rounds_wk(st, PADWK);
    for (int i = 0; i < 8; i++) store_be32(out + 4 * i, st[i]);
    out[31] &= 0x3f;
}

static void pairs_portable(const uint8_t *in, uint8_t *out, size_t npairs)
{
    for (size_t i = 0; i < npairs; i++) pair_portable(in + 64 * i, out + 32 * i);
}

static void init_padwk(void)
{
    uint32_t w[64];
    memset(w, 0, sizeof w);
    w[0] = 0x80000000u;
    w[15] = 512;
    for (int t = 16; t < 64; t++) w[t] = s1(w[t - 2]) + w[t - 7] + s0(w[t - 15]) + w[t - 16];
    for (int t = 0; t < 64; t++) PADWK[t] = w[t] + K256[t];
}

typedef void (*pairs_fn)(const uint8_t *, uint8_t *, size_t);
static void reduce(uint8_t *a, uint8_t *b, size_t n, pairs_fn pairs, uint8_t out[32]);

/* ---------------------------------------------------------------- SHA-NI */

#if COMMP_X86
#define SHANI_TARGET __attribute__((target("sha,sse4.1,ssse3")))

/* Hash LANES consecutive 64-byte blocks into LANES 32-byte outputs (masked), interleaved. */
#define DEFINE_SHANI(NAME, LANES)                                                                          \
    SHANI_TARGET static void NAME(const uint8_t *in, uint8_t *out)                                         \
    {                                                                                                      \
        const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);                \
        const __m128i iv0 = _mm_set_epi32((int)0x6a09e667, (int)0xbb67ae85, (int)0x510e527f, (int)0x9b05688c); \
        const __m128i iv1 = _mm_set_epi32((int)0x3c6ef372, (int)0xa54ff53a, (int)0x1f83d9ab, (int)0x5be0cd19); \
        __m128i st0[LANES], st1[LANES], m[4][LANES], wk, sv0[LANES], sv1[LANES];                           \
        for (int l = 0; l < LANES; l++) {                                                                  \
            st0[l] = iv0;                                                                                  \
            st1[l] = iv1;                                                                                  \
            for (int j = 0; j < 4; j++)                                                                    \
                m[j][l] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(in + 64 * l + 16 * j)), bswap); \
        }                                                                                                  \
        _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++)                                              \
        {                                                                                                  \
            const __m128i k = _mm_loadu_si128((const __m128i *)(K256 + 4 * i));                            \
            for (int l = 0; l < LANES; l++) {                                                              \
                if (i >= 4) {                                                                              \
                    __m128i x = _mm_sha256msg1_epu32(m[i & 3][l], m[(i + 1) & 3][l]);                      \
                    x = _mm_add_epi32(x, _mm_alignr_epi8(m[(i + 3) & 3][l], m[(i + 2) & 3][l], 4));        \
                    m[i & 3][l] = _mm_sha256msg2_epu32(x, m[(i + 3) & 3][l]);                              \
                }                                                                                          \
                wk = _mm_add_epi32(m[i & 3][l], k);                                                        \
                st1[l] = _mm_sha256rnds2_epu32(st1[l], st0[l], wk);                                        \
                st0[l] = _mm_sha256rnds2_epu32(st0[l], st1[l], _mm_shuffle_epi32(wk, 0x0E));               \
            }                                                                                              \
        }                                                                                                  \
        for (int l = 0; l < LANES; l++) {                                                                  \
            st0[l] = _mm_add_epi32(st0[l], iv0);                                                           \
            st1[l] = _mm_add_epi32(st1[l], iv1);                                                           \
            sv0[l] = st0[l];                                                                               \
            sv1[l] = st1[l];                                                                               \
        }                                                                                                  \
        _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++)                                              \
        {                                                                                                  \
            const __m128i k = _mm_load_si128((const __m128i *)(PADWK + 4 * i));                            \
            const __m128i kh = _mm_shuffle_epi32(k, 0x0E);                                                 \
            for (int l = 0; l < LANES; l++) {                                                              \
                st1[l] = _mm_sha256rnds2_epu32(st1[l], st0[l], k);                                         \
                st0[l] = _mm_sha256rnds2_epu32(st0[l], st1[l], kh);                                        \
            }                                                                                              \
        }                                                                                                  \
        const __m128i top = _mm_set_epi32(0x3fffffff, -1, -1, -1);                                         \
        for (int l = 0; l < LANES; l++) {                                                                  \
            __m128i a = _mm_add_epi32(st0[l], sv0[l]);                                                     \
            __m128i b = _mm_add_epi32(st1[l], sv1[l]);                                                     \
            __m128i t = _mm_shuffle_epi32(a, 0x1B);                                                        \
            b = _mm_shuffle_epi32(b, 0xB1);                                                                \
            __m128i o0 = _mm_blend_epi16(t, b, 0xF0);                                                      \
            __m128i o1 = _mm_alignr_epi8(b, t, 8);                                                         \
            o0 = _mm_shuffle_epi8(o0, bswap);                                                              \
            o1 = _mm_and_si128(_mm_shuffle_epi8(o1, bswap), top);                                          \
            _mm_storeu_si128((__m128i *)(out + 32 * l), o0);                                               \
            _mm_storeu_si128((__m128i *)(out + 32 * l + 16), o1);                                          \
        }                                                                                                  \
    }

DEFINE_SHANI(shani_x1, 1)
DEFINE_SHANI(shani_x2, 2)

DEFINE_SHANI(shani_x4, 4)

SHANI_TARGET static void pairs_shani(const uint8_t *in, uint8_t *out, size_t npairs)
{
    size_t i = 0;
    for (; i + 2 <= npairs; i += 2) shani_x2(in + 64 * i, out + 32 * i);
    if (i < npairs) shani_x1(in + 64 * i, out + 32 * i);
}

/* Four independent pairs in flight: on Zen 4 sha256rnds2 has the latency to hide four chains (measured there:
 * 985 MB of payload per CPU-second against 811 for two); on the Xeon above two was best. Calibration picks. */
SHANI_TARGET static void pairs_shani4(const uint8_t *in, uint8_t *out, size_t npairs)
{
    size_t i = 0;
    for (; i + 4 <= npairs; i += 4) shani_x4(in + 64 * i, out + 32 * i);
    for (; i + 2 <= npairs; i += 2) shani_x2(in + 64 * i, out + 32 * i);
    if (i < npairs) shani_x1(in + 64 * i, out + 32 * i);
}

/* ---------------------------------------------------------------- AVX-512: 16 pairs per call */
#if COMMP_AVX512

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw")))
#define XOR3(a, b, c) _mm512_ternarylogic_epi32((a), (b), (c), 0x96)
#define AVX_ROUND(a, b, c, d, e, f, g, h, wk)                                                               \
    do {                                                                                                   \
        __m512i t1_ = _mm512_add_epi32(                                                                    \
            _mm512_add_epi32(h, wk),                                                                       \
            _mm512_add_epi32(XOR3(_mm512_ror_epi32(e, 6), _mm512_ror_epi32(e, 11), _mm512_ror_epi32(e, 25)), \
                             _mm512_ternarylogic_epi32(e, f, g, 0xCA)));                                  \
        __m512i t2_ = _mm512_add_epi32(                                                                    \
            XOR3(_mm512_ror_epi32(a, 2), _mm512_ror_epi32(a, 13), _mm512_ror_epi32(a, 22)),                \
            _mm512_ternarylogic_epi32(a, b, c, 0xE8));                                                     \
        d = _mm512_add_epi32(d, t1_);                                                                      \
        h = _mm512_add_epi32(t1_, t2_);                                                                    \
    } while (0)
#define AVX_ROUNDS8(wk0, wk1, wk2, wk3, wk4, wk5, wk6, wk7)                                                \
    do {                                                                                                   \
        AVX_ROUND(a, b, c, d, e, f, g, h, wk0);                                                            \
        AVX_ROUND(h, a, b, c, d, e, f, g, wk1);                                                            \
        AVX_ROUND(g, h, a, b, c, d, e, f, wk2);                                                            \
        AVX_ROUND(f, g, h, a, b, c, d, e, wk3);                                                            \
        AVX_ROUND(e, f, g, h, a, b, c, d, wk4);                                                            \
        AVX_ROUND(d, e, f, g, h, a, b, c, wk5);                                                            \
        AVX_ROUND(c, d, e, f, g, h, a, b, wk6);                                                            \
        AVX_ROUND(b, c, d, e, f, g, h, a, wk7);                                                            \
    } while (0)

/* The two compressions of 16 independent 64-byte messages (w: 16 message words, one message per lane, as
 * big-endian values) -> the 8 digest words of each, as values, the last word masked (out[31] &= 0x3f). */
AVX512_TARGET static inline __attribute__((always_inline)) void avx512_compress(__m512i w[16], __m512i o[8])
{
    __m512i wk[8];
    __m512i a = _mm512_set1_epi32((int)IV256[0]), b = _mm512_set1_epi32((int)IV256[1]);
    __m512i c = _mm512_set1_epi32((int)IV256[2]), d = _mm512_set1_epi32((int)IV256[3]);
    __m512i e = _mm512_set1_epi32((int)IV256[4]), f = _mm512_set1_epi32((int)IV256[5]);
    __m512i g = _mm512_set1_epi32((int)IV256[6]), h = _mm512_set1_epi32((int)IV256[7]);
    _Pragma("GCC unroll 8") for (int t = 0; t < 64; t += 8)
    {
        for (int j = 0; j < 8; j++) {
            int u = t + j;
            if (u >= 16) {
                __m512i x15 = w[(u + 1) & 15], x2 = w[(u + 14) & 15];
                __m512i sg0 = XOR3(_mm512_ror_epi32(x15, 7), _mm512_ror_epi32(x15, 18), _mm512_srli_epi32(x15, 3));
                __m512i sg1 = XOR3(_mm512_ror_epi32(x2, 17), _mm512_ror_epi32(x2, 19), _mm512_srli_epi32(x2, 10));
                w[u & 15] = _mm512_add_epi32(_mm512_add_epi32(w[u & 15], sg0), _mm512_add_epi32(w[(u + 9) & 15], sg1));
            }
            wk[j] = _mm512_add_epi32(w[u & 15], _mm512_set1_epi32((int)K256[u]));
        }
        AVX_ROUNDS8(wk[0], wk[1], wk[2], wk[3], wk[4], wk[5], wk[6], wk[7]);
    }
    a = _mm512_add_epi32(a, _mm512_set1_epi32((int)IV256[0]));
    b = _mm512_add_epi32(b, _mm512_set1_epi32((int)IV256[1]));
    c = _mm512_add_epi32(c, _mm512_set1_epi32((int)IV256[2]));
    d = _mm512_add_epi32(d, _mm512_set1_epi32((int)IV256[3]));
    e = _mm512_add_epi32(e, _mm512_set1_epi32((int)IV256[4]));
    f = _mm512_add_epi32(f, _mm512_set1_epi32((int)IV256[5]));
    g = _mm512_add_epi32(g, _mm512_set1_epi32((int)IV256[6]));
    h = _mm512_add_epi32(h, _mm512_set1_epi32((int)IV256[7]));
    const __m512i sa = a, sb = b, sc = c, sd = d, se = e, sf = f, sg = g, sh = h;
    _Pragma("GCC unroll 8") for (int t = 0; t < 64; t += 8)
    {
        AVX_ROUNDS8(_mm512_set1_epi32((int)PADWK[t]), _mm512_set1_epi32((int)PADWK[t + 1]),
                    _mm512_set1_epi32((int)PADWK[t + 2]), _mm512_set1_epi32((int)PADWK[t + 3]),
                    _mm512_set1_epi32((int)PADWK[t + 4]), _mm512_set1_epi32((int)PADWK[t + 5]),
                    _mm512_set1_epi32((int)PADWK[t + 6]), _mm512_set1_epi32((int)PADWK[t + 7]));
    }
    o[0] = _mm512_add_epi32(a, sa);
    o[1] = _mm512_add_epi32(b, sb);
    o[2] = _mm512_add_epi32(c, sc);
    o[3] = _mm512_add_epi32(d, sd);
    o[4] = _mm512_add_epi32(e, se);
    o[5] = _mm512_add_epi32(f, sf);
    o[6] = _mm512_add_epi32(g, sg);
    o[7] = _mm512_and_si512(_mm512_add_epi32(h, sh), _mm512_set1_epi32((int)0xFFFFFF3F)); /* out[31] &= 0x3f */
}

#define BSWAP32X16 _mm512_set4_epi32(0x0c0d0e0f, 0x08090a0b, 0x04050607, 0x00010203)
#define IDX_IN _mm512_setr_epi32(0, 64, 128, 192, 256, 320, 384, 448, 512, 576, 640, 704, 768, 832, 896, 960)

/* 16 consecutive 64-byte blocks at in -> 16 masked 32-byte digests at out (bytes in, bytes out). */
AVX512_TARGET static void avx512_x16(const uint8_t *in, uint8_t *out)
{
    const __m512i bswap = BSWAP32X16, idx_in = IDX_IN;
    const __m512i idx_out = _mm512_setr_epi32(0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416,
                                              448, 480);
    __m512i w[16], o[8];
    for (int t = 0; t < 16; t++) w[t] = _mm512_shuffle_epi8(_mm512_i32gather_epi32(idx_in, in + 4 * t, 1), bswap);
    avx512_compress(w, o);
    for (int i = 0; i < 8; i++) _mm512_i32scatter_epi32(out + 4 * i, idx_out, _mm512_shuffle_epi8(o[i], bswap), 1);
}

/*
 * Inside a subtree the levels stay in a lane-major ("SoA") layout between AVX-512 calls: a group of 16 nodes is
 * 8 vectors of 16 words (word i of node j at [16 i + j], as values), so a level's output is the next level's
 * input after one two-source permute per message word, without gathers, scatters or byte swaps.
 */

/* 16 pairs of leaves (1024 bytes) -> one SoA group. */
AVX512_TARGET static void avx512_leaves_to_soa(const uint8_t *in, uint32_t *out)
{
    const __m512i bswap = BSWAP32X16, idx_in = IDX_IN;
    __m512i w[16], o[8];
    for (int t = 0; t < 16; t++) w[t] = _mm512_shuffle_epi8(_mm512_i32gather_epi32(idx_in, in + 4 * t, 1), bswap);
    avx512_compress(w, o);
    for (int i = 0; i < 8; i++) _mm512_storeu_si512((void *)(out + 16 * i), o[i]);
}

/* Two SoA groups (32 nodes = 16 pairs) -> one SoA group of their parents. */
AVX512_TARGET static void avx512_soa_to_soa(const uint32_t *in, uint32_t *out)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    __m512i w[16], o[8];
    for (int t = 0; t < 8; t++) {
        __m512i g0 = _mm512_loadu_si512((const void *)(in + 16 * t));
        __m512i g1 = _mm512_loadu_si512((const void *)(in + 128 + 16 * t));
        w[t] = _mm512_permutex2var_epi32(g0, even, g1);     /* left child: word t */
        w[t + 8] = _mm512_permutex2var_epi32(g0, odd, g1);  /* right child: word t */
    }
    avx512_compress(w, o);
    for (int i = 0; i < 8; i++) _mm512_storeu_si512((void *)(out + 16 * i), o[i]);
}

/* Root of n leaves (a power of two >= 32) at leaves; a and b are scratch of n * 16 and n * 8 bytes. */
/* always_inline: built as its own function (GCC 12) the AVX-512 path ran at 550 MB per CPU-second instead of
 * 980 on Zen 4; inlined into subtree_root, as it was before root_iov existed, it is fast again. */
static inline __attribute__((always_inline)) void reduce_avx512(const uint8_t *leaves, size_t n, uint32_t *a, uint32_t *b, uint8_t root[32])
{
    size_t groups = n / 32; /* level 0: n / 2 pairs in groups of 16 */
    for (size_t g = 0; g < groups; g++) avx512_leaves_to_soa(leaves + 1024 * g, a + 128 * g);
    size_t nodes = n / 2;
    while (nodes >= 32) {
        groups = nodes / 32;
        for (size_t g = 0; g < groups; g++) avx512_soa_to_soa(a + 256 * g, b + 128 * g);
        uint32_t *t = a;
        a = b;
        b = t;
        nodes /= 2;
    }
    /* 16 nodes left in one SoA group: back to bytes, then 15 pairs on the narrow path */
    uint8_t bytes[16 * 32], scratch[8 * 32];
    for (int j = 0; j < 16; j++)
        for (int i = 0; i < 8; i++) store_be32(bytes + 32 * j + 4 * i, a[16 * i + j]);
    reduce(bytes, scratch, 16, g_avail[IMPL_SHANI] ? pairs_shani : pairs_portable, root);
}

#endif /* COMMP_AVX512 */

static void pairs_avx512(const uint8_t *in, uint8_t *out, size_t npairs)
{
    size_t i = 0;
#if COMMP_AVX512
    for (; i + 16 <= npairs; i += 16) avx512_x16(in + 64 * i, out + 32 * i);
#endif
    if (i < npairs) {
        if (g_avail[IMPL_SHANI])
            pairs_shani(in + 64 * i, out + 32 * i, npairs - i);
        else
            pairs_portable(in + 64 * i, out + 32 * i, npairs - i);
    }
}

static void detect(void)
{
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    int sse41_ssse3 = (c & (1u << 19)) && (c & (1u << 9));
    int osxsave = (c >> 27) & 1;
    if (__get_cpuid_max(0, NULL) < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    g_avail[IMPL_SHANI] = g_avail[IMPL_SHANI4] = sse41_ssse3 && ((b >> 29) & 1);
    if (COMMP_AVX512 && osxsave && ((b >> 16) & 1) && ((b >> 30) & 1)) { /* AVX512F, AVX512BW */
        unsigned int xlo, xhi;
        __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
        (void)xhi;
        g_avail[IMPL_AVX512] = (xlo & 0xE6) == 0xE6; /* the OS saves SSE, AVX, opmask and ZMM state */
    }
}
#else
static void pairs_shani(const uint8_t *in, uint8_t *out, size_t npairs) { pairs_portable(in, out, npairs); }
static void pairs_avx512(const uint8_t *in, uint8_t *out, size_t npairs) { pairs_portable(in, out, npairs); }
static void pairs_shani4(const uint8_t *in, uint8_t *out, size_t npairs) { pairs_portable(in, out, npairs); }
static void detect(void) {}
#endif

static pairs_fn impl_fn(int impl)
{
    switch (impl) {
    case IMPL_AVX512: return pairs_avx512;
    case IMPL_SHANI: return pairs_shani;
    case IMPL_SHANI4: return pairs_shani4;
    default: return pairs_portable;
    }
}

/* ---------------------------------------------------------------- SHA-256 of many equal chunks
 *
 * sha256_chunks(data, chunk_size) hashes data[0:chunk_size], data[chunk_size:2 * chunk_size], ... (the last
 * chunk may be shorter): plain SHA-256 of each chunk, whole messages of any length (the UnixFS raw leaves of
 * a CAR). "avx512" runs sixteen chunks at once, one per 32-bit lane (the blocks of the 16 messages are
 * transposed into lane-major words in registers); leftover chunks go to SHA-NI, else portable C.
 */

static void sha_blocks_portable(uint32_t st[8], const uint8_t *p, size_t nblocks)
{
    uint32_t w[64];
    for (size_t b = 0; b < nblocks; b++, p += 64) {
        for (int t = 0; t < 16; t++) w[t] = load_be32(p + 4 * t);
        for (int t = 16; t < 64; t++) w[t] = s1(w[t - 2]) + w[t - 7] + s0(w[t - 15]) + w[t - 16];
        for (int t = 0; t < 64; t++) w[t] += K256[t];
        rounds_wk(st, w);
    }
}

#if COMMP_X86
/* st: the state as words a..h; converted to and from SHA-NI's ABEF / CDGH layout around the blocks. */
SHANI_TARGET static void sha_blocks_shani(uint32_t st[8], const uint8_t *p, size_t nblocks)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i st0 = _mm_set_epi32((int)st[0], (int)st[1], (int)st[4], (int)st[5]);
    __m128i st1 = _mm_set_epi32((int)st[2], (int)st[3], (int)st[6], (int)st[7]);
    for (size_t b = 0; b < nblocks; b++, p += 64) {
        __m128i m[4], wk;
        const __m128i sv0 = st0, sv1 = st1;
        for (int j = 0; j < 4; j++) m[j] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * j)), bswap);
        _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++)
        {
            const __m128i k = _mm_loadu_si128((const __m128i *)(K256 + 4 * i));
            if (i >= 4) {
                __m128i x = _mm_sha256msg1_epu32(m[i & 3], m[(i + 1) & 3]);
                x = _mm_add_epi32(x, _mm_alignr_epi8(m[(i + 3) & 3], m[(i + 2) & 3], 4));
                m[i & 3] = _mm_sha256msg2_epu32(x, m[(i + 3) & 3]);
            }
            wk = _mm_add_epi32(m[i & 3], k);
            st1 = _mm_sha256rnds2_epu32(st1, st0, wk);
            st0 = _mm_sha256rnds2_epu32(st0, st1, _mm_shuffle_epi32(wk, 0x0E));
        }
        st0 = _mm_add_epi32(st0, sv0);
        st1 = _mm_add_epi32(st1, sv1);
    }
    uint32_t a[4], c[4];
    _mm_storeu_si128((__m128i *)a, st0); /* a[3..0] = A B E F */
    _mm_storeu_si128((__m128i *)c, st1); /* c[3..0] = C D G H */
    st[0] = a[3]; st[1] = a[2]; st[4] = a[1]; st[5] = a[0];
    st[2] = c[3]; st[3] = c[2]; st[6] = c[1]; st[7] = c[0];
}
#endif

typedef void (*blocks_fn)(uint32_t st[8], const uint8_t *p, size_t nblocks);

/* The 1 or 2 padding blocks of a message of len bytes whose last len % 64 bytes are at tail. */
static size_t sha_tail(const uint8_t *tail, uint64_t len, uint8_t out[128])
{
    size_t r = (size_t)(len % 64), n = r < 56 ? 64 : 128;
    memset(out, 0, n);
    if (r) memcpy(out, tail, r);
    out[r] = 0x80;
    uint64_t bits = len * 8;
    for (int i = 0; i < 8; i++) out[n - 1 - i] = (uint8_t)(bits >> (8 * i));
    return n / 64;
}

static void sha_one(const uint8_t *p, uint64_t len, blocks_fn blocks, uint8_t out[32])
{
    uint32_t st[8];
    uint8_t tail[128];
    memcpy(st, IV256, sizeof st);
    size_t full = (size_t)(len / 64);
    if (full) blocks(st, p, full);
    blocks(st, tail, sha_tail(p + 64 * full, len, tail));
    for (int i = 0; i < 8; i++) store_be32(out + 4 * i, st[i]);
}

#if COMMP_AVX512
/* nblocks 64-byte blocks of 16 messages (lane l at p[l] + 64 * b) into the lane-major state st[8]. */
AVX512_TARGET static void sha_blocks_avx512(__m512i st[8], const uint8_t *const p[16], size_t nblocks)
{
    const __m512i bswap = BSWAP32X16;
    __m512i a = st[0], b = st[1], c = st[2], d = st[3], e = st[4], f = st[5], g = st[6], h = st[7];
    for (size_t blk = 0; blk < nblocks; blk++) {
        __m512i w[16], wk[8], r[16], q[16];
        size_t off = 64 * blk;
        for (int l = 0; l < 16; l++) r[l] = _mm512_loadu_si512((const void *)(p[l] + off));
        /* 16x16 transpose of 32-bit words: w[t] holds word t of every lane */
        for (int l = 0; l < 16; l += 2) {
            q[l] = _mm512_unpacklo_epi32(r[l], r[l + 1]);
            q[l + 1] = _mm512_unpackhi_epi32(r[l], r[l + 1]);
        }
        for (int l = 0; l < 16; l += 4) {
            r[l] = _mm512_unpacklo_epi64(q[l], q[l + 2]);
            r[l + 1] = _mm512_unpackhi_epi64(q[l], q[l + 2]);
            r[l + 2] = _mm512_unpacklo_epi64(q[l + 1], q[l + 3]);
            r[l + 3] = _mm512_unpackhi_epi64(q[l + 1], q[l + 3]);
        }
        /* r[4i + j]: 128-bit lane k holds words 4k + j of rows 4i .. 4i + 3 (j: 0, 1, 2, 3 after unpack order) */
        for (int j = 0; j < 4; j++) {
            __m512i x0 = _mm512_shuffle_i32x4(r[j], r[4 + j], 0x88);      /* lanes 0,2 of r[j]; 0,2 of r[4+j] */
            __m512i x1 = _mm512_shuffle_i32x4(r[j], r[4 + j], 0xDD);      /* lanes 1,3 */
            __m512i y0 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0x88);
            __m512i y1 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0xDD);
            q[j] = _mm512_shuffle_i32x4(x0, y0, 0x88);       /* 128-bit lane 0 of each row group: words j */
            q[8 + j] = _mm512_shuffle_i32x4(x0, y0, 0xDD);   /* lane 2: words 8 + j */
            q[4 + j] = _mm512_shuffle_i32x4(x1, y1, 0x88);   /* lane 1: words 4 + j */
            q[12 + j] = _mm512_shuffle_i32x4(x1, y1, 0xDD);  /* lane 3: words 12 + j */
        }
        for (int t = 0; t < 16; t++) w[t] = _mm512_shuffle_epi8(q[t], bswap);
        const __m512i sa = a, sb = b, sc = c, sd = d, se = e, sf = f, sg = g, sh = h;
        _Pragma("GCC unroll 8") for (int t = 0; t < 64; t += 8)
        {
            for (int j = 0; j < 8; j++) {
                int u = t + j;
                if (u >= 16) {
                    __m512i x15 = w[(u + 1) & 15], x2 = w[(u + 14) & 15];
                    __m512i sg0 = XOR3(_mm512_ror_epi32(x15, 7), _mm512_ror_epi32(x15, 18), _mm512_srli_epi32(x15, 3));
                    __m512i sg1 = XOR3(_mm512_ror_epi32(x2, 17), _mm512_ror_epi32(x2, 19), _mm512_srli_epi32(x2, 10));
                    w[u & 15] = _mm512_add_epi32(_mm512_add_epi32(w[u & 15], sg0),
                                                 _mm512_add_epi32(w[(u + 9) & 15], sg1));
                }
                wk[j] = _mm512_add_epi32(w[u & 15], _mm512_set1_epi32((int)K256[u]));
            }
            AVX_ROUNDS8(wk[0], wk[1], wk[2], wk[3], wk[4], wk[5], wk[6], wk[7]);
        }
        a = _mm512_add_epi32(a, sa); b = _mm512_add_epi32(b, sb);
        c = _mm512_add_epi32(c, sc); d = _mm512_add_epi32(d, sd);
        e = _mm512_add_epi32(e, se); f = _mm512_add_epi32(f, sf);
        g = _mm512_add_epi32(g, sg); h = _mm512_add_epi32(h, sh);
    }
    st[0] = a; st[1] = b; st[2] = c; st[3] = d; st[4] = e; st[5] = f; st[6] = g; st[7] = h;
}

/* SHA-256 of 16 messages of len bytes each (lane l at p[l]) -> out + 32 * l. */
AVX512_TARGET static void sha_x16(const uint8_t *const p[16], uint64_t len, uint8_t *out)
{
    __m512i st[8];
    uint8_t tails[16][128] ALIGNED(64);
    const uint8_t *tp[16];
    size_t full = (size_t)(len / 64), ntail = 1;
    for (int i = 0; i < 8; i++) st[i] = _mm512_set1_epi32((int)IV256[i]);
    if (full) sha_blocks_avx512(st, p, full);
    for (int l = 0; l < 16; l++) {
        ntail = sha_tail(p[l] + 64 * full, len, tails[l]);
        tp[l] = tails[l];
    }
    sha_blocks_avx512(st, tp, ntail);
    uint32_t words[8][16] ALIGNED(64);
    for (int i = 0; i < 8; i++) _mm512_store_si512((void *)words[i], st[i]);
    for (int l = 0; l < 16; l++)
        for (int i = 0; i < 8; i++) store_be32(out + 32 * l + 4 * i, words[i][l]);
}
#endif

/* Digests of the n chunks of data (chunk bytes each, the last one last bytes) into out (32 * n bytes). */
static void sha_chunks(const uint8_t *data, uint64_t chunk, size_t n, uint64_t last, int impl, uint8_t *out)
{
    blocks_fn blocks = sha_blocks_portable;
#if COMMP_X86
    if (impl != IMPL_PORTABLE && g_avail[IMPL_SHANI]) blocks = sha_blocks_shani;
#endif
    size_t i = 0, nfull = last == chunk ? n : n - 1;
#if COMMP_AVX512
    if (impl == IMPL_AVX512) {
        const uint8_t *p[16];
        while (nfull - i >= 16 || (blocks == sha_blocks_portable && nfull > i)) {
            /* a group of fewer than 16 (portable fallback only) repeats its first chunk in the spare lanes */
            uint8_t spare[16 * 32];
            size_t g = nfull - i >= 16 ? 16 : nfull - i;
            for (size_t l = 0; l < 16; l++) p[l] = data + chunk * (i + (l < g ? l : 0));
            if (g == 16) {
                sha_x16(p, chunk, out + 32 * i);
            } else {
                sha_x16(p, chunk, spare);
                memcpy(out + 32 * i, spare, 32 * g);
            }
            i += g;
        }
    }
#endif
    for (; i < n; i++) sha_one(data + chunk * i, i == n - 1 ? last : chunk, blocks, out + 32 * i);
}

/* ---------------------------------------------------------------- Fr32 */

/* One 127-byte quad (1016 bits, little-endian) -> four 32-byte leaves of 254 bits each. */
static inline void fr32_quad(const uint8_t *in, uint8_t *out)
{
    uint64_t w[4];
    /* leaf 0: bits 0..253 */
    memcpy(out, in, 32);
    out[31] &= 0x3f;
    /* leaf 1: bits 254..507 start at byte 31, bit 6 */
    for (int k = 0; k < 4; k++) w[k] = (load_le64(in + 31 + 8 * k) >> 6) | (load_le64(in + 39 + 8 * k) << 58);
    w[3] &= 0x3fffffffffffffffULL;
    for (int k = 0; k < 4; k++) store_le64(out + 32 + 8 * k, w[k]);
    /* leaf 2: bits 508..761 start at byte 63, bit 4 */
    for (int k = 0; k < 4; k++) w[k] = (load_le64(in + 63 + 8 * k) >> 4) | (load_le64(in + 71 + 8 * k) << 60);
    w[3] &= 0x3fffffffffffffffULL;
    for (int k = 0; k < 4; k++) store_le64(out + 64 + 8 * k, w[k]);
    /* leaf 3: bits 762..1015 start at byte 95, bit 2 (the last word must not read past byte 126) */
    for (int k = 0; k < 3; k++) w[k] = (load_le64(in + 95 + 8 * k) >> 2) | (load_le64(in + 103 + 8 * k) << 62);
    w[3] = load_le64(in + 119) >> 2;
    for (int k = 0; k < 4; k++) store_le64(out + 96 + 8 * k, w[k]);
}

static void fr32_quads(const uint8_t *in, uint8_t *out, size_t nquads)
{
    for (size_t q = 0; q < nquads; q++) fr32_quad(in + 127 * q, out + 128 * q);
}

/* The payload of a subtree as a list of byte ranges read in place (the CAR writer's segments: frame buffer
 * ranges and leaves in read buffers), consumed front to back. Quads inside one range are padded from where they
 * are; only a quad that straddles two ranges is gathered (127 bytes) first. */
typedef struct {
    const uint8_t *const *ptr;
    const size_t *len;
    size_t n, i, off; /* current range and offset in it */
} iov_cursor;

static void fr32_quads_iov(iov_cursor *cur, uint8_t *out, size_t nquads)
{
    uint8_t quad[127];
    size_t q = 0;
    while (q < nquads) {
        while (cur->off == cur->len[cur->i]) { /* empty ranges, and the end of the current one */
            cur->i++;
            cur->off = 0;
        }
        size_t avail = cur->len[cur->i] - cur->off;
        if (avail >= 127) {
            size_t run = avail / 127;
            if (run > nquads - q) run = nquads - q;
            fr32_quads(cur->ptr[cur->i] + cur->off, out + 128 * q, run);
            cur->off += 127 * run;
            q += run;
            continue;
        }
        size_t got = 0;
        while (got < 127) {
            while (cur->off == cur->len[cur->i]) {
                cur->i++;
                cur->off = 0;
            }
            size_t take = cur->len[cur->i] - cur->off;
            if (take > 127 - got) take = 127 - got;
            memcpy(quad + got, cur->ptr[cur->i] + cur->off, take);
            cur->off += take;
            got += take;
        }
        fr32_quad(quad, out + 128 * q);
        q++;
    }
}

/* ---------------------------------------------------------------- subtree roots */

#define CHUNK_QUADS 512 /* 64 KiB of leaves reduced level by level: 2047 pairs, 15 in groups < 16 (128..1024 measured equal) */

/* Reduce n (a power of two) 32-byte nodes held in a to one root in out; b is scratch of n/2 nodes. */
static void reduce(uint8_t *a, uint8_t *b, size_t n, pairs_fn pairs, uint8_t out[32])
{
    uint8_t *src = a, *dst = b;
    while (n > 1) {
        pairs(src, dst, n / 2);
        uint8_t *t = src;
        src = dst;
        dst = t;
        n /= 2;
    }
    memcpy(out, src, 32);
}

/* Root of the tree over the next 2**k quads (127 << k bytes) of cur. Returns 0, or -1 when out of memory. */
static int subtree_root(iov_cursor *cur, unsigned k, int impl, uint8_t root[32])
{
    pairs_fn pairs = impl_fn(impl);
    uint64_t nquads = (uint64_t)1 << k;
    uint64_t chunk = nquads < CHUNK_QUADS ? nquads : CHUNK_QUADS;
    uint64_t nchunks = nquads / chunk;
    size_t work_size = (size_t)chunk * 128 + (size_t)chunk * 64;
    size_t roots_size = nchunks > 1 ? (size_t)nchunks * 32 + (size_t)nchunks * 16 + 32 : 0;
    uint8_t *work = (uint8_t *)malloc(work_size + roots_size + 64);
    if (!work) return -1;
    uint8_t *leaves = work, *scratch = work + (size_t)chunk * 128;
    uint8_t *roots = scratch + (size_t)chunk * 64, *roots2 = roots + (size_t)nchunks * 32;
    for (uint64_t c = 0; c < nchunks; c++) {
        uint8_t *out = nchunks > 1 ? roots + c * 32 : root;
        fr32_quads_iov(cur, leaves, (size_t)chunk);
#if COMMP_AVX512
        if (impl == IMPL_AVX512 && chunk >= 8) {
            /* scratch (chunk * 64 bytes) holds level 1, leaves (no longer needed) level 2, and so on */
            reduce_avx512(leaves, (size_t)chunk * 4, (uint32_t *)scratch, (uint32_t *)leaves, out);
            continue;
        }
#endif
        reduce(leaves, scratch, (size_t)chunk * 4, pairs, out);
    }
    if (nchunks > 1) reduce(roots, roots2, (size_t)nchunks, pairs, root);
    free(work);
    return 0;
}

/* ---------------------------------------------------------------- Python bindings */

/* impl argument: None -> the fastest available; else a name from IMPL_NAMES that this CPU runs. */
static int parse_impl(PyObject *arg, int *impl)
{
    if (arg == NULL || arg == Py_None) {
        *impl = g_best;
        return 0;
    }
    const char *name = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    if (name == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "impl must be a str or None");
        return -1;
    }
    for (int i = 0; i < IMPL_COUNT; i++) {
        if (strcmp(name, IMPL_NAMES[i]) == 0) {
            if (!g_avail[i]) {
                PyErr_Format(PyExc_ValueError, "SHA-256 implementation %s is not available on this CPU", name);
                return -1;
            }
            *impl = i;
            return 0;
        }
    }
    PyErr_Format(PyExc_ValueError, "unknown SHA-256 implementation %s (sha-ni-x4, avx512, sha-ni, portable)", name);
    return -1;
}

static PyObject *py_root(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"data", "k", "impl", NULL};
    Py_buffer buf;
    unsigned int k;
    PyObject *impl_arg = NULL;
    int impl, rc;
    uint8_t root[32];
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*I|O", kwlist, &buf, &k, &impl_arg)) return NULL;
    if (parse_impl(impl_arg, &impl)) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    if (k > 40 || (uint64_t)buf.len != ((uint64_t)127 << k)) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "root(): data must hold exactly 127 * 2**k bytes");
        return NULL;
    }
    const uint8_t *ptr = (const uint8_t *)buf.buf;
    size_t len = (size_t)buf.len;
    iov_cursor cur = {&ptr, &len, 1, 0, 0};
    Py_BEGIN_ALLOW_THREADS
    rc = subtree_root(&cur, k, impl, root);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    if (rc) return PyErr_NoMemory();
    return PyBytes_FromStringAndSize((const char *)root, 32);
}

/* root_iov(parts, offset, k, impl=None): the root over 127 << k bytes of the concatenation of parts (a list or
 * tuple of buffers), from byte offset on. Nothing is copied but quads that straddle two parts. */
static PyObject *py_root_iov(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"parts", "offset", "k", "impl", NULL};
    PyObject *parts_arg, *impl_arg = NULL, *seq;
    unsigned long long offset;
    unsigned int k;
    int impl, rc = 0;
    uint8_t root[32];
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OKI|O", kwlist, &parts_arg, &offset, &k, &impl_arg)) return NULL;
    if (parse_impl(impl_arg, &impl)) return NULL;
    if (k > 40) {
        PyErr_SetString(PyExc_ValueError, "root_iov(): k must be <= 40");
        return NULL;
    }
    seq = PySequence_Fast(parts_arg, "root_iov(): parts must be a list or tuple of buffers");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), got = 0;
    Py_buffer *bufs = (Py_buffer *)PyMem_Calloc((size_t)n + 1, sizeof(Py_buffer));
    const uint8_t **ptrs = (const uint8_t **)PyMem_Calloc((size_t)n + 1, sizeof(*ptrs));
    size_t *lens = (size_t *)PyMem_Calloc((size_t)n + 1, sizeof(size_t));
    if (!bufs || !ptrs || !lens) {
        PyErr_NoMemory();
        goto done;
    }
    uint64_t total = 0;
    for (; got < n; got++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, got), &bufs[got], PyBUF_SIMPLE)) goto done;
        ptrs[got] = (const uint8_t *)bufs[got].buf;
        lens[got] = (size_t)bufs[got].len;
        total += (uint64_t)bufs[got].len;
    }
    if (total < offset || total - offset < ((uint64_t)127 << k)) {
        PyErr_SetString(PyExc_ValueError, "root_iov(): parts hold fewer than offset + 127 * 2**k bytes");
        goto done;
    }
    iov_cursor cur = {ptrs, lens, (size_t)n, 0, 0};
    uint64_t skip = offset;
    while (skip >= lens[cur.i] && skip) { /* whole parts before offset */
        skip -= lens[cur.i];
        cur.i++;
    }
    cur.off = (size_t)skip;
    Py_BEGIN_ALLOW_THREADS
    rc = subtree_root(&cur, k, impl, root);
    Py_END_ALLOW_THREADS
    if (rc) PyErr_NoMemory();
done:
    for (Py_ssize_t i = 0; i < got; i++) PyBuffer_Release(&bufs[i]);
    PyMem_Free(bufs);
    PyMem_Free(ptrs);
    PyMem_Free(lens);
    Py_DECREF(seq);
    if (PyErr_Occurred()) return NULL;
    return PyBytes_FromStringAndSize((const char *)root, 32);
}

static PyObject *py_hash_pairs(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"data", "impl", NULL};
    Py_buffer buf;
    PyObject *impl_arg = NULL;
    int impl;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|O", kwlist, &buf, &impl_arg)) return NULL;
    if (parse_impl(impl_arg, &impl)) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    if (buf.len % 64) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "hash_pairs(): data must be a multiple of 64 bytes");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, buf.len / 2);
    if (!out) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    uint8_t *o = (uint8_t *)PyBytes_AS_STRING(out);
    pairs_fn pairs = impl_fn(impl);
    Py_BEGIN_ALLOW_THREADS
    pairs((const uint8_t *)buf.buf, o, (size_t)(buf.len / 64));
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    return out;
}

static PyObject *py_sha256_chunks(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"data", "chunk_size", "impl", NULL};
    Py_buffer buf;
    Py_ssize_t chunk;
    PyObject *impl_arg = NULL;
    int impl;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*n|O", kwlist, &buf, &chunk, &impl_arg)) return NULL;
    if (parse_impl(impl_arg, &impl)) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    if (chunk <= 0) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "sha256_chunks(): chunk_size must be > 0");
        return NULL;
    }
    size_t n = (size_t)((buf.len + chunk - 1) / chunk);
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(32 * n));
    if (!out) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    if (n) {
        uint8_t *o = (uint8_t *)PyBytes_AS_STRING(out);
        uint64_t last = (uint64_t)(buf.len - (Py_ssize_t)(n - 1) * chunk);
        Py_BEGIN_ALLOW_THREADS
        sha_chunks((const uint8_t *)buf.buf, (uint64_t)chunk, n, last, impl, o);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&buf);
    return out;
}

static PyObject *py_fr32(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*", &buf)) return NULL;
    if (buf.len % 127) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "fr32(): data must be a multiple of 127 bytes");
        return NULL;
    }
    size_t nq = (size_t)(buf.len / 127);
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(nq * 128));
    if (!out) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    fr32_quads((const uint8_t *)buf.buf, (uint8_t *)PyBytes_AS_STRING(out), nq);
    PyBuffer_Release(&buf);
    return out;
}

static PyObject *py_impls(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    for (int i = IMPL_COUNT - 1; i >= 0; i--) {
        if (!g_avail[i]) continue;
        PyObject *name = PyUnicode_FromString(IMPL_NAMES[i]);
        if (!name || PyList_Append(out, name)) {
            Py_XDECREF(name);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(name);
    }
    PyObject *tuple = PyList_AsTuple(out);
    Py_DECREF(out);
    return tuple;
}

static PyObject *py_sha_ni(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    return PyBool_FromLong(g_avail[IMPL_SHANI]);
}

static PyMethodDef methods[] = {
    {"root", (PyCFunction)(void (*)(void))py_root, METH_VARARGS | METH_KEYWORDS,
     "root(data, k, impl=None) -> 32-byte root of the tree over 2**k quads (127 << k bytes)"},
    {"root_iov", (PyCFunction)(void (*)(void))py_root_iov, METH_VARARGS | METH_KEYWORDS,
     "root_iov(parts, offset, k, impl=None) -> the root over 127 << k bytes of the concatenated parts from offset"},
    {"hash_pairs", (PyCFunction)(void (*)(void))py_hash_pairs, METH_VARARGS | METH_KEYWORDS,
     "hash_pairs(data, impl=None) -> truncated SHA-256 of each 64-byte block, concatenated"},
    {"sha256_chunks", (PyCFunction)(void (*)(void))py_sha256_chunks, METH_VARARGS | METH_KEYWORDS,
     "sha256_chunks(data, chunk_size, impl=None) -> SHA-256 digests of each chunk_size bytes (last may be shorter)"},
    {"fr32", py_fr32, METH_VARARGS, "fr32(data) -> Fr32-padded bytes (127-byte quads -> 128 bytes)"},
    {"impls", py_impls, METH_NOARGS, "impls() -> the SHA-256 implementations available here, fastest first"},
    {"sha_ni", py_sha_ni, METH_NOARGS, "sha_ni() -> True when the CPU's SHA instructions can be used"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_commp", "CommP kernel: Fr32 padding and the SHA-256 tree (see commp.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

static int env_set(const char *name)
{
    const char *env = getenv(name);
    return env && *env && strcmp(env, "0") != 0;
}

PyMODINIT_FUNC PyInit__commp(void)
{
    init_padwk();
    detect();
    /* escape hatches (and a way for tests to reach every path): PTOLEMY_COMMP_NO_SHANI, PTOLEMY_COMMP_NO_AVX512 */
    if (env_set("PTOLEMY_COMMP_NO_SHANI")) g_avail[IMPL_SHANI] = g_avail[IMPL_SHANI4] = 0;
    if (env_set("PTOLEMY_COMMP_NO_AVX512")) g_avail[IMPL_AVX512] = 0;
    g_best = g_avail[IMPL_SHANI4] ? IMPL_SHANI4 : g_avail[IMPL_AVX512] ? IMPL_AVX512 : IMPL_PORTABLE;
    return PyModule_Create(&moduledef);
}
