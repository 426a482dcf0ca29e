"""The `multitask-st` command: one entry point with a subcommand per job, as `hf`, `accelerate` and `transformers` do.

    multitask-st train [config.yaml | --flags]     train a model
    multitask-st push MODEL_DIR --repo-id org/name share it on the Hub (or stage it: --dry-run)
    multitask-st export MODEL_DIR --format onnx    export it for another runtime
    multitask-st app [MODEL_DIR]                   serve it in the browser
    multitask-st embed MODEL_DIR CORPUS --output D embed and classify a corpus into Parquet shards
    multitask-st gate MODEL_DIR --dtype bfloat16   judge PyTorch in bf16 against fp32 (the int8 gate's statistics)
    multitask-st calibrate MODEL_DIR               fit its heads' temperatures on the validation split (after the fact)

`python -m multitask_st ...` is the same command, and so are `python train.py` / `push_to_hub.py` / `export.py` /
`app.py` in a checkout. Each subcommand imports only what it needs, when it runs.
"""

from __future__ import annotations

import importlib
import logging
import sys


PROG = "multitask-st"
# subcommand -> (module in this package, one line for the usage, whether the library's progress notes go to stdout)
COMMANDS = {
    "train": ("train", "Train a multi-task sentence transformer with the Hugging Face Trainer.", False),
    "push": ("push", "Share a trained model folder on the Hugging Face Hub (or stage it with --dry-run).", True),
    "export": ("export", "Export a trained model folder for another runtime (sentence-transformers, ONNX).", True),
    "app": ("app", "Serve a trained model in the browser (the Gradio demo).", False),
    "embed": ("embed", "Embed and classify a corpus into Parquet shards with a manifest (resumable).", True),
    "gate": ("gate", "Judge PyTorch in bf16 (autocast) against fp32 with the int8 gate's statistics.", False),
    "calibrate": ("calibrate", "Fit a trained model's per-head temperatures on its validation split.", False),
}


def usage() -> str:
    lines = [f"usage: {PROG} {{{','.join(COMMANDS)}}} ...", "", "commands:"]
    lines += [f"  {name:<8}{summary}" for name, (_, summary, _) in COMMANDS.items()]
    lines += ["", f"`{PROG} COMMAND --help` lists a command's options."]
    return "\n".join(lines)


def run(command: str, argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run one subcommand with its arguments (default `sys.argv[1:]`) as the shell does; returns the exit status.

    `prog` names the command in its usage and errors (default `multitask-st COMMAND`; the checkout's shims pass
    their file name).
    """
    module_name, _, shows_progress = COMMANDS[command]
    if shows_progress:  # what is staged, exported or left out goes to stdout; errors alone go to stderr
        package_logger = logging.getLogger("multitask_st")
        package_logger.setLevel(logging.INFO)
        if not package_logger.handlers:
            package_logger.addHandler(logging.StreamHandler(sys.stdout))
        package_logger.propagate = False  # onnxruntime's quantiser configures the root logger too
    module = importlib.import_module(f".{module_name}", __name__)
    return module.main(sys.argv[1:] if argv is None else argv, prog=prog or f"{PROG} {command}") or 0


def main(argv: list[str] | None = None) -> int:
    """`multitask-st COMMAND [ARGS]` (the console script); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(
            f"{usage()}\n{PROG}: error: unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}.",
            file=sys.stderr,
        )
        return 2
    return run(argv[0], argv[1:])
