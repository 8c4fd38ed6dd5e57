"""The names shared by the exporter, the ONNX file and the TensorRT plugin.

They are defined once, in ``contract.json`` beside this file; the TensorRT plugin's CMake
project generates its C++ header from the same file, so the two sides cannot drift.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Tuple

CONTRACT_PATH = Path(__file__).with_name("contract.json")


@dataclass(frozen=True)
class Contract:
    onnx_op_type: str
    onnx_domain: str
    onnx_domain_version: int
    plugin_name: str
    plugin_version: str
    plugin_namespace: str
    attributes: Dict[str, str]  # attribute name -> "int" | "ints"
    inputs: Tuple[str, ...]
    outputs: Tuple[str, ...]
    # The environment variable that lets the plugin keep its packed weights between
    # enqueues ("1"; unset or "0": pack on every enqueue), for engines whose DCN weights
    # are never refit.
    plugin_keep_packed_weights_env: str
    torch_library_namespace: str
    torch_op_name: str

    @property
    def torch_qualname(self) -> str:
        return f"{self.torch_library_namespace}::{self.torch_op_name}"


def load(path: Path = CONTRACT_PATH) -> Contract:
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    raw.pop("_comment", None)
    raw["inputs"] = tuple(raw["inputs"])
    raw["outputs"] = tuple(raw["outputs"])
    return Contract(**raw)


CONTRACT = load()
