"""TensorRT engines with the DCN plugin: one DCN layer, and a whole exported model.

Runs only where TensorRT's Python package, a CUDA GPU and TensorRT's headers are present;
elsewhere every test is skipped with the reason. Numbers are checked against the float64
reference (dcn_ext/reference.py) and, for the exported model, against PyTorch by verify.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dcn_ext.contract import CONTRACT
from patcher.errors import MissingDependencyError
from patcher.tensorrt import detect

TENSORRT = detect()
pytestmark = pytest.mark.skipif(TENSORRT is None, reason="TensorRT is not installed: the engine "
                                "tests run where TensorRT's Python package and a GPU are")

BATCH = 3
STRIDE, PADDING, DILATION, GROUPS, DEFORMABLE = (1, 1), (1, 1), (1, 1), 1, 1
CHANNELS, OUT_CHANNELS, HEIGHT, WIDTH, KERNEL = 16, 24, 12, 10, 3


@pytest.fixture(scope="module")
def torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to torch")
    return torch


@pytest.fixture(scope="module")
def plugin(tmp_path_factory, torch_cuda):
    from patcher.trt_build import build_plugin

    try:
        return build_plugin(tmp_path_factory.mktemp("tree")).library_path
    except MissingDependencyError as error:
        pytest.skip(str(error))


def dcn_layer_model(path: Path, dtype, rng: np.random.Generator):
    """An ONNX model of one DCN node, as the exporter writes it: custom domain, contract
    attributes, weight and bias as initializers, a dynamic batch."""
    import onnx
    from onnx import helper, numpy_helper

    from dcn_ext.onnx_export import custom_node_attributes

    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    taps = KERNEL * KERNEL * DEFORMABLE
    names = CONTRACT.inputs
    weight = (rng.standard_normal((OUT_CHANNELS, CHANNELS // GROUPS, KERNEL, KERNEL)) / 12).astype(dtype)
    bias = rng.standard_normal(OUT_CHANNELS).astype(dtype)
    node = helper.make_node(CONTRACT.onnx_op_type, list(names), list(CONTRACT.outputs),
                            domain=CONTRACT.onnx_domain,
                            **custom_node_attributes(STRIDE, PADDING, DILATION, GROUPS, DEFORMABLE))
    inputs = [helper.make_tensor_value_info(names[0], elem, ["batch", CHANNELS, HEIGHT, WIDTH]),
              helper.make_tensor_value_info(names[1], elem, ["batch", 2 * taps, HEIGHT, WIDTH]),
              helper.make_tensor_value_info(names[2], elem, ["batch", taps, HEIGHT, WIDTH])]
    output = helper.make_tensor_value_info(CONTRACT.outputs[0], elem, ["batch", OUT_CHANNELS, HEIGHT, WIDTH])
    graph = helper.make_graph([node], "dcn_layer", inputs, [output],
                              initializer=[numpy_helper.from_array(weight, names[3]),
                                           numpy_helper.from_array(bias, names[4])])
    model = helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid(CONTRACT.onnx_domain, CONTRACT.onnx_domain_version)])
    onnx.save(model, str(path))
    return weight, bias


def feeds(rng: np.random.Generator, dtype):
    taps = KERNEL * KERNEL * DEFORMABLE
    names = CONTRACT.inputs
    return {names[0]: rng.standard_normal((BATCH, CHANNELS, HEIGHT, WIDTH)).astype(dtype),
            names[1]: (rng.standard_normal((BATCH, 2 * taps, HEIGHT, WIDTH)) * 2).astype(dtype),
            names[2]: rng.random((BATCH, taps, HEIGHT, WIDTH)).astype(dtype)}


def reference(torch, x, weight, bias):
    from dcn_ext.reference import modulated_deform_conv2d_reference

    names = CONTRACT.inputs
    t = {k: torch.from_numpy(v.astype(np.float64)) for k, v in x.items()}
    return modulated_deform_conv2d_reference(
        t[names[0]], t[names[1]], t[names[2]], torch.from_numpy(weight.astype(np.float64)),
        torch.from_numpy(bias.astype(np.float64)), stride=STRIDE, padding=PADDING,
        dilation=DILATION, groups=GROUPS, deformable_groups=DEFORMABLE).numpy()


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_one_dcn_layer_engine_matches_the_reference(precision, plugin, torch_cuda, tmp_path):
    from patcher.tensorrt import build_engine, run_engine

    rng = np.random.default_rng(7)
    # TensorRT 11 takes precision from the ONNX types; TensorRT 10 from the FP16 flag.
    typed_fp16 = precision == "fp16" and TENSORRT.major >= 11
    dtype = np.float16 if typed_fp16 else np.float32
    model = tmp_path / "dcn.onnx"
    weight, bias = dcn_layer_model(model, dtype, rng)
    result = build_engine(model, tmp_path / "dcn.engine", plugin_library=plugin,
                          fp16=precision == "fp16" and not typed_fp16, batch_profile=(1, 2, 4))
    assert result.batch_profile == (1, 2, 4)
    x = feeds(rng, dtype)
    expected = reference(torch_cuda, x, weight, bias)
    got = run_engine(result.engine_path, x)[CONTRACT.outputs[0]].astype(np.float64)
    assert got.shape == expected.shape == (BATCH, OUT_CHANNELS, HEIGHT, WIDTH)
    tolerance = 1e-4 if precision == "fp32" else 2e-2
    assert np.abs(got - expected).max() <= tolerance * max(1.0, np.abs(expected).max())
    # every image of the batch is right on its own
    for i in range(BATCH):
        single = run_engine(result.engine_path, {k: v[i:i + 1] for k, v in x.items()})
        np.testing.assert_array_equal(single[CONTRACT.outputs[0]], got[i:i + 1].astype(dtype))


def test_bench_reports_latency_statistics(plugin, torch_cuda, tmp_path):
    from patcher.tensorrt import bench_engine, build_engine

    model = tmp_path / "dcn.onnx"
    dcn_layer_model(model, np.float32, np.random.default_rng(0))
    engine = build_engine(model, tmp_path / "dcn.engine", plugin_library=plugin).engine_path
    stats = bench_engine(engine, warmup=2, iters=10, batch=2)
    assert stats.iters == 10 and stats.batch == 2
    assert 0 < stats.min_ms <= stats.median_ms <= stats.p99_ms
    assert stats.images_per_s == pytest.approx(2 * 1000 / stats.mean_ms)


def test_exported_model_engine_matches_pytorch(torch_cuda, tmp_path):
    """Miniature -> apply -> build (plugin included) -> export, then verify on TensorRT."""
    from patcher.demo import PASSED, run_demo
    from patcher.trt_build import build_plugin
    from patcher.verify import verify

    report = run_demo(tmp_path / "demo", task="ctdet")
    export = report.stage("export")
    if export.status != PASSED:
        pytest.skip(f"the pipeline did not export a model here: {export.status}: {export.detail}")
    onnx_path = report.outputs["ONNX model"]
    tree = report.outputs["CenterNet clone"]
    try:  # `build` builds it when the headers are found; make sure, it is quick when done
        build_plugin(tree)
    except MissingDependencyError as error:
        pytest.skip(str(error))
    result = verify(onnx_path, tree=tree, runtime="tensorrt")
    assert result.passed, [(h.name, h.max_abs) for h in result.heads]


def test_cli_build_engine_then_bench(plugin, torch_cuda, tmp_path, capsys):
    import json

    from patcher import cli

    model = tmp_path / "dcn.onnx"
    dcn_layer_model(model, np.float32, np.random.default_rng(1))
    engine = tmp_path / "dcn.engine"
    assert cli.main(["build-engine", str(model), "--plugin", str(plugin), "--out", str(engine),
                     "--min-batch", "1", "--opt-batch", "2", "--max-batch", "4"]) == 0
    assert engine.is_file() and Path(str(engine) + ".build.log").is_file()
    assert json.loads(Path(str(engine) + ".json").read_text())["batch_profile"] == [1, 2, 4]
    # bench finds the plugin through the engine's sidecar
    report = tmp_path / "bench.json"
    assert cli.main(["bench", str(engine), "--batch", "4", "--warmup", "1", "--iters", "5",
                     "--json", str(report)]) == 0
    stats = json.loads(report.read_text())
    assert stats["batch"] == 4 and stats["iters"] == 5 and len(stats["latencies_ms"]) == 5
    assert "images/s" in capsys.readouterr().out
