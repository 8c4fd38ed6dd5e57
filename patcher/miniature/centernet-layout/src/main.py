from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

# Miniature entry point: parses the options like the real main.py and builds the model
# (the real one goes on to train). `python main.py ctdet --arch resdcn_18`.

import _init_paths

from opts import opts
from models.model import create_model, load_model


def main(opt):
  print('Creating model...')
  model = create_model(opt.arch, opt.heads, opt.head_conv)
  if opt.load_model != '':
    model = load_model(model, opt.load_model)
  print('task {} arch {} heads {}'.format(opt.task, opt.arch, opt.heads))
  return model


if __name__ == '__main__':
  main(opts().init())
