from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

# Miniature of CenterNet's ResNet + DCN network, written for centernet-patch's tests: a
# three-stage residual backbone instead of ResNet-18/101, but the same module names, DCN
# in the deconv (upsampling) layers, the same heads, and the same model_zoo download in
# init_weights.

import math

import torch
import torch.nn as nn
from .DCNv2.dcn_v2 import DCN
import torch.utils.model_zoo as model_zoo

BN_MOMENTUM = 0.1

model_urls = {
  'resnet18': 'https://weights.invalid/resnet/tiny-resnet18-00000000.pth',
  'resnet34': 'https://weights.invalid/resnet/tiny-resnet34-00000000.pth',
}


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super(BasicBlock, self).__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
    self.relu = nn.ReLU(inplace=True)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
    self.downsample = downsample

  def forward(self, x):
    shortcut = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    return self.relu(out + shortcut)


def fill_up_weights(up):
  # bilinear upsampling kernel, the same for every output channel
  w = up.weight.data
  f = math.ceil(w.size(2) / 2)
  c = (2 * f - 1 - f % 2) / (2. * f)
  for i in range(w.size(2)):
    for j in range(w.size(3)):
      w[0, 0, i, j] = (1 - math.fabs(i / f - c)) * (1 - math.fabs(j / f - c))
  for channel in range(1, w.size(0)):
    w[channel, 0] = w[0, 0]


def fill_fc_weights(layers):
  for m in layers.modules():
    if isinstance(m, nn.Conv2d):
      nn.init.normal_(m.weight, std=0.001)
      if m.bias is not None:
        nn.init.constant_(m.bias, 0)


class PoseResNet(nn.Module):

  def __init__(self, block, layers, heads, head_conv):
    self.inplanes = 8
    self.heads = heads
    super(PoseResNet, self).__init__()
    self.conv1 = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1, bias=False)
    self.bn1 = nn.BatchNorm2d(8, momentum=BN_MOMENTUM)
    self.relu = nn.ReLU(inplace=True)
    self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    self.layer1 = self._make_layer(block, 8, layers[0])
    self.layer2 = self._make_layer(block, 16, layers[1], stride=2)
    self.layer3 = self._make_layer(block, 16, layers[2], stride=2)

    # stride 16 back to stride 4: DCN + BN + ReLU, then a 2x transposed conv + BN + ReLU
    self.deconv_layers = self._make_deconv_layer(2, [16, 8], [4, 4])

    for head, classes in self.heads.items():
      if head_conv > 0:
        fc = nn.Sequential(
          nn.Conv2d(8, head_conv, kernel_size=3, padding=1, bias=True),
          nn.ReLU(inplace=True),
          nn.Conv2d(head_conv, classes, kernel_size=1, stride=1, padding=0, bias=True))
        if 'hm' in head:
          fc[-1].bias.data.fill_(-2.19)
        else:
          fill_fc_weights(fc)
      else:
        fc = nn.Conv2d(8, classes, kernel_size=1, stride=1, padding=0, bias=True)
        if 'hm' in head:
          fc.bias.data.fill_(-2.19)
        else:
          fill_fc_weights(fc)
      self.__setattr__(head, fc)

  def _make_layer(self, block, planes, blocks, stride=1):
    downsample = None
    if stride != 1 or self.inplanes != planes * block.expansion:
      downsample = nn.Sequential(
        nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride,
                  bias=False),
        nn.BatchNorm2d(planes * block.expansion, momentum=BN_MOMENTUM))
    layers = [block(self.inplanes, planes, stride, downsample)]
    self.inplanes = planes * block.expansion
    layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)

  def _make_deconv_layer(self, num_layers, num_filters, num_kernels):
    assert num_layers == len(num_filters) == len(num_kernels)
    layers = []
    for planes, kernel in zip(num_filters, num_kernels):
      fc = DCN(self.inplanes, planes,
               kernel_size=(3,3), stride=1,
               padding=1, dilation=1, deformable_groups=1)
      up = nn.ConvTranspose2d(planes, planes, kernel_size=kernel, stride=2, padding=1,
                              output_padding=0, bias=False)
      fill_up_weights(up)
      layers += [fc, nn.BatchNorm2d(planes, momentum=BN_MOMENTUM), nn.ReLU(inplace=True),
                 up, nn.BatchNorm2d(planes, momentum=BN_MOMENTUM), nn.ReLU(inplace=True)]
      self.inplanes = planes
    return nn.Sequential(*layers)

  def forward(self, x):
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    x = self.layer3(self.layer2(self.layer1(x)))
    x = self.deconv_layers(x)
    ret = {}
    for head in self.heads:
      ret[head] = self.__getattr__(head)(x)
    return [ret]

  def init_weights(self, num_layers):
    if 1:
      url = model_urls['resnet{}'.format(num_layers)]
      pretrained_state_dict = model_zoo.load_url(url)
      print('=> loading pretrained model {}'.format(url))
      self.load_state_dict(pretrained_state_dict, strict=False)
      print('=> init deconv weights from normal distribution')
      for name, m in self.deconv_layers.named_modules():
        if isinstance(m, nn.BatchNorm2d):
          nn.init.constant_(m.weight, 1)
          nn.init.constant_(m.bias, 0)


resnet_spec = {18: (BasicBlock, [1, 1, 1]),
               34: (BasicBlock, [1, 2, 1])}


def get_pose_net(num_layers, heads, head_conv=256):
  block_class, layers = resnet_spec[num_layers]
  model = PoseResNet(block_class, layers, heads, head_conv=head_conv)
  model.init_weights(num_layers)
  return model
