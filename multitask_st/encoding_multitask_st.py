"""`encode`, `predict` and the teacher outputs of distillation: the torch step under the inference engine.

This file is part of the Hub payload (copied next to the weights by `save_pretrained`); it imports only torch,
transformers, numpy and the payload files next to it. The engine (`inference_multitask_st.py`: input checks, chunks,
length order; `scores_multitask_st.py`: label rows) holds no torch; the mixin below is the model's side of it: tokenise
a chunk, run the forward pass on an eval twin under `inference_mode`, return float32 rows. `MultiTaskSTModel` takes
these methods from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import torch

from .inference_multitask_st import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHUNK_SIZE,
    MODEL_INPUTS,
    check_input_tasks,
    check_max_length,
    check_out,
    check_sentences,
    check_tokenizer,
    default_max_length,
    fill_rows,
    finish_embeddings,
    length_hint,
    peek_pairs,
    progress_bar,
    run_chunks,
    run_in_length_order,
    tokenize,
)
from .layers_multitask_st import TASK_SCORES, check_inference_dtype, eval_twin, inference_precision
from .scores_multitask_st import label_rows, resolve_calibration, task_temperature


PAIR_PREFIX = "pair_"  # the second texts' model inputs: `pair_input_ids`, `pair_attention_mask`, ...


def tokenize_items(tokenizer, items: list, max_length: int, pairs: bool) -> dict[str, list]:
    """Unpadded encodings of texts, or of pairs as two sequences: the second texts' under `pair_*` keys."""
    if not pairs:
        return tokenize(tokenizer, items, max_length)
    first = tokenize(tokenizer, [text for text, _ in items], max_length)
    second = tokenize(tokenizer, [text_pair for _, text_pair in items], max_length)
    encodings = {key: first[key] for key in MODEL_INPUTS if key in first}
    encodings.update({PAIR_PREFIX + key: second[key] for key in MODEL_INPUTS if key in second})
    return encodings


class MultiTaskSTEncodingMixin:
    """The inference doors of [`MultiTaskSTModel`] (thin: the engine does the rest), safe from several threads at
    once in train or eval mode."""

    def encode(
        self,
        sentences: str | Iterable[str],
        tokenizer,
        batch_size: int = DEFAULT_BATCH_SIZE,
        normalize_embeddings: bool | None = None,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        show_progress_bar: bool | None = None,
        device: str | torch.device | None = None,
        max_length: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        out=None,
        dtype: torch.dtype | str | None = None,
    ):
        """Embed sentences: a `(n, embedding_dim)` array (or tensor), or one vector for a single string.

        `sentences` is a string or any iterable of strings (a list, a generator, a `datasets` column, a file's lines),
        read `chunk_size` texts at a time and sorted by token count within a chunk; the result keeps the input order and
        memory beyond it stays bounded by the chunk. `out` is an array `(n, embedding_dim)` to fill (e.g. an
        `np.memmap`), or iterate over [`encode_chunks`]. `normalize_embeddings` defaults to the config's. `dtype`
        (`torch.bfloat16`, `torch.float16`) runs the forward pass under `torch.autocast` in that precision (on CPU, bf16
        uses oneDNN's AVX-512 BF16 / AMX kernels) with the weights left as loaded and float32 results; judge what it
        costs with `multitask_st.export.precision_gate.judge_dtype`. Safe from several threads at once, in either train
        or eval mode (dropout is off and the mode is left alone). `device` moves the model itself there (as
        `SentenceTransformer.encode` does): set it once, not per call from several threads.

        Example:
            >>> out = np.lib.format.open_memmap("emb.npy", mode="w+", dtype="float32", shape=(n, model.config.embedding_dim))
            >>> model.encode((line.rstrip("\\n") for line in open("corpus.txt")), tokenizer, out=out)
        """
        single, as_numpy = isinstance(sentences, str), convert_to_numpy and not convert_to_tensor
        check_out(out, self.config.embedding_dim, single, as_numpy)
        chunks = self.encode_chunks([sentences] if single else sentences, tokenizer, batch_size, normalize_embeddings,
                                    show_progress_bar, device, max_length, chunk_size, dtype)  # fmt: skip
        embeddings = fill_rows(chunks, length_hint(sentences), self.config.embedding_dim, out)
        if out is not None or as_numpy:
            return embeddings if out is not None else finish_embeddings(embeddings, single, as_numpy)
        embeddings = torch.from_numpy(embeddings).to(self.device)
        return embeddings[0] if single else embeddings if convert_to_tensor else list(embeddings.unbind(0))

    def encode_chunks(
        self,
        sentences: Iterable[str],
        tokenizer,
        batch_size: int = DEFAULT_BATCH_SIZE,
        normalize_embeddings: bool | None = None,
        show_progress_bar: bool | None = None,
        device: str | torch.device | None = None,
        max_length: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        dtype: torch.dtype | str | None = None,
    ) -> Iterator[np.ndarray]:
        """The streaming form of [`encode`]: one float32 `(chunk, embedding_dim)` array per `chunk_size` texts, in order.

        Example:
            >>> for index, embeddings in enumerate(model.encode_chunks(texts, tokenizer, chunk_size=100_000)):
            ...     np.save(f"embeddings-{index:05d}.npy", embeddings)
        """

        def embed_batch(model, inputs):
            return model.finish_embedding(model.projection(model.pool(**inputs)[0]), normalize_embeddings)

        return self._run(sentences, tokenizer, embed_batch, "Encoding", batch_size, show_progress_bar, device,
                         max_length, chunk_size, dtype=dtype)  # fmt: skip

    def predict(
        self,
        sentences: str | Iterable[str],
        tokenizer,
        tasks: str | list[str] | None = None,
        thresholds: float | Mapping | None = None,
        calibrated: bool = True,
        **kwargs,
    ):
        """Run every head (or those in `tasks`) on sentences, from one forward pass per batch.

        Returns, per sentence and task: `{"label": name, "score": probability, "probabilities": {name: p}}` for a
        classification task; `{"labels": [names], "scores": [p], "probabilities": {name: p}}` for a multi-label
        task (the labels whose probability reaches their threshold, most probable first; `[]` when none does);
        `{"values": {output: number}}` for a regression task, in the data's units. A dict for a single string, a list
        of them for any iterable of strings. `thresholds` replaces the multi-label thresholds of the config
        (`config.task_calibration`, 0.5 until tuned) for this call: a number for every label, or per task a number, a
        list (one per label) or `{label: number}`. A classification head's probabilities are calibrated: its logits
        are divided by the temperature fitted on the validation split after training (`config.task_calibration`, see
        `MultiTaskTrainer.calibrate`) before the softmax; `calibrated=False` gives the raw softmax (the label is the
        same either way). `kwargs`: `batch_size`, `show_progress_bar`, `device`, `max_length`, `chunk_size`, `dtype`
        (e.g. `torch.bfloat16`), as in [`encode`].

        Pair and embedding tasks take `(text, text_pair)` pairs instead (one pair, or an iterable of them): each text
        is embedded once, as `encode` embeds it; `{"label", "score", "probabilities"}` for a pair classifier,
        `{"values": {name: number}}` for a pair regression head and, for an embedding task, the cosine similarity of
        the two texts' embeddings. Texts run the single-text tasks, pairs the pair tasks.
        """
        single, _, items = peek_pairs(sentences)
        chunks = self.predict_chunks(items, tokenizer, tasks, thresholds, calibrated, **kwargs)
        predictions = [prediction for chunk in chunks for prediction in chunk]
        return predictions[0] if single else predictions

    def predict_chunks(
        self,
        sentences: Iterable[str],
        tokenizer,
        tasks: str | list[str] | None = None,
        thresholds: float | Mapping | None = None,
        calibrated: bool = True,
        **kwargs,
    ):
        """The streaming form of [`predict`]: yields the predictions of each `chunk_size` texts, in input order."""
        config = self.config
        _, pairs, sentences = peek_pairs(sentences)
        task_names = check_input_tasks(tasks, config.task_kinds, pairs)
        calibration = resolve_calibration(config.task_calibration, config.tasks, config.task_kinds, thresholds)
        chunks = self.score_chunks(sentences, tokenizer, task_names, calibrated=calibrated, **kwargs)
        return (label_rows(scores, config.tasks, task_names, config.task_kinds, calibration) for scores in chunks)

    def score_chunks(self, sentences, tokenizer, tasks=None, with_embeddings: bool = False, calibrated: bool = True,
                     **kwargs):  # fmt: skip
        """What `predict` formats, per `chunk_size` inputs (texts, or `(text, text_pair)` pairs): `score_batch`'s float32
        rows, in input order (`kwargs` as in `predict`). The pipeline formats the same rows."""
        _, pairs, sentences = peek_pairs(sentences)
        tasks = check_input_tasks(tasks, self.config.task_kinds, pairs)
        self.task_temperatures(tasks, calibrated)  # checks `calibrated` now, not at the first batch
        return self._run(sentences, tokenizer,
                         lambda model, inputs: model.score_batch(inputs, tasks, with_embeddings, calibrated),
                         "Predicting", pairs=pairs, **kwargs)  # fmt: skip

    def score_batch(
        self, inputs: Mapping[str, torch.Tensor], tasks: list[str], with_embeddings: bool = False, calibrated=True
    ):
        """One forward pass over a tokenised batch, dropout off whatever the mode: every label's score of `tasks`
        (probabilities for classification, calibrated unless `calibrated=False`), task after task, then (if asked) the
        embedding: `(batch, columns)`."""
        if self.training:
            return eval_twin(self).score_batch(inputs, tasks, with_embeddings, calibrated)
        temperatures = self.task_temperatures(tasks, calibrated)
        with torch.inference_mode():
            output = self.forward(**inputs, tasks=tasks, return_dict=True)
            columns = [
                TASK_SCORES[self.config.task_kinds[task]](output.logits[task].float() / temperature)
                for task, temperature in zip(tasks, temperatures, strict=True)
            ]
            return torch.cat([*columns, output.embeddings.float()] if with_embeddings else columns, dim=-1)

    def task_temperatures(self, tasks: list[str], calibrated: bool = True) -> list[float]:
        """The temperature each of `tasks` divides its logits by before the softmax (see `task_temperature`)."""
        return [task_temperature(self.config.task_calibration, task, calibrated) for task in tasks]

    def pooled_output(self, encodings: Mapping[str, list], tokenizer, batch_size: int = 64, show_progress_bar=False):
        """The pooled output `(n, backbone_hidden_size)`, before the projection, of texts tokenised already (unpadded
        `input_ids` lists, ...), in order, batched as `encode` does: what embedding distillation holds (the held
        heads' targets follow from it: `training/distillation.py`, `teacher_targets`)."""
        progress = progress_bar(len(encodings["input_ids"]), "Teacher outputs", show_progress_bar)
        try:
            rows = self._run_tokenized(encodings, tokenizer, lambda model, inputs: model.pool(**inputs)[0], batch_size,
                                       progress)  # fmt: skip
        finally:
            progress is not None and progress.close()
        return torch.from_numpy(rows).to(self.device)

    def _run(self, sentences, tokenizer, run_batch, description, batch_size=DEFAULT_BATCH_SIZE, show_progress_bar=None,
             device=None, max_length=None, chunk_size=DEFAULT_CHUNK_SIZE, pairs=False,
             dtype=None) -> Iterator[np.ndarray]:  # fmt: skip
        """The torch step under the engine's `run_chunks`: per chunk, tokenise (unpadded; a pair's two texts as two
        sequences, the second under `pair_*` keys) and run `run_batch`."""
        check_sentences(sentences)
        check_tokenizer(tokenizer, self.get_input_embeddings().num_embeddings, self.config.tokenizer_fingerprint)
        max_length = check_max_length(max_length, self.default_max_length(tokenizer), self.position_limit())
        dtype = check_inference_dtype(dtype)
        if device is not None:
            self.to(device)
        return run_chunks(
            sentences,
            lambda items, bar: self._run_tokenized(tokenize_items(tokenizer, items, max_length, pairs), tokenizer,
                                                   run_batch, batch_size, bar, dtype),
            batch_size, chunk_size, show_progress_bar, description, pairs=pairs,
        )  # fmt: skip

    def _run_tokenized(
        self, encodings, tokenizer, run_batch, batch_size: int, progress=None, dtype=None
    ) -> np.ndarray:
        """`run_batch`'s rows as float32, in input order, for unpadded encodings: under `inference_mode` (and autocast
        to `dtype`, see `layers_multitask_st.inference_precision`), on an eval twin when the model is in train mode (no
        mode flipped), longest texts first, padded by `tokenizer.pad`."""
        model, device = eval_twin(self) if self.training else self, self.device

        def run(batch: list[int]) -> torch.Tensor:
            inputs = {}
            for prefix in ("", PAIR_PREFIX):
                keys = [key for key in MODEL_INPUTS if prefix + key in encodings]
                if keys:
                    padded = tokenizer.pad({key: [encodings[prefix + key][i] for i in batch] for key in keys},
                                           return_tensors="pt")  # fmt: skip
                    inputs.update({prefix + key: padded[key].to(device) for key in keys})
            return run_batch(model, inputs).float()

        lengths = [len(ids) for ids in encodings["input_ids"]]
        if PAIR_PREFIX + "input_ids" in encodings:
            lengths = [
                length + len(ids) for length, ids in zip(lengths, encodings[PAIR_PREFIX + "input_ids"], strict=True)
            ]
        with torch.inference_mode(), inference_precision(device, dtype):
            rows, inverse = run_in_length_order(lengths, batch_size, run, progress)
            return torch.cat(rows).cpu().numpy()[inverse]

    def default_max_length(self, tokenizer) -> int:
        """Tokens kept per text when no `max_length` is given (see `inference_multitask_st.default_max_length`)."""
        tokenizer_limit = getattr(tokenizer, "model_max_length", None)
        return default_max_length(self.config.max_seq_length, tokenizer_limit, self.position_limit())

    def position_limit(self) -> int:
        """The most tokens per text the backbone has position embeddings for."""
        return getattr(self.config.backbone_config, "max_position_embeddings", None) or 512
