"""Export a trained model folder for another runtime.

`python export.py ...` in a checkout is `multitask-st export ...` (see multitask_st/cli/export.py).
"""

import sys

from multitask_st.cli import run


if __name__ == "__main__":
    sys.exit(run("export", prog="export.py"))
