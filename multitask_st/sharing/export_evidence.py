"""What the card (and `multitask-st gate`) says of a folder's ONNX exports: per file, what its export checked and
what it measured, from the export report."""

from __future__ import annotations

from ..model_folder import read_export_report
from .model_dir import ModelDir


# How the card names a report entry's precision (the entry's key), where the key alone would not say how it runs.
PRECISION_LABELS = {"int8_static": "int8 static (OpenVINO)", "bf16": "bf16 (OpenVINO)"}


def onnx_exports(folder: ModelDir) -> list[dict[str, str]]:
    """The ONNX files `export.py --format onnx` added to the folder, each with what its export checked: one row per
    report entry (a precision), so `onnx/model.onnx` has a row for fp32 and one for bf16 on OpenVINO when judged."""
    rows = []
    for precision, entry in read_export_report(folder.path).items():
        if precision == "fp32":
            differing = sum(entry["labels_differing"].values())
            checked = f"{entry['texts']} texts of the built-in sets"
            result = f"min embedding cosine {entry['min_cosine']:.6f}; labels differing: {differing}"
        elif "pairs" in entry:  # the pair heads' graph: fp32, checked on pairs of texts
            differing = sum(entry["labels_differing"].values())
            checked = f"{entry['pairs']} pairs of built-in texts"
            largest = max(entry["max_score_difference"].values(), default=0.0)
            result = f"largest score difference {largest:.2e}; labels differing: {differing}"
        elif "refusals" in entry:  # judged by the statistical gate
            checked, result = gate_evidence(entry)
        else:  # an export from before the statistical gate: fixed bounds on each task's test split
            checked = "; ".join(f"`{task}`: {row['data']}" for task, row in entry["tasks"].items())
            checked += f"; {entry['stsb_spearman']['data']}"
            deltas = [
                f"`{task}` accuracy {row['delta_points']:+.2f}"
                if "delta_points" in row
                else f"`{task}` agreement {row['agreement']:.2%}"
                for task, row in entry["tasks"].items()
            ]
            spearman = entry["stsb_spearman"]["delta_points"]
            result = f"{', '.join(deltas)} points; STS-B Spearman {spearman:+.2f} points; mean cosine "
            result += f"{entry['mean_cosine']:.4f}"
        rows.append(
            {
                "file": entry["file"],
                "precision": PRECISION_LABELS.get(precision, precision),
                "backend": entry.get("backend"),  # None: onnxruntime
                "checked": checked,
                "result": result,
            }
        )
    return rows


def gate_evidence(entry: dict) -> tuple[str, str]:
    """The reduced-precision gate's evidence in two table cells: what it was judged on, and what it measured (also
    what `multitask-st gate` prints)."""
    bounds = entry["bounds"]
    level = f"{bounds['confidence']:.0%}"
    checked = f"{entry['texts']} texts: " + ", ".join(entry["sources"])
    parts = []
    for task, row in entry["tasks"].items():
        if "mean_abs_difference_std" in row:  # a regression head
            parts.append(
                f"`{task}` differs by {row['mean_abs_difference_std']:.3f} target std on average (bound "
                f"{bounds.get('max_regression_difference')})"
            )
            continue
        flips = row["flips"]
        low, high = flips["flip_rate_interval"]
        text = (
            f"`{task}` changes {flips['flips']} of {flips['texts']} labels ({flips['flip_rate']:.2%}; {level} "
            f"interval {low:.2%}-{high:.2%}, bound {bounds['max_flip_rate']:.2%})"
        )
        if "accuracy" in row:
            accuracy = row["accuracy"]
            low, high = accuracy["drop_points_interval"]
            text += (
                f", accuracy {accuracy['accuracy_graph']:.2f}% vs {accuracy['accuracy_pytorch']:.2f}% on "
                f"{accuracy['texts']} labelled texts (drop {accuracy['drop_points']:+.2f} points, {level} interval "
                f"{low:+.2f} to {high:+.2f}, bound {bounds['max_accuracy_drop']}; exact McNemar p = "
                f"{accuracy['mcnemar_p_value']:.2g})"
            )
        parts.append(text)
    spearman = entry["stsb_spearman"]
    low, high = spearman["delta_points_interval"]
    parts.append(
        f"STS-B Spearman {spearman['delta_points']:+.2f} points ({level} interval {low:+.2f} to {high:+.2f}, "
        f"bound -{bounds['max_spearman_drop']})"
    )
    parts.append(
        f"embedding cosine mean {entry['mean_cosine']:.4f} (bound {bounds['min_mean_cosine']}), "
        f"min {entry['min_cosine']:.4f}"
    )
    quantization = entry.get("quantization", {})
    kept = quantization.get("nodes_kept_fp32") or []
    if kept:
        speed = quantization.get("texts_per_second", {})
        cost = (
            f" (texts/s at export: {speed['int8_this_graph']:.0f} vs {speed['int8_whole_encoder']:.0f} all-int8, "
            f"{speed['fp32']:.0f} fp32)"
            if speed
            else ""
        )
        parts.append(f"{len(kept)} encoder nodes kept in fp32: {', '.join(f'`{n}`' for n in kept)}{cost}")
    if "calibration" in quantization:  # static int8
        parts.append(f"calibrated on {quantization['calibration']}")
    if "backend" in entry:  # judged as another runtime runs the graph, in the precision it settled on
        parts.append(f"judged on {entry['backend']}, which ran it in {_precision_name(entry.get('precision', ''))}")
    return checked, "; ".join(parts)


def _precision_name(precision: str) -> str:
    """OpenVINO's element type as the session reports it (`<Type: 'bfloat16'>`) -> `bfloat16`."""
    return precision.removeprefix("<Type: '").removesuffix("'>") or "its default precision"
