"""The plugin library built against TensorRT's headers, and the plugin object driven through
its C ABI by the harness (tools/dcnv2Harness.cpp) without libnvinfer, on the CPU: the
creator's names against the contract, createPlugin in both phases, the serialization round
trip, symbolic output shapes, and the errors a bad model gets.

Needs TensorRT's headers (TENSORRT_ROOT, system paths or the git-ignored .vendor/): skipped
with the reason where they are absent (CI).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dcn_ext.contract import CONTRACT
from patcher.errors import MissingDependencyError
from patcher.trt_build import build_plugin

INT32 = 5  # nvinfer1::PluginFieldType::kINT32


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    try:
        return build_plugin(tmp_path_factory.mktemp("tree"), cuda_arch="90", harness=True,
                            strict_warnings=True)
    except MissingDependencyError as error:
        pytest.skip(f"{error} ({error.tip})" if error.tip else str(error))


def harness(built, *args: str, env=None):
    done = subprocess.run([str(built.harness_path), *args[:1], str(built.library_path), *args[1:]],
                          capture_output=True, text=True, env=env)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def typical_fields(**override):
    values = {"stride": "1,1", "padding": "1,1", "dilation": "1,1", "groups": "1", "deformable_group": "1"}
    assert set(values) == set(CONTRACT.attributes)
    values.update(override)
    return [f"{name}={value}" for name, value in values.items()]


def test_builds_warning_free_and_exports_only_the_loader_entry_points(built):
    log = built.log_path.read_text()
    assert "warning:" not in log.lower()  # built with -Wall -Wextra -Werror as well
    assert built.tensorrt_version and int(built.tensorrt_version.split(".")[0]) >= 10
    nm = shutil.which("nm")
    readelf = shutil.which("readelf")
    if nm is None or readelf is None:
        pytest.skip("needs binutils (nm, readelf)")
    exported = subprocess.run([nm, "-D", "--defined-only", str(built.library_path)],
                              capture_output=True, text=True, check=True).stdout
    assert sorted(line.split()[-1] for line in exported.splitlines()) == ["getCreators", "setLoggerFinder"]
    needed = subprocess.run([readelf, "-d", str(built.library_path)],
                            capture_output=True, text=True, check=True).stdout
    assert "NEEDED" in needed
    assert "nvinfer" not in needed


def test_creator_reports_the_contract(built):
    rc, described = harness(built, "describe")
    assert rc == 0
    assert described["name"] == CONTRACT.plugin_name
    assert described["version"] == CONTRACT.plugin_version
    assert described["namespace"] == CONTRACT.plugin_namespace
    fields = {f["name"]: f for f in described["fields"]}
    assert set(fields) == set(CONTRACT.attributes)
    for name, kind in CONTRACT.attributes.items():
        assert fields[name]["type"] == INT32
        assert fields[name]["length"] == (2 if kind == "ints" else 1)


def test_build_phase_fields_round_trip_through_serialization(built):
    # scalars where the parser would pass INT, pairs where INTS
    rc, result = harness(built, "create", *typical_fields(stride="2", padding="1,0", dilation="2"))
    assert rc == 0 and result["ok"], result
    serialized = {f["name"]: f["values"] for f in result["serialized"]}
    assert serialized == {"stride": [2, 2], "padding": [1, 0], "dilation": [2, 2], "groups": [1],
                          "deformable_group": [1]}
    assert result["errors"] == [] and result["warnings"] == []
    # INT64 fields are accepted too; a field given twice is not
    values = [v for v in typical_fields() if not v.startswith("stride=")] + ["stride:i64=3,1"]
    rc, result = harness(built, "create", *values)
    assert rc == 0 and {f["name"]: f["values"] for f in result["serialized"]}["stride"] == [3, 1]
    rc, result = harness(built, "create", *typical_fields(), "groups=1")
    assert rc == 1 and "field 'groups' given twice" in result["errors"][0]


@pytest.mark.parametrize("override, message", [
    ({"padding": None}, "missing field 'padding'"),
    ({"stride": "1,1,1"}, "field 'stride' has 3 values: expected INT32 with 1 or 2 values"),
    ({"groups": "0"}, "field 'groups' is out of range: got: 0 expected: >= 1"),
    ({"dilation": "1,-2"}, "field 'dilation'[1] is out of range: got: -2"),
    ({"deformable_group": ""}, "field 'deformable_group' has 0 values"),
])
def test_invalid_fields_fail_with_a_message(built, override, message):
    values = typical_fields()
    for name, value in override.items():
        values = [v for v in values if not v.startswith(name + "=")]
        if value is not None:
            values.append(f"{name}={value}")
    for phase in ([], ["--runtime"]):
        rc, result = harness(built, "create", *phase, *values)
        assert rc == 1 and not result["ok"]
        assert len(result["errors"]) == 1 and message in result["errors"][0], result
        assert f"{CONTRACT.plugin_namespace}::{CONTRACT.plugin_name} plugin 'harness_layer'" in result["errors"][0]


@pytest.mark.parametrize("value,accepted", [("1", True), ("0", True), ("", True), ("yes", False), ("2", False)])
def test_keep_packed_weights_setting_is_checked_at_creation(built, value, accepted):
    # The plugin reads the variable when it is made (both phases); a value it does not know
    # fails the creation with a message naming the variable and the value.
    env = {**os.environ, CONTRACT.plugin_keep_packed_weights_env: value}
    for phase in ([], ["--runtime"]):
        rc, result = harness(built, "create", *phase, *typical_fields(), env=env)
        if accepted:
            assert rc == 0 and result["ok"], result
        else:
            assert rc == 1 and not result["ok"]
            assert len(result["errors"]) == 1, result
            assert f"{CONTRACT.plugin_keep_packed_weights_env} is '{value}'" in result["errors"][0], result


def test_float_field_is_rejected_with_its_type(built):
    values = [v for v in typical_fields() if not v.startswith("padding=")] + ["padding:f32=1.0"]
    rc, result = harness(built, "create", *values)
    assert rc == 1
    assert "field 'padding' has type kFLOAT32: expected INT32 with 1 or 2 values" in result["errors"][0]


def test_unknown_field_is_a_warning(built):
    rc, result = harness(built, "create", *typical_fields(), "strides=2,2")
    assert rc == 0 and result["ok"]
    assert any("ignored unknown field 'strides'" in w for w in result["warnings"])


def test_symbolic_output_shape_for_dynamic_batch_and_spatial(built):
    rc, result = harness(built, "shapes", *typical_fields(stride="2"), "--",
                         "input=?,16,?,?", "offset=?,18,?,?", "mask=?,9,?,?", "weight=32,16,3,3", "bias=32")
    assert rc == 0 and result["configured"], result
    batch, channels, height, width = result["output"]
    assert batch == "input0" and channels == "32"
    # (H + 2*1 - 3) floordiv 2 + 1, built with the builder's operations
    assert height == "((((input2 + 2) - 3) floordiv 2) + 1)"
    assert width == "((((input3 + 2) - 3) floordiv 2) + 1)"


@pytest.mark.parametrize("tensors, message", [
    (["input=2,16,8,8", "offset=2,17,8,8", "mask=2,9,8,8", "weight=32,16,3,3"],
     "offset.shape[1] is not valid: got: 17 expected: 18"),
    (["input=2,16,8,8", "offset=2,18,8,8", "mask=2,9,8,8", "weight=32,8,3,3"],
     "weight.shape[1] is not valid: got: 8 expected: 16"),
    (["input=2,16,8,8", "offset=2,18,8,8", "mask=2,9,8,8"], "expected 4 or 5 inputs"),
    (["input=2,16,8", "offset=2,18,8,8", "mask=2,9,8,8", "weight=32,16,3,3"], "input must have 4 dims"),
])
def test_bad_input_shapes_fail_at_build_time(built, tensors, message):
    rc, result = harness(built, "shapes", *typical_fields(), "--", *tensors)
    assert rc == 1 and any(message in e for e in result["errors"]), result


def test_unsupported_data_type_is_refused(built):
    rc, result = harness(built, "shapes", *typical_fields(), "--dtype=int32", "--",
                         "input=2,16,8,8", "offset=2,18,8,8", "mask=2,9,8,8", "weight=32,16,3,3")
    assert rc == 1
    assert "data type kINT32 is not supported: expected kFLOAT, kHALF or kBF16" in result["errors"][0]


def _gpu_runs_the_implicit_gemm() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 0)


def _formats(built, dtype: str, channels: int, out_channels: int, groups: int = 1):
    rc, result = harness(built, "shapes", *typical_fields(groups=str(groups)), f"--dtype={dtype}", "--",
                         f"input=?,{channels},?,?", "offset=?,18,?,?", "mask=?,9,?,?",
                         f"weight={out_channels},{channels // groups},3,3", f"bias={out_channels}")
    assert rc == 0 and result["configured"], result
    return result["formats"]


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_x_and_y_channels_last_only_together_and_where_the_kernels_read_it(built, dtype):
    """NCHW always. Channels-last x and y (kHWC8 for 16-bit types, kHWC for fp32) together,
    the other inputs NCHW, where the implicit GEMM reads x in place: a GPU of compute
    capability 8.0 or newer (none in CI: declined there), one group, channels a multiple of
    the K step (64 / 32). TensorRT then needs no reformat layers around the plugin when its
    neighbours run channels-last, and the plugin no NHWC copy of x."""
    formats = _formats(built, dtype, 64, 64)
    assert formats["linear"] and not formats["channels_last_x_only"] and not formats["channels_last_everywhere"]
    assert formats["channels_last"] == _gpu_runs_the_implicit_gemm(), formats
    for channels, out_channels, groups in ((16, 16, 1), (64, 64, 2), (72, 64, 1)):
        formats = _formats(built, dtype, channels, out_channels, groups)
        assert formats["linear"] and not formats["channels_last"], (channels, groups, formats)
