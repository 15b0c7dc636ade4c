"""Train a neuneu model: `python train.py [configs/NAME.yaml] [key=value ...] [--resume]`.

The same as `neuneu train ...`; the argument handling is `neuneu.train_cli.main`.
"""

import sys

from neuneu.train_cli import main

if __name__ == "__main__":
    sys.exit(main())
