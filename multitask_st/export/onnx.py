"""Export a multitask-st model to one ONNX graph: the tokenizer's inputs in, the sentence embedding and every head out.

    folder/                                     what `export_onnx(model_dir, folder, quantize="int8")` writes
        config.json  tokenizer files            the model's own (the folder loads without the PyTorch weights)
        onnx/model.onnx                         fp32, attention and layer norms fused for onnxruntime
        onnx/model_qint8_avx512_vnni.onnx       int8 weights for the encoder's matmuls (name per CPU, as in
                                                sentence-transformers' `export_dynamic_quantized_onnx_model`)
        onnx/export_report.json                 what the export checked, per file: the deltas to PyTorch (int8:
                                                the gate's whole evidence, the nodes kept fp32 and the search),
                                                and its sha256 (checked on load; see `checksums`)

Inputs: `input_ids`, `attention_mask` and, where the backbone takes them, `token_type_ids`, each `(batch, sequence)`
int64 with both axes dynamic. Outputs: `sentence_embedding` `(batch, embedding_dim)` (pooled, projected and normalised
as configured), `logits_<task>` `(batch, num_labels)` per head, `last_hidden_state` (the encoder's token states, what
optimum's `ORTModelForFeatureExtraction` reads) and, for a config that normalises, `sentence_embedding_unnormalized`.

Nothing is written unless the graph passed its checks (`onnx_check`, `precision_gate`): an fp32 graph that misses a bound raises
instead; an int8 graph the statistical gate refuses is searched for one that passes (`quantize.accuracy_aware_int8`:
other weight settings, then the most sensitive encoder nodes kept fp32), and only if none does, the export raises.
Exporter choice, measured with torch 2.13 (see BENCHMARKS.md): the TorchScript exporter (`dynamo=False`) on the model
with eager attention gives the graph onnxruntime's BERT optimizer fuses fully (one `Attention` per layer,
`EmbedLayerNormalization`, `SkipLayerNormalization`, `BiasGelu`); the dynamo exporter's and SDPA's graphs leave the
attention unfused, and the dynamo export took 8x longer.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn
from transformers.utils import logging

from ..inference_multitask_st import PAIR_KINDS, pair_head_tasks, text_head_tasks
from ..layers_multitask_st import pair_features
from ..model_folder import (
    EXPORT_REPORT_NAME,
    ONNX_FILE_NAME,
    ONNX_SUBFOLDER,
    PAIR_HEADS_FILE_NAME,
    write_export_report,
)
from ..modeling_multitask_st import MultiTaskSTModel
from . import checksums, reduced_precision
from .model_source import load_model_tokenizer
from .onnx_runtime import (
    EMBEDDING_OUTPUT,
    LOGITS_PREFIX,
    METADATA_NORMALIZE,
    METADATA_TASKS,
    PAIR_HEADS_REPORT_KEY,
    PAIR_SECOND_INPUT,
    PAIR_TEXT_INPUT,
    UNNORMALIZED_EMBEDDING_OUTPUT,
)
from .precision_gate import DEFAULT_GATE_TEXTS, GateBounds


logger = logging.get_logger(__name__)

HIDDEN_STATE_OUTPUT = "last_hidden_state"
OPSET = 17  # LayerNormalization is an ONNX op from 17 on
# Backbones whose exported graph onnxruntime's BERT optimizer knows how to fuse.
FUSABLE_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "mpnet", "electra", "distilbert")
# The reduced precisions an export can add, each judged by the statistical gate: onnxruntime's dynamic int8 graph,
# NNCF's static int8 graph for OpenVINO (`static_int8`), and the fp32 graph as OpenVINO runs it in bf16 (no new file).
QUANTIZATIONS = ("int8", "int8_static", "bf16")
# Files that make a folder a model's (safetensors, their index, pickled checkpoints): never replaced by an export.
MODEL_WEIGHT_SUFFIXES = (".safetensors", ".safetensors.index.json", ".bin", ".pt", ".pth", ".ckpt")


class OnnxExportWrapper(nn.Module):
    """The model as a function of the tokenizer's tensors, returning the graph's outputs in a fixed order."""

    def __init__(self, model: MultiTaskSTModel, with_token_type_ids: bool):
        super().__init__()
        self.model = model
        self.with_token_type_ids = with_token_type_ids

    def output_names(self) -> list[str]:
        names = [EMBEDDING_OUTPUT, *(LOGITS_PREFIX + task for task in text_head_tasks(self.model.config.task_kinds))]
        names.append(HIDDEN_STATE_OUTPUT)
        if self.model.config.normalize_embeddings:
            names.append(UNNORMALIZED_EMBEDDING_OUTPUT)
        return names

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        model = self.model
        token_type_ids = token_type_ids if self.with_token_type_ids else None
        pooled, backbone_output = model.pool(input_ids, attention_mask, token_type_ids)
        projected = model.projection(pooled)  # (batch, embedding_dim), what the heads read
        outputs = [model.finish_embedding(projected)]
        outputs += [model.heads[task](projected) for task in text_head_tasks(model.config.task_kinds)]
        outputs.append(backbone_output.last_hidden_state)  # (batch, sequence, hidden)
        if model.config.normalize_embeddings:
            outputs.append(projected)
        return tuple(outputs)


class OnnxPairHeadsExportWrapper(nn.Module):
    """The pair heads as a function of two texts' projected embeddings (the main graph's un-normalised embedding):
    one logits output per `pair_classification` / `pair_regression` task."""

    def __init__(self, model: MultiTaskSTModel):
        super().__init__()
        self.model = model
        self.tasks = pair_head_tasks(model.config.task_kinds)

    def forward(self, text_embedding, pair_embedding):
        features = pair_features(text_embedding, pair_embedding)
        return tuple(self.model.heads[task](features) for task in self.tasks)


def export_pair_heads_graph(model: MultiTaskSTModel, path: str | os.PathLike) -> Path:
    """Write the pair heads' graph (see `OnnxPairHeadsExportWrapper`) to `path`, with the tasks in its metadata."""
    import onnx

    path = Path(path)
    wrapper = OnnxPairHeadsExportWrapper(model).eval()
    input_names = [PAIR_TEXT_INPUT, PAIR_SECOND_INPUT]
    output_names = [LOGITS_PREFIX + task for task in wrapper.tasks]
    example = tuple(torch.randn(2, model.config.embedding_dim) for _ in input_names)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(
            wrapper,
            example,
            str(path),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes={name: {0: "batch"} for name in input_names + output_names},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    graph = onnx.load(str(path))
    onnx.helper.set_model_props(graph, {METADATA_TASKS: json.dumps(model.config.tasks)})
    onnx.save(graph, str(path))
    return path


def export_onnx(
    model_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    quantize: str | list[str] | tuple[str, ...] | None = None,
    *,
    arch: str | None = None,
    overwrite: bool = False,
    check_texts: int = 256,
    gate: GateBounds | None = None,
    gate_texts: int | None = DEFAULT_GATE_TEXTS,
) -> dict:
    """Export a saved model folder to ONNX, check the graph(s) against PyTorch, and write them with the tokenizer.

    Args:
        model_dir: A folder `MultiTaskSTModel.save_pretrained` + `tokenizer.save_pretrained` wrote (e.g. `train.py`'s).
        output_dir: Where to write; a new or empty folder, or `model_dir` itself (then only `onnx/` is added, and
            `push_to_hub.py` uploads it with the model).
        quantize: A reduced precision to add, or several (`QUANTIZATIONS`), each judged by the statistical gate and
            its evidence written to the report: `"int8"` writes the dynamically quantised graph (int8 weights for the
            encoder's matmuls, onnxruntime); `"int8_static"` the static int8 graph for OpenVINO (NNCF, calibrated on
            training texts; `static_int8`); `"bf16"` judges `onnx/model.onnx` as OpenVINO runs it in bf16 (the report's
            `bf16` entry; no new file). int8 graphs the gate refuses are searched for one that passes (nodes kept
            fp32); a bf16 refusal fails the export.
        arch: The CPU the int8 file is named and tuned for (`avx512_vnni`, `avx512`, `avx2`, `arm64`); defaults to
            this machine's.
        overwrite: Replace an existing `onnx/` folder in `output_dir`.
        check_texts: How many real texts (from the built-in sets) the fp32 graph is compared on.
        gate: What the int8 graph may cost and at which confidence it is refused (`precision_gate.GateBounds`; the
            defaults: flip rate 2%, accuracy and STS-B Spearman drop 0.5 points, mean cosine 0.99, at 95%).
        gate_texts: Texts per built-in set the int8 graph is judged on (every split, sampled; `None`: all).

    Returns:
        The report written to `onnx/export_report.json`: per file, the measured deltas to PyTorch and the bounds.

    Raises:
        ValueError: when a graph misses a bound (nothing is written then), or for bad arguments.
    """
    from . import onnx_check, precision_gate
    from . import quantize as quantization

    gate = precision_gate.GateBounds() if gate is None else gate
    if not isinstance(gate, precision_gate.GateBounds):
        raise TypeError(f"`gate` must be a GateBounds or None, got {type(gate).__name__}.")
    if gate_texts is not None and (not isinstance(gate_texts, int) or isinstance(gate_texts, bool) or gate_texts < 1):
        raise ValueError(f"`gate_texts` must be a positive int or None (all texts), got {gate_texts!r}.")
    precisions = [quantize] if isinstance(quantize, str) else list(quantize or ())
    if not all(isinstance(name, str) and name in QUANTIZATIONS for name in precisions):
        raise ValueError(
            f"`quantize` must be one of {list(QUANTIZATIONS)}, a list of them, or None, got {quantize!r}."
        )
    for precision in set(precisions) & {"int8_static", "bf16"}:
        reduced_precision.require_openvino(precision)
    arch = quantization.host_arch() if arch is None else arch
    if arch not in quantization.ARCHS:
        raise ValueError(f"`arch` must be one of {list(quantization.ARCHS)}, got {arch!r}.")
    model_dir, output_dir = Path(model_dir), Path(output_dir)
    in_place = output_dir.resolve() == model_dir.resolve()
    _check_output_dir(output_dir, in_place, overwrite)

    # The tokenizer first: a folder without the model's own is refused before any weight is read.
    tokenizer = load_model_tokenizer(model_dir, MultiTaskSTModel.config_class.from_pretrained(model_dir))
    model = MultiTaskSTModel.from_pretrained(model_dir).eval()
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{model_dir}'s tokenizer has no fast (tokenizer.json) form, which the ONNX runtime reads.")

    with tempfile.TemporaryDirectory(prefix="multitask-st-onnx-") as temporary:
        staging = Path(temporary)
        tokenizer.save_pretrained(staging)  # writes tokenizer.json, which the runtime reads
        model.config.to_json_file(staging / "config.json")  # the config alone: this folder runs no Python of ours
        onnx_dir = staging / ONNX_SUBFOLDER
        onnx_dir.mkdir()
        fp32_path = onnx_dir / ONNX_FILE_NAME
        export_graph(model, tokenizer, fp32_path)
        if pair_head_tasks(model.config.task_kinds):
            export_pair_heads_graph(model, onnx_dir / PAIR_HEADS_FILE_NAME)

        texts = onnx_check.check_texts(check_texts)
        report = {"fp32": onnx_check.check_fp32(model, tokenizer, staging, ONNX_FILE_NAME, texts)}
        if any(kind in PAIR_KINDS for kind in model.config.task_kinds.values()):
            pair_check = onnx_check.check_pairs(model, tokenizer, staging, texts)
            if "file" in pair_check:  # the pair heads' graph: an entry of its own, with its checksum
                report[PAIR_HEADS_REPORT_KEY] = pair_check
            else:  # embedding tasks only: the encoder graph's cosines, checked with it
                report["fp32"]["pair_tasks"] = pair_check
        if precisions:  # PyTorch's reference on the gate's texts, once for every precision judged
            reference = precision_gate.gate_reference(model, tokenizer, model_dir, gate_texts)
        if "int8" in precisions:
            report["int8"] = reduced_precision.quantize_int8_gated(staging, arch, reference, gate)
        if "bf16" in precisions:
            report["bf16"] = reduced_precision.judge_bf16(staging, reference, gate)
        if "int8_static" in precisions:  # last: the card's example loads the report's last file, the fastest
            report["int8_static"] = reduced_precision.quantize_static_int8_gated(
                model,
                tokenizer,
                model_dir,
                staging,
                reference,
                gate,
                write_unfused=lambda path: export_graph(model, tokenizer, path, fuse=False),
            )
        weights = checksums.weight_checksums(model_dir)  # what the graphs were exported from
        for entry in report.values():
            entry["file"] = f"{ONNX_SUBFOLDER}/{entry['file']}"
            checksums.record_checksums(entry, staging, weights)
        write_export_report(report, staging)
        _publish(staging, output_dir, in_place)
    logger.info(f"Wrote {', '.join(entry['file'] for entry in report.values())} to {output_dir}.")
    return report


def export_graph(model: MultiTaskSTModel, tokenizer, path: str | os.PathLike, fuse: bool = True) -> Path:
    """Write the fp32 graph of `model` to `path`: exported, fused for onnxruntime where the backbone allows, with
    the model's tasks and normalisation in its metadata."""
    import onnx

    path = Path(path)
    with_token_type_ids = "token_type_ids" in tokenizer.model_input_names and _uses_token_types(model)
    input_names = ["input_ids", "attention_mask"] + (["token_type_ids"] if with_token_type_ids else [])
    wrapper = OnnxExportWrapper(model, with_token_type_ids).eval()
    output_names = wrapper.output_names()
    # Two texts of different lengths: the example batch has padding, so nothing specialises on a full mask.
    example = tokenizer(["A short text.", "A somewhat longer text to embed and to classify."], padding=True)
    args = tuple(torch.tensor(example[name]) for name in input_names)
    dynamic_axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
    dynamic_axes.update({name: {0: "batch"} for name in output_names})
    dynamic_axes[HIDDEN_STATE_OUTPUT] = {0: "batch", 1: "sequence"}

    attention = model.config.backbone_config._attn_implementation
    model.set_attn_implementation("eager")  # the attention pattern onnxruntime's optimizer fuses
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            # The tracer's notes on shape-dependent Python branches (fixed for any input here: padding is always
            # on the right, positions start at 0) and on index ops (no negative indices here).
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=".*aten::index.*", category=UserWarning)
            # Chosen on purpose (see the module docstring); torch 2.13 still ships it, deprecated.
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            torch.onnx.export(
                wrapper,
                args,
                str(path),
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
    finally:
        model.set_attn_implementation(attention)

    graph = onnx.load(str(path))
    if fuse and model.config.backbone_config.model_type in FUSABLE_MODEL_TYPES:
        graph = _fuse(graph, model)
    onnx.helper.set_model_props(
        graph,
        {
            METADATA_TASKS: json.dumps(model.config.tasks),
            METADATA_NORMALIZE: json.dumps(model.config.normalize_embeddings),
        },
    )
    onnx.save(graph, str(path))
    return path


def _fuse(graph, model: MultiTaskSTModel):
    """onnxruntime's transformer optimizer: attention, embedding + layer norm, skip + layer norm, bias + GELU."""
    import onnx
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    backbone = model.config.backbone_config
    options = FusionOptions("bert")
    optimized = optimizer.optimize_model(
        graph,
        model_type="bert",
        num_heads=getattr(backbone, "num_attention_heads", 0),
        hidden_size=model.config.backbone_hidden_size,
        optimization_options=options,
        opt_level=0,  # fusions only; the session applies onnxruntime's generic graph optimisations at load
    )
    fused = {name: count for name, count in optimized.get_fused_operator_statistics().items() if count}
    logger.info(f"Fused operators: {fused}.")
    graph = optimized.model
    if fused and not any(opset.domain == "com.microsoft" for opset in graph.opset_import):
        graph.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))  # the fused ops' domain
    return graph


def _uses_token_types(model: MultiTaskSTModel) -> bool:
    embeddings = getattr(model.backbone, "embeddings", None)
    return getattr(embeddings, "token_type_embeddings", None) is not None


def _check_output_dir(output_dir: Path, in_place: bool, overwrite: bool):
    """The rule: `output_dir` is new, empty, the model folder itself (which gets `onnx/`), or, with `overwrite`, an
    earlier export (it has `onnx/export_report.json`), whose whole contents the new export replaces. Any other folder
    is refused even with `overwrite`: another model's weights kept would mix two models (PyTorch and ONNX outputs that
    disagree), deleted would lose a model; and files that are not an export's are never deleted."""
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"`output_dir` {str(output_dir)!r} is a file, not a folder; pass a new or empty folder.")
    if in_place:
        if (output_dir / ONNX_SUBFOLDER).exists() and not overwrite:
            raise ValueError(f"{output_dir / ONNX_SUBFOLDER} exists already; pass overwrite=True (--overwrite).")
        return
    if not output_dir.exists() or not any(output_dir.iterdir()):
        return
    if not overwrite:
        raise ValueError(
            f"`output_dir` {str(output_dir)!r} must be a new or empty folder, or the model folder itself "
            "(to add onnx/ to it); pass overwrite=True (--overwrite) to replace its contents."
        )
    weights = sorted(path.name for path in output_dir.iterdir() if path.name.endswith(MODEL_WEIGHT_SUFFIXES))
    if weights:
        raise ValueError(
            f"`output_dir` {str(output_dir)!r} holds another model ({', '.join(weights)}): overwrite replaces an "
            "earlier export, never another model's folder, whose weights would then disagree with the ONNX graph. "
            "Export into a new folder, or export that model into its own folder."
        )
    if not (output_dir / ONNX_SUBFOLDER / EXPORT_REPORT_NAME).is_file():
        raise ValueError(
            f"`output_dir` {str(output_dir)!r} is not an earlier export (it has no {ONNX_SUBFOLDER}/{EXPORT_REPORT_NAME}): "
            "overwrite replaces an earlier export whole and deletes nothing else. Pass a new or empty folder."
        )


def _publish(staging: Path, output_dir: Path, in_place: bool):
    """Move the checked files into place: only `onnx/` into a model folder; into any other folder, everything, in
    place of all it held (`_check_output_dir` allowed that), so no file of an earlier export stays beside the new."""
    output_dir.mkdir(parents=True, exist_ok=True)
    names = [ONNX_SUBFOLDER] if in_place else [path.name for path in staging.iterdir()]
    replaced = [output_dir / name for name in names] if in_place else list(output_dir.iterdir())
    for target in replaced:
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
    for name in names:
        shutil.move(str(staging / name), str(output_dir / name))
