"""Run an exported multitask-st ONNX model with onnxruntime, tokenizers and numpy: no torch, no transformers.

The folder `export_onnx` writes (config.json, the tokenizer, `onnx/model.onnx` and its int8 form) loads here and
gives what `MultiTaskSTModel.encode` / `predict` give, through the same inference engine (`inference_multitask_st`:
text checks, chunked reading, length order, bounded output, label rows). This module imports nothing torch-based,
directly or through the package, so it also serves where torch is not installed (see the README's "ONNX without
torch"); it logs through the standard library for the same reason.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from ..inference_multitask_st import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHUNK_SIZE,
    KIND_ALIASES,
    SINGLE_LABEL,
    check_input_tasks,
    check_max_length,
    check_out,
    default_max_length,
    fill_rows,
    finish_embeddings,
    length_hint,
    length_ordered_batches,
    pair_head_tasks,
    peek_pairs,
    run_chunks,
    run_in_length_order,
    text_head_tasks,
)
from ..model_folder import (  # noqa: F401  (PAIR_HEADS_FILE_NAME: the checks import it from here)
    EXPORT_REPORT_NAME,
    ONNX_FILE_NAME,
    ONNX_SUBFOLDER,
    PAIR_HEADS_FILE_NAME,
)
from ..scores_multitask_st import NUMPY_SCORES, check_calibrated, label_rows, resolve_calibration, task_temperature
from .checksums import check_artifacts, check_tokenizer
from .onnx_loading import (  # noqa: F401  (the graph's names: the exporter and the checks import them from here)
    EMBEDDING_OUTPUT,
    FOLDER_FILES,
    LOGITS_PREFIX,
    METADATA_NORMALIZE,
    METADATA_TASKS,
    PAIR_HEADS_REPORT_KEY,
    PAIR_SECOND_INPUT,
    PAIR_TEXT_INPUT,
    TOKENIZER_EXTRA_FILES,
    UNNORMALIZED_EMBEDDING_OUTPUT,
    check_graph,
    config_tasks,
    open_session,
    pad_token_id,
    read_json,
    read_tokenizer,
    resolve_folder,
    resolve_onnx_file,
)


logger = logging.getLogger(__name__)


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

    def __init__(self, session, tokenizer, config: dict, model_path: str | os.PathLike, pair_session=None):
        self.session = session  # onnxruntime's `run` is safe to call from several threads at once
        self.pair_session = pair_session  # the pair heads' graph, for pair_classification / pair_regression tasks
        self.tokenizer = tokenizer  # never mutated: each `max_length` gets its own truncating copy
        self._truncating: dict[int, object] = {}
        self._truncating_lock = threading.Lock()
        self.config = config
        self.model_path = Path(model_path)
        self.tasks: dict[str, list[str]] = config_tasks(config)
        self.head_tasks = text_head_tasks(self.task_kinds())  # the encoder graph's `logits_<task>` outputs
        if pair_head_tasks(self.task_kinds()) and pair_session is None:
            raise ValueError(
                f"Tasks {pair_head_tasks(self.task_kinds())} have pair heads, which run in "
                f"{ONNX_SUBFOLDER}/{PAIR_HEADS_FILE_NAME}; pass its session (`from_pretrained` opens it)."
            )
        self.embedding_dim: int = int(config["embedding_dim"])
        self.normalize_embeddings: bool = bool(config.get("normalize_embeddings", False))
        self.input_names = [node.name for node in session.get_inputs()]
        self.output_names = [node.name for node in session.get_outputs()]
        check_graph(self)
        self.pad_token_id = pad_token_id(tokenizer, config)
        self.position_limit = (config.get("backbone_config") or {}).get("max_position_embeddings") or 512
        tokenizer_limit = config.get("_tokenizer_config", {}).get("model_max_length")
        self.max_length = default_max_length(config.get("max_seq_length"), tokenizer_limit, self.position_limit)

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
        backend: str = "onnxruntime",
        dtype: str | None = None,
        performance_hint: str | None = None,
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
            backend: `"onnxruntime"`, or `"openvino"` (the `openvino` extra): the same graph on OpenVINO's CPU
                runtime, whose bf16 kernels (AVX-512 BF16 / AMX) onnxruntime lacks. `provider` and `session_options`
                are onnxruntime's.
            dtype: The precision the backend runs the graph in: onnxruntime `"float32"` (int8 is a graph of its own);
                OpenVINO `"bfloat16"` (the default; float32 where the CPU has no bf16) or `"float32"`. Judge what
                bf16 costs with `precision_gate.judge_graph(..., backend="openvino")`, the int8 gate.
            performance_hint: OpenVINO's: `"latency"` (the default: each batch on every core, for a text or a few at a
                time) or `"throughput"` (the cores split into streams, one batch each at once: for many texts; see
                BENCHMARKS.md). onnxruntime takes none.
        """
        file_name = file_name or f"{ONNX_SUBFOLDER}/{ONNX_FILE_NAME}"
        folder = resolve_folder(model_name_or_path, file_name, revision, token, cache_dir, local_files_only)
        model_path = resolve_onnx_file(folder, file_name)
        config = read_json(folder / "config.json")
        tokenizer = read_tokenizer(folder / "tokenizer.json")
        tokenizer_config_path = folder / "tokenizer_config.json"
        if tokenizer_config_path.is_file():
            config = {**config, "_tokenizer_config": read_json(tokenizer_config_path)}
        if verify_checksums:
            check_artifacts(folder / ONNX_SUBFOLDER / EXPORT_REPORT_NAME, [model_path])
            check_tokenizer(config, tokenizer.get_vocab(with_added_tokens=True), folder / "tokenizer.json")
        session = open_session(model_path, provider, threads, session_options, backend, dtype, performance_hint)
        pair_session = None
        if pair_head_tasks(task_kinds_of(config, config_tasks(config))):
            pair_path = folder / ONNX_SUBFOLDER / PAIR_HEADS_FILE_NAME
            if not pair_path.is_file():
                raise ValueError(
                    f"{folder} has pair-head tasks but no {ONNX_SUBFOLDER}/{PAIR_HEADS_FILE_NAME}: export the model "
                    "again (`python export.py MODEL_DIR --format onnx`)."
                )
            if verify_checksums:
                check_artifacts(folder / ONNX_SUBFOLDER / EXPORT_REPORT_NAME, [pair_path])
            pair_session = open_session(
                pair_path, provider, threads, session_options, backend, dtype, performance_hint
            )
        return cls(session, tokenizer, config, model_path, pair_session)

    # ------------------------------------------------------------------ inference (the engine, as the PyTorch model)

    def encode(
        self,
        sentences: str | Iterable[str],
        batch_size: int = DEFAULT_BATCH_SIZE,
        normalize_embeddings: bool | None = None,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        show_progress_bar: bool | None = None,
        max_length: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        out=None,
    ):
        """Embed sentences: a float32 `(n, embedding_dim)` array, or one vector for a single string.

        Same arguments as `MultiTaskSTModel.encode` less the tokenizer (the model's own) and the device (the
        provider): any iterable read `chunk_size` texts at a time with memory bounded by the chunk, `out=` to fill an
        array (e.g. an `np.memmap`); `convert_to_numpy=False` gives a list of vectors, and `convert_to_tensor` is
        refused (no torch here). Safe from several threads at once.
        """
        if convert_to_tensor:
            raise ValueError("`convert_to_tensor=True` needs torch; the ONNX model returns numpy arrays.")
        single = isinstance(sentences, str)
        check_out(out, self.embedding_dim, single, convert_to_numpy)
        chunks = self.encode_chunks([sentences] if single else sentences, batch_size, normalize_embeddings,
                                    show_progress_bar, max_length, chunk_size)  # fmt: skip
        embeddings = fill_rows(chunks, length_hint(sentences), self.embedding_dim, out)
        return embeddings if out is not None else finish_embeddings(embeddings, single, convert_to_numpy)

    def encode_chunks(
        self,
        sentences: Iterable[str],
        batch_size: int = DEFAULT_BATCH_SIZE,
        normalize_embeddings: bool | None = None,
        show_progress_bar: bool | None = None,
        max_length: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> Iterator[np.ndarray]:
        """The streaming form of [`encode`]: one float32 `(chunk, embedding_dim)` array per `chunk_size` texts."""
        normalize = self.normalize_embeddings if normalize_embeddings is None else bool(normalize_embeddings)
        if normalize == self.normalize_embeddings or not self.normalize_embeddings:
            output = EMBEDDING_OUTPUT
        else:
            output = UNNORMALIZED_EMBEDDING_OUTPUT  # the graph normalises; the caller wants the raw vectors
        chunks = self._run([output], sentences, batch_size, show_progress_bar, max_length, chunk_size, "Encoding")
        for (embeddings,) in chunks:
            if normalize and not self.normalize_embeddings:
                norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
                embeddings = embeddings / np.maximum(norms, 1e-12)  # as torch.nn.functional.normalize
            yield embeddings.astype(np.float32, copy=False)

    def predict(
        self,
        sentences: str | Iterable[str],
        tasks: str | Iterable[str] | None = None,
        thresholds=None,
        calibrated: bool = True,
        **kwargs,
    ):
        """Run every head (or those in `tasks`) on sentences from one graph run per batch.

        Returns, per sentence, what `MultiTaskSTModel.predict` returns (`{task: {"label": name, "score": probability,
        "probabilities": {name: p}}}` for a classification task, the labels at or above their `thresholds` for a
        multi-label one, `{"values": ...}` for a regression one); a dict for a single string, a list of them
        otherwise. `(text, text_pair)` pairs go to the pair heads (the pair heads' graph on the two texts' encoder-graph
        embeddings) and the embedding tasks (the cosine of the two embeddings). A classification head's probabilities
        are calibrated by its temperature in config.json unless `calibrated=False` (the raw softmax), as in PyTorch.
        `kwargs`: `batch_size`, `show_progress_bar`, `max_length`, `chunk_size`.
        """
        single, _, items = peek_pairs(sentences)
        chunks = self.predict_chunks(items, tasks, thresholds, calibrated, **kwargs)
        predictions = [prediction for chunk in chunks for prediction in chunk]
        return predictions[0] if single else predictions

    def predict_chunks(
        self,
        sentences: Iterable[str],
        tasks: str | Iterable[str] | None = None,
        thresholds=None,
        calibrated: bool = True,
        batch_size: int = DEFAULT_BATCH_SIZE,
        show_progress_bar: bool | None = None,
        max_length: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> Iterator[list[dict]]:
        """The streaming form of [`predict`]: yields the predictions of each `chunk_size` texts, in input order."""
        kinds = self.task_kinds()
        _, pairs, sentences = peek_pairs(sentences)
        task_names = check_input_tasks(tasks, kinds, pairs)
        calibration = resolve_calibration(self.config.get("task_calibration"), self.tasks, kinds, thresholds)
        if pairs:  # pair heads have no temperature (only classification heads are calibrated), but the same checks
            check_calibrated(calibrated)
            chunks = self._pair_scores(sentences, task_names, batch_size, show_progress_bar, max_length, chunk_size)
        else:
            chunks = self.score_chunks(sentences, task_names, False, batch_size, show_progress_bar, max_length,
                                       chunk_size, calibrated)  # fmt: skip
        for scores in chunks:
            yield label_rows(scores, self.tasks, task_names, kinds, calibration)

    def task_kinds(self) -> dict[str, str]:
        """Each task's kind (`single_label_classification`, ...), as config.json names it (older names read)."""
        return task_kinds_of(self.config, self.tasks)

    def score_chunks(
        self,
        sentences: Iterable[str],
        tasks: str | Iterable[str] | None = None,
        with_embeddings: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        show_progress_bar: bool | None = None,
        max_length: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        calibrated: bool = True,
    ) -> Iterator[np.ndarray]:
        """What `predict` formats, per `chunk_size` texts, as `MultiTaskSTModel.score_chunks` gives it: float32 rows of
        each task's score columns (per its kind: probabilities, calibrated unless `calibrated=False`, or a
        regression's values), task after task, then (if asked) the embedding, from one graph run per batch, in input
        order."""
        kinds = self.task_kinds()
        task_names = check_input_tasks(tasks, kinds, pairs=False)  # texts: the single-text heads
        # The graph gives the raw logits; the temperatures come from config.json, through the engine as in PyTorch.
        temperatures = [task_temperature(self.config.get("task_calibration"), task, calibrated) for task in task_names]
        outputs = [LOGITS_PREFIX + task for task in task_names] + ([EMBEDDING_OUTPUT] if with_embeddings else [])
        chunks = self._run(outputs, sentences, batch_size, show_progress_bar, max_length, chunk_size, "Predicting")
        for arrays in chunks:
            logits = arrays[: len(task_names)]  # the embedding, if asked, comes last
            columns = [
                NUMPY_SCORES[kinds[task]](output.astype(np.float32) / np.float32(temperature))
                for task, output, temperature in zip(task_names, logits, temperatures, strict=True)
            ]
            if with_embeddings:
                columns.append(arrays[-1].astype(np.float32, copy=False))
            yield np.concatenate(columns, axis=-1)

    def _pair_scores(self, pairs, task_names, batch_size, show_progress_bar, max_length, chunk_size):
        """Per chunk of pairs, the score columns of `task_names`: both texts through the encoder graph once, then the
        pair heads' graph on their (un-normalised) embeddings, or the cosine for an embedding task."""
        output = UNNORMALIZED_EMBEDDING_OUTPUT if self.normalize_embeddings else EMBEDDING_OUTPUT
        tokenizer = self._tokenizer_for(check_max_length(max_length, self.max_length, self.position_limit))
        heads = [task for task in task_names if task in pair_head_tasks(self.task_kinds())]

        def run_chunk(items: list, progress) -> np.ndarray:
            texts = [text for text, _ in items] + [text_pair for _, text_pair in items]
            (embeddings,) = self._run_texts([output], texts, tokenizer, batch_size, None)
            first, second = embeddings[: len(items)].astype(np.float32), embeddings[len(items) :].astype(np.float32)
            logits = {}
            if heads:
                names = [LOGITS_PREFIX + task for task in heads]
                inputs = {PAIR_TEXT_INPUT: first, PAIR_SECOND_INPUT: second}
                logits = dict(zip(heads, self.pair_session.run(names, inputs), strict=True))
            # torch's cosine_similarity: u.v / max(|u| |v|, 1e-8)
            norms = np.linalg.norm(first, axis=1) * np.linalg.norm(second, axis=1)
            cosine = ((first * second).sum(axis=1) / np.maximum(norms, 1e-8))[:, None]
            columns = [
                NUMPY_SCORES[self.task_kinds()[task]](logits[task].astype(np.float32)) if task in logits else cosine
                for task in task_names
            ]
            if progress is not None:
                progress.update(len(items))
            return np.concatenate(columns, axis=-1).astype(np.float32)

        return run_chunks(pairs, run_chunk, batch_size, chunk_size, show_progress_bar, "Predicting", pairs=True)

    def run(self, sentences: str | Iterable[str], output_names: list[str], **kwargs) -> list:
        """The raw graph outputs named in `output_names` (e.g. `["sentence_embedding", "logits_topic"]`) for
        sentences, rows in input order; `kwargs` as in `encode` (`batch_size`, `show_progress_bar`, `max_length`,
        `chunk_size`). A per-token output (`last_hidden_state`) comes as a list of `(tokens, hidden)` arrays, one per
        text, since texts differ in length."""
        unknown = [name for name in output_names if name not in self.output_names]
        if unknown:
            raise ValueError(f"Unknown output(s) {unknown}; this graph has {self.output_names}.")
        single = isinstance(sentences, str)
        chunks = list(self._run(output_names, [sentences] if single else sentences, description="Running", **kwargs))
        results = []
        for index in range(len(output_names)):
            parts = [chunk[index] for chunk in chunks]
            results.append(
                [row for part in parts for row in part] if isinstance(parts[0], list) else np.concatenate(parts)
            )
        return results

    def _run(
        self,
        output_names: list[str],
        sentences,
        batch_size: int = DEFAULT_BATCH_SIZE,
        show_progress_bar: bool | None = None,
        max_length: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        description: str = "Running",
    ) -> Iterator[list[np.ndarray]]:
        """The engine's `run_chunks` with the onnxruntime step: per chunk, the outputs for its texts, in input order."""
        tokenizer = self._tokenizer_for(check_max_length(max_length, self.max_length, self.position_limit))

        def run_chunk(texts: list[str], progress) -> list[np.ndarray]:
            return self._run_texts(output_names, texts, tokenizer, batch_size, progress)

        return run_chunks(sentences, run_chunk, batch_size, chunk_size, show_progress_bar, description)

    def _run_texts(self, output_names: list[str], texts: list[str], tokenizer, batch_size: int, progress):
        """The outputs for one chunk of (checked) texts, in input order, run longest first (several batches at once
        where the session runs them so: OpenVINO's "throughput" hint)."""
        encodings = tokenizer.encode_batch(texts)
        lengths = [len(encoding.ids) for encoding in encodings]
        if getattr(self.session, "concurrent_batches", 1) > 1:
            indices, inverse = length_ordered_batches(lengths, batch_size)
            batches = [[encodings[i] for i in batch] for batch in indices]
            done = None if progress is None else (lambda index: progress.update(len(indices[index])))
            outputs = self.session.run_batches(output_names, (self._pad(batch) for batch in batches), done)
            batches = [_cut(batch_outputs, batch) for batch_outputs, batch in zip(outputs, batches, strict=True)]
        else:
            batches, inverse = run_in_length_order(
                lengths,
                batch_size,
                lambda batch: self._run_batch(output_names, [encodings[i] for i in batch]),
                progress,
            )
        return [_join([batch[index] for batch in batches], inverse) for index in range(len(output_names))]

    def _run_batch(self, output_names: list[str], encodings) -> list[np.ndarray]:
        return _cut(self.session.run(output_names, self._pad(encodings)), encodings)

    def _tokenizer_for(self, max_length: int):
        """A copy of the model's tokenizer that truncates at `max_length`, made once per length and never changed
        afterwards, so calls from several threads with different lengths never see each other's setting."""
        with self._truncating_lock:
            tokenizer = self._truncating.get(max_length)
            if tokenizer is None:
                tokenizer = type(self.tokenizer).from_str(self.tokenizer.to_str())
                tokenizer.no_padding()
                tokenizer.enable_truncation(max_length)
                self._truncating[max_length] = tokenizer
            return tokenizer

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


def task_kinds_of(config: dict, tasks) -> dict[str, str]:
    """Every task's kind from an exported config.json: a task left out is a classification task; transformers'
    `problem_type` names are read as the config reads them (`KIND_ALIASES`)."""
    kinds = {task: KIND_ALIASES.get(kind, kind) for task, kind in (config.get("task_kinds") or {}).items()}
    return {task: kinds.get(task, SINGLE_LABEL) for task in tasks}


def _cut(outputs: list[np.ndarray], encodings) -> list:
    """One batch's outputs, per-token ones cut to each text's own length: batches differ in length, so they cannot be
    stacked."""
    lengths = [len(encoding.ids) for encoding in encodings]
    return [output if output.ndim <= 2 else _ragged(output, lengths) for output in outputs]


def _join(parts: list, inverse: np.ndarray):
    """One output's batches joined and put back in input order: an array, or a list of per-text arrays (ragged)."""
    if isinstance(parts[0], list):
        rows = [row for part in parts for row in part]
        return [rows[index] for index in inverse]
    return np.concatenate(parts)[inverse]


def _ragged(output: np.ndarray, lengths: list[int]) -> list[np.ndarray]:
    return [row[:length] for row, length in zip(output, lengths, strict=True)]
