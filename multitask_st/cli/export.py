"""Export a trained model folder for another runtime (`multitask-st export`; `python export.py` in a checkout).

    multitask-st export outputs/multitask-st --format sentence-transformers --output exported/
    multitask-st export outputs/multitask-st --format onnx --output outputs/multitask-st-onnx
    multitask-st export outputs/multitask-st --format onnx --quantize int8 --output outputs/multitask-st   # adds onnx/
    multitask-st export outputs/multitask-st --format onnx --quantize int8 int8_static bf16 --output outputs/multitask-st

`sentence-transformers` writes the embedding as a plain sentence-transformers folder that loads without remote code,
checks its vectors against `model.encode`, and says which doors it opens (TEI when its layout fits TEI's rules; see
multitask_st/export/sentence_transformers_folder.py). The ONNX export writes onnx/model.onnx (and
onnx/model_qint8_<cpu>.onnx with --quantize int8, onnx/model_qint8_static.onnx for OpenVINO with int8_static; bf16
judges onnx/model.onnx on OpenVINO in bf16), checked against the PyTorch model on real texts first: a graph that
misses the bounds is not written (see multitask_st/export/onnx.py), and each reduced precision's gate evidence goes to
onnx/export_report.json. Errors are one line on stderr, exit status 1; Ctrl-C
or SIGTERM removes the temporary files and writes nothing (exit status 130 / 143).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path


def export_sentence_transformers(args: argparse.Namespace) -> list[str]:
    """A plain sentence-transformers folder (the embedding; no remote code). Returns the lines to print."""
    from multitask_st.export.sentence_transformers_folder import export_sentence_transformers as export

    for flag in ("quantize", "arch", "overwrite", *GATE_FLAGS):
        if getattr(args, flag) not in (None, False):
            raise ValueError(f"--{flag} applies to --format onnx only.")
    result = export(args.model_dir, args.output)
    lines = [f"Wrote a plain sentence-transformers folder to {result.output_dir} ({' -> '.join(result.modules)}):"]
    lines += [f"  {name}" for name in result.files]
    lines.append(f"Same vectors as model.encode: min cosine {result.min_cosine:.7f} on the check texts.")
    lines.append("Opens:")
    lines += [f"  {door}" for door in result.doors()]
    return lines


def export_onnx(args: argparse.Namespace) -> list[str]:
    from multitask_st.export.onnx import export_onnx as export

    given = [flag for flag in GATE_FLAGS if getattr(args, flag) is not None]
    if given and not args.quantize:
        raise ValueError(f"--{given[0]} sets the int8 gate; it needs --quantize int8.")
    bounds, gate_texts = gate_settings(args)
    report = export(
        args.model_dir,
        args.output,
        quantize=args.quantize,
        arch=args.arch,
        overwrite=args.overwrite,
        gate=bounds,
        gate_texts=gate_texts,
    )
    return [
        f"{entry['file']}: {json.dumps({key: value for key, value in entry.items() if key != 'file'})}"
        for entry in report.values()
    ]


def _gate_texts(value: str) -> int | None:
    if value == "all":
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"--gate_texts takes a positive number or 'all', got {value!r}.")
    return int(value)


# The int8 gate's options: GateBounds' fields, and how many texts per built-in set.
GATE_FLAGS = (
    "max_flip_rate",
    "max_accuracy_drop",
    "max_spearman_drop",
    "min_mean_cosine",
    "max_regression_difference",
    "confidence",
    "gate_texts",
)

# --format value -> exporter(args) returning the lines to print. Another format is one entry here.
EXPORTERS: dict[str, Callable[[argparse.Namespace], list[str]]] = {
    "sentence-transformers": export_sentence_transformers,
    "onnx": export_onnx,
}


def add_gate_arguments(group: argparse._ArgumentGroup):
    """The gate's options (`GATE_FLAGS`), for every command that judges a reduced precision (export, gate)."""
    group.add_argument("--max_flip_rate", type=float, help="Share of a head's labels it may change (default 0.02).")
    group.add_argument(
        "--max_accuracy_drop", type=float, help="Accuracy drop in points on labelled texts (default 0.5)."
    )
    group.add_argument("--max_spearman_drop", type=float, help="STS-B Spearman drop in points (default 0.5).")
    group.add_argument("--min_mean_cosine", type=float, help="Mean embedding cosine to PyTorch (default 0.99).")
    group.add_argument(
        "--max_regression_difference",
        type=float,
        help="A regression head's mean difference to PyTorch, in target standard deviations (default 0.05).",
    )
    group.add_argument("--confidence", type=float, help="Confidence level of the intervals (default 0.95).")
    group.add_argument(
        "--gate_texts", help="Texts per built-in set, sampled from every split, or 'all' (default 2000)."
    )


def gate_settings(args: argparse.Namespace) -> tuple:
    """`(GateBounds, texts per built-in set)` from the gate's options; the flags given, in `GATE_FLAGS` order."""
    from multitask_st.export.precision_gate import DEFAULT_GATE_TEXTS, GateBounds

    given = [flag for flag in GATE_FLAGS if getattr(args, flag) is not None and flag != "gate_texts"]
    bounds = GateBounds(**{flag: getattr(args, flag) for flag in given})
    return bounds, DEFAULT_GATE_TEXTS if args.gate_texts is None else _gate_texts(args.gate_texts)


PROG = "multitask-st export"


def parse_args(argv: list[str] | None = None, prog: str = PROG) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "model_dir", help="A trained model folder (model.save_pretrained + tokenizer.save_pretrained)."
    )
    parser.add_argument("--format", required=True, choices=sorted(EXPORTERS), help="What to export to.")
    parser.add_argument(
        "--output",
        required=True,
        help="A new or empty folder (onnx: or the model folder itself, which gets onnx/).",
    )
    parser.add_argument(
        "--quantize",
        nargs="+",
        choices=["int8", "int8_static", "bf16"],
        help="onnx: reduced precisions to add, each judged by the gate: int8 (onnxruntime's dynamic int8 graph), "
        "int8_static (NNCF's static int8 graph for OpenVINO, calibrated on training texts), bf16 (onnx/model.onnx "
        "on OpenVINO in bf16: its evidence in the report, no new file). int8_static and bf16 need the openvino extra.",
    )
    parser.add_argument(
        "--arch", help="onnx: CPU the int8 graph is for: avx512_vnni, avx512, avx2 or arm64 (default: this machine's)."
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="onnx: replace an earlier export in --output (never another model's folder).",
    )
    add_gate_arguments(
        parser.add_argument_group(
            "int8 gate (onnx --quantize int8)",
            "The int8 graph is judged on every labelled split of the built-in sets the model was trained on, plus "
            "unlabelled built-in texts and STS-B test, and refused only when the evidence at --confidence says it is "
            "worse than a bound. A refused graph is not the end: the most sensitive encoder nodes are kept in fp32 "
            "until one passes.",
        )
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Export as the command line says; returns the exit status (errors: one line on stderr, status 1)."""
    args = parse_args(argv, prog)
    if not Path(args.model_dir).is_dir():
        return _fail(prog, f"model directory {args.model_dir!r} does not exist or is not a directory.")
    # SIGTERM (a job scheduler, `kill`) unwinds like Ctrl-C, so the exporters' temporary folders are removed.
    previous_handler = signal.signal(signal.SIGTERM, _interrupt)
    try:
        lines = EXPORTERS[args.format](args)
    except KeyboardInterrupt as interrupt:
        name = str(interrupt) or signal.SIGINT.name
        print(f"{prog}: {name}: export interrupted; its temporary files were removed.", file=sys.stderr)
        return 128 + signal.Signals[name].value
    except (ValueError, OSError, RuntimeError, ImportError) as error:
        return _fail(prog, " ".join(str(error).split()) or type(error).__name__)
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    print("\n".join(lines))
    return 0


def _interrupt(signum: int, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 1
