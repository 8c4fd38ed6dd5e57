"""The TensorRT-free parts of trt_plugin, as CI builds them: no TensorRT, no GPU.

CMake builds with -DDCN_TRT_FREE_ONLY=ON and warnings as errors: the field/shape logic and
its C++ unit test (run here), and the kernel translation unit (nvcc over the shared kernel
header, compiled only).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from patcher.doctor import find_nvcc

REPO = Path(__file__).resolve().parents[1]
CONTRACT = json.loads((REPO / "dcn_ext" / "contract.json").read_text())


@pytest.fixture(scope="module")
def trt_free_build(tmp_path_factory) -> Path:
    cmake = shutil.which("cmake")
    nvcc = find_nvcc()
    if cmake is None or nvcc is None:
        pytest.skip(f"needs cmake and nvcc (cmake: {cmake}, nvcc: {nvcc})")
    build = tmp_path_factory.mktemp("trt_free")
    configure = [cmake, "-S", str(REPO / "trt_plugin"), "-B", str(build), "-DDCN_TRT_FREE_ONLY=ON",
                 "-DDCN_WARNINGS_AS_ERRORS=ON", f"-DCMAKE_CUDA_COMPILER={nvcc}"]
    for command in (configure, [cmake, "--build", str(build), "-j", "2"]):
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        assert "warning:" not in (done.stdout + done.stderr).lower(), done.stdout + done.stderr
    return build


def test_field_and_shape_unit_tests_pass(trt_free_build):
    done = subprocess.run([str(trt_free_build / "dcnv2_fields_test")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    checks, failures = map(int, re.search(r"(\d+) checks, (\d+) failures", done.stdout).groups())
    assert failures == 0 and checks > 1000


def test_kernel_translation_unit_compiles_for_every_element_type(trt_free_build):
    library = trt_free_build / "libdcn_trt_kernels.a"
    symbols = subprocess.run(["nm", "-C", str(library)], capture_output=True, text=True).stdout
    assert "dcn_trt::launchForward(" in symbols
    assert "dcn_trt::forwardWorkspaceBytes(" in symbols
    # the shared kernel header instantiated for fp32, fp16 and bf16, not a copy of it
    for element in ("float", "__half", "__nv_bfloat16"):
        assert f"dcn::launch_forward<{element}>" in symbols


def test_generated_header_carries_the_contract(trt_free_build):
    header = (trt_free_build / "generated" / "dcnv2Contract.h").read_text()
    assert f'kPluginName[] = "{CONTRACT["plugin_name"]}"' in header
    assert f'kPluginVersion[] = "{CONTRACT["plugin_version"]}"' in header
    assert f'kPluginNamespace[] = "{CONTRACT["plugin_namespace"]}"' in header
    assert f'kKeepPackedWeightsEnv[] = "{CONTRACT["plugin_keep_packed_weights_env"]}"' in header
    listed = dict(re.findall(r'\{"(\w+)", AttributeKind::k(Ints?)\}', header))
    assert listed == {name: kind.capitalize() for name, kind in CONTRACT["attributes"].items()}
    inputs = re.findall(r'^\s+"(\w+)",$', header, re.MULTILINE)
    assert inputs == CONTRACT["inputs"]


def test_readme_tables_name_the_contract():
    readme = (REPO / "trt_plugin" / "README.md").read_text()
    attribute_table = readme.split("## Attributes")[1].split("##")[0]
    assert re.findall(r"^\| `(\w+)` \|", attribute_table, re.MULTILINE) == list(CONTRACT["attributes"])
    io_table = readme.split("## Inputs and output")[1].split("##")[0]
    assert re.findall(r"^\| \d \| `(\w+)` \|", io_table, re.MULTILINE) == CONTRACT["inputs"]
    for key in ("plugin_name", "plugin_version", "plugin_namespace", "plugin_keep_packed_weights_env"):
        assert f"`{CONTRACT[key]}`" in readme
