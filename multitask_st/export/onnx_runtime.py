"""Run an exported multitask-st ONNX model with onnxruntime, tokenizers and numpy: no torch, no transformers.

The folder `export_onnx` writes (config.json, the tokenizer, `onnx/model.onnx` and its int8 form) loads here and
gives what `MultiTaskSTModel.encode` / `predict` give. This module imports nothing torch-based, directly or through
the package, so it also serves where torch is not installed (`pip install multitask-st[onnx]`); it logs through the
standard library for the same reason.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ..model_folder import EXPORT_REPORT_NAME, ONNX_FILE_NAME, ONNX_SUBFOLDER
from .checksums import check_artifacts, check_tokenizer


logger = logging.getLogger(__name__)

EMBEDDING_OUTPUT = "sentence_embedding"
UNNORMALIZED_EMBEDDING_OUTPUT = "sentence_embedding_unnormalized"
LOGITS_PREFIX = "logits_"
DEFAULT_CHUNK_SIZE = 4096  # texts tokenised and run at a time (as MultiTaskSTModel's)
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# ONNX metadata the exporter writes, so a graph can be checked against the config.json next to it.
METADATA_TASKS = "multitask_st.tasks"
METADATA_NORMALIZE = "multitask_st.normalize_embeddings"
# What a model folder needs besides the ONNX file (the tokenizer's own config is optional).
FOLDER_FILES = ("config.json", "tokenizer.json")
TOKENIZER_EXTRA_FILES = ("tokenizer_config.json", "special_tokens_map.json")


class MultiTaskSTOnnxModel:
    """An exported multitask-st model on onnxruntime: `encode` and `predict` as on the PyTorch model.

    Texts are tokenised with the model's own `tokenizer.json` (the `tokenizers` library), sorted by token count so each
    batch pads little, run through one ONNX graph that gives the embedding and every head's logits, and returned in
    input order.

    Example:
        >>> from multitask_st.export.onnx_runtime import MultiTaskSTOnnxModel
        >>> model = MultiTaskSTOnnxModel.from_pretrained("outputs/multitask-st-onnx", threads=2)
        >>> model.encode(["A sentence.", "Another one."]).shape
        (2, 384)
        >>> model.predict("Shares fell sharply after the results.")["sentiment"]["label"]
        'negative'
    """

    def __init__(self, session, tokenizer, config: dict, model_path: str | os.PathLike):
        self.session = session
        self.tokenizer = tokenizer
        self.config = config
        self.model_path = Path(model_path)
        self.tasks: dict[str, list[str]] = _config_tasks(config)
        self.embedding_dim: int = int(config["embedding_dim"])
        self.normalize_embeddings: bool = bool(config.get("normalize_embeddings", False))
        self.input_names = [node.name for node in session.get_inputs()]
        self.output_names = [node.name for node in session.get_outputs()]
        _check_graph(self)
        self.pad_token_id = _pad_token_id(tokenizer, config)
        self.max_length = _default_max_length(config, tokenizer)
        self.position_limit = (config.get("backbone_config") or {}).get("max_position_embeddings") or 512

    @property
    def task_names(self) -> list[str]:
        return list(self.tasks)

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(
        cls,
        model_name_or_path: str | os.PathLike,
        file_name: str | None = None,
        provider: str | None = None,
        *,
        threads: int | None = None,
        session_options=None,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | None = None,
        local_files_only: bool = False,
        verify_checksums: bool = True,
    ) -> MultiTaskSTOnnxModel:
        """Load an exported folder, or a Hub repository holding one.

        Args:
            model_name_or_path: A folder written by `export_onnx` (or `export.py --format onnx`), or a Hub repo id.
            file_name: The ONNX file, relative to the folder or to its `onnx/` subfolder; defaults to
                `onnx/model.onnx` (fp32). The int8 form is e.g. `onnx/model_qint8_avx512_vnni.onnx`.
            provider: An onnxruntime execution provider; defaults to CUDA where onnxruntime has it, else CPU.
            threads: Threads onnxruntime uses within an operator (`intra_op_num_threads`); defaults to its own
                choice (one per physical core).
            session_options: An `onnxruntime.SessionOptions` to start from.
            revision, token, cache_dir, local_files_only: For a Hub repo id.
            verify_checksums: Check the graph against the sha256 its export recorded and `tokenizer.json` against
                `config.tokenizer_fingerprint` (see `export/checksums.py`); `False` for files you changed on purpose.
        """
        import onnxruntime as ort
        from tokenizers import Tokenizer

        file_name = file_name or f"{ONNX_SUBFOLDER}/{ONNX_FILE_NAME}"
        folder = Path(model_name_or_path)
        if not folder.is_dir():
            folder = _download(str(model_name_or_path), file_name, revision, token, cache_dir, local_files_only)
        missing = [name for name in FOLDER_FILES if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{folder} lacks {', '.join(missing)}: not a folder written by `export.py --format onnx`."
            )
        model_path = _resolve_onnx_file(folder, file_name)
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer_config_path = folder / "tokenizer_config.json"
        if tokenizer_config_path.is_file():
            config = {**config, "_tokenizer_config": json.loads(tokenizer_config_path.read_text(encoding="utf-8"))}
        if verify_checksums:
            check_artifacts(folder / ONNX_SUBFOLDER / EXPORT_REPORT_NAME, [model_path])
            check_tokenizer(config, tokenizer.get_vocab(with_added_tokens=True), folder / "tokenizer.json")

        options = session_options or ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
                raise ValueError(f"`threads` must be a positive integer, got {threads!r}.")
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        available = ort.get_available_providers()
        if provider is None:
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
            providers = [name for name in providers if name in available]
        elif provider not in available:
            raise ValueError(f"Execution provider {provider!r} is not available; onnxruntime has {available}.")
        else:
            providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
        try:
            session = ort.InferenceSession(str(model_path), options, providers=providers)
        except Exception as error:  # onnxruntime raises its own Fail/InvalidProtobuf/InvalidGraph types
            raise ValueError(
                f"Cannot load {model_path} as an ONNX model ({type(error).__name__}: {_first_line(error)}). The file is "
                "damaged or not an ONNX graph: export it again with `python export.py MODEL_DIR --format onnx`."
            ) from None
        return cls(session, tokenizer, config, model_path)

    # ------------------------------------------------------------------ inference

    def encode(
        self,
        sentences: str | Iterable[str],
        batch_size: int = 32,
        normalize_embeddings: bool | None = None,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        show_progress_bar: bool | None = None,
        max_length: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ):
        """Embed sentences: a float32 `(n, embedding_dim)` array, or one vector for a single string.

        Same arguments as `MultiTaskSTModel.encode` less the tokenizer (the model's own) and the device (the
        provider); `convert_to_numpy=False` gives a list of vectors, and `convert_to_tensor` is refused (no torch here).
        """
        if convert_to_tensor:
            raise ValueError("`convert_to_tensor=True` needs torch; the ONNX model returns numpy arrays.")
        normalize = self.normalize_embeddings if normalize_embeddings is None else bool(normalize_embeddings)
        if normalize == self.normalize_embeddings or not self.normalize_embeddings:
            output = EMBEDDING_OUTPUT
        else:
            output = UNNORMALIZED_EMBEDDING_OUTPUT  # the graph normalises; the caller wants the raw vectors
        single, (embeddings,) = self._run(
            sentences, [output], batch_size, show_progress_bar, max_length, chunk_size, "Encoding"
        )
        if normalize and not self.normalize_embeddings:
            norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
            embeddings = embeddings / np.maximum(norms, 1e-12)  # as torch.nn.functional.normalize
        embeddings = embeddings.astype(np.float32, copy=False)
        if single:
            return embeddings[0]
        return embeddings if convert_to_numpy else list(embeddings)

    def predict(
        self,
        sentences: str | Iterable[str],
        tasks: str | Iterable[str] | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        max_length: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> dict | list[dict]:
        """Classify sentences with every head (or those in `tasks`) from one graph run per batch.

        Returns, per sentence, `{task: {"label": name, "score": probability, "probabilities": {name: p}}}`; a dict for
        a single string, a list of them otherwise (as `MultiTaskSTModel.predict`).
        """
        task_names = self._check_tasks(tasks)
        outputs = [LOGITS_PREFIX + task for task in task_names]
        single, logits = self._run(
            sentences, outputs, batch_size, show_progress_bar, max_length, chunk_size, "Predicting"
        )
        predictions = [{} for _ in range(len(logits[0]))]
        for task, task_logits in zip(task_names, logits, strict=True):
            labels = self.tasks[task]
            probabilities = _softmax(task_logits.astype(np.float32))
            rows, best = probabilities.tolist(), probabilities.argmax(axis=-1).tolist()
            for prediction, row, index in zip(predictions, rows, best, strict=True):
                prediction[task] = {
                    "label": labels[index],
                    "score": row[index],
                    "probabilities": dict(zip(labels, row, strict=True)),
                }
        return predictions[0] if single else predictions

    def run(self, sentences: str | Iterable[str], output_names: list[str], **kwargs) -> list[np.ndarray]:
        """The raw graph outputs named in `output_names` (e.g. `["sentence_embedding", "logits_topic"]`) for
        sentences, rows in input order; `kwargs` as in `encode` (`batch_size`, `show_progress_bar`, `max_length`,
        `chunk_size`)."""
        unknown = [name for name in output_names if name not in self.output_names]
        if unknown:
            raise ValueError(f"Unknown output(s) {unknown}; this graph has {self.output_names}.")
        return self._run(sentences, output_names, description="Running", **kwargs)[1]

    def _check_tasks(self, tasks) -> list[str]:
        if tasks is None:
            return self.task_names
        tasks = [tasks] if isinstance(tasks, str) else list(tasks)
        if not tasks:
            raise ValueError(f"`tasks` is empty; name one or more of this model's tasks {self.task_names}.")
        unknown = [task for task in tasks if task not in self.tasks]
        if unknown:
            raise ValueError(f"Unknown task(s) {unknown}; this model's tasks are {self.task_names}.")
        return tasks

    def _run(
        self,
        sentences,
        output_names: list[str],
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        max_length: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        description: str = "Running",
    ) -> tuple[bool, list[np.ndarray]]:
        """The outputs for every text, in input order; read `chunk_size` texts at a time, as the PyTorch model does."""
        single = isinstance(sentences, str)
        if single:
            sentences = [sentences]
        elif isinstance(sentences, (bytes, Mapping)) or not isinstance(sentences, Iterable):
            raise TypeError(f"`sentences` must be a string or an iterable of strings, got {type(sentences).__name__}.")
        for name, value in (("batch_size", batch_size), ("chunk_size", chunk_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        limit = self.position_limit
        if max_length is None:
            max_length = self.max_length
        elif isinstance(max_length, bool) or not isinstance(max_length, int) or not 1 <= max_length <= limit:
            raise ValueError(
                f"`max_length` must be an integer in 1..{limit} (the backbone's `max_position_embeddings`), "
                f"got {max_length!r}."
            )
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)
        total = len(sentences) if hasattr(sentences, "__len__") else None
        if show_progress_bar is None:
            show_progress_bar = logger.getEffectiveLevel() <= logging.INFO and (total is None or total > batch_size)
        progress = _progress(total, description, show_progress_bar)
        texts, seen, results = iter(sentences), 0, [[] for _ in output_names]
        while chunk := list(itertools.islice(texts, chunk_size)):
            _check_texts(chunk, offset=seen)
            seen += len(chunk)
            for result, output in zip(
                results, self._run_chunk(chunk, output_names, batch_size, progress), strict=True
            ):
                result.append(output)
        if progress is not None:
            progress.close()
        if seen == 0:
            raise ValueError("`sentences` is empty: pass at least one string.")
        return single, [np.concatenate(result) for result in results]

    def _run_chunk(self, texts: list[str], output_names: list[str], batch_size: int, progress) -> list[np.ndarray]:
        encodings = self.tokenizer.encode_batch(texts)
        # Longest first: batches of near-equal length pad little, and an over-large batch fails at once.
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        results = [[] for _ in output_names]
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            for result, output in zip(
                results, self.session.run(output_names, self._pad([encodings[i] for i in batch])), strict=True
            ):
                result.append(output)
            if progress is not None:
                progress.update(len(batch))
        inverse = np.empty(len(order), dtype=np.int64)
        inverse[np.asarray(order)] = np.arange(len(order))  # row order[k] of the input is row k of the batches
        return [np.concatenate(result)[inverse] for result in results]

    def _pad(self, encodings) -> dict[str, np.ndarray]:
        """Right-pad a batch of `tokenizers.Encoding`s into the graph's int64 inputs."""
        length = max(len(encoding.ids) for encoding in encodings)
        input_ids = np.full((len(encodings), length), self.pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((len(encodings), length), dtype=np.int64)
        token_type_ids = np.zeros((len(encodings), length), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            size = len(encoding.ids)
            input_ids[row, :size] = encoding.ids
            attention_mask[row, :size] = 1
            token_type_ids[row, :size] = encoding.type_ids
        arrays = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return {name: arrays[name] for name in self.input_names}


# ---------------------------------------------------------------------------------------------------- helpers


def _config_tasks(config: dict) -> dict[str, list[str]]:
    tasks = config.get("tasks")
    if isinstance(tasks, list):  # what MultiTaskSTConfig.to_dict writes: ordered [task, labels] pairs
        tasks = {task: labels for task, labels in tasks}
    if not isinstance(tasks, dict) or not tasks or config.get("model_type") != "multitask-st":
        raise ValueError("config.json is not a multitask-st config (no `tasks`, or another `model_type`).")
    return {task: list(labels) for task, labels in tasks.items()}


def _check_graph(model: MultiTaskSTOnnxModel):
    """A clear error when the ONNX graph does not belong to the config.json next to it."""
    path, outputs = model.model_path, {node.name: node for node in model.session.get_outputs()}
    problems = []
    unknown_inputs = sorted(set(model.input_names) - set(MODEL_INPUTS))
    if unknown_inputs or "input_ids" not in model.input_names:
        problems.append(f"inputs {model.input_names} (expected input_ids, attention_mask[, token_type_ids])")
    if EMBEDDING_OUTPUT not in outputs:
        problems.append(f"no `{EMBEDDING_OUTPUT}` output")
    elif outputs[EMBEDDING_OUTPUT].shape[-1] != model.embedding_dim:
        problems.append(f"embedding size {outputs[EMBEDDING_OUTPUT].shape[-1]}, config {model.embedding_dim}")
    graph_tasks = {name[len(LOGITS_PREFIX) :] for name in outputs if name.startswith(LOGITS_PREFIX)}
    if graph_tasks != set(model.tasks):
        problems.append(f"heads {sorted(graph_tasks)}, config tasks {sorted(model.tasks)}")
    for task, labels in model.tasks.items():
        size = outputs[LOGITS_PREFIX + task].shape[-1] if task in graph_tasks else len(labels)
        if size != len(labels):
            problems.append(f"head {task!r} has {size} labels, config {len(labels)}")
    if model.normalize_embeddings and UNNORMALIZED_EMBEDDING_OUTPUT not in outputs:
        problems.append(f"no `{UNNORMALIZED_EMBEDDING_OUTPUT}` output although the config normalises")
    metadata = model.session.get_modelmeta().custom_metadata_map
    if METADATA_TASKS in metadata and json.loads(metadata[METADATA_TASKS]) != model.tasks:
        problems.append(f"label names {metadata[METADATA_TASKS]}, config {json.dumps(model.tasks)}")
    if METADATA_NORMALIZE in metadata and json.loads(metadata[METADATA_NORMALIZE]) != model.normalize_embeddings:
        problems.append(f"normalize_embeddings {metadata[METADATA_NORMALIZE]}, config {model.normalize_embeddings}")
    if problems:
        raise ValueError(
            f"{path} does not match the config.json next to it: {'; '.join(problems)}. Export the model again "
            "(`python export.py MODEL_DIR --format onnx`) instead of mixing files of different models."
        )


def _resolve_onnx_file(folder: Path, file_name: str) -> Path:
    for candidate in (folder / file_name, folder / ONNX_SUBFOLDER / file_name):
        if candidate.is_file():
            return candidate
    found = sorted(path.relative_to(folder).as_posix() for path in folder.glob(f"{ONNX_SUBFOLDER}/*.onnx"))
    raise FileNotFoundError(f"No ONNX file {file_name!r} in {folder}; it has {found or 'none'}.")


def _download(repo_id, file_name, revision, token, cache_dir, local_files_only) -> Path:
    from huggingface_hub import snapshot_download

    patterns = [*FOLDER_FILES, *TOKENIZER_EXTRA_FILES, file_name, f"{ONNX_SUBFOLDER}/{file_name}"]
    patterns.append(f"{ONNX_SUBFOLDER}/{EXPORT_REPORT_NAME}")  # the checksums `from_pretrained` checks
    return Path(
        snapshot_download(
            repo_id,
            allow_patterns=patterns,
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
        )
    )


def _pad_token_id(tokenizer, config: dict) -> int:
    pad_token = config.get("_tokenizer_config", {}).get("pad_token")
    if isinstance(pad_token, dict):  # an AddedToken written out
        pad_token = pad_token.get("content")
    token_id = tokenizer.token_to_id(pad_token) if isinstance(pad_token, str) else None
    if token_id is None:
        token_id = config.get("pad_token_id")
    return int(token_id or 0)  # any id works for padding: the attention mask hides it


def _default_max_length(config: dict, tokenizer) -> int:
    """As `MultiTaskSTModel.default_max_length`: the config's limit, else the tokenizer's, capped by the positions."""
    limit = (config.get("backbone_config") or {}).get("max_position_embeddings") or 512
    if config.get("max_seq_length") is not None:
        return min(int(config["max_seq_length"]), limit)
    tokenizer_limit = config.get("_tokenizer_config", {}).get("model_max_length")
    return min(int(tokenizer_limit), limit) if tokenizer_limit and tokenizer_limit < 1_000_000 else limit


def _check_texts(texts: list, offset: int = 0):
    """The PyTorch model's rule: every item a string holding something a tokenizer keeps; errors name its index."""
    for index, text in enumerate(texts, start=offset):
        if not isinstance(text, str):
            raise TypeError(f"`sentences[{index}]` must be a string, got {type(text).__name__}: {text!r}.")
        if not any(not char.isspace() and unicodedata.category(char) not in ("Cc", "Cf") for char in text):
            raise ValueError(
                f"`sentences[{index}]` is {text!r}: empty, whitespace or only control/format characters; every text "
                "needs content to embed."
            )


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _progress(total: int | None, description: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=description, unit="text")


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:300] + ("..." if len(text) > 300 else "")
