"""Small ONNX graph tools: counting DCN nodes, rewriting DCNv2 to DeformConv, metadata.

The DCNv2 node's op type, domain and attribute names come from dcn_ext's contract; the
standard ``DeformConv`` (ONNX opset 19) is spelled here because it is ONNX's name, not
ours.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Iterable, List, Mapping

import onnx
from onnx import helper

from dcn_ext.contract import CONTRACT

from .errors import UsageError

DEFORM_CONV_OP = "DeformConv"  # ONNX's standard op
DEFORM_CONV_MIN_OPSET = 19  # the first opset that defines DeformConv
_DEFAULT_DOMAINS = ("", "ai.onnx")
# The key under which the whole metadata dict is stored as JSON (other keys are readable
# copies of its scalar fields for tools such as Netron).
METADATA_KEY = "centernet_patch"


def _all_nodes(model: onnx.ModelProto) -> Iterable[onnx.NodeProto]:
    yield from model.graph.node
    for function in model.functions:
        yield from function.node


def is_dcnv2(node: onnx.NodeProto) -> bool:
    return node.op_type == CONTRACT.onnx_op_type and node.domain == CONTRACT.onnx_domain


def is_deform_conv(node: onnx.NodeProto) -> bool:
    return node.op_type == DEFORM_CONV_OP and node.domain in _DEFAULT_DOMAINS


def count_dcn_nodes(model: onnx.ModelProto) -> Dict[str, int]:
    """DCN nodes by kind: {"DCNv2": n, "DeformConv": m} (keys from the contract and ONNX)."""
    nodes = list(_all_nodes(model))
    return {CONTRACT.onnx_op_type: sum(map(is_dcnv2, nodes)),
            DEFORM_CONV_OP: sum(map(is_deform_conv, nodes))}


def default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in _DEFAULT_DOMAINS:
            return entry.version
    raise UsageError("the ONNX model imports no default-domain opset")


def _pair(value: List[int], name: str) -> List[int]:
    if len(value) == 1:
        return [value[0], value[0]]
    if len(value) == 2:
        return list(value)
    raise UsageError(f"{CONTRACT.onnx_op_type} attribute {name}: expected 1 or 2 values, got: {value}")


def _contract_attributes(node: onnx.NodeProto) -> Dict[str, List[int]]:
    values: Dict[str, List[int]] = {}
    for attribute in node.attribute:
        if attribute.name not in CONTRACT.attributes:  # e.g. the plugin's version string
            continue
        value = helper.get_attribute_value(attribute)
        values[attribute.name] = list(value) if isinstance(value, (list, tuple)) else [int(value)]
    missing = [name for name in CONTRACT.attributes if name not in values]
    if missing:
        raise UsageError(f"{CONTRACT.onnx_op_type} node {node.name!r} lacks attributes {missing}")
    return values


def dcnv2_to_deform_conv(model: onnx.ModelProto) -> onnx.ModelProto:
    """Returns a copy whose DCNv2 nodes are the equivalent standard DeformConv nodes.

    Same tensors, same weights: only the node type, input order and attribute names change
    (DCNv2: input, offset, mask, weight, bias; DeformConv: X, W, offset, B, mask). The
    default-domain opset is raised to 19 where it is lower; that is refused if any other
    op in the graph changed meaning between the two opsets.
    """
    converted = onnx.ModelProto()
    converted.CopyFrom(model)
    # The contract lists inputs (input, offset, mask, weight, bias) and attributes (stride,
    # padding, dilation, groups, deformable_group) in a fixed order; roles follow from it.
    n_inputs = len(CONTRACT.inputs)
    stride_key, padding_key, dilation_key, groups_key, dg_key = CONTRACT.attributes
    graphs = [converted.graph] + [f for f in converted.functions]
    rewritten = 0
    for graph in graphs:
        nodes = list(graph.node)
        del graph.node[:]
        for node in nodes:
            if not is_dcnv2(node):
                graph.node.append(node)
                continue
            x, offset, mask, weight, bias = list(node.input) + [""] * (n_inputs - len(node.input))
            attrs = _contract_attributes(node)
            pad_h, pad_w = _pair(attrs[padding_key], padding_key)
            graph.node.append(helper.make_node(
                DEFORM_CONV_OP, [x, weight, offset, bias, mask], list(node.output),
                name=node.name,
                strides=_pair(attrs[stride_key], stride_key),
                pads=[pad_h, pad_w, pad_h, pad_w],
                dilations=_pair(attrs[dilation_key], dilation_key),
                group=attrs[groups_key][0],
                offset_group=attrs[dg_key][0],
            ))
            rewritten += 1
    if not rewritten:
        return converted
    _raise_default_opset(converted, DEFORM_CONV_MIN_OPSET)
    if not any(n.domain == CONTRACT.onnx_domain for n in _all_nodes(converted)):
        kept = [e for e in converted.opset_import if e.domain != CONTRACT.onnx_domain]
        del converted.opset_import[:]
        converted.opset_import.extend(kept)
    return converted


def _raise_default_opset(model: onnx.ModelProto, target: int) -> None:
    current = default_opset(model)
    if current >= target:
        return
    changed = sorted({
        node.op_type for node in _all_nodes(model)
        if node.domain in _DEFAULT_DOMAINS and node.op_type != DEFORM_CONV_OP
        and onnx.defs.get_schema(node.op_type, current).since_version
        != onnx.defs.get_schema(node.op_type, target).since_version
    })
    if changed:
        raise UsageError(
            f"cannot raise the model's opset from {current} to {target} for DeformConv: "
            f"these ops changed meaning in between: {', '.join(changed)}",
            tip=f"export with --opset {target} or later")
    for entry in model.opset_import:
        if entry.domain in _DEFAULT_DOMAINS:
            entry.version = target


def set_metadata(model: onnx.ModelProto, metadata: Mapping[str, Any]) -> None:
    """Stores ``metadata`` in the model's metadata_props (replacing earlier values)."""
    entries = {METADATA_KEY: json.dumps(dict(metadata))}  # key order = head order
    for key, value in metadata.items():
        entries[key] = value if isinstance(value, str) else json.dumps(value)
    kept = [p for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in entries.items():
        model.metadata_props.add(key=key, value=value)


def read_metadata(model: onnx.ModelProto) -> Dict[str, Any]:
    """The dict :func:`set_metadata` stored; empty when the model carries none."""
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return json.loads(prop.value)
    return {}
