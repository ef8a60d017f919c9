/*
 * dualsr: 3x3 convolutions (stride 1, 'same' padding) by Winograd's F(4x4, 3x3), fp32, AVX2+FMA.
 *
 * Each 4x4 block of outputs ("tile") is computed from a 6x6 block of inputs: the inputs and the
 * kernel are transformed (V = B^T d B per input channel, U = G g G^T per kernel, the latter done
 * once in Python), multiplied element by element and summed over input channels, which for the
 * 36 positions of the 6x6 block is 36 matrix products (tiles x C) . (C x K), and transformed back
 * (Y = A^T M A). That is 36 C K multiply-adds per tile instead of 144 C K: 4x fewer.
 *
 * Layout: activations NHWC (PyTorch's channels_last), C and K multiples of 8 (one AVX2 register
 * of channels). Tiles are numbered over the batch, row-major; a call computes tiles
 * [tile_begin, tile_end), so callers split the work across threads. Tiles are processed in blocks
 * of TB whose transformed inputs and products stay in the core's L2 cache.
 *
 * Threads: dualsr_winograd_conv3x3_parallel splits the tiles among OpenMP threads. Built with
 * -fopenmp, this library needs libgomp.so.1, which PyTorch has already loaded: the same thread
 * pool runs PyTorch's operations and these convolutions, so neither waits for the other's idle
 * threads to stop spinning. Without OpenMP that function runs one thread.
 *
 * Build: cc -O3 -mavx2 -mfma -fopenmp -shared -fPIC (dualsr.deploy.winograd does it, once per
 * machine; without -fopenmp where the compiler lacks it).
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef TB
#define TB 24 /* tiles per block: a multiple of the micro-kernel's 6 rows */
#endif

typedef __m256 v8;

static __thread float *scratch;
static __thread size_t scratch_floats;

static float *get_scratch(size_t floats) {
    if (floats > scratch_floats) {
        free(scratch);
        scratch = aligned_alloc(64, ((floats * sizeof(float) + 63) / 64) * 64);
        scratch_floats = scratch ? floats : 0;
    }
    return scratch;
}

/* B^T applied along one axis of six vectors (in place order: out[0..5]). */
static inline void bt6(v8 d0, v8 d1, v8 d2, v8 d3, v8 d4, v8 d5, v8 *o) {
    const v8 four = _mm256_set1_ps(4.f), five = _mm256_set1_ps(5.f), two = _mm256_set1_ps(2.f);
    v8 t1 = _mm256_fnmadd_ps(four, d2, d4);  /* d4 - 4 d2 */
    v8 t2 = _mm256_fnmadd_ps(four, d1, d3);  /* d3 - 4 d1 */
    v8 t3 = _mm256_sub_ps(d4, d2);           /* d4 - d2 */
    v8 t4 = _mm256_mul_ps(two, _mm256_sub_ps(d3, d1)); /* 2 (d3 - d1) */
    o[0] = _mm256_fmadd_ps(four, d0, _mm256_fnmadd_ps(five, d2, d4));
    o[1] = _mm256_add_ps(t1, t2);
    o[2] = _mm256_sub_ps(t1, t2);
    o[3] = _mm256_add_ps(t3, t4);
    o[4] = _mm256_sub_ps(t3, t4);
    o[5] = _mm256_fmadd_ps(four, d1, _mm256_fnmadd_ps(five, d3, d5));
}

/* A^T applied along one axis of six vectors: four outputs. */
static inline void at6(v8 m0, v8 m1, v8 m2, v8 m3, v8 m4, v8 m5, v8 *o) {
    const v8 two = _mm256_set1_ps(2.f), four = _mm256_set1_ps(4.f), eight = _mm256_set1_ps(8.f);
    v8 s12 = _mm256_add_ps(m1, m2), d12 = _mm256_sub_ps(m1, m2);
    v8 s34 = _mm256_add_ps(m3, m4), d34 = _mm256_sub_ps(m3, m4);
    o[0] = _mm256_add_ps(_mm256_add_ps(m0, s12), s34);
    o[1] = _mm256_fmadd_ps(two, d34, d12);
    o[2] = _mm256_fmadd_ps(four, s34, s12);
    o[3] = _mm256_add_ps(_mm256_fmadd_ps(eight, d34, d12), m5);
}

/* V[f][i][c] (f < 36, i < TB) for tiles t0 .. t0+nt-1. */
static void input_transform(const float *x, int H, int W, int C, int th, int tw, long t0, int nt,
                            float *V) {
    const v8 zero = _mm256_setzero_ps();
    for (int i = 0; i < nt; i++) {
        long t = t0 + i;
        long n = t / ((long)th * tw);
        int r = (int)(t % ((long)th * tw));
        int y0 = (r / tw) * 4 - 1, x0 = (r % tw) * 4 - 1;
        const float *img = x + n * (long)H * W * C;
        int inside = y0 >= 0 && x0 >= 0 && y0 + 6 <= H && x0 + 6 <= W;
        for (int c = 0; c < C; c += 8) {
            v8 d[6][6], tmp[6][6];
            for (int a = 0; a < 6; a++)
                for (int b = 0; b < 6; b++) {
                    int yy = y0 + a, xx = x0 + b;
                    if (inside || (yy >= 0 && yy < H && xx >= 0 && xx < W))
                        d[a][b] = _mm256_loadu_ps(img + ((long)yy * W + xx) * C + c);
                    else
                        d[a][b] = zero;
                }
            for (int b = 0; b < 6; b++) {
                v8 o[6];
                bt6(d[0][b], d[1][b], d[2][b], d[3][b], d[4][b], d[5][b], o);
                for (int a = 0; a < 6; a++) tmp[a][b] = o[a];
            }
            for (int a = 0; a < 6; a++) {
                v8 o[6];
                bt6(tmp[a][0], tmp[a][1], tmp[a][2], tmp[a][3], tmp[a][4], tmp[a][5], o);
                for (int b = 0; b < 6; b++)
                    _mm256_storeu_ps(V + ((long)(a * 6 + b) * TB + i) * C + c, o[b]);
            }
        }
    }
}

/* c[6][16] = a[6][C] . b[C][16] (a rows stride C, b rows stride K, c rows stride K). */
static inline void kernel_6x16(const float *a, const float *b, float *c, int C, int K) {
    v8 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    v8 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int p = 0; p < C; p++) {
        v8 b0 = _mm256_loadu_ps(b + (long)p * K), b1 = _mm256_loadu_ps(b + (long)p * K + 8);
        v8 a0 = _mm256_broadcast_ss(a + p);
        c00 = _mm256_fmadd_ps(a0, b0, c00);
        c01 = _mm256_fmadd_ps(a0, b1, c01);
        v8 a1 = _mm256_broadcast_ss(a + C + p);
        c10 = _mm256_fmadd_ps(a1, b0, c10);
        c11 = _mm256_fmadd_ps(a1, b1, c11);
        v8 a2 = _mm256_broadcast_ss(a + 2 * C + p);
        c20 = _mm256_fmadd_ps(a2, b0, c20);
        c21 = _mm256_fmadd_ps(a2, b1, c21);
        v8 a3 = _mm256_broadcast_ss(a + 3 * C + p);
        c30 = _mm256_fmadd_ps(a3, b0, c30);
        c31 = _mm256_fmadd_ps(a3, b1, c31);
        v8 a4 = _mm256_broadcast_ss(a + 4 * C + p);
        c40 = _mm256_fmadd_ps(a4, b0, c40);
        c41 = _mm256_fmadd_ps(a4, b1, c41);
        v8 a5 = _mm256_broadcast_ss(a + 5 * C + p);
        c50 = _mm256_fmadd_ps(a5, b0, c50);
        c51 = _mm256_fmadd_ps(a5, b1, c51);
    }
    _mm256_storeu_ps(c, c00);
    _mm256_storeu_ps(c + 8, c01);
    _mm256_storeu_ps(c + K, c10);
    _mm256_storeu_ps(c + K + 8, c11);
    _mm256_storeu_ps(c + 2 * K, c20);
    _mm256_storeu_ps(c + 2 * K + 8, c21);
    _mm256_storeu_ps(c + 3 * K, c30);
    _mm256_storeu_ps(c + 3 * K + 8, c31);
    _mm256_storeu_ps(c + 4 * K, c40);
    _mm256_storeu_ps(c + 4 * K + 8, c41);
    _mm256_storeu_ps(c + 5 * K, c50);
    _mm256_storeu_ps(c + 5 * K + 8, c51);
}

/* The same for the last 8 output channels when K is not a multiple of 16. */
static inline void kernel_6x8(const float *a, const float *b, float *c, int C, int K) {
    v8 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
    for (int p = 0; p < C; p++) {
        v8 b0 = _mm256_loadu_ps(b + (long)p * K);
        c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + p), b0, c0);
        c1 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + C + p), b0, c1);
        c2 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + 2 * C + p), b0, c2);
        c3 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + 3 * C + p), b0, c3);
        c4 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + 4 * C + p), b0, c4);
        c5 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + 5 * C + p), b0, c5);
    }
    _mm256_storeu_ps(c, c0);
    _mm256_storeu_ps(c + K, c1);
    _mm256_storeu_ps(c + 2 * K, c2);
    _mm256_storeu_ps(c + 3 * K, c3);
    _mm256_storeu_ps(c + 4 * K, c4);
    _mm256_storeu_ps(c + 5 * K, c5);
}

/* M[f][i][k] = sum_c V[f][i][c] U[f][c][k] for the block's rows (rounded up to 6). */
static void products(const float *V, const float *U, float *M, int rows, int C, int K) {
    for (int f = 0; f < 36; f++) {
        const float *Vf = V + (long)f * TB * C, *Uf = U + (long)f * C * K;
        float *Mf = M + (long)f * TB * K;
        int k = 0;
        for (; k + 16 <= K; k += 16)
            for (int i = 0; i < rows; i += 6) kernel_6x16(Vf + (long)i * C, Uf + k, Mf + (long)i * K + k, C, K);
        if (k < K)
            for (int i = 0; i < rows; i += 6) kernel_6x8(Vf + (long)i * C, Uf + k, Mf + (long)i * K + k, C, K);
    }
}

/* y (4x4 outputs per tile) = A^T M A + bias, then ReLU if asked. */
static void output_transform(const float *M, const float *bias, float *y, int H, int W, int K,
                             int th, int tw, long t0, int nt, int relu) {
    const v8 zero = _mm256_setzero_ps();
    for (int i = 0; i < nt; i++) {
        long t = t0 + i;
        long n = t / ((long)th * tw);
        int r = (int)(t % ((long)th * tw));
        int oy = (r / tw) * 4, ox = (r % tw) * 4;
        float *img = y + n * (long)H * W * K;
        for (int k = 0; k < K; k += 8) {
            v8 m[6][6], tmp[4][6];
            for (int a = 0; a < 6; a++)
                for (int b = 0; b < 6; b++)
                    m[a][b] = _mm256_loadu_ps(M + ((long)(a * 6 + b) * TB + i) * K + k);
            for (int b = 0; b < 6; b++) {
                v8 o[4];
                at6(m[0][b], m[1][b], m[2][b], m[3][b], m[4][b], m[5][b], o);
                for (int a = 0; a < 4; a++) tmp[a][b] = o[a];
            }
            v8 bv = bias ? _mm256_loadu_ps(bias + k) : zero;
            for (int a = 0; a < 4; a++) {
                if (oy + a >= H) break;
                v8 o[4];
                at6(tmp[a][0], tmp[a][1], tmp[a][2], tmp[a][3], tmp[a][4], tmp[a][5], o);
                for (int b = 0; b < 4 && ox + b < W; b++) {
                    v8 v = _mm256_add_ps(o[b], bv);
                    if (relu) v = _mm256_max_ps(v, zero);
                    _mm256_storeu_ps(img + ((long)(oy + a) * W + ox + b) * K + k, v);
                }
            }
        }
    }
}

/* The number of tiles of an N x H x W image (what callers split into ranges). */
long dualsr_winograd_tiles(int N, int H, int W) { return (long)N * ((H + 3) / 4) * ((W + 3) / 4); }

/*
 * y[N][H][W][K] = conv3x3(x[N][H][W][C]) + bias (ReLU if relu) for tiles [tile_begin, tile_end).
 * U is the transformed kernel, [36][C][K]. Returns 0, or -1 if C or K is not a multiple of 8 or
 * scratch memory could not be had.
 */
int dualsr_winograd_conv3x3(const float *x, int N, int H, int W, int C, const float *U,
                            const float *bias, int K, float *y, int relu, long tile_begin,
                            long tile_end) {
    (void)N;
    if (C % 8 || K % 8 || C <= 0 || K <= 0) return -1;
    float *V = get_scratch((size_t)36 * TB * (C + K));
    if (!V) return -1;
    float *M = V + (size_t)36 * TB * C;
    int th = (H + 3) / 4, tw = (W + 3) / 4;
    for (long t0 = tile_begin; t0 < tile_end; t0 += TB) {
        int nt = (int)(tile_end - t0 < TB ? tile_end - t0 : TB);
        int rows = (nt + 5) / 6 * 6;
        /* rows nt..rows-1 of V hold stale values: their products are computed and never used */
        input_transform(x, H, W, C, th, tw, t0, nt, V);
        products(V, U, M, rows, C, K);
        output_transform(M, bias, y, H, W, K, th, tw, t0, nt, relu);
    }
    return 0;
}

/* The whole convolution on up to `threads` threads (OpenMP; one thread in a build without it). */
int dualsr_winograd_conv3x3_parallel(const float *x, int N, int H, int W, int C, const float *U,
                                     const float *bias, int K, float *y, int relu, int threads) {
    long tiles = dualsr_winograd_tiles(N, H, W);
    int failed = 0;
#ifdef _OPENMP
    if (threads > tiles) threads = (int)tiles;
#pragma omp parallel num_threads(threads > 0 ? threads : 1) reduction(| : failed)
    {
        long parts = omp_get_num_threads(), i = omp_get_thread_num();
        failed |= dualsr_winograd_conv3x3(x, N, H, W, C, U, bias, K, y, relu, tiles * i / parts,
                                          tiles * (i + 1) / parts) != 0;
    }
#else
    (void)threads;
    failed = dualsr_winograd_conv3x3(x, N, H, W, C, U, bias, K, y, relu, 0, tiles) != 0;
#endif
    return failed ? -1 : 0;
}

/* Whether this build splits work with OpenMP. */
int dualsr_winograd_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}
