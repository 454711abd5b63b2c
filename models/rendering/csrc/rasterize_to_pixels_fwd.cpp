// Stage 2: front-to-back alpha compositing per pixel, as gsplat's rasterize_to_pixels_fwd:
// pixel centres at +0.5; skip sigma < 0 and alpha < 1/255; alpha clamped at 0.999; stop before a
// Gaussian that would bring the transmittance to <= 1e-4; store the final transmittance (as
// alpha = 1 - T) and each pixel's last contributor. Tiles are independent: OpenMP over tiles,
// every pixel written by exactly one thread, so the result does not depend on the thread count.
#include <algorithm>

#include "kernels.h"

namespace cpu_rast {

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
        // the tile's Gaussians, gathered contiguously (structure of arrays)
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
        std::vector<T> acc(D);
        const int64_t y_end = std::min(H, (ty + 1) * ts), x_end = std::min(W, (tx + 1) * ts);
        for (int64_t py = ty * ts; py < y_end; ++py) {
            for (int64_t px = tx * ts; px < x_end; ++px) {
                const T fx = static_cast<T>(px) + T(0.5), fy = static_cast<T>(py) + T(0.5);
                std::fill(acc.begin(), acc.end(), T(0));
                T trans = T(1);
                int32_t last_k = 0;
                for (int64_t k = 0; k < n; ++k) {
                    const T dx = mx[k] - fx, dy = my[k] - fy;
                    const T sigma = gauss_sigma(ca[k], cb[k], cc[k], dx, dy);
                    if (sigma < T(0) || sigma > sk[k]) continue;
                    const T alpha = std::min(static_cast<T>(MAX_ALPHA), op[k] * std::exp(-sigma));
                    if (alpha < static_cast<T>(ALPHA_THRESHOLD)) continue;
                    const T next_t = trans * (T(1) - alpha);
                    if (next_t <= static_cast<T>(T_MIN)) break;
                    const T w = alpha * trans;
                    const T* ck = col + k * D;
                    for (int64_t d = 0; d < D; ++d) acc[d] += ck[d] * w;
                    trans = next_t;
                    last_k = static_cast<int32_t>(k + 1);
                    ++n_pairs;
                }
                const int64_t p = (c * H + py) * W + px;
                for (int64_t d = 0; d < D; ++d) out_colors[p * D + d] = acc[d];
                out_alphas[p] = T(1) - trans;
                last[p] = last_k;
            }
        }
    }
    return n_pairs;
}

template int64_t rasterize_fwd<float>(const Splats<float>&, const Grid&, const int64_t*, const int32_t*, float*,
                                      float*, int32_t*, int);
template int64_t rasterize_fwd<double>(const Splats<double>&, const Grid&, const int64_t*, const int32_t*,
                                       double*, double*, int32_t*, int);

}  // namespace cpu_rast
