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
                                                    opacities.data_ptr<scalar_t>(), g, at::get_num_threads());
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

void check_gaussians(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                     const at::Tensor& opacities, const at::Tensor& viewmats, const at::Tensor& Ks) {
    TORCH_CHECK(means.device().is_cpu(), "cpu projection: tensors must be on the CPU");
    TORCH_CHECK(means.scalar_type() == at::kFloat || means.scalar_type() == at::kDouble,
                "cpu projection: float32 or float64 tensors expected");
    const auto N = means.size(0), C = viewmats.size(0);
    TORCH_CHECK(means.sizes() == at::IntArrayRef({N, 3}) && quats.sizes() == at::IntArrayRef({N, 4}) &&
                scales.sizes() == at::IntArrayRef({N, 3}) && opacities.sizes() == at::IntArrayRef({N}),
                "cpu projection: means [N,3], quats [N,4], scales [N,3], opacities [N] expected");
    TORCH_CHECK(viewmats.sizes() == at::IntArrayRef({C, 4, 4}) && Ks.sizes() == at::IntArrayRef({C, 3, 3}),
                "cpu projection: viewmats [C,4,4] and Ks [C,3,3] expected");
    for (const auto* t : {&means, &quats, &scales, &opacities, &viewmats, &Ks}) {
        TORCH_CHECK(t->is_contiguous() && t->scalar_type() == means.scalar_type(),
                    "cpu projection: inputs must be contiguous and of one floating type");
    }
}

std::vector<at::Tensor> project_fwd(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                                    const at::Tensor& opacities, const at::Tensor& viewmats, const at::Tensor& Ks,
                                    int64_t width, int64_t height, double near, double far, double eps2d,
                                    double radius_clip, bool antialiased) {
    check_gaussians(means, quats, scales, opacities, viewmats, Ks);
    const auto N = means.size(0), C = viewmats.size(0);
    const auto opts = means.options();
    auto radii = at::empty({C, N, 2}, opts.dtype(at::kInt));
    auto means2d = at::empty({C, N, 2}, opts);
    auto depths = at::empty({C, N}, opts);
    auto conics = at::empty({C, N, 3}, opts);
    auto opac = at::empty({C, N}, opts);
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_fwd", [&] {
        cpu_rast::project_ewa_fwd<scalar_t>(
            means.data_ptr<scalar_t>(), quats.data_ptr<scalar_t>(), scales.data_ptr<scalar_t>(),
            opacities.data_ptr<scalar_t>(), viewmats.data_ptr<scalar_t>(), Ks.data_ptr<scalar_t>(), C, N, width, height,
            static_cast<scalar_t>(near), static_cast<scalar_t>(far), static_cast<scalar_t>(eps2d),
            static_cast<scalar_t>(radius_clip), antialiased, radii.data_ptr<int32_t>(), means2d.data_ptr<scalar_t>(),
            depths.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(), opac.data_ptr<scalar_t>(), at::get_num_threads());
    });
    return {radii, means2d, depths, conics, opac};
}

at::Tensor grad_or_zeros(const at::Tensor& g, at::IntArrayRef shape, const at::TensorOptions& opts) {
    if (!g.defined()) return at::zeros(shape, opts);
    TORCH_CHECK(g.sizes() == shape, "cpu projection: gradient of the wrong shape");
    return g.contiguous().to(opts.dtype());
}

std::vector<at::Tensor> project_bwd(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                                    const at::Tensor& opacities, const at::Tensor& viewmats, const at::Tensor& Ks,
                                    int64_t width, int64_t height, double near, double far, double eps2d,
                                    bool antialiased, const c10::optional<at::Tensor>& v_means2d,
                                    const c10::optional<at::Tensor>& v_depths,
                                    const c10::optional<at::Tensor>& v_conics,
                                    const c10::optional<at::Tensor>& v_opac, bool viewmat_grad) {
    check_gaussians(means, quats, scales, opacities, viewmats, Ks);
    const auto N = means.size(0), C = viewmats.size(0);
    const auto opts = means.options();
    auto vm2 = grad_or_zeros(v_means2d.value_or(at::Tensor()), {C, N, 2}, opts);
    auto vd = grad_or_zeros(v_depths.value_or(at::Tensor()), {C, N}, opts);
    auto vcon = grad_or_zeros(v_conics.value_or(at::Tensor()), {C, N, 3}, opts);
    auto vop = grad_or_zeros(v_opac.value_or(at::Tensor()), {C, N}, opts);
    auto g_means = at::empty({N, 3}, opts), g_quats = at::empty({N, 4}, opts), g_scales = at::empty({N, 3}, opts),
         g_opac = at::empty({N}, opts);
    auto g_viewmats = viewmat_grad ? at::empty({C, 4, 4}, opts) : at::Tensor();
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_bwd", [&] {
        cpu_rast::project_ewa_bwd<scalar_t>(
            means.data_ptr<scalar_t>(), quats.data_ptr<scalar_t>(), scales.data_ptr<scalar_t>(),
            opacities.data_ptr<scalar_t>(), viewmats.data_ptr<scalar_t>(), Ks.data_ptr<scalar_t>(), C, N, width, height,
            static_cast<scalar_t>(near), static_cast<scalar_t>(far), static_cast<scalar_t>(eps2d), antialiased,
            vm2.data_ptr<scalar_t>(), vd.data_ptr<scalar_t>(), vcon.data_ptr<scalar_t>(), vop.data_ptr<scalar_t>(),
            g_means.data_ptr<scalar_t>(), g_quats.data_ptr<scalar_t>(), g_scales.data_ptr<scalar_t>(),
            g_opac.data_ptr<scalar_t>(), viewmat_grad ? g_viewmats.data_ptr<scalar_t>() : nullptr,
            at::get_num_threads());
    });
    if (viewmat_grad) return {g_means, g_quats, g_scales, g_opac, g_viewmats};
    return {g_means, g_quats, g_scales, g_opac};
}

void check_surface(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                   const at::Tensor& viewmat) {
    TORCH_CHECK(means.device().is_cpu(), "cpu surface channels: tensors must be on the CPU");
    TORCH_CHECK(means.scalar_type() == at::kFloat || means.scalar_type() == at::kDouble,
                "cpu surface channels: float32 or float64 tensors expected");
    const auto N = means.size(0);
    TORCH_CHECK(means.sizes() == at::IntArrayRef({N, 3}) && quats.sizes() == at::IntArrayRef({N, 4}) &&
                scales.sizes() == at::IntArrayRef({N, 3}) && viewmat.sizes() == at::IntArrayRef({4, 4}),
                "cpu surface channels: means [N,3], quats [N,4], scales [N,3], viewmat [4,4] expected");
    for (const auto* t : {&means, &quats, &scales, &viewmat}) {
        TORCH_CHECK(t->is_contiguous() && t->scalar_type() == means.scalar_type(),
                    "cpu surface channels: inputs must be contiguous and of one floating type");
    }
}

at::Tensor surface_fwd(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                       const at::Tensor& viewmat) {
    check_surface(means, quats, scales, viewmat);
    auto out = at::empty({means.size(0), 4}, means.options());
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "surface_fwd", [&] {
        cpu_rast::surface_channels_fwd<scalar_t>(means.data_ptr<scalar_t>(), quats.data_ptr<scalar_t>(),
                                                 scales.data_ptr<scalar_t>(), viewmat.data_ptr<scalar_t>(),
                                                 means.size(0), out.data_ptr<scalar_t>(), at::get_num_threads());
    });
    return out;
}

std::vector<at::Tensor> surface_bwd(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                                    const at::Tensor& viewmat, const at::Tensor& v_out) {
    check_surface(means, quats, scales, viewmat);
    const auto N = means.size(0);
    TORCH_CHECK(v_out.sizes() == at::IntArrayRef({N, 4}), "cpu surface channels: gradient [N,4] expected");
    auto vo = v_out.contiguous().to(means.scalar_type());
    auto g_means = at::empty({N, 3}, means.options()), g_quats = at::empty({N, 4}, means.options());
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "surface_bwd", [&] {
        cpu_rast::surface_channels_bwd<scalar_t>(means.data_ptr<scalar_t>(), quats.data_ptr<scalar_t>(),
                                                 scales.data_ptr<scalar_t>(), viewmat.data_ptr<scalar_t>(), N,
                                                 vo.data_ptr<scalar_t>(), g_means.data_ptr<scalar_t>(),
                                                 g_quats.data_ptr<scalar_t>(), at::get_num_threads());
    });
    return {g_means, g_quats};
}

void check_ssim(const at::Tensor& x, const at::Tensor& y, const at::Tensor& window) {
    TORCH_CHECK(x.device().is_cpu() && x.dim() == 3 && x.is_contiguous() && y.sizes() == x.sizes() &&
                    y.is_contiguous() && y.scalar_type() == x.scalar_type(),
                "cpu ssim: two contiguous [H,W,C] images of one dtype on the CPU expected");
    TORCH_CHECK(x.size(0) >= 11 && x.size(1) >= 11, "cpu ssim: images of at least 11x11 pixels expected");
    TORCH_CHECK(window.numel() == 11 && window.is_contiguous() && window.scalar_type() == x.scalar_type(),
                "cpu ssim: an 11-tap window of the images' dtype expected");
}

std::vector<at::Tensor> ssim_fwd(const at::Tensor& x, const at::Tensor& y, const at::Tensor& window, double c1,
                                 double c2) {
    check_ssim(x, y, window);
    const auto H = x.size(0), W = x.size(1), C = x.size(2);
    auto maps = at::empty({C, 5, H - 10, W - 10}, x.options());
    auto value = at::empty({}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ssim_fwd", [&] {
        value.fill_(cpu_rast::ssim_hwc_fwd<scalar_t>(x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), H, W, C,
                                                     window.data_ptr<scalar_t>(), static_cast<scalar_t>(c1),
                                                     static_cast<scalar_t>(c2), maps.data_ptr<scalar_t>(),
                                                     at::get_num_threads()));
    });
    return {value, maps};
}

at::Tensor ssim_bwd(const at::Tensor& x, const at::Tensor& y, const at::Tensor& window, double c1, double c2,
                    const at::Tensor& maps, const at::Tensor& v_ssim) {
    check_ssim(x, y, window);
    const auto H = x.size(0), W = x.size(1), C = x.size(2);
    TORCH_CHECK(maps.sizes() == at::IntArrayRef({C, 5, H - 10, W - 10}) && maps.is_contiguous(),
                "cpu ssim: the forward's maps expected");
    auto v_x = at::empty_like(x);
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ssim_bwd", [&] {
        cpu_rast::ssim_hwc_bwd<scalar_t>(x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), H, W, C,
                                         window.data_ptr<scalar_t>(), static_cast<scalar_t>(c1),
                                         static_cast<scalar_t>(c2), maps.data_ptr<scalar_t>(),
                                         v_ssim.item<scalar_t>(), v_x.data_ptr<scalar_t>(), at::get_num_threads());
    });
    return v_x;
}

void check_envmap(const at::Tensor& tex, const at::Tensor& rot, const at::Tensor& K) {
    TORCH_CHECK(tex.device().is_cpu() && tex.dim() == 4 && tex.size(0) == 6 && tex.size(1) == 3 &&
                    tex.size(2) == tex.size(3) && tex.size(2) >= 1 && tex.is_contiguous(),
                "cpu envmap: a contiguous cube map [6, 3, R, R] on the CPU expected");
    TORCH_CHECK(rot.sizes() == at::IntArrayRef({3, 3}) && K.sizes() == at::IntArrayRef({3, 3}) && rot.is_contiguous() &&
                    K.is_contiguous() && rot.scalar_type() == tex.scalar_type() && K.scalar_type() == tex.scalar_type(),
                "cpu envmap: a contiguous 3x3 rotation and 3x3 K of the cube map's dtype expected");
}

at::Tensor envmap_fwd(const at::Tensor& tex, const at::Tensor& rot, const at::Tensor& K, int64_t width, int64_t height) {
    check_envmap(tex, rot, K);
    auto out = at::empty({height, width, 3}, tex.options());
    AT_DISPATCH_FLOATING_TYPES(tex.scalar_type(), "envmap_fwd", [&] {
        cpu_rast::envmap_fwd<scalar_t>(tex.data_ptr<scalar_t>(), tex.size(2), rot.data_ptr<scalar_t>(),
                                       K.data_ptr<scalar_t>(), height, width, out.data_ptr<scalar_t>(),
                                       at::get_num_threads());
    });
    return out;
}

at::Tensor envmap_bwd(const at::Tensor& tex, const at::Tensor& rot, const at::Tensor& K, const at::Tensor& v_out) {
    check_envmap(tex, rot, K);
    TORCH_CHECK(v_out.dim() == 3 && v_out.size(2) == 3 && v_out.is_contiguous() &&
                    v_out.scalar_type() == tex.scalar_type(),
                "cpu envmap: a contiguous [H, W, 3] gradient of the colours expected");
    auto v_tex = at::zeros_like(tex);
    AT_DISPATCH_FLOATING_TYPES(tex.scalar_type(), "envmap_bwd", [&] {
        cpu_rast::envmap_bwd<scalar_t>(tex.size(2), rot.data_ptr<scalar_t>(),
                                       K.data_ptr<scalar_t>(), v_out.size(0), v_out.size(1),
                                       v_out.data_ptr<scalar_t>(), v_tex.data_ptr<scalar_t>());
    });
    return v_tex;
}

void check_colour_affine(const at::Tensor& rgb, const at::Tensor& M) {
    TORCH_CHECK(rgb.device().is_cpu() && rgb.dim() == 3 && rgb.size(2) == 3 && rgb.is_contiguous(),
                "cpu colour affine: a contiguous [H, W, 3] image on the CPU expected");
    TORCH_CHECK(M.sizes() == at::IntArrayRef({3, 4}) && M.is_contiguous() && M.scalar_type() == rgb.scalar_type(),
                "cpu colour affine: a contiguous 3x4 matrix of the image's dtype expected");
}

at::Tensor colour_affine_fwd(const at::Tensor& rgb, const at::Tensor& M) {
    check_colour_affine(rgb, M);
    auto out = at::empty_like(rgb);
    AT_DISPATCH_FLOATING_TYPES(rgb.scalar_type(), "colour_affine_fwd", [&] {
        cpu_rast::colour_affine_fwd<scalar_t>(rgb.data_ptr<scalar_t>(), M.data_ptr<scalar_t>(), rgb.size(0),
                                              rgb.size(1), out.data_ptr<scalar_t>(), at::get_num_threads());
    });
    return out;
}

std::vector<at::Tensor> colour_affine_bwd(const at::Tensor& rgb, const at::Tensor& M, const at::Tensor& v_out) {
    check_colour_affine(rgb, M);
    TORCH_CHECK(v_out.sizes() == rgb.sizes() && v_out.is_contiguous() && v_out.scalar_type() == rgb.scalar_type(),
                "cpu colour affine: a contiguous gradient of the image's shape expected");
    auto v_rgb = at::empty_like(rgb);
    auto v_M = at::empty_like(M);
    AT_DISPATCH_FLOATING_TYPES(rgb.scalar_type(), "colour_affine_bwd", [&] {
        cpu_rast::colour_affine_bwd<scalar_t>(rgb.data_ptr<scalar_t>(), M.data_ptr<scalar_t>(), rgb.size(0),
                                              rgb.size(1), v_out.data_ptr<scalar_t>(), v_rgb.data_ptr<scalar_t>(),
                                              v_M.data_ptr<scalar_t>(), at::get_num_threads());
    });
    return {v_rgb, v_M};
}

void check_frames(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                  const at::Tensor& opacities) {
    TORCH_CHECK(means.device().is_cpu() && means.dim() == 2 && means.size(1) == 3 && means.is_contiguous(),
                "sugar frames: means [N,3] contiguous on the CPU expected");
    const auto N = means.size(0);
    TORCH_CHECK(quats.sizes() == at::IntArrayRef({N, 4}) && quats.is_contiguous() &&
                    scales.sizes() == at::IntArrayRef({N, 3}) && scales.is_contiguous() &&
                    opacities.numel() == N && opacities.is_contiguous(),
                "sugar frames: quats [N,4], scales [N,3] and opacities [N], contiguous, expected");
    TORCH_CHECK(quats.scalar_type() == means.scalar_type() && scales.scalar_type() == means.scalar_type() &&
                    opacities.scalar_type() == means.scalar_type(),
                "sugar frames: means, quats, scales and opacities must share one dtype");
}

std::vector<at::Tensor> frames_fwd(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                                   const at::Tensor& opacities) {
    check_frames(means, quats, scales, opacities);
    const auto N = means.size(0);
    auto rotmats = at::empty({N, 3, 3}, means.options());
    auto table = at::empty({N, 14}, means.options());
    auto normals = at::empty({N, 3}, means.options());
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "frames_fwd", [&] {
        cpu_rast::sugar_frames_fwd<scalar_t>(means.data_ptr<scalar_t>(), quats.data_ptr<scalar_t>(),
                                             scales.data_ptr<scalar_t>(), opacities.data_ptr<scalar_t>(), N,
                                             rotmats.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(),
                                             normals.data_ptr<scalar_t>(), at::get_num_threads());
    });
    return {rotmats, table, normals};
}

// a gradient that autograd left undefined (an output not used) is a null pointer for the kernel
at::Tensor optional_grad(const c10::optional<at::Tensor>& g, at::IntArrayRef shape, at::ScalarType dtype,
                         const char* what) {
    if (!g.has_value() || !g->defined()) return at::Tensor();
    TORCH_CHECK(g->numel() == c10::multiply_integers(shape), "sugar frames: gradient of the ", what,
                " has the wrong size");
    return g->contiguous().to(dtype);
}

std::vector<at::Tensor> frames_bwd(const at::Tensor& quats, const at::Tensor& scales,
                                   const c10::optional<at::Tensor>& v_rotmats,
                                   const c10::optional<at::Tensor>& v_table,
                                   const c10::optional<at::Tensor>& v_normals) {
    TORCH_CHECK(quats.device().is_cpu() && quats.dim() == 2 && quats.size(1) == 4 && quats.is_contiguous() &&
                    scales.sizes() == at::IntArrayRef({quats.size(0), 3}) && scales.is_contiguous() &&
                    scales.scalar_type() == quats.scalar_type(),
                "sugar frames: quats [N,4] and scales [N,3] of one dtype, contiguous on the CPU, expected");
    const auto N = quats.size(0);
    const auto dt = quats.scalar_type();
    auto vr = optional_grad(v_rotmats, {N, 9}, dt, "rotations");
    auto vt = optional_grad(v_table, {N, 14}, dt, "neighbour table");
    auto vn = optional_grad(v_normals, {N, 3}, dt, "normals");
    auto g_means = at::empty({N, 3}, quats.options()), g_quats = at::empty({N, 4}, quats.options());
    auto g_scales = at::empty({N, 3}, quats.options()), g_opac = at::empty({N}, quats.options());
    AT_DISPATCH_FLOATING_TYPES(dt, "frames_bwd", [&] {
        cpu_rast::sugar_frames_bwd<scalar_t>(
            quats.data_ptr<scalar_t>(), scales.data_ptr<scalar_t>(), N,
            vr.defined() ? vr.data_ptr<scalar_t>() : nullptr, vt.defined() ? vt.data_ptr<scalar_t>() : nullptr,
            vn.defined() ? vn.data_ptr<scalar_t>() : nullptr, g_means.data_ptr<scalar_t>(),
            g_quats.data_ptr<scalar_t>(), g_scales.data_ptr<scalar_t>(), g_opac.data_ptr<scalar_t>(),
            at::get_num_threads());
    });
    return {g_means, g_quats, g_scales, g_opac};
}

// coeffs [N, K0, 3] and, optionally, rest [N, K - K0, 3]: the first K0 and the other coefficients (3DGS's sh0
// and shN), read in place; returns K
int64_t check_sh(int64_t degree, const at::Tensor& means, const at::Tensor& coeffs,
                 const c10::optional<at::Tensor>& rest, const at::Tensor& campos) {
    TORCH_CHECK(degree >= 0 && degree <= 3, "sh_degree must be in [0, 3]");
    TORCH_CHECK(means.device().is_cpu() && means.dim() == 2 && means.size(1) == 3, "cpu SH: means [N,3] expected");
    TORCH_CHECK(coeffs.dim() == 3 && coeffs.size(0) == means.size(0) && coeffs.size(2) == 3,
                "cpu SH: coefficients [N,K,3] expected");
    int64_t K = coeffs.size(1);
    if (rest.has_value()) {
        TORCH_CHECK(rest->dim() == 3 && rest->size(0) == means.size(0) && rest->size(2) == 3 &&
                    rest->is_contiguous() && rest->scalar_type() == means.scalar_type(),
                    "cpu SH: the rest of the coefficients must be contiguous [N,K',3] of the means' type");
        K += rest->size(1);
    }
    TORCH_CHECK(K >= (degree + 1) * (degree + 1), "cpu SH: too few coefficients for the degree");
    TORCH_CHECK(campos.dim() == 2 && campos.size(1) == 3, "cpu SH: camera centres [C,3] expected");
    for (const auto* t : {&means, &coeffs, &campos}) {
        TORCH_CHECK(t->is_contiguous() && t->scalar_type() == means.scalar_type(),
                    "cpu SH: inputs must be contiguous and of one floating type");
    }
    TORCH_CHECK(means.scalar_type() == at::kFloat || means.scalar_type() == at::kDouble,
                "cpu SH: float32 or float64 tensors expected");
    return K;
}

void check_radii(const c10::optional<at::Tensor>& radii, int64_t C, int64_t N) {
    if (radii.has_value())
        TORCH_CHECK(radii->scalar_type() == at::kInt && radii->is_contiguous() &&
                    radii->sizes() == at::IntArrayRef({C, N, 2}), "cpu SH: radii must be contiguous int32 [C,N,2]");
}

at::Tensor sh_fwd(int64_t degree, const at::Tensor& means, const at::Tensor& coeffs, const at::Tensor& campos,
                  const c10::optional<at::Tensor>& radii, const c10::optional<at::Tensor>& rest) {
    const auto K = check_sh(degree, means, coeffs, rest, campos);
    const auto N = means.size(0), C = campos.size(0);
    check_radii(radii, C, N);
    auto colors = at::empty({C, N, 3}, means.options());
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "sh_fwd", [&] {
        cpu_rast::sh_colors_fwd<scalar_t>(static_cast<int>(degree), means.data_ptr<scalar_t>(),
                                          coeffs.data_ptr<scalar_t>(), coeffs.size(1),
                                          rest.has_value() ? rest->data_ptr<scalar_t>() : nullptr, K,
                                          campos.data_ptr<scalar_t>(), C, N,
                                          radii.has_value() ? radii->data_ptr<int32_t>() : nullptr,
                                          colors.data_ptr<scalar_t>(), at::get_num_threads());
    });
    return colors;
}

// {v_means, v_coeffs}, then v_rest with rest, then v_campos [C, 3] with campos_grad; radii (optional, the
// forward's): the entries culled there, colour 0, add nothing
std::vector<at::Tensor> sh_bwd(int64_t degree, const at::Tensor& means, const at::Tensor& coeffs,
                               const at::Tensor& campos, const at::Tensor& v_colors,
                               const c10::optional<at::Tensor>& rest, const c10::optional<at::Tensor>& radii,
                               bool campos_grad) {
    const auto K = check_sh(degree, means, coeffs, rest, campos);
    const auto N = means.size(0), C = campos.size(0);
    check_radii(radii, C, N);
    TORCH_CHECK(v_colors.sizes() == at::IntArrayRef({C, N, 3}), "cpu SH: gradient [C,N,3] expected");
    auto vc = v_colors.contiguous().to(means.scalar_type());
    auto g_means = at::empty({N, 3}, means.options());
    auto g_coeffs = at::empty_like(coeffs);
    auto g_rest = rest.has_value() ? at::empty_like(*rest) : at::Tensor();
    auto g_campos = campos_grad ? at::empty({C, 3}, means.options()) : at::Tensor();
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "sh_bwd", [&] {
        cpu_rast::sh_colors_bwd<scalar_t>(static_cast<int>(degree), means.data_ptr<scalar_t>(),
                                          coeffs.data_ptr<scalar_t>(), coeffs.size(1),
                                          rest.has_value() ? rest->data_ptr<scalar_t>() : nullptr, K,
                                          campos.data_ptr<scalar_t>(), C, N,
                                          radii.has_value() ? radii->data_ptr<int32_t>() : nullptr,
                                          vc.data_ptr<scalar_t>(), g_means.data_ptr<scalar_t>(),
                                          g_coeffs.data_ptr<scalar_t>(),
                                          rest.has_value() ? g_rest.data_ptr<scalar_t>() : nullptr,
                                          campos_grad ? g_campos.data_ptr<scalar_t>() : nullptr,
                                          at::get_num_threads());
    });
    std::vector<at::Tensor> out = {g_means, g_coeffs};
    if (rest.has_value()) out.push_back(g_rest);
    if (campos_grad) out.push_back(g_campos);
    return out;
}

void check_density(const at::Tensor& points, const at::Tensor& table, const at::Tensor& nbr) {
    TORCH_CHECK(points.device().is_cpu() && points.dim() == 2 && points.size(1) == 3, "sugar density: points [M,3]");
    TORCH_CHECK(table.dim() == 2 && table.size(1) == 14, "sugar density: table [N,14]");
    TORCH_CHECK(nbr.dim() == 2 && nbr.size(0) == points.size(0) && nbr.scalar_type() == at::kLong,
                "sugar density: neighbours int64 [M,K]");
    TORCH_CHECK(points.is_contiguous() && table.is_contiguous() && nbr.is_contiguous() &&
                table.scalar_type() == points.scalar_type(), "sugar density: contiguous inputs of one type");
    TORCH_CHECK(points.scalar_type() == at::kFloat || points.scalar_type() == at::kDouble,
                "sugar density: float32 or float64 tensors expected");
    if (nbr.numel() > 0) {
        TORCH_CHECK(nbr.min().item<int64_t>() >= 0 && nbr.max().item<int64_t>() < table.size(0),
                    "sugar density: neighbour index out of range");
    }
}

std::vector<at::Tensor> density_fwd(const at::Tensor& points, const at::Tensor& table, const at::Tensor& nbr) {
    check_density(points, table, nbr);
    const auto M = nbr.size(0), K = nbr.size(1);
    auto terms = at::empty({M, K}, points.options());
    auto beta = at::empty({M}, points.options());
    AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "density_fwd", [&] {
        cpu_rast::sugar_density_fwd<scalar_t>(points.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(),
                                              nbr.data_ptr<int64_t>(), M, K, terms.data_ptr<scalar_t>(),
                                              beta.data_ptr<scalar_t>(), at::get_num_threads());
    });
    return {terms, beta};
}

std::vector<at::Tensor> density_bwd(const at::Tensor& points, const at::Tensor& table, const at::Tensor& nbr,
                                    const at::Tensor& v_terms, const c10::optional<at::Tensor>& v_beta) {
    check_density(points, table, nbr);
    const auto M = nbr.size(0), K = nbr.size(1), N = table.size(0);
    auto vt = v_terms.contiguous().to(points.scalar_type());
    TORCH_CHECK(vt.sizes() == nbr.sizes(), "sugar density: gradient of the terms [M,K] expected");
    at::Tensor vb;
    if (v_beta.has_value() && v_beta->defined()) {
        vb = v_beta->contiguous().to(points.scalar_type());
        TORCH_CHECK(vb.numel() == M, "sugar density: gradient of beta [M] expected");
    }
    auto v_points = at::empty({M, 3}, points.options());
    auto v_table = at::empty({N, 14}, points.options());
    AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "density_bwd", [&] {
        cpu_rast::sugar_density_bwd<scalar_t>(points.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(),
                                              nbr.data_ptr<int64_t>(), M, K, N, vt.data_ptr<scalar_t>(),
                                              vb.defined() ? vb.data_ptr<scalar_t>() : nullptr,
                                              v_points.data_ptr<scalar_t>(), v_table.data_ptr<scalar_t>(),
                                              at::get_num_threads());
    });
    return {v_points, v_table};
}

std::vector<at::Tensor> normal_fwd(const at::Tensor& points, const at::Tensor& table, const at::Tensor& normals,
                                   const at::Tensor& nbr) {
    check_density(points, table, nbr);
    TORCH_CHECK(normals.dim() == 2 && normals.size(0) == table.size(0) && normals.size(1) == 3 &&
                normals.is_contiguous() && normals.scalar_type() == points.scalar_type(),
                "sugar normal: contiguous normals [N,3] of the points' type");
    TORCH_CHECK(nbr.size(1) >= 1, "sugar normal: at least the sample's own Gaussian in column 0");
    const auto M = nbr.size(0), K = nbr.size(1);
    auto residual = at::empty({M}, points.options());
    auto valid = at::empty({M}, points.options().dtype(at::kBool));
    auto coef = at::empty({M, K}, points.options());
    auto r = at::empty({M, 3}, points.options());
    AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "normal_fwd", [&] {
        cpu_rast::sugar_normal_fwd<scalar_t>(points.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(),
                                             normals.data_ptr<scalar_t>(), nbr.data_ptr<int64_t>(), M, K,
                                             residual.data_ptr<scalar_t>(), valid.data_ptr<bool>(),
                                             coef.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(), at::get_num_threads());
    });
    return {residual, valid, coef, r};
}

at::Tensor normal_bwd(const at::Tensor& nbr, const at::Tensor& coef, const at::Tensor& r, const at::Tensor& v_residual,
                      int64_t N) {
    TORCH_CHECK(nbr.dim() == 2 && nbr.is_contiguous() && nbr.scalar_type() == at::kLong && coef.sizes() == nbr.sizes()
                && coef.is_contiguous() && r.is_contiguous() && r.size(0) == nbr.size(0),
                "sugar normal: the forward's saved tensors expected");
    const auto M = nbr.size(0), K = nbr.size(1);
    auto vr = v_residual.contiguous().to(coef.scalar_type());
    TORCH_CHECK(vr.numel() == M, "sugar normal: gradient of the residual [M] expected");
    auto v_normals = at::empty({N, 3}, coef.options());
    AT_DISPATCH_FLOATING_TYPES(coef.scalar_type(), "normal_bwd", [&] {
        cpu_rast::sugar_normal_bwd<scalar_t>(nbr.data_ptr<int64_t>(), coef.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(),
                                             vr.data_ptr<scalar_t>(), M, K, N, v_normals.data_ptr<scalar_t>(),
                                             at::get_num_threads());
    });
    return v_normals;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "Deterministic CPU renderer (gsplat's projection, SH and rasterize_to_pixels pipeline)";
    m.def("project_fwd", &project_fwd, "EWA projection of 3D Gaussians");
    m.def("project_bwd", &project_bwd,
          "gradients of the EWA projection (means, quats, scales, opacities, and viewmats with viewmat_grad)",
          py::arg("means"), py::arg("quats"), py::arg("scales"), py::arg("opacities"), py::arg("viewmats"),
          py::arg("Ks"), py::arg("width"), py::arg("height"), py::arg("near"), py::arg("far"), py::arg("eps2d"),
          py::arg("antialiased"), py::arg("v_means2d"), py::arg("v_depths"), py::arg("v_conics"), py::arg("v_opac"),
          py::arg("viewmat_grad") = false);
    m.def("sh_fwd", &sh_fwd, "view-dependent colours from SH coefficients (0 where radii mark a Gaussian culled)",
          py::arg("degree"), py::arg("means"), py::arg("coeffs"), py::arg("campos"), py::arg("radii") = py::none(),
          py::arg("rest") = py::none());
    m.def("sh_bwd", &sh_bwd, "gradients of the SH colours (and of the camera centres with campos_grad)",
          py::arg("degree"), py::arg("means"), py::arg("coeffs"), py::arg("campos"), py::arg("v_colors"),
          py::arg("rest") = py::none(), py::arg("radii") = py::none(), py::arg("campos_grad") = false);
    m.def("envmap_fwd", &envmap_fwd, "the sky's cube map through every pixel of a camera, [H, W, 3]");
    m.def("envmap_bwd", &envmap_bwd, "gradient of those colours into the cube map's");
    m.def("colour_affine_fwd", &colour_affine_fwd, "a 3x4 colour transform of an [H, W, 3] image");
    m.def("colour_affine_bwd", &colour_affine_bwd, "its gradient into the image and the matrix");
    m.def("ssim_fwd", &ssim_fwd, "mean SSIM of one [H,W,C] image against another, and its maps");
    m.def("ssim_bwd", &ssim_bwd, "gradient of the mean SSIM into the first image");
    m.def("sugar_frames_fwd", &frames_fwd, "rotations, neighbour-table rows and normals of the Gaussians");
    m.def("sugar_frames_bwd", &frames_bwd, "gradients of the sugar frames into means, quats, scales, opacities");
    m.def("sugar_density_fwd", &density_fwd, "SuGaR density terms at samples from their neighbours");
    m.def("sugar_density_bwd", &density_bwd, "gradients of the SuGaR density terms");
    m.def("sugar_normal_fwd", &normal_fwd, "SuGaR normal-regularizer residuals at samples");
    m.def("sugar_normal_bwd", &normal_bwd, "gradients of the SuGaR normal residuals into the normals");
    m.def("intersect_tiles", &intersect_tiles, "(Gaussian, tile) pairs ordered by (camera, tile, depth)");
    m.def("surface_fwd", &surface_fwd, "per-Gaussian camera-frame normal and plane distance");
    m.def("surface_bwd", &surface_bwd, "gradients of the surface channels into means and quaternions");
    m.def("rasterize_fwd", &rasterize_fwd, "front-to-back compositing");
    m.def("rasterize_bwd", &rasterize_bwd, "back-to-front gradients");
}
