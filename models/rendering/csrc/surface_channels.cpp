// Per-Gaussian surface channels (models/rendering/surface.py: surface_channels), forward and backward: in
// the camera viewmat (world -> camera), the normal n = R(q) e_k (k the axis of the smallest scale, the first
// on ties, as torch.argmin), turned towards the camera (s = -1 where n_cam · μ > 0, else +1), and the plane
// distance -s n_cam · μ, μ = R_v x + t the camera-space mean. Output [N, 4] = (s n_cam, -s n_cam · μ).
// The gradient reaches the means and the quaternions; the axis choice and the sign are discrete.
// Every Gaussian is independent (OpenMP, static): the same bytes for any thread count.
#include <algorithm>
#include <cmath>

#include "kernels.h"

namespace cpu_rast {

namespace {

// column k of the rotation matrix of the normalised quaternion (w, x, y, z)
template <typename T>
inline void rotmat_column(const T (&q)[4], int k, T (&c)[3]) {
    const T w = q[0], x = q[1], y = q[2], z = q[3];
    if (k == 0) {
        c[0] = T(1) - T(2) * (y * y + z * z); c[1] = T(2) * (x * y + w * z); c[2] = T(2) * (x * z - w * y);
    } else if (k == 1) {
        c[0] = T(2) * (x * y - w * z); c[1] = T(1) - T(2) * (x * x + z * z); c[2] = T(2) * (y * z + w * x);
    } else {
        c[0] = T(2) * (x * z + w * y); c[1] = T(2) * (y * z - w * x); c[2] = T(1) - T(2) * (x * x + y * y);
    }
}

// dL/dq of column k, for dL/dcolumn g
template <typename T>
inline void rotmat_column_vjp(const T (&q)[4], int k, const T (&g)[3], T (&gq)[4]) {
    const T w = q[0], x = q[1], y = q[2], z = q[3];
    if (k == 0) {
        gq[0] = T(2) * (z * g[1] - y * g[2]);
        gq[1] = T(2) * (y * g[1] + z * g[2]);
        gq[2] = T(2) * (-T(2) * y * g[0] + x * g[1] - w * g[2]);
        gq[3] = T(2) * (-T(2) * z * g[0] + w * g[1] + x * g[2]);
    } else if (k == 1) {
        gq[0] = T(2) * (-z * g[0] + x * g[2]);
        gq[1] = T(2) * (y * g[0] - T(2) * x * g[1] + w * g[2]);
        gq[2] = T(2) * (x * g[0] + z * g[2]);
        gq[3] = T(2) * (-w * g[0] - T(2) * z * g[1] + y * g[2]);
    } else {
        gq[0] = T(2) * (y * g[0] - x * g[1]);
        gq[1] = T(2) * (z * g[0] - w * g[1] - T(2) * x * g[2]);
        gq[2] = T(2) * (w * g[0] + z * g[1] - T(2) * y * g[2]);
        gq[3] = T(2) * (x * g[0] + y * g[1]);
    }
}

// What forward and backward share for Gaussian n
template <typename T>
struct SurfaceState {
    T qn[4], qnorm, n_cam[3], mu[3], sign, dot;
    int k;
    SurfaceState(const T* x, const T* q, const T* s, const T* viewmat) {
        qnorm = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
        const T inv = T(1) / std::max(qnorm, T(1e-12));
        for (int i = 0; i < 4; ++i) qn[i] = q[i] * inv;
        k = smallest_axis(s);
        T c[3];
        rotmat_column(qn, k, c);
        for (int i = 0; i < 3; ++i) {
            const T* r = viewmat + 4 * i;
            n_cam[i] = (r[0] * c[0] + r[1] * c[1]) + r[2] * c[2];
            mu[i] = ((r[0] * x[0] + r[1] * x[1]) + r[2] * x[2]) + r[3];
        }
        dot = (n_cam[0] * mu[0] + n_cam[1] * mu[1]) + n_cam[2] * mu[2];
        sign = dot > T(0) ? T(-1) : T(1);
    }
};

}  // namespace

template <typename T>
void surface_channels_fwd(const T* means, const T* quats, const T* scales, const T* viewmat, int64_t N, T* out,
                          int n_threads) {
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t n = 0; n < N; ++n) {
        const SurfaceState<T> st(means + 3 * n, quats + 4 * n, scales + 3 * n, viewmat);
        T* o = out + 4 * n;
        for (int i = 0; i < 3; ++i) o[i] = st.sign * st.n_cam[i];
        o[3] = -st.sign * st.dot;
    }
}

template <typename T>
void surface_channels_bwd(const T* means, const T* quats, const T* scales, const T* viewmat, int64_t N,
                          const T* v_out, T* v_means, T* v_quats, int n_threads) {
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t n = 0; n < N; ++n) {
        const SurfaceState<T> st(means + 3 * n, quats + 4 * n, scales + 3 * n, viewmat);
        const T* g = v_out + 4 * n;
        const T v_dot = -st.sign * g[3];
        T v_ncam[3], v_mu[3], v_col[3];
        for (int i = 0; i < 3; ++i) {
            v_ncam[i] = st.sign * g[i] + v_dot * st.mu[i];
            v_mu[i] = v_dot * st.n_cam[i];
        }
        for (int j = 0; j < 3; ++j) {  // R_vᵀ
            v_means[3 * n + j] = (viewmat[j] * v_mu[0] + viewmat[4 + j] * v_mu[1]) + viewmat[8 + j] * v_mu[2];
            v_col[j] = (viewmat[j] * v_ncam[0] + viewmat[4 + j] * v_ncam[1]) + viewmat[8 + j] * v_ncam[2];
        }
        T gq[4];
        rotmat_column_vjp(st.qn, st.k, v_col, gq);
        // q_n = q / max(|q|, 1e-12)
        if (st.qnorm > T(1e-12)) {
            const T d = gq[0] * st.qn[0] + gq[1] * st.qn[1] + gq[2] * st.qn[2] + gq[3] * st.qn[3];
            for (int i = 0; i < 4; ++i) v_quats[4 * n + i] = (gq[i] - st.qn[i] * d) / st.qnorm;
        } else {
            for (int i = 0; i < 4; ++i) v_quats[4 * n + i] = gq[i] / T(1e-12);
        }
    }
}

template void surface_channels_fwd<float>(const float*, const float*, const float*, const float*, int64_t, float*,
                                          int);
template void surface_channels_fwd<double>(const double*, const double*, const double*, const double*, int64_t,
                                           double*, int);
template void surface_channels_bwd<float>(const float*, const float*, const float*, const float*, int64_t,
                                          const float*, float*, float*, int);
template void surface_channels_bwd<double>(const double*, const double*, const double*, const double*, int64_t,
                                           const double*, double*, double*, int);

}  // namespace cpu_rast
