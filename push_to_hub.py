"""Share a trained model folder on the Hugging Face Hub.

`python push_to_hub.py ...` in a checkout is `multitask-st push ...` (see multitask_st/cli/push.py).
"""

import sys

from multitask_st.cli import run


if __name__ == "__main__":
    sys.exit(run("push", prog="push_to_hub.py"))
