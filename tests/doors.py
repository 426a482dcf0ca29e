"""Every door of a saved model folder behind one interface, and the table of inputs the door-parity and concurrency
tests run through them.

A door gives `encode(texts, **kwargs) -> np.ndarray` and `predict(texts, **kwargs) -> [{task: {"label",
"probabilities"}}]` in one shape, whatever its own: `model.encode/predict` (PyTorch), the pipeline that ships with the
model, `SentenceTransformer(folder)` (encode only) and `MultiTaskSTOnnxModel`. `outcome` runs one call and returns
what a user sees, an output or the exception's type and message, so two doors can be compared as data (also across a
subprocess that blocks the package). Importing this file imports no door: each is built on first use.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np


DOORS = ("model", "pipeline", "sentence-transformers", "onnx")


class Doors:
    """The doors of one saved folder. `model`/`tokenizer` are the in-process PyTorch ones (None to load the folder's
    code only, as a user without the package does: `trust_remote_code=True`)."""

    def __init__(self, folder, model=None, tokenizer=None, onnx_folder=None):
        self.folder, self.model, self.tokenizer, self.onnx_folder = str(folder), model, tokenizer, onnx_folder
        self._built: dict[str, object] = {}

    def door(self, name: str):
        if name not in self._built:
            self._built[name] = getattr(self, "_build_" + name.replace("-", "_"))()
        return self._built[name]

    def _build_model(self):
        return self.model

    def _build_pipeline(self):
        if self.model is None:
            from transformers import pipeline

            return pipeline(model=self.folder, trust_remote_code=True, device="cpu")
        from multitask_st.pipeline_multitask_st import MultiTaskSTPipeline

        return MultiTaskSTPipeline(model=self.model, tokenizer=self.tokenizer)

    def _build_sentence_transformers(self):
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(self.folder, trust_remote_code=True, device="cpu")

    def _build_onnx(self):
        from multitask_st.export.onnx_runtime import MultiTaskSTOnnxModel

        return MultiTaskSTOnnxModel.from_pretrained(self.onnx_folder, threads=1)

    # ------------------------------------------------------------------ one shape for every door

    def encode(self, name: str, texts, **kwargs) -> np.ndarray:
        door = self.door(name)
        if name == "model":
            return door.encode(texts, self.tokenizer, **kwargs)
        if name == "pipeline":
            results = door(texts, return_embedding=True, **kwargs)
            single = isinstance(texts, str)
            embeddings = np.asarray([result["embedding"] for result in ([results] if single else list(results))])
            return (embeddings[0] if single else embeddings).astype(np.float32)
        return np.asarray(door.encode(texts, **kwargs))

    def predict(self, name: str, texts, **kwargs) -> list[dict] | dict:
        door = self.door(name)
        if name == "sentence-transformers":
            raise NotImplementedError("SentenceTransformer has no heads")
        if name == "pipeline":
            results = door(texts, top_k=None, **kwargs)
            rows = [results] if isinstance(texts, str) else list(results)
            rows = [
                {task: _entry({item["label"]: item["score"] for item in ranked}) for task, ranked in row.items()}
                for row in rows
            ]
        else:
            results = (
                door.predict(texts, self.tokenizer, **kwargs) if name == "model" else door.predict(texts, **kwargs)
            )
            rows = [results] if isinstance(texts, str) else results
            rows = [{task: _entry(entry["probabilities"]) for task, entry in row.items()} for row in rows]
        return rows[0] if isinstance(texts, str) else rows


def _entry(probabilities: dict) -> dict:
    labels = list(probabilities)
    # In the model's label order (the pipeline ranks them): the probabilities compare as one vector.
    return {"label": max(labels, key=probabilities.__getitem__), "probabilities": dict(probabilities)}


def outcome(call: Callable[[], object]) -> dict:
    """What a user sees of a call: `{"output": ...}` or `{"error": type name, "message": text}`."""
    try:
        output = call()
    except Exception as error:  # the point: compare which exception each door raises
        return {"error": type(error).__name__, "message": str(error)}
    if isinstance(output, np.ndarray):
        output = output.tolist()
    return {"output": output}


def batch_local(message: str) -> str:
    """A text error's message with the index left out: sentence-transformers sorts and batches texts before the
    module sees them, so its index is within a batch (the type and the rest of the message are the engine's)."""
    return re.sub(r"`sentences\[\d+\]`", "`sentences[i]`", message)


# ---------------------------------------------------------------------------------------------------- the table


def texts_generator(texts):
    yield from texts


def input_table(texts: list[str], long_text: str, task: str) -> list[tuple[str, str, Callable[[], object], dict]]:
    """(case, method, sentences factory, kwargs): each case's input is built fresh per door (generators are one-shot).

    `doors` left out of a case's kwargs under the key `_doors` means every door that has the method.
    """
    return [
        ("texts", "both", lambda: list(texts), {}),
        ("one string", "both", lambda: texts[0], {}),
        ("a generator", "both", lambda: texts_generator(texts), {"_doors": ("model", "pipeline", "onnx")}),
        ("an iterator", "both", lambda: iter(texts), {"_doors": ("model", "pipeline", "onnx")}),
        ("an over-long text", "both", lambda: [long_text, texts[0]], {}),
        ("an empty string", "both", lambda: [texts[0], ""], {}),
        ("whitespace", "both", lambda: [texts[0], " \t\n"], {}),
        ("control characters only", "both", lambda: [texts[0], texts[1], "\x00\u200b"], {}),
        ("None", "both", lambda: [texts[0], None], {}),
        ("a number", "both", lambda: [5, texts[0]], {}),
        ("a bad text late in a generator", "both", lambda: texts_generator([*texts, "\u200b"]),
         {"_doors": ("model", "pipeline", "onnx")}),
        ("an empty list", "both", lambda: [], {"_doors": ("model", "pipeline", "onnx")}),
        ("None first in a generator", "both", lambda: texts_generator([None, *texts]),
         {"_doors": ("model", "pipeline", "onnx")}),
        ("calibrated='no'", "predict", lambda: list(texts), {"calibrated": "no", "_doors": ("model", "pipeline", "onnx")}),
        ("bytes", "both", lambda: b"text", {"_doors": ("model", "pipeline", "onnx")}),
        ("a dict", "both", lambda: {"text": "x"}, {"_doors": ("model", "pipeline", "onnx")}),
        ("an unknown task", "predict", lambda: list(texts), {"tasks": ["colour"]}),
        ("tasks=5", "predict", lambda: list(texts), {"tasks": 5}),
        ("one task", "predict", lambda: list(texts), {"tasks": task}),
        ("no task", "predict", lambda: list(texts), {"tasks": []}),
        ("chunk_size=1", "both", lambda: texts_generator(texts), {"chunk_size": 1, "_doors": ("model", "onnx")}),
        ("chunk_size=2", "both", lambda: list(texts), {"chunk_size": 2, "_doors": ("model", "onnx")}),
        ("chunk_size=0", "both", lambda: list(texts), {"chunk_size": 0, "_doors": ("model", "onnx")}),
        ("batch_size=0", "both", lambda: list(texts), {"batch_size": 0, "_doors": ("model", "pipeline", "onnx")}),
        ("batch_size=1", "both", lambda: list(texts), {"batch_size": 1}),
        ("max_length=4", "both", lambda: list(texts), {"max_length": 4, "_doors": ("model", "pipeline", "onnx")}),
        ("max_length=0", "both", lambda: list(texts), {"max_length": 0, "_doors": ("model", "pipeline", "onnx")}),
        ("max_length=10000", "both", lambda: list(texts), {"max_length": 10000, "_doors": ("model", "pipeline", "onnx")}),
        ("max_length=10000, streaming", "both", lambda: texts_generator(texts),
         {"max_length": 10000, "_doors": ("model", "pipeline", "onnx")}),
        ("normalize_embeddings", "encode", lambda: list(texts),
         {"normalize_embeddings": True, "_doors": ("model", "sentence-transformers", "onnx")}),
    ]  # fmt: skip


def run_table(doors: Doors, names, texts, long_text, task) -> dict:
    """`{case/method/door: outcome}` for every case of the table a door takes."""
    results = {}
    for case, method, make_input, kwargs in input_table(texts, long_text, task):
        kwargs = dict(kwargs)
        allowed = kwargs.pop("_doors", DOORS)
        for name in names:
            if name not in allowed:
                continue
            for which in ("encode", "predict") if method == "both" else (method,):
                if which == "predict" and name == "sentence-transformers":
                    continue
                run = getattr(doors, which)
                results[f"{case}/{which}/{name}"] = outcome(
                    lambda run=run, name=name, make_input=make_input, kwargs=kwargs: run(name, make_input(), **kwargs)
                )
    return results
