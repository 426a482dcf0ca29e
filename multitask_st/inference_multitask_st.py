"""The inference engine every door of a multitask-st model runs: `MultiTaskSTModel.encode/predict`, the pipeline, the
SentenceTransformer module and the ONNX runtime.

It decides what a valid text is (one rule for every door), reads any iterable of texts a chunk at a time, orders each
chunk by token count and restores the input order, fills a bounded output (`out=`), and checks tasks and lengths
(`scores_multitask_st.py` turns the scores into label rows). It is part of the Hub payload (copied next to the weights; relative imports only) and imports only
the standard library and numpy, so the ONNX runtime, which runs without torch, uses the same code; the torch step
(tokenise -> forward -> pool) stays with the model.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import threading
import unicodedata
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np


# The standard library's logger: transformers' `get_logger` returns this same logger for a name outside its own tree,
# and importing transformers here would cost the torch-free ONNX runtime a dependency it does not need.
logger = logging.getLogger(__name__)


# Texts tokenised and held at a time: their token ids cost ~9 KB per text on MiniLM, so a million texts at once would
# need ~9 GB before the result; a few thousand keep almost all of the length-sorting win.
DEFAULT_CHUNK_SIZE = 4096
DEFAULT_BATCH_SIZE = 32
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # what a tokenizer gives that the model takes

# The kinds of task a head can serve (each kind's head is in `layers_multitask_st.TASK_HEADS`, its loss in
# `losses_multitask_st.TASK_LOSSES`, its label rows in `scores_multitask_st.LABEL_ROW_FORMATTERS`).
SINGLE_LABEL = "classification"  # one label of several per text (softmax); a task without a kind is this one
MULTI_LABEL = "multi_label"  # any number of labels per text (a sigmoid per label, a threshold per label)
REGRESSION = "regression"  # one or more named real numbers per text
# transformers' `problem_type` names for the same kinds, accepted wherever a kind is given.
KIND_ALIASES = {"single_label_classification": SINGLE_LABEL, "multi_label_classification": MULTI_LABEL}
# Heads over a pair of texts that read the two texts' shared embeddings (u, v, |u - v|, u * v): classes, or real outputs.
PAIR_CLASSIFICATION = "pair_classification"
PAIR_REGRESSION = "pair_regression"
# Tasks that train the embedding itself, with no head: scored pairs (CoSENT loss) and (anchor, positive[, negative])
# rows (in-batch negatives). For a pair, their score is the cosine similarity of the two texts' embeddings.
EMBEDDING = "embedding"
EMBEDDING_CONTRASTIVE = "embedding_contrastive"
# The kinds whose examples, and whose `predict` inputs, are pairs of texts; those of them with a head.
PAIR_KINDS = (PAIR_CLASSIFICATION, PAIR_REGRESSION, EMBEDDING, EMBEDDING_CONTRASTIVE)
PAIR_HEAD_KINDS = (PAIR_CLASSIFICATION, PAIR_REGRESSION)


def text_head_tasks(task_kinds: Mapping[str, str]) -> list[str]:
    """The tasks whose head reads one text's embedding (what the encoder graph's `logits_<task>` outputs are)."""
    return [task for task, kind in task_kinds.items() if kind not in PAIR_KINDS]


def pair_head_tasks(task_kinds: Mapping[str, str]) -> list[str]:
    """The tasks whose head reads two texts' embeddings (`pair_classification`, `pair_regression`)."""
    return [task for task, kind in task_kinds.items() if kind in PAIR_HEAD_KINDS]


# ---------------------------------------------------------------------------------------------------- doors' files

# The task name the pipeline is declared under in config.json. It is the Hub's `pipeline_tag` too, so the snippet the
# Hub generates (`pipeline("text-classification", model=repo, trust_remote_code=True)`) runs our pipeline.
PIPELINE_TASK = "text-classification"
PIPELINE_CLASS_REF = "pipeline_multitask_st.MultiTaskSTPipeline"
# The files `SentenceTransformer(path, trust_remote_code=True)` reads, and the module class they name.
SENTENCE_TRANSFORMERS_MODULE = "sentence_transformers_multitask_st.MultiTaskSTSentenceEncoder"
SENTENCE_TRANSFORMERS_FILES = ("modules.json", "config_sentence_transformers.json", "sentence_bert_config.json")
# The code `trust_remote_code` runs, as `save_pretrained` copies it next to the weights (transformers copies the
# relative imports of the model file; `tests/test_modeling.py` checks the two agree).
PAYLOAD_FILES = (
    "configuration_multitask_st.py",
    "task_fields_multitask_st.py",
    "modeling_multitask_st.py",
    "encoding_multitask_st.py",
    "task_editing_multitask_st.py",
    "inference_multitask_st.py",
    "scores_multitask_st.py",
    "layers_multitask_st.py",
    "losses_multitask_st.py",
    "parts_multitask_st.py",
    PIPELINE_CLASS_REF.split(".")[0] + ".py",
    SENTENCE_TRANSFORMERS_MODULE.split(".")[0] + ".py",
)


def custom_pipelines_entry() -> dict:
    """The `custom_pipelines` value of config.json, in the form `Pipeline.save_pretrained` writes for registered
    pipelines (`pipeline()` resolves `impl` in the repository and builds the model with the `pt` auto class)."""
    return {PIPELINE_TASK: {"impl": PIPELINE_CLASS_REF, "pt": ["AutoModel"], "type": "text"}}


def sentence_transformers_files(max_seq_length: int | None, versions: Mapping[str, str]) -> dict[str, str]:
    """The sentence-transformers files of a model folder, name -> text; `versions` as ST writes them."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": SENTENCE_TRANSFORMERS_MODULE}]
    settings = {
        "__version__": dict(versions),
        "model_type": "SentenceTransformer",
        "prompts": {},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    }
    # Left out when unset: the module then truncates where `encode` does, at the model's default max length.
    module_config = {} if max_seq_length is None else {"max_seq_length": max_seq_length}
    contents = (modules, settings, module_config)
    return {
        name: json.dumps(value, indent=2) + "\n"
        for name, value in zip(SENTENCE_TRANSFORMERS_FILES, contents, strict=True)
    }


# ---------------------------------------------------------------------------------------------------- checks


def has_content(text: str) -> bool:
    """Whether a text holds anything a tokenizer keeps: not only whitespace, control (`Cc`: `\\x00`) or format (`Cf`:
    zero-width space, soft hyphen, BOM) characters, which BERT-style tokenizers drop, leaving `[CLS] [SEP]`."""
    return any(not char.isspace() and unicodedata.category(char) not in ("Cc", "Cf") for char in text)


def check_texts(texts: Sequence, offset: int = 0):
    """Every item is a string with content; errors give the item's index in the whole input."""
    for index, text in enumerate(texts, start=offset):
        if not isinstance(text, str):
            raise TypeError(f"`sentences[{index}]` must be a string, got {type(text).__name__}: {text!r}.")
        if not has_content(text):
            raise ValueError(
                f"`sentences[{index}]` is {text!r}: empty, whitespace or only control/format characters; every text "
                "needs content to embed."
            )


def check_pairs(pairs: Sequence, offset: int = 0):
    """Every item is a `(text, text_pair)` pair of strings with content; errors give the item's index."""
    for index, pair in enumerate(pairs, start=offset):
        if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise TypeError(
                f"`sentences[{index}]` must be a (text, text_pair) pair like the items before it, got {pair!r}."
            )
        for side, text in zip(("text", "text_pair"), pair, strict=True):
            if not isinstance(text, str):
                raise TypeError(
                    f"The {side} of `sentences[{index}]` must be a string, got {type(text).__name__}: {text!r}."
                )
            if not has_content(text):
                raise ValueError(
                    f"The {side} of `sentences[{index}]` is {text!r}: empty, whitespace or only control/format "
                    "characters; every text needs content to embed."
                )


def is_pair(item) -> bool:
    """Whether one `predict` input is a `(text, text_pair)` pair rather than a text."""
    return isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(text, str) for text in item)


_NOTHING = object()


def peek_pairs(sentences) -> tuple[bool, bool, Iterable]:
    """`(single, pairs, items)` for a `predict` input: one text, one pair, or an iterable of either (the kind of its
    first item decides; a generator's first item is put back)."""
    if isinstance(sentences, str):
        return True, False, [sentences]
    if isinstance(sentences, tuple) and is_pair(sentences):
        return True, True, [sentences]
    check_sentences(sentences)
    if isinstance(sentences, Sequence):
        return False, len(sentences) > 0 and is_pair(sentences[0]), sentences
    iterator = iter(sentences)
    first = next(iterator, _NOTHING)
    if first is _NOTHING:  # not `None`: a first item that is None is named by the text checks, not called "empty"
        return False, False, []
    return False, is_pair(first), itertools.chain([first], iterator)


def check_input_tasks(tasks, task_kinds: Mapping[str, str], pairs: bool) -> list[str]:
    """The tasks `predict` runs on texts (single-text kinds) or on pairs (`PAIR_KINDS`): by default all of that input's
    kind; a named task must take that input."""
    takes = [task for task, kind in task_kinds.items() if (kind in PAIR_KINDS) == pairs]
    what = "pairs of texts" if pairs else "single texts"
    if tasks is None:
        if not takes:
            others = "single texts" if pairs else "(text, text_pair) pairs"
            raise ValueError(f"This model has no task that takes {what}; its tasks {list(task_kinds)} take {others}.")
        return takes
    tasks = check_tasks(tasks, list(task_kinds))
    wrong = [task for task in tasks if task not in takes]
    if wrong:
        raise ValueError(
            f"Task(s) {wrong} do not take {what} (kinds {[task_kinds[task] for task in wrong]}); the tasks that do "
            f"are {takes}."
        )
    return tasks


def check_sentences(sentences) -> Iterable:
    """A string or any iterable of texts (not bytes, not a mapping)."""
    if isinstance(sentences, (bytes, Mapping)) or not isinstance(sentences, Iterable):
        raise TypeError(f"`sentences` must be a string or an iterable of strings, got {type(sentences).__name__}.")
    return sentences


def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return value


def check_tasks(tasks, task_names: Sequence[str]) -> list[str]:
    """The task names to run: all by default, else those named (a name or an iterable of names), each known."""
    if tasks is None:
        return list(task_names)
    if isinstance(tasks, str):
        tasks = [tasks]
    tasks = list(tasks) if isinstance(tasks, Iterable) else tasks
    if not isinstance(tasks, list) or not all(isinstance(task, str) for task in tasks):
        raise TypeError(f"`tasks` must be a task name or a list of them (of {list(task_names)}), got {tasks!r}.")
    if not tasks:
        raise ValueError(f"`tasks` is empty; name one or more of this model's tasks {list(task_names)}.")
    unknown = [task for task in tasks if task not in task_names]
    if unknown:
        raise ValueError(f"Unknown task(s) {unknown}; this model's tasks are {list(task_names)}.")
    return tasks


def default_max_length(max_seq_length: int | None, tokenizer_limit: int | None, position_limit: int) -> int:
    """Tokens kept per text when the caller names none: the config's `max_seq_length`, else the tokenizer's
    `model_max_length`, never more than the backbone has positions for."""
    if max_seq_length is not None:
        return min(int(max_seq_length), position_limit)
    # tokenizers without a limit report a huge sentinel (int(1e30))
    if tokenizer_limit and tokenizer_limit < 1_000_000:
        return min(int(tokenizer_limit), position_limit)
    return position_limit


def check_max_length(max_length, default: int, position_limit: int) -> int:
    if max_length is None:
        return default
    if isinstance(max_length, bool) or not isinstance(max_length, int) or not 1 <= max_length <= position_limit:
        raise ValueError(
            f"`max_length` must be an integer in 1..{position_limit} (the backbone's `max_position_embeddings`), "
            f"got {max_length!r}."
        )
    return max_length


def check_out(out, width: int, single: bool = False, as_numpy: bool = True):
    """`out=`: a float array `(n, width)` to write into (a numpy array or `np.memmap`), for an iterable of texts."""
    if out is None:
        return
    if single or not as_numpy:
        raise ValueError("`out` takes the embeddings of an iterable of texts as an array; leave the convert_* flags.")
    shape = getattr(out, "shape", None)
    if shape is None or len(shape) != 2 or shape[1] != width:
        raise ValueError(f"`out` must be an array of shape (n, {width}), got {shape if shape is not None else out!r}.")


def check_tokenizer(tokenizer, embedding_rows: int, expected_fingerprint: str | None):
    """A Hugging Face tokenizer, with no more tokens than the embedding matrix has rows (it would fail deep in torch);
    one whose vocabulary differs from the model's (`config.tokenizer_fingerprint`) gets a warning."""
    if tokenizer is None or not callable(tokenizer):
        raise TypeError(f"`tokenizer` must be a Hugging Face tokenizer, got {tokenizer!r}.")
    try:
        size = len(tokenizer)
    except TypeError:  # a plain callable: nothing to compare
        return
    if size > embedding_rows:
        raise ValueError(
            f"The tokenizer has {size} tokens but this model's embedding matrix has {embedding_rows} rows: it is not "
            "the model's tokenizer. Load the one saved with the model (`AutoTokenizer.from_pretrained(model_dir)`)."
        )
    if expected_fingerprint and hasattr(tokenizer, "get_vocab"):
        found = tokenizer_fingerprint(tokenizer)
        if found != expected_fingerprint and (found, expected_fingerprint) not in _WARNED:
            _WARNED.add((found, expected_fingerprint))
            logger.warning(
                f"The tokenizer's vocabulary ({found}) is not the one this model was trained with "
                f"({expected_fingerprint}): embeddings and predictions will be wrong. Load the tokenizer saved with "
                "the model (`AutoTokenizer.from_pretrained(model_dir)`)."
            )


_WARNED: set = set()  # (found, expected) fingerprint pairs already warned about: once each, as `warning_once`


def length_hint(sentences) -> int | None:
    return len(sentences) if hasattr(sentences, "__len__") else None  # a generator or a file: known only at the end


# ---------------------------------------------------------------------------------------------------- running


def run_chunks(
    sentences: Iterable[str],
    run_chunk: Callable[[list[str], object], object],
    batch_size: int,
    chunk_size: int,
    show_progress_bar: bool | None,
    description: str,
    pairs: bool = False,
) -> Iterator:
    """Checks the arguments now, then lazily yields `run_chunk(texts, progress)` for each `chunk_size` texts, in input
    order. Memory: one chunk's texts, token ids and outputs at a time, whatever the input size.

    Texts are checked chunk by chunk (an error names the index in the whole input); an empty input is an error, and an
    input whose `len()` disagrees with what it yields a warning.
    """
    check_sentences(sentences)
    check_positive_int("batch_size", batch_size)
    check_positive_int("chunk_size", chunk_size)
    total = length_hint(sentences)
    if show_progress_bar is None:
        show_progress_bar = logger.getEffectiveLevel() <= logging.INFO and (total is None or total > batch_size)
    return _generate_chunks(
        iter(sentences), run_chunk, chunk_size, total, progress_bar(total, description, show_progress_bar),
        check_pairs if pairs else check_texts,
    )  # fmt: skip


def _generate_chunks(texts, run_chunk, chunk_size, total, progress, check_items=check_texts):
    seen = 0
    try:
        while chunk := list(itertools.islice(texts, chunk_size)):
            check_items(chunk, offset=seen)
            seen += len(chunk)
            yield run_chunk(chunk, progress)
    finally:
        if progress is not None:
            progress.close()
    if seen == 0:
        raise ValueError("`sentences` is empty: pass at least one string.")
    if total is not None and seen != total:
        logger.warning(f"`sentences` reported {total} texts but gave {seen}.")


def run_in_length_order(
    lengths: Sequence[int], batch_size: int, run_batch: Callable[[list[int]], object], progress=None
) -> tuple[list, np.ndarray]:
    """Runs the items longest first, in batches of `batch_size`: `run_batch` gets the item indices of one batch.

    Returns the batches' results and the permutation that restores item order: row `inverse[i]` of the joined results
    is item `i`. Batches of near-equal token counts carry almost no padding (on 2000 Rotten Tomatoes snippets, sorting
    by characters ran 28% more positions than tokens, this 2%; see BENCHMARKS.md), and an over-large batch fails first.
    """
    batches, inverse = length_ordered_batches(lengths, batch_size)
    outputs = []
    for batch in batches:
        outputs.append(run_batch(batch))
        if progress is not None:
            progress.update(len(batch))
    return outputs, inverse


def length_ordered_batches(lengths: Sequence[int], batch_size: int) -> tuple[list[list[int]], np.ndarray]:
    """The item indices in batches of `batch_size`, longest items first, and the permutation that restores item order
    (see `run_in_length_order`), for a caller that runs the batches itself (several at once)."""
    order = sorted(range(len(lengths)), key=lambda index: -lengths[index])
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[np.asarray(order, dtype=np.int64)] = np.arange(len(order))  # item order[k] is row k of the batches
    return batches, inverse


def fill_rows(chunks: Iterable[np.ndarray], total: int | None, width: int, out=None) -> np.ndarray:
    """Writes the chunks' rows one after another into `out`, or into an array allocated once for `total` rows.

    When the total is unknown the array grows chunk by chunk with `ndarray.resize`, which `realloc`s in place (on
    Linux large blocks are remapped, not copied), so memory stays the result plus one chunk, never two results.
    """
    buffer = out if out is not None else np.empty((total or 0, width), dtype=np.float32)
    rows = 0
    for chunk in chunks:
        end = rows + len(chunk)
        if end > len(buffer):
            if out is not None:
                raise ValueError(f"`out` has {len(out)} rows but `sentences` holds more texts than that.")
            buffer.resize((end, width), refcheck=False)
        buffer[rows:end] = chunk
        rows = end
    if out is not None and rows != len(out):
        raise ValueError(f"`out` has {len(out)} rows but `sentences` held {rows} texts.")
    if rows != len(buffer):
        buffer.resize((rows, width), refcheck=False)
    return buffer


def finish_embeddings(embeddings: np.ndarray, single: bool, convert_to_numpy: bool):
    """`encode`'s return value from its rows: one vector for a single string, else the array or a list of rows."""
    if single:
        return embeddings[0]
    return embeddings if convert_to_numpy else list(embeddings)


# ---------------------------------------------------------------------------------------------------- tokenizers

# A fast tokenizer sets its Rust backend's truncation on every call when the length differs from the last one, and
# reads it while encoding (outside the GIL): two threads with different `max_length` would swap lengths. One lock per
# tokenizer around the call keeps each call's setting; the forward passes still run in parallel.
_TOKENIZER_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def tokenize(tokenizer, texts: str | list[str], max_length: int, **kwargs) -> Mapping[str, list]:
    """A Hugging Face tokenizer's encodings of `texts`, truncated to `max_length` (unpadded unless `kwargs` say),
    safe from any thread."""
    with _tokenizer_lock(tokenizer):
        return tokenizer(texts, truncation=True, max_length=max_length, **kwargs)


def _tokenizer_lock(tokenizer) -> threading.Lock:
    with _LOCKS_LOCK:
        try:
            return _TOKENIZER_LOCKS.setdefault(tokenizer, threading.Lock())
        except TypeError:  # not weak-referenceable: a lock of its own for this call (nothing shared to protect)
            return threading.Lock()


_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash of the tokenizer's vocabulary (tokens and their ids, added tokens included): saved in the
    config as `tokenizer_fingerprint`, so `encode`/`predict` notice a tokenizer that is not the model's."""
    size = len(tokenizer)
    try:
        cached = _FINGERPRINTS.get(tokenizer)
    except TypeError:  # not weak-referenceable or not hashable: compute every time
        cached = None
    if cached is not None and cached[0] == size:
        return cached[1]
    fingerprint = vocabulary_fingerprint(tokenizer.get_vocab())
    try:
        _FINGERPRINTS[tokenizer] = (size, fingerprint)
    except TypeError:
        pass
    return fingerprint


def vocabulary_fingerprint(vocabulary: Mapping[str, int]) -> str:
    """`config.tokenizer_fingerprint`: a short hash of a tokenizer's vocabulary (`get_vocab()`: tokens and their ids,
    added tokens included). Here, free of torch and transformers, so the ONNX runtime computes it as PyTorch does."""
    ordered = sorted(vocabulary.items(), key=lambda item: item[1])
    return "sha256:" + hashlib.sha256(json.dumps(ordered).encode("utf-8")).hexdigest()[:16]


def progress_bar(total: int | None, description: str, enabled: bool):
    if not enabled:
        return None
    try:  # transformers' bar honours `transformers.utils.logging.disable_progress_bar()`
        from transformers.utils.logging import tqdm
    except ImportError:  # the torch-free ONNX install
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return None
    return tqdm(total=total, desc=description, unit="text")
