"""`python -m multitask_st COMMAND ...`: the `multitask-st` command (see `multitask_st.cli`)."""

import sys

from .cli import main


if __name__ == "__main__":
    sys.exit(main())
