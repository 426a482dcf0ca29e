"""Train a multi-task sentence transformer.

`python train.py ...` in a checkout is `multitask-st train ...` (see multitask_st/cli/train.py).
"""

import sys

from multitask_st.cli import run


if __name__ == "__main__":
    sys.exit(run("train", prog="train.py"))
