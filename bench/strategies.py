"""Training strategies on the embedded default (MiniLM + BBC News topic + Rotten Tomatoes sentiment), same budget each.

Each strategy trains a fresh model from the backbone for `--steps` optimizer steps (batch `--batch-size`), then is
scored on the test splits (accuracy per task) and STS-B test (Spearman of the embedding). "one head frozen" starts
from the "full fine-tuning" model and trains sentiment only for `--steps` more steps with the topic head frozen,
showing what happens to a kept head when the shared encoder moves under it.

    python bench/strategies.py                     # full data, 600 steps each: minutes on a GPU
    python bench/strategies.py --steps 80 --batch-size 16 --topic-max-length 128 --max-train 1000 --max-test 300 --max-stsb 500
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from common import add_common_arguments, backbone_path, load_builtin, machine
from transformers import AutoTokenizer, set_seed

from multitask_st import MultiTaskSTModel
from multitask_st.data.task_datasets import subsample
from multitask_st.training.metrics import stsb_spearman
from multitask_st.training.tokenization import tokenize_task_dataset
from multitask_st.training.trainer import MultiTaskTrainer
from multitask_st.training.training_args import MultiTaskTrainingArguments


TASKS = {"topic": "bbc_news", "sentiment": "rotten_tomatoes"}


def strategies(steps: int, num_stages: int) -> dict[str, dict]:
    """Name -> MultiTaskTrainingArguments overrides."""
    return {
        "full fine-tuning (1x/2x/3x LR)": {},
        "full fine-tuning, no embedding distillation": {"embedding_distillation_weight": 0.0},
        "layer-wise LR decay 0.8": {"layer_decay": 0.8},
        "backbone frozen": {"freeze": ["backbone"]},
        "progressive unfreezing + decay 0.8": {
            "unfreeze_schedule": "progressive",
            "unfreeze_unit": "step",
            # reach the last stage (embeddings) at about 80% of the run
            "unfreeze_every": max(1, int(0.8 * steps / (num_stages - 1))),
            "layer_decay": 0.8,
        },
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--max-test", type=int, default=None)
    parser.add_argument("--topic-max-length", type=int, default=256)
    parser.add_argument("--sentiment-max-length", type=int, default=64)
    parser.add_argument("--max-stsb", type=int, default=None, help="Cap on STS-B test pairs.")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--json-out", default=None)
    arguments = parser.parse_args()

    backbone = backbone_path(arguments.backbone)
    max_lengths = {"topic": arguments.topic_max_length, "sentiment": arguments.sentiment_max_length}
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    limits = {"train": arguments.max_train, "validation": arguments.max_test, "test": arguments.max_test}
    raw = {
        task: subsample(load_builtin(name, arguments.data_dir, arguments.seed), limits, seed=arguments.seed)
        for task, name in TASKS.items()
    }
    tokenized = {task: tokenize_task_dataset(raw[task], tokenizer, max_length=max_lengths[task]) for task in TASKS}
    stsb_test = subsample(load_builtin("stsb", arguments.data_dir), {"test": arguments.max_stsb})["test"]
    labels = {task: raw[task]["train"].features["label"].names for task in TASKS}
    test_sets = {task: data["test"] for task, data in tokenized.items()}

    def new_model():
        set_seed(arguments.seed)
        return MultiTaskSTModel.from_backbone(backbone, tasks=labels, max_seq_length=max(max_lengths.values()))

    def train(model, overrides, train_sets):
        args = MultiTaskTrainingArguments(
            output_dir=tempfile.mkdtemp(), per_device_train_batch_size=arguments.batch_size,
            per_device_eval_batch_size=128, learning_rate=arguments.lr, weight_decay=0.01, max_steps=arguments.steps,
            warmup_steps=0.1, save_strategy="no", report_to=[], logging_steps=50, seed=arguments.seed,
            use_cpu=arguments.device == "cpu", bf16=arguments.bf16, stsb_eval_pairs=0,
            mixed_task_batches=False,  # articles and reviews in one batch would pad reviews to article length
            **overrides,
        )  # fmt: skip
        trainer = MultiTaskTrainer(model=model, args=args, train_dataset=train_sets, processing_class=tokenizer)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return trainer, seconds, trainable

    def score(trainer, model) -> dict:
        metrics = trainer.evaluate(test_sets, metric_key_prefix="test")
        return {
            **{f"{task}_accuracy": metrics[f"test_{task}_accuracy"] for task in TASKS},
            "stsb_spearman": stsb_spearman(model, tokenizer, stsb_test, batch_size=128),
        }

    rows = {}
    train_sets = {task: data["train"] for task, data in tokenized.items()}
    num_stages = len(new_model().parameter_parts()) - len(TASKS) + 1  # heads share stage 0
    full_model = None
    for name, overrides in strategies(arguments.steps, num_stages).items():
        model = new_model()
        trainer, seconds, trainable = train(model, overrides, train_sets)
        rows[name] = {**score(trainer, model), "trainable_parameters": trainable, "train_seconds": seconds}
        print(name, rows[name], flush=True)
        if not overrides:
            full_model = model

    # One head frozen: keep the trained topic head, train sentiment only.
    topic_before = rows["full fine-tuning (1x/2x/3x LR)"]["topic_accuracy"]
    trainer, seconds, trainable = train(full_model, {"freeze": ["head:topic"]}, {"sentiment": train_sets["sentiment"]})
    rows["then topic head frozen, sentiment-only training"] = {
        **score(trainer, full_model), "trainable_parameters": trainable, "train_seconds": seconds,
        "topic_accuracy_before": topic_before,
    }  # fmt: skip

    # Everything frozen: pure feature extraction, nothing to train; the embedding is the backbone's.
    model = new_model().freeze("all")
    rows["everything frozen (feature extraction)"] = {
        "topic_accuracy": None, "sentiment_accuracy": None, "trainable_parameters": 0, "train_seconds": 0.0,
        "stsb_spearman": stsb_spearman(model.to(full_model.device), tokenizer, stsb_test, batch_size=128),
    }  # fmt: skip

    print(f"\nStrategies, {arguments.steps} steps x batch {arguments.batch_size} each ({machine()})\n")
    print("| strategy | topic acc | sentiment acc | STS-B Spearman | trainable params | train time (s) |")
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        topic = "—" if row["topic_accuracy"] is None else f"{row['topic_accuracy']:.4f}"
        if "topic_accuracy_before" in row:
            topic = f"{row['topic_accuracy_before']:.4f} → {topic}"
        sentiment = "—" if row["sentiment_accuracy"] is None else f"{row['sentiment_accuracy']:.4f}"
        print(
            f"| {name} | {topic} | {sentiment} | {row['stsb_spearman']:.4f} | "
            f"{row['trainable_parameters'] / 1e6:.2f}M | {row['train_seconds']:.0f} |"
        )
    if arguments.json_out:
        with open(arguments.json_out, "w") as file:
            json.dump(rows, file, indent=2)


if __name__ == "__main__":
    main()
