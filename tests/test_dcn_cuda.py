"""CUDA checks of the DCN op against the float64 reference (skipped without a GPU).

Run on a GPU machine after building with CUDA:

    cd dcn_ext && TORCH_CUDA_ARCH_LIST=9.0 python setup.py build_ext --inplace && cd ..
    python -m pytest -q -s tests/test_dcn_cuda.py

Accuracy figures are printed (-s) and, when DCN_GPU_REPORT names a file, written there as
JSON. The memory-safety run with extreme offsets is this file run as a script under
compute-sanitizer:

    compute-sanitizer --tool memcheck python tests/test_dcn_cuda.py --sanitize
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dcn_ext.reference import modulated_deform_conv2d_reference  # noqa: E402
from dcn_ext.testing import random_case  # noqa: E402

try:
    from dcn_ext import ops  # noqa: E402
    from dcn_ext.functional import modulated_deform_conv2d  # noqa: E402
    BUILD_PROBLEM = None
except ImportError as error:  # extension not built
    BUILD_PROBLEM = str(error)


def _cuda_problem():
    if BUILD_PROBLEM:
        return f"dcn_ext not built: {BUILD_PROBLEM}"
    if not torch.cuda.is_available():
        return "no CUDA device"
    if not ops.cuda_available():
        return "dcn_ext was built without CUDA kernels"
    return None


pytestmark = pytest.mark.skipif(_cuda_problem() is not None, reason=str(_cuda_problem()))

# The 16 DCN layers of DLA-34 at CenterNet's KITTI input 384x1280 come in these shapes
# (in_channels, out_channels, height, width); all 3x3, stride 1, padding 1.
DLA34_SHAPES = [
    (512, 256, 12, 40),
    (256, 256, 24, 80),
    (256, 128, 24, 80),
    (256, 64, 24, 80),
    (128, 128, 48, 160),
    (128, 64, 48, 160),
    (64, 64, 96, 320),
]
ALGORITHMS = ["simple", "auto"]
REPORT = {}


def _record(key, value):
    REPORT[key] = value
    path = os.environ.get("DCN_GPU_REPORT")
    if path:
        Path(path).write_text(json.dumps(REPORT, indent=1, sort_keys=True))


def _make_case(*args, device="cuda", **kwargs):
    return random_case(*args, device=device, **kwargs)


def _forward(tensors, params, algorithm="auto"):
    if algorithm == "auto":
        return modulated_deform_conv2d(*tensors, **params)
    return ops.forward_with_algorithm_op()(
        *tensors, list(params["stride"]), list(params["padding"]), list(params["dilation"]),
        params["groups"], params["deformable_groups"], ops.FORWARD_ALGORITHMS[algorithm])


def _relative_l2(result, reference):
    result = result.double()
    return ((result - reference).norm() / reference.norm().clamp_min(1e-300)).item()


def _max_relative(result, reference):
    return ((result.double() - reference).abs().max() / reference.abs().max()).item()


GEOMETRIES = {
    "plain": dict(n=2, c_in=8, c_out=8, h=11, w=13),
    "odd_batch_strided": dict(n=3, c_in=6, c_out=4, h=9, w=14, stride=(2, 1),
                              padding=(0, 2), dilation=(1, 2)),
    "groups": dict(n=1, c_in=8, c_out=12, h=10, w=10, groups=2, dg=4),
    "kernel_5x3": dict(n=2, c_in=4, c_out=5, h=12, w=9, kernel=(5, 3), padding=(2, 1)),
    "wide_channels": dict(n=1, c_in=64, c_out=64, h=24, w=40),
}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_fp32_matches_float64_reference(name, algorithm):
    tensors64, params = _make_case(**GEOMETRIES[name])
    reference = modulated_deform_conv2d_reference(*tensors64, **params)
    result = _forward([t.float() for t in tensors64], params, algorithm)
    error = _max_relative(result, reference)
    _record(f"fp32_max_rel/{name}/{algorithm}", error)
    print(f"fp32 {name} {algorithm}: max-relative {error:.2e}")
    assert result.dtype == torch.float32
    assert error <= 1e-4


def test_float64_cuda_matches_reference_exactly():
    tensors, params = _make_case(**GEOMETRIES["groups"])
    reference = modulated_deform_conv2d_reference(*tensors, **params)
    torch.testing.assert_close(_forward(tensors, params), reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_half_precision_at_dla34_shapes(dtype, algorithm):
    """Relative L2 <= 2e-3 against float64 with offsets of sigma = 2 px.

    fp16: against the reference on the unrounded float64 inputs (input rounding included).
    bf16 keeps 8 mantissa bits, so rounding the inputs alone costs about 2e-3: its bound is
    checked against the reference on the same bf16-rounded inputs (the kernel's own error:
    coordinates, interpolation, accumulation and the output rounding).
    """
    name = str(dtype).replace("torch.", "")
    worst = 0.0
    for c_in, c_out, h, w in DLA34_SHAPES:
        tensors64, params = _make_case(1, c_in, c_out, h, w, sigma=2.0, seed=c_in + h)
        low = [t.to(dtype) for t in tensors64]
        result = _forward(low, params, algorithm)
        assert result.dtype == dtype
        exact = modulated_deform_conv2d_reference(*tensors64, **params)
        rounded = modulated_deform_conv2d_reference(*low, **params)
        vs_exact, vs_rounded = _relative_l2(result, exact), _relative_l2(result, rounded)
        _record(f"{name}_rel_l2_vs_exact/{algorithm}/{c_in}x{c_out}@{h}x{w}", vs_exact)
        _record(f"{name}_rel_l2_vs_rounded_inputs/{algorithm}/{c_in}x{c_out}@{h}x{w}",
                vs_rounded)
        print(f"{name} {algorithm} {c_in}->{c_out} @{h}x{w}: rel L2 {vs_exact:.2e} "
              f"(vs reference on rounded inputs {vs_rounded:.2e})")
        worst = max(worst, vs_exact if dtype == torch.float16 else vs_rounded)
    assert worst <= 2e-3


def test_gradcheck_float64_cuda():
    tensors, params = _make_case(2, 4, 6, 6, 7, groups=2, dg=2, stride=(1, 2),
                                 dilation=(2, 1), padding=(2, 1), sigma=1.5)
    tensors = [t.requires_grad_() for t in tensors]
    # The input gradient is scattered with atomicAdd, whose order varies between runs: two
    # backward passes agree to rounding, not bit for bit.
    assert torch.autograd.gradcheck(lambda *a: modulated_deform_conv2d(*a, **params), tensors,
                                    nondet_tol=1e-12)


def test_cpu_and_cuda_gradients_agree():
    tensors, params = _make_case(3, 8, 6, 13, 11, groups=2, dg=2, stride=(2, 1), sigma=2.0)
    grads = {}
    for device in ("cpu", "cuda"):
        leaves = [t.detach().to(device).requires_grad_() for t in tensors]
        out = modulated_deform_conv2d(*leaves, **params)
        weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=device)
        (out * weights.view_as(out)).sum().backward()
        grads[device] = [leaf.grad.cpu() for leaf in leaves]
    for name, cpu, cuda in zip(("input", "offset", "mask", "weight", "bias"),
                               grads["cpu"], grads["cuda"]):
        torch.testing.assert_close(cuda, cpu, rtol=1e-9, atol=1e-9, msg=name)


def test_half_backward_runs_and_matches_float():
    tensors, params = _make_case(2, 8, 8, 10, 12, sigma=2.0)
    results = {}
    for dtype in (torch.float32, torch.float16):
        leaves = [t.detach().to(dtype).requires_grad_() for t in tensors]
        modulated_deform_conv2d(*leaves, **params).float().sum().backward()
        results[dtype] = [leaf.grad.float() for leaf in leaves]
    for g32, g16 in zip(results[torch.float32], results[torch.float16]):
        assert _relative_l2(g16, g32.double()) < 1e-2


def _extreme_offsets(offset):
    values = torch.tensor([float("nan"), float("inf"), -float("inf"), 1e30, -1e30, 1e9, -1e9,
                           65504.0, -65504.0, -1.0, 1e-7], dtype=torch.float64)
    flat = offset.view(-1)
    flat[: flat.numel() // 2] = values.repeat(flat.numel() // (2 * len(values)) + 1)[
        : flat.numel() // 2].to(offset.dtype)
    return offset


def test_extreme_offsets_match_reference_without_crashing():
    tensors, params = _make_case(2, 8, 8, 9, 10, sigma=3.0)
    tensors[1] = _extreme_offsets(tensors[1].clone())
    reference = modulated_deform_conv2d_reference(*tensors, **params)
    for algorithm in ALGORITHMS:
        result = _forward([t.float() for t in tensors], params, algorithm)
        torch.cuda.synchronize()
        assert torch.equal(torch.isnan(result), torch.isnan(reference)), algorithm
        finite = ~torch.isnan(reference)
        assert torch.isfinite(result[finite]).all(), algorithm
        torch.testing.assert_close(result[finite].double(), reference[finite], rtol=1e-4,
                                   atol=1e-4)
    cpu = modulated_deform_conv2d(*[t.cpu() for t in tensors], **params)
    torch.testing.assert_close(cpu, reference.cpu(), rtol=1e-10, atol=1e-10, equal_nan=True)


def test_batch_zero_and_non_contiguous():
    tensors, params = _make_case(0, 4, 4, 8, 8)
    assert _forward(tensors, params).shape == (0, 4, 8, 8)
    tensors, params = _make_case(2, 4, 4, 8, 8)
    channels_last = [t.to(memory_format=torch.channels_last) if t.dim() == 4 else t
                     for t in tensors]
    torch.testing.assert_close(_forward(channels_last, params), _forward(tensors, params))


def _sanitize_run():
    """Every kernel over extreme offsets, for compute-sanitizer memcheck."""
    # split_k: a deep, small layer, so the implicit GEMM splits K (and keeps its counters);
    # at 32x32 its slices fill an H100's SMs and share the reduction (warp-specialised tiles).
    geometries = dict(GEOMETRIES, split_k=dict(n=1, c_in=256, c_out=64, h=16, w=16),
                      split_k_shared=dict(n=1, c_in=256, c_out=64, h=32, w=32))
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        for geometry in ("plain", "groups", "wide_channels", "odd_batch_strided", "split_k", "split_k_shared"):
            tensors, params = _make_case(**geometries[geometry])
            tensors[1] = _extreme_offsets(tensors[1].clone())
            tensors = [t.to(dtype) for t in tensors]
            # channels-last input: read in place by the implicit GEMM where it can
            x_cl = tensors[0].contiguous(memory_format=torch.channels_last)
            for algorithm in ("simple", "auto", "implicit_gemm"):
                for x in (tensors[0], x_cl):
                    try:
                        _forward([x, *tensors[1:]], params, algorithm)
                    except RuntimeError as error:  # implicit GEMM may not apply to a shape
                        print(f"{dtype} {geometry} {algorithm}: {str(error).splitlines()[0]}")
            leaves = [t.detach().requires_grad_() for t in tensors]
            modulated_deform_conv2d(*leaves, **params).float().sum().backward()
    torch.cuda.synchronize()
    print("sanitize run finished")


if __name__ == "__main__":
    if "--sanitize" in sys.argv:
        problem = _cuda_problem()
        if problem:
            sys.exit(problem)
        _sanitize_run()
