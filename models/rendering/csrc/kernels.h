// CPU kernels of the tile rasterizer (gsplat's rasterize_to_pixels pipeline), one file per stage:
//   intersect_tile.cpp            (Gaussian, tile) pairs, ordered by (camera, tile, depth)
//   rasterize_to_pixels_fwd.cpp   front-to-back compositing, per-pixel final T and last contributor
//   rasterize_to_pixels_bwd.cpp   back-to-front gradients, reduced per Gaussian in a fixed order
//   ext.cpp                       tensor plumbing and Python bindings
// The kernels take raw pointers (no torch headers) so that only ext.cpp pays for them at build time.
// Every kernel is a template on the floating-point type (float for training, double for gradcheck).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace cpu_rast {

// gsplat's constants (rasterize_to_pixels_fwd.cu / bwd.cu)
constexpr double ALPHA_THRESHOLD = 1.0 / 255.0;
constexpr double MAX_ALPHA = 0.999;
constexpr double T_MIN = 1e-4;

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
                              const T* opacities, const Grid& g);

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

// sigma = 0.5 (a dx^2 + c dy^2) + b dx dy, with d = mean - pixel centre (gsplat's convention)
template <typename T>
inline T gauss_sigma(T a, T b, T c, T dx, T dy) {
    return T(0.5) * (a * dx * dx + c * dy * dy) + b * dx * dy;
}

// A sigma beyond which alpha = o exp(-sigma) < 1/255 for sure: lets the kernels skip exp() for
// pixels far out in a Gaussian's tile; anything closer is decided by gsplat's exact test.
template <typename T>
inline T skip_sigma(T opacity) {
    double o = static_cast<double>(opacity);
    if (!(o > 0.0)) return T(-1);  // every pixel fails the alpha test
    return static_cast<T>(std::log(o / ALPHA_THRESHOLD) + 1e-3);
}

}  // namespace cpu_rast
