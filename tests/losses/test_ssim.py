"""models.ssim against pytorch-msssim (the reference), and its determinism."""
import pytest
import torch
from pytorch_msssim import ssim as reference_ssim

from models.ssim import ssim


@pytest.mark.parametrize("shape", [(1, 3, 96, 160), (2, 3, 40, 33), (1, 1, 11, 11)])
def test_matches_pytorch_msssim_value_and_gradient(shape):
    g = torch.Generator().manual_seed(sum(shape))
    X = torch.rand(shape, generator=g)
    Y = (X + 0.2 * torch.rand(shape, generator=g) - 0.1).clamp(0, 1)
    a, b = X.clone().requires_grad_(), X.clone().requires_grad_()
    ours, ref = ssim(a, Y, data_range=1.0), reference_ssim(b, Y, data_range=1.0)
    ours.backward()
    ref.backward()
    assert ours.item() == pytest.approx(ref.item(), abs=1e-6)
    assert (a.grad - b.grad).abs().max() <= 1e-4 * b.grad.abs().max()


def test_identical_images_give_one_and_float64_gradcheck():
    X = torch.rand(1, 2, 16, 14, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert ssim(X, X).item() == pytest.approx(1.0, abs=1e-12)
    Y = torch.rand_like(X)
    assert torch.autograd.gradcheck(lambda x: ssim(x, Y), (X.clone().requires_grad_(),))


def test_same_bits_at_one_and_two_threads():
    g = torch.Generator().manual_seed(3)
    X, Y = torch.rand(1, 3, 200, 300, generator=g), torch.rand(1, 3, 200, 300, generator=g)
    n = torch.get_num_threads()
    out = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            x = X.clone().requires_grad_()
            v = ssim(x, Y)
            v.backward()
            out.append((v.detach(), x.grad))
    finally:
        torch.set_num_threads(n)
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])


def test_rejects_small_or_mismatched_images():
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(1, 3, 10, 20), torch.rand(1, 3, 10, 20))
    with pytest.raises(ValueError, match="must both be"):
        ssim(torch.rand(1, 3, 20, 20), torch.rand(1, 3, 20, 21))


def test_compiled_kernel_agrees_with_the_filtered_pytorch_ssim():
    """The compiled path (one CPU image against a reference without gradient) against the shifted
    multiply-adds it replaces, on a loss's [H, W, 3] images permuted as photometric_loss passes them."""
    from models.rendering import cpp_backend
    from models.ssim import K1, K2, filtered_ssim
    if cpp_backend.load_extension() is None:
        pytest.skip("the C++ extension cannot be built here")
    g = torch.Generator().manual_seed(9)
    for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-12)):
        pred = torch.rand(96, 160, 3, generator=g, dtype=dtype)
        gt = (pred + 0.3 * torch.rand(96, 160, 3, generator=g, dtype=dtype) - 0.15).clamp(0, 1)
        a, b = pred.clone().requires_grad_(), pred.clone().requires_grad_()
        fast = ssim(a.permute(2, 0, 1).unsqueeze(0), gt.permute(2, 0, 1).unsqueeze(0))
        slow = filtered_ssim(b.permute(2, 0, 1).unsqueeze(0), gt.permute(2, 0, 1).unsqueeze(0), K1 ** 2, K2 ** 2)
        assert fast.grad_fn is not None and "SSIMHWC" in type(fast.grad_fn).__name__
        fast.backward()
        slow.backward()
        assert abs(fast.item() - slow.item()) <= tol
        assert (a.grad - b.grad).abs().max() <= tol * 10 * b.grad.abs().max()
