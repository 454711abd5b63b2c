// Python bindings of the CPU tile rasterizer: checks, tensor allocation and dtype dispatch.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <cstring>

#include "kernels.h"

namespace {

using cpu_rast::Grid;

void check_splats(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& opacities) {
    TORCH_CHECK(means2d.device().is_cpu(), "cpu rasterizer: tensors must be on the CPU");
    TORCH_CHECK(means2d.dim() == 3 && means2d.size(2) == 2, "means2d must be [C, N, 2]");
    const auto C = means2d.size(0), N = means2d.size(1);
    TORCH_CHECK(conics.sizes() == at::IntArrayRef({C, N, 3}), "conics must be [C, N, 3]");
    TORCH_CHECK(opacities.sizes() == at::IntArrayRef({C, N}), "opacities must be [C, N]");
    TORCH_CHECK(C * N < (int64_t(1) << 31), "too many Gaussians x cameras for int32 ids");
    for (const auto* t : {&means2d, &conics, &opacities}) {
        TORCH_CHECK(t->is_contiguous() && t->scalar_type() == means2d.scalar_type(),
                    "cpu rasterizer: inputs must be contiguous and of one floating type");
    }
    TORCH_CHECK(means2d.scalar_type() == at::kFloat || means2d.scalar_type() == at::kDouble,
                "cpu rasterizer: float32 or float64 tensors expected");
}

Grid make_grid(const at::Tensor& means2d, int64_t width, int64_t height, int64_t tile) {
    TORCH_CHECK(width > 0 && height > 0 && tile > 0, "width, height and tile size must be positive");
    return Grid{means2d.size(0), means2d.size(1), width, height, tile, (width + tile - 1) / tile,
                (height + tile - 1) / tile};
}

template <typename T>
cpu_rast::Splats<T> splats(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                           const at::Tensor& opacities) {
    return {means2d.data_ptr<T>(), conics.data_ptr<T>(), opacities.data_ptr<T>(), colors.data_ptr<T>(),
            colors.size(2)};
}

void check_colors(const at::Tensor& colors, const at::Tensor& means2d) {
    TORCH_CHECK(colors.dim() == 3 && colors.size(0) == means2d.size(0) && colors.size(1) == means2d.size(1),
                "colors must be [C, N, D]");
    TORCH_CHECK(colors.is_contiguous() && colors.scalar_type() == means2d.scalar_type(),
                "colors must be contiguous and of the means' type");
}

std::vector<at::Tensor> intersect_tiles(const at::Tensor& means2d, const at::Tensor& radii,
                                        const at::Tensor& depths, const at::Tensor& conics,
                                        const at::Tensor& opacities, int64_t width, int64_t height, int64_t tile) {
    check_splats(means2d, conics, opacities);
    TORCH_CHECK(radii.scalar_type() == at::kInt && radii.is_contiguous() && radii.sizes() == means2d.sizes(),
                "radii must be contiguous int32 [C, N, 2]");
    TORCH_CHECK(depths.is_contiguous() && depths.sizes() == opacities.sizes() &&
                depths.scalar_type() == means2d.scalar_type(), "depths must be contiguous [C, N]");
    const Grid g = make_grid(means2d, width, height, tile);
    cpu_rast::Intersections isect;
    AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "intersect_tiles", [&] {
        isect = cpu_rast::intersect_tiles<scalar_t>(means2d.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(),
                                                    depths.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(),
                                                    opacities.data_ptr<scalar_t>(), g);
    });
    auto offsets = at::empty({static_cast<int64_t>(isect.offsets.size())}, at::kLong);
    std::memcpy(offsets.data_ptr<int64_t>(), isect.offsets.data(), isect.offsets.size() * sizeof(int64_t));
    auto ids = at::empty({static_cast<int64_t>(isect.flat_ids.size())}, at::kInt);
    if (!isect.flat_ids.empty())
        std::memcpy(ids.data_ptr<int32_t>(), isect.flat_ids.data(), isect.flat_ids.size() * sizeof(int32_t));
    return {offsets, ids};
}

void check_isect(const at::Tensor& offsets, const at::Tensor& flat_ids, const Grid& g) {
    TORCH_CHECK(offsets.scalar_type() == at::kLong && offsets.is_contiguous() && offsets.numel() == g.n_tiles() + 1,
                "tile offsets must be contiguous int64 [n_tiles + 1]");
    TORCH_CHECK(flat_ids.scalar_type() == at::kInt && flat_ids.is_contiguous(), "flat ids must be contiguous int32");
}

std::vector<at::Tensor> rasterize_fwd(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                                      const at::Tensor& opacities, const at::Tensor& offsets,
                                      const at::Tensor& flat_ids, int64_t width, int64_t height, int64_t tile) {
    check_splats(means2d, conics, opacities);
    check_colors(colors, means2d);
    const Grid g = make_grid(means2d, width, height, tile);
    check_isect(offsets, flat_ids, g);
    const auto opts = means2d.options();
    auto out_colors = at::empty({g.C, height, width, colors.size(2)}, opts);
    auto out_alphas = at::empty({g.C, height, width, 1}, opts);
    auto last = at::empty({g.C, height, width}, opts.dtype(at::kInt));
    int64_t n_pairs = 0;
    AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "rasterize_fwd", [&] {
        n_pairs = cpu_rast::rasterize_fwd<scalar_t>(splats<scalar_t>(means2d, conics, colors, opacities), g,
                                                    offsets.data_ptr<int64_t>(), flat_ids.data_ptr<int32_t>(),
                                                    out_colors.data_ptr<scalar_t>(), out_alphas.data_ptr<scalar_t>(),
                                                    last.data_ptr<int32_t>(), at::get_num_threads());
    });
    return {out_colors, out_alphas, last, at::scalar_tensor(n_pairs, at::kLong)};
}

std::vector<at::Tensor> rasterize_bwd(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                                      const at::Tensor& opacities, const at::Tensor& offsets,
                                      const at::Tensor& flat_ids, int64_t width, int64_t height, int64_t tile,
                                      const at::Tensor& last, const at::Tensor& v_colors, const at::Tensor& v_alphas) {
    check_splats(means2d, conics, opacities);
    check_colors(colors, means2d);
    const Grid g = make_grid(means2d, width, height, tile);
    check_isect(offsets, flat_ids, g);
    TORCH_CHECK(last.scalar_type() == at::kInt && last.is_contiguous() && last.numel() == g.C * height * width,
                "last contributor ids must be int32 [C, H, W]");
    auto vc = v_colors.contiguous().to(means2d.scalar_type());
    auto va = v_alphas.contiguous().to(means2d.scalar_type());
    TORCH_CHECK(vc.numel() == g.C * height * width * colors.size(2) && va.numel() == g.C * height * width,
                "gradient shapes do not match the render");
    auto v_means2d = at::zeros_like(means2d);
    auto v_conics = at::zeros_like(conics);
    auto v_col = at::zeros_like(colors);
    auto v_opac = at::zeros_like(opacities);
    AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "rasterize_bwd", [&] {
        cpu_rast::rasterize_bwd<scalar_t>(splats<scalar_t>(means2d, conics, colors, opacities), g,
                                          offsets.data_ptr<int64_t>(), flat_ids.data_ptr<int32_t>(), flat_ids.numel(),
                                          last.data_ptr<int32_t>(), vc.data_ptr<scalar_t>(), va.data_ptr<scalar_t>(),
                                          v_means2d.data_ptr<scalar_t>(), v_conics.data_ptr<scalar_t>(),
                                          v_col.data_ptr<scalar_t>(), v_opac.data_ptr<scalar_t>(),
                                          at::get_num_threads());
    });
    return {v_means2d, v_conics, v_col, v_opac};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "Deterministic CPU tile rasterizer (gsplat's rasterize_to_pixels pipeline)";
    m.def("intersect_tiles", &intersect_tiles, "(Gaussian, tile) pairs ordered by (camera, tile, depth)");
    m.def("rasterize_fwd", &rasterize_fwd, "front-to-back compositing");
    m.def("rasterize_bwd", &rasterize_bwd, "back-to-front gradients");
}
