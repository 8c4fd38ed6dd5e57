"""The implicit GEMM's launch rule (block shape and split of K), run on the CPU.

The rule is host code in the shared kernel header; a small host program prints what it
picks for the CenterNet layer shapes on an H100-sized GPU (132 SMs, 228 KB of shared memory
per SM) and these tests check the properties the kernels rely on:
- a split launch of one image fits one wave of resident blocks (splits fill idle SMs);
- with wgmma, and in fp32, one image takes about one large block per SM, and the
  warp-specialised tiles wherever one wave of them holds a launch (any batch);
- a batch chooses its own split: it splits big-K layers that one unsplit wave would leave
  underfilled, and does not split where one image's split would only multiply partials;
- every K slice gets at least 3 K steps (9 beyond 4 slices) and there are at most 8, except
  on the warp-specialised tiles, whose slices share the reduction: at least 4 steps, at
  most 16 slices;
- the workspace shrinks when the caller provides channels-last input and packed weights.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.dcn_layers import model_layers  # noqa: E402

SMS, SMEM_PER_SM = 132, 228 * 1024
BATCHES = (1, 3, 8)

PROGRAM = r"""
#include <cstdio>
#include <vector>
#include "dcn_ext/csrc/kernels/modulated_deform_conv_igemm.cuh"

template <typename T>
void report(const char* dtype, int batch, int cin, int cout, int h, int w) {
  dcn::ConvGeometry g{};
  g.batch = batch; g.in_channels = cin; g.height = h; g.width = w; g.out_channels = cout;
  g.kernel_h = g.kernel_w = 3; g.stride_h = g.stride_w = 1; g.pad_h = g.pad_w = 1;
  g.dilation_h = g.dilation_w = 1; g.groups = 1; g.deformable_groups = 1;
  g.out_height = h; g.out_width = w;
  const auto s = dcn::igemm::make_shape<T>(g);
  const auto c = dcn::igemm::choose_config<T>(s, SMS, SMEM, WGMMA != 0);
  const long long blocks = dcn::igemm::tile_count(s, c.tile) * c.split_k;
  const long long wave = (long long)SMS * dcn::igemm::tile_blocks_per_sm<T>(c.tile, SMEM);
  dcn::ForwardArgs<T> lean{};
  lean.geometry = g;
  lean.channels_last = true;
  lean.weight_packed = reinterpret_cast<const T*>(16);
  std::printf("%s %d %d %d %d %d tile=%d wgmma=%d split=%d blocks=%lld wave=%lld ksteps=%d ws=%zu lean_ws=%zu\n",
              dtype, batch, cin, cout, h, w, (int)c.tile, (int)dcn::igemm::is_wgmma_tile(c.tile), c.split_k, blocks, wave, s.k_steps,
              dcn::igemm::workspace_bytes_for<T>(g, c), dcn::igemm::workspace_bytes_for<T>(lean, c));
}

// The warp-specialised kernels' B image (ws_image_index): where each packed weight lands.
template <typename T>
void ws_image(const char* dtype, int cin, int cout) {
  dcn::ConvGeometry g{1, cin, 8, 8, cout, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 8, 8};
  const auto s = dcn::igemm::make_shape<T>(g);
  if (!s.ws_image) {
    std::printf("ws_image %s %d %d none\n", dtype, cin, cout);
    return;
  }
  constexpr int kChunk = dcn::igemm::Traits<T>::kChunk, kVec = dcn::igemm::Traits<T>::kVec;
  const int parts = dcn::igemm::Traits<T>::kTf32x3 ? 2 : 1;
  const size_t image = (size_t)parts * s.cout_pad * s.k_steps * kChunk;
  const size_t total = dcn::igemm::packed_weight_elements<T>(s), start = total - image;
  std::vector<char> seen(image, 0);
  bool inside = true, distinct = true, rows = true, swizzle = true;
  for (int part = 0; part < parts; ++part)
    for (int co = 0; co < s.cout_pad; ++co)
      for (int ps = 0; ps < s.k_steps; ++ps)
        for (int c = 0; c < kChunk; ++c) {
          const size_t i = dcn::igemm::ws_image_index<T>(s, part, co, ps, c);
          if (i < start || i >= total) { inside = false; continue; }
          distinct = distinct && !seen[i - start];
          seen[i - start] = 1;
          // a bulk copy takes 64 rows from the tile's first element on
          const size_t tile = dcn::igemm::ws_image_index<T>(s, part, co / 64 * 64, ps, 0);
          rows = rows && i >= tile && (i - tile) / kChunk == (size_t)(co % 64);
          swizzle = swizzle && (int)((i - tile) % kChunk) == ((c / kVec) ^ (co % 8)) * kVec + c % kVec;
        }
  std::printf("ws_image %s %d %d inside=%d distinct=%d rows=%d swizzle=%d\n", dtype, cin, cout, inside, distinct,
              rows, swizzle);
}

int main() {
  ws_image<__half>("fp16", 64, 70);
  ws_image<__half>("fp16", 200, 130);
  ws_image<float>("fp32", 72, 64);
  std::printf("ra_channel");
  for (int k = 0; k < 64; ++k) std::printf(" %d", dcn::igemm::ra_channel(k));
  std::printf("\n");
  for (int cout : {64, 128, 200, 256, 320, 384, 512}) {
    dcn::ConvGeometry g{1, 256, 24, 80, cout, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 24, 80};
    const auto s = dcn::igemm::make_shape<__half>(g);
    std::printf("tile_64x256 %d %d %d %d %d %d\n", cout, (int)dcn::igemm::valid_config<__half>(s, {dcn::igemm::Tile::k64x256wg, 1}),
                (int)dcn::igemm::valid_config<__half>(s, {dcn::igemm::Tile::k64x256ws, 1}),
                (int)dcn::igemm::valid_config<float>(dcn::igemm::make_shape<float>(g), {dcn::igemm::Tile::k64x256ws, 1}),
                (int)dcn::igemm::valid_config<__half>(s, {dcn::igemm::Tile::k32x256ws, 1}),
                (int)dcn::igemm::valid_config<float>(dcn::igemm::make_shape<float>(g), {dcn::igemm::Tile::k32x256ws, 1}));
  }
SHAPES
  return 0;
}
"""


def _shapes():
    seen = []
    for model, hw in (("dla_34", (512, 512)), ("dla_34", (384, 1280)), ("resdcn_18", (512, 512))):
        for layer in model_layers(model, hw, 1):
            key = (layer.cin, layer.cout, layer.height, layer.width)
            if key not in seen:
                seen.append(key)
    return seen + [(64, 64, 64, 128),  # a 64-channel layer with half a wave of 128-pixel tiles
                   (64, 72, 127, 61),  # a full and a partial N tile, patches cut by the edge (GPU test)
                   (40, 56, 125, 117), (64, 48, 125, 117),  # fp32's 128-row ws tile (GPU tests)
                   (512, 136, 11, 37)]  # the 32-row tile in K slices, a partial N tile (GPU tests)


class Picks(dict):
    """(dtype, batch, cin, cout, h, w) -> the rule's pick; ra_channel: the register-A weight order;
    tile_64x256: output channels -> whether a 64x256wg and a 64x256ws launch are valid in fp16,
    a 64x256ws one in fp32, a 32x256ws one in fp16 and in fp32 (wgmma builds)."""
    ra_channel: list
    tile_64x256: dict
    ws_image: dict


@pytest.fixture(scope="module", params=[False, True], ids=["mma", "wgmma"])
def choices(tmp_path_factory, request):
    """The rule's picks without and with the wgmma kernels (an sm_90a build on an H100)."""
    wgmma = request.param
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not installed: cannot compile the kernel header's host code")
    calls = []
    for cin, cout, h, w in _shapes():
        for batch in BATCHES:
            for ctype, name in (("__half", "fp16"), ("__nv_bfloat16", "bf16"), ("float", "fp32")):
                calls.append(f'  report<{ctype}>("{name}", {batch}, {cin}, {cout}, {h}, {w});')
    work = tmp_path_factory.mktemp("igemm_rule")
    source = work / "rule.cu"
    source.write_text(PROGRAM.replace("SHAPES", "\n".join(calls)), encoding="utf-8")
    binary = work / "rule"
    build = subprocess.run(["nvcc", "-std=c++17", f"-I{ROOT}", f"-DSMS={SMS}", f"-DSMEM={SMEM_PER_SM}",
                            f"-DWGMMA={int(wgmma)}", *(["-DDCN_IGEMM_WGMMA=1"] if wgmma else []),
                            "-gencode=arch=compute_90,code=sm_90", str(source), "-o", str(binary)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([str(binary)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    rows = Picks()
    rows.tile_64x256 = {}
    rows.ws_image = {}
    for line in run.stdout.splitlines():
        if line.startswith("ws_image "):
            _, dtype, cin, cout, *checks = line.split()
            rows.ws_image[(dtype, int(cin), int(cout))] = checks
            continue
        if line.startswith("ra_channel "):
            rows.ra_channel = [int(v) for v in line.split()[1:]]
            continue
        if line.startswith("tile_64x256 "):
            _, cout, *valid = line.split()
            rows.tile_64x256[int(cout)] = tuple(bool(int(v)) for v in valid)
            continue
        dtype, batch, cin, cout, h, w, *fields = line.split()
        values = dict(f.split("=") for f in fields)
        rows[(dtype, int(batch), int(cin), int(cout), int(h), int(w))] = {k: int(v) for k, v in values.items()}
    assert len(rows) == len(calls)
    return wgmma, rows


def test_a_batch_chooses_its_own_split(choices):
    """Measured on an H100 (bench/NOTES.md): one image's split kept for batch 8 cost 54
    instead of 45 us at 256->256 32x32; no split at batch 8 cost 473 instead of 311 us
    (fp32) at 512->256 12x40, whose 144 K steps then ran in one underfilled wave. (With
    wgmma, 16-bit types run that layer unsplit: in 32-row blocks over two full waves, v32,
    or in 64x256ws blocks, which gather each pixel once for all 256 outputs, v33.)"""
    wgmma, rows = choices
    for dtype in ("fp16", "fp32"):
        wide_32 = rows[(dtype, 8, 256, 256, 32, 32)]
        assert wide_32["split"] == 1 < rows[(dtype, 1, 256, 256, 32, 32)]["split"], (dtype, wide_32)
        deep = rows[(dtype, 8, 512, 256, 12, 40)]
        if wgmma and dtype == "fp16":
            assert (deep["tile"], deep["split"]) in ((18, 1), (20, 1), (21, 1)), deep  # k32x128ws, k64x256ws, k32x256ws
            continue
        assert deep["split"] > 1 and deep["blocks"] > deep["wave"], (dtype, deep)
        assert deep["ksteps"] // deep["split"] >= 3


def test_wgmma_tiles_only_where_built_and_for_every_type(choices):
    wgmma, rows = choices
    picked = {dtype for (dtype, *_), row in rows.items() if row["wgmma"]}
    assert picked == ({"fp16", "bf16", "fp32"} if wgmma else set()), picked
    if wgmma:  # the wide 64->64 layers at 128x128 take a wgmma tile, fp32 (3xTF32) too
        for dtype in ("fp16", "fp32"):
            assert rows[(dtype, 1, 64, 64, 128, 128)]["wgmma"] == 1, dtype


@pytest.mark.parametrize("choices", [True], ids=["wgmma"], indirect=True)
def test_wgmma_batches_take_the_tile_of_least_modelled_time(choices):
    """On wgmma a batch weighs each tile's step time, the warp-specialised tiles and 64x256
    included (fourteenth-session batch-8 sweep of every tile at splits 1-8 on an H100,
    bench/NOTES.md v25). The warp-specialised tiles gather a step in about half a wgmma
    tile's time, also over several waves: fp32 256->256 at 24x80 238 instead of 331 us
    (64x128wg), 256->64 at 24x80 92 instead of 137 us (64x64wg); fp16 256->64 at 24x80 34
    instead of 38 us. fp16's 64x256wg does the most work per step: 256->256 at 24x80 66
    instead of 85 us (64x128wg) and 77 (64x128ws). It needs 256 to divide the padded output
    channels (the packed weights end there) and does not fit fp32's shared memory.
    Batches whose tiles fit one wave of warp-specialised blocks share their slices'
    reduction (next test). Seventeenth session (v33): 64x256ws, one consumer warpgroup
    with two n128 products a step, beats it in 16-bit types wherever a wave of its blocks
    is busy (fp16 batch 8: 256->256 at 24x80 65.5 -> 49.4 us, at 32x32 33.8 -> 25.3 us;
    batch 3 at 24x80 34.1 -> 25.5 us)."""
    _, rows = choices
    k64x64ws, k64x128ws, k64x256wg, k64x256ws, k32x256ws = 14, 15, 13, 20, 21  # dcn::igemm::Tile
    assert rows[("fp32", 8, 256, 256, 24, 80)]["tile"] == k64x128ws
    assert rows[("fp32", 8, 256, 128, 24, 80)]["tile"] == k64x128ws
    for dtype in ("fp16", "bf16", "fp32"):
        assert (rows[(dtype, 8, 256, 64, 24, 80)]["tile"], rows[(dtype, 8, 256, 64, 24, 80)]["split"]) == (k64x64ws, 1)
    for dtype in ("fp16", "bf16"):
        for batch in (3, 8):
            assert (rows[(dtype, batch, 256, 256, 24, 80)]["tile"], rows[(dtype, batch, 256, 256, 24, 80)]["split"]) == \
                (k64x256ws, 1), (dtype, batch)
        assert (rows[(dtype, 8, 256, 256, 32, 32)]["tile"], rows[(dtype, 8, 256, 256, 32, 32)]["split"]) == (k64x256ws, 1)
        # v34: 32x256ws fills the wave with whole 4 x 8 patches where 64-row ones leave rows
        # empty (35.4 us against 46.1 for 64x256ws and 45.6 for 32x128ws over two waves)
        assert (rows[(dtype, 8, 512, 256, 12, 40)]["tile"], rows[(dtype, 8, 512, 256, 12, 40)]["split"]) == \
            (k32x256ws, 1), dtype
        # a block costs about 16 K steps besides its slice: a split that adds a wave
        # loses (batch 3, fp16: 128->128 at 64x64 22.9 us unsplit, 29.3 in two slices)
        assert (rows[(dtype, 3, 128, 128, 64, 64)]["tile"], rows[(dtype, 3, 128, 128, 64, 64)]["split"]) == (k64x128ws, 1)
        # its split launches ran above the model (256->256 at 32x32 batch 3, 2 slices: 20.6
        # against 18.6 us for 64x128ws unsplit): a split costs it a second block's fixed cost
        assert (rows[(dtype, 3, 256, 256, 32, 32)]["tile"], rows[(dtype, 3, 256, 256, 32, 32)]["split"]) == (k64x128ws, 1)
    for (dtype, batch, cin, cout, *shape), row in rows.items():
        if row["tile"] in (k64x256wg, k64x256ws, k32x256ws):  # 256 divides the outputs padded to 128
            assert dtype != "fp32" and -(-cout // 128) * 128 % 256 == 0, (dtype, cin, cout, shape, row)
        if row["tile"] in (k64x256ws, k32x256ws):  # batches only: one image's tiles leave most SMs idle
            assert batch > 1, (dtype, cin, cout, shape, row)
        if batch > 1:
            assert row["wgmma"] == 1, (dtype, cin, cout, shape, row)
            if dtype == "fp32":
                assert row["wave"] == SMS, (cin, cout, shape, row)  # one block per SM


@pytest.mark.parametrize("choices", [True], ids=["wgmma"], indirect=True)
def test_a_64x256_launch_is_refused_where_it_would_read_past_the_packed_weights(choices):
    """The packed weights are padded to a multiple of 128 output channels: a 64x256 tile
    over 64, 128, 320 or 384 outputs would read past them (forced on 128->64 at 48x160 by a
    sweep, it faulted on an H100), so valid_config, which every launch checks, refuses it;
    64x256ws and 32x256ws as well, and in fp32 always (their big and small parts leave the
    ring too few stages for two producer warpgroups: not built)."""
    _, rows = choices
    fits = {64: False, 128: False, 200: True, 256: True, 320: False, 384: False, 512: True}
    assert rows.tile_64x256 == {cout: (ok, ok, False, ok, False) for cout, ok in fits.items()}


def test_one_image_fits_one_wave_unless_unsplit_and_slices_keep_three_steps(choices):
    _, rows = choices
    ws_tiles = (14, 15, 17, 18, 19, 20, 21)  # dcn::igemm::Tile: k64x64ws, k64x128ws, k32x64ws, k32x128ws, k128x64ws, k64x256ws, k32x256ws
    for (dtype, batch, *shape), row in rows.items():
        if row["tile"] in ws_tiles:  # slices sharing the reduction: 4 steps, 16 at most
            assert 1 <= row["split"] <= 16 and row["ksteps"] // row["split"] >= 4, (dtype, shape, row)
            continue
        assert 1 <= row["split"] <= 8, (dtype, shape, row)
        if row["split"] > 4:  # deep splits only for the one-block-per-SM rule, 9 steps a slice
            assert row["ksteps"] // row["split"] >= 9, (dtype, shape, row)
        if row["split"] > 1:
            assert row["ksteps"] // row["split"] >= 3, (dtype, shape, row)
            if batch == 1:  # a split exists to fill the wave, never to overflow it
                assert row["blocks"] <= row["wave"], (dtype, shape, row)
    # The split is really used where one image's tiles leave most SMs idle.
    assert rows[("fp16", 1, 512, 256, 16, 16)]["split"] > 1


def test_batch_one_takes_about_one_large_block_per_sm(choices):
    """wgmma builds and fp32: the largest tile that, split into slices of at least 9 K
    steps, gives about one block per SM in one wave (a fourth-session sweep of every tile
    and split: 7-9 % faster than filling a wave of two small blocks per SM)."""
    wgmma, rows = choices
    for (dtype, batch, *shape), row in rows.items():
        if batch != 1 or not (dtype == "fp32" or wgmma):
            continue
        assert row["blocks"] * 10 >= 9 * SMS, (dtype, shape, row)
        assert row["blocks"] <= row["wave"] or row["split"] == 1, (dtype, shape, row)
    k64x128w8, k64x128ws = 6, 15  # dcn::igemm::Tile
    fp32_wide = rows[("fp32", 1, 128, 128, 64, 64)]
    assert (fp32_wide["tile"], fp32_wide["split"]) == (k64x128ws if wgmma else k64x128w8, 2)


@pytest.mark.parametrize("choices", [True], ids=["wgmma"], indirect=True)
def test_a_32_row_tile_unsplit_where_64_rows_would_need_slices(choices):
    """Fifteenth session (bench/NOTES.md v27, one H100, fp16 channels-last): where one
    wave of 64-row warp-specialised blocks needs two or more K slices, twice the blocks of
    32 rows do the same gathers per SM without the slices' partials and reduction: 128->64
    at 64x64 and 128->128 at 64x64 (18 K steps). Sixteenth session (v31, batch 1, fp16 and
    bf16, both layouts): with more K steps the twin still wins where it fills the wave in
    slices of at least 18 steps (256->256 at 24x80 unsplit 14.7 -> 13.8 us channels-last,
    512->256 at 12x40 in 4 slices 12.0 -> 11.3 us) and loses with shorter ones (256->64 at
    32x32 in 4 slices of 9 steps 7.4 -> 7.9 us; 512->256 at 16x16 would need 8). fp32,
    whose K steps are half as wide, keeps the 64-row slices. A batch whose 64-row tiles
    fill the wave unsplit keeps them."""
    _, rows = choices
    k64x64ws, k64x128ws, k32x64ws, k32x128ws = 14, 15, 17, 18  # dcn::igemm::Tile
    for dtype in ("fp16", "bf16"):
        assert (rows[(dtype, 1, 128, 64, 64, 64)]["tile"], rows[(dtype, 1, 128, 64, 64, 64)]["split"]) == (k32x64ws, 1)
        assert (rows[(dtype, 1, 128, 128, 64, 64)]["tile"], rows[(dtype, 1, 128, 128, 64, 64)]["split"]) == (k32x128ws, 1)
        # one image with more K steps: the twin where slices of 18 steps fill the wave (v31)
        picks = {shape: (rows[(dtype, 1, *shape)]["tile"], rows[(dtype, 1, *shape)]["split"])
                 for shape in ((256, 256, 24, 80), (512, 256, 12, 40), (256, 64, 24, 80), (256, 256, 32, 32),
                               (256, 64, 32, 32), (512, 256, 16, 16))}
        assert picks == {(256, 256, 24, 80): (k32x128ws, 1), (512, 256, 12, 40): (k32x128ws, 4),
                         (256, 64, 24, 80): (k32x64ws, 2), (256, 256, 32, 32): (k32x128ws, 2),
                         (256, 64, 32, 32): (k64x64ws, 8), (512, 256, 16, 16): (k64x128ws, 16)}, dtype
        odd = rows[(dtype, 1, 512, 136, 11, 37)]  # tests/test_igemm_gpu.py's case for the sliced twin
        assert (odd["tile"], odd["split"]) == (k32x128ws, 4), (dtype, odd)
    assert (rows[("fp32", 1, 128, 64, 64, 64)]["tile"], rows[("fp32", 1, 128, 64, 64, 64)]["split"]) == (k64x64ws, 2)
    assert (rows[("fp32", 1, 256, 256, 24, 80)]["tile"], rows[("fp32", 1, 256, 256, 24, 80)]["split"]) == (k64x128ws, 2)
    for (dtype, batch, cin, cout, *shape), row in rows.items():
        if row["tile"] in (k32x64ws, k32x128ws):
            assert dtype != "fp32", (batch, cin, cout, shape, row)
            if row["blocks"] > row["wave"]:  # several waves: the batch rule's cost model (v32), unsplit
                assert batch > 1 and row["split"] == 1, (dtype, batch, cin, cout, shape, row)
                continue
            assert row["ksteps"] <= 18 and row["split"] == 1 or batch == 1 and row["ksteps"] // row["split"] >= 18, \
                (dtype, batch, cin, cout, shape, row)
            assert 9 * SMS <= 10 * row["blocks"], (dtype, batch, cin, cout, shape, row)


@pytest.mark.parametrize("choices", [True], ids=["wgmma"], indirect=True)
def test_the_warp_specialised_tiles_where_one_wave_holds_them(choices):
    """Sixth-session sweep on an H100 (bench/NOTES.md v15): at batch 1 the warp-specialised
    twin of a 64-row wgmma tile was faster on 12 of the 14 DLA-34 shapes in fp16 (and in
    bf16 and fp32), e.g. 128->64 at 48x160 13.1 against 16.4 us. It holds one block per SM,
    so a launch that needs more (64->64 at 128x128: 256 tiles) keeps the wgmma tile. A
    batch whose tiles fit one such wave takes it too (eighth session, v16c, batch 8: fp16
    256->64 at 32x32 19.6 against 26.9 us, 512->256 at 16x16 24.7 against 30.4 us; bf16 and
    fp32 alike)."""
    _, rows = choices
    k64x64wg, k128x64wg, k64x64ws, k64x128ws, k32x64ws, k32x128ws = 9, 10, 14, 15, 17, 18  # dcn::igemm::Tile
    for dtype in ("fp16", "bf16", "fp32"):
        assert rows[(dtype, 1, 128, 64, 48, 160)]["tile"] == k64x64ws, dtype
        # (16-bit types: its 32-row twin, unsplit; previous test)
        assert rows[(dtype, 1, 256, 256, 24, 80)]["tile"] == (k64x128ws if dtype == "fp32" else k32x128ws), dtype
        if dtype == "fp32":  # 128-row ws blocks there (v29); 16-bit types take the register-A tile
            assert rows[(dtype, 1, 64, 64, 128, 128)]["tile"] == 19, dtype  # k128x64ws
        picks = {shape: (rows[(dtype, 8, *shape)]["tile"], rows[(dtype, 8, *shape)]["split"])
                 for shape in ((256, 64, 32, 32), (256, 128, 32, 32), (512, 256, 16, 16))}
        assert picks == {(256, 64, 32, 32): (k64x64ws, 1), (256, 128, 32, 32): (k64x128ws, 1),
                         (512, 256, 16, 16): (k64x128ws, 2)}, dtype
    for (dtype, batch, *shape), row in rows.items():  # batches may run several waves of them
        if row["tile"] in (k64x64ws, k64x128ws, k32x64ws, k32x128ws) and batch == 1:
            assert row["blocks"] <= row["wave"] == SMS and row["blocks"] * 10 >= 9 * SMS, (dtype, shape, row)


@pytest.mark.parametrize("choices", [True], ids=["wgmma"], indirect=True)
def test_fp32_takes_the_128_row_warp_specialised_tile_for_64_outputs_over_a_wave_of_them(choices):
    """Sixteenth session (bench/NOTES.md v29, one H100, fp32): the 128-row warp-specialised
    tile beat the rule's picks on the 64->64 layers at every batch (batch 1, channels-last:
    128x128 31.7 -> 25.9 us against 128x64wg, 96x320 60.7 -> 50.7 us; batch 8 224 -> 209
    and 406 -> 394 us against 64x64ws) and on 128->64 at batch 8 (94.7 -> 92.2 and 189.9
    -> 187.1 us), and lost everywhere else: with 128 or more outputs (each block gathers
    its rows once per 64 outputs), where its tiles leave most SMs idle (128->64 at batch
    1), and in 16-bit types, which do not build it."""
    _, rows = choices
    k64x64ws, k128x64ws = 14, 19  # dcn::igemm::Tile
    # (batch 3 at 96x320: the model puts 64x64ws within 3 % of it, as batch 4 measured)
    for batch, h, w in ((1, 128, 128), (1, 96, 320), (3, 128, 128), (8, 128, 128), (8, 96, 320)):
        row = rows[("fp32", batch, 64, 64, h, w)]
        assert (row["tile"], row["split"]) == (k128x64ws, 1), (batch, h, w, row)
    for cin, cout in ((40, 56), (64, 48)):  # tests/test_igemm_gpu.py's cases for it
        assert rows[("fp32", 1, cin, cout, 125, 117)]["tile"] == k128x64ws, (cin, cout)
    for h, w in ((64, 64), (48, 160)):
        assert rows[("fp32", 8, 128, 64, h, w)]["tile"] == k128x64ws, (h, w)
        assert rows[("fp32", 1, 128, 64, h, w)]["tile"] == k64x64ws, (h, w)
    for (dtype, batch, cin, cout, *shape), row in rows.items():
        if row["tile"] == k128x64ws:
            assert dtype == "fp32" and cout <= 64 and row["wave"] == SMS, (dtype, batch, cin, cout, shape, row)
            if batch == 1:  # one image: a wave or more of them (batches weigh waves in the model)
                assert row["blocks"] * 10 >= 9 * SMS, (dtype, batch, cin, cout, shape, row)


def test_the_register_a_tile_takes_64_channel_layers_of_a_wave_or_more_in_16_bit_types(choices):
    """Tenth session (bench/NOTES.md v20, one H100): the register-A tile runs 64->64 at
    128x128, batch 1, in 11.0 against 12.6 us (64x64wg) with channels-last fp16 input and
    14.6 against 15.9 us with NCHW input. Since its weight copy overlaps the first K step
    (twelfth session, v21b) it also beats the wgmma tiles on launches of several waves
    (96x320, batch 8), with either input layout, in fp16 and bf16. It holds one block per
    SM and does not split K, so it takes launches that fill at least 90 % of one wave,
    only in 16-bit types (fp32's 3xTF32 products need A in shared memory) and only on
    wgmma builds; a smaller 64-channel launch keeps the split tiles."""
    wgmma, rows = choices
    k128x64ra = 16  # dcn::igemm::Tile
    shapes = [(batch, 64, 64, h, w) for batch in BATCHES for h, w in ((128, 128), (96, 320))]
    for dtype in ("fp16", "bf16", "fp32"):
        for shape in shapes:
            row = rows[(dtype, *shape)]
            expected = wgmma and dtype != "fp32"
            assert (row["tile"] == k128x64ra) == expected, (dtype, shape, row)
            if row["tile"] == k128x64ra:
                assert row["split"] == 1 and 9 * SMS <= row["blocks"] * 10 and row["wave"] == SMS, row
        # tests/test_igemm_gpu.py's channels-last cases for the staged rows and the pairs
        edge = rows[(dtype, 1, 64, 72, 127, 61)]
        assert (edge["tile"] == k128x64ra) == (wgmma and dtype != "fp32"), (dtype, edge)
        small = rows[(dtype, 1, 64, 64, 64, 128)]  # 64 tiles of 128 pixels: another tile fills the SMs
        assert small["tile"] != k128x64ra and 9 * SMS <= small["blocks"] * 10, (dtype, small)
    for key, row in rows.items():  # other shapes (more than 64 input channels) never take it
        if key[2] > 64:
            assert row["tile"] != k128x64ra, (key, row)


def test_the_register_a_weight_order_is_a_permutation_of_each_thread_s_channels(choices):
    """K position k = 16 j + 8 h + 2 t + e of a tap is read by thread t (lane % 4) of wgmma's
    A fragment; the thread holds channels 16 t .. 16 t + 15 (two 16-byte loads a corner), in
    the order 4 j + 2 h + e. The packed weights must put channel ra_channel(k) at k."""
    _, rows = choices
    order = rows.ra_channel
    assert sorted(order) == list(range(64))
    for k, channel in enumerate(order):
        j, h, t, e = k // 16, (k // 8) % 2, (k // 2) % 4, k % 2
        assert channel == 16 * t + 4 * j + 2 * h + e


@pytest.mark.parametrize("choices", [True], ids=["wgmma"], indirect=True)
def test_warp_specialised_slices_that_share_the_reduction_split_deeper(choices):
    """Seventh-session sweep on an H100 (bench/NOTES.md v16, fp16 channels-last): with
    the slices sharing the reduction, 256->128 at 32x32 takes 8 slices of 64x128 (9.8
    against 10.7 us for 4 of 64x64), 256->64 at 32x32 8 of 64x64 (8.3 against 10.1 us on
    32x64w8), and 512->256 at 16x16 the fullest wave, 16 slices of 64x128 (10.1 us; 15
    slices, 120 blocks: 11.0 us)."""
    _, rows = choices
    k64x64ws, k64x128ws = 14, 15  # dcn::igemm::Tile
    for dtype in ("fp16", "bf16", "fp32"):
        picks = {shape: (rows[(dtype, 1, *shape)]["tile"], rows[(dtype, 1, *shape)]["split"])
                 for shape in ((256, 128, 32, 32), (256, 64, 32, 32), (512, 256, 16, 16))}
        assert picks == {(256, 128, 32, 32): (k64x128ws, 8), (256, 64, 32, 32): (k64x64ws, 8),
                         (512, 256, 16, 16): (k64x128ws, 16)}, dtype


def test_the_warp_specialised_b_image_holds_each_weight_once_where_a_bulk_copy_expects_it(choices):
    """Fifteenth session (bench/NOTES.md v28): a producer copies a K step's weights for 64
    outputs as one bulk copy of 64 rows of 128 bytes, already in wgmma's 128-byte swizzle
    (16-byte chunk j of row r at j ^ (r % 8)). Every packed weight (fp32: both parts) must
    land once, inside the packed buffer, in its row of its tile, at its swizzled chunk.
    Builds without wgmma pack no such image."""
    wgmma, rows = choices
    expected = ["inside=1", "distinct=1", "rows=1", "swizzle=1"] if wgmma else ["none"]
    assert rows.ws_image == {key: expected for key in (("fp16", 64, 70), ("fp16", 200, 130), ("fp32", 72, 64))}


def test_channels_last_input_and_packed_weights_shrink_the_workspace(choices):
    _, rows = choices
    for key, row in rows.items():
        assert row["lean_ws"] < row["ws"], (key, row)
