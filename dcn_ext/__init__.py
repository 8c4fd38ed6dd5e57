"""Modulated deformable convolution (DCNv2) for CenterNet on PyTorch 2.x.

The same package lives in two places: as ``dcn_ext`` in the centernet-patch repository and
as ``lib.models.networks.dcn`` inside a patched CenterNet tree, so every import inside it is
relative. Importing the package is cheap and never loads the compiled extension; the
module classes and the functional op load it on first use.
"""
from __future__ import annotations

from .contract import CONTRACT
from .reference import modulated_deform_conv2d_reference

__all__ = [
    "CONTRACT",
    "modulated_deform_conv2d_reference",
    "modulated_deform_conv2d",
    "ModulatedDeformConv",
    "ModulatedDeformConvPack",
    "DCN",
]


def __getattr__(name: str):
    # Lazy so that `import dcn_ext` (and the reference oracle) works before `_C` is built.
    if name == "modulated_deform_conv2d":
        from .functional import modulated_deform_conv2d
        return modulated_deform_conv2d
    if name in ("ModulatedDeformConv", "ModulatedDeformConvPack", "DCN"):
        from .modules import deform_conv
        return getattr(deform_conv, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
