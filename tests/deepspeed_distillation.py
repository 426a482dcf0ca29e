"""Run by tests/test_deepspeed.py under torchrun: `python deepspeed_distillation.py MODEL_DIR OUT_DIR STAGE`.

Trains a tiny model for 3 steps under DeepSpeed ZeRO-STAGE on CPU (gloo) with embedding distillation and one held head
(`topic` has no training data), then checks that the precomputed teacher columns equal, exactly, those the starting
model gives without DeepSpeed (under ZeRO-3 they come from a whole copy gathered from the partitioned model), and
writes what rank 0 saw to OUT_DIR/result.json."""

import json
import os
import sys
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer


sys.path.insert(0, str(Path(__file__).parent))
from conftest import make_task_dataset  # noqa: E402

from multitask_st import MultiTaskSTModel  # noqa: E402
from multitask_st.training.collator import TEACHER_COLUMN, TEACHER_LOGITS_COLUMN  # noqa: E402
from multitask_st.training.distillation import add_teacher_embeddings, is_partitioned  # noqa: E402
from multitask_st.training.trainer import MultiTaskTrainer  # noqa: E402
from multitask_st.training.training_args import MultiTaskTrainingArguments  # noqa: E402


model_dir, out_dir, stage = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
tokenizer = AutoTokenizer.from_pretrained(model_dir)
start = MultiTaskSTModel.from_pretrained(model_dir).eval()  # loaded before DeepSpeed is configured: whole
config = {"zero_optimization": {"stage": stage}, "train_micro_batch_size_per_gpu": "auto",
          "train_batch_size": "auto", "gradient_accumulation_steps": "auto", "gradient_clipping": "auto"}  # fmt: skip
args = MultiTaskTrainingArguments(
    output_dir=str(out_dir / "run"), deepspeed=config, use_cpu=True, per_device_train_batch_size=8, max_steps=3,
    learning_rate=1e-3, warmup_steps=0, logging_steps=1, report_to=[], save_strategy="no", disable_tqdm=True,
    stsb_eval_pairs=0, calibrate=False, save_plots=False, seed=0,
    embedding_distillation_weight=10.0, head_distillation_weight=1.0,
)  # fmt: skip
# The arguments, made above, set up DeepSpeed's communication (several CPU processes) and declare the config: under
# ZeRO-3 transformers builds the model under zero.Init, partitioned.
model = MultiTaskSTModel.from_pretrained(model_dir)
partitioned = is_partitioned(model)
train = {"sentiment": make_task_dataset(tokenizer, 48, 2, seed=2)}  # topic has no data: held
trainer = MultiTaskTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
output = trainer.train()
columns = trainer.train_dataset.select_columns([TEACHER_COLUMN, TEACHER_LOGITS_COLUMN])
plain = add_teacher_embeddings(
    start, trainer.train_dataset.remove_columns([TEACHER_COLUMN, TEACHER_LOGITS_COLUMN]), tokenizer,
    show_progress_bar=False, held_tasks=["topic"],
)  # fmt: skip
differences = {
    column: float(np.abs(np.stack(columns[column]) - np.stack(plain[column])).max())
    for column in (TEACHER_COLUMN, TEACHER_LOGITS_COLUMN)
}
logged = [entry for entry in trainer.state.log_history if "loss" in entry]
if int(os.environ.get("RANK", "0")) == 0:
    summary = json.loads((out_dir / "run" / "training_summary.json").read_text())
    result = {
        "stage": stage, "partitioned": partitioned, "world_size": args.world_size,
        "distributed_type": summary["run"]["distributed_type"], "teacher_column_differences": differences,
        "embedding_distillation_loss": [entry.get("embedding_distillation_loss") for entry in logged],
        "head_distillation_loss": [entry.get("head_distillation_loss") for entry in logged],
        "record": {key: summary["run"][key] for key in ("world_size", "embedding_distillation_weight", "held_tasks")},
        "train_runtime": output.metrics["train_runtime"],
    }  # fmt: skip
    (out_dir / "result.json").write_text(json.dumps(result, indent=1))
