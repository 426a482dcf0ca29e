"""Training time of a whole run, across resumptions from checkpoints.

After a resume, `Trainer` reports the speed of the resumed session alone (transformers 4 even divided the whole run's
samples by that session's time). `RunClock` keeps the time trained
up to each checkpoint in that checkpoint's trainer_state.json (as a stateful callback), and on resume adds it back.
"""

from __future__ import annotations

import time

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState


class RunClock(TrainerCallback, ExportableState):
    """Seconds of training in the sessions before this one (up to the checkpoint resumed from) plus this one's."""

    def __init__(self, seconds_before: float = 0.0):
        self.seconds_before = seconds_before
        self.started = None

    def on_train_begin(self, args, state, control, **kwargs):
        # On resume, `state` is the checkpoint's: its record of this callback says how long the run had trained.
        saved = (state.stateful_callbacks or {}).get(type(self).__name__) or {}
        saved = saved[0] if isinstance(saved, list) else saved
        self.seconds_before = (
            float(saved.get("attributes", {}).get("seconds_before", 0.0)) if state.global_step else 0.0
        )
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return self.seconds_before + (time.perf_counter() - self.started if self.started is not None else 0.0)

    def state(self) -> dict:
        # what a checkpoint saved now records: the time trained up to it
        return {"args": {}, "attributes": {"seconds_before": self.seconds}}


def whole_run_metrics(metrics: dict, seconds_before: float, global_step: int, total_batch_size: int) -> dict:
    """`Trainer.train()`'s speed metrics over the whole run, when it resumed from a checkpoint (`seconds_before` > 0):
    all its steps over all its training time, the session's own time kept as `train_runtime_this_session`."""
    session = metrics.get("train_runtime")
    if not seconds_before or not session:
        return metrics
    total = seconds_before + session
    return {
        **metrics,
        "train_runtime": round(total, 4),
        "train_samples_per_second": round(global_step * total_batch_size / total, 3),
        "train_steps_per_second": round(global_step / total, 3),
        "train_runtime_this_session": session,
    }
