"""DCNv2 -> DeformConv rewrite (checked against the float64 oracle), counts, metadata."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from dcn_ext.contract import CONTRACT
from dcn_ext.reference import modulated_deform_conv2d_reference
from patcher.errors import UsageError
from patcher.onnx_tools import (count_dcn_nodes, dcnv2_to_deform_conv, default_opset,
                                read_metadata, set_metadata)


def dcnv2_model(opset: int, weight: np.ndarray, bias: np.ndarray, *, stride=1, padding=1,
                extra_nodes=()) -> onnx.ModelProto:
    """input, offset, mask -> one contract DCNv2 node (weight, bias as initializers)."""
    attributes = dict(zip(CONTRACT.attributes, ([stride, stride], [padding, padding], [1, 1], 1, 1)))
    x, offset, mask, w, b = CONTRACT.inputs
    node = helper.make_node(CONTRACT.onnx_op_type, [x, offset, mask, w, b], ["dcn_out"],
                            domain=CONTRACT.onnx_domain, name="dcn0", **attributes)
    relu = helper.make_node("Relu", ["dcn_out"], ["output"])
    graph = helper.make_graph(
        [node, relu, *extra_nodes], "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", "c", "h", "w"]) for n in (x, offset, mask)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", "c", "h", "w"])],
        initializer=[numpy_helper.from_array(weight, w), numpy_helper.from_array(bias, b)])
    return helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", opset),
        helper.make_opsetid(CONTRACT.onnx_domain, CONTRACT.onnx_domain_version)])


@pytest.mark.parametrize("opset,stride", [(17, 1), (19, 2)])
def test_rewritten_model_matches_the_float64_reference(opset, stride):
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(5).astype(np.float32)
    model = dcnv2_model(opset, weight, bias, stride=stride)
    assert count_dcn_nodes(model) == {CONTRACT.onnx_op_type: 1, "DeformConv": 0}

    converted = dcnv2_to_deform_conv(model)
    onnx.checker.check_model(converted, full_check=True)
    assert count_dcn_nodes(converted) == {CONTRACT.onnx_op_type: 0, "DeformConv": 1}
    assert default_opset(converted) == max(opset, 19)
    assert CONTRACT.onnx_domain not in {e.domain for e in converted.opset_import}
    assert count_dcn_nodes(model)[CONTRACT.onnx_op_type] == 1  # the input is not modified

    out_size = (9 - 1) // stride + 1
    image = rng.standard_normal((2, 4, 9, 9)).astype(np.float32)
    offset = (3 * rng.standard_normal((2, 18, out_size, out_size))).astype(np.float32)
    mask = rng.uniform(0, 1, (2, 9, out_size, out_size)).astype(np.float32)
    session = onnxruntime.InferenceSession(converted.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    x, o, m = CONTRACT.inputs[:3]
    (actual,) = session.run(None, {x: image, o: offset, m: mask})
    expected = modulated_deform_conv2d_reference(
        *(torch.from_numpy(a) for a in (image, offset, mask, weight, bias)),
        stride=stride, padding=1).relu().numpy()
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-4)


def test_opset_raise_refused_when_another_op_changed_meaning():
    weight = np.zeros((2, 2, 3, 3), np.float32)
    # ReduceMean moved its axes from an attribute to an input in opset 18.
    reduce = helper.make_node("ReduceMean", ["output"], ["mean"], axes=[1])
    model = dcnv2_model(17, weight, np.zeros(2, np.float32), extra_nodes=[reduce])
    with pytest.raises(UsageError, match="ReduceMean") as caught:
        dcnv2_to_deform_conv(model)
    assert "--opset 19" in caught.value.tip


def test_model_without_dcnv2_is_returned_unchanged():
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert dcnv2_to_deform_conv(model) == model


def test_metadata_round_trip_keeps_head_order_and_replaces_values():
    model = dcnv2_model(19, np.zeros((2, 2, 3, 3), np.float32), np.zeros(2, np.float32))
    heads = {"hm": 3, "dep": 1, "rot": 8, "dim": 3, "wh": 2, "reg": 2}
    set_metadata(model, {"task": "ddd", "heads": heads, "opset": 19})
    set_metadata(model, {"task": "ddd", "heads": heads, "opset": 20})
    read = read_metadata(model)
    assert list(read["heads"]) == list(heads) and read["opset"] == 20
    props = {p.key: p.value for p in model.metadata_props}
    assert props["task"] == "ddd" and props["opset"] == "20"
    assert sum(p.key == "task" for p in model.metadata_props) == 1
