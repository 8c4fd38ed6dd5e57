"""The implicit-GEMM forward (forced through dcn_ext) against the float64 reference.

Shapes cover odd sizes, batch 3, channel counts that are not a multiple of the 64/32-channel
K step, stride 2, padding 2, two deformable groups, a 1x1 kernel, a split-K layer and one
with more tiles than an H100 has SMs.
"""
from __future__ import annotations

import pytest
import torch

from dcn_ext.reference import modulated_deform_conv2d_reference

CASES = [  # batch, cin, cout, h, w, kernel, stride, pad, deformable groups
    (3, 72, 40, 17, 23, 3, 1, 1, 1),
    (2, 96, 130, 13, 29, 3, 2, 1, 1),
    (1, 128, 32, 9, 11, 3, 1, 2, 2),
    (2, 33, 17, 8, 8, 1, 1, 0, 1),
    (1, 512, 256, 16, 16, 3, 1, 1, 1),
    # 169 tiles of 64 pixels, more than an H100 holds warp-specialised blocks at once (the
    # batch-1 rule then takes two wgmma blocks per SM); an odd number of outputs
    (1, 64, 63, 100, 97, 3, 1, 1, 1),
    # 64 (padded) input channels and one wave of 128-pixel tiles (119 to 132 on an H100):
    # the register-A tile (fp16/bf16), with 40 channels padded, 70 outputs (two N tiles,
    # the second partial) and patches cut by the image's edge; then stride 2 over a batch.
    (1, 64, 64, 128, 128, 3, 1, 1, 1),
    (1, 40, 70, 90, 79, 3, 1, 1, 1),
    (3, 64, 64, 150, 120, 3, 2, 1, 1),
    # several waves of 128-pixel tiles, two N tiles (the second partial), batch 2: the
    # register-A tile too (bench/NOTES.md v21b)
    (2, 64, 100, 96, 160, 3, 1, 1, 1),
    # batches on the batch rule's tiles (bench/NOTES.md v25, v32, v33, v34). 16-bit types:
    # 32x128ws unsplit; 64x256ws over 200 outputs (a partial N tile), patches cut by the
    # image's edge, in one wave and then in two; 32x256ws over two waves, 200 outputs;
    # 64x128ws over two waves, 70 outputs. fp32: 64x128ws in two or three waves, its two or
    # three K slices reduced by the last to finish
    (4, 384, 256, 10, 40, 3, 1, 1, 1),
    (2, 136, 200, 44, 52, 3, 1, 1, 1),
    (8, 256, 200, 24, 48, 3, 1, 1, 1),
    (8, 256, 200, 17, 45, 3, 1, 1, 1),
    (3, 100, 70, 50, 67, 3, 1, 1, 1),
    # the 32-row warp-specialised tiles, unsplit (16-bit types; bench/NOTES.md v27): 32x128
    # on 128 outputs; 32x64 on 40 outputs (a partial N tile), 100 input channels padded to
    # 128, patches cut by the image's edge. fp32 splits 64-row tiles there.
    (1, 128, 128, 64, 64, 3, 1, 1, 1),
    (1, 100, 40, 60, 61, 3, 1, 1, 1),
    # the 128-row warp-specialised tile (fp32; bench/NOTES.md v29): 40 input channels padded
    # to 64, 56 outputs (a partial N tile), 120 tiles of 128 pixels cut by the image's edge
    (1, 40, 56, 125, 117, 3, 1, 1, 1),
    # the 32-row tile in four K slices of 18 steps sharing the reduction (16-bit types; v31):
    # 136 outputs (the second N tile partial), patches cut by the image's edge
    (1, 512, 136, 11, 37, 3, 1, 1, 1),
    # DLA-34's 512->256 at 12x40, batch 8: 32x256ws unsplit (16-bit types, v34)
    (8, 512, 256, 12, 40, 3, 1, 1, 1),
]
LIMITS = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-3}


def _ops():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: the implicit-GEMM kernel runs on the GPU only")
    try:
        from dcn_ext import ops
    except ImportError as error:
        pytest.skip(f"dcn_ext is not built: {error}")
    if not ops.cuda_available():
        pytest.skip("dcn_ext was built without CUDA kernels")
    if torch.cuda.get_device_capability()[0] < 8:
        pytest.skip("the implicit-GEMM kernel needs compute capability 8.0 or newer")
    return ops


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_implicit_gemm_matches_float64_reference(case, dtype):
    ops = _ops()
    n, cin, cout, h, w, k, stride, pad, dg = case
    gen = torch.Generator(device="cuda").manual_seed(hash(case) % 10000)
    ho = (h + 2 * pad - k) // stride + 1
    wo = (w + 2 * pad - k) // stride + 1
    x = torch.randn(n, cin, h, w, device="cuda", generator=gen).to(dtype)
    offset = (2.0 * torch.randn(n, 2 * dg * k * k, ho, wo, device="cuda", generator=gen)).to(dtype)
    mask = torch.sigmoid(torch.randn(n, dg * k * k, ho, wo, device="cuda", generator=gen)).to(dtype)
    weight = (torch.randn(cout, cin, k, k, device="cuda", generator=gen) / (cin * k * k) ** 0.5).to(dtype)
    bias = torch.randn(cout, device="cuda", generator=gen).to(dtype)
    op = ops.forward_with_algorithm_op()
    algorithm = ops.FORWARD_ALGORITHMS["implicit_gemm"]
    args = (x, offset, mask, weight, bias, [stride] * 2, [pad] * 2, [1, 1], 1, dg, algorithm)
    out = op(*args)
    again = op(*args)
    ref = modulated_deform_conv2d_reference(x, offset, mask, weight, bias, stride, pad, 1, 1, dg)
    assert out.shape == ref.shape and out.dtype == dtype
    assert torch.isfinite(out).all()
    error = (torch.linalg.vector_norm(out.double() - ref) / torch.linalg.vector_norm(ref)).item()
    assert error <= LIMITS[dtype], f"relative L2 error {error:.3g} > {LIMITS[dtype]}"
    assert torch.equal(out, again), "split-K results must be repeatable"


def _layer(n, cin, cout, h, w, dtype, seed=0, dg=1):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(n, cin, h, w, device="cuda", generator=gen).to(dtype)
    offset = (2.0 * torch.randn(n, 18 * dg, h, w, device="cuda", generator=gen)).to(dtype)
    mask = torch.sigmoid(torch.randn(n, 9 * dg, h, w, device="cuda", generator=gen)).to(dtype)
    weight = (torch.randn(cout, cin, 3, 3, device="cuda", generator=gen) / (cin * 9) ** 0.5).to(dtype)
    bias = torch.randn(cout, device="cuda", generator=gen).to(dtype)
    return x, offset, mask, weight, bias


def _call(ops, x, offset, mask, weight, bias, dg=1):
    return ops.forward_with_algorithm_op()(x, offset, mask, weight, bias, [1, 1], [1, 1], [1, 1], 1, dg,
                                           ops.FORWARD_ALGORITHMS["auto"])


# (n, cin, cout, h, w, dg): channel counts the kernel reads channels-last as is (multiples
# of the 64 / 32-channel K step), one it must copy (72), split-K and several groups.
CHANNELS_LAST_CASES = [(2, 64, 64, 20, 28, 1), (1, 512, 256, 16, 16, 1), (1, 72, 40, 17, 23, 1),
                       (1, 128, 32, 9, 11, 2), (1, 64, 64, 100, 97, 1),
                       # the register-A tile: two N tiles; an odd channel count (staged epilogue)
                       (1, 64, 128, 128, 64, 1), (1, 64, 63, 127, 121, 1),
                       # ... and on several waves of its tiles
                       (2, 64, 100, 96, 160, 1),
                       # whole 64-channel rows staged by each warp, then a partial N tile
                       # stored pair by pair; patches cut by the image's edge; several waves
                       (1, 64, 72, 127, 61, 1), (2, 64, 64, 96, 160, 1),
                       # the 32-row warp-specialised tiles (16-bit types)
                       (1, 128, 64, 64, 64, 1), (1, 128, 128, 64, 64, 1), (1, 100, 40, 60, 61, 1),
                       # the 128-row warp-specialised tile (fp32): a partial N tile, edge-cut patches
                       (1, 64, 48, 125, 117, 1),
                       # the 32-row tile in K slices (16-bit types)
                       (1, 512, 136, 11, 37, 1),
                       # the 256-output warp-specialised tiles (16-bit types), edge-cut patches:
                       # 64 rows; 32 rows over 200 outputs (a partial N tile)
                       (6, 256, 256, 17, 45, 1), (7, 512, 200, 12, 37, 1)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", CHANNELS_LAST_CASES, ids=lambda c: "x".join(map(str, c)))
def test_channels_last_input_gives_the_same_values_channels_last(case, dtype):
    ops = _ops()
    n, cin, cout, h, w, dg = case
    x, offset, mask, weight, bias = _layer(n, cin, cout, h, w, dtype, seed=cin + dg, dg=dg)
    expected = _call(ops, x, offset, mask, weight, bias, dg)
    got = _call(ops, x.contiguous(memory_format=torch.channels_last), offset, mask, weight, bias, dg)
    assert got.is_contiguous(memory_format=torch.channels_last) and not got.is_contiguous()
    # Same samples, same order of arithmetic: only the layout differs.
    assert torch.equal(got, expected)
    ref = modulated_deform_conv2d_reference(x, offset, mask, weight, bias, 1, 1, 1, 1, dg)
    error = (torch.linalg.vector_norm(got.double() - ref) / torch.linalg.vector_norm(ref)).item()
    assert error <= LIMITS[dtype]


def test_packed_weights_follow_in_place_updates_and_new_tensors():
    """dcn_ext keeps packed weights between calls: an in-place update, or a new weight
    tensor that reuses the freed one's memory, must never see the stale copy."""
    ops = _ops()
    x, offset, mask, weight, bias = _layer(1, 128, 64, 24, 24, torch.float16, seed=3)
    first = _call(ops, x, offset, mask, weight, bias)
    weight.mul_(-0.5)  # in place: same tensor, same storage, new version
    got = _call(ops, x, offset, mask, weight, bias)
    expected = _call(ops, x, offset, mask, weight.clone(), bias)  # a tensor never packed before
    assert torch.equal(got, expected)
    assert not torch.equal(got, first)
    for seed in range(4):  # free the weight and let the allocator hand its memory to the next one
        del weight
        weight = _layer(1, 128, 64, 24, 24, torch.float16, seed=10 + seed)[3]
        got = _call(ops, x, offset, mask, weight, bias)
        ref = modulated_deform_conv2d_reference(x, offset, mask, weight, bias, 1, 1, 1, 1, 1)
        error = (torch.linalg.vector_norm(got.double() - ref) / torch.linalg.vector_norm(ref)).item()
        assert error <= 2e-3, f"stale packed weights after reallocation (seed {seed}): {error:.3g}"


@pytest.mark.parametrize("warm_on_capture_stream", [True, False])
def test_cuda_graph_replay_matches_eager(warm_on_capture_stream):
    """Captured on the stream that packed the weights (the graph holds the GEMM alone) or
    on another one (the graph packs into its workspace): replays equal the eager call."""
    ops = _ops()
    # 256 -> 64 at 32x32 splits K: the split-K counters take the same two routes.
    x, offset, mask, weight, bias = _layer(1, 256, 64, 32, 32, torch.float16, seed=5)
    expected = _call(ops, x, offset, mask, weight, bias)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    if warm_on_capture_stream:
        with torch.cuda.stream(stream):
            _call(ops, x, offset, mask, weight, bias)
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        out = _call(ops, x, offset, mask, weight, bias)
    for _ in range(3):
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(out, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", [(512, 256, 16, 16), (128, 128, 16, 16), (64, 64, 40, 40), (64, 64, 128, 128)],
                         ids=lambda s: "x".join(map(str, s)))
def test_a_batch_repeats_bit_for_bit_and_matches_its_images_alone(shape, dtype):
    """A call gives the same bits every time (no atomics, a fixed reduction order). A batch
    chooses its own split of K (fp32 512->256 at 16x16: 8 slices alone, 2 in a batch of
    8), so its fp32 sums may be formed in another order than its images alone: they agree
    to two units in the last place of the output type (TensorRT's plugin checks the same).
    64->64 at 128x128 runs the register-A tile (16-bit types, sm_90a) alone and in a batch."""
    ops = _ops()
    cin, cout, h, w = shape
    x, offset, mask, weight, bias = _layer(8, cin, cout, h, w, dtype, seed=cin + h)
    batch = _call(ops, x, offset, mask, weight, bias)
    assert torch.equal(_call(ops, x, offset, mask, weight, bias), batch)
    singles = torch.cat([_call(ops, x[i:i + 1], offset[i:i + 1], mask[i:i + 1], weight, bias)
                         for i in range(8)])
    bound = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
    difference = (batch.double() - singles.double()).abs().max().item() / singles.double().abs().max().item()
    assert difference <= bound, f"batch vs images alone: {difference:.3g} > {bound:.1g}"
