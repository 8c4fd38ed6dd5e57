"""The implicit GEMM's 32-bit index limits (shape_supported, host code), run on the CPU.

The corner table forms every corner's element offset into the NHWC input in 32 bits,
including corners up to one row and one pixel past the last image (they lie outside the
image and read the zero pixel, but their offsets are still computed). shape_supported must
leave the implicit GEMM for the simple kernel before any of those offsets can pass 2^31.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIMIT = (1 << 31) - 1024  # shape_supported's kLimit

PROGRAM = r"""
#include <cstdio>
#include <cstdlib>
#include "dcn_ext/csrc/kernels/modulated_deform_conv_igemm.cuh"

int main(int argc, char** argv) {
  dcn::ConvGeometry g{};
  g.batch = std::atoi(argv[1]); g.in_channels = std::atoi(argv[2]);
  g.height = std::atoi(argv[3]); g.width = std::atoi(argv[4]); g.out_channels = 64;
  g.kernel_h = g.kernel_w = 3; g.stride_h = g.stride_w = 1; g.pad_h = g.pad_w = 1;
  g.dilation_h = g.dilation_w = 1; g.groups = 1; g.deformable_groups = 1;
  g.out_height = g.height; g.out_width = g.width;
  const auto s = dcn::igemm::make_shape<__half>(g);
  std::printf("%d %d\n", (int)dcn::igemm::shape_supported<__half>(g), s.c_pad);
  return 0;
}
"""


@pytest.fixture(scope="module")
def supported(tmp_path_factory):
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not installed: cannot compile the kernel header's host code")
    work = tmp_path_factory.mktemp("igemm_limits")
    (work / "limits.cu").write_text(PROGRAM, encoding="utf-8")
    binary = work / "limits"
    built = subprocess.run(["nvcc", "-std=c++17", f"-I{ROOT}", str(work / "limits.cu"), "-o", str(binary)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-4000:]

    def ask(batch, channels, height, width):
        out = subprocess.run([str(binary), str(batch), str(channels), str(height), str(width)],
                             capture_output=True, text=True, timeout=60, check=True).stdout.split()
        return out[0] == "1", int(out[1])
    return ask


def test_the_last_corner_past_the_input_stays_below_2_to_the_31(supported):
    # 64 channels, 4096 pixels a row: 8190 rows keep the farthest corner (one row and one
    # pixel past the input) in range, 8191 rows hold fewer than 2^31 elements themselves but
    # would put that corner past the limit.
    width = 4096
    ok, c_pad = supported(1, 64, 8190, width)
    assert ok and c_pad == 64
    assert (8190 * width + width + 1) * c_pad < LIMIT
    past, _ = supported(1, 64, 8191, width)
    assert 8191 * width * c_pad < LIMIT  # the input alone would still fit
    assert (8191 * width + width + 1) * c_pad >= LIMIT
    assert not past


def test_batches_count_every_image(supported):
    # The same bound over a batch: two images of 4095 rows fit, two of 4096 do not.
    assert supported(2, 64, 4095, 4096)[0]
    assert not supported(2, 64, 4096, 4096)[0]
