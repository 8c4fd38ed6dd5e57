from .deform_conv import DCN, ModulatedDeformConv, ModulatedDeformConvPack

__all__ = ["DCN", "ModulatedDeformConv", "ModulatedDeformConvPack"]
