// Stage 3: gradients of the compositing, as gsplat's rasterize_to_pixels_bwd: every pixel is walked
// back to front from its stored last contributor. The transmittance in front of each contributor
// is first recomputed front to back with the forward's exact arithmetic (instead of gsplat's
// repeated division of the final T by 1 - alpha, which loses precision behind opaque Gaussians),
// and the colour "behind" sum is carried division-free:
//   out_c  = sum_i c_i a_i T_i,           d out_c / d a_i = T_i (c_i - B_i),
//   B_i    = sum_{j>i} c_j a_j prod_{i<k<j} (1 - a_k)   (B_{i-1} = c_i a_i + (1 - a_i) B_i),
//   out_a  = 1 - prod_i (1 - a_i),        d out_a / d a_i = T_i S_i,  S_i = prod_{j>i} (1 - a_j).
// Determinism: a tile sums its pixels' contributions to each of its Gaussians in one fixed
// (vectorized) order into its own slice of a per-(Gaussian, tile) buffer; the slices are then
// added per Gaussian in tile order by one thread. Nothing depends on which thread ran which tile.
#include <algorithm>

#include "kernels.h"

namespace cpu_rast {

namespace {

// The per-Gaussian pixel loops of a tile (vectorized; see CPU_RAST_SIMD in kernels.h); masks are
// 0/1 factors (x * 1 and x * 0 are exact) so that the loops have no branches.

// front to back: transmittance in front of entry k, and exp(-sigma) where it contributes (else 0)
template <typename T>
CPU_RAST_SIMD void recompute_step(int64_t P, const T* __restrict fx, const T* __restrict fy,
                                              const T* __restrict lk, T* __restrict tr, T* __restrict ts_k,
                                              T* __restrict vs_k, T mx, T my, T a, T b, T cc, T o, T kk) {
    std::copy(tr, tr + P, ts_k);
#pragma omp simd
    for (int64_t q = 0; q < P; ++q) {
        const T dx = mx - fx[q], dy = my - fy[q];
        const T sigma = gauss_sigma(a, b, cc, dx, dy);
        const T vis = fast_exp(-sigma);
        T alpha = o * vis;
        alpha = alpha < static_cast<T>(MAX_ALPHA) ? alpha : static_cast<T>(MAX_ALPHA);
        // 0/1 factors: x * 1 and x * 0 are exact, and the loop stays branch-free
        const T contrib = (sigma >= T(0) ? T(1) : T(0)) * (alpha >= static_cast<T>(ALPHA_THRESHOLD) ? T(1) : T(0)) *
                          (kk < lk[q] ? T(1) : T(0));
        vs_k[q] = vis * contrib;
        tr[q] = tr[q] * (T(1) - alpha * contrib);
    }
}

// alpha, weight and the alpha-output part of dL/dalpha; advances the suffix product S
template <typename T>
CPU_RAST_SIMD T alpha_step(int64_t P, const T* __restrict ts_k, const T* __restrict vs_k,
                                       const T* __restrict vap, T* __restrict sf, T* __restrict al,
                                       T* __restrict wq, T* __restrict vaq, T o) {
    T used = 0;
#pragma omp simd reduction(+ : used)
    for (int64_t q = 0; q < P; ++q) {
        const T vis = vs_k[q];
        T alpha = o * vis;
        alpha = alpha < static_cast<T>(MAX_ALPHA) ? alpha : static_cast<T>(MAX_ALPHA);  // 0 where vis is 0
        const T on = vis > T(0) ? T(1) : T(0);
        al[q] = alpha;
        wq[q] = alpha * ts_k[q];
        vaq[q] = vap[q] * ts_k[q] * sf[q] * on;
        sf[q] = sf[q] * (T(1) - alpha);
        used += on;
    }
    return used;
}

// one colour channel: its part of dL/dalpha, dL/dcolour (returned) and the "behind" sum B
template <typename T>
CPU_RAST_SIMD T color_step(int64_t P, const T* __restrict ts_k, const T* __restrict vs_k,
                                       const T* __restrict vcd, const T* __restrict wq, const T* __restrict al,
                                       T* __restrict vaq, T* __restrict bd, T cd) {
    T gcol = T(0);
#pragma omp simd reduction(+ : gcol)
    for (int64_t q = 0; q < P; ++q) {
        const T on = vs_k[q] > T(0) ? T(1) : T(0);
        vaq[q] += vcd[q] * ts_k[q] * (cd - bd[q]) * on;
        gcol += wq[q] * vcd[q];
        bd[q] = cd * al[q] + (T(1) - al[q]) * bd[q];
    }
    return gcol;
}

// dL/dsigma -> means2d, conic, opacity, summed over the tile's pixels
template <typename T>
CPU_RAST_SIMD void geometry_step(int64_t P, const T* __restrict fx, const T* __restrict fy,
                                             const T* __restrict vs_k, const T* __restrict vaq, T mx, T my, T a,
                                             T b, T cc, T o, T& gx_out, T& gy_out, T& ga_out, T& gb_out,
                                             T& gc_out, T& go_out) {
    T gx = 0, gy = 0, ga = 0, gb = 0, gc = 0, go = 0;
#pragma omp simd reduction(+ : gx, gy, ga, gb, gc, go)
    for (int64_t q = 0; q < P; ++q) {
        const T vis = vs_k[q];
        const T ov = o * vis;
        const T on = (vis > T(0) && ov <= static_cast<T>(MAX_ALPHA)) ? T(1) : T(0);  // alpha not clamped
        const T v_sigma = -ov * vaq[q] * on;
        const T dx = mx - fx[q], dy = my - fy[q];
        gx += v_sigma * (a * dx + b * dy);
        gy += v_sigma * (b * dx + cc * dy);
        ga += T(0.5) * v_sigma * dx * dx;
        gb += v_sigma * dx * dy;
        gc += T(0.5) * v_sigma * dy * dy;
        go += vis * vaq[q] * on;
    }
    gx_out = gx; gy_out = gy; ga_out = ga; gb_out = gb; gc_out = gc; go_out = go;
}

}  // namespace

template <typename T>
void rasterize_bwd(const Splats<T>& s, const Grid& g, const int64_t* offsets, const int32_t* flat_ids,
                   int64_t n_isects, const int32_t* last, const T* v_colors, const T* v_alphas,
                   T* v_means2d, T* v_conics, T* v_colors_out, T* v_opacities, int n_threads) {
    const int64_t D = s.D, W = g.width, H = g.height, ts = g.tile;
    const int64_t per_cam = g.tiles_x * g.tiles_y;
    const int64_t n_tiles = g.n_tiles();
    const int64_t G = 6 + D;  // per pair: means2d (2), conic (3), opacity (1), colour (D)
    std::vector<T> pair_grads(static_cast<size_t>(n_isects * G), T(0));
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads)
    for (int64_t t = 0; t < n_tiles; ++t) {
        const int64_t c = t / per_cam, ty = (t % per_cam) / g.tiles_x, tx = t % g.tiles_x;
        const int64_t start = offsets[t];
        const TilePixels<T> px(tx, ty, ts, W, H);
        const int64_t P = px.P;
        // the pixels' stored state: last contributor (tile entries walked) and output gradients
        std::vector<T> lastk(P, T(0));  // as a number: masks stay in one type, the loops vectorize
        std::vector<T> vc(D * P, T(0)), va(P, T(0));
        int32_t kmax = 0;
        for (int64_t q = 0; q < P; ++q) {
            if (!px.inside[q]) continue;
            const int64_t p = px.pixel(c, q, W, H);
            lastk[q] = static_cast<T>(last[p]);
            kmax = std::max(kmax, last[p]);
            va[q] = v_alphas[p];
            for (int64_t d = 0; d < D; ++d) vc[d * P + q] = v_colors[p * D + d];
        }
        if (kmax == 0) continue;
        const int64_t n = kmax;  // entries behind every pixel's last contributor play no part
        const TileSplats<T> sp(s, flat_ids + start, n);
        const T* __restrict fx = px.fx.data();
        const T* __restrict fy = px.fy.data();
        const T* __restrict lk = lastk.data();
        // front to back: transmittance in front of each entry, and exp(-sigma) where it contributes, over
        // the rows the entry can reach (contributing_rows in kernels.h; elsewhere its terms are exact zeros)
        std::vector<T> t_store(n * P), v_store(n * P);
        std::vector<int64_t> rows(2 * n);
        {
            std::vector<T> trans(P, T(1));
            T* __restrict tr = trans.data();
            for (int64_t k = 0; k < n; ++k) {
                const T mx = sp.mx[k], my = sp.my[k], a = sp.ca[k], b = sp.cb[k], cc = sp.cc[k], o = sp.op[k];
                int64_t& q0 = rows[2 * k];
                int64_t& q1 = rows[2 * k + 1];
                contributing_rows(my, a, b, cc, o, px.y0, ts, q0, q1);
                if (q1 <= q0) continue;
                T* __restrict ts_k = t_store.data() + k * P;
                T* __restrict vs_k = v_store.data() + k * P;
                recompute_step(q1 - q0, fx + q0, fy + q0, lk + q0, tr + q0, ts_k + q0, vs_k + q0, mx, my, a, b, cc, o,
                               static_cast<T>(k));
            }
        }
        // back to front
        std::vector<T> suffix(P, T(1)), behind(D * P, T(0)), v_alpha(P), wgt(P), alph(P);
        T* __restrict sf = suffix.data();
        T* __restrict vaq = v_alpha.data();
        T* __restrict wq = wgt.data();
        T* __restrict al = alph.data();
        const T* __restrict vap = va.data();
        T* tg = pair_grads.data() + start * G;  // this tile's slice
        for (int64_t k = n - 1; k >= 0; --k) {
            const T mx = sp.mx[k], my = sp.my[k], a = sp.ca[k], b = sp.cb[k], cc = sp.cc[k], o = sp.op[k];
            const int64_t q0 = rows[2 * k], m = rows[2 * k + 1] - q0;
            if (m <= 0) continue;
            const T* __restrict ts_k = t_store.data() + k * P + q0;
            const T* __restrict vs_k = v_store.data() + k * P + q0;
            const T used = alpha_step(m, ts_k, vs_k, vap + q0, sf + q0, al + q0, wq + q0, vaq + q0, o);
            if (used == 0) continue;
            T* gk = tg + k * G;
            for (int64_t d = 0; d < D; ++d) {
                const T cd = sp.col[k * D + d];
                const T* __restrict vcd = vc.data() + d * P + q0;
                T* __restrict bd = behind.data() + d * P + q0;
                const T gcol = color_step(m, ts_k, vs_k, vcd, wq + q0, al + q0, vaq + q0, bd, cd);
                gk[6 + d] = gcol;
            }
            T gx, gy, ga, gb, gc, go;
            geometry_step(m, fx + q0, fy + q0, vs_k, vaq + q0, mx, my, a, b, cc, o, gx, gy, ga, gb, gc, go);
            gk[0] = gx; gk[1] = gy; gk[2] = ga; gk[3] = gb; gk[4] = gc; gk[5] = go;
        }
    }
    // fixed-order reduction: pairs in (tile, depth) order, one thread
    for (int64_t e = 0; e < n_isects; ++e) {
        const int64_t i = flat_ids[e];
        const T* pg = pair_grads.data() + e * G;
        v_means2d[2 * i] += pg[0];
        v_means2d[2 * i + 1] += pg[1];
        v_conics[3 * i] += pg[2];
        v_conics[3 * i + 1] += pg[3];
        v_conics[3 * i + 2] += pg[4];
        v_opacities[i] += pg[5];
        for (int64_t d = 0; d < D; ++d) v_colors_out[i * D + d] += pg[6 + d];
    }
}

template void rasterize_bwd<float>(const Splats<float>&, const Grid&, const int64_t*, const int32_t*, int64_t,
                                   const int32_t*, const float*, const float*, float*, float*, float*, float*, int);
template void rasterize_bwd<double>(const Splats<double>&, const Grid&, const int64_t*, const int32_t*, int64_t,
                                    const int32_t*, const double*, const double*, double*, double*, double*,
                                    double*, int);

}  // namespace cpu_rast
