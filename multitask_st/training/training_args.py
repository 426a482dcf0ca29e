"""`TrainingArguments` plus what multi-task training needs: loss weights, learning-rate groups, freezing, sampling."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import timedelta

from transformers import TrainingArguments
from transformers.utils import logging

from .processes import has_accelerator, launched_world_size
from .sampling import SAMPLING_STRATEGIES


logger = logging.get_logger(__name__)


UNFREEZE_SCHEDULES = ("none", "progressive")
UNFREEZE_UNITS = ("epoch", "step")


@dataclass
class MultiTaskTrainingArguments(TrainingArguments):
    """[`TrainingArguments`] for [`MultiTaskTrainer`]. The extra fields:

    Args:
        task_loss_weights (`dict[str, float]` or JSON `str`, *optional*):
            Overrides `config.task_loss_weights` for this run (tasks left out keep the config's weight).
        projection_lr_multiplier (`float`, defaults to 2.0):
            Learning rate of pooling and projection = `learning_rate` x this.
        head_lr_multiplier (`float`, defaults to 3.0):
            Learning rate of every head = `learning_rate` x this. With the defaults and `layer_decay=1.0` this is the
            1x backbone / 2x projection / 3x heads scheme.
        layer_decay (`float`, defaults to 1.0):
            Backbone layer `i` of `L` trains at `learning_rate * layer_decay ** (L - 1 - i)`; the embeddings at
            `layer_decay ** L`. Below 1.0, lower layers move less (layer-wise learning-rate decay).
        freeze (`list[str]`, defaults to `[]`):
            Parts kept frozen for the whole run: `backbone`, `backbone.embeddings`, `backbone.layer.<i>`, `pooling`,
            `projection`, `heads`, `head:<task>`, or `all` (then `train()` refuses: there is nothing to train).
        unfreeze_schedule (`str`, defaults to `"none"`):
            `"progressive"`: start with only the heads trainable, then every `unfreeze_every` epochs (or steps) add
            pooling + projection, then the backbone layers from the top down, the embeddings last.
        unfreeze_every (`float`, defaults to 1.0) and unfreeze_unit (`str`, `"epoch"` or `"step"`):
            Spacing of the progressive stages.
        unfreeze_layers_per_stage (`int`, defaults to 1):
            Backbone layers unfrozen per stage.
        frozen_parts_eval_mode (`bool`, defaults to `False`):
            Run the frozen parts (`freeze`, the stages not yet unfrozen) in eval mode during training: no dropout
            there. A frozen part learns nothing from its own dropout, and on CPU dropout makes a forward pass much
            slower: MiniLM with its embeddings and bottom four layers frozen trained 64 steps in 79 CPU s instead of
            119 (BENCHMARKS.md, "Add a task later"). The trainable parts above then see the frozen parts' output
            without that noise, which changes the run, not only its speed: off by default, so a run's numbers do not
            change under it.
        cache_frozen_layers (`bool`, defaults to `False`):
            When the embeddings and the bottom layers are frozen all run (`freeze`), compute what those layers give
            for each training example once, before the first step (in the pass that computes the distillation
            targets), and run only the layers above at each step (see `training/frozen_layers.py`). The cached layers
            run in eval mode, as under `frozen_parts_eval_mode`. Costs one float32 vector per token of the training
            set in memory; one process, map-style data with single texts.
        sampling_strategy (`str`, defaults to `"proportional"`):
            How tasks are mixed: `proportional` (every example once per epoch), `round_robin` (tasks in turn) or
            `temperature` (task probability proportional to size^(1/T)).
        sampling_temperature (`float`, defaults to 2.0): T of the `temperature` strategy.
        mixed_task_batches (`bool`, defaults to `True`): `False` keeps every batch to a single task.
        embedding_distillation_weight (`float`, *optional*):
            Weight of a loss that keeps the cosine similarities between the examples of each training batch close to
            what the model gave them before training (see `multitask_st.training.distillation`): it keeps the embedding good
            for similarity search and STS while the heads fine-tune the shared encoder. Costs one inference pass over
            the training data before the first step (on every process, each over the whole training set), plus one
            batch-by-batch similarity matrix per step. For streamed training data and under FSDP, a frozen copy of the
            starting model gives each batch's teacher embeddings instead (one more model in memory, one more forward
            per step). 0 turns it off. Unset (the default): 10.0, or 0 when the model has a task that trains the
            embedding itself (`embedding`, `embedding_contrastive`), which holding the embedding still would work
            against; set it to hold the embedding in such a run as well.
        use_cpu (`bool`, defaults to `False`):
            As in `TrainingArguments`; turned on by itself when a launcher (torchrun, `accelerate launch`) starts
            several processes on a machine without a GPU, so they train one model together (DDP over gloo).
        overwrite_output_dir (`bool`, defaults to `False`):
            `train.py` refuses a non-empty `output_dir` unless this is set (the old run's `checkpoint-*` folders are
            then removed) or the run resumes from a checkpoint. transformers 5 dropped the flag; it is back here.
        head_distillation_weight (`float`, defaults to 1.0):
            Weight of a loss that holds the predictions of the heads with no training data in the run (a task added to
            a trained model is trained alone; the old heads are held): on the incoming texts, each such head's softmax
            should stay what the starting model gave (learning without forgetting, see
            `multitask_st.training.distillation`). Its logits come from the same single teacher pass as the embeddings.
            0 turns it off; it costs nothing in a run with data for every head.
        stsb_eval_pairs (`int`, defaults to 500):
            STS-B validation pairs scored at each evaluation (`eval_stsb_spearman`); 0 turns it off.
        calibrate (`bool`, defaults to `True`):
            When training ends, fit one temperature per classification head on the validation split (`eval_dataset`)
            by minimising its negative log-likelihood, and store it in `config.task_calibration`: `predict`, the
            pipeline, the ONNX runtime and the app then give calibrated probabilities (see
            `multitask_st.training.calibration`). Nothing happens without an `eval_dataset`.
        save_plots (`bool`, defaults to `True`):
            When training ends, write `training_loss.png` and `evaluation_metrics.png` into `output_dir` (see
            `multitask_st.training.plots`; needs matplotlib, else a one-line note).
        tune_thresholds (`bool`, defaults to `True`):
            When training ends, tune each multi-label task's per-label thresholds on `eval_dataset` (the F1-best cut
            per label) and save them in `config.task_calibration`; otherwise every label's threshold stays 0.5.
        task_sampling_probabilities (`dict[str, float]` or JSON `str`, *optional*):
            Streaming training only: each streamed task's probability of giving the next example (normalised). Without
            it, `sampling_strategy` weighs the streams by their sizes (known or `stream_task_sizes`).
        stream_task_sizes (`dict[str, int]` or JSON `str`, *optional*):
            Streaming training only: the number of training rows of each streamed task, where its source does not
            declare it (for `proportional` and `temperature` sampling).
        stream_shuffle_buffer_size (`int`, defaults to 10000):
            Streaming training only: rows of each task's stream held in a shuffle buffer (0: the source's order, which
            makes a resumed run train on exactly the batches of an uninterrupted one; see `training/streaming.py`).
        stream_statistics_rows (`int`, *optional*):
            Streaming training only: how many first training rows of a stream to read before step 1 when its task
            needs label statistics (`"balanced"` class or positive weights, a regression task's target scaling);
            unset, such a task is refused (see `training/streaming.py`, `stream_label_statistics`).
        label_smoothing_factor (`float`, defaults to 0):
            Trainer's flag: the label smoothing of every classification task that sets none of its own
            (`config.task_loss_options[task]["label_smoothing"]`).
    """

    output_dir: str = field(default="outputs/multitask-st", metadata={"help": "Where checkpoints and the model go."})
    # transformers 5 dropped this flag from TrainingArguments; train.py refuses a non-empty output folder without it.
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Train into a non-empty output folder, removing the checkpoints of the run there before."},
    )

    task_loss_weights: dict | str | None = field(
        default=None, metadata={"help": 'Per-task loss weights, e.g. \'{"topic": 1.0, "sentiment": 0.5}\'.'}
    )
    projection_lr_multiplier: float = field(default=2.0, metadata={"help": "LR multiplier of pooling/projection."})
    head_lr_multiplier: float = field(default=3.0, metadata={"help": "LR multiplier of the heads."})
    layer_decay: float = field(default=1.0, metadata={"help": "Layer-wise LR decay from the top backbone layer."})
    freeze: list[str] = field(default_factory=list, metadata={"help": "Parts frozen for the whole run."})
    unfreeze_schedule: str = field(
        default="none", metadata={"help": "'none' or 'progressive'.", "choices": list(UNFREEZE_SCHEDULES)}
    )
    unfreeze_every: float = field(default=1.0, metadata={"help": "Epochs (or steps) between unfreezing stages."})
    unfreeze_unit: str = field(
        default="epoch", metadata={"help": "'epoch' or 'step'.", "choices": list(UNFREEZE_UNITS)}
    )
    unfreeze_layers_per_stage: int = field(default=1, metadata={"help": "Backbone layers unfrozen per stage."})
    frozen_parts_eval_mode: bool = field(
        default=False, metadata={"help": "Run the frozen parts in eval mode while training (no dropout there)."}
    )
    cache_frozen_layers: bool = field(
        default=False,
        metadata={
            "help": "Compute the frozen bottom layers' output once per training example; each step runs the rest."
        },
    )
    sampling_strategy: str = field(
        default="proportional", metadata={"help": "Task mixing.", "choices": list(SAMPLING_STRATEGIES)}
    )
    sampling_temperature: float = field(default=2.0, metadata={"help": "T of the 'temperature' strategy."})
    mixed_task_batches: bool = field(default=True, metadata={"help": "False: every batch holds one task."})
    embedding_distillation_weight: float | None = field(
        default=None,
        metadata={
            "help": "Weight of the similarity-preserving embedding loss; 0 = off. Default: 10, or 0 when a task "
            "trains the embedding itself (embedding, embedding_contrastive)."
        },
    )
    head_distillation_weight: float = field(
        default=1.0, metadata={"help": "Weight of holding the heads without training data to their outputs; 0 = off."}
    )
    task_sampling_probabilities: dict | str | None = field(
        default=None,
        metadata={"help": 'Streaming: per-task sampling probabilities, e.g. \'{"topic": 0.7, "sentiment": 0.3}\'.'},
    )
    stream_task_sizes: dict | str | None = field(
        default=None,
        metadata={
            "help": "Streaming: training rows per task where the source does not say, e.g. '{\"topic\": 1000000}'."
        },
    )
    stream_shuffle_buffer_size: int = field(
        default=10000, metadata={"help": "Streaming: rows per task in the shuffle buffer (0: the source's order)."}
    )
    stream_statistics_rows: int | None = field(
        default=None,
        metadata={
            "help": "Streaming: first training rows of a stream read to compute 'balanced' weights or a regression "
            "task's target scaling (needed for such tasks)."
        },
    )
    stsb_eval_pairs: int = field(default=500, metadata={"help": "STS-B pairs scored per evaluation; 0 = off."})
    calibrate: bool = field(
        default=True, metadata={"help": "Fit a temperature per head on the validation split after training."}
    )
    save_plots: bool = field(default=True, metadata={"help": "Write loss and metric plots (PNG) to output_dir."})
    tune_thresholds: bool = field(
        default=True, metadata={"help": "After training, tune multi-label thresholds on the validation set."}
    )

    def __post_init__(self):
        if not self.use_cpu and launched_world_size() > 1 and not has_accelerator():
            # Without `use_cpu` the Trainer would run each launched process as a job of its own on a machine with no
            # GPU (see `multitask_st.training.processes`): train them as one, with DDP over gloo.
            self.use_cpu = True
            logger.info(
                f"{launched_world_size()} processes launched on a machine without a GPU: training them as one "
                "data-parallel job on CPU (use_cpu, DDP over gloo)."
            )
        super().__post_init__()
        if self.deepspeed and self.use_cpu and launched_world_size() > 1:
            # On CPU accelerate sets up torch.distributed (gloo) but not DeepSpeed's communication, from which
            # `deepspeed.zero.Init` reads the world size when transformers loads a model under ZeRO-3: it would see 1
            # process, and DeepSpeed stop on its batch-size check. Set it up now, before any model is loaded (on GPUs
            # accelerate does).
            import deepspeed

            deepspeed.init_distributed(dist_backend="gloo", timeout=timedelta(seconds=self.ddp_timeout))
        for name in ("task_loss_weights", "task_sampling_probabilities", "stream_task_sizes"):
            setattr(self, name, _task_mapping(name, getattr(self, name)))
        for task, size in (self.stream_task_sizes or {}).items():
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ValueError(f"`stream_task_sizes[{task!r}]` must be a positive number of rows, got {size!r}.")
        if isinstance(self.stream_shuffle_buffer_size, bool) or self.stream_shuffle_buffer_size < 0:
            raise ValueError(
                f"`stream_shuffle_buffer_size` must be >= 0 rows, got {self.stream_shuffle_buffer_size!r}."
            )
        rows = self.stream_statistics_rows
        if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 1):
            raise ValueError(f"`stream_statistics_rows` must be a positive number of rows, got {rows!r}.")
        for task, weight in (self.task_loss_weights or {}).items():
            if (
                isinstance(weight, bool)
                or not isinstance(weight, (int, float))
                or not (math.isfinite(weight) and weight >= 0)
            ):
                raise ValueError(
                    f"`task_loss_weights[{task!r}]` must be a finite non-negative number, got {weight!r}."
                )
        checks = {
            "unfreeze_schedule": (self.unfreeze_schedule, UNFREEZE_SCHEDULES),
            "unfreeze_unit": (self.unfreeze_unit, UNFREEZE_UNITS),
            "sampling_strategy": (self.sampling_strategy, SAMPLING_STRATEGIES),
        }
        for name, (value, choices) in checks.items():
            if value not in choices:
                raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}.")
        positive = {
            "projection_lr_multiplier": self.projection_lr_multiplier,
            "head_lr_multiplier": self.head_lr_multiplier,
            "layer_decay": self.layer_decay,
            "unfreeze_every": self.unfreeze_every,
            "unfreeze_layers_per_stage": self.unfreeze_layers_per_stage,
            "sampling_temperature": self.sampling_temperature,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"`{name}` must be > 0, got {value!r}.")
        if self.embedding_distillation_weight is not None and not self.embedding_distillation_weight >= 0:
            raise ValueError(
                f"`embedding_distillation_weight` must be >= 0, got {self.embedding_distillation_weight!r}."
            )
        if not self.head_distillation_weight >= 0:
            raise ValueError(f"`head_distillation_weight` must be >= 0, got {self.head_distillation_weight!r}.")
        if self.stsb_eval_pairs < 0:
            raise ValueError(f"`stsb_eval_pairs` must be >= 0, got {self.stsb_eval_pairs}.")


def _task_mapping(name: str, value: dict | str | None) -> dict | None:
    """A `{task: number}` argument given as a dict or (on the command line) a JSON object."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"`{name}` must be a JSON object, got {value!r}.") from error
    if value is not None and not isinstance(value, dict):
        raise ValueError(f"`{name}` must map task names to numbers, got {value!r}.")
    return value
