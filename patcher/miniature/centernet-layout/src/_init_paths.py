# Puts src/lib on sys.path so that scripts in src/ can `import opts`, `import models...`.
import os.path
import sys

lib_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'lib')
if lib_path not in sys.path:
  sys.path.insert(0, lib_path)
