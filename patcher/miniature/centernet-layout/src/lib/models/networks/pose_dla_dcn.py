from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

# Miniature of CenterNet's DLA-34 + DCN network, written for centernet-patch's tests:
# a four-level backbone instead of DLA-34, but the same module names, the same use of DCN
# (DeformConv blocks as projections and nodes of an iterative up path), the same heads,
# and the same ImageNet-weight download when the backbone is built with pretrained=True.

import math
import os

import numpy as np
import torch
from torch import nn
import torch.utils.model_zoo as model_zoo

from .DCNv2.dcn_v2 import DCN

BN_MOMENTUM = 0.1


def get_model_url(data='imagenet', name='dla34', hash='00000000'):
  # `.invalid` never resolves: a download attempt fails at once instead of hanging
  return 'https://weights.invalid/dla/{}/{}-{}.pth'.format(data, name, hash)


def conv_bn_relu(chi, cho, stride):
  return nn.Sequential(
    nn.Conv2d(chi, cho, kernel_size=3, stride=stride, padding=1, bias=False),
    nn.BatchNorm2d(cho, momentum=BN_MOMENTUM),
    nn.ReLU(inplace=True))


class TinyDLA(nn.Module):
  # four levels at strides 1, 2, 4, 8 (DLA-34 has six, up to stride 32)

  def __init__(self, channels, num_classes=1000):
    super(TinyDLA, self).__init__()
    self.channels = channels
    self.num_classes = num_classes
    self.base_layer = conv_bn_relu(3, channels[0], stride=1)
    self.level0 = conv_bn_relu(channels[0], channels[0], stride=1)
    for i in range(1, len(channels)):
      setattr(self, 'level{}'.format(i), conv_bn_relu(channels[i - 1], channels[i], stride=2))

  def forward(self, x):
    x = self.base_layer(x)
    levels = []
    for i in range(len(self.channels)):
      x = getattr(self, 'level{}'.format(i))(x)
      levels.append(x)
    return levels

  def load_pretrained_model(self, data='imagenet', name='dla34', hash='00000000'):
    if name.endswith('.pth'):
      weights = torch.load(data + name)
    else:
      weights = model_zoo.load_url(get_model_url(data, name, hash))
    # the ImageNet classifier comes with the weights; its width is the last tensor's
    classes = len(weights[list(weights.keys())[-1]])
    self.fc = nn.Conv2d(self.channels[-1], classes, kernel_size=1, stride=1, padding=0,
                        bias=True)
    self.load_state_dict(weights)


def dla34(pretrained=True, **kwargs):
  model = TinyDLA([4, 8, 8, 16], **kwargs)
  if pretrained:
    model.load_pretrained_model(data='imagenet', name='dla34', hash='00000000')
  return model


def fill_fc_weights(layers):
  for m in layers.modules():
    if isinstance(m, nn.Conv2d) and m.bias is not None:
      nn.init.constant_(m.bias, 0)


def fill_up_weights(up):
  # bilinear upsampling kernel, the same for every channel
  w = up.weight.data
  f = math.ceil(w.size(2) / 2)
  c = (2 * f - 1 - f % 2) / (2. * f)
  for i in range(w.size(2)):
    for j in range(w.size(3)):
      w[0, 0, i, j] = (1 - math.fabs(i / f - c)) * (1 - math.fabs(j / f - c))
  w[1:, 0] = w[0, 0]


class DeformConv(nn.Module):
  def __init__(self, chi, cho):
    super(DeformConv, self).__init__()
    self.actf = nn.Sequential(
      nn.BatchNorm2d(cho, momentum=BN_MOMENTUM),
      nn.ReLU(inplace=True))
    self.conv = DCN(chi, cho, kernel_size=(3,3), stride=1, padding=1, dilation=1, deformable_groups=1)

  def forward(self, x):
    return self.actf(self.conv(x))


class IDAUp(nn.Module):
  # merges levels[startp:endp] pairwise: project, upsample, add, refine (a node)

  def __init__(self, o, channels, up_f):
    super(IDAUp, self).__init__()
    for i in range(1, len(channels)):
      f = int(up_f[i])
      setattr(self, 'proj_' + str(i), DeformConv(channels[i], o))
      up = nn.ConvTranspose2d(o, o, f * 2, stride=f, padding=f // 2, output_padding=0,
                              groups=o, bias=False)
      fill_up_weights(up)
      setattr(self, 'up_' + str(i), up)
      setattr(self, 'node_' + str(i), DeformConv(o, o))

  def forward(self, layers, startp, endp):
    for i in range(startp + 1, endp):
      upsample = getattr(self, 'up_' + str(i - startp))
      project = getattr(self, 'proj_' + str(i - startp))
      node = getattr(self, 'node_' + str(i - startp))
      layers[i] = node(upsample(project(layers[i])) + layers[i - 1])


class DLAUp(nn.Module):
  def __init__(self, startp, channels, scales):
    super(DLAUp, self).__init__()
    self.startp = startp
    in_channels = list(channels)
    scales = np.array(scales, dtype=int)
    for i in range(len(channels) - 1):
      j = -i - 2
      setattr(self, 'ida_{}'.format(i),
              IDAUp(channels[j], in_channels[j:], scales[j:] // scales[j]))
      scales[j + 1:] = scales[j]
      in_channels[j + 1:] = [channels[j]] * len(in_channels[j + 1:])

  def forward(self, layers):
    out = [layers[-1]]
    for i in range(len(layers) - self.startp - 1):
      getattr(self, 'ida_{}'.format(i))(layers, len(layers) - i - 2, len(layers))
      out.insert(0, layers[-1])
    return out


class DLASeg(nn.Module):
  def __init__(self, base_name, heads, pretrained, down_ratio, final_kernel,
               last_level, head_conv, out_channel=0):
    super(DLASeg, self).__init__()
    assert down_ratio in [2, 4, 8]
    self.first_level = int(np.log2(down_ratio))
    self.last_level = last_level
    self.base = globals()[base_name](pretrained=pretrained)
    channels = self.base.channels
    scales = [2 ** i for i in range(len(channels[self.first_level:]))]
    self.dla_up = DLAUp(self.first_level, channels[self.first_level:], scales)
    if out_channel == 0:
      out_channel = channels[self.first_level]
    self.ida_up = IDAUp(out_channel, channels[self.first_level:self.last_level],
                        [2 ** i for i in range(self.last_level - self.first_level)])

    self.heads = heads
    for head, classes in self.heads.items():
      if head_conv > 0:
        fc = nn.Sequential(
          nn.Conv2d(channels[self.first_level], head_conv, kernel_size=3, padding=1,
                    bias=True),
          nn.ReLU(inplace=True),
          nn.Conv2d(head_conv, classes, kernel_size=final_kernel, stride=1,
                    padding=final_kernel // 2, bias=True))
        last = fc[-1]
      else:
        fc = nn.Conv2d(channels[self.first_level], classes, kernel_size=final_kernel,
                       stride=1, padding=final_kernel // 2, bias=True)
        last = fc
      if 'hm' in head:
        last.bias.data.fill_(-2.19)  # heatmaps start near sigmoid(-2.19) = 0.1
      else:
        fill_fc_weights(fc)
      self.__setattr__(head, fc)

  def forward(self, x):
    x = self.dla_up(self.base(x))
    y = [x[i].clone() for i in range(self.last_level - self.first_level)]
    self.ida_up(y, 0, len(y))
    z = {}
    for head in self.heads:
      z[head] = self.__getattr__(head)(y[-1])
    return [z]


def get_pose_net(num_layers, heads, head_conv=256, down_ratio=4):
  model = DLASeg('dla{}'.format(num_layers), heads,
                 pretrained=True,
                 down_ratio=down_ratio,
                 final_kernel=1,
                 last_level=4,
                 head_conv=head_conv)
  return model
