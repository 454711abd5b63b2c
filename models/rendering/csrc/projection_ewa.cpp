// Stage 0: EWA projection of 3D Gaussians (gsplat's fully_fused_projection, packed=False), forward and
// backward, with the conventions of models/rendering/projection.py (the PyTorch reference this must match):
// camera mean R x + t; culled when z < near or z > far (a culled Gaussian is projected with z = 1 so
// that no inf/NaN appears, and gets radius 0); the Jacobian uses x/z, y/z clamped to 1.3x the field of
// view; eps2d added to the 2D covariance diagonal; culled when the blurred determinant is <= 0; opacity-
// aware radius; culled when both radii <= radius_clip or the box lies outside the image.
// Every Gaussian is independent: the loops run over Gaussians (OpenMP, static), each thread writes its
// own Gaussians' outputs and gradients, and a Gaussian's gradient is summed over the cameras in camera
// order, so the results are bitwise the same for any thread count. The cameras' gradients (asked for
// with v_viewmats: pose refinement) are sums over Gaussians: chunked_gaussian_sum (kernels.h) adds them
// in chunks of Gaussians fixed by N alone, then the chunks in order, so they too are the same bits for
// any thread count; the Gaussians' gradients are the same bits with and without them.
#include <algorithm>
#include <cmath>

#include "kernels.h"

namespace cpu_rast {

namespace {

template <typename T>
struct Mat3 {
    T m[3][3];
};

// Rotation matrix (columns = axes) of a normalised quaternion (w, x, y, z).
template <typename T>
inline Mat3<T> quat_rotmat(T w, T x, T y, T z) {
    Mat3<T> r;
    r.m[0][0] = T(1) - T(2) * (y * y + z * z);
    r.m[0][1] = T(2) * (x * y - w * z);
    r.m[0][2] = T(2) * (x * z + w * y);
    r.m[1][0] = T(2) * (x * y + w * z);
    r.m[1][1] = T(1) - T(2) * (x * x + z * z);
    r.m[1][2] = T(2) * (y * z - w * x);
    r.m[2][0] = T(2) * (x * z - w * y);
    r.m[2][1] = T(2) * (y * z + w * x);
    r.m[2][2] = T(1) - T(2) * (x * x + y * y);
    return r;
}

// Everything of one (camera, Gaussian) projection that the backward pass needs again.
template <typename T>
struct ProjState {
    T p[3];          // camera-space mean
    T W[3][3];       // camera-space covariance
    bool depth_ok;
    T zs, rz, u, v, ux, vy;
    bool u_in, v_in;  // u (v) inside the clamp range: the clamp passes its gradient
    T a, b, c, d;     // the Jacobian's non-zero entries: row 0 (a, 0, b), row 1 (0, c, d)
    T c00, c01, c11;  // unblurred 2D covariance
    T A, Cc, det;     // blurred diagonal and determinant
    bool det_ok;
};

template <typename T>
struct Camera {
    T R[3][3], t[3], fx, fy, cx, cy, lxp, lxn, lyp, lyn;
    Camera(const T* viewmat, const T* K, int64_t width, int64_t height) {
        for (int i = 0; i < 3; ++i) {
            for (int j = 0; j < 3; ++j) R[i][j] = viewmat[4 * i + j];
            t[i] = viewmat[4 * i + 3];
        }
        fx = K[0]; cx = K[2]; fy = K[4]; cy = K[5];
        const T tan_fovx = T(0.5) * static_cast<T>(width) / fx, tan_fovy = T(0.5) * static_cast<T>(height) / fy;
        lxp = (static_cast<T>(width) - cx) / fx + T(0.3) * tan_fovx;
        lxn = cx / fx + T(0.3) * tan_fovx;
        lyp = (static_cast<T>(height) - cy) / fy + T(0.3) * tan_fovy;
        lyn = cy / fy + T(0.3) * tan_fovy;
    }
};

template <typename T>
inline void project_one(const Camera<T>& cam, const T* mean, const T (&S)[3][3], T near, T far, T eps2d,
                        ProjState<T>& st) {
    for (int i = 0; i < 3; ++i)
        st.p[i] = cam.R[i][0] * mean[0] + cam.R[i][1] * mean[1] + cam.R[i][2] * mean[2] + cam.t[i];
    T RS[3][3];  // R Σ
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) RS[i][j] = cam.R[i][0] * S[0][j] + cam.R[i][1] * S[1][j] + cam.R[i][2] * S[2][j];
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
            st.W[i][j] = RS[i][0] * cam.R[j][0] + RS[i][1] * cam.R[j][1] + RS[i][2] * cam.R[j][2];
    const T z = st.p[2];
    st.depth_ok = z >= near && z <= far;
    st.zs = st.depth_ok ? z : T(1);
    st.rz = T(1) / st.zs;
    st.u = st.p[0] * st.rz;
    st.v = st.p[1] * st.rz;
    st.u_in = st.u > -cam.lxn && st.u < cam.lxp;
    st.v_in = st.v > -cam.lyn && st.v < cam.lyp;
    st.ux = std::min(std::max(st.u, -cam.lxn), cam.lxp);
    st.vy = std::min(std::max(st.v, -cam.lyn), cam.lyp);
    st.a = cam.fx * st.rz;
    st.b = -cam.fx * st.ux * st.rz;
    st.c = cam.fy * st.rz;
    st.d = -cam.fy * st.vy * st.rz;
    const T(&W)[3][3] = st.W;
    st.c00 = st.a * st.a * W[0][0] + T(2) * st.a * st.b * W[0][2] + st.b * st.b * W[2][2];
    st.c01 = st.a * st.c * W[0][1] + st.a * st.d * W[0][2] + st.b * st.c * W[1][2] + st.b * st.d * W[2][2];
    st.c11 = st.c * st.c * W[1][1] + T(2) * st.c * st.d * W[1][2] + st.d * st.d * W[2][2];
    st.A = st.c00 + eps2d;
    st.Cc = st.c11 + eps2d;
    st.det = st.A * st.Cc - st.c01 * st.c01;
    st.det_ok = st.det > T(0);
}

// Σ = R diag(s) diag(s) Rᵀ and the rotation, from a raw quaternion (any norm) and scales.
template <typename T>
inline void covariance(const T* q, const T* s, T (&qn)[4], T& qnorm, Mat3<T>& R, T (&S)[3][3]) {
    qnorm = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
    const T inv = T(1) / std::max(qnorm, T(1e-12));
    for (int i = 0; i < 4; ++i) qn[i] = q[i] * inv;
    R = quat_rotmat(qn[0], qn[1], qn[2], qn[3]);
    T M[3][3];
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) M[i][j] = R.m[i][j] * s[j];
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) S[i][j] = M[i][0] * M[j][0] + M[i][1] * M[j][1] + M[i][2] * M[j][2];
}

// Whether entry i of [C, N] has any upstream gradient (the rasterizer used it in that camera)
template <typename T>
inline bool has_gradient(const T* v_means2d, const T* v_depths, const T* v_conics, const T* v_opac_out, int64_t i) {
    return v_means2d[2 * i] != T(0) || v_means2d[2 * i + 1] != T(0) || v_depths[i] != T(0) ||
           v_conics[3 * i] != T(0) || v_conics[3 * i + 1] != T(0) || v_conics[3 * i + 2] != T(0) ||
           v_opac_out[i] != T(0);
}

}  // namespace

template <typename T>
void project_ewa_fwd(const T* means, const T* quats, const T* scales, const T* opacities, const T* viewmats,
                     const T* Ks, int64_t C, int64_t N, int64_t width, int64_t height, T near, T far, T eps2d,
                     T radius_clip, bool antialiased, int32_t* radii, T* means2d, T* depths, T* conics,
                     T* opac_out, int n_threads) {
    std::vector<Camera<T>> cams;
    cams.reserve(C);
    for (int64_t c = 0; c < C; ++c) cams.emplace_back(viewmats + 16 * c, Ks + 9 * c, width, height);
    const T alpha_t = static_cast<T>(ALPHA_THRESHOLD);
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t n = 0; n < N; ++n) {
        T qn[4], qnorm, S[3][3];
        Mat3<T> R;
        covariance(quats + 4 * n, scales + 3 * n, qn, qnorm, R, S);
        for (int64_t c = 0; c < C; ++c) {
            const Camera<T>& cam = cams[c];
            ProjState<T> st;
            project_one(cam, means + 3 * n, S, near, far, eps2d, st);
            const int64_t i = c * N + n;
            means2d[2 * i] = cam.fx * st.u + cam.cx;
            means2d[2 * i + 1] = cam.fy * st.v + cam.cy;
            depths[i] = st.p[2];
            const T dets = st.det_ok ? st.det : T(1);
            conics[3 * i] = st.Cc / dets;
            conics[3 * i + 1] = -st.c01 / dets;
            conics[3 * i + 2] = st.A / dets;
            T o = opacities[n];
            if (antialiased) {
                const T det_orig = st.c00 * st.c11 - st.c01 * st.c01;
                o = o * std::sqrt(std::max(det_orig / dets, T(0)));
            }
            opac_out[i] = o;
            // radii (no gradient): gsplat's opacity-aware extent
            bool ok = st.depth_ok && st.det_ok && o >= alpha_t;
            const T extend = std::min(std::sqrt(T(2) * std::log(std::max(o / alpha_t, T(1)))), T(3.33));
            const T rx = std::ceil(extend * std::sqrt(std::max(st.A, T(0))));
            const T ry = std::ceil(extend * std::sqrt(std::max(st.Cc, T(0))));
            ok = ok && !(rx <= radius_clip && ry <= radius_clip);
            const T mx = means2d[2 * i], my = means2d[2 * i + 1];
            const T w = static_cast<T>(width), h = static_cast<T>(height);
            ok = ok && !(mx + rx <= 0 || mx - rx >= w || my + ry <= 0 || my - ry >= h);
            ok = ok && std::isfinite(rx) && std::isfinite(ry);
            radii[2 * i] = ok ? static_cast<int32_t>(rx) : 0;
            radii[2 * i + 1] = ok ? static_cast<int32_t>(ry) : 0;
        }
    }
}

template <typename T>
void project_ewa_bwd(const T* means, const T* quats, const T* scales, const T* opacities, const T* viewmats,
                     const T* Ks, int64_t C, int64_t N, int64_t width, int64_t height, T near, T far, T eps2d,
                     bool antialiased, const T* v_means2d, const T* v_depths, const T* v_conics,
                     const T* v_opac_out, T* v_means, T* v_quats, T* v_scales, T* v_opacities, T* v_viewmats,
                     int n_threads) {
    std::vector<Camera<T>> cams;
    cams.reserve(C);
    for (int64_t c = 0; c < C; ++c) cams.emplace_back(viewmats + 16 * c, Ks + 9 * c, width, height);
    // Gaussian n: its gradients (written) and, with vcam (not null), its contributions to the cameras'
    // dL/d(R | t), added to vcam [C, 3, 4]
    auto one = [&](int64_t n, T* vcam) {
        // a Gaussian the rasterizer used in no camera (culled, off-screen: most of a large scene's
        // Gaussians in any one view) has no upstream gradient: its gradients are zero, with no
        // covariance or projection to recompute
        bool used = false;
        for (int64_t c = 0; c < C && !used; ++c) used = has_gradient(v_means2d, v_depths, v_conics, v_opac_out, c * N + n);
        if (!used) {
            for (int j = 0; j < 3; ++j) v_means[3 * n + j] = v_scales[3 * n + j] = T(0);
            for (int k = 0; k < 4; ++k) v_quats[4 * n + k] = T(0);
            v_opacities[n] = T(0);
            return;
        }
        T qn[4], qnorm, S[3][3];
        Mat3<T> R;
        const T* s = scales + 3 * n;
        covariance(quats + 4 * n, s, qn, qnorm, R, S);
        T gmean[3] = {0, 0, 0};
        T gS[3][3] = {{0, 0, 0}, {0, 0, 0}, {0, 0, 0}};  // dL/dΣ summed over cameras
        T gop = 0;
        for (int64_t c = 0; c < C; ++c) {
            const Camera<T>& cam = cams[c];
            ProjState<T> st;
            project_one(cam, means + 3 * n, S, near, far, eps2d, st);
            const int64_t i = c * N + n;
            // a camera where the rasterizer did not use it (culled, off-screen) adds nothing: skip it
            if (!has_gradient(v_means2d, v_depths, v_conics, v_opac_out, i)) continue;
            const T g0 = v_conics[3 * i], g1 = v_conics[3 * i + 1], g2 = v_conics[3 * i + 2];
            T gA, gC, g01;  // dL/d(blurred c00), dL/d(blurred c11), dL/dc01
            const T dets = st.det_ok ? st.det : T(1);
            if (st.det_ok) {
                const T inv = T(1) / st.det;
                const T g_inv = g0 * st.Cc - g1 * st.c01 + g2 * st.A;
                const T g_det = -g_inv * inv * inv;
                gA = g2 * inv + g_det * st.Cc;
                gC = g0 * inv + g_det * st.A;
                g01 = -g1 * inv - T(2) * g_det * st.c01;
            } else {
                gA = g2;
                gC = g0;
                g01 = -g1;
            }
            const T vo = v_opac_out[i];
            if (antialiased) {
                const T det_orig = st.c00 * st.c11 - st.c01 * st.c01;
                const T r = det_orig / dets;
                const T comp = std::sqrt(std::max(r, T(0)));
                gop += vo * comp;
                if (r >= T(0)) {
                    const T g_r = vo * opacities[n] * T(0.5) / comp;
                    // r = det_orig / dets; det_orig uses the unblurred c00, c11 (dA/dc00 = 1)
                    const T g_do = g_r / dets;
                    T g00x = g_do * st.c11, g11x = g_do * st.c00, g01x = -T(2) * g_do * st.c01;
                    if (st.det_ok) {
                        const T g_dets = -g_r * det_orig / (dets * dets);
                        g00x += g_dets * st.Cc;
                        g11x += g_dets * st.A;
                        g01x += -T(2) * g_dets * st.c01;
                    }
                    gA += g00x;
                    gC += g11x;
                    g01 += g01x;
                }
            } else {
                gop += vo;
            }
            // c00, c01, c11 in terms of the Jacobian (a, b, c, d) and W
            const T(&W)[3][3] = st.W;
            const T a = st.a, b = st.b, cc = st.c, d = st.d;
            const T ga = gA * (T(2) * a * W[0][0] + T(2) * b * W[0][2]) + g01 * (cc * W[0][1] + d * W[0][2]);
            const T gb = gA * (T(2) * a * W[0][2] + T(2) * b * W[2][2]) + g01 * (cc * W[1][2] + d * W[2][2]);
            const T gc = gC * (T(2) * cc * W[1][1] + T(2) * d * W[1][2]) + g01 * (a * W[0][1] + b * W[1][2]);
            const T gd = gC * (T(2) * cc * W[1][2] + T(2) * d * W[2][2]) + g01 * (a * W[0][2] + b * W[2][2]);
            T G[3][3] = {{0, 0, 0}, {0, 0, 0}, {0, 0, 0}};  // dL/dW on the entries read (upper triangle)
            G[0][0] = gA * a * a;
            G[0][1] = g01 * a * cc;
            G[0][2] = gA * T(2) * a * b + g01 * a * d;
            G[1][1] = gC * cc * cc;
            G[1][2] = gC * T(2) * cc * d + g01 * b * cc;
            G[2][2] = gA * b * b + g01 * b * d + gC * d * d;
            // a = fx rz, b = -fx ux rz, c = fy rz, d = -fy vy rz; means2d = (fx u + cx, fy v + cy)
            const T gux = -gb * cam.fx * st.rz, gvy = -gd * cam.fy * st.rz;
            const T gu = v_means2d[2 * i] * cam.fx + (st.u_in ? gux : T(0));
            const T gv = v_means2d[2 * i + 1] * cam.fy + (st.v_in ? gvy : T(0));
            const T grz = ga * cam.fx - gb * cam.fx * st.ux + gc * cam.fy - gd * cam.fy * st.vy + gu * st.p[0] +
                          gv * st.p[1];
            const T gx = gu * st.rz, gy = gv * st.rz;
            const T gz = (st.depth_ok ? -grz * st.rz * st.rz : T(0)) + v_depths[i];
            for (int j = 0; j < 3; ++j) gmean[j] += cam.R[0][j] * gx + cam.R[1][j] * gy + cam.R[2][j] * gz;
            if (vcam != nullptr) {
                // p = R x + t: dL/dR += gp xᵀ, dL/dt += gp; W = R Σ Rᵀ (Σ symmetric): dL/dR += (G + Gᵀ) R Σ
                const T gp[3] = {gx, gy, gz};
                const T* x = means + 3 * n;
                T RS[3][3];
                for (int i = 0; i < 3; ++i)
                    for (int j = 0; j < 3; ++j)
                        RS[i][j] = cam.R[i][0] * S[0][j] + cam.R[i][1] * S[1][j] + cam.R[i][2] * S[2][j];
                T* vc = vcam + 12 * c;
                for (int i = 0; i < 3; ++i) {
                    for (int j = 0; j < 3; ++j) {
                        T acc = gp[i] * x[j];
                        for (int k = 0; k < 3; ++k) acc += (G[i][k] + G[k][i]) * RS[k][j];
                        vc[4 * i + j] += acc;
                    }
                    vc[4 * i + 3] += gp[i];
                }
            }
            // dL/dΣ = Rᵀ G R
            T GR[3][3];
            for (int k = 0; k < 3; ++k)
                for (int j = 0; j < 3; ++j) GR[k][j] = G[k][0] * cam.R[0][j] + G[k][1] * cam.R[1][j] + G[k][2] * cam.R[2][j];
            for (int k = 0; k < 3; ++k)
                for (int j = 0; j < 3; ++j)
                    gS[k][j] += cam.R[0][k] * GR[0][j] + cam.R[1][k] * GR[1][j] + cam.R[2][k] * GR[2][j];
        }
        for (int j = 0; j < 3; ++j) v_means[3 * n + j] = gmean[j];
        v_opacities[n] = gop;
        // Σ = M Mᵀ, M = R diag(s): dL/dM = (gS + gSᵀ) M
        T M[3][3], gM[3][3];
        for (int i = 0; i < 3; ++i)
            for (int j = 0; j < 3; ++j) M[i][j] = R.m[i][j] * s[j];
        for (int i = 0; i < 3; ++i)
            for (int j = 0; j < 3; ++j) {
                T acc = 0;
                for (int k = 0; k < 3; ++k) acc += (gS[i][k] + gS[k][i]) * M[k][j];
                gM[i][j] = acc;
            }
        T gR[3][3];
        for (int j = 0; j < 3; ++j) {
            T gs = 0;
            for (int i = 0; i < 3; ++i) {
                gR[i][j] = gM[i][j] * s[j];
                gs += gM[i][j] * R.m[i][j];
            }
            v_scales[3 * n + j] = gs;
        }
        const T w = qn[0], x = qn[1], y = qn[2], z = qn[3];
        T gq[4];
        gq[0] = T(2) * (-z * gR[0][1] + y * gR[0][2] + z * gR[1][0] - x * gR[1][2] - y * gR[2][0] + x * gR[2][1]);
        gq[1] = T(2) * (y * gR[0][1] + z * gR[0][2] + y * gR[1][0] - T(2) * x * gR[1][1] - w * gR[1][2] +
                        z * gR[2][0] + w * gR[2][1] - T(2) * x * gR[2][2]);
        gq[2] = T(2) * (-T(2) * y * gR[0][0] + x * gR[0][1] + w * gR[0][2] + x * gR[1][0] + z * gR[1][2] -
                        w * gR[2][0] + z * gR[2][1] - T(2) * y * gR[2][2]);
        gq[3] = T(2) * (-T(2) * z * gR[0][0] - w * gR[0][1] + x * gR[0][2] + w * gR[1][0] - T(2) * z * gR[1][1] +
                        y * gR[1][2] + x * gR[2][0] + y * gR[2][1]);
        // q_n = q / max(|q|, 1e-12)
        if (qnorm > T(1e-12)) {
            const T dot = gq[0] * qn[0] + gq[1] * qn[1] + gq[2] * qn[2] + gq[3] * qn[3];
            for (int k = 0; k < 4; ++k) v_quats[4 * n + k] = (gq[k] - qn[k] * dot) / qnorm;
        } else {
            for (int k = 0; k < 4; ++k) v_quats[4 * n + k] = gq[k] / T(1e-12);
        }
    };
    if (v_viewmats == nullptr) {
#pragma omp parallel for schedule(static) num_threads(n_threads)
        for (int64_t n = 0; n < N; ++n) one(n, nullptr);
        return;
    }
    std::vector<T> vcam(static_cast<size_t>(C * 12));
    chunked_gaussian_sum<T>(N, C * 12, n_threads, one, vcam.data());
    for (int64_t c = 0; c < C; ++c) {
        T* out = v_viewmats + 16 * c;
        for (int e = 0; e < 12; ++e) out[e] = vcam[12 * c + e];
        for (int e = 12; e < 16; ++e) out[e] = T(0);
    }
}

#define CPU_RAST_INSTANTIATE_PROJ(T)                                                                             \
    template void project_ewa_fwd<T>(const T*, const T*, const T*, const T*, const T*, const T*, int64_t, int64_t, \
                                     int64_t, int64_t, T, T, T, T, bool, int32_t*, T*, T*, T*, T*, int);          \
    template void project_ewa_bwd<T>(const T*, const T*, const T*, const T*, const T*, const T*, int64_t, int64_t, \
                                     int64_t, int64_t, T, T, T, bool, const T*, const T*, const T*, const T*, T*, \
                                     T*, T*, T*, T*, int);
CPU_RAST_INSTANTIATE_PROJ(float)
CPU_RAST_INSTANTIATE_PROJ(double)

}  // namespace cpu_rast
