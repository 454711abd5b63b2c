// SuGaR's normal regularizer (models/sugar/regularizers.py: sugar_normal_loss), forward and backward, fused
// with the gather of the neighbours' rows and normals. For sample m with neighbour set nbr[m, 0..K) (column 0
// is the sample's own Gaussian g):
//   s_j = sign<n_j, n_g> (0 -> +1), ñ_j = s_j n_j, dist_j = |<p − μ_j, ñ_j>|,
//   w_j = α̂_j(p) dist_j / max(smin_j, 1e-6)², normalised to sum 1 (the sample is valid when the sum > 1e-30),
//   r = n_g − Σ_j w_j ñ_j, residual[m] = ‖r‖².
// s and w carry no gradient (as in SuGaR); the gradient reaches the normals only. Backward: each pair's
// gradient 2 v[m] (δ_j0 − w_j s_j) r is summed per Gaussian in increasing pair order (a stable counting
// sort by Gaussian id), parallel over Gaussians: the same bytes for any thread count.
#include <cmath>
#include <vector>

#include "kernels.h"

namespace cpu_rast {

template <typename T>
void sugar_normal_fwd(const T* points, const T* table, const T* normals, const int64_t* nbr, int64_t M, int64_t K,
                      T* residual, bool* valid, T* coef, T* r_out, int n_threads) {
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t m = 0; m < M; ++m) {
        const T* p = points + 3 * m;
        const int64_t* nb = nbr + m * K;
        const T* ng = normals + 3 * nb[0];
        T* w = coef + m * K;  // s_j w_j unnormalised first, then normalised
        T total = 0;
        for (int64_t j = 0; j < K; ++j) {
            const T* row = table + 14 * nb[j];
            const T* nj = normals + 3 * nb[j];
            const T dot = nj[0] * ng[0] + nj[1] * ng[1] + nj[2] * ng[2];
            const T s = dot < 0 ? T(-1) : T(1);
            const T d0 = p[0] - row[0], d1 = p[1] - row[1], d2 = p[2] - row[2];
            const T dist = std::abs(d0 * (s * nj[0]) + d1 * (s * nj[1]) + d2 * (s * nj[2]));
            const T smin = row[13] > T(1e-6) ? row[13] : T(1e-6);
            const T wj = density_term(p, row) * dist / (smin * smin);
            total += wj;
            w[j] = s * wj;  // exact: s is ±1
        }
        valid[m] = total > T(1e-30);
        const T denom = total > T(1e-30) ? total : T(1e-30);
        T blended[3] = {0, 0, 0};
        for (int64_t j = 0; j < K; ++j) {
            const T* nj = normals + 3 * nb[j];
            w[j] /= denom;  // s_j w_j: ñ_j = s_j n_j, so Σ w_j ñ_j = Σ (s_j w_j) n_j
            for (int i = 0; i < 3; ++i) blended[i] += w[j] * nj[i];
        }
        T res = 0;
        for (int i = 0; i < 3; ++i) {
            const T ri = ng[i] - blended[i];
            r_out[3 * m + i] = ri;
            res += ri * ri;
        }
        residual[m] = res;
    }
}

template <typename T>
void sugar_normal_bwd(const int64_t* nbr, const T* coef, const T* r, const T* v_residual, int64_t M, int64_t K,
                      int64_t N, T* v_normals, int n_threads) {
    const int64_t P = M * K;
    std::vector<int64_t> start, order;
    pairs_by_gaussian(nbr, P, N, start, order);
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t n = 0; n < N; ++n) {
        T acc[3] = {0, 0, 0};
        for (int64_t s = start[n]; s < start[n + 1]; ++s) {
            const int64_t e = order[s];
            const int64_t m = e / K;
            const T c = T(2) * v_residual[m] * ((e % K == 0 ? T(1) : T(0)) - coef[e]);
            for (int i = 0; i < 3; ++i) acc[i] += c * r[3 * m + i];
        }
        for (int i = 0; i < 3; ++i) v_normals[3 * n + i] = acc[i];
    }
}

template void sugar_normal_fwd<float>(const float*, const float*, const float*, const int64_t*, int64_t, int64_t,
                                      float*, bool*, float*, float*, int);
template void sugar_normal_fwd<double>(const double*, const double*, const double*, const int64_t*, int64_t,
                                       int64_t, double*, bool*, double*, double*, int);
template void sugar_normal_bwd<float>(const int64_t*, const float*, const float*, const float*, int64_t, int64_t,
                                      int64_t, float*, int);
template void sugar_normal_bwd<double>(const int64_t*, const double*, const double*, const double*, int64_t,
                                       int64_t, int64_t, double*, int);

}  // namespace cpu_rast
