"""The DCN op on the CPU: numbers against the float64 reference, gradients, bad input,
extreme offsets, batch/contiguity/geometry variants, torch.compile and torch.export.

Needs the compiled extension (cd dcn_ext && python setup.py build_ext --inplace); skipped
with that reason otherwise.
"""
from __future__ import annotations

import math

import pytest
import torch

from dcn_ext.reference import modulated_deform_conv2d_reference
from dcn_ext.testing import random_case

try:
    from dcn_ext import ops
    from dcn_ext.functional import modulated_deform_conv2d
except ImportError as error:  # not built
    pytest.skip(f"dcn_ext not built: {error}", allow_module_level=True)


def make_case(**kwargs):
    return random_case(**kwargs)


GEOMETRIES = {
    "plain": {},
    "odd_batch": dict(n=3),
    "stride_pad_dilation_pairs": dict(h=10, w=13, stride=(2, 1), padding=(0, 2),
                                      dilation=(1, 2)),
    "groups_and_deformable_groups": dict(c_in=8, c_out=12, groups=2, dg=4),
    "kernel_5x3_no_bias": dict(kernel=(5, 3), padding=(2, 1), bias=False),
    "kernel_1x1": dict(kernel=(1, 1), padding=(0, 0)),
}


# ---------------------------------------------------------------------------------------
# The reference itself: checked against things that are not it
# ---------------------------------------------------------------------------------------

def _scalar_reference(x, offset, mask, weight, bias, stride, padding, dilation, groups, dg):
    """One output element at a time, straight from the DCNv2 formula (tiny inputs only)."""
    n_, c_in, h, w = x.shape
    c_out, c_per_group, kh, kw = weight.shape
    ho, wo = offset.shape[2:]
    out = torch.zeros(n_, c_out, ho, wo, dtype=torch.float64)

    def pixel(n, c, y, x_):
        return x[n, c, y, x_].item() if 0 <= y < h and 0 <= x_ < w else 0.0

    for n in range(n_):
        for o in range(c_out):
            group = o // (c_out // groups)
            for i_out in range(ho):
                for j_out in range(wo):
                    acc = 0.0 if bias is None else bias[o].item()
                    for cc in range(c_per_group):
                        c = group * c_per_group + cc
                        d = c // (c_in // dg)
                        for i in range(kh):
                            for j in range(kw):
                                k = i * kw + j
                                y = (i_out * stride[0] - padding[0] + i * dilation[0]
                                     + offset[n, d * 2 * kh * kw + 2 * k, i_out, j_out].item())
                                x_ = (j_out * stride[1] - padding[1] + j * dilation[1]
                                      + offset[n, d * 2 * kh * kw + 2 * k + 1, i_out, j_out].item())
                                value = 0.0
                                if -1 < y < h and -1 < x_ < w:
                                    y0, x0 = math.floor(y), math.floor(x_)
                                    ly, lx = y - y0, x_ - x0
                                    value = ((1 - ly) * (1 - lx) * pixel(n, c, y0, x0)
                                             + (1 - ly) * lx * pixel(n, c, y0, x0 + 1)
                                             + ly * (1 - lx) * pixel(n, c, y0 + 1, x0)
                                             + ly * lx * pixel(n, c, y0 + 1, x0 + 1))
                                acc += (weight[o, cc, i, j].item() * value
                                        * mask[n, d * kh * kw + k, i_out, j_out].item())
                    out[n, o, i_out, j_out] = acc
    return out


def test_reference_matches_scalar_formula():
    tensors, params = make_case(n=2, c_in=4, c_out=4, h=5, w=6, stride=(2, 1),
                                padding=(1, 2), dilation=(2, 1), groups=2, dg=2, sigma=3.0)
    expected = _scalar_reference(*tensors, params["stride"], params["padding"],
                                 params["dilation"], params["groups"], params["deformable_groups"])
    torch.testing.assert_close(modulated_deform_conv2d_reference(*tensors, **params), expected,
                               rtol=1e-12, atol=1e-12)


def test_reference_with_zero_offsets_and_unit_mask_is_a_convolution():
    tensors, params = make_case(c_in=6, c_out=4, h=9, w=8, stride=(2, 1), padding=(1, 2),
                                dilation=(2, 1), groups=2, dg=3)
    x, offset, mask, weight, bias = tensors
    result = modulated_deform_conv2d_reference(x, torch.zeros_like(offset), torch.ones_like(mask),
                                               weight, bias, **params)
    expected = torch.nn.functional.conv2d(x, weight, bias, params["stride"], params["padding"],
                                          params["dilation"], params["groups"])
    torch.testing.assert_close(result, expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------
# The CPU kernels against the reference
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_cpu_fp32_matches_float64_reference(name):
    tensors, params = make_case(**GEOMETRIES[name])
    reference = modulated_deform_conv2d_reference(*tensors, **params)
    result = modulated_deform_conv2d(*[None if t is None else t.float() for t in tensors],
                                     **params)
    assert result.dtype == torch.float32
    error = ((result.double() - reference).abs().max() / reference.abs().max()).item()
    assert error <= 1e-4, error


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_cpu_float64_matches_reference(name):
    tensors, params = make_case(**GEOMETRIES[name])
    torch.testing.assert_close(modulated_deform_conv2d(*tensors, **params),
                               modulated_deform_conv2d_reference(*tensors, **params),
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cpu_half_precision_runs_in_float(dtype):
    tensors, params = make_case(c_in=8, c_out=8, h=10, w=12)
    low = [t.to(dtype) for t in tensors]
    result = modulated_deform_conv2d(*low, **params)
    assert result.dtype == dtype
    reference = modulated_deform_conv2d_reference(*low, **params)
    error = ((result.double() - reference).norm() / reference.norm()).item()
    assert error < 5e-3, error  # only the output rounding remains


def _gradcheck(tensors, params, fast_mode):
    leaves = [t.requires_grad_() for t in tensors if t is not None]
    if tensors[4] is None:
        def function(x, offset, mask, weight):
            return modulated_deform_conv2d(x, offset, mask, weight, None, **params)
    else:
        def function(*args):
            return modulated_deform_conv2d(*args, **params)
    return torch.autograd.gradcheck(function, leaves, fast_mode=fast_mode)


def test_gradcheck_float64_cpu_full_jacobian():
    tensors, params = make_case(n=2, c_in=2, c_out=3, h=4, w=5, sigma=1.5)
    assert _gradcheck(tensors, params, fast_mode=False)


@pytest.mark.parametrize("name", ["stride_pad_dilation_pairs", "groups_and_deformable_groups",
                                  "kernel_5x3_no_bias"])
def test_gradcheck_float64_cpu(name):
    # fast_mode compares Jacobian-vector products in random directions: the full Jacobian
    # of every geometry would take minutes on a 2-core CI machine.
    geometry = dict(GEOMETRIES[name], n=1, h=6, w=7)
    tensors, params = make_case(**geometry, sigma=1.5)
    assert _gradcheck(tensors, params, fast_mode=True)


def test_gradients_match_reference_autograd():
    tensors, params = make_case(c_in=4, c_out=4, groups=2, dg=2)
    ours = [t.clone().requires_grad_() for t in tensors]
    theirs = [t.clone().requires_grad_() for t in tensors]
    modulated_deform_conv2d(*ours, **params).pow(2).sum().backward()
    modulated_deform_conv2d_reference(*theirs, **params).pow(2).sum().backward()
    for name, a, b in zip(("input", "offset", "mask", "weight", "bias"), ours, theirs):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-9, msg=name)


# ---------------------------------------------------------------------------------------
# Edge cases
# ---------------------------------------------------------------------------------------

def test_extreme_offsets_never_crash_and_follow_the_rule():
    tensors, params = make_case(c_in=4, c_out=3, h=6, w=7)
    offset = tensors[1]
    # every tap of pixel (0, 0): dy; of pixel (0, 1): dx
    specials = [float("nan"), float("inf"), -float("inf"), 1e30, -1e30, 1e9, -7.0, 6.999]
    for index, value in enumerate(specials):
        offset[0, 2 * index, 0, index % offset.shape[3]] = value
        offset[1, 2 * index + 1, 1, index % offset.shape[3]] = value
    result = modulated_deform_conv2d(*tensors, **params)
    reference = modulated_deform_conv2d_reference(*tensors, **params)
    torch.testing.assert_close(result, reference, rtol=1e-10, atol=1e-10, equal_nan=True)
    assert torch.isnan(result[0, :, 0, 0]).all()  # NaN offset -> NaN, not a silent 0
    nan_free = result.clone()
    nan_free[torch.isnan(nan_free)] = 0
    assert torch.isfinite(nan_free).all()


def test_offsets_far_outside_sample_zero():
    tensors, params = make_case(c_in=3, c_out=2, h=5, w=5)
    x, offset, mask, weight, bias = tensors
    for far in (1e6, -1e6, float("inf"), -float("inf")):
        result = modulated_deform_conv2d(x, torch.full_like(offset, far), mask, weight, bias,
                                         **params)
        torch.testing.assert_close(result, bias.view(1, -1, 1, 1).expand_as(result))


@pytest.mark.parametrize("batch", [0, 1, 3])
def test_batch_sizes(batch):
    tensors, params = make_case(n=batch)
    result = modulated_deform_conv2d(*tensors, **params)
    assert result.shape == (batch, 6, 7, 9)
    torch.testing.assert_close(result, modulated_deform_conv2d_reference(*tensors, **params))


def test_non_contiguous_inputs():
    tensors, params = make_case(n=2, c_in=4, c_out=6)
    reference = modulated_deform_conv2d(*tensors, **params)
    strided = [t.transpose(-1, -2).contiguous().transpose(-1, -2) if t.dim() == 4 else t
               for t in tensors]
    assert not strided[0].is_contiguous()
    torch.testing.assert_close(modulated_deform_conv2d(*strided, **params), reference)
    wide = make_case(n=2, c_in=8, c_out=6)[0][0][:, ::2]
    assert not wide.is_contiguous()
    torch.testing.assert_close(modulated_deform_conv2d(wide, *tensors[1:], **params),
                               modulated_deform_conv2d(wide.contiguous(), *tensors[1:],
                                                       **params))


def test_output_layout_follows_the_input_and_the_fake_kernel_agrees():
    """Channels-last in, channels-last out (what a network in torch.channels_last expects);
    NCHW otherwise. The fake kernel (torch.compile / export) must predict the same strides."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    tensors, params = make_case(n=2, c_in=4, c_out=6)
    nchw = modulated_deform_conv2d(*tensors, **params)
    x_cl = tensors[0].contiguous(memory_format=torch.channels_last)
    got = modulated_deform_conv2d(x_cl, *tensors[1:], **params)
    assert got.is_contiguous(memory_format=torch.channels_last) and not got.is_contiguous()
    assert nchw.is_contiguous()
    torch.testing.assert_close(got, nchw, rtol=0, atol=0)
    mode = FakeTensorMode()
    for x in (tensors[0], x_cl):
        real = modulated_deform_conv2d(x, *tensors[1:], **params)
        fakes = [mode.from_tensor(t) for t in (x, *tensors[1:])]
        with mode:
            fake = modulated_deform_conv2d(*fakes, **params)
        assert fake.stride() == real.stride(), (fake.stride(), real.stride())


def test_int_and_pair_arguments_are_equivalent():
    tensors, params = make_case(stride=(2, 2), padding=(1, 1), dilation=(1, 1))
    as_ints = dict(params, stride=2, padding=1, dilation=1)
    torch.testing.assert_close(modulated_deform_conv2d(*tensors, **as_ints),
                               modulated_deform_conv2d(*tensors, **params))


# ---------------------------------------------------------------------------------------
# Bad input: clear messages with got/expected, from Python and from the C++ op directly
# ---------------------------------------------------------------------------------------

def _bad_calls():
    (x, offset, mask, weight, bias), params = make_case(c_in=4, c_out=6, dtype=torch.float32)
    return [
        ("input rank", (x[0], offset, mask, weight, bias), params,
         r"input\.dim\(\) is not valid: got: 3 expected: 4"),
        ("offset channels", (x, offset[:, :16], mask, weight, bias), params,
         r"offset\.shape\[1\] is not valid: got: 16 expected: 18"),
        ("mask channels", (x, offset, mask[:, :8], weight, bias), params,
         r"mask\.shape\[1\] is not valid: got: 8 expected: 9"),
        ("offset size", (x, offset[..., :5], mask, weight, bias), params,
         r"offset\.shape\[3\] is not valid: got: 5 expected: 9"),
        ("groups", (x, offset, mask, weight[:, :2], bias), dict(params, groups=3),
         r"input\.shape\[1\] is not valid: got: 4 expected: a multiple of groups \(3\)"),
        ("weight channels", (x, offset, mask, weight[:, :3], bias), params,
         r"weight\.shape\[1\] is not valid: got: 3 expected: 4"),
        ("deformable groups", (x, offset, mask, weight, bias), dict(params, deformable_groups=3),
         r"input\.shape\[1\] is not valid: got: 4 expected: a multiple of deformable_groups"),
        ("dtype", (x, offset.double(), mask, weight, bias), params,
         r"offset\.dtype is not valid: got: torch\.float64 expected: torch\.float32"),
        ("bias", (x, offset, mask, weight, bias[:5]), params,
         r"bias\.shape is not valid: got: \[5\] expected: \[6\]"),
        ("stride", (x, offset, mask, weight, bias), dict(params, stride=(0, 1)),
         r"stride\[0\] is not valid: got: 0 expected: >= 1"),
        ("padding", (x, offset, mask, weight, bias), dict(params, padding=(1, 1, 1)),
         r"padding is not valid: got: \[1, 1, 1\] expected: 2 values"),
        ("too small", (x[..., :2, :2], offset, mask, weight, bias), dict(params, padding=0),
         r"output size is not valid: got: \(0, 0\)"),
    ]


@pytest.mark.parametrize("case", _bad_calls(), ids=lambda c: c[0])
def test_bad_input_messages(case):
    _, args, params, message = case
    with pytest.raises(ValueError, match=message):
        modulated_deform_conv2d(*args, **params)


def test_cpp_op_checks_on_its_own():
    """Calling the registered op directly (no Python checks) fails with the same kind of
    message rather than reading out of bounds."""
    (x, offset, mask, weight, bias), _ = make_case(dtype=torch.float32)
    op = ops.forward_op()
    with pytest.raises(ValueError, match=r"offset\.shape\[1\] is not valid: got: 16 expected: 18"):
        op(x, offset[:, :16], mask, weight, bias, [1, 1], [1, 1], [1, 1], 1, 1)
    with pytest.raises(ValueError, match=r"groups is not valid: got: 0 expected: >= 1"):
        op(x, offset, mask, weight, bias, [1, 1], [1, 1], [1, 1], 0, 1)
    with pytest.raises(ValueError, match=r"weight\.dtype is not valid: got: Double"):
        op(x, offset, mask, weight.double(), bias, [1, 1], [1, 1], [1, 1], 1, 1)
    with pytest.raises(ValueError, match=r"grad_output\.shape\[1\] is not valid: got: 5 expected: 6"):
        ops.backward_op()(torch.zeros(2, 5, 7, 9), x, offset, mask, weight, bias, [1, 1],
                          [1, 1], [1, 1], 1, 1)


# ---------------------------------------------------------------------------------------
# Tracing, torch.export and torch.compile go through the fake kernel
# ---------------------------------------------------------------------------------------

class _Layer(torch.nn.Module):
    def __init__(self, weight, bias, params):
        super().__init__()
        self.weight = torch.nn.Parameter(weight)
        self.bias = torch.nn.Parameter(bias)
        self.params = params

    def forward(self, x, offset, mask):
        return modulated_deform_conv2d(x, offset, mask, self.weight, self.bias, **self.params)


def test_torch_export_records_the_op_with_shapes():
    (x, offset, mask, weight, bias), params = make_case(dtype=torch.float32, stride=(2, 1))
    layer = _Layer(weight, bias, params)
    exported = torch.export.export(layer, (x, offset, mask))
    targets = [node.target for node in exported.graph.nodes if node.op == "call_function"]
    assert ops.forward_op() in targets
    output_node = next(n for n in exported.graph.nodes if n.target == ops.forward_op())
    assert tuple(output_node.meta["val"].shape) == (2, 6, 4, 9)
    torch.testing.assert_close(exported.module()(x, offset, mask), layer(x, offset, mask))


def test_torch_compile_forward_and_backward():
    (x, offset, mask, weight, bias), params = make_case(dtype=torch.float32)
    layer = _Layer(weight, bias, params)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    x_eager, x_compiled = x.clone().requires_grad_(), x.clone().requires_grad_()
    expected = layer(x_eager, offset, mask)
    result = compiled(x_compiled, offset, mask)
    torch.testing.assert_close(result, expected)
    expected.sum().backward()
    result.sum().backward()
    torch.testing.assert_close(x_compiled.grad, x_eager.grad)


def test_fake_kernel_reports_bad_shapes():
    (x, offset, mask, weight, bias), params = make_case(dtype=torch.float32)
    from torch._subclasses.fake_tensor import FakeTensorMode

    mode = FakeTensorMode()
    fakes = [mode.from_tensor(t) for t in (x, offset[:, :16].contiguous(), mask, weight, bias)]
    with mode:
        with pytest.raises(ValueError, match=r"offset\.shape\[1\] is not valid"):
            ops.forward_op()(*fakes, [1, 1], [1, 1], [1, 1], 1, 1)


# ---------------------------------------------------------------------------------------
# Loading: two importable copies of the package, and a copy that was never built
# ---------------------------------------------------------------------------------------

def _copy_package(destination, with_library):
    import shutil
    from pathlib import Path

    source = Path(ops.__file__).resolve().parent
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns(
        "build", "__pycache__", *([] if with_library else ["*.so"])))
    return destination


def _run_python(code, cwd):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True)


def test_two_copies_of_the_package_share_one_registration(tmp_path):
    """dcn_ext from this repository and lib.models.networks.dcn in a patched tree."""
    from pathlib import Path

    placed = tmp_path / "src" / "lib" / "models" / "networks" / "dcn"
    _copy_package(placed, with_library=True)
    repo = Path(ops.__file__).resolve().parents[1]
    done = _run_python(
        "import sys, torch\n"
        f"sys.path[:0] = [{str(repo)!r}, {str(tmp_path / 'src')!r}]\n"
        "from dcn_ext.modules import DCN as A\n"
        "from lib.models.networks.dcn.modules.deform_conv import DCN as B\n"
        "assert A is not B\n"
        "x = torch.randn(1, 4, 6, 6, requires_grad=True)\n"
        "a, b = A(4, 4, 3, 1, 1), B(4, 4, 3, 1, 1)\n"
        "b.load_state_dict(a.state_dict())\n"
        "torch.testing.assert_close(a(x), b(x))\n"
        "b(x).sum().backward()\n"
        "print('ok', x.grad.shape)\n", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout


def test_unbuilt_copy_says_how_to_build(tmp_path):
    placed = _copy_package(tmp_path / "dcn", with_library=False)
    done = _run_python("import dcn.reference\n"  # the oracle needs no build
                       "import dcn.functional\n", cwd=tmp_path)
    assert done.returncode != 0
    assert "ExtensionNotBuiltError" in done.stderr
    assert f"cd {placed} && python setup.py build_ext --inplace" in done.stderr
