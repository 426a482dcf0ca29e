"""Export a multitask-st model's embedding as a plain sentence-transformers folder: no remote code, no multitask-st.

    encoder -> pooling (mean/cls/max) -> projection (none / Linear+LayerNorm / MLP+LayerNorm) [-> L2 normalisation]
    becomes  Transformer -> Pooling -> [Dense -> (Dense ->) LayerNorm] -> [Normalize]

with the same vectors (checked on export). Attention pooling has no sentence-transformers module, so it is refused with
the reason; such a model still loads in `SentenceTransformer(model_dir, trust_remote_code=True)`. The heads stay
behind: this folder is the embedding only.

The folder is written in the classic layout (`sentence_transformers.models.*` module names, `pooling_mode_*_tokens`
flags, `max_seq_length` in sentence_bert_config.json), which sentence-transformers 2 to 6 and text-embeddings-inference
(TEI) read; [`tei_problems`] says whether TEI would serve the same vectors (see `export/tei.py`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModel
from transformers.utils import logging

from ..modeling_multitask_st import MultiTaskSTModel
from .model_source import load_model_tokenizer
from .tei import TEI_MODEL_TYPES, tei_problems


logger = logging.get_logger(__name__)

# Our activation names -> the torch module sentence-transformers' Dense loads without remote code (transformers'
# "gelu" is the exact erf GELU, as `torch.nn.GELU()`).
DENSE_ACTIVATIONS = {"gelu": torch.nn.GELU, "relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "silu": torch.nn.SiLU}
CHECK_TEXTS = (
    "A sentence to embed.",
    "Shares fell sharply after the quarterly results were published.",
    "The film is a delight from start to finish.",
    "x",
)
MIN_COSINE = 0.99999


@dataclass
class SentenceTransformersExport:
    """What [`export_sentence_transformers`] wrote."""

    output_dir: Path
    files: list[str]
    modules: list[str]
    min_cosine: float
    tei_problems: list[str] = field(default_factory=list)

    @property
    def tei_ready(self) -> bool:
        return not self.tei_problems

    def doors(self) -> list[str]:
        """One line per way to use the folder."""
        import sentence_transformers

        doors = [
            f"SentenceTransformer({str(self.output_dir)!r}): no trust_remote_code, no multitask-st (the classic "
            f"layout; loaded back and checked with sentence-transformers {sentence_transformers.__version__})",
        ]
        if self.tei_ready:
            note = (
                ""
                if "Normalize" in self.modules
                else " (TEI L2-normalises by default; send normalize=false for the raw vectors)"
            )
            doors.append(f"text-embeddings-inference: --model-id {self.output_dir}{note}")
        else:
            doors.append("not text-embeddings-inference: " + "; ".join(self.tei_problems))
        return doors


def export_sentence_transformers(
    model_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    check_texts: list[str] | None = None,
    revision: str | None = None,
) -> SentenceTransformersExport:
    """Write `model_dir`'s embedding as a plain sentence-transformers folder in `output_dir` (empty or new).

    `model_dir` is a saved model folder or a Hub repository id (then `revision` pins its commit).

    Raises:
        ValueError: the model uses attention pooling (no sentence-transformers module computes it), or `output_dir`
            is not empty.
        RuntimeError: the exported folder's vectors differ from `model.encode`'s (cosine below 0.99999).
    """
    from sentence_transformers import SentenceTransformer

    output_dir = Path(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise ValueError(f"`output_dir` {str(output_dir)!r} must be an empty directory or not exist yet.")
    config = MultiTaskSTModel.config_class.from_pretrained(model_dir, revision=revision)
    refusal = plain_export_plan(config).refusal
    if refusal is not None:  # before loading any weight
        raise ValueError(refusal)
    tokenizer = load_model_tokenizer(model_dir, config, revision=revision)
    model = MultiTaskSTModel.from_pretrained(model_dir, revision=revision).eval()
    try:
        with tempfile.TemporaryDirectory(prefix="multitask-st-backbone-") as backbone_dir:
            plain = _plain_sentence_transformer(model, tokenizer, backbone_dir)
            plain.save(str(output_dir))
        _write_classic_layout(output_dir, plain, model.default_max_length(tokenizer))
        # Load it back as a stranger would (no remote code) and compare with `encode`.
        texts = list(check_texts or CHECK_TEXTS)
        reloaded = SentenceTransformer(str(output_dir), device="cpu")
        theirs = torch.as_tensor(reloaded.encode(texts, batch_size=8))
        ours = model.encode(texts, tokenizer, batch_size=8, convert_to_tensor=True).cpu()
        min_cosine = torch.nn.functional.cosine_similarity(theirs, ours, dim=-1).min().item()
        if min_cosine < MIN_COSINE:
            raise RuntimeError(f"The exported folder's vectors differ from `encode`'s: min cosine {min_cosine:.7f}.")
    except BaseException:
        shutil.rmtree(output_dir, ignore_errors=True)  # it was empty or new: leave no half-written export
        raise
    files = sorted(path.relative_to(output_dir).as_posix() for path in output_dir.rglob("*") if path.is_file())
    modules = [type(module).__name__ for module in plain]
    export = SentenceTransformersExport(output_dir, files, modules, min_cosine, tei_problems(output_dir))
    logger.info(f"Exported {model_dir} to {output_dir}: {' -> '.join(modules)}; min cosine {min_cosine:.7f}.")
    return export


ATTENTION_REFUSAL = (
    "Cannot export pooling_mode='attention' to a plain sentence-transformers folder: its learned attention query has "
    "no sentence-transformers module (Pooling computes mean, cls, max...). Use the model folder itself: "
    "SentenceTransformer(model_dir, trust_remote_code=True)."
)


@dataclass
class PlainExportPlan:
    """What [`export_sentence_transformers`] would write for a config, without writing it (the model card shows it)."""

    modules: list[str]
    refusal: str | None
    tei_problems: list[str]

    @property
    def tei_ready(self) -> bool:
        return self.refusal is None and not self.tei_problems


def plain_export_plan(config) -> PlainExportPlan:
    """The sentence-transformers modules a `MultiTaskSTConfig` exports to, why it cannot be exported (or None), and
    why TEI would not serve the result (the same verdict [`tei_problems`] gives on the written folder)."""
    if config.pooling_mode == "attention":
        return PlainExportPlan([], ATTENTION_REFUSAL, ["attention pooling cannot be exported"])
    modules = ["Transformer", "Pooling"]
    modules += {"none": [], "linear": ["Dense", "LayerNorm"], "mlp": ["Dense", "Dense", "LayerNorm"]}[
        config.projection
    ]
    modules += ["Normalize"] if config.normalize_embeddings else []
    problems = []
    model_type = getattr(config.backbone_config, "model_type", None)
    if model_type not in TEI_MODEL_TYPES:
        problems.append(f"config.json model_type {model_type!r} is not one TEI implements")
    if config.pooling_mode not in ("mean", "cls"):
        problems.append(f"pooling {config.pooling_mode!r} is not CLS or mean, the two TEI applies")
    if config.projection == "mlp" and config.projection_activation != "tanh":
        problems.append(
            f"the MLP's {config.projection_activation} Dense activation is not identity or tanh, which TEI applies"
        )
    if config.projection != "none":
        problems.append(
            "the projection's LayerNorm module is not one TEI applies (and makes TEI skip every Dense module)"
        )
    return PlainExportPlan(modules, None, problems)


def _plain_sentence_transformer(model: MultiTaskSTModel, tokenizer, backbone_dir: str):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import LayerNorm, Pooling

    config = model.config
    _save_backbone(model, backbone_dir)
    tokenizer.save_pretrained(backbone_dir)
    modules = [
        Transformer(backbone_dir, max_seq_length=model.default_max_length(tokenizer)),
        Pooling(config.backbone_hidden_size, pooling_mode=config.pooling_mode),
    ]
    layers = list(model.projection) if config.projection != "none" else []
    # linear: [Linear, LayerNorm]; mlp: [Linear, activation, Linear, LayerNorm]
    with torch.no_grad():
        while layers:
            layer = layers.pop(0)
            if isinstance(layer, torch.nn.Linear):
                activation = torch.nn.Identity()
                if layers and not isinstance(layers[0], (torch.nn.Linear, torch.nn.LayerNorm)):
                    activation = DENSE_ACTIVATIONS[config.projection_activation]()
                    layers.pop(0)
                dense = Dense(layer.in_features, layer.out_features, bias=True, activation_function=activation)
                dense.linear.load_state_dict(layer.state_dict())
                modules.append(dense)
            elif isinstance(layer, torch.nn.LayerNorm):
                if layer.eps != 1e-5:  # sentence-transformers' LayerNorm uses torch's default eps
                    raise ValueError(
                        f"Cannot export a LayerNorm with eps {layer.eps}; sentence-transformers uses 1e-05."
                    )
                norm = LayerNorm(layer.normalized_shape[0])
                norm.norm.load_state_dict(layer.state_dict())
                modules.append(norm)
            else:
                raise ValueError(f"Cannot export projection layer {layer!r} to a sentence-transformers module.")
    if config.normalize_embeddings:
        modules.append(Normalize())
    return SentenceTransformer(modules=modules, device="cpu")


def _save_backbone(model: MultiTaskSTModel, backbone_dir: str) -> None:
    """The encoder as a standalone checkpoint (`config.json` of its own family, e.g. BERT).

    BERT-style classes always build their next-sentence pooler when loaded with `AutoModel`, which our model leaves
    out; sentence-transformers and TEI never use it. It is stored as an identity map (weight I, bias 0) rather than
    left missing, so loading the export does not report freshly initialised weights.
    """
    full = AutoModel.from_config(model.config.backbone_config)
    missing, unexpected = full.load_state_dict(model.backbone.state_dict(), strict=False)
    if unexpected or any(not key.startswith("pooler.") for key in missing):
        raise RuntimeError(
            f"The backbone does not fit {type(full).__name__}: missing {missing}, unexpected {unexpected}."
        )
    with torch.no_grad():
        for name, param in full.named_parameters():
            if name in missing:
                param.copy_(torch.eye(*param.shape) if param.dim() == 2 else torch.zeros_like(param))
    full.save_pretrained(backbone_dir)


# sentence-transformers 6 saves its own module paths and a single `pooling_mode`; older versions and TEI read only the
# classic names, which sentence-transformers 6 still reads. Rewrite the three files that differ.
CLASSIC_POOLING_FLAGS = {
    "cls": "pooling_mode_cls_token",
    "mean": "pooling_mode_mean_tokens",
    "max": "pooling_mode_max_tokens",
    "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
}


def _write_classic_layout(output_dir: Path, plain, max_seq_length: int) -> None:
    modules = json.loads((output_dir / "modules.json").read_text(encoding="utf-8"))
    for module_config, module in zip(modules, plain, strict=True):
        module_config["type"] = f"sentence_transformers.models.{type(module).__name__}"
    _write_json(output_dir / "modules.json", modules)

    pooling_dir = output_dir / next(m["path"] for m in modules if m["type"].endswith(".Pooling"))
    pooling = json.loads((pooling_dir / "config.json").read_text(encoding="utf-8"))
    mode = pooling.pop("pooling_mode")
    classic = {"word_embedding_dimension": pooling.pop("embedding_dimension")}
    classic.update({flag: name == mode for name, flag in CLASSIC_POOLING_FLAGS.items()})
    classic.update(pooling)  # include_prompt
    _write_json(pooling_dir / "config.json", classic)

    # The classic Transformer settings; the ones sentence-transformers 6 adds hold its defaults here.
    _write_json(output_dir / "sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False})
    for module_config in modules:  # Dense / Normalize: drop the v6 input/output names when they are the defaults
        path = output_dir / module_config["path"] / "config.json"
        if module_config["path"] and path.is_file() and not module_config["type"].endswith(".Pooling"):
            settings = json.loads(path.read_text(encoding="utf-8"))
            for key in ("module_input_name", "module_output_name"):
                if settings.get(key) == "sentence_embedding":
                    del settings[key]
            _write_json(path, settings)


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
