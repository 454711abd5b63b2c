// Stage 0b: view-dependent colour from spherical harmonics (gsplat's spherical_harmonics, degree <= 3), forward
// and backward, as models/rendering/sh.py + rasterization(): colour = max(Σ_k basis_k(d) coeff_k + 0.5, 0),
// d the unit vector from the camera centre to the mean (a zero vector gives the DC colour only).
// The backward pass gives the coefficients' and the means' gradients (through d), summed over the cameras
// in camera order; one thread per Gaussian range, so the result does not depend on the thread count. Asked
// for, the camera centres' gradients (d depends on mean - campos: minus the means' terms) are summed over
// the Gaussians by chunked_gaussian_sum (kernels.h): the same bits for any thread count too.
#include <algorithm>
#include <cmath>

#include "kernels.h"

namespace cpu_rast {

namespace {

constexpr double SH_C0 = 0.28209479177387814;
constexpr double SH_C1 = 0.4886025119029199;
constexpr double SH_C2[5] = {1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
                             0.5462742152960396};
constexpr double SH_C3[7] = {-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
                             -0.4570457994644658, 1.445305721320277, -0.5900435899266435};

// Basis values b[0..nb) at the unit direction (x, y, z); with db, also their derivatives db[k][0..3).
template <typename T>
inline void sh_basis(int degree, T x, T y, T z, T* b, T (*db)[3]) {
    b[0] = static_cast<T>(SH_C0);
    if (db) db[0][0] = db[0][1] = db[0][2] = 0;
    if (degree < 1) return;
    const T c1 = static_cast<T>(SH_C1);
    b[1] = -c1 * y;
    b[2] = c1 * z;
    b[3] = -c1 * x;
    if (db) {
        db[1][0] = 0; db[1][1] = -c1; db[1][2] = 0;
        db[2][0] = 0; db[2][1] = 0; db[2][2] = c1;
        db[3][0] = -c1; db[3][1] = 0; db[3][2] = 0;
    }
    if (degree < 2) return;
    const T xx = x * x, yy = y * y, zz = z * z;
    const T k0 = static_cast<T>(SH_C2[0]), k1 = static_cast<T>(SH_C2[1]), k2 = static_cast<T>(SH_C2[2]),
            k3 = static_cast<T>(SH_C2[3]), k4 = static_cast<T>(SH_C2[4]);
    b[4] = k0 * x * y;
    b[5] = k1 * y * z;
    b[6] = k2 * (T(2) * zz - xx - yy);
    b[7] = k3 * x * z;
    b[8] = k4 * (xx - yy);
    if (db) {
        db[4][0] = k0 * y; db[4][1] = k0 * x; db[4][2] = 0;
        db[5][0] = 0; db[5][1] = k1 * z; db[5][2] = k1 * y;
        db[6][0] = -T(2) * k2 * x; db[6][1] = -T(2) * k2 * y; db[6][2] = T(4) * k2 * z;
        db[7][0] = k3 * z; db[7][1] = 0; db[7][2] = k3 * x;
        db[8][0] = T(2) * k4 * x; db[8][1] = -T(2) * k4 * y; db[8][2] = 0;
    }
    if (degree < 3) return;
    const T m0 = static_cast<T>(SH_C3[0]), m1 = static_cast<T>(SH_C3[1]), m2 = static_cast<T>(SH_C3[2]),
            m3 = static_cast<T>(SH_C3[3]), m4 = static_cast<T>(SH_C3[4]), m5 = static_cast<T>(SH_C3[5]),
            m6 = static_cast<T>(SH_C3[6]);
    b[9] = m0 * y * (T(3) * xx - yy);
    b[10] = m1 * x * y * z;
    b[11] = m2 * y * (T(4) * zz - xx - yy);
    b[12] = m3 * z * (T(2) * zz - T(3) * xx - T(3) * yy);
    b[13] = m4 * x * (T(4) * zz - xx - yy);
    b[14] = m5 * z * (xx - yy);
    b[15] = m6 * x * (xx - T(3) * yy);
    if (db) {
        db[9][0] = m0 * T(6) * x * y; db[9][1] = m0 * (T(3) * xx - T(3) * yy); db[9][2] = 0;
        db[10][0] = m1 * y * z; db[10][1] = m1 * x * z; db[10][2] = m1 * x * y;
        db[11][0] = -m2 * T(2) * x * y; db[11][1] = m2 * (T(4) * zz - xx - T(3) * yy); db[11][2] = m2 * T(8) * y * z;
        db[12][0] = -m3 * T(6) * x * z; db[12][1] = -m3 * T(6) * y * z;
        db[12][2] = m3 * (T(6) * zz - T(3) * xx - T(3) * yy);
        db[13][0] = m4 * (T(4) * zz - T(3) * xx - yy); db[13][1] = -m4 * T(2) * x * y; db[13][2] = m4 * T(8) * x * z;
        db[14][0] = m5 * T(2) * x * z; db[14][1] = -m5 * T(2) * y * z; db[14][2] = m5 * (xx - yy);
        db[15][0] = m6 * (T(3) * xx - T(3) * yy); db[15][1] = -m6 * T(6) * x * y; db[15][2] = 0;
    }
}

// Unit direction from the camera centre to the mean; n = its length before normalising (0: d = 0).
template <typename T>
inline void view_dir(const T* mean, const T* campos, T (&d)[3], T& n) {
    const T dx = mean[0] - campos[0], dy = mean[1] - campos[1], dz = mean[2] - campos[2];
    n = std::sqrt(dx * dx + dy * dy + dz * dz);
    const T inv = n > T(0) ? T(1) / n : T(1);
    d[0] = dx * inv; d[1] = dy * inv; d[2] = dz * inv;
}

}  // namespace

// The coefficients of Gaussian n: row n of c0 ([N, K0, 3], the first K0) followed by row n of cr
// ([N, K - K0, 3], the rest; none when K0 = K). 3DGS trainers keep them as two parameters (sh0, shN) and
// concatenate them every step; read in place here, that copy (and its backward's split) goes.
template <typename T>
struct Coeffs {
    const T* c0;
    int64_t K0;
    const T* cr;
    int64_t K;
    // row n's first nb coefficients into out[3 * nb]
    void load(int64_t n, int nb, T* out) const {
        const int64_t n0 = std::min<int64_t>(nb, K0);
        std::copy(c0 + n * K0 * 3, c0 + (n * K0 + n0) * 3, out);
        if (nb > n0) std::copy(cr + n * (K - K0) * 3, cr + (n * (K - K0) + nb - n0) * 3, out + n0 * 3);
    }
};

template <typename T>
void sh_colors_fwd(int degree, const T* means, const T* coeffs, int64_t K0, const T* rest, int64_t K,
                   const T* campos, int64_t C, int64_t N, const int32_t* radii, T* colors, int n_threads) {
    const int nb = (degree + 1) * (degree + 1);
    const Coeffs<T> cf{coeffs, K0, rest, K};
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t n = 0; n < N; ++n) {
        T co[48];
        bool loaded = false;
        for (int64_t c = 0; c < C; ++c) {
            T* out = colors + 3 * (c * N + n);
            const int64_t i = c * N + n;
            if (radii != nullptr && !kept(radii, i)) {  // culled: never composited
                out[0] = out[1] = out[2] = T(0);
                continue;
            }
            if (!loaded) {
                cf.load(n, nb, co);
                loaded = true;
            }
            T d[3], len, b[16];
            view_dir(means + 3 * n, campos + 3 * c, d, len);
            sh_basis<T>(degree, d[0], d[1], d[2], b, nullptr);
            for (int ch = 0; ch < 3; ++ch) {
                T acc = 0;
                for (int k = 0; k < nb; ++k) acc += b[k] * co[3 * k + ch];
                out[ch] = std::max(acc + T(0.5), T(0));
            }
        }
    }
}

// Writes every entry of v_coeffs [N, K0, 3] and v_rest [N, K - K0, 3] (zeros for the degrees not in use), so
// neither needs a zero-filled buffer.
template <typename T>
void sh_colors_bwd(int degree, const T* means, const T* coeffs, int64_t K0, const T* rest, int64_t K,
                   const T* campos, int64_t C, int64_t N, const int32_t* radii, const T* v_colors, T* v_means,
                   T* v_coeffs, T* v_rest, T* v_campos, int n_threads) {
    const int nb = (degree + 1) * (degree + 1);
    const Coeffs<T> cf{coeffs, K0, rest, K};
    // Gaussian n: its gradients (written) and, with vcam (not null), minus its direction terms added to the
    // camera centres' vcam [C, 3]
    auto one = [&](int64_t n, T* vcam) {
        T co[48], vco[48];
        std::fill(vco, vco + 3 * nb, T(0));
        bool loaded = false;
        T gm[3] = {0, 0, 0};
        for (int64_t c = 0; c < C; ++c) {
            const int64_t i = c * N + n;
            if (radii != nullptr && !kept(radii, i)) continue;  // culled: colour 0, whatever the inputs
            const T* vc = v_colors + 3 * i;
            if (vc[0] == T(0) && vc[1] == T(0) && vc[2] == T(0)) continue;
            if (!loaded) {
                cf.load(n, nb, co);
                loaded = true;
            }
            T d[3], len, b[16], db[16][3];
            view_dir(means + 3 * n, campos + 3 * c, d, len);
            sh_basis<T>(degree, d[0], d[1], d[2], b, db);
            T g[3];
            for (int ch = 0; ch < 3; ++ch) {  // clamp_min(x, 0) passes the gradient where x >= 0, as torch's
                T acc = 0;
                for (int k = 0; k < nb; ++k) acc += b[k] * co[3 * k + ch];
                g[ch] = acc + T(0.5) >= T(0) ? vc[ch] : T(0);
            }
            T gd[3] = {0, 0, 0};
            for (int k = 0; k < nb; ++k) {
                T gb = 0;
                for (int ch = 0; ch < 3; ++ch) {
                    vco[3 * k + ch] += b[k] * g[ch];
                    gb += co[3 * k + ch] * g[ch];
                }
                gd[0] += gb * db[k][0];
                gd[1] += gb * db[k][1];
                gd[2] += gb * db[k][2];
            }
            if (degree >= 1) {
                T gv[3];  // dL/d(mean - campos)
                if (len > T(0)) {  // d = v / |v|
                    const T dot = gd[0] * d[0] + gd[1] * d[1] + gd[2] * d[2];
                    for (int j = 0; j < 3; ++j) gv[j] = (gd[j] - d[j] * dot) / len;
                } else {  // v = 0: d = v (the kernel's factor 1)
                    for (int j = 0; j < 3; ++j) gv[j] = gd[j];
                }
                for (int j = 0; j < 3; ++j) gm[j] += gv[j];
                if (vcam != nullptr)
                    for (int j = 0; j < 3; ++j) vcam[3 * c + j] -= gv[j];
            }
        }
        for (int j = 0; j < 3; ++j) v_means[3 * n + j] = gm[j];
        for (int64_t k = 0; k < K; ++k) {
            T* dst = k < K0 ? v_coeffs + (n * K0 + k) * 3 : v_rest + (n * (K - K0) + k - K0) * 3;
            for (int ch = 0; ch < 3; ++ch) dst[ch] = k < nb ? vco[3 * k + ch] : T(0);
        }
    };
    if (v_campos == nullptr) {
#pragma omp parallel for schedule(static) num_threads(n_threads)
        for (int64_t n = 0; n < N; ++n) one(n, nullptr);
        return;
    }
    chunked_gaussian_sum<T>(N, C * 3, n_threads, one, v_campos);
}

template void sh_colors_fwd<float>(int, const float*, const float*, int64_t, const float*, int64_t, const float*,
                                   int64_t, int64_t, const int32_t*, float*, int);
template void sh_colors_fwd<double>(int, const double*, const double*, int64_t, const double*, int64_t,
                                    const double*, int64_t, int64_t, const int32_t*, double*, int);
template void sh_colors_bwd<float>(int, const float*, const float*, int64_t, const float*, int64_t, const float*,
                                   int64_t, int64_t, const int32_t*, const float*, float*, float*, float*, float*,
                                   int);
template void sh_colors_bwd<double>(int, const double*, const double*, int64_t, const double*, int64_t,
                                    const double*, int64_t, int64_t, const int32_t*, const double*, double*, double*,
                                    double*, double*, int);

}  // namespace cpu_rast
