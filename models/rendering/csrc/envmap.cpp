// The sky's cube map seen through every pixel of a pinhole camera (models/camera_models.py EnvironmentMap):
// each pixel's world ray picks the face of its largest axis (ties to the lower axis), its two other axes over
// the major one give the face coordinates, clamped to the face's outer texel centres, and the colour is the
// bilinear mix of the four nearest texels' sigmoids. One pass per pixel, forward and backward, where PyTorch
// ran ~30 operations over the pixels, a sigmoid over the whole texture and grid_sample with its backward.
// The forward splits rows between threads (each pixel alone); the backward adds into the texture in pixel
// order on one thread: the same bytes for any thread count.
#include <algorithm>
#include <cmath>

#include "kernels.h"

namespace cpu_rast {

namespace {

// Pixel (r, c)'s face and its four texels (y * R + x within the face) and their bilinear weights
template <typename T>
inline int64_t envmap_taps(const T* rot, const T* K, int64_t R, int64_t r, int64_t c, int64_t idx[4], T w[4]) {
    const T u = T(c) + T(0.5), v = T(r) + T(0.5);
    const T y = (v - K[5]) / K[4];
    const T x = (u - K[2] - K[1] * y) / K[0];
    T d[3];
    for (int i = 0; i < 3; ++i) d[i] = (rot[3 * i] * x + rot[3 * i + 1] * y) + rot[3 * i + 2];
    const T a0 = std::abs(d[0]), a1 = std::abs(d[1]), a2 = std::abs(d[2]);
    const int major = (a0 >= a1 && a0 >= a2) ? 0 : (a1 >= a2 ? 1 : 2);
    const int face = 2 * major + (d[major] >= T(0) ? 0 : 1);
    const T m = std::max(std::abs(d[major]), T(1e-12));
    const int o0 = major == 0 ? 1 : 0, o1 = major == 2 ? 1 : 2;
    const T half = T(0.5) * T(R), lo = T(0.5), hi = T(R) - T(0.5);
    const T px = std::min(std::max((d[o0] / m + T(1)) * half, lo), hi) - T(0.5);
    const T py = std::min(std::max((d[o1] / m + T(1)) * half, lo), hi) - T(0.5);
    const int64_t x0 = static_cast<int64_t>(std::floor(px)), y0 = static_cast<int64_t>(std::floor(py));
    const T fx = px - T(x0), fy = py - T(y0);
    const int64_t x1 = std::min(x0 + 1, R - 1), y1 = std::min(y0 + 1, R - 1);
    idx[0] = y0 * R + x0; w[0] = (T(1) - fx) * (T(1) - fy);
    idx[1] = y0 * R + x1; w[1] = fx * (T(1) - fy);
    idx[2] = y1 * R + x0; w[2] = (T(1) - fx) * fy;
    idx[3] = y1 * R + x1; w[3] = fx * fy;
    return face;
}

}  // namespace

template <typename T>
void envmap_fwd(const T* tex, int64_t R, const T* rot, const T* K, int64_t H, int64_t W, T* out, int n_threads) {
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t r = 0; r < H; ++r) {
        for (int64_t c = 0; c < W; ++c) {
            int64_t idx[4];
            T w[4];
            const int64_t face = envmap_taps(rot, K, R, r, c, idx, w);
            T* o = out + (r * W + c) * 3;
            for (int ch = 0; ch < 3; ++ch) {
                const T* t = tex + (face * 3 + ch) * R * R;   // [6, 3, R, R]
                o[ch] = ((w[0] * t[idx[0]] + w[1] * t[idx[1]]) + w[2] * t[idx[2]]) + w[3] * t[idx[3]];
            }
        }
    }
}

template <typename T>
void envmap_bwd(int64_t R, const T* rot, const T* K, int64_t H, int64_t W, const T* v_out, T* v_tex) {
    for (int64_t r = 0; r < H; ++r) {
        for (int64_t c = 0; c < W; ++c) {
            int64_t idx[4];
            T w[4];
            const int64_t face = envmap_taps(rot, K, R, r, c, idx, w);
            const T* g = v_out + (r * W + c) * 3;
            for (int ch = 0; ch < 3; ++ch) {
                T* v = v_tex + (face * 3 + ch) * R * R;
                for (int k = 0; k < 4; ++k) v[idx[k]] += w[k] * g[ch];
            }
        }
    }
}

template void envmap_fwd<float>(const float*, int64_t, const float*, const float*, int64_t, int64_t, float*, int);
template void envmap_fwd<double>(const double*, int64_t, const double*, const double*, int64_t, int64_t, double*,
                                 int);
template void envmap_bwd<float>(int64_t, const float*, const float*, int64_t, int64_t, const float*,
                                float*);
template void envmap_bwd<double>(int64_t, const double*, const double*, int64_t, int64_t,
                                 const double*, double*);

}  // namespace cpu_rast
