// SuGaR's density at sample points from their neighbour Gaussians (models/sugar/geometry.py: neighbour_table,
// density_terms), fused with the gather of the neighbours' rows, forward and backward. Not a rendering stage,
// but it is the sugar step's largest cost on a CPU and lives in the project's one compiled extension.
//   table [N, 14]: mean (3), B = R diag(1/s) as rows (9), opacity (1), smallest scale (1)
//   terms[m, j] = α_n exp(-½‖y‖²), y = Σ_i (p_m − μ_n)_i · B_n[i, :], n = nbr[m, j]
//   beta[m] = mean_j smallest-scale_n
// Backward: each (sample, neighbour) pair's gradient row is computed independently (parallel over samples),
// then the rows are summed per Gaussian in increasing pair order (a stable counting sort by Gaussian id),
// parallel over Gaussians: the same bytes for any thread count.
#include <cmath>
#include <vector>

#include "kernels.h"

namespace cpu_rast {

template <typename T>
void sugar_density_fwd(const T* points, const T* table, const int64_t* nbr, int64_t M, int64_t K, T* terms,
                       T* beta, int n_threads) {
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t m = 0; m < M; ++m) {
        const T* p = points + 3 * m;
        T smin = 0;
        for (int64_t j = 0; j < K; ++j) {
            const T* r = table + 14 * nbr[m * K + j];
            terms[m * K + j] = density_term(p, r);
            smin += r[13];
        }
        beta[m] = smin / static_cast<T>(K);
    }
}

template <typename T>
void sugar_density_bwd(const T* points, const T* table, const int64_t* nbr, int64_t M, int64_t K, int64_t N,
                       const T* v_terms, const T* v_beta, T* v_points, T* v_table, int n_threads) {
    const int64_t P = M * K;
    std::vector<T> rows(static_cast<size_t>(P) * 14);
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t m = 0; m < M; ++m) {
        const T* p = points + 3 * m;
        T gp[3] = {0, 0, 0};
        const T gb = v_beta ? v_beta[m] / static_cast<T>(K) : T(0);
        for (int64_t j = 0; j < K; ++j) {
            const int64_t e = m * K + j;
            const T* r = table + 14 * nbr[e];
            T* g = rows.data() + 14 * e;
            const T d[3] = {p[0] - r[0], p[1] - r[1], p[2] - r[2]};
            T y[3], q = 0;
            for (int k = 0; k < 3; ++k) {
                y[k] = d[0] * r[3 + k] + d[1] * r[6 + k] + d[2] * r[9 + k];
                q += y[k] * y[k];
            }
            const T ex = std::exp(T(-0.5) * q);
            const T gt = v_terms[e];
            const T term = r[12] * ex;
            T vy[3];
            for (int k = 0; k < 3; ++k) vy[k] = -gt * term * y[k];
            T gd[3];
            for (int i = 0; i < 3; ++i) {
                gd[i] = r[3 + 3 * i] * vy[0] + r[4 + 3 * i] * vy[1] + r[5 + 3 * i] * vy[2];
                for (int k = 0; k < 3; ++k) g[3 + 3 * i + k] = d[i] * vy[k];
                gp[i] += gd[i];
                g[i] = -gd[i];
            }
            g[12] = gt * ex;
            g[13] = gb;
        }
        for (int i = 0; i < 3; ++i) v_points[3 * m + i] = gp[i];
    }
    // stable counting sort of the pairs by Gaussian id, then one ordered sum per Gaussian
    std::vector<int64_t> start, order;
    pairs_by_gaussian(nbr, P, N, start, order);
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t n = 0; n < N; ++n) {
        T acc[14] = {0};
        for (int64_t s = start[n]; s < start[n + 1]; ++s) {
            const T* g = rows.data() + 14 * order[s];
            for (int c = 0; c < 14; ++c) acc[c] += g[c];
        }
        for (int c = 0; c < 14; ++c) v_table[14 * n + c] = acc[c];
    }
}

template void sugar_density_fwd<float>(const float*, const float*, const int64_t*, int64_t, int64_t, float*, float*,
                                       int);
template void sugar_density_fwd<double>(const double*, const double*, const int64_t*, int64_t, int64_t, double*,
                                        double*, int);
template void sugar_density_bwd<float>(const float*, const float*, const int64_t*, int64_t, int64_t, int64_t,
                                       const float*, const float*, float*, float*, int);
template void sugar_density_bwd<double>(const double*, const double*, const int64_t*, int64_t, int64_t, int64_t,
                                        const double*, const double*, double*, double*, int);

}  // namespace cpu_rast
