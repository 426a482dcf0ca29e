"""Judge a reduced precision of PyTorch itself with the int8 gate's statistics (`multitask-st gate`).

    multitask-st gate outputs/multitask-st --dtype bfloat16
    multitask-st gate outputs/multitask-st --dtype bfloat16 --gate_texts 500 --json bf16-gate.json

Runs the model once in float32 and once with `encode`/`predict(..., dtype=...)` (autocast: the weights stay float32) on
the gate's texts, the same texts, statistics and bounds that judge an int8 graph at export (`precision_gate.judge_dtype`):
per head the labels it changes with their exact interval, the paired accuracy change with the exact McNemar test on
labelled texts, the STS-B Spearman change with a bootstrap interval, and the embeddings' cosine. Prints the evidence
and the verdict; exit status 0 when it passes, 1 when refused or on an error (one line on stderr). Writes nothing but
the --json file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .export import add_gate_arguments, gate_settings


PROG = "multitask-st gate"
DTYPES = ("bfloat16", "float16")


def parse_args(argv: list[str] | None = None, prog: str = PROG) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "model_dir", help="A trained model folder (model.save_pretrained + tokenizer.save_pretrained)."
    )
    parser.add_argument(
        "--dtype", default="bfloat16", choices=DTYPES, help="The precision to judge (default bfloat16)."
    )
    parser.add_argument("--json", help="Also write the whole evidence to this JSON file.")
    add_gate_arguments(parser.add_argument_group("gate", "The bounds and texts, as for `export --quantize int8`."))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Judge as the command line says; returns the exit status."""
    args = parse_args(argv, prog)
    try:
        if not Path(args.model_dir).is_dir():
            raise ValueError(f"model directory {args.model_dir!r} does not exist or is not a directory.")
        evidence = judge(args)
    except (ValueError, OSError, RuntimeError) as error:
        print(f"{prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    from multitask_st.sharing.export_evidence import gate_evidence

    checked, measured = gate_evidence(evidence)
    print(f"{args.dtype} vs float32 on {checked}")
    print(measured)
    print(f"PyTorch {args.dtype}: {evidence['texts_per_second']:.1f} texts/s on the gate texts (both heads)")
    if args.json:
        Path(args.json).write_text(json.dumps(evidence, indent=2) + "\n", encoding="utf-8")
    if evidence["passed"]:
        print(f"passed: {args.dtype} is within every bound at {evidence['bounds']['confidence']:.0%} confidence")
        return 0
    print(f"{prog}: refused: {'; '.join(evidence['refusals'])}", file=sys.stderr)
    return 1


def judge(args: argparse.Namespace) -> dict:
    from multitask_st.export.model_source import load_model_tokenizer
    from multitask_st.export.precision_gate import gate_reference, judge_dtype
    from multitask_st.modeling_multitask_st import MultiTaskSTModel

    bounds, gate_texts = gate_settings(args)
    tokenizer = load_model_tokenizer(args.model_dir, MultiTaskSTModel.config_class.from_pretrained(args.model_dir))
    model = MultiTaskSTModel.from_pretrained(args.model_dir).eval()
    reference = gate_reference(model, tokenizer, Path(args.model_dir), gate_texts)
    return judge_dtype(reference, model, tokenizer, args.dtype, bounds)
