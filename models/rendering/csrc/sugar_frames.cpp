// What the sugar stage's regularizers read of every Gaussian, in one pass (models/sugar/geometry.py:
// gaussian_frames), forward and backward. For Gaussian n with quaternion q (any norm; normalised here, as
// quat_to_rotmat), scales s (> 0), mean μ and opacity α:
//   rotmats [N, 3, 3]: R(q / ‖q‖), columns = axes
//   table [N, 14]:     μ (3), B = R diag(1/s) row-major (9), α (1), min(s) (1)   (neighbour_table)
//   normals [N, 3]:    column k of R, k the axis of the smallest scale (the first on ties, as torch.argmin)
// In PyTorch these were some hundred small elementwise operations over N forward and backward, more time in
// a sugar step than SuGaR's density itself. Every Gaussian is independent (OpenMP, static schedule): the same
// bytes for any thread count.
#include <algorithm>
#include <cmath>

#include "kernels.h"

namespace cpu_rast {

namespace {

// R (row-major) of the unit quaternion (w, x, y, z)
template <typename T>
inline void rotmat(const T* q, T* R) {
    const T w = q[0], x = q[1], y = q[2], z = q[3];
    R[0] = T(1) - T(2) * (y * y + z * z); R[1] = T(2) * (x * y - w * z); R[2] = T(2) * (x * z + w * y);
    R[3] = T(2) * (x * y + w * z); R[4] = T(1) - T(2) * (x * x + z * z); R[5] = T(2) * (y * z - w * x);
    R[6] = T(2) * (x * z - w * y); R[7] = T(2) * (y * z + w * x); R[8] = T(1) - T(2) * (x * x + y * y);
}

// dL/dq of R(q) for dL/dR = G (row-major), q the unit quaternion
template <typename T>
inline void rotmat_vjp(const T* q, const T* G, T* gq) {
    const T w = q[0], x = q[1], y = q[2], z = q[3];
    gq[0] = T(2) * (-z * G[1] + y * G[2] + z * G[3] - x * G[5] - y * G[6] + x * G[7]);
    gq[1] = T(2) * (y * G[1] + z * G[2] + y * G[3] - T(2) * x * G[4] - w * G[5] + z * G[6] + w * G[7] -
                    T(2) * x * G[8]);
    gq[2] = T(2) * (-T(2) * y * G[0] + x * G[1] + w * G[2] + x * G[3] + z * G[5] - w * G[6] + z * G[7] -
                    T(2) * y * G[8]);
    gq[3] = T(2) * (-T(2) * z * G[0] - w * G[1] + x * G[2] + w * G[3] - T(2) * z * G[4] + y * G[5] + x * G[6] +
                    y * G[7]);
}

template <typename T>
inline T unit_quat(const T* q, T* qn) {
    const T norm = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
    const T inv = T(1) / std::max(norm, T(1e-12));
    for (int i = 0; i < 4; ++i) qn[i] = q[i] * inv;
    return norm;
}

}  // namespace

template <typename T>
void sugar_frames_fwd(const T* means, const T* quats, const T* scales, const T* opacities, int64_t N, T* rotmats,
                      T* table, T* normals, int n_threads) {
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t n = 0; n < N; ++n) {
        T qn[4];
        unit_quat(quats + 4 * n, qn);
        T* R = rotmats + 9 * n;
        rotmat(qn, R);
        const T* s = scales + 3 * n;
        const T inv[3] = {T(1) / s[0], T(1) / s[1], T(1) / s[2]};
        T* row = table + 14 * n;
        for (int i = 0; i < 3; ++i) row[i] = means[3 * n + i];
        for (int i = 0; i < 3; ++i)
            for (int j = 0; j < 3; ++j) row[3 + 3 * i + j] = R[3 * i + j] * inv[j];
        row[12] = opacities[n];
        const int k = smallest_axis(s);
        row[13] = s[k];
        for (int i = 0; i < 3; ++i) normals[3 * n + i] = R[3 * i + k];
    }
}

template <typename T>
void sugar_frames_bwd(const T* quats, const T* scales, int64_t N, const T* v_rotmats, const T* v_table,
                      const T* v_normals, T* v_means, T* v_quats, T* v_scales, T* v_opacities, int n_threads) {
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t n = 0; n < N; ++n) {
        const T* q = quats + 4 * n;
        T qn[4];
        const T norm = unit_quat(q, qn);
        T R[9];
        rotmat(qn, R);
        const T* s = scales + 3 * n;
        const T inv[3] = {T(1) / s[0], T(1) / s[1], T(1) / s[2]};
        const int k = smallest_axis(s);
        T G[9];
        for (int e = 0; e < 9; ++e) G[e] = v_rotmats ? v_rotmats[9 * n + e] : T(0);
        T vs[3] = {0, 0, 0};
        if (v_table) {
            const T* vt = v_table + 14 * n;
            for (int i = 0; i < 3; ++i) v_means[3 * n + i] = vt[i];
            T vinv[3] = {0, 0, 0};
            for (int i = 0; i < 3; ++i)
                for (int j = 0; j < 3; ++j) {
                    G[3 * i + j] += vt[3 + 3 * i + j] * inv[j];
                    vinv[j] += vt[3 + 3 * i + j] * R[3 * i + j];
                }
            for (int j = 0; j < 3; ++j) vs[j] = -vinv[j] * inv[j] * inv[j];
            vs[k] += vt[13];
            v_opacities[n] = vt[12];
        } else {
            for (int i = 0; i < 3; ++i) v_means[3 * n + i] = T(0);
            v_opacities[n] = T(0);
        }
        if (v_normals)
            for (int i = 0; i < 3; ++i) G[3 * i + k] += v_normals[3 * n + i];
        for (int j = 0; j < 3; ++j) v_scales[3 * n + j] = vs[j];
        // through R(q̂) and q̂ = q / max(‖q‖, 1e-12)
        T gqn[4];
        rotmat_vjp(qn, G, gqn);
        T* gq = v_quats + 4 * n;
        if (norm > T(1e-12)) {
            const T dot = qn[0] * gqn[0] + qn[1] * gqn[1] + qn[2] * gqn[2] + qn[3] * gqn[3];
            for (int i = 0; i < 4; ++i) gq[i] = (gqn[i] - qn[i] * dot) / norm;
        } else {
            for (int i = 0; i < 4; ++i) gq[i] = gqn[i] / T(1e-12);
        }
    }
}

template void sugar_frames_fwd<float>(const float*, const float*, const float*, const float*, int64_t, float*,
                                      float*, float*, int);
template void sugar_frames_fwd<double>(const double*, const double*, const double*, const double*, int64_t,
                                       double*, double*, double*, int);
template void sugar_frames_bwd<float>(const float*, const float*, int64_t, const float*, const float*, const float*,
                                      float*, float*, float*, float*, int);
template void sugar_frames_bwd<double>(const double*, const double*, int64_t, const double*, const double*,
                                       const double*, double*, double*, double*, double*, int);

}  // namespace cpu_rast
