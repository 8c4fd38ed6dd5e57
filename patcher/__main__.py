"""``python -m patcher``: the same as the ``centernet-patch`` console script."""
import sys

from patcher.cli import main

sys.exit(main())
