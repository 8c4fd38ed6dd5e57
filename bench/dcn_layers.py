"""The DCN layer shapes of CenterNet's DCN backbones, and their roofline floors.

Shapes come from upstream's pose_dla_dcn.py / resnet_dcn.py (see
shared notes upstream-centernet.md): every DCN is 3x3, stride 1, pad 1, one deformable
group; `div` is the output stride of the layer's feature map relative to the network input.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

# (module name, in channels, out channels, feature-map stride)
DLA34_LAYERS: List[Tuple[str, int, int, int]] = [
    ("dla_up.ida_0.proj_1", 512, 256, 32),
    ("dla_up.ida_0.node_1", 256, 256, 16),
    ("dla_up.ida_1.proj_1", 256, 128, 16),
    ("dla_up.ida_1.node_1", 128, 128, 8),
    ("dla_up.ida_1.proj_2", 256, 128, 16),
    ("dla_up.ida_1.node_2", 128, 128, 8),
    ("dla_up.ida_2.proj_1", 128, 64, 8),
    ("dla_up.ida_2.node_1", 64, 64, 4),
    ("dla_up.ida_2.proj_2", 128, 64, 8),
    ("dla_up.ida_2.node_2", 64, 64, 4),
    ("dla_up.ida_2.proj_3", 128, 64, 8),
    ("dla_up.ida_2.node_3", 64, 64, 4),
    ("ida_up.proj_1", 128, 64, 8),
    ("ida_up.node_1", 64, 64, 4),
    ("ida_up.proj_2", 256, 64, 16),
    ("ida_up.node_2", 64, 64, 4),
]

RESDCN18_LAYERS: List[Tuple[str, int, int, int]] = [
    ("deconv_layers.0", 512, 256, 32),
    ("deconv_layers.6", 256, 128, 16),
    ("deconv_layers.12", 128, 64, 8),
]

# Datasheet ceilings of an H100 SXM5 (dense): used when the ceilings were not measured.
H100_SXM_CEILINGS = {"fp16_tensor_tflops": 989.0, "fp32_simt_tflops": 67.0, "hbm_tbps": 3.35}

KERNEL = 3
TAPS = KERNEL * KERNEL


@dataclass(frozen=True)
class Layer:
    model: str
    name: str
    cin: int
    cout: int
    height: int
    width: int
    batch: int

    @property
    def key(self) -> str:
        return f"{self.model}:{self.name}:{self.height}x{self.width}:b{self.batch}"

    def gemm_flops(self) -> float:
        return 2.0 * self.batch * self.height * self.width * self.cout * self.cin * TAPS

    def sampling_flops(self) -> float:
        # 4 corner multiply-adds per sampled value (mask folded into the weights)
        return 8.0 * self.batch * self.height * self.width * self.cin * TAPS

    def min_bytes(self, element_bytes: int) -> float:
        """Each tensor read or written exactly once: input, offset, mask, weight, bias, output."""
        pixels = self.batch * self.height * self.width
        elements = (pixels * (self.cin + 3 * TAPS + self.cout)
                    + self.cout * self.cin * TAPS + self.cout)
        return float(elements * element_bytes)

    def floor_us(self, dtype_name: str, ceilings: dict) -> float:
        """max(compute time, memory time) with the given ceilings."""
        if dtype_name == "fp32":
            rate = ceilings["fp32_simt_tflops"] * 1e12
            element_bytes = 4
        else:
            rate = ceilings["fp16_tensor_tflops"] * 1e12
            element_bytes = 2
        # Sampling runs on the FP32 units whatever the storage type.
        compute = self.gemm_flops() / rate + self.sampling_flops() / (ceilings["fp32_simt_tflops"] * 1e12)
        memory = self.min_bytes(element_bytes) / (ceilings["hbm_tbps"] * 1e12)
        return max(compute, memory) * 1e6


def model_layers(model: str, input_hw: Tuple[int, int], batch: int) -> List[Layer]:
    table = DLA34_LAYERS if model == "dla_34" else RESDCN18_LAYERS
    h, w = input_hw
    return [Layer(model, name, cin, cout, h // div, w // div, batch) for name, cin, cout, div in table]
