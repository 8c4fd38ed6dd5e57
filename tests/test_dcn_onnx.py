"""ONNX export of DCN models on both exporters.

DeformConv form: run by ONNX Runtime (its own DeformConv kernel, an oracle we did not
write) and compared with PyTorch. Custom form: op type, domain, attributes and plugin
strings checked against contract.json itself (the file trt_plugin generates its names
from), weight/bias initializers, static output shape, full onnx.checker pass.
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

try:
    from dcn_ext.modules import DCN
    from dcn_ext.onnx_export import (CUSTOM_OP, STANDARD_OP, count_dcn_nodes, export_onnx)
except ImportError as error:  # not built
    pytest.skip(f"dcn_ext not built: {error}", allow_module_level=True)

CONTRACT_FILE = Path(__file__).resolve().parents[1] / "dcn_ext" / "contract.json"
EXPORTERS = ["dynamo", "torchscript"]
ONNX_TYPES = {"int": onnx.AttributeProto.INT, "ints": onnx.AttributeProto.INTS}


@pytest.fixture(autouse=True)
def _quiet_exporters():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        yield


def _lively(layer: DCN, seed: int) -> DCN:
    """Non-zero offsets and masks (a fresh layer's are all 0 and 0.5)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.conv_offset_mask.weight.copy_(
            torch.randn(layer.conv_offset_mask.weight.shape, generator=g) * 0.3)
        layer.conv_offset_mask.bias.copy_(
            torch.randn(layer.conv_offset_mask.bias.shape, generator=g))
        layer.bias.copy_(torch.randn(layer.bias.shape, generator=g))
    return layer


class SingleLayer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.dcn = _lively(DCN(4, 6, kernel_size=(3, 3), stride=1, padding=1), seed=1)

    def forward(self, x):
        return self.dcn(x)


class NoBiasLayer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.dcn = _lively(DCN(4, 5, kernel_size=3, stride=1, padding=1), seed=4)
        self.dcn.bias = None  # exported with a zero bias initializer

    def forward(self, x):
        return self.dcn(x)


class MultiLayer(torch.nn.Module):
    """Two DCN layers (one strided, one with 2 deformable groups) between plain layers,
    with two outputs, like a small CenterNet neck and heads."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.dcn1 = _lively(DCN(8, 8, kernel_size=3, stride=2, padding=1), seed=2)
        self.dcn2 = _lively(DCN(8, 6, kernel_size=3, stride=1, padding=1,
                                deformable_groups=2), seed=3)
        self.hm = torch.nn.Conv2d(6, 2, 1)
        self.wh = torch.nn.Conv2d(6, 2, 1)

    def forward(self, x):
        y = torch.relu(self.dcn2(torch.relu(self.dcn1(torch.relu(self.stem(x))))))
        return self.hm(y), self.wh(y)


def _export(model, x, **options) -> onnx.ModelProto:
    buffer = io.BytesIO()
    export_onnx(model.eval(), (x,), buffer, **options)
    return onnx.load_from_string(buffer.getvalue())


def _run_ort(model: onnx.ModelProto, x: torch.Tensor):
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})


def _outputs(model, x):
    with torch.no_grad():
        out = model(x)
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("net, shape", [(SingleLayer, (2, 4, 9, 11)),
                                        (NoBiasLayer, (1, 4, 7, 8)),
                                        (MultiLayer, (1, 3, 16, 20))],
                         ids=["single_layer", "single_layer_no_bias", "multi_layer"])
def test_deform_conv_form_runs_in_onnx_runtime_like_pytorch(exporter, net, shape):
    torch.manual_seed(0)
    model = net().eval()
    x = torch.randn(shape)
    exported = _export(model, x, dcn_op=STANDARD_OP, exporter=exporter, opset=19)
    expected_layers = sum(isinstance(m, DCN) for m in model.modules())
    assert count_dcn_nodes(exported) == {CUSTOM_OP: 0, STANDARD_OP: expected_layers}
    for got, want in zip(_run_ort(exported, x), _outputs(model, x), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_dynamic_batch(exporter):
    model = MultiLayer().eval()
    exported = _export(model, torch.randn(2, 3, 16, 20), dcn_op=STANDARD_OP, exporter=exporter,
                       dynamic_batch=True)
    batch_dim = exported.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value
    x = torch.randn(3, 3, 16, 20)
    for got, want in zip(_run_ort(exported, x), _outputs(model, x), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_custom_form_matches_the_contract(exporter):
    contract = json.loads(CONTRACT_FILE.read_text())
    model = MultiLayer().eval()
    exported = _export(model, torch.randn(1, 3, 16, 20), dcn_op=CUSTOM_OP, exporter=exporter)
    onnx.checker.check_model(exported, full_check=True)
    imports = {entry.domain: entry.version for entry in exported.opset_import}
    assert imports[contract["onnx_domain"]] == contract["onnx_domain_version"]
    nodes = [n for n in exported.graph.node if n.op_type == contract["onnx_op_type"]]
    assert len(nodes) == 2 and count_dcn_nodes(exported)[CUSTOM_OP] == 2
    initializers = {i.name for i in exported.graph.initializer}
    shapes = {vi.name: vi.type.tensor_type.shape for vi in
              [*exported.graph.value_info, *exported.graph.output]}
    expected_attributes = [
        {"stride": [2, 2], "padding": [1, 1], "dilation": [1, 1], "groups": 1,
         "deformable_group": 1},
        {"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1,
         "deformable_group": 2},
    ]
    for node, expected in zip(nodes, expected_attributes):
        assert node.domain == contract["onnx_domain"]
        attributes = {a.name: a for a in node.attribute}
        assert set(attributes) == set(contract["attributes"]) | {"plugin_version",
                                                                  "plugin_namespace"}
        for name, kind in contract["attributes"].items():
            assert attributes[name].type == ONNX_TYPES[kind], name
            assert onnx.helper.get_attribute_value(attributes[name]) == expected[name], name
        assert attributes["plugin_version"].s.decode() == contract["plugin_version"]
        assert attributes["plugin_namespace"].s.decode() == contract["plugin_namespace"]
        assert len(node.input) == len(contract["inputs"]) == 5
        assert node.input[3] in initializers and node.input[4] in initializers  # weight, bias
        output_dims = shapes[node.output[0]].dim
        assert len(output_dims) == 4 and all(d.dim_value > 0 for d in output_dims)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_fp16_model_exports_fp16_dcn_nodes(exporter):
    model = MultiLayer().eval().half()
    exported = _export(model, torch.randn(1, 3, 16, 20).half(), dcn_op=CUSTOM_OP,
                       exporter=exporter)
    fp16 = onnx.TensorProto.FLOAT16
    assert exported.graph.input[0].type.tensor_type.elem_type == fp16
    exported = onnx.shape_inference.infer_shapes(exported)  # types of the intermediates
    types = {vi.name: vi.type.tensor_type.elem_type for vi in
             [*exported.graph.value_info, *exported.graph.input, *exported.graph.output]}
    types.update({i.name: i.data_type for i in exported.graph.initializer})
    nodes = [n for n in exported.graph.node if n.op_type == CUSTOM_OP]
    assert len(nodes) == 2
    for node in nodes:
        for name in [*node.input, *node.output]:
            assert types.get(name) == fp16, name


def test_export_to_a_path(tmp_path):
    path = tmp_path / "sub" / "single.onnx"
    export_onnx(SingleLayer().eval(), torch.randn(1, 4, 6, 6), path, dcn_op=CUSTOM_OP,
                exporter="torchscript", input_names=["image"], output_names=["features"])
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["features"]
    assert count_dcn_nodes(str(path)) == {CUSTOM_OP: 1, STANDARD_OP: 0}


@pytest.mark.parametrize("options, message", [
    (dict(dcn_op="DeformConv", opset=17), r"opset is not valid for DeformConv: got: 17 expected: >= 19"),
    (dict(dcn_op="Conv"), r"dcn_op is not valid: got: 'Conv'"),
    (dict(exporter="onnx"), r"exporter is not valid: got: 'onnx'"),
])
def test_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        export_onnx(SingleLayer(), torch.randn(1, 4, 6, 6), io.BytesIO(), **options)
