// Stage 2: front-to-back alpha compositing per pixel, as gsplat's rasterize_to_pixels_fwd:
// pixel centres at +0.5; skip sigma < 0 and alpha < 1/255; alpha clamped at 0.999; stop before a
// Gaussian that would bring the transmittance to <= 1e-4; store the final transmittance (as
// alpha = 1 - T) and each pixel's last contributor.
// Layout: OpenMP over tiles; within a tile the loop runs over its depth-sorted Gaussians and, for
// each, over the tile's pixel rows it can reach at once (branch-free, vectorized; contributing_rows in
// kernels.h), stopping when every pixel is done, as a GPU thread block does. Every pixel is written by
// exactly one thread, in one order, so the result does not depend on the thread count.
#include <algorithm>

#include "kernels.h"

namespace cpu_rast {

namespace {

// One Gaussian over all pixels of a tile (vectorized; see CPU_RAST_SIMD in kernels.h).
template <typename T>
CPU_RAST_SIMD void composite_step(int64_t P, const T* __restrict fx, const T* __restrict fy,
                                              T* __restrict tr, T* __restrict wp, T* __restrict dn,
                                              T* __restrict lk, T mx, T my, T a, T b, T cc, T o,
                                              T kk, T& stopped_out, T& used_out) {
    T stopped = 0, used = 0;
#pragma omp simd reduction(+ : stopped, used)
    for (int64_t q = 0; q < P; ++q) {
        const T dx = mx - fx[q], dy = my - fy[q];
        const T sigma = gauss_sigma(a, b, cc, dx, dy);
        T alpha = o * fast_exp(-sigma);
        alpha = alpha < static_cast<T>(MAX_ALPHA) ? alpha : static_cast<T>(MAX_ALPHA);
        // masks as 0/1 factors (x * 1 and x * 0 are exact): no branches, so the loop vectorizes
        const T open = T(1) - dn[q];
        const T valid = (sigma >= T(0) ? T(1) : T(0)) * (alpha >= static_cast<T>(ALPHA_THRESHOLD) ? T(1) : T(0)) * open;
        const T t0 = tr[q];
        const T next_t = t0 * (T(1) - alpha);
        const T stop = valid * (next_t <= static_cast<T>(T_MIN) ? T(1) : T(0));
        const T contrib = valid - stop;
        wp[q] = alpha * t0 * contrib;
        tr[q] = t0 * (T(1) - alpha * contrib);  // = next_t where it contributes
        lk[q] = lk[q] + (kk - lk[q]) * contrib;
        dn[q] = dn[q] + stop;
        stopped += stop;
        used += contrib;
    }
    stopped_out = stopped;
    used_out = used;
}

template <typename T>
CPU_RAST_SIMD void add_weighted(int64_t P, T* __restrict acc, const T* __restrict w, T c) {
#pragma omp simd
    for (int64_t q = 0; q < P; ++q) acc[q] += c * w[q];
}

}  // namespace

template <typename T>
int64_t rasterize_fwd(const Splats<T>& s, const Grid& g, const int64_t* offsets, const int32_t* flat_ids,
                      T* out_colors, T* out_alphas, int32_t* last, int n_threads) {
    const int64_t D = s.D, W = g.width, H = g.height, ts = g.tile;
    const int64_t per_cam = g.tiles_x * g.tiles_y;
    const int64_t n_tiles = g.n_tiles();
    int64_t n_pairs = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads) reduction(+ : n_pairs)
    for (int64_t t = 0; t < n_tiles; ++t) {
        const int64_t c = t / per_cam, ty = (t % per_cam) / g.tiles_x, tx = t % g.tiles_x;
        const int64_t start = offsets[t], n = offsets[t + 1] - start;
        const TileSplats<T> sp(s, flat_ids + start, n);
        const TilePixels<T> px(tx, ty, ts, W, H);
        const int64_t P = px.P;
        const T* __restrict fx = px.fx.data();
        const T* __restrict fy = px.fy.data();
        // per-pixel state; masks are kept as 0/1 numbers so that the pixel loop vectorizes
        std::vector<T> trans(P, T(1)), w(P), acc(D * P, T(0)), done(P);
        std::vector<T> lastk(P, T(0));  // entry counts as numbers: one type for the vectorized masks
        int64_t active = 0;
        for (int64_t q = 0; q < P; ++q) {
            done[q] = px.inside[q] ? T(0) : T(1);
            active += px.inside[q];
        }
        T* __restrict tr = trans.data();
        T* __restrict wp = w.data();
        T* __restrict dn = done.data();
        T* __restrict lk = lastk.data();
        int64_t pairs = 0;
        for (int64_t k = 0; k < n && active > 0; ++k) {
            const T mx = sp.mx[k], my = sp.my[k], a = sp.ca[k], b = sp.cb[k], cc = sp.cc[k], o = sp.op[k];
            int64_t q0, q1;  // the rows it can reach; the others would add exact zeros
            contributing_rows(my, a, b, cc, o, px.y0, ts, q0, q1);
            if (q1 <= q0) continue;
            const T kk = static_cast<T>(k + 1);
            T stopped = 0, used = 0;
            composite_step(q1 - q0, fx + q0, fy + q0, tr + q0, wp + q0, dn + q0, lk + q0, mx, my, a, b, cc, o, kk,
                           stopped, used);
            active -= static_cast<int64_t>(stopped);
            pairs += static_cast<int64_t>(used);
            if (used == 0) continue;
            for (int64_t d = 0; d < D; ++d) {
                const T cd = sp.col[k * D + d];
                add_weighted(q1 - q0, acc.data() + d * P + q0, wp + q0, cd);
            }
        }
        n_pairs += pairs;
        for (int64_t q = 0; q < P; ++q) {
            if (!px.inside[q]) continue;
            const int64_t p = px.pixel(c, q, W, H);
            for (int64_t d = 0; d < D; ++d) out_colors[p * D + d] = acc[d * P + q];
            out_alphas[p] = T(1) - tr[q];
            last[p] = static_cast<int32_t>(lk[q]);
        }
    }
    return n_pairs;
}

template int64_t rasterize_fwd<float>(const Splats<float>&, const Grid&, const int64_t*, const int32_t*, float*,
                                      float*, int32_t*, int);
template int64_t rasterize_fwd<double>(const Splats<double>&, const Grid&, const int64_t*, const int32_t*,
                                       double*, double*, int32_t*, int);

}  // namespace cpu_rast
