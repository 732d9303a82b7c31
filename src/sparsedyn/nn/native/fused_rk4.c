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
 * The forward writes the grid states Y (S+1, M, B, n), the stage inputs U (S, 4, M, B, n)
 * and the hidden activations H (S, 4, M, B * hsum), hsum = d[1] + ... + d[L-1]. The backward reads them.
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

/* One row of one column block, as gemm_rows4. */
static inline void gemm_row1(int K, const REAL *A, size_t sak, const REAL *B, size_t ldb, REAL *C, int qn) {
    REAL acc[QB];
    for (int q = 0; q < QB; q++) acc[q] = q < qn ? C[q] : 0;
    for (int k = 0; k < K; k++) {
        const REAL a = A[(size_t)k * sak];
        const REAL *b = B + (size_t)k * ldb;
#pragma GCC unroll 16
        for (int q = 0; q < QB; q++) acc[q] = FMA(a, b[q], acc[q]);
    }
    for (int q = 0; q < qn; q++) C[q] = acc[q];
}

/* C[p, q] += sum_k A[p, k] Bm[k, q] for p < P, q < Q, k < K: every element summed by one fma chain in
 * increasing k, whatever its position or the blocking (so its bits depend only on its own inputs; a partial
 * sum stored to C between chunks of k and loaded back is exact). A is read with strides (sap, sak), Bm row-major
 * with row stride ldb, C with row stride ldc. A column block narrower than QB is copied into a zero-padded
 * buffer, so every block runs the same full-width loop, unless ``padded``: Bm's rows are already zero-padded to
 * a multiple of QB (the weight copies of Net). */
static void gemm_acc(int P, int Q, int K, const REAL *A, size_t sap, size_t sak, const REAL *Bm, size_t ldb,
                     REAL *C, size_t ldc, int padded) {
    REAL pack[KC * QB];
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
            int p0 = 0;
            for (; p0 + PB <= P; p0 += PB)
                gemm_rows4(kc, Ak + (size_t)p0 * sap, sap, sak, B, ld, C + (size_t)p0 * ldc + q0, ldc, qn);
            for (; p0 < P; p0++)
                gemm_row1(kc, Ak + (size_t)p0 * sap, sak, B, ld, C + (size_t)p0 * ldc + q0, qn);
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
    REAL *gacc;             /* the adjoint of the field's output, keep applied (B, n) */
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
                    const REAL *const *b, const REAL *keep, const REAL *Sk, int so) {
    net->L = 0;
    net->St = net->Sp = NULL;
    net->acc = net->gacc = NULL;
    net->so = so;
    if (L < 1 || L > MAXL) return -1;
    if (so && d[0] != 2 * d[L]) return -4;
    for (int l = 0; l < L; l++)
        if (G[l] < 1 || d[l] % G[l] || d[l + 1] % G[l]) return -3;
    net->M = M; net->B = B; net->d = d; net->G = G; net->b = b; net->keep = keep;
    net->hsum = 0;
    for (int l = 1; l < L; l++) net->hsum += d[l];
    for (int l = 0; l < L; l++) net->Wt[l] = net->Wp[l] = NULL;
    net->L = L;  /* from here net_free frees what was allocated */
    for (int l = 0; l < L; l++) {  /* member m's group j is block m * G[l] + j */
        int err = copy_weights((size_t)M * G[l], d[l + 1] / G[l], d[l] / G[l], W[l], &net->Wt[l], &net->Wp[l]);
        if (err) return err;
    }
    net->gacc = malloc(sizeof(REAL) * (size_t)B * d[L]);
    if (!net->gacc) return -2;
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
    free(net->gacc);
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

/* the state's derivative for member m at u (B, d[0]) into k (B, d[0]); hidden activations into h (B * hsum) */
static void field(const Net *net, int m, const REAL *u, REAL *k_state, REAL *h) {
    const int B = net->B, L = net->L;
    const int *d = net->d;
    const REAL *x = u;
    REAL *hl = h, *k = net->so ? net->acc : k_state;
    for (int l = 0; l < L; l++) {
        const int in = d[l], o = d[l + 1], g = net->G[l];
        const REAL *Wt = net->Wt[l] + (size_t)m * g * (in / g) * pad(o / g);
        const REAL *bias = net->b[l] + (size_t)m * o;
        if (l < L - 1) {
            layer_forward(B, in, o, g, x, Wt, bias, hl, 1);
            x = hl;
            hl += (size_t)B * o;
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
    int err = net_init(&net, M, B, L, d, G, W, b, keep, Sk, so);
    if (err) { net_free(&net); return err; }
    const int n = d[0];
    const size_t mb = (size_t)B * n, all = (size_t)M * mb, hs = (size_t)B * net.hsum;
    REAL *k = malloc(sizeof(REAL) * 4 * mb);
    if (!k) { net_free(&net); return -2; }
    REAL *k1 = k, *k2 = k + mb, *k3 = k + 2 * mb, *k4 = k + 3 * mb;
    memcpy(Y, y0, sizeof(REAL) * all);
    for (int s = 0; s < S; s++) {
        const REAL h = (REAL)dt[s], third = (REAL)(dt[s] * (1.0 / 3.0)), e = (REAL)(dt[s] * 0.125),
                   e3 = (REAL)(3.0 * dt[s] * 0.125);
        for (int m = 0; m < M; m++) {
            const REAL *y = Y + (size_t)s * all + m * mb;
            REAL *y1 = Y + (size_t)(s + 1) * all + m * mb;
            REAL *u1 = U + ((size_t)(4 * s + 0) * M + m) * mb, *u2 = U + ((size_t)(4 * s + 1) * M + m) * mb,
                 *u3 = U + ((size_t)(4 * s + 2) * M + m) * mb, *u4 = U + ((size_t)(4 * s + 3) * M + m) * mb;
            REAL *h1 = H + ((size_t)(4 * s + 0) * M + m) * hs, *h2 = H + ((size_t)(4 * s + 1) * M + m) * hs,
                 *h3 = H + ((size_t)(4 * s + 2) * M + m) * hs, *h4 = H + ((size_t)(4 * s + 3) * M + m) * hs;
            memcpy(u1, y, sizeof(REAL) * mb);
            field(&net, m, u1, k1, h1);
            for (size_t i = 0; i < mb; i++) u2[i] = FMA(third, k1[i], y[i]);
            field(&net, m, u2, k2, h2);
            for (size_t i = 0; i < mb; i++) u3[i] = FMA(-third, k1[i], FMA(h, k2[i], y[i]));
            field(&net, m, u3, k3, h3);
            for (size_t i = 0; i < mb; i++) u4[i] = FMA(h, k3[i], FMA(-h, k2[i], FMA(h, k1[i], y[i])));
            field(&net, m, u4, k4, h4);
            for (size_t i = 0; i < mb; i++)
                y1[i] = FMA(e, k4[i], FMA(e3, k3[i], FMA(e3, k2[i], FMA(e, k1[i], y[i]))));
        }
    }
    free(k);
    net_free(&net);
    return 0;
}

/* J^T g for member m at stage input u with hidden activations h; weight gradients accumulated into
 * dW[l] (M, out, in), db[l] (M, out). g (B, n_out) is overwritten; the result goes to gx (B, n_in).
 * work: 2 * B * dmax scratch. */
static void field_vjp(const Net *net, int m, const REAL *u, const REAL *h, const REAL *g_state, REAL *gx,
                      REAL *const *dW, REAL *const *db, REAL *dS, REAL *work, int dmax) {
    const int B = net->B, L = net->L, n = d_out(net);
    const int *d = net->d;
    REAL *ga = work, *gb = work + (size_t)B * dmax;
    /* the adjoint of the field's output: the state's derivative's (first order) or its acceleration part's,
     * times keep; kept intact for the skip below */
    REAL *g_in = net->gacc;
    for (int r = 0; r < B; r++) {
        const REAL *src = g_state + (size_t)r * d[0] + (net->so ? n : 0);
        REAL *dst = g_in + (size_t)r * n;
        if (net->keep)
            for (int j = 0; j < n; j++) dst[j] = src[j] * net->keep[j];
        else
            memcpy(dst, src, sizeof(REAL) * n);
    }
    memcpy(ga, g_in, sizeof(REAL) * (size_t)B * n);
    size_t off[MAXL];
    off[0] = 0;
    for (int l = 1; l < L; l++) off[l] = off[l - 1] + (size_t)B * d[l];
    for (int l = L - 1; l >= 0; l--) {
        const int in = d[l], o = d[l + 1], g = net->G[l], ig = in / g, og = o / g;
        const REAL *x = l > 0 ? h + off[l - 1] : u;
        const REAL *w = net->Wp[l] + (size_t)m * g * og * pad(ig);
        REAL *dw = dW[l] + (size_t)m * g * og * ig, *dbm = db[l] + (size_t)m * o;
        for (int j = 0; j < g; j++)  /* dW[j][p, i] += sum_r g[r, j og + p] x[r, j ig + i] */
            gemm_acc(og, ig, B, ga + (size_t)j * og, 1, o, x + (size_t)j * ig, in, dw + (size_t)j * og * ig, ig, 0);
        for (int r = 0; r < B; r++)
            for (int j = 0; j < o; j++) dbm[j] += ga[(size_t)r * o + j];
        REAL *out = l > 0 ? gb : gx;
        memset(out, 0, sizeof(REAL) * (size_t)B * in);
        for (int j = 0; j < g; j++)  /* g_x[r, j ig + i] = sum_p g[r, j og + p] W[j][p, i] */
            gemm_acc(B, ig, og, ga + (size_t)j * og, o, 1, w + (size_t)j * og * pad(ig), pad(ig),
                     out + (size_t)j * ig, in, 1);
        if (l > 0) {
            const REAL *hl = h + off[l - 1];
            for (size_t i = 0; i < (size_t)B * in; i++) out[i] = out[i] - out[i] * hl[i] * hl[i];
        }
        if (l > 0) { REAL *t = ga; ga = gb; gb = t; }
    }
    if (net->Sp) {  /* the skip: dS[j, i] += sum_r g[r, j] u[r, i]; g_x += g Sk */
        const int n_in = d[0], n_out = d[L];
        gemm_acc(n_out, n_in, B, g_in, 1, n_out, u, n_in, dS + (size_t)m * n_out * n_in, n_in, 0);
        gemm_acc(B, n_in, n_out, g_in, n_out, 1, net->Sp + (size_t)m * n_out * pad(n_in), pad(n_in), gx, n_in, 1);
    }
    if (net->so)  /* x' = v: the velocity's adjoint gains the position part of the derivative's */
        for (int r = 0; r < B; r++)
            for (int j = 0; j < n; j++) gx[(size_t)r * 2 * n + n + j] += g_state[(size_t)r * 2 * n + j];
}

/* The adjoint pass. a (M, B, n): on entry the adjoint of the last grid state, on exit that of y0 (before
 * the output at t0 is added, which the caller does). after/before (S, M, B, n) or NULL: adjoint
 * contributions of the outputs to each step's end state (added before the step is reversed) and start
 * state (added after). dW, db zeroed by the caller. */
int SFX(rk4_backward)(int M, int B, int L, const int *d, const int *G, const REAL *const *W,
                      const REAL *const *b, const REAL *Sk, const REAL *keep, int so, int S, const double *dt,
                      const REAL *U, const REAL *H, const REAL *after, const REAL *before, REAL *a,
                      REAL *const *dW, REAL *const *db, REAL *dS) {
    Net net;
    int err = net_init(&net, M, B, L, d, G, W, b, keep, Sk, so);
    if (err) { net_free(&net); return err; }
    int dmax = 0;
    for (int l = 0; l <= L; l++) dmax = d[l] > dmax ? d[l] : dmax;
    const int n = d[0];
    const size_t mb = (size_t)B * n, all = (size_t)M * mb, hs = (size_t)B * net.hsum;
    REAL *buf = malloc(sizeof(REAL) * (5 * mb + 2 * (size_t)B * dmax));
    if (!buf) { net_free(&net); return -2; }
    REAL *g1 = buf, *g2 = buf + mb, *g3 = buf + 2 * mb, *g4 = buf + 3 * mb, *v = buf + 4 * mb,
         *work = buf + 5 * mb;
    for (int s = S - 1; s >= 0; s--) {
        const REAL h = (REAL)dt[s], third = (REAL)(dt[s] * (1.0 / 3.0)), e = (REAL)(dt[s] * 0.125),
                   e3 = (REAL)(3.0 * dt[s] * 0.125);
        for (int m = 0; m < M; m++) {
            REAL *am = a + m * mb;
            if (after) {
                const REAL *p = after + (size_t)s * all + m * mb;
                for (size_t i = 0; i < mb; i++) am[i] += p[i];
            }
            const REAL *u[4], *hh[4];
            for (int q = 0; q < 4; q++) {
                u[q] = U + ((size_t)(4 * s + q) * M + m) * mb;
                hh[q] = H + ((size_t)(4 * s + q) * M + m) * hs;
            }
            for (size_t i = 0; i < mb; i++) v[i] = e * am[i];
            field_vjp(&net, m, u[3], hh[3], v, g4, dW, db, dS, work, dmax);
            for (size_t i = 0; i < mb; i++) v[i] = FMA(e3, am[i], h * g4[i]);
            field_vjp(&net, m, u[2], hh[2], v, g3, dW, db, dS, work, dmax);
            for (size_t i = 0; i < mb; i++) v[i] = FMA(e3, am[i], FMA(-h, g4[i], h * g3[i]));
            field_vjp(&net, m, u[1], hh[1], v, g2, dW, db, dS, work, dmax);
            for (size_t i = 0; i < mb; i++) v[i] = FMA(e, am[i], FMA(third, g2[i], FMA(-third, g3[i], h * g4[i])));
            field_vjp(&net, m, u[0], hh[0], v, g1, dW, db, dS, work, dmax);
            for (size_t i = 0; i < mb; i++) am[i] = am[i] + g1[i] + g2[i] + g3[i] + g4[i];
            if (before) {
                const REAL *p = before + (size_t)s * all + m * mb;
                for (size_t i = 0; i < mb; i++) am[i] += p[i];
            }
        }
    }
    free(buf);
    net_free(&net);
    return 0;
}

/* The kernel's tanh, elementwise (for the tests of its accuracy). */
void SFX(tanh)(long n, const REAL *x, REAL *out) {
    for (long i = 0; i < n; i++) out[i] = TANH(x[i]);
}
