from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

# Miniature of the 2019 DCNv2 extension's Python side. Like the real one it needs a
# compiled `_ext` package built by build.py through torch.utils.ffi, which PyTorch removed
# in 1.0: importing this module fails on any current PyTorch.

from torch.autograd import Function

from ._ext import dcn_v2 as _backend


class DCNv2Function(Function):
  # old-style autograd Function (configured in __init__, non-static forward), which
  # PyTorch 2.x rejects even when the extension exists

  def __init__(self, stride, padding, dilation=1, deformable_groups=1):
    super(DCNv2Function, self).__init__()
    self.stride = stride
    self.padding = padding
    self.dilation = dilation
    self.deformable_groups = deformable_groups

  def forward(self, input, offset, mask, weight, bias):
    output = input.new()
    _backend.dcn_v2_cuda_forward(input, weight, bias, offset, mask, output,
                                 self.stride, self.padding, self.dilation,
                                 self.deformable_groups)
    return output
