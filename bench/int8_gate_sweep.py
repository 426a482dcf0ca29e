"""Does `export.py --format onnx --quantize int8` give a passing graph for every `--arch` and for models trained with
other seeds? The export's own steps (`export_graph`, `gate_reference`, `quantize_int8_gated`: the gate at its defaults,
2,000 texts per source, and the accuracy-aware fallback), run once per model for the fp32 graph and PyTorch's
reference, then once per arch, with a table of what each arch's graph cost and what was kept in fp32.

    python bench/int8_gate_sweep.py /work/models/demo /work/models/demo-seed1 /work/models/demo-seed2 \
        --output outputs/int8_gate_sweep.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (offline defaults, the checkout on sys.path)

from multitask_st import MultiTaskSTModel
from multitask_st.export import precision_gate, reduced_precision
from multitask_st.export.model_source import load_model_tokenizer
from multitask_st.export.onnx import export_graph
from multitask_st.export.quantize import ARCHS
from multitask_st.model_folder import ONNX_FILE_NAME, ONNX_SUBFOLDER


def sweep(model_dir: Path, archs: list[str], gate_texts: int | None) -> dict:
    tokenizer = load_model_tokenizer(model_dir, MultiTaskSTModel.config_class.from_pretrained(model_dir))
    model = MultiTaskSTModel.from_pretrained(model_dir).eval()
    gate = precision_gate.GateBounds()
    results = {}
    with tempfile.TemporaryDirectory(prefix="int8-sweep-") as temporary:
        staging = Path(temporary)
        tokenizer.save_pretrained(staging)
        model.config.to_json_file(staging / "config.json")
        (staging / ONNX_SUBFOLDER).mkdir()
        export_graph(model, tokenizer, staging / ONNX_SUBFOLDER / ONNX_FILE_NAME)
        reference = precision_gate.gate_reference(model, tokenizer, model_dir, gate_texts)
        for arch in archs:
            started = time.perf_counter()
            try:
                evidence = reduced_precision.quantize_int8_gated(staging, arch, reference, gate)
            except ValueError as error:  # no graph passes, not even with every node fp32
                results[arch] = {"passed": False, "error": str(error)}
                continue
            settings = evidence["quantization"]
            results[arch] = {
                "passed": evidence["passed"],
                "texts": len(reference.texts),
                "flips": {task: row["flips"]["flips"] for task, row in evidence["tasks"].items() if "flips" in row},
                "accuracy": {
                    task: [row["accuracy"]["accuracy_pytorch"], row["accuracy"]["accuracy_graph"]]
                    for task, row in evidence["tasks"].items()
                    if "accuracy" in row
                },
                "stsb_spearman": [evidence["stsb_spearman"]["pytorch"], evidence["stsb_spearman"]["graph"]],
                "mean_cosine": evidence["mean_cosine"],
                "nodes_kept_fp32": settings["nodes_kept_fp32"],
                "reduce_range": settings.get("reduce_range"),
                "per_channel": settings.get("per_channel"),
                "attempts": len(settings.get("search", [])),
                "seconds": round(time.perf_counter() - started, 1),
            }
            print(model_dir.name, arch, results[arch], flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="Trained model folders (e.g. make demo's, other seeds).")
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    parser.add_argument("--gate-texts", type=int, default=precision_gate.DEFAULT_GATE_TEXTS)
    parser.add_argument("--output", type=Path, default=None, help="Write the results as JSON here.")
    args = parser.parse_args()
    results = {}
    for model_dir in args.models:
        results[str(model_dir)] = sweep(model_dir, args.archs, args.gate_texts)
        if args.output:
            args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
