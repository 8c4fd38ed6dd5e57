from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

# Miniature of CenterNet's decoders: same signatures and output layouts as the real ones.
#   ctdet_decode      -> B x K x 6:  x1, y1, x2, y2, score, class
#   ddd_decode        -> B x K x 18: x, y, score, rot(8), depth, dim(3), wh(2), class
#                        (B x K x 16 without wh)
#   multi_pose_decode -> B x K x 40: x1, y1, x2, y2, score, keypoints(2 * 17), class

import torch
import torch.nn as nn

from .utils import _gather_feat, _transpose_and_gather_feat


def _nms(heat, kernel=3):
  # keep only local maxima of the heatmap (3x3 max pooling as a cheap NMS)
  peaks = nn.functional.max_pool2d(heat, kernel, stride=1, padding=(kernel - 1) // 2)
  return heat * (peaks == heat).float()


def _topk_channel(scores, K=40):
  # the K best positions of every channel: B x C x K each
  batch, channels, height, width = scores.size()
  top_scores, top_inds = torch.topk(scores.view(batch, channels, -1), K)
  top_inds = top_inds % (height * width)
  top_ys = torch.div(top_inds, width, rounding_mode='floor').float()
  top_xs = (top_inds % width).float()
  return top_scores, top_inds, top_ys, top_xs


def _topk(scores, K=40):
  # the K best (class, position) pairs over all classes: B x K each
  batch, channels, height, width = scores.size()
  per_class_scores, per_class_inds, per_class_ys, per_class_xs = _topk_channel(scores, K)
  top_scores, top_of_all = torch.topk(per_class_scores.view(batch, -1), K)
  top_classes = torch.div(top_of_all, K, rounding_mode='floor').int()

  def pick(values):
    return _gather_feat(values.view(batch, -1, 1), top_of_all).view(batch, K)

  return (top_scores, pick(per_class_inds), top_classes,
          pick(per_class_ys), pick(per_class_xs))


def _centers(reg, inds, xs, ys, batch, K):
  # sub-pixel centres: the regressed offset, or the middle of the cell without one
  if reg is None:
    return xs.view(batch, K, 1) + 0.5, ys.view(batch, K, 1) + 0.5
  reg = _transpose_and_gather_feat(reg, inds).view(batch, K, 2)
  return xs.view(batch, K, 1) + reg[:, :, 0:1], ys.view(batch, K, 1) + reg[:, :, 1:2]


def _boxes(xs, ys, wh):
  half_w, half_h = wh[..., 0:1] / 2, wh[..., 1:2] / 2
  return torch.cat([xs - half_w, ys - half_h, xs + half_w, ys + half_h], dim=2)


def ctdet_decode(heat, wh, reg=None, cat_spec_wh=False, K=100):
  batch, num_classes = heat.size(0), heat.size(1)
  scores, inds, clses, ys, xs = _topk(_nms(heat), K=K)
  xs, ys = _centers(reg, inds, xs, ys, batch, K)
  wh = _transpose_and_gather_feat(wh, inds)
  if cat_spec_wh:
    per_class = wh.view(batch, K, num_classes, 2)
    which = clses.view(batch, K, 1, 1).expand(batch, K, 1, 2).long()
    wh = per_class.gather(2, which).view(batch, K, 2)
  else:
    wh = wh.view(batch, K, 2)
  return torch.cat([_boxes(xs, ys, wh), scores.view(batch, K, 1),
                    clses.view(batch, K, 1).float()], dim=2)


def ddd_decode(heat, rot, depth, dim, wh=None, reg=None, K=40):
  batch = heat.size(0)
  scores, inds, clses, ys, xs = _topk(_nms(heat), K=K)
  xs, ys = _centers(reg, inds, xs, ys, batch, K)
  columns = [xs, ys, scores.view(batch, K, 1),
             _transpose_and_gather_feat(rot, inds).view(batch, K, 8),
             _transpose_and_gather_feat(depth, inds).view(batch, K, 1),
             _transpose_and_gather_feat(dim, inds).view(batch, K, 3)]
  if wh is not None:
    columns.append(_transpose_and_gather_feat(wh, inds).view(batch, K, 2))
  columns.append(clses.view(batch, K, 1).float())
  return torch.cat(columns, dim=2)


def multi_pose_decode(
    heat, wh, kps, reg=None, hm_hp=None, hp_offset=None, K=100):
  batch = heat.size(0)
  num_joints = kps.shape[1] // 2
  scores, inds, clses, ys, xs = _topk(_nms(heat), K=K)

  # joints regressed from the centre
  kps = _transpose_and_gather_feat(kps, inds).view(batch, K, num_joints, 2)
  kps = kps + torch.stack([xs, ys], dim=2).view(batch, K, 1, 2)
  xs, ys = _centers(reg, inds, xs, ys, batch, K)
  wh = _transpose_and_gather_feat(wh, inds).view(batch, K, 2)
  bboxes = _boxes(xs, ys, wh)

  if hm_hp is not None:
    # snap each regressed joint to the nearest confident joint-heatmap peak, unless
    # that peak lies outside the box or too far away
    thresh = 0.1
    joints = kps.permute(0, 2, 1, 3)  # B x J x K x 2
    peak_scores, peak_inds, peak_ys, peak_xs = _topk_channel(_nms(hm_hp), K=K)
    if hp_offset is not None:
      offsets = _transpose_and_gather_feat(hp_offset, peak_inds.view(batch, -1))
      offsets = offsets.view(batch, num_joints, K, 2)
      peak_xs = peak_xs + offsets[..., 0]
      peak_ys = peak_ys + offsets[..., 1]
    else:
      peak_xs = peak_xs + 0.5
      peak_ys = peak_ys + 0.5
    weak = peak_scores <= thresh
    peak_scores = torch.where(weak, torch.full_like(peak_scores, -1), peak_scores)
    peaks = torch.stack([peak_xs, peak_ys], dim=-1)
    peaks = torch.where(weak.unsqueeze(-1), torch.full_like(peaks, -10000), peaks)

    # distance from every regressed joint (K) to every peak (K): B x J x K x K
    dist = (joints.unsqueeze(3) - peaks.unsqueeze(2)).pow(2).sum(dim=4).sqrt()
    nearest_dist, nearest = dist.min(dim=3)
    nearest_score = peak_scores.gather(2, nearest)
    snapped = peaks.gather(2, nearest.unsqueeze(-1).expand(batch, num_joints, K, 2))

    x1, y1, x2, y2 = [bboxes[:, :, i].view(batch, 1, K) for i in range(4)]
    keep_regressed = ((snapped[..., 0] < x1) | (snapped[..., 0] > x2) |
                      (snapped[..., 1] < y1) | (snapped[..., 1] > y2) |
                      (nearest_score < thresh) |
                      (nearest_dist > torch.max(y2 - y1, x2 - x1) * 0.3))
    joints = torch.where(keep_regressed.unsqueeze(-1), joints, snapped)
    kps = joints.permute(0, 2, 1, 3)

  kps = kps.reshape(batch, K, num_joints * 2)
  return torch.cat([bboxes, scores.view(batch, K, 1), kps,
                    clses.view(batch, K, 1).float()], dim=2)
