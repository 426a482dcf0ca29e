"""Export a trained model folder for another runtime.

    python export.py outputs/multitask-st --format onnx --output outputs/multitask-st-onnx
    python export.py outputs/multitask-st --format onnx --quantize int8 --output outputs/multitask-st   # adds onnx/

The ONNX export writes onnx/model.onnx (and onnx/model_qint8_<cpu>.onnx with --quantize int8), checked against the
PyTorch model on real texts first: a graph that misses the bounds is not written (see multitask_st/export/onnx.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


FORMATS = ("onnx",)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "model_dir", help="A trained model folder (model.save_pretrained + tokenizer.save_pretrained)."
    )
    parser.add_argument("--format", required=True, choices=FORMATS, help="What to export to.")
    parser.add_argument(
        "--output", required=True, help="A new or empty folder, or the model folder itself (adds onnx/ to it)."
    )
    parser.add_argument("--quantize", choices=["int8"], help="Also write the int8 graph (dynamic quantisation).")
    parser.add_argument(
        "--arch", help="CPU the int8 graph is for: avx512_vnni, avx512, avx2 or arm64 (default: this machine's)."
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing export in --output.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from multitask_st.export.onnx import export_onnx

    try:
        report = export_onnx(
            args.model_dir, args.output, quantize=args.quantize, arch=args.arch, overwrite=args.overwrite
        )
    except (ValueError, OSError) as error:
        print(f"export.py: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    for entry in report.values():
        print(f"{entry['file']}: {json.dumps({key: value for key, value in entry.items() if key != 'file'})}")
    return 0


if __name__ == "__main__":
    package_logger = logging.getLogger("multitask_st")
    package_logger.setLevel(logging.INFO)
    package_logger.addHandler(logging.StreamHandler(sys.stdout))
    package_logger.propagate = False  # onnxruntime's quantiser configures the root logger too
    sys.exit(main())
