"""Resuming a run: which checkpoint, and whether it belongs to the model this run builds."""

from __future__ import annotations

from transformers.trainer_utils import get_last_checkpoint

from ..configuration_multitask_st import MultiTaskSTConfig


# What a checkpoint must share with the run that resumes it: the settings that decide which parameters exist and what
# they mean. Anything else (loss weights, the tokenizer fingerprint) may change between sessions.
RESUME_SETTINGS = ("pooling_mode", "projection", "embedding_dim", "head_hidden_size", "head_activation", "task_kinds")
BACKBONE_RESUME_SETTINGS = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")


def checkpoint_mismatches(checkpoint: MultiTaskSTConfig, config: MultiTaskSTConfig) -> list[str]:
    """What differs between a checkpoint's config and the run's model config, one `name: checkpoint ..., this run ...`
    line per setting; `[]` when the checkpoint can be resumed."""
    pairs = [("tasks", list(checkpoint.tasks.items()), list(config.tasks.items()))]
    pairs += [(name, getattr(checkpoint, name), getattr(config, name)) for name in RESUME_SETTINGS]
    pairs += [
        (
            f"backbone {name}",
            getattr(checkpoint.backbone_config, name, None),
            getattr(config.backbone_config, name, None),
        )
        for name in BACKBONE_RESUME_SETTINGS
    ]
    differences = []
    for name, theirs, ours in pairs:
        if theirs != ours:
            if name == "tasks":
                theirs, ours = dict(theirs), dict(ours)
            differences.append(f"{name}: checkpoint {theirs!r}, this run {ours!r}")
    return differences


def checked_checkpoint(resume_from_checkpoint: str | bool, output_dir: str, config: MultiTaskSTConfig) -> str | None:
    """The checkpoint folder a run resumes from (`True`: the last one in `output_dir`; `None` when there is none), after
    refusing, before any step, a checkpoint of another model than `config`'s: its weights would load partly (a head the
    run added stays untrained) or its optimizer state not at all."""
    if resume_from_checkpoint is True:
        resume_from_checkpoint = get_last_checkpoint(output_dir)  # None: Trainer says there is none
    if not resume_from_checkpoint:
        return None
    try:
        checkpoint = MultiTaskSTConfig.from_pretrained(resume_from_checkpoint)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"Cannot resume from {resume_from_checkpoint!r}: it holds no multitask-st config.json ({error})."
        ) from error
    differences = checkpoint_mismatches(checkpoint, config)
    if differences:
        raise ValueError(
            f"Cannot resume from {resume_from_checkpoint!r}: it was trained for another model than this run "
            f"builds ({'; '.join(differences)}). Resume with the checkpoint's settings, or start a new run "
            "without --resume_from_checkpoint."
        )
    return resume_from_checkpoint
