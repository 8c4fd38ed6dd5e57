from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import math

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from .dcn_v2_func import DCNv2Function


class DCN(nn.Module):
  # parameters: weight, bias, conv_offset_mask.{weight,bias} (the checkpoint keys)

  def __init__(self, in_channels, out_channels, kernel_size, stride, padding,
               dilation=1, deformable_groups=1):
    super(DCN, self).__init__()
    self.kernel_size = _pair(kernel_size)
    self.stride = stride
    self.padding = padding
    self.dilation = dilation
    self.deformable_groups = deformable_groups
    self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.kernel_size))
    self.bias = nn.Parameter(torch.zeros(out_channels))
    bound = 1. / math.sqrt(in_channels * self.kernel_size[0] * self.kernel_size[1])
    self.weight.data.uniform_(-bound, bound)
    taps = self.kernel_size[0] * self.kernel_size[1]
    self.conv_offset_mask = nn.Conv2d(in_channels, deformable_groups * 3 * taps,
                                      kernel_size=self.kernel_size,
                                      stride=(stride, stride),
                                      padding=(padding, padding), bias=True)
    self.conv_offset_mask.weight.data.zero_()
    self.conv_offset_mask.bias.data.zero_()

  def forward(self, input):
    offset_x, offset_y, mask = torch.chunk(self.conv_offset_mask(input), 3, dim=1)
    offset = torch.cat((offset_x, offset_y), dim=1)
    func = DCNv2Function(self.stride, self.padding, self.dilation,
                         self.deformable_groups)
    return func(input, offset, torch.sigmoid(mask), self.weight, self.bias)
