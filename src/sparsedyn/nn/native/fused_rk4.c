/* The fused rk4 solve of a tanh MLP field, forward and adjoint, in plain C (see fused_native.py).
 *
 * Members (a stack of M fields of one shape, M = 1 for a single solve) are computed one after the other
 * with the same loops, so a member's numbers never depend on how many members are stacked with it; every
 * element of a layer is computed by the same sequence of operations whatever its position (explicit fma,
 * no contraction left to the compiler: built with -ffp-contract=off), so a state's bits do not depend on
 * the batch size either. Compiled twice, for float (suffix f32) and, with -DUSE_DOUBLE, double (suffix f64).
 *
 * Layout (all row-major, contiguous): weights W[l] (M, G[l], d[l+1] / G[l], d[l] / G[l]) and biases b[l]
 * (M, d[l+1]), y0 (M, B, n), keep (n) or NULL. G[l] = 1 is a dense layer; G[l] > 1 a block-diagonal one, group g
 * mapping inputs [g * in_g, (g + 1) * in_g) to outputs [g * o_g, (g + 1) * o_g) (the per-output networks of a
 * GroupedMLP: its first layer is dense, its later layers have one group per output). Sk (M, n, n) or NULL: a
 * bias-free linear skip added to the field, f(u) = MLP(u) + u Sk^T (inner LassoNet's SkipField). With `so`
 * (second order, a SONODE) the state is [x, v] (d[0] = 2 n, d[L] = n) and its derivative [v, keep * f([x, v])];
 * else the derivative is keep * f(u) with d[0] = d[L] = n. keep (n) or NULL masks the field's outputs.
 * The forward writes the grid states Y (S+1, M, B, n), the stage inputs U (M, 4 S, B, n) and the hidden
 * activations H (M, 4 S B hsum), hsum = d[1] + ... + d[L-1]: member m's layer-i activations (i = 1 .. L-1) at
 * stage k (= 4 s + q, the q-th field evaluation of grid step s) are the (B, d[i]) block at offset
 * hoff[i] + k B d[i] of member m's part, hoff[i] = 4 S B (d[1] + ... + d[i-1]). Member-major stages make each
 * member's inputs of a layer over consecutive stages one matrix: the backward stores the adjoint of every
 * layer's output for a window of W stages (W B >= WROWS rows) and adds each weight gradient's part of the window
 * as one product over its W B rows (one product of 8-row blocks per field evaluation had been half of the
 * backward's time at 8 rows per member; one product over the whole solve streamed large layers' inputs from
 * memory).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef USE_DOUBLE
#define REAL double
#define SFX(name) name##_f64
#define FMA fma
#define TANH tanh
#else
#define REAL float
#define SFX(name) name##_f32
#define FMA fmaf
#define TANH fast_tanhf
#endif

#define MAXL 16
#define WROWS 128  /* rows per weight-gradient product in the backward (see above) */

/* tanh for float: an odd rational function of degree 13/6 on [-c, c] (the minimax coefficients Eigen
 * publishes for its float tanh), clamped outside; below 4e-4 tanh(x) = x to float precision; exactly +-1 from
 * |x| = 9.0108404, where torch.tanh's float result becomes 1 (so saturated units pass no gradient, as there:
 * 1 - h^2 = 0; with the clamped value alone a unit driven far into saturation still passed 2e-7 of its
 * gradient, and a run with huge weights overflowed where PyTorch's did not). */
static inline float fast_tanhf(float x) {
    const float c = 7.90531110763549805f;
    float xc = x > c ? c : (x < -c ? -c : x);
    float x2 = xc * xc;
    float p = fmaf(x2, -2.76076847742355e-16f, 2.00018790482477e-13f);
    p = fmaf(x2, p, -8.60467152213735e-11f);
    p = fmaf(x2, p, 5.12229709037114e-08f);
    p = fmaf(x2, p, 1.48572235717979e-05f);
    p = fmaf(x2, p, 6.37261928875436e-04f);
    p = fmaf(x2, p, 4.89352455891786e-03f);
    p = xc * p;
    float q = fmaf(x2, 1.19825839466702e-06f, 1.18534705686654e-04f);
    q = fmaf(x2, q, 2.26843463243900e-03f);
    q = fmaf(x2, q, 4.89352518554385e-03f);
    float r = p / q;
    r = fabsf(x) < 0.0004f ? x : r;
    return fabsf(x) >= 9.01084041595459f ? copysignf(1.0f, x) : r;
}


#define PB 4
#define QB (64 / (int)sizeof(REAL))
#define KC 256

/* PB rows of one column block: C[p, q] += sum_k A[p, k] B[k, q] for q < qn, B a row-major block QB wide
 * (columns from qn on are zero padding, never stored). */
static inline void gemm_rows4(int K, const REAL *A, size_t sap, size_t sak, const REAL *B, size_t ldb, REAL *C,
                              size_t ldc, int qn) {
    REAL acc[PB][QB];
    if (qn == QB) {
        for (int pp = 0; pp < PB; pp++)
            for (int q = 0; q < QB; q++) acc[pp][q] = C[(size_t)pp * ldc + q];
    } else {
        for (int pp = 0; pp < PB; pp++)
            for (int q = 0; q < QB; q++) acc[pp][q] = q < qn ? C[(size_t)pp * ldc + q] : 0;
    }
    for (int k = 0; k < K; k++) {
        const REAL *b = B + (size_t)k * ldb;
#pragma GCC unroll 8
        for (int pp = 0; pp < PB; pp++) {
            const REAL a = A[(size_t)pp * sap + (size_t)k * sak];
#pragma GCC unroll 16
            for (int q = 0; q < QB; q++) acc[pp][q] = FMA(a, b[q], acc[pp][q]);
        }
    }
    if (qn == QB) {
        for (int pp = 0; pp < PB; pp++)
            for (int q = 0; q < QB; q++) C[(size_t)pp * ldc + q] = acc[pp][q];
    } else {
        for (int pp = 0; pp < PB; pp++)
            for (int q = 0; q < qn; q++) C[(size_t)pp * ldc + q] = acc[pp][q];
    }
}

#if defined(__AVX512F__)
/* With AVX-512 (a -march=native build on a CPU that has it) a column block is one vector register and a
 * partial block (the last Q % QB columns) or a partial row block (the last P % PB rows) is handled with masked
 * loads and stores: no zero-padded copies of A, B or C (their scalar stores, read back by vector loads, had
 * stalled store forwarding, and a 5-wide output layer's stores had run as `rep movs`). A missing row reads row
 * 0 of A and is never stored. Each element is still one fma chain over k in increasing order (the same bits). */
#include <immintrin.h>
#define MASKED_GEMM 1
#ifdef USE_DOUBLE
typedef __m512d VEC;
typedef __mmask8 VMASK;
#define VLOADZ(m, p) _mm512_maskz_loadu_pd(m, p)
#define VSTOREM(p, m, v) _mm512_mask_storeu_pd(p, m, v)
#define VSET1(a) _mm512_set1_pd(a)
#define VFMA(a, b, c) _mm512_fmadd_pd(a, b, c)
#define VZERO() _mm512_setzero_pd()
#else
typedef __m512 VEC;
typedef __mmask16 VMASK;
#define VLOADZ(m, p) _mm512_maskz_loadu_ps(m, p)
#define VSTOREM(p, m, v) _mm512_mask_storeu_ps(p, m, v)
#define VSET1(a) _mm512_set1_ps(a)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VZERO() _mm512_setzero_ps()
#endif

/* rows (1..4) rows of one column block of qn (1..QB) columns: C[p, q] += sum_k A[p, k] B[k, q] */
static inline void gemm_rows_masked(int rows, int K, const REAL *A, size_t sap, size_t sak, const REAL *B,
                                    size_t ldb, REAL *C, size_t ldc, int qn) {
    const VMASK m = qn >= QB ? (VMASK)~0u : (VMASK)((1u << qn) - 1u);
    const REAL *a0 = A, *a1 = rows > 1 ? A + sap : A, *a2 = rows > 2 ? A + 2 * sap : A,
               *a3 = rows > 3 ? A + 3 * sap : A;
    VEC c0 = VLOADZ(m, C);
    VEC c1 = rows > 1 ? VLOADZ(m, C + ldc) : VZERO();
    VEC c2 = rows > 2 ? VLOADZ(m, C + 2 * ldc) : VZERO();
    VEC c3 = rows > 3 ? VLOADZ(m, C + 3 * ldc) : VZERO();
    for (int k = 0; k < K; k++) {
        const VEC b = VLOADZ(m, B + (size_t)k * ldb);
        const size_t ak = (size_t)k * sak;
        c0 = VFMA(VSET1(a0[ak]), b, c0);
        c1 = VFMA(VSET1(a1[ak]), b, c1);
        c2 = VFMA(VSET1(a2[ak]), b, c2);
        c3 = VFMA(VSET1(a3[ak]), b, c3);
    }
    VSTOREM(C, m, c0);
    if (rows > 1) VSTOREM(C + ldc, m, c1);
    if (rows > 2) VSTOREM(C + 2 * ldc, m, c2);
    if (rows > 3) VSTOREM(C + 3 * ldc, m, c3);
}
#endif

/* C[p, q] += sum_k A[p, k] Bm[k, q] for p < P, q < Q, k < K: every element summed by one fma chain in
 * increasing k, whatever its position or the blocking (so its bits depend only on its own inputs; a partial
 * sum stored to C between chunks of k and loaded back is exact). A is read with strides (sap, sak), Bm row-major
 * with row stride ldb, C with row stride ldc. A column block narrower than QB is copied into a zero-padded
 * buffer, so every block runs the same full-width loop, unless ``padded``: Bm's rows are already zero-padded to
 * a multiple of QB (the weight copies of Net). The last P % PB rows run the same PB-row loop on zero-padded copies
 * of their rows of A and C (each element's fma chain unchanged; one row at a time had been latency-bound). */
static void gemm_acc(int P, int Q, int K, const REAL *A, size_t sap, size_t sak, const REAL *Bm, size_t ldb,
                     REAL *C, size_t ldc, int padded) {
#ifdef MASKED_GEMM
    (void)padded;
    for (int q0 = 0; q0 < Q; q0 += QB) {
        const int qn = Q - q0 < QB ? Q - q0 : QB;
        for (int p0 = 0; p0 < P; p0 += PB)
            gemm_rows_masked(P - p0 < PB ? P - p0 : PB, K, A + (size_t)p0 * sap, sap, sak, Bm + q0, ldb,
                             C + (size_t)p0 * ldc + q0, ldc, qn);
    }
    return;
#endif
    REAL pack[KC * QB], apack[KC * PB], cpack[PB * QB];
    const int p_full = P - P % PB, pr = P - p_full;
    for (int q0 = 0; q0 < Q; q0 += QB) {
        const int qn = Q - q0 < QB ? Q - q0 : QB;
        for (int k0 = 0; k0 < K; k0 += KC) {
            const int kc = K - k0 < KC ? K - k0 : KC;
            const REAL *B = Bm + (size_t)k0 * ldb + q0;
            size_t ld = ldb;
            if (qn < QB && !padded) {
                for (int k = 0; k < kc; k++)
                    for (int q = 0; q < QB; q++) pack[k * QB + q] = q < qn ? B[(size_t)k * ldb + q] : 0;
                B = pack;
                ld = QB;
            }
            const REAL *Ak = A + (size_t)k0 * sak;
            for (int p0 = 0; p0 < p_full; p0 += PB)
                gemm_rows4(kc, Ak + (size_t)p0 * sap, sap, sak, B, ld, C + (size_t)p0 * ldc + q0, ldc, qn);
            if (pr) {
                REAL *Cr = C + (size_t)p_full * ldc + q0;
                for (int k = 0; k < kc; k++)
                    for (int pp = 0; pp < PB; pp++)
                        apack[k * PB + pp] = pp < pr ? Ak[(size_t)(p_full + pp) * sap + (size_t)k * sak] : 0;
                for (int pp = 0; pp < PB; pp++)
                    for (int q = 0; q < QB; q++) cpack[pp * QB + q] = pp < pr && q < qn ? Cr[(size_t)pp * ldc + q] : 0;
                gemm_rows4(kc, apack, 1, PB, B, ld, cpack, QB, QB);
                for (int pp = 0; pp < pr; pp++)
                    for (int q = 0; q < qn; q++) Cr[(size_t)pp * ldc + q] = cpack[pp * QB + q];
            }
        }
    }
}

typedef struct {
    int M, B, L;
    const int *d, *G;
    const REAL *const *b;   /* per layer (M, out) */
    REAL *Wt[MAXL];         /* per layer (M, G, in_g, pad(o_g)): transposed, zero-padded copies for the forward */
    REAL *Wp[MAXL];         /* per layer (M, G, o_g, pad(in_g)): zero-padded copies for the backward */
    REAL *St, *Sp;          /* the skip's copies, laid out as a dense layer's (NULL without a skip) */
    const REAL *keep;       /* (n) or NULL */
    int hsum;
    int so;                 /* second order: state [x, v], derivative [v, f] */
    REAL *acc;              /* second order: the field's output (B, n) */
    int S4;                 /* stages: 4 S */
    size_t hoff[MAXL];      /* a member's hidden activations: layer i's at hoff[i] (see the layout above) */
    int W;                  /* stages per window of the backward's weight-gradient products */
    size_t goff[MAXL];      /* a window's output adjoints (backward): layer l's at goff[l], (W, B, d[l+1]) */
    size_t gsize;           /* their total */
} Net;

static inline int pad(int q) { return (q + QB - 1) / QB * QB; }

/* transposed (M, in, pad(o)) and padded (M, o, pad(in)) copies of M blocks of (o, in) weights */
static int copy_weights(size_t blocks, int o, int in, const REAL *W, REAL **t_out, REAL **p_out) {
    const int po = pad(o), pi = pad(in);
    REAL *t = calloc(blocks * in * po, sizeof(REAL)), *w2 = calloc(blocks * o * pi, sizeof(REAL));
    *t_out = t;
    *p_out = w2;
    if (!t || !w2) return -2;
    for (size_t k = 0; k < blocks; k++) {
        const REAL *w = W + k * o * in;
        REAL *tm = t + k * in * po, *wm = w2 + k * o * pi;
        for (int i = 0; i < in; i++)
            for (int j = 0; j < o; j++) tm[(size_t)i * po + j] = w[(size_t)j * in + i];
        for (int j = 0; j < o; j++)
            for (int i = 0; i < in; i++) wm[(size_t)j * pi + i] = w[(size_t)j * in + i];
    }
    return 0;
}

static int net_init(Net *net, int M, int B, int L, const int *d, const int *G, const REAL *const *W,
                    const REAL *const *b, const REAL *keep, const REAL *Sk, int so, int S) {
    net->L = 0;
    net->St = net->Sp = NULL;
    net->acc = NULL;
    net->so = so;
    if (L < 1 || L > MAXL) return -1;
    if (so && d[0] != 2 * d[L]) return -4;
    for (int l = 0; l < L; l++)
        if (G[l] < 1 || d[l] % G[l] || d[l + 1] % G[l]) return -3;
    net->M = M; net->B = B; net->d = d; net->G = G; net->b = b; net->keep = keep;
    net->hsum = 0;
    net->S4 = 4 * S;
    net->hoff[0] = 0;
    for (int l = 1; l < L; l++) {
        net->hoff[l] = (size_t)net->S4 * B * net->hsum;
        net->hsum += d[l];
    }
    net->W = WROWS / B > 1 ? WROWS / B : 1;
    if (net->W > net->S4) net->W = net->S4;
    net->gsize = 0;
    for (int l = 0; l < L; l++) {
        net->goff[l] = net->gsize;
        net->gsize += (size_t)net->W * B * d[l + 1];
    }
    for (int l = 0; l < L; l++) net->Wt[l] = net->Wp[l] = NULL;
    net->L = L;  /* from here net_free frees what was allocated */
    for (int l = 0; l < L; l++) {  /* member m's group j is block m * G[l] + j */
        int err = copy_weights((size_t)M * G[l], d[l + 1] / G[l], d[l] / G[l], W[l], &net->Wt[l], &net->Wp[l]);
        if (err) return err;
    }
    if (so) {
        net->acc = malloc(sizeof(REAL) * (size_t)B * d[L]);
        if (!net->acc) return -2;
    }
    if (Sk) return copy_weights((size_t)M, d[L], d[0], Sk, &net->St, &net->Sp);
    return 0;
}

static inline int d_out(const Net *net) { return net->d[net->L]; }

static void net_free(Net *net) {
    for (int l = 0; l < net->L; l++) {
        free(net->Wt[l]);
        free(net->Wp[l]);
    }
    free(net->St);
    free(net->Sp);
    free(net->acc);
}

/* out (B, o) = x (B, in) Wt (in, o) + bias, then tanh if act; with g groups, block j maps columns
 * [j * in / g, (j + 1) * in / g) of x to [j * o / g, (j + 1) * o / g) of out by its own Wt block. */
static void layer_forward(int B, int in, int o, int g, const REAL *x, const REAL *Wt, const REAL *bias, REAL *out,
                          int act) {
    const int ig = in / g, og = o / g;
    for (int r = 0; r < B; r++) memcpy(out + (size_t)r * o, bias, sizeof(REAL) * o);
    for (int j = 0; j < g; j++)
        gemm_acc(B, og, ig, x + (size_t)j * ig, in, 1, Wt + (size_t)j * ig * pad(og), pad(og), out + (size_t)j * og,
                 o, 1);
    if (act)
        for (size_t i = 0; i < (size_t)B * o; i++) out[i] = TANH(out[i]);
}

/* the state's derivative for member m at u (B, d[0]) into k (B, d[0]); the hidden activations of stage st into
 * the member's part Hm of H */
static void field(const Net *net, int m, int st, const REAL *u, REAL *k_state, REAL *Hm) {
    const int B = net->B, L = net->L;
    const int *d = net->d;
    const REAL *x = u;
    REAL *k = net->so ? net->acc : k_state;
    for (int l = 0; l < L; l++) {
        const int in = d[l], o = d[l + 1], g = net->G[l];
        const REAL *Wt = net->Wt[l] + (size_t)m * g * (in / g) * pad(o / g);
        const REAL *bias = net->b[l] + (size_t)m * o;
        if (l < L - 1) {
            REAL *hl = Hm + net->hoff[l + 1] + (size_t)st * B * o;
            layer_forward(B, in, o, g, x, Wt, bias, hl, 1);
            x = hl;
        } else {
            layer_forward(B, in, o, g, x, Wt, bias, k, 0);
        }
    }
    if (net->St) {  /* k += u Sk^T, continuing each output's fma chain */
        const int n_in = d[0], n_out = d[L];
        gemm_acc(B, n_out, n_in, u, n_in, 1, net->St + (size_t)m * n_in * pad(n_out), pad(n_out), k, n_out, 1);
    }
    const int n = d[L];
    if (net->keep) {
        for (int r = 0; r < B; r++)
            for (int j = 0; j < n; j++) k[(size_t)r * n + j] *= net->keep[j];
    }
    if (net->so) {  /* [v, a] */
        for (int r = 0; r < B; r++) {
            memcpy(k_state + (size_t)r * 2 * n, u + (size_t)r * 2 * n + n, sizeof(REAL) * n);
            memcpy(k_state + (size_t)r * 2 * n + n, k + (size_t)r * n, sizeof(REAL) * n);
        }
    }
}

int SFX(rk4_forward)(int M, int B, int L, const int *d, const int *G, const REAL *const *W, const REAL *const *b,
                     const REAL *Sk, const REAL *keep, int so, int S, const double *dt, const REAL *y0, REAL *Y,
                     REAL *U, REAL *H) {
    Net net;
    int err = net_init(&net, M, B, L, d, G, W, b, keep, Sk, so, S);
    if (err) { net_free(&net); return err; }
    const int n = d[0];
    const size_t mb = (size_t)B * n, all = (size_t)M * mb, hs = (size_t)net.S4 * B * net.hsum;
    REAL *k = malloc(sizeof(REAL) * 4 * mb);
    if (!k) { net_free(&net); return -2; }
    REAL *k1 = k, *k2 = k + mb, *k3 = k + 2 * mb, *k4 = k + 3 * mb;
    memcpy(Y, y0, sizeof(REAL) * all);
    for (int m = 0; m < M; m++) {  /* member by member: its weights stay in cache for the whole solve */
        REAL *Um = U + (size_t)m * net.S4 * mb, *Hm = H + (size_t)m * hs;
        for (int s = 0; s < S; s++) {
            const REAL h = (REAL)dt[s], third = (REAL)(dt[s] * (1.0 / 3.0)), e = (REAL)(dt[s] * 0.125),
                       e3 = (REAL)(3.0 * dt[s] * 0.125);
            const REAL *y = Y + (size_t)s * all + m * mb;
            REAL *y1 = Y + (size_t)(s + 1) * all + m * mb;
            REAL *u1 = Um + (size_t)(4 * s) * mb, *u2 = u1 + mb, *u3 = u2 + mb, *u4 = u3 + mb;
            memcpy(u1, y, sizeof(REAL) * mb);
            field(&net, m, 4 * s, u1, k1, Hm);
            for (size_t i = 0; i < mb; i++) u2[i] = FMA(third, k1[i], y[i]);
            field(&net, m, 4 * s + 1, u2, k2, Hm);
            for (size_t i = 0; i < mb; i++) u3[i] = FMA(-third, k1[i], FMA(h, k2[i], y[i]));
            field(&net, m, 4 * s + 2, u3, k3, Hm);
            for (size_t i = 0; i < mb; i++) u4[i] = FMA(h, k3[i], FMA(-h, k2[i], FMA(h, k1[i], y[i])));
            field(&net, m, 4 * s + 3, u4, k4, Hm);
            for (size_t i = 0; i < mb; i++)
                y1[i] = FMA(e, k4[i], FMA(e3, k3[i], FMA(e3, k2[i], FMA(e, k1[i], y[i]))));
        }
    }
    free(k);
    net_free(&net);
    return 0;
}

/* J^T g for member m at stage st (hidden activations in the member's part Hm of H): the adjoint of
 * every layer's output (pre-activation) into slot w of the window's adjoint store Gw (Net.goff), the result
 * into gx (B, d[0]). The weight gradients are formed from Gw when the window is complete (window_grads). */
static void field_vjp(const Net *net, int m, int st, int w, const REAL *Hm, const REAL *g_state, REAL *gx,
                      REAL *Gw) {
    const int B = net->B, L = net->L, n = d_out(net);
    const int *d = net->d;
    if (st > 0)  /* the stage read next (the pass runs backwards in time): its activations are far in the cache */
        for (int l = 1; l < L; l++) {
            const char *next = (const char *)(Hm + net->hoff[l] + (size_t)(st - 1) * B * d[l]);
            for (size_t byte = 0; byte < sizeof(REAL) * (size_t)B * d[l]; byte += 64) __builtin_prefetch(next + byte);
        }
    /* the adjoint of the field's output: the state's derivative's (first order) or its acceleration part's,
     * times keep */
    REAL *g_in = Gw + net->goff[L - 1] + (size_t)w * B * n;
    for (int r = 0; r < B; r++) {
        const REAL *src = g_state + (size_t)r * d[0] + (net->so ? n : 0);
        REAL *dst = g_in + (size_t)r * n;
        if (net->keep)
            for (int j = 0; j < n; j++) dst[j] = src[j] * net->keep[j];
        else
            memcpy(dst, src, sizeof(REAL) * n);
    }
    const REAL *ga = g_in;
    for (int l = L - 1; l >= 0; l--) {
        const int in = d[l], o = d[l + 1], g = net->G[l], ig = in / g, og = o / g;
        const REAL *wp = net->Wp[l] + (size_t)m * g * og * pad(ig);
        REAL *out = l > 0 ? Gw + net->goff[l - 1] + (size_t)w * B * in : gx;
        memset(out, 0, sizeof(REAL) * (size_t)B * in);
        for (int j = 0; j < g; j++)  /* g_x[r, j ig + i] = sum_p g[r, j og + p] W[j][p, i] */
            gemm_acc(B, ig, og, ga + (size_t)j * og, o, 1, wp + (size_t)j * og * pad(ig), pad(ig),
                     out + (size_t)j * ig, in, 1);
        if (l > 0) {
            const REAL *hl = Hm + net->hoff[l] + (size_t)st * B * in;
            for (size_t i = 0; i < (size_t)B * in; i++) out[i] = out[i] - out[i] * hl[i] * hl[i];
        }
        ga = out;
    }
    if (net->Sp) {  /* the skip: g_x += g Sk */
        const int n_in = d[0], n_out = d[L];
        gemm_acc(B, n_in, n_out, g_in, n_out, 1, net->Sp + (size_t)m * n_out * pad(n_in), pad(n_in), gx, n_in, 1);
    }
    if (net->so)  /* x' = v: the velocity's adjoint gains the position part of the derivative's */
        for (int r = 0; r < B; r++)
            for (int j = 0; j < n; j++) gx[(size_t)r * 2 * n + n + j] += g_state[(size_t)r * 2 * n + j];
}

static inline int transposed_layer(int ig, int og) { return og > ig && ig % QB != 0; }

/* dW (o, in) += sum_k Ga[k, :]^T X[k, :] over the K rows of the adjoints Ga (K, o) and the inputs X (K, in)
 * (row strides lg, lx; the g groups' blocks as in the forward). The wider of o and in is the vector dimension,
 * so a 5-input first layer does not run 16-wide blocks that are 11/16 padding: with og > ig (and ig not a
 * multiple of QB) the product goes into T (in, o), the transposed gradient, which the caller transposes into
 * dW once the member is done (transposed_layer). Each element is one fma chain over all rows in order. */
static void weight_grad(int K, int o, int in, int g, const REAL *Ga, size_t lg, const REAL *X, size_t lx, REAL *dW,
                        REAL *T) {
    const int ig = in / g, og = o / g;
    for (int j = 0; j < g; j++) {
        if (!transposed_layer(ig, og))  /* dw[p, i] += sum_k Ga[k, p] X[k, i] */
            gemm_acc(og, ig, K, Ga + (size_t)j * og, 1, lg, X + (size_t)j * ig, lx, dW + (size_t)j * og * ig, ig, 0);
        else  /* T[i, p] += sum_k X[k, i] Ga[k, p] */
            gemm_acc(ig, og, K, X + (size_t)j * ig, 1, lx, Ga + (size_t)j * og, lg, T + (size_t)j * og * ig, og, 0);
    }
}

/* out[j] += sum_k Ga[k, j], each a chain over k in increasing order */
static void column_sums(int K, int o, const REAL *restrict Ga, REAL *restrict out) {
    for (int k = 0; k < K; k++)
        for (int j = 0; j < o; j++) out[j] += Ga[(size_t)k * o + j];
}

/* The window of stages [lo, lo + nw) of member m: its part of every weight, bias and skip gradient, from the
 * stage inputs Um (4 S B, d[0]), the hidden activations Hm and the window's output adjoints Gw. Transposed
 * gradients go to Tm (per layer at toff[l], then the skip's). */
static void window_grads(const Net *net, int m, int lo, int nw, const REAL *Um, const REAL *Hm, const REAL *Gw,
                         REAL *const *dW, REAL *const *db, REAL *dS, REAL *Tm, const size_t *toff) {
    const int L = net->L, B = net->B, K = nw * B;
    const int *d = net->d;
    for (int l = 0; l < L; l++) {
        const int in = d[l], o = d[l + 1];
        const REAL *X = (l > 0 ? Hm + net->hoff[l] : Um) + (size_t)lo * B * in, *Ga = Gw + net->goff[l];
        weight_grad(K, o, in, net->G[l], Ga, o, X, in, dW[l] + (size_t)m * (o / net->G[l]) * in, Tm + toff[l]);
        column_sums(K, o, Ga, db[l] + (size_t)m * o);
    }
    if (net->Sp)  /* dS[j, i] += sum_k g_in[k, j] u[k, i] */
        weight_grad(K, d[L], d[0], 1, Gw + net->goff[L - 1], d[L], Um + (size_t)lo * B * d[0], d[0],
                    dS + (size_t)m * d[L] * d[0], Tm + toff[L]);
}

/* dst (g blocks of (og, ig)) = the transpose of each block of T (g blocks of (ig, og)) */
static void untranspose(int g, int og, int ig, const REAL *T, REAL *dst) {
    for (int j = 0; j < g; j++)
        for (int p = 0; p < og; p++)
            for (int i = 0; i < ig; i++)
                dst[(size_t)j * og * ig + (size_t)p * ig + i] = T[(size_t)j * og * ig + (size_t)i * og + p];
}

/* The adjoint pass. a (M, B, n): on entry the adjoint of the last grid state, on exit that of y0 (before
 * the output at t0 is added, which the caller does). after/before (S, M, B, n) or NULL: adjoint
 * contributions of the outputs to each step's end state (added before the step is reversed) and start
 * state (added after). dW, db, dS are written (member by member). */
int SFX(rk4_backward)(int M, int B, int L, const int *d, const int *G, const REAL *const *W,
                      const REAL *const *b, const REAL *Sk, const REAL *keep, int so, int S, const double *dt,
                      const REAL *U, const REAL *H, const REAL *after, const REAL *before, REAL *a,
                      REAL *const *dW, REAL *const *db, REAL *dS) {
    Net net;
    int err = net_init(&net, M, B, L, d, G, W, b, keep, Sk, so, S);
    if (err) { net_free(&net); return err; }
    size_t toff[MAXL + 1], tsize = 0;  /* the transposed gradients' scratch, per layer and the skip */
    for (int l = 0; l <= L; l++) {
        toff[l] = tsize;
        tsize += l < L ? (size_t)d[l] * (d[l + 1] / G[l]) : (Sk ? (size_t)d[0] * d[L] : 0);
    }
    const int n = d[0];
    const size_t mb = (size_t)B * n, all = (size_t)M * mb, hs = (size_t)net.S4 * B * net.hsum;
    REAL *buf = malloc(sizeof(REAL) * (5 * mb + net.gsize + tsize));
    if (!buf) { net_free(&net); return -2; }
    REAL *g1 = buf, *g2 = buf + mb, *g3 = buf + 2 * mb, *g4 = buf + 3 * mb, *v = buf + 4 * mb,
         *Gw = buf + 5 * mb, *Tm = Gw + net.gsize;
    const int Wn = net.W;
    for (int m = 0; m < M; m++) {
        const REAL *Um = U + (size_t)m * net.S4 * mb, *Hm = H + (size_t)m * hs;
        REAL *am = a + m * mb;
        for (int l = 0; l < L; l++) {
            memset(dW[l] + (size_t)m * (d[l + 1] / G[l]) * d[l], 0, sizeof(REAL) * (d[l + 1] / G[l]) * d[l]);
            memset(db[l] + (size_t)m * d[l + 1], 0, sizeof(REAL) * d[l + 1]);
        }
        if (Sk) memset(dS + (size_t)m * d[L] * d[0], 0, sizeof(REAL) * d[L] * d[0]);
        memset(Tm, 0, sizeof(REAL) * tsize);
        for (int s = S - 1; s >= 0; s--) {
            const REAL h = (REAL)dt[s], third = (REAL)(dt[s] * (1.0 / 3.0)), e = (REAL)(dt[s] * 0.125),
                       e3 = (REAL)(3.0 * dt[s] * 0.125);
            if (after) {
                const REAL *p = after + (size_t)s * all + m * mb;
                for (size_t i = 0; i < mb; i++) am[i] += p[i];
            }
            for (int q = 3; q >= 0; q--) {  /* stage 4 s + q, slot (4 s + q) % Wn of its window */
                const int st = 4 * s + q, w = st % Wn;
                REAL *gq = q == 3 ? g4 : q == 2 ? g3 : q == 1 ? g2 : g1;
                if (q == 3) for (size_t i = 0; i < mb; i++) v[i] = e * am[i];
                else if (q == 2) for (size_t i = 0; i < mb; i++) v[i] = FMA(e3, am[i], h * g4[i]);
                else if (q == 1) for (size_t i = 0; i < mb; i++) v[i] = FMA(e3, am[i], FMA(-h, g4[i], h * g3[i]));
                else for (size_t i = 0; i < mb; i++) v[i] = FMA(e, am[i], FMA(third, g2[i], FMA(-third, g3[i], h * g4[i])));
                field_vjp(&net, m, st, w, Hm, v, gq, Gw);
                if (w == 0) {  /* the window [st, st + nw) is complete */
                    const int nw = st + Wn <= net.S4 ? Wn : net.S4 - st;
                    window_grads(&net, m, st, nw, Um, Hm, Gw, dW, db, dS, Tm, toff);
                }
            }
            for (size_t i = 0; i < mb; i++) am[i] = am[i] + g1[i] + g2[i] + g3[i] + g4[i];
            if (before) {
                const REAL *p = before + (size_t)s * all + m * mb;
                for (size_t i = 0; i < mb; i++) am[i] += p[i];
            }
        }
        for (int l = 0; l < L; l++) {
            const int ig = d[l] / G[l], og = d[l + 1] / G[l];
            if (transposed_layer(ig, og))
                untranspose(G[l], og, ig, Tm + toff[l], dW[l] + (size_t)m * og * d[l]);
        }
        if (Sk && transposed_layer(d[0], d[L]))
            untranspose(1, d[L], d[0], Tm + toff[L], dS + (size_t)m * d[L] * d[0]);
    }
    free(buf);
    net_free(&net);
    return 0;
}

/* The kernel's tanh, elementwise (for the tests of its accuracy). */
void SFX(tanh)(long n, const REAL *x, REAL *out) {
    for (long i = 0; i < n; i++) out[i] = TANH(x[i]);
}
