"""The DCN module as a drop-in for upstream CenterNet's ``DCN``: constructor, state-dict
keys and shapes, initialisation and numbers."""
from __future__ import annotations

import io

import pytest
import torch

from dcn_ext.reference import modulated_deform_conv2d_reference

try:
    from dcn_ext.modules import DCN, ModulatedDeformConv, ModulatedDeformConvPack
    from dcn_ext.modules.deform_conv import DCN as DCN_FROM_RECIPE_PATH
except ImportError as error:  # not built
    pytest.skip(f"dcn_ext not built: {error}", allow_module_level=True)


def upstream_style_checkpoint(prefix: str, chi: int, cho: int, seed: int = 0):
    """The keys and shapes a checkpoint of upstream's DCN(chi, cho, kernel_size=(3, 3),
    stride=1, padding=1, dilation=1, deformable_groups=1) holds, with random values."""
    g = torch.Generator().manual_seed(seed)
    return {
        f"{prefix}weight": torch.randn(cho, chi, 3, 3, generator=g) * 0.1,
        f"{prefix}bias": torch.randn(cho, generator=g),
        f"{prefix}conv_offset_mask.weight": torch.randn(27, chi, 3, 3, generator=g) * 0.05,
        f"{prefix}conv_offset_mask.bias": torch.randn(27, generator=g),
    }


class DeformConvBlock(torch.nn.Module):
    """Shaped like upstream's DeformConv wrapper in pose_dla_dcn.py (actf + conv)."""

    def __init__(self, chi, cho):
        super().__init__()
        self.actf = torch.nn.Sequential(torch.nn.BatchNorm2d(cho), torch.nn.ReLU(inplace=True))
        self.conv = DCN(chi, cho, kernel_size=(3, 3), stride=1, padding=1, dilation=1,
                        deformable_groups=1)

    def forward(self, x):
        return self.actf(self.conv(x))


def test_recipe_import_path_and_aliases():
    assert DCN is ModulatedDeformConvPack is DCN_FROM_RECIPE_PATH
    assert issubclass(ModulatedDeformConvPack, ModulatedDeformConv)


def test_state_dict_keys_and_shapes_are_upstreams():
    layer = DCN(16, 8, kernel_size=(3, 3), stride=1, padding=1, dilation=1, deformable_groups=1)
    expected = upstream_style_checkpoint("", 16, 8)
    assert {k: tuple(v.shape) for k, v in layer.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in expected.items()}


def test_upstream_checkpoint_loads_without_missing_or_unexpected_keys():
    prefix = "proj_1."
    checkpoint = {**upstream_style_checkpoint(prefix + "conv.", 32, 16),
                  prefix + "actf.0.weight": torch.ones(16), prefix + "actf.0.bias": torch.zeros(16),
                  prefix + "actf.0.running_mean": torch.zeros(16),
                  prefix + "actf.0.running_var": torch.ones(16),
                  prefix + "actf.0.num_batches_tracked": torch.tensor(0)}
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)  # safe loading, as the tool does
    model = torch.nn.Module()
    model.proj_1 = DeformConvBlock(32, 16)
    result = model.load_state_dict(loaded, strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    for key, value in checkpoint.items():
        torch.testing.assert_close(model.state_dict()[key], value)


def test_forward_follows_upstream_math_with_loaded_weights():
    """offset = out[:, :18], mask = sigmoid(out[:, 18:]) of conv_offset_mask, then DCNv2."""
    layer = DCN(6, 5, kernel_size=(3, 3), stride=1, padding=1, dilation=1, deformable_groups=1)
    layer.load_state_dict(upstream_style_checkpoint("", 6, 5, seed=3))
    x = torch.randn(2, 6, 9, 11, dtype=torch.float64)
    out = torch.nn.functional.conv2d(x, layer.conv_offset_mask.weight.double(),
                                     layer.conv_offset_mask.bias.double(), 1, 1)
    o1, o2, m = torch.chunk(out, 3, dim=1)  # upstream's spelling
    expected = modulated_deform_conv2d_reference(
        x, torch.cat((o1, o2), dim=1), torch.sigmoid(m), layer.weight, layer.bias, 1, 1, 1, 1, 1)
    result = layer(x.float())
    torch.testing.assert_close(result.double(), expected, rtol=1e-4, atol=1e-4)


def test_fresh_layer_is_a_half_masked_convolution():
    """conv_offset_mask starts at zero: offsets 0 and mask sigmoid(0) = 0.5."""
    layer = DCN(4, 6, kernel_size=3, stride=2, padding=1)
    assert not layer.conv_offset_mask.weight.any() and not layer.conv_offset_mask.bias.any()
    assert layer.conv_offset_mask.dilation == (1, 1)
    x = torch.randn(2, 4, 8, 10)
    expected = 0.5 * torch.nn.functional.conv2d(x, layer.weight, None, 2, 1) + \
        layer.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_deformable_groups():
    layer = DCN(8, 8, kernel_size=3, stride=2, padding=1, deformable_groups=2)
    assert layer.conv_offset_mask.out_channels == 2 * 27
    torch.nn.init.normal_(layer.conv_offset_mask.weight, std=0.1)
    x = torch.randn(1, 8, 7, 9)
    out = layer.conv_offset_mask(x)
    expected = modulated_deform_conv2d_reference(x, out[:, :36], torch.sigmoid(out[:, 36:]),
                                                 layer.weight, layer.bias, 2, 1, 1, 1, 2)
    torch.testing.assert_close(layer(x).double(), expected, rtol=1e-4, atol=1e-4)


def test_dilation_is_upstreams_no_dilation_offset_conv():
    """Upstream's offset conv ignores dilation, so with dilation 2 its output is larger than
    the deformable conv's: the same mismatch, reported by name instead of a crash."""
    layer = DCN(4, 4, kernel_size=3, stride=1, padding=2, dilation=2)
    with pytest.raises(ValueError, match=r"offset\.shape\[2\] is not valid: got: 9 expected: 7"):
        layer(torch.randn(1, 4, 7, 7))
    plain = ModulatedDeformConv(4, 4, kernel_size=3, stride=1, padding=2, dilation=2)
    x = torch.randn(1, 4, 7, 7)
    offset, mask = torch.randn(1, 18, 7, 7), torch.rand(1, 9, 7, 7)
    expected = modulated_deform_conv2d_reference(x, offset, mask, plain.weight, plain.bias,
                                                 1, 2, 2, 1, 1)
    torch.testing.assert_close(plain(x, offset, mask).double(), expected, rtol=1e-4, atol=1e-4)


def test_training_step_updates_every_parameter():
    layer = DCN(4, 4, kernel_size=3, stride=1, padding=1)
    torch.nn.init.normal_(layer.conv_offset_mask.weight, std=0.1)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    layer(torch.randn(2, 4, 6, 6)).pow(2).mean().backward()
    optimizer.step()
    for key, value in layer.state_dict().items():
        assert not torch.equal(value, before[key]), key


@pytest.mark.parametrize("kwargs, message", [
    (dict(groups=3), r"groups is not valid: got: 3"),
    (dict(deformable_groups=3), r"deformable_groups is not valid: got: 3"),
])
def test_constructor_rejects_bad_groups(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DCN(8, 8, 3, 1, 1, **kwargs)
