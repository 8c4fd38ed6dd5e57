"""ONNX export of models that contain the DCN op, on both PyTorch exporters.

Two output forms for each DCN layer:

* the custom node (``CONTRACT.onnx_op_type`` in domain ``CONTRACT.onnx_domain``), with the
  attributes ``CONTRACT.attributes`` plus ``plugin_version``/``plugin_namespace``, inputs
  input, offset, mask, weight, bias: what our TensorRT plugin registers;
* the standard ONNX ``DeformConv`` (opset >= 19), which ONNX Runtime >= 1.25 and
  TensorRT >= 10.1 run natively.

The dynamo exporter (``torch.onnx.export(dynamo=True)``, torch's default) ignores
``autograd.Function.symbolic``; it translates the registered op through a
``custom_translation_table`` entry, and takes output shapes from the op's fake kernel. The
TorchScript exporter (``dynamo=False``) uses a symbolic registered for the op's qualified
name; it sets the output type with sizes itself, since a custom node has no shape inference.

Every cross-boundary name comes from contract.py; nothing here spells them.
"""
from __future__ import annotations

import functools
import io
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import BinaryIO, Dict, List, Optional, Sequence, Tuple, Union

import torch

from . import ops
from .contract import CONTRACT

CUSTOM_OP = CONTRACT.onnx_op_type
STANDARD_OP = "DeformConv"  # the ONNX standard operator (opset 19)
DCN_OPS = (CUSTOM_OP, STANDARD_OP)
EXPORTERS = ("dynamo", "torchscript")
STANDARD_OP_MIN_OPSET = 19
PLUGIN_STRING_ATTRIBUTES = ("plugin_version", "plugin_namespace")

PathOrFile = Union[str, "os.PathLike[str]", BinaryIO]


# ---------------------------------------------------------------------------------------
# What goes into the node (shared by both exporters)
# ---------------------------------------------------------------------------------------

def custom_node_attributes(stride: Sequence[int], padding: Sequence[int],
                           dilation: Sequence[int], groups: int,
                           deformable_groups: int) -> Dict[str, object]:
    """Attribute name -> value of the custom node, in the contract's order.

    contract.json lists the attributes in the op's argument order (stride, padding,
    dilation, groups, deformable groups); their types ("ints"/"int") are checked here so a
    contract edit that breaks the pairing fails loudly instead of exporting garbage.
    """
    values = (list(stride), list(padding), list(dilation), int(groups), int(deformable_groups))
    if len(CONTRACT.attributes) != len(values):
        raise RuntimeError(f"contract attributes are not valid: got: {list(CONTRACT.attributes)} "
                           f"expected: {len(values)} names for stride, padding, dilation, "
                           f"groups, deformable groups")
    attributes: Dict[str, object] = {}
    for (name, kind), value in zip(CONTRACT.attributes.items(), values):
        expected_kind = "ints" if isinstance(value, list) else "int"
        if kind != expected_kind:
            raise RuntimeError(f"contract attribute {name!r} type is not valid: got: {kind!r} "
                               f"expected: {expected_kind!r}")
        attributes[name] = value
    attributes["plugin_version"] = CONTRACT.plugin_version
    attributes["plugin_namespace"] = CONTRACT.plugin_namespace
    return attributes


def standard_node_attributes(kernel_shape: Sequence[int], stride: Sequence[int],
                             padding: Sequence[int], dilation: Sequence[int], groups: int,
                             deformable_groups: int) -> Dict[str, object]:
    """Attributes of ONNX DeformConv (pads are [top, left, bottom, right])."""
    return {
        "dilations": list(dilation),
        "group": int(groups),
        "kernel_shape": [int(k) for k in kernel_shape],
        "offset_group": int(deformable_groups),
        "pads": [int(padding[0]), int(padding[1]), int(padding[0]), int(padding[1])],
        "strides": list(stride),
    }


# ---------------------------------------------------------------------------------------
# dynamo exporter: onnxscript translations
# ---------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _custom_op_schema():
    """An OpSchema for the custom node: onnxscript needs one to build a node it does not
    know. It is only handed to onnxscript, never registered with onnx globally."""
    from onnx import defs

    kinds = {"int": defs.OpSchema.AttrType.INT, "ints": defs.OpSchema.AttrType.INTS}
    attributes = [defs.OpSchema.Attribute(name, kinds[kind], "")
                  for name, kind in CONTRACT.attributes.items()]
    attributes += [defs.OpSchema.Attribute(name, defs.OpSchema.AttrType.STRING, "")
                   for name in PLUGIN_STRING_ATTRIBUTES]
    element_types = ["tensor(float)", "tensor(float16)", "tensor(bfloat16)", "tensor(double)"]
    return defs.OpSchema(
        CONTRACT.onnx_op_type, CONTRACT.onnx_domain, CONTRACT.onnx_domain_version,
        inputs=[defs.OpSchema.FormalParameter(name, "T") for name in CONTRACT.inputs],
        outputs=[defs.OpSchema.FormalParameter(name, "T") for name in CONTRACT.outputs],
        type_constraints=[("T", element_types, "")],
        attributes=attributes,
    )


def _dynamo_zero_bias(standard_opset, input, weight):
    out_channels = int(weight.shape[0])
    zeros = standard_opset.Constant(value_floats=[0.0] * out_channels)
    return standard_opset.CastLike(zeros, input)


def _dynamo_translation(dcn_op: str, opset: int):
    from onnxscript import values

    standard = values.Opset("", opset)
    custom_op = values.Op(values.Opset(CONTRACT.onnx_domain, CONTRACT.onnx_domain_version),
                          CONTRACT.onnx_op_type, _custom_op_schema())

    def translate_custom(input, offset, mask, weight, bias, stride, padding, dilation, groups,
                         deformable_groups):
        if bias is None:
            bias = _dynamo_zero_bias(standard, input, weight)
        return custom_op(input, offset, mask, weight, bias,
                         **custom_node_attributes(stride, padding, dilation, groups,
                                                  deformable_groups))

    def translate_standard(input, offset, mask, weight, bias, stride, padding, dilation,
                           groups, deformable_groups):
        if bias is None:
            bias = _dynamo_zero_bias(standard, input, weight)
        kernel_shape = [int(k) for k in weight.shape[2:]]
        return standard.DeformConv(input, weight, offset, bias, mask,
                                   **standard_node_attributes(kernel_shape, stride, padding,
                                                              dilation, groups,
                                                              deformable_groups))

    return translate_custom if dcn_op == CUSTOM_OP else translate_standard


# ---------------------------------------------------------------------------------------
# TorchScript exporter: symbolic functions
# ---------------------------------------------------------------------------------------

def _torchscript_symbolic(dcn_op: str):
    from torch.onnx import symbolic_helper

    def zero_bias(g, input, weight):
        out_channels = symbolic_helper._get_tensor_sizes(weight)[0]
        dtype = input.type().dtype() or torch.float32
        return g.op("Constant", value_t=torch.zeros(out_channels, dtype=dtype))

    def with_output_type(g_output, input, weight, offset):
        # A custom node has no shape inference: give its output a full type.
        batch = symbolic_helper._get_tensor_sizes(input)[0]
        out_channels = symbolic_helper._get_tensor_sizes(weight)[0]
        offset_sizes = symbolic_helper._get_tensor_sizes(offset)
        g_output.setType(input.type().with_sizes(
            [batch, out_channels, offset_sizes[2], offset_sizes[3]]))
        return g_output

    @symbolic_helper.parse_args("v", "v", "v", "v", "v", "is", "is", "is", "i", "i")
    def symbolic_custom(g, input, offset, mask, weight, bias, stride, padding, dilation, groups,
                        deformable_groups):
        if symbolic_helper._is_none(bias):
            bias = zero_bias(g, input, weight)
        attributes = custom_node_attributes(stride, padding, dilation, groups,
                                            deformable_groups)
        suffixed = {f"{name}_{_torchscript_suffix(value)}": value
                    for name, value in attributes.items()}
        node = g.op(f"{CONTRACT.onnx_domain}::{CONTRACT.onnx_op_type}", input, offset, mask,
                    weight, bias, **suffixed)
        return with_output_type(node, input, weight, offset)

    @symbolic_helper.parse_args("v", "v", "v", "v", "v", "is", "is", "is", "i", "i")
    def symbolic_standard(g, input, offset, mask, weight, bias, stride, padding, dilation,
                          groups, deformable_groups):
        if symbolic_helper._is_none(bias):
            bias = zero_bias(g, input, weight)
        kernel_shape = symbolic_helper._get_tensor_sizes(weight)[2:]
        attributes = standard_node_attributes(kernel_shape, stride, padding, dilation, groups,
                                              deformable_groups)
        suffixed = {f"{name}_{_torchscript_suffix(value)}": value
                    for name, value in attributes.items()}
        node = g.op(STANDARD_OP, input, weight, offset, bias, mask, **suffixed)
        return with_output_type(node, input, weight, offset)

    return symbolic_custom if dcn_op == CUSTOM_OP else symbolic_standard


def _torchscript_suffix(value: object) -> str:
    # g.op(...) spells the attribute type in the keyword: name_s for a string, name_i for an
    # int or a list of ints.
    return "s" if isinstance(value, str) else "i"


# ---------------------------------------------------------------------------------------
# The one entry point
# ---------------------------------------------------------------------------------------

def _check_options(dcn_op: str, exporter: str, opset: int) -> None:
    if dcn_op not in DCN_OPS:
        raise ValueError(f"dcn_op is not valid: got: {dcn_op!r} expected: one of {list(DCN_OPS)}")
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter is not valid: got: {exporter!r} "
                         f"expected: one of {list(EXPORTERS)}")
    if isinstance(opset, bool) or not isinstance(opset, int):
        raise ValueError(f"opset is not valid: got: {opset!r} expected: an int")
    if dcn_op == STANDARD_OP and opset < STANDARD_OP_MIN_OPSET:
        raise ValueError(f"opset is not valid for {STANDARD_OP}: got: {opset} "
                         f"expected: >= {STANDARD_OP_MIN_OPSET}")


def _default_names(prefix: str, count: int) -> List[str]:
    return [prefix] if count == 1 else [f"{prefix}_{i}" for i in range(count)]


def _count_outputs(model: torch.nn.Module, inputs: Tuple) -> int:
    with torch.no_grad():
        outputs = model(*inputs)
    return len(torch.utils._pytree.tree_leaves(outputs))


def _export_dynamo(model, inputs, path: str, dcn_op: str, opset: int,
                   input_names: Optional[List[str]], output_names: Optional[List[str]],
                   dynamic_batch: bool) -> None:
    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1)
        dynamic_shapes = tuple({0: batch} if isinstance(t, torch.Tensor) else None
                               for t in inputs)
    torch.onnx.export(
        model, inputs, path, dynamo=True, opset_version=opset,
        input_names=input_names, output_names=output_names,
        dynamic_shapes=dynamic_shapes,
        custom_translation_table={ops.forward_op(): _dynamo_translation(dcn_op, opset)},
        external_data=False, verbose=False,
    )


def _export_torchscript(model, inputs, path: str, dcn_op: str, opset: int,
                        input_names: Optional[List[str]], output_names: Optional[List[str]],
                        dynamic_batch: bool) -> None:
    qualname = f"{ops.NAMESPACE}::{ops.OP_NAME}"
    dynamic_axes = None
    if dynamic_batch:
        input_names = input_names or _default_names("input", len(inputs))
        output_names = output_names or _default_names("output", _count_outputs(model, inputs))
        dynamic_axes = {name: {0: "batch"} for name in [*input_names, *output_names]}
    torch.onnx.register_custom_op_symbolic(qualname, _torchscript_symbolic(dcn_op), opset)
    try:
        torch.onnx.export(
            model, inputs, path, dynamo=False, opset_version=opset,
            input_names=input_names, output_names=output_names, dynamic_axes=dynamic_axes,
            custom_opsets=({CONTRACT.onnx_domain: CONTRACT.onnx_domain_version}
                           if dcn_op == CUSTOM_OP else None),
            # The C++ op needs no inlining; keeping autograd functions as they are also
            # avoids pytorch#97160 for models that still wrap ops in autograd.Function.
            autograd_inlining=False,
        )
    finally:
        torch.onnx.unregister_custom_op_symbolic(qualname, opset)


def export_onnx(
    model: torch.nn.Module,
    example_inputs: Union[torch.Tensor, Sequence[torch.Tensor]],
    f: PathOrFile,
    *,
    dcn_op: str = CUSTOM_OP,
    exporter: str = "dynamo",
    opset: int = 19,
    input_names: Optional[Sequence[str]] = None,
    output_names: Optional[Sequence[str]] = None,
    dynamic_batch: bool = False,
) -> None:
    """Exports ``model`` to ONNX with every DCN layer as ``dcn_op`` and checks the result.

    Args:
        model: a module whose DCN layers call this package's op (ModulatedDeformConvPack,
            ModulatedDeformConv or the functional form). Exported as it is: call .eval()
            and .half() first as needed (an fp16 model gives an fp16-typed ONNX, the DCN
            node included).
        example_inputs: a tensor or a sequence of tensors for ``model(*example_inputs)``.
        f: a path, or a writable binary file object.
        dcn_op: CUSTOM_OP (contract.onnx_op_type, for our TensorRT plugin) or "DeformConv".
        exporter: "dynamo" (torch.onnx.export(dynamo=True)) or "torchscript" (dynamo=False).
        opset: default-domain opset; "DeformConv" needs >= 19.
        input_names, output_names: graph input/output names (exporter defaults if None).
        dynamic_batch: make dimension 0 of every input and output symbolic.

    Raises:
        ValueError: an option is not valid.
        onnx.checker.ValidationError: the exported model does not pass the full check.
        Anything torch.onnx.export raises when the model cannot be exported.
    """
    _check_options(dcn_op, exporter, opset)
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    export = _export_dynamo if exporter == "dynamo" else _export_torchscript
    names_in = list(input_names) if input_names is not None else None
    names_out = list(output_names) if output_names is not None else None
    with tempfile.TemporaryDirectory(prefix="dcn_onnx_") as scratch:
        path = os.path.join(scratch, "model.onnx")
        export(model, inputs, path, dcn_op, opset, names_in, names_out, dynamic_batch)
        check_onnx(path)
        if isinstance(f, (str, os.PathLike)):
            Path(f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, f)
        else:
            with open(path, "rb") as exported:
                shutil.copyfileobj(exported, f)


def check_onnx(model_or_path) -> None:
    """onnx.checker.check_model with full_check (shape inference) on a model or a path."""
    import onnx

    model = onnx.load(str(model_or_path)) if isinstance(model_or_path, (str, os.PathLike)) \
        else model_or_path
    onnx.checker.check_model(model, full_check=True)


def count_dcn_nodes(model_or_path) -> Dict[str, int]:
    """{CUSTOM_OP: n, "DeformConv": m}: DCN nodes in a model (ModelProto, path or bytes).

    A custom node counts only in the contract's domain; DeformConv only in the default
    ONNX domain. Nodes inside functions and subgraphs are not counted.
    """
    import onnx

    if isinstance(model_or_path, (bytes, bytearray)):
        model = onnx.load_from_string(bytes(model_or_path))
    elif isinstance(model_or_path, (str, os.PathLike)):
        model = onnx.load(str(model_or_path), load_external_data=False)
    elif isinstance(model_or_path, io.IOBase):
        model = onnx.load(model_or_path)
    else:
        model = model_or_path
    counts: Counter = Counter({CUSTOM_OP: 0, STANDARD_OP: 0})
    for node in model.graph.node:
        if node.op_type == CUSTOM_OP and node.domain == CONTRACT.onnx_domain:
            counts[CUSTOM_OP] += 1
        elif node.op_type == STANDARD_OP and node.domain in ("", "ai.onnx"):
            counts[STANDARD_OP] += 1
    return dict(counts)
