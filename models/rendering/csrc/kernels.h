// CPU kernels of the renderer (gsplat's projection and rasterize_to_pixels pipeline), one file per stage:
//   projection_ewa.cpp            EWA projection of 3D Gaussians to 2D (means2d, conics, depths, radii)
//   spherical_harmonics.cpp       view-dependent colours from SH coefficients
//   ssim.cpp                      SSIM of an image against another and its gradient (the photometric loss)
//   envmap.cpp                    the sky's cube map through every pixel of a camera (cameras.sky.model=envmap)
//   colour_affine.cpp             a camera's 3x4 colour transform of a render (cameras.appearance)
//   sugar_frames.cpp              each Gaussian's rotation, neighbour-table row and normal (the sugar regularizers)
//   sugar_density.cpp             SuGaR's density at samples from their neighbours (the sugar stage's regularizers)
//   sugar_normal.cpp              SuGaR's normal regularizer's residual at samples from their neighbours
//   surface_channels.cpp          per-Gaussian camera-frame normal and plane distance (the surface maps' channels)
//   intersect_tile.cpp            (Gaussian, tile) pairs, ordered by (camera, tile, depth)
//   rasterize_to_pixels_fwd.cpp   front-to-back compositing, per-pixel final T and last contributor
//   rasterize_to_pixels_bwd.cpp   back-to-front gradients, reduced per Gaussian in a fixed order
//   ext.cpp                       tensor plumbing and Python bindings
// The kernels take raw pointers (no torch headers) so that only ext.cpp pays for them at build time.
// Every kernel is a template on the floating-point type (float for training, double for gradcheck).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

// The per-Gaussian pixel loops are small functions with restrict-qualified arguments, never inlined
// (inlined into the tile loop GCC does not vectorize them). On x86-64 GCC also builds an AVX2+FMA
// clone of each and picks it at load time where the CPU has it (ifunc), so the build stays portable
// (no -march) yet uses 8-wide vectors on current CPUs. Results are deterministic on a machine; two
// machines with and without AVX2 may differ in the last bits.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define CPU_RAST_SIMD __attribute__((noinline, target_clones("arch=x86-64-v3", "default")))
#else
#define CPU_RAST_SIMD __attribute__((noinline))
#endif

namespace cpu_rast {

// gsplat's constants (rasterize_to_pixels_fwd.cu / bwd.cu)
constexpr double ALPHA_THRESHOLD = 1.0 / 255.0;
constexpr double MAX_ALPHA = 0.999;
constexpr double T_MIN = 1e-4;

// Whether the projection kept entry i of [C, N] (both radii > 0): the Gaussians the intersection pairs
// with tiles, so the only ones the compositing reads
inline bool kept(const int32_t* radii, int64_t i) { return radii[2 * i] > 0 && radii[2 * i + 1] > 0; }

// A sum over Gaussians of per-Gaussian contributions to W values (the cameras' gradients), the same bits for
// any thread count: the Gaussians go in chunks of REDUCE_CHUNK (boundaries fixed by N alone); one thread
// runs a chunk's Gaussians in increasing order, each calling body(n, acc) to add its contribution into the
// chunk's zero-initialised partial acc [W]; out [W] (written) then sums the partials in chunk order.
constexpr int64_t REDUCE_CHUNK = 256;

template <typename T, typename Body>
void chunked_gaussian_sum(int64_t N, int64_t W, int n_threads, Body&& body, T* out) {
    const int64_t n_chunks = (N + REDUCE_CHUNK - 1) / REDUCE_CHUNK;
    std::vector<T> partial(static_cast<size_t>(n_chunks * W), T(0));
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t k = 0; k < n_chunks; ++k) {
        T* acc = partial.data() + k * W;
        const int64_t end = std::min(N, (k + 1) * REDUCE_CHUNK);
        for (int64_t n = k * REDUCE_CHUNK; n < end; ++n) body(n, acc);
    }
    for (int64_t w = 0; w < W; ++w) {
        T s = 0;
        for (int64_t k = 0; k < n_chunks; ++k) s += partial[k * W + w];
        out[w] = s;
    }
}

struct Grid {
    int64_t C, N, width, height, tile, tiles_x, tiles_y;
    int64_t n_tiles() const { return C * tiles_x * tiles_y; }
};

// Projected Gaussians, [C, N, *] contiguous
template <typename T>
struct Splats {
    const T* means2d;    // [C, N, 2]
    const T* conics;     // [C, N, 3]  (a, b, c) of the inverse 2D covariance
    const T* opacities;  // [C, N]
    const T* colors;     // [C, N, D]
    int64_t D;
};

// (Gaussian, tile) pairs: tile t holds flat ids (c * N + n) flat_ids[offsets[t] .. offsets[t + 1])
struct Intersections {
    std::vector<int64_t> offsets;  // [n_tiles + 1]
    std::vector<int32_t> flat_ids;
};

template <typename T>
Intersections intersect_tiles(const T* means2d, const int32_t* radii, const T* depths, const T* conics,
                              const T* opacities, const Grid& g, int n_threads);

// Outputs: colors [C, H, W, D], alphas [C, H, W], last [C, H, W] (number of tile entries a pixel walked
// through up to and including its last contributor; 0 = none). Returns the number of contributing
// (pixel, Gaussian) pairs.
template <typename T>
int64_t rasterize_fwd(const Splats<T>& s, const Grid& g, const int64_t* offsets, const int32_t* flat_ids,
                      T* out_colors, T* out_alphas, int32_t* last, int n_threads);

// Gradients [C, N, *] (zero-initialised by the caller) from v_colors [C, H, W, D], v_alphas [C, H, W].
template <typename T>
void rasterize_bwd(const Splats<T>& s, const Grid& g, const int64_t* offsets, const int32_t* flat_ids,
                   int64_t n_isects, const int32_t* last, const T* v_colors, const T* v_alphas,
                   T* v_means2d, T* v_conics, T* v_colors_out, T* v_opacities, int n_threads);

// EWA projection, [N] Gaussians into [C] cameras (viewmats [C, 4, 4] world->camera, Ks [C, 3, 3]).
// Outputs [C, N, *]: radii (int32, 0 = culled), means2d, depths (camera z), conics, opacities (times the
// antialiasing compensation when asked).
template <typename T>
void project_ewa_fwd(const T* means, const T* quats, const T* scales, const T* opacities, const T* viewmats,
                     const T* Ks, int64_t C, int64_t N, int64_t width, int64_t height, T near, T far, T eps2d,
                     T radius_clip, bool antialiased, int32_t* radii, T* means2d, T* depths, T* conics,
                     T* opac_out, int n_threads);

// Gradients of the projection's differentiable outputs with respect to means, quats, scales, opacities
// (written, not accumulated), summed over the cameras; with v_viewmats (may be null), also the cameras'
// [C, 4, 4] (written; row 3 zero), summed over the Gaussians by chunked_gaussian_sum.
template <typename T>
void project_ewa_bwd(const T* means, const T* quats, const T* scales, const T* opacities, const T* viewmats,
                     const T* Ks, int64_t C, int64_t N, int64_t width, int64_t height, T near, T far, T eps2d,
                     bool antialiased, const T* v_means2d, const T* v_depths, const T* v_conics,
                     const T* v_opac_out, T* v_means, T* v_quats, T* v_scales, T* v_opacities, T* v_viewmats,
                     int n_threads);

// colours [C, N, 3] = max(SH(coefficients) at the unit direction camera centre -> mean + 0.5, 0); the K
// coefficients of Gaussian n are row n of coeffs [N, K0, 3] followed by row n of rest [N, K - K0, 3] (rest unused
// when K0 = K); where radii [C, N, 2] (may be null) mark a Gaussian culled in a camera, its colour there is 0
template <typename T>
void sh_colors_fwd(int degree, const T* means, const T* coeffs, int64_t K0, const T* rest, int64_t K,
                   const T* campos, int64_t C, int64_t N, const int32_t* radii, T* colors, int n_threads);

// v_means [N, 3], v_coeffs [N, K0, 3] and v_rest [N, K - K0, 3], every entry written; where radii (may be
// null) mark a Gaussian culled in a camera (colour 0 there), that entry adds nothing; with v_campos (may be
// null), also the camera centres' [C, 3] (written), summed over the Gaussians by chunked_gaussian_sum
template <typename T>
void sh_colors_bwd(int degree, const T* means, const T* coeffs, int64_t K0, const T* rest, int64_t K,
                   const T* campos, int64_t C, int64_t N, const int32_t* radii, const T* v_colors, T* v_means,
                   T* v_coeffs, T* v_rest, T* v_campos, int n_threads);

// SuGaR density terms [M, K] and β [M] at points [M, 3] from the rows table [N, 14] of neighbours nbr [M, K]
template <typename T>
void sugar_density_fwd(const T* points, const T* table, const int64_t* nbr, int64_t M, int64_t K, T* terms,
                       T* beta, int n_threads);

// v_points [M, 3] and v_table [N, 14] (both written); v_beta may be null
template <typename T>
void sugar_density_bwd(const T* points, const T* table, const int64_t* nbr, int64_t M, int64_t K, int64_t N,
                       const T* v_terms, const T* v_beta, T* v_points, T* v_table, int n_threads);

// Mean SSIM of x against y, both [H, W, C] (ssim.cpp; 11-tap window w, valid filtering), and its filtered
// maps [C, 5, H - 10, W - 10] (written: μx, μy, E[x²], E[y²], E[xy]) for the backward
template <typename T>
T ssim_hwc_fwd(const T* x, const T* y, int64_t H, int64_t W, int64_t C, const T* w, T c1, T c2, T* maps,
               int n_threads);
// v_x [H, W, C] (written) for the gradient v_ssim of the mean
template <typename T>
void ssim_hwc_bwd(const T* x, const T* y, int64_t H, int64_t W, int64_t C, const T* w, T c1, T c2, const T* maps,
                  T v_ssim, T* v_x, int n_threads);

// The sky's colours out [H, W, 3] (written) through the pixel centres of a pinhole camera (rot: its
// camera-to-world rotation, row-major 3x3; K row-major 3x3) from the cube map's colours tex [6, 3, R, R]
// (envmap.cpp); v_tex [6, 3, R, R] (added into) for the colours' gradient v_out
template <typename T>
void envmap_fwd(const T* tex, int64_t R, const T* rot, const T* K, int64_t H, int64_t W, T* out, int n_threads);
template <typename T>
void envmap_bwd(int64_t R, const T* rot, const T* K, int64_t H, int64_t W, const T* v_out, T* v_tex);

// out = M[:, :3] rgb + M[:, 3] per pixel of rgb [H, W, 3] (M row-major 3x4; colour_affine.cpp); the backward
// writes v_rgb [H, W, 3] and v_M [12] for the gradient v_out
template <typename T>
void colour_affine_fwd(const T* rgb, const T* M, int64_t H, int64_t W, T* out, int n_threads);
template <typename T>
void colour_affine_bwd(const T* rgb, const T* M, int64_t H, int64_t W, const T* v_out, T* v_rgb, T* v_M,
                       int n_threads);

// What the sugar regularizers read of each Gaussian (sugar_frames.cpp): rotmats [N, 9], the neighbour table
// [N, 14] and the smallest-scale axes [N, 3] (all written) from means, quaternions, scales and opacities
template <typename T>
void sugar_frames_fwd(const T* means, const T* quats, const T* scales, const T* opacities, int64_t N, T* rotmats,
                      T* table, T* normals, int n_threads);
// v_means, v_quats, v_scales, v_opacities (written) from the gradients of the three outputs (any may be null)
template <typename T>
void sugar_frames_bwd(const T* quats, const T* scales, int64_t N, const T* v_rotmats, const T* v_table,
                      const T* v_normals, T* v_means, T* v_quats, T* v_scales, T* v_opacities, int n_threads);

// SuGaR normal-regularizer residual [M], valid [M], the detached weights w_j s_j [M, K] and r [M, 3] at points
// [M, 3] from table [N, 14] and unit normals [N, 3] of neighbours nbr [M, K] (column 0: the sample's Gaussian)
template <typename T>
void sugar_normal_fwd(const T* points, const T* table, const T* normals, const int64_t* nbr, int64_t M, int64_t K,
                      T* residual, bool* valid, T* coef, T* r, int n_threads);

// v_normals [N, 3] (written) from the gradient of the residual [M]
template <typename T>
void sugar_normal_bwd(const int64_t* nbr, const T* coef, const T* r, const T* v_residual, int64_t M, int64_t K,
                      int64_t N, T* v_normals, int n_threads);

// out [N, 4]: each Gaussian's normal (the axis of its smallest scale) in the camera viewmat [4, 4], turned
// towards the camera, and its plane distance (models/rendering/surface.py: surface_channels)
template <typename T>
void surface_channels_fwd(const T* means, const T* quats, const T* scales, const T* viewmat, int64_t N, T* out,
                          int n_threads);
// v_means [N, 3] and v_quats [N, 4] (written) from v_out [N, 4]
template <typename T>
void surface_channels_bwd(const T* means, const T* quats, const T* scales, const T* viewmat, int64_t N,
                          const T* v_out, T* v_means, T* v_quats, int n_threads);
// The axis (0, 1, 2) of a Gaussian's smallest scale, the first on ties (as torch.argmin): its normal's
template <typename T>
inline int smallest_axis(const T* s) {
    int k = 0;
    if (s[1] < s[k]) k = 1;
    if (s[2] < s[k]) k = 2;
    return k;
}

// α_n exp(-½‖y‖²), y = Σ_i (p − μ_n)_i · B_n[i, :], for a neighbour_table row [14] (SuGaR's density term)
template <typename T>
inline T density_term(const T* p, const T* row) {
    const T d0 = p[0] - row[0], d1 = p[1] - row[1], d2 = p[2] - row[2];
    T q = 0;
    for (int k = 0; k < 3; ++k) {
        const T y = d0 * row[3 + k] + d1 * row[6 + k] + d2 * row[9 + k];
        q += y * y;
    }
    return row[12] * std::exp(T(-0.5) * q);
}

// The P = M x K (sample, neighbour) pairs grouped by Gaussian id, in increasing pair order within each
// (a stable counting sort): Gaussian n's pairs are order[start[n] .. start[n + 1]). The SuGaR backwards
// sum each Gaussian's gradient over them in this fixed order: the same bytes for any thread count.
inline void pairs_by_gaussian(const int64_t* nbr, int64_t P, int64_t N, std::vector<int64_t>& start,
                              std::vector<int64_t>& order) {
    start.assign(static_cast<size_t>(N) + 1, 0);
    order.resize(static_cast<size_t>(P));
    for (int64_t e = 0; e < P; ++e) ++start[nbr[e] + 1];
    for (int64_t n = 0; n < N; ++n) start[n + 1] += start[n];
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t e = 0; e < P; ++e) order[fill[nbr[e]]++] = e;
}

// sigma = 0.5 (a dx^2 + c dy^2) + b dx dy, with d = mean - pixel centre (gsplat's convention)
template <typename T>
inline T gauss_sigma(T a, T b, T c, T dx, T dy) {
    return T(0.5) * (a * dx * dx + c * dy * dy) + b * dx * dy;
}

// exp for the pixel loops. float: a branch-free Cephes-style polynomial (range reduction to
// [-ln2/2, ln2/2], degree-6 polynomial, 2^n from the exponent bits; about 1 ulp from expf) that the
// compiler vectorizes over a tile's pixels, which libm's expf prevents. double (gradcheck): libm.
inline float fast_exp(float x) {
    x = std::min(std::max(x, -80.0f), 80.0f);  // exp(-80) * (o >= 1/255) stays a normal float: no slow denormals
    const float shift = 12582912.0f;  // 1.5 * 2^23: adding it rounds to the nearest integer
    const float t = x * 1.44269504088896341f + shift;
    const float n = t - shift;
    float r = x - n * 0.693359375f;   // ln 2 split in two for an exact product with n
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float y = p * r * r + r + 1.0f;
    const int32_t e = (static_cast<int32_t>(n) + 127) << 23;
    float scale;
    __builtin_memcpy(&scale, &e, sizeof(scale));
    return y * scale;
}
inline double fast_exp(double x) { return std::exp(x); }

// The pixel rows of a tile (rows of `ts` pixels from y0, centres at y + 0.5) where a Gaussian can reach
// alpha >= 1/255, as the entry range [q0, q1) of the tile's row-major pixels; empty where it reaches none.
// alpha = o exp(-sigma) >= 1/255 needs sigma <= log(255 o); over a row at offset dy the least sigma is
// dy^2 det / (2 a) (det = a c - b^2), so only rows with dy^2 <= 2 log(255 o) a / det can contribute. The
// bound is widened by 1 % and one pixel against rounding; the pixel loops then skip the other rows, whose
// terms are exact zeros (a typical Gaussian of a large scene spans 3-5 of a tile's 8 rows).
template <typename T>
inline void contributing_rows(T my, T a, T b, T c, T o, int64_t y0, int64_t ts, int64_t& q0, int64_t& q1) {
    T lim = T(2) * std::log(o * static_cast<T>(1.0 / ALPHA_THRESHOLD));
    const T det = a * c - b * b;
    if (!(lim >= T(-1e-3))) {  // o clearly below 1/255 (or NaN): alpha never reaches the threshold
        q0 = q1 = 0;
        return;
    }
    lim = std::max(lim, T(0));
    int64_t r0 = 0, r1 = ts;
    if (det > T(0) && a > T(0) && std::isfinite(det)) {
        const T ext = std::sqrt(lim * a / det) * T(1.01) + T(1);
        const T lo = std::ceil(my - ext - T(0.5) - static_cast<T>(y0));   // first row with centre >= my - ext
        const T hi = std::floor(my + ext - T(0.5) - static_cast<T>(y0));  // last row with centre <= my + ext
        r0 = lo <= T(0) ? 0 : (lo >= static_cast<T>(ts) ? ts : static_cast<int64_t>(lo));
        r1 = hi < T(0) ? 0 : (hi >= static_cast<T>(ts - 1) ? ts : static_cast<int64_t>(hi) + 1);
        if (r1 < r0) r1 = r0;
    }
    q0 = r0 * ts;
    q1 = r1 * ts;
}

// A tile's Gaussians gathered contiguously (structure of arrays), in the tile's depth order.
template <typename T>
struct TileSplats {
    std::vector<T> buf;
    T *mx, *my, *ca, *cb, *cc, *op, *col;  // col: [n, D]
    int64_t n;
    TileSplats(const Splats<T>& s, const int32_t* ids, int64_t n_) : buf(n_ * (6 + s.D)), n(n_) {
        mx = buf.data(); my = mx + n; ca = my + n; cb = ca + n; cc = cb + n; op = cc + n; col = op + n;
        for (int64_t k = 0; k < n; ++k) {
            const int64_t i = ids[k];
            mx[k] = s.means2d[2 * i];
            my[k] = s.means2d[2 * i + 1];
            ca[k] = s.conics[3 * i];
            cb[k] = s.conics[3 * i + 1];
            cc[k] = s.conics[3 * i + 2];
            op[k] = s.opacities[i];
            for (int64_t d = 0; d < s.D; ++d) col[k * s.D + d] = s.colors[i * s.D + d];
        }
    }
};

// Pixel centres of a tile, row-major; pixels outside the image are flagged (they never composite).
template <typename T>
struct TilePixels {
    int64_t P, x0, y0, ts;
    std::vector<T> fx, fy;
    std::vector<unsigned char> inside;
    TilePixels(int64_t tx, int64_t ty, int64_t ts_, int64_t width, int64_t height)
        : P(ts_ * ts_), x0(tx * ts_), y0(ty * ts_), ts(ts_), fx(P), fy(P), inside(P) {
        for (int64_t q = 0; q < P; ++q) {
            const int64_t x = x0 + q % ts, y = y0 + q / ts;
            fx[q] = static_cast<T>(x) + T(0.5);
            fy[q] = static_cast<T>(y) + T(0.5);
            inside[q] = (x < width && y < height) ? 1 : 0;
        }
    }
    int64_t pixel(int64_t c, int64_t q, int64_t width, int64_t height) const {
        return (c * height + y0 + q / ts) * width + x0 + q % ts;
    }
};

}  // namespace cpu_rast
