"""FastDiv, the kernels' division by a launch's fixed divisors (multiply-high and shift),
against integer division, on the CPU: its host path is the same arithmetic as the device
path (__umulhi is the high half of the same 64-bit product).

The kernels use it for a tile's image and patch and a K step's tap and chunk, with
dividends below 2^31; a wrong quotient would read the wrong pixel or tap.
"""
from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROGRAM = r"""
#include <cstdio>
#include "dcn_ext/csrc/kernels/modulated_deform_conv_igemm.cuh"

int main() {
  long long checked = 0, wrong = 0;
  int d, n;
  while (std::scanf("%d %d", &d, &n) == 2) {
    const dcn::igemm::FastDiv by(d);
    ++checked;
    if (by.div(n) != n / d) {
      if (++wrong <= 5) std::printf("wrong %d / %d: got %d expected %d\n", n, d, by.div(n), n / d);
    }
  }
  std::printf("checked %lld wrong %lld\n", checked, wrong);
  return wrong != 0;
}
"""


def _pairs():
    rng = random.Random(0)
    top = (1 << 31) - 1
    divisors = list(range(1, 1025)) + [(1 << k) + e for k in range(10, 31) for e in (-1, 0, 1)]
    divisors += [rng.randrange(1, top) for _ in range(300)] + [top]
    for d in divisors:
        dividends = {0, 1, d - 1, d, d + 1, 2 * d - 1, 2 * d, top, top - 1, top - d}
        dividends |= {d * m + e for m in (3, 7, 1000, top // d) for e in (-1, 0, 1)}
        dividends |= {rng.randrange(0, top) for _ in range(40)}
        for n in sorted(dividends):
            if 0 <= n <= top:
                yield d, n


def test_fast_division_is_exact_for_31_bit_dividends(tmp_path):
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not installed: cannot compile the kernel header's host code")
    source = tmp_path / "fast_div.cu"
    source.write_text(PROGRAM, encoding="utf-8")
    binary = tmp_path / "fast_div"
    build = subprocess.run(["nvcc", "-std=c++17", f"-I{ROOT}", "-DDCN_IGEMM_WGMMA=1",
                            "-gencode=arch=compute_90,code=sm_90", str(source), "-o", str(binary)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-4000:]
    pairs = list(_pairs())
    run = subprocess.run([str(binary)], input="\n".join(f"{d} {n}" for d, n in pairs), capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    assert f"checked {len(pairs)} wrong 0" in run.stdout
