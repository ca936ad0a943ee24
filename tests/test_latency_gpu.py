"""The GPU backends on a real GPU: torch CUDA FP16 (CUDA events) and TensorRT.

These machines have no GPU, so everything here skips with the reason; on a GPU
machine they check that the backends run and return sane measurements.
"""

import importlib.util

import pytest
import torch

from hwnas.latency.backends import get_backend
from hwnas.models.spaces.base import get_space
from hwnas.latency.kernels import kernels_for

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs an NVIDIA GPU visible to torch (none here)")
needs_tensorrt = pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None,
                                    reason="needs TensorRT (pip install 'hwnas[tensorrt]'), not installable here")


def _part_module():
    space = get_space("imagenet224")
    arch = space.parse("SuperConvK3BNRELU(3,32,2,1)SuperResK1K3K1(32,64,2,16,2)SuperConvK1BNRELU(64,256,1,1)")
    part = kernels_for(space).parts(arch)[1]
    return kernels_for(space).build_part(part)


def _sane(m):
    assert m.repeats > 0
    assert 0 < m.p10_ms <= m.median_ms <= m.p90_ms


@needs_cuda
@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_torch_cuda_fp16_measures_a_part(cuda_graphs):
    module, shape = _part_module()
    backend = get_backend("torch", device="cuda", precision="fp16", batch=64, cuda_graphs=cuda_graphs)
    _sane(backend.measure_module(module, shape, warmup=5, repeats=10))


@needs_cuda
def test_torch_cuda_batch_time_grows_with_batch():
    module, shape = _part_module()
    backend = get_backend("torch", device="cuda", precision="fp16", batch=64)
    small = backend.measure_module(module, shape, batch=1, warmup=5, repeats=20)
    large = backend.measure_module(module, shape, batch=256, warmup=5, repeats=20)
    assert large.median_ms > small.median_ms


@needs_cuda
@needs_tensorrt
def test_tensorrt_fp16_measures_a_part():
    module, shape = _part_module()
    backend = get_backend("tensorrt", precision="fp16", batch=64)
    _sane(backend.measure_module(module, shape, warmup=5, repeats=10))
