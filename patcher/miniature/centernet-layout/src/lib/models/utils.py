from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import torch


def _sigmoid(x):
  return torch.clamp(x.sigmoid_(), min=1e-4, max=1 - 1e-4)


def _gather_feat(feat, ind, mask=None):
  # feat: B x N x C, ind: B x K -> B x K x C
  channels = feat.size(2)
  index = ind.unsqueeze(2).expand(ind.size(0), ind.size(1), channels)
  feat = feat.gather(1, index)
  if mask is not None:
    feat = feat[mask.unsqueeze(2).expand_as(feat)].view(-1, channels)
  return feat


def _transpose_and_gather_feat(feat, ind):
  # feat: B x C x H x W, ind indexes H*W -> B x K x C
  batch, channels = feat.size(0), feat.size(1)
  feat = feat.permute(0, 2, 3, 1).reshape(batch, -1, channels)
  return _gather_feat(feat, ind)
