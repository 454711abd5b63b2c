// Stage 3: gradients of the compositing, as gsplat's rasterize_to_pixels_bwd: each pixel is walked
// back to front from its stored last contributor. The transmittance in front of each contributor
// is recomputed front to back with the forward's exact arithmetic (instead of gsplat's repeated
// division of the final T by 1 - alpha, which loses precision behind opaque Gaussians), and the
// colour "behind" sum is carried division-free:
//   out_c  = sum_i c_i a_i T_i,           d out_c / d a_i = T_i (c_i - B_i),
//   B_i    = sum_{j>i} c_j a_j prod_{i<k<j} (1 - a_k)   (B_{i-1} = c_i a_i + (1 - a_i) B_i),
//   out_a  = 1 - prod_i (1 - a_i),        d out_a / d a_i = T_i S_i,  S_i = prod_{j>i} (1 - a_j).
// Determinism: a tile accumulates its pixels' gradients in pixel order into its own slice of a
// per-(Gaussian, tile) buffer; the slices are then summed per Gaussian in tile order by one thread.
// Nothing depends on which thread ran which tile.
#include <algorithm>

#include "kernels.h"

namespace cpu_rast {

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
        const int64_t start = offsets[t], n = offsets[t + 1] - start;
        if (n == 0) continue;
        std::vector<T> buf(n * (7 + D));
        T *mx = buf.data(), *my = mx + n, *ca = my + n, *cb = ca + n, *cc = cb + n, *op = cc + n, *sk = op + n;
        T* col = sk + n;
        for (int64_t k = 0; k < n; ++k) {
            const int64_t i = flat_ids[start + k];
            mx[k] = s.means2d[2 * i];
            my[k] = s.means2d[2 * i + 1];
            ca[k] = s.conics[3 * i];
            cb[k] = s.conics[3 * i + 1];
            cc[k] = s.conics[3 * i + 2];
            op[k] = s.opacities[i];
            sk[k] = skip_sigma(op[k]);
            for (int64_t d = 0; d < D; ++d) col[k * D + d] = s.colors[i * D + d];
        }
        T* tg = pair_grads.data() + start * G;  // this tile's slice
        // contributors of one pixel, front to back
        std::vector<int32_t> ck;
        std::vector<T> cvis, calpha, ctrans, cdx, cdy;
        std::vector<T> behind(D), vc(D);
        const int64_t y_end = std::min(H, (ty + 1) * ts), x_end = std::min(W, (tx + 1) * ts);
        for (int64_t py = ty * ts; py < y_end; ++py) {
            for (int64_t px = tx * ts; px < x_end; ++px) {
                const int64_t p = (c * H + py) * W + px;
                const int32_t n_walk = last[p];
                if (n_walk == 0) continue;
                const T fx = static_cast<T>(px) + T(0.5), fy = static_cast<T>(py) + T(0.5);
                ck.clear(); cvis.clear(); calpha.clear(); ctrans.clear(); cdx.clear(); cdy.clear();
                T trans = T(1);
                for (int32_t k = 0; k < n_walk; ++k) {
                    const T dx = mx[k] - fx, dy = my[k] - fy;
                    const T sigma = gauss_sigma(ca[k], cb[k], cc[k], dx, dy);
                    if (sigma < T(0) || sigma > sk[k]) continue;
                    const T vis = std::exp(-sigma);
                    const T alpha = std::min(static_cast<T>(MAX_ALPHA), op[k] * vis);
                    if (alpha < static_cast<T>(ALPHA_THRESHOLD)) continue;
                    ck.push_back(k); cvis.push_back(vis); calpha.push_back(alpha); ctrans.push_back(trans);
                    cdx.push_back(dx); cdy.push_back(dy);
                    trans = trans * (T(1) - alpha);
                }
                for (int64_t d = 0; d < D; ++d) vc[d] = v_colors[p * D + d];
                const T va = v_alphas[p];
                std::fill(behind.begin(), behind.end(), T(0));
                T suffix = T(1);
                for (int64_t j = static_cast<int64_t>(ck.size()) - 1; j >= 0; --j) {
                    const int32_t k = ck[j];
                    const T alpha = calpha[j], tr = ctrans[j], vis = cvis[j];
                    const T* colk = col + k * D;
                    T* gk = tg + k * G;
                    T v_alpha = va * tr * suffix;
                    const T w = alpha * tr;
                    for (int64_t d = 0; d < D; ++d) {
                        v_alpha += vc[d] * tr * (colk[d] - behind[d]);
                        gk[6 + d] += w * vc[d];
                        behind[d] = colk[d] * alpha + (T(1) - alpha) * behind[d];
                    }
                    suffix *= (T(1) - alpha);
                    if (op[k] * vis <= static_cast<T>(MAX_ALPHA)) {  // alpha not clamped
                        const T v_sigma = -op[k] * vis * v_alpha;
                        const T dx = cdx[j], dy = cdy[j];
                        gk[0] += v_sigma * (ca[k] * dx + cb[k] * dy);
                        gk[1] += v_sigma * (cb[k] * dx + cc[k] * dy);
                        gk[2] += T(0.5) * v_sigma * dx * dx;
                        gk[3] += v_sigma * dx * dy;
                        gk[4] += T(0.5) * v_sigma * dy * dy;
                        gk[5] += vis * v_alpha;
                    }
                }
            }
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
