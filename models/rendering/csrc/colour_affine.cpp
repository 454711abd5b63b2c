// A 3x4 colour transform of an image, out = M[:, :3] rgb + M[:, 3] per pixel (models/camera_models.py
// AffineAppearance: a camera's appearance, with the image's gain folded in), and its gradient into the image
// and the matrix, in one pass each where PyTorch ran ~12 operations over the pixels and as many backward.
// Pixels are independent in the forward and in the image's gradient; the matrix's gradient is summed per row
// (threads take whole rows) and then over rows in order: the same bytes for any thread count.
#include <vector>

#include "kernels.h"

namespace cpu_rast {

template <typename T>
void colour_affine_fwd(const T* rgb, const T* M, int64_t H, int64_t W, T* out, int n_threads) {
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t r = 0; r < H; ++r) {
        for (int64_t c = 0; c < W; ++c) {
            const T* x = rgb + (r * W + c) * 3;
            T* o = out + (r * W + c) * 3;
            for (int i = 0; i < 3; ++i) o[i] = ((M[4 * i] * x[0] + M[4 * i + 1] * x[1]) + M[4 * i + 2] * x[2]) + M[4 * i + 3];
        }
    }
}

template <typename T>
void colour_affine_bwd(const T* rgb, const T* M, int64_t H, int64_t W, const T* v_out, T* v_rgb, T* v_M,
                       int n_threads) {
    std::vector<T> rows(static_cast<size_t>(H) * 12, T(0));
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t r = 0; r < H; ++r) {
        T* acc = rows.data() + r * 12;
        for (int64_t c = 0; c < W; ++c) {
            const T* x = rgb + (r * W + c) * 3;
            const T* g = v_out + (r * W + c) * 3;
            T* vx = v_rgb + (r * W + c) * 3;
            for (int j = 0; j < 3; ++j) vx[j] = (M[j] * g[0] + M[4 + j] * g[1]) + M[8 + j] * g[2];
            for (int i = 0; i < 3; ++i) {
                acc[4 * i] += g[i] * x[0];
                acc[4 * i + 1] += g[i] * x[1];
                acc[4 * i + 2] += g[i] * x[2];
                acc[4 * i + 3] += g[i];
            }
        }
    }
    for (int k = 0; k < 12; ++k) v_M[k] = T(0);
    for (int64_t r = 0; r < H; ++r)
        for (int k = 0; k < 12; ++k) v_M[k] += rows[r * 12 + k];
}

template void colour_affine_fwd<float>(const float*, const float*, int64_t, int64_t, float*, int);
template void colour_affine_fwd<double>(const double*, const double*, int64_t, int64_t, double*, int);
template void colour_affine_bwd<float>(const float*, const float*, int64_t, int64_t, const float*, float*, float*,
                                       int);
template void colour_affine_bwd<double>(const double*, const double*, int64_t, int64_t, const double*, double*,
                                        double*, int);

}  // namespace cpu_rast
