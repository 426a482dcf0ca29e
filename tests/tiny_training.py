"""A tiny model that really learns two toy tasks, trained through `multitask-st train` in seconds (for the app and plot tests).

Topic: "election vote" -> world, "team won" -> sports, "stock market" -> business; sentiment: "great" -> positive,
"bad" -> negative; the other words are noise. Every word is in the tiny tokenizer's vocabulary (conftest.WORDS).
"""

from __future__ import annotations

import random
from pathlib import Path

from conftest import tiny_backbone_config
from transformers import BertModel

from multitask_st.cli import train


TOPIC_CUES = {"world": "election vote", "sports": "team won", "business": "stock market"}
SENTIMENT_CUES = {"negative": "bad", "positive": "great"}
NOISE = ["the", "a", "movie", "film", "phone", "launch", "rose", "fell", "lost"]
# Sentences whose labels the trained model knows (asserted in the tests).
LABEL_NOISE = 0.15
KNOWN = {"the team won": ("topic", "sports"), "a great film": ("sentiment", "positive")}


def _rows(cues: dict[str, str], count: int, rng: random.Random) -> list[str]:
    rows = []
    for index in range(count):
        label = list(cues)[index % len(cues)]
        words = cues[label].split() + rng.choices(NOISE, k=rng.randint(0, 3))
        rng.shuffle(words)
        if rng.random() < LABEL_NOISE:  # a few wrong labels, so the plots show confusions
            label = rng.choice(list(cues))
        rows.append(f"{' '.join(words)},{label}")
    return rows


def train_tiny_model(root: Path, tokenizer, max_steps: int = 60, extra_args: tuple[str, ...] = ()) -> Path:
    """Train with `multitask-st train` (evaluating every 15 steps, distillation on, calibrated at the end) and return
    the output folder; `extra_args` are more command-line arguments."""
    backbone = root / "backbone"
    BertModel(tiny_backbone_config(), add_pooling_layer=False).save_pretrained(backbone)
    tokenizer.save_pretrained(backbone)
    rng = random.Random(0)
    for name, cues in (("topics", TOPIC_CUES), ("reviews", SENTIMENT_CUES)):
        (root / f"{name}.csv").write_text("\n".join(["text,label", *_rows(cues, 150, rng)]) + "\n")
    output_dir = root / "model"
    train.main(
        [
            "--backbone", str(backbone), "--tasks", f"topic={root / 'topics.csv'}", f"sentiment={root / 'reviews.csv'}",
            "--task_label_names", "topic=world,sports,business", "sentiment=negative,positive",
            "--max_seq_length", "16", "--max_steps", str(max_steps), "--learning_rate", "2e-3",
            "--per_device_train_batch_size", "16", "--logging_steps", "5", "--eval_strategy", "steps",
            "--eval_steps", "15", "--save_strategy", "no", "--load_best_model_at_end", "false", "--stsb_eval", "false",
            "--use_cpu", "--disable_tqdm", "true", "--output_dir", str(output_dir), *extra_args,
        ]
    )  # fmt: skip
    return output_dir
