from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

# Miniature of CenterNet's option parser, written for centernet-patch's tests.
# Same option names and semantics as the real one where the pipeline needs them:
# a required positional `task`, per-task heads and default input sizes.

import argparse
import os


class opts(object):
  def __init__(self):
    self.parser = argparse.ArgumentParser()
    self.parser.add_argument('task', default='ctdet',
                             help='ctdet | ddd | multi_pose | exdet')
    self.parser.add_argument('--dataset', default='coco',
                             help='coco | kitti | coco_hp | pascal')
    self.parser.add_argument('--exp_id', default='default')
    self.parser.add_argument('--test', action='store_true')
    self.parser.add_argument('--debug', type=int, default=0,
                             help='visualisation level, 0 for none')
    self.parser.add_argument('--demo', default='',
                             help='image, folder or video to run the detector on')
    self.parser.add_argument('--load_model', default='',
                             help='checkpoint to start from')
    self.parser.add_argument('--resume', action='store_true',
                             help='continue an experiment from model_last.pth')
    self.parser.add_argument('--gpus', default='0',
                             help='comma separated gpu ids, -1 for the CPU')
    self.parser.add_argument('--num_workers', type=int, default=4)

    # network
    self.parser.add_argument('--arch', default='dla_34',
                             help='dla_34 | resdcn_18 (the miniature has these two)')
    self.parser.add_argument('--head_conv', type=int, default=-1,
                             help='channels of the 3x3 conv in each head; 0: no conv; '
                                  '-1: 256 for dla, 64 otherwise')
    self.parser.add_argument('--down_ratio', type=int, default=4,
                             help='output stride')

    # input size
    self.parser.add_argument('--input_res', type=int, default=-1,
                             help='square input size; -1: the dataset default')
    self.parser.add_argument('--input_h', type=int, default=-1,
                             help='input height; -1: the dataset default')
    self.parser.add_argument('--input_w', type=int, default=-1,
                             help='input width; -1: the dataset default')

    # training and testing knobs the heads depend on
    self.parser.add_argument('--batch_size', type=int, default=32)
    self.parser.add_argument('--master_batch_size', type=int, default=-1)
    self.parser.add_argument('--K', type=int, default=100,
                             help='number of detections kept by the decoder')
    self.parser.add_argument('--keep_res', action='store_true')
    self.parser.add_argument('--cat_spec_wh', action='store_true',
                             help='one box size per category')
    self.parser.add_argument('--not_reg_offset', action='store_true')
    self.parser.add_argument('--agnostic_ex', action='store_true')
    self.parser.add_argument('--not_hm_hp', action='store_true')
    self.parser.add_argument('--not_reg_hp_offset', action='store_true')
    self.parser.add_argument('--not_reg_bbox', action='store_true')

  def parse(self, args=''):
    if args == '':
      opt = self.parser.parse_args()
    else:
      opt = self.parser.parse_args(args)

    opt.gpus_str = opt.gpus
    opt.gpus = [int(gpu) for gpu in opt.gpus.split(',')]
    opt.gpus = list(range(len(opt.gpus))) if opt.gpus[0] >= 0 else [-1]
    opt.fix_res = not opt.keep_res
    opt.reg_offset = not opt.not_reg_offset
    opt.reg_bbox = not opt.not_reg_bbox
    opt.hm_hp = not opt.not_hm_hp
    opt.reg_hp_offset = opt.hm_hp and not opt.not_reg_hp_offset

    if opt.head_conv == -1:
      opt.head_conv = 256 if 'dla' in opt.arch else 64
    if opt.master_batch_size == -1:
      opt.master_batch_size = opt.batch_size // len(opt.gpus)

    opt.root_dir = os.path.join(os.path.dirname(__file__), '..', '..')
    opt.exp_dir = os.path.join(opt.root_dir, 'exp', opt.task)
    opt.save_dir = os.path.join(opt.exp_dir, opt.exp_id)
    if opt.resume and opt.load_model == '':
      opt.load_model = os.path.join(opt.save_dir, 'model_last.pth')
    return opt

  def update_dataset_info_and_set_heads(self, opt, dataset):
    default_h, default_w = dataset.default_resolution
    opt.mean, opt.std = dataset.mean, dataset.std
    opt.num_classes = dataset.num_classes

    # --input_h/--input_w win over --input_res, which wins over the dataset's size
    if opt.input_res > 0:
      default_h = default_w = opt.input_res
    opt.input_h = opt.input_h if opt.input_h > 0 else default_h
    opt.input_w = opt.input_w if opt.input_w > 0 else default_w
    opt.output_h = opt.input_h // opt.down_ratio
    opt.output_w = opt.input_w // opt.down_ratio
    opt.input_res = max(opt.input_h, opt.input_w)
    opt.output_res = max(opt.output_h, opt.output_w)

    if opt.task == 'ctdet':
      box_channels = 2 * opt.num_classes if opt.cat_spec_wh else 2
      opt.heads = {'hm': opt.num_classes, 'wh': box_channels}
      if opt.reg_offset:
        opt.heads['reg'] = 2
    elif opt.task == 'ddd':
      opt.heads = {'hm': opt.num_classes, 'dep': 1, 'rot': 8, 'dim': 3}
      if opt.reg_bbox:
        opt.heads['wh'] = 2
      if opt.reg_offset:
        opt.heads['reg'] = 2
    elif opt.task == 'multi_pose':
      opt.flip_idx = dataset.flip_idx
      opt.heads = {'hm': opt.num_classes, 'wh': 2, 'hps': 34}
      if opt.reg_offset:
        opt.heads['reg'] = 2
      if opt.hm_hp:
        opt.heads['hm_hp'] = 17
      if opt.reg_hp_offset:
        opt.heads['hp_offset'] = 2
    elif opt.task == 'exdet':
      extreme_channels = 1 if opt.agnostic_ex else opt.num_classes
      opt.heads = {'hm_t': extreme_channels, 'hm_l': extreme_channels,
                   'hm_b': extreme_channels, 'hm_r': extreme_channels,
                   'hm_c': opt.num_classes}
      if opt.reg_offset:
        opt.heads.update({'reg_t': 2, 'reg_l': 2, 'reg_b': 2, 'reg_r': 2})
    else:
      raise ValueError('unknown task {!r}'.format(opt.task))
    print('heads', opt.heads)
    return opt

  def init(self, args=''):
    coco_mean, coco_std = [0.408, 0.447, 0.470], [0.289, 0.274, 0.278]
    dataset_defaults = {
      'ctdet': dict(dataset='coco', default_resolution=[512, 512], num_classes=80,
                    mean=coco_mean, std=coco_std),
      'exdet': dict(dataset='coco', default_resolution=[512, 512], num_classes=80,
                    mean=coco_mean, std=coco_std),
      'multi_pose': dict(dataset='coco_hp', default_resolution=[512, 512],
                         num_classes=1, mean=coco_mean, std=coco_std, num_joints=17,
                         flip_idx=[[2 * j + 1, 2 * j + 2] for j in range(8)]),
      'ddd': dict(dataset='kitti', default_resolution=[384, 1280], num_classes=3,
                  mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    }

    class DatasetInfo(object):
      def __init__(self, fields):
        self.__dict__.update(fields)

    opt = self.parse(args)
    dataset = DatasetInfo(dataset_defaults[opt.task])
    opt.dataset = dataset.dataset
    return self.update_dataset_info_and_set_heads(opt, dataset)
