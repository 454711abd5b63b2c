"""Fixtures shared by the backend-agreement test modules (imported by name into each)."""
import pytest
import torch

BACKENDS = ["cpp", "torch"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Each fast CPU backend in turn; the compiled one must have built."""
    if request.param == "cpp":
        from models.rendering import cpp_backend
        assert cpp_backend.available(), f"the C++ extension did not build: {cpp_backend._error}"
    return request.param


@pytest.fixture
def one_thread():
    """torch at one thread for the test, the process's count afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
