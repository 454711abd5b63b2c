// Stage 1: (Gaussian, tile) intersections, ordered by (camera, tile, depth) as gsplat's
// isect_tiles + radix sort order them (equal depths keep the Gaussian index order).
// A pair is kept when the tile's pixel-centre rectangle meets the ellipse alpha >= 1/255; the
// opacity-aware radii of the projection bound that ellipse, so no contributing pixel is missed.
#include <algorithm>
#include <numeric>
#include <utility>

#include "kernels.h"

namespace cpu_rast {

namespace {

inline int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

// min over the rectangle [x0, x1] x [y0, y1] (offsets pixel centre - mean) of the quadratic form
// a x^2 + 2 b x y + c y^2; the minimum of a convex form over a rectangle not containing 0 lies on an edge
template <typename T>
T rect_min_quadratic(T a, T b, T c, T x0, T x1, T y0, T y1) {
    if (x0 <= 0 && x1 >= 0 && y0 <= 0 && y1 >= 0) return T(0);
    T best = INFINITY;
    for (T dx : {x0, x1}) {
        T dy = std::min(std::max(-b * dx / c, y0), y1);
        best = std::min(best, a * dx * dx + 2 * b * dx * dy + c * dy * dy);
    }
    for (T dy : {y0, y1}) {
        T dx = std::min(std::max(-b * dy / a, x0), x1);
        best = std::min(best, a * dx * dx + 2 * b * dx * dy + c * dy * dy);
    }
    return best;
}

// A sort key whose unsigned order is the order of the value (any sign; depths of kept Gaussians are
// > near > 0, but the key does not rely on it): flip all bits of negatives, the sign bit of the rest.
inline uint32_t order_key(float v) {
    uint32_t u;
    __builtin_memcpy(&u, &v, sizeof(u));
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
inline uint64_t order_key(double v) {
    uint64_t u;
    __builtin_memcpy(&u, &v, sizeof(u));
    return (u & 0x8000000000000000ull) ? ~u : (u | 0x8000000000000000ull);
}

// The kept Gaussians of one camera in (depth, index) order: the order of a stable sort by depth.
// float: an LSD radix sort of the 32-bit keys, one byte per pass (stable, and the input is in index
// order, so ties keep the index order); double (gradcheck): std::sort of (key, index) pairs.
inline void sort_by_key(std::vector<std::pair<uint32_t, int32_t>>& keyed) {
    std::vector<std::pair<uint32_t, int32_t>> tmp(keyed.size());
    for (int shift = 0; shift < 32; shift += 8) {
        size_t count[257] = {0};
        for (const auto& e : keyed) ++count[((e.first >> shift) & 0xFF) + 1];
        if (count[((keyed.empty() ? 0 : keyed[0].first >> shift) & 0xFF) + 1] == keyed.size()) continue;  // one bucket
        for (int b = 0; b < 256; ++b) count[b + 1] += count[b];
        for (const auto& e : keyed) tmp[count[(e.first >> shift) & 0xFF]++] = e;
        keyed.swap(tmp);
    }
}
inline void sort_by_key(std::vector<std::pair<uint64_t, int32_t>>& keyed) { std::sort(keyed.begin(), keyed.end()); }

template <typename T>
void depth_order(const int32_t* radii, const T* depths, int64_t c, int64_t N, std::vector<int32_t>& order) {
    std::vector<std::pair<decltype(order_key(T(0))), int32_t>> keyed;
    keyed.reserve(static_cast<size_t>(N));
    for (int64_t n = 0; n < N; ++n) {
        const int64_t i = c * N + n;
        if (kept(radii, i)) keyed.emplace_back(order_key(depths[i]), static_cast<int32_t>(i));
    }
    sort_by_key(keyed);
    order.resize(keyed.size());
    for (size_t k = 0; k < keyed.size(); ++k) order[k] = keyed[k].second;
}

}  // namespace

template <typename T>
Intersections intersect_tiles(const T* means2d, const int32_t* radii, const T* depths, const T* conics,
                              const T* opacities, const Grid& g, int n_threads) {
    const int64_t ts = g.tile, tw = g.tiles_x, th = g.tiles_y;
    n_threads = std::max(n_threads, 1);
    // Each thread walks one contiguous range of the depth order into its own lists; the lists are
    // then joined in range order, so the pair sequence is the serial one for any thread count.
    std::vector<std::vector<int64_t>> chunk_tile(n_threads);
    std::vector<std::vector<int32_t>> chunk_id(n_threads);
    std::vector<int64_t> pair_tile;
    std::vector<int32_t> pair_id;
    std::vector<int32_t> order;
    for (int64_t c = 0; c < g.C; ++c) {
        depth_order(radii, depths, c, g.N, order);
        const int64_t n_kept = static_cast<int64_t>(order.size());
#pragma omp parallel for schedule(static, 1) num_threads(n_threads)
        for (int r = 0; r < n_threads; ++r) {
            std::vector<int64_t>& out_tile = chunk_tile[r];
            std::vector<int32_t>& out_id = chunk_id[r];
            out_tile.clear();
            out_id.clear();
            for (int64_t k = n_kept * r / n_threads; k < n_kept * (r + 1) / n_threads; ++k) {
                const int32_t i = order[k];
                const T mx = means2d[2 * i], my = means2d[2 * i + 1];
                const T rx = static_cast<T>(radii[2 * i]), ry = static_cast<T>(radii[2 * i + 1]);
                // pixels whose centre lies within mean +- radius, then the tiles holding them
                const int64_t px0 = std::max<int64_t>(0, static_cast<int64_t>(std::ceil(mx - rx - T(0.5))));
                const int64_t py0 = std::max<int64_t>(0, static_cast<int64_t>(std::ceil(my - ry - T(0.5))));
                const int64_t px1 = std::min<int64_t>(g.width - 1, static_cast<int64_t>(std::floor(mx - T(0.5) + rx)));
                const int64_t py1 = std::min<int64_t>(g.height - 1, static_cast<int64_t>(std::floor(my - T(0.5) + ry)));
                const int64_t tx0 = floor_div(px0, ts), ty0 = floor_div(py0, ts);
                const int64_t tx1 = floor_div(px1, ts), ty1 = floor_div(py1, ts);
                const T a = conics[3 * i], b = conics[3 * i + 1], cc = conics[3 * i + 2];
                const T o = opacities[i];
                const T lim = T(2) * std::log(std::max(o / static_cast<T>(ALPHA_THRESHOLD), T(1)));
                const T tol = lim * T(1e-4) + T(1e-4);
                for (int64_t ty = ty0; ty <= ty1; ++ty) {
                    const T y0 = static_cast<T>(ty * ts) + T(0.5) - my, y1 = y0 + static_cast<T>(ts - 1);
                    for (int64_t tx = tx0; tx <= tx1; ++tx) {
                        const T x0 = static_cast<T>(tx * ts) + T(0.5) - mx, x1 = x0 + static_cast<T>(ts - 1);
                        if (rect_min_quadratic(a, b, cc, x0, x1, y0, y1) <= lim + tol) {
                            out_tile.push_back((c * th + ty) * tw + tx);
                            out_id.push_back(i);
                        }
                    }
                }
            }
        }
        for (int r = 0; r < n_threads; ++r) {
            pair_tile.insert(pair_tile.end(), chunk_tile[r].begin(), chunk_tile[r].end());
            pair_id.insert(pair_id.end(), chunk_id[r].begin(), chunk_id[r].end());
        }
    }
    // stable counting sort by tile: (camera, depth) order within each tile
    Intersections out;
    const int64_t n_tiles = g.n_tiles();
    out.offsets.assign(n_tiles + 1, 0);
    for (int64_t t : pair_tile) out.offsets[t + 1]++;
    std::partial_sum(out.offsets.begin(), out.offsets.end(), out.offsets.begin());
    out.flat_ids.resize(pair_id.size());
    std::vector<int64_t> fill(out.offsets.begin(), out.offsets.end() - 1);
    for (size_t k = 0; k < pair_id.size(); ++k) out.flat_ids[fill[pair_tile[k]]++] = pair_id[k];
    return out;
}

template Intersections intersect_tiles<float>(const float*, const int32_t*, const float*, const float*,
                                              const float*, const Grid&, int);
template Intersections intersect_tiles<double>(const double*, const int32_t*, const double*, const double*,
                                               const double*, const Grid&, int);

}  // namespace cpu_rast
