from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import torchvision.models as models
import torch
import torch.nn as nn

from .networks.pose_dla_dcn import get_pose_net as get_dla_dcn
from .networks.resnet_dcn import get_pose_net as get_pose_net_dcn

# Miniature of CenterNet's model factory: the two DCN families only.
_model_factory = {
  'dla': get_dla_dcn,
  'resdcn': get_pose_net_dcn,
}


def create_model(arch, heads, head_conv):
  # 'dla_34' -> family 'dla', depth 34; an arch without '_' has depth 0
  family, _, depth = arch.partition('_')
  num_layers = int(depth) if depth else 0
  get_model = _model_factory[family]
  return get_model(num_layers=num_layers, heads=heads, head_conv=head_conv)


def load_model(model, model_path, optimizer=None, resume=False,
               lr=None, lr_step=None):
  # Lax on purpose, like the real one: keys that do not fit are reported and skipped,
  # keys the checkpoint lacks keep the model's values, loading is never strict.
  start_epoch = 0
  checkpoint = torch.load(model_path, map_location=lambda storage, loc: storage)
  print('loaded {}, epoch {}'.format(model_path, checkpoint['epoch']))
  loaded = {}
  for key, value in checkpoint['state_dict'].items():
    if key.startswith('module') and not key.startswith('module_list'):
      key = key[len('module.'):]  # saved from DataParallel
    loaded[key] = value

  own = model.state_dict()
  hint = ' Check --arch and the heads of the task.'
  for key in list(loaded):
    if key not in own:
      print('Drop parameter {}.'.format(key) + hint)
    elif loaded[key].shape != own[key].shape:
      print('Skip loading parameter {}, required shape{}, loaded shape{}.{}'.format(
        key, own[key].shape, loaded[key].shape, hint))
      loaded[key] = own[key]
  for key in own:
    if key not in loaded:
      print('No param {}.'.format(key) + hint)
      loaded[key] = own[key]
  model.load_state_dict(loaded, strict=False)

  if optimizer is not None and resume:
    if 'optimizer' in checkpoint:
      optimizer.load_state_dict(checkpoint['optimizer'])
      start_epoch = checkpoint['epoch']
      start_lr = lr
      for step in lr_step:
        if start_epoch >= step:
          start_lr *= 0.1
      for group in optimizer.param_groups:
        group['lr'] = start_lr
    else:
      print('No optimizer parameters in checkpoint.')
  if optimizer is not None:
    return model, optimizer, start_epoch
  return model


def save_model(path, epoch, model, optimizer=None):
  if isinstance(model, nn.DataParallel):
    model = model.module
  data = {'epoch': epoch, 'state_dict': model.state_dict()}
  if optimizer is not None:
    data['optimizer'] = optimizer.state_dict()
  torch.save(data, path)
