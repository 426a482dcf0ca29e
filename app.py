"""Serve a trained model in the browser.

`python app.py ...` in a checkout is `multitask-st app ...` (see multitask_st/cli/app.py).
"""

import sys

from multitask_st.cli import run


if __name__ == "__main__":
    sys.exit(run("app", prog="app.py"))
