"""A Gradio demo of a multitask-st model: classify a text with every head, compare sentences, search a small corpus.

This file is self-contained (gradio, matplotlib, numpy, torch, transformers and the standard library): the Space that
`push_to_hub.py --space` stages carries a copy of it next to its `app.py`, and the model comes from the Hub with
`trust_remote_code=True`, so the Space needs no multitask-st install. Locally, `python app.py [model]` serves it.

    demo = MultiTaskDemo(model, tokenizer, corpus=[{"text": "...", "source": "..."}])
    demo.build().launch()
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import numpy as np
from transformers import AutoModel, AutoTokenizer


# The kinds of task (`config.task_kinds`; `configuration_multitask_st.TASK_KINDS`), named here because this file travels
# to the Space without the package; `tests/test_app.py` checks they are the config's.
SINGLE_LABEL, MULTI_LABEL, REGRESSION = "classification", "multi_label", "regression"
KIND_ALIASES = {"single_label_classification": SINGLE_LABEL, "multi_label_classification": MULTI_LABEL}


# Longer inputs are refused with a message: the model reads only its first `max_seq_length` tokens anyway, and a
# huge text would keep a 2-core Space busy for nothing.
MAX_TEXT_CHARS = 10_000
MAX_COMPARE_SENTENCES = 30
TOP_K = 5
CORPUS_FILE = "corpus.json"
# The kinds of task that take a pair of texts (the model's `inference_multitask_st.PAIR_KINDS`; this file imports
# nothing of the package): they get the Pair tab, the others the Classify tab.
PAIR_KINDS = ("pair_classification", "pair_regression", "embedding", "embedding_contrastive")
EXAMPLE_PAIRS = [
    ["A man is playing a guitar.", "Someone is playing an instrument."],
    ["The striker scored twice.", "Shares fell sharply after the results."],
]

EXAMPLE_TEXTS = [
    "Shares in the carmaker fell sharply after profits missed forecasts.",
    "A moving, beautifully acted film that stays with you.",
    "The striker scored twice as the champions won the cup final.",
]
EXAMPLE_COMPARE = (
    "The striker scored twice as the champions won the cup final.\n"
    "The team won the match with two late goals.\n"
    "Shares fell sharply after the results.\n"
    "The central bank raised interest rates again."
)


def load_model(name_or_path: str, revision: str | None = None, trust_remote_code: bool = True):
    """`(model, tokenizer)` from a model folder or Hub id; the model's own code comes with it (remote code)."""
    model = AutoModel.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
    # The tokenizer reads config.json too, whose `auto_map` makes transformers ask about remote code unless told.
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
    return model.eval(), tokenizer


CORPUS_FORMAT = 'a JSON list of texts or of {"text": ..., "source": ...} objects'


def load_corpus(path: str | os.PathLike) -> list[dict]:
    """A search corpus saved as JSON: a list of `{"text": ..., "source": ...}` (or plain strings); a `ValueError`
    naming the file and the bad entry otherwise."""
    try:
        corpus = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(
            f"The corpus file {str(path)!r} is not UTF-8 text ({error}); expected {CORPUS_FORMAT}."
        ) from None
    except json.JSONDecodeError as error:
        raise ValueError(
            f"The corpus file {str(path)!r} is not valid JSON ({error}); expected {CORPUS_FORMAT}."
        ) from None
    if not isinstance(corpus, list):
        kind = {dict: "an object", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(corpus), "a number"
        )
        raise ValueError(f"The corpus file {str(path)!r} holds {kind}, not a list; expected {CORPUS_FORMAT}.")
    try:
        return normalize_corpus(corpus)
    except (TypeError, ValueError) as error:
        raise ValueError(f"The corpus file {str(path)!r}: {error}") from None


def normalize_corpus(corpus: Iterable[str | Mapping]) -> list[dict]:
    """`[{"text", "source"}]` from texts or such mappings; a `TypeError`/`ValueError` naming the bad entry by index."""
    if isinstance(corpus, (str, bytes, Mapping)):  # iterating these gives characters or keys, never texts
        raise TypeError(
            f"A corpus is a list of texts or of {{'text', 'source'}} mappings, not a {type(corpus).__name__}."
        )
    entries = []
    for index, item in enumerate(corpus):
        if isinstance(item, str):
            item = {"text": item}
        if not isinstance(item, Mapping):
            raise TypeError(
                f"corpus[{index}] is {item!r} ({type(item).__name__}); expected a text or a {{'text', 'source'}} mapping."
            )
        unknown = sorted(set(item) - {"text", "source"})
        text, source = item.get("text"), item.get("source", "")
        if unknown:
            raise ValueError(f"corpus[{index}] has keys {unknown} besides 'text' and 'source': {dict(item)!r}.")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"corpus[{index}] needs a non-empty string `text`; got {dict(item)!r}.")
        if not isinstance(source, str):
            raise ValueError(f"corpus[{index}] has a `source` that is not a string: {dict(item)!r}.")
        entries.append({"text": text, "source": source})
    return entries


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def _check_text(text: str | None, what: str = "text") -> str:
    """The stripped text, or a `gr.Error` (shown in the page) saying what is wrong with it."""
    text = (text or "").strip()
    if not text:
        raise gr.Error(f"The {what} is empty: type a sentence first.")
    if len(text) > MAX_TEXT_CHARS:
        raise gr.Error(
            f"The {what} has {len(text):,} characters; this demo takes at most {MAX_TEXT_CHARS:,} "
            "(the model reads only its first few hundred tokens anyway)."
        )
    return text


@contextmanager
def _shown_in_page():
    """The model's own message for a text it refuses (e.g. only control characters), in the page instead of
    Gradio's generic "Error"."""
    try:
        yield
    except (TypeError, ValueError) as error:
        raise gr.Error(str(error)) from error


class MultiTaskDemo:
    """The three tabs of the demo around one loaded model.

    Args:
        model: a multitask-st model (with `encode`, `predict` and `config.tasks`).
        tokenizer: its tokenizer.
        corpus: texts for the Search tab (strings or `{"text", "source"}` dicts), embedded once here.
        title: shown at the top of the page.
    """

    def __init__(self, model, tokenizer, corpus: Iterable[str | Mapping] = (), title: str = "multitask-st"):
        self.model, self.tokenizer, self.title = model.eval(), tokenizer, title
        self.tasks: dict[str, list[str]] = dict(model.config.tasks)
        # a model folder's own code (trust_remote_code) may predate kinds: every task is then a classification one
        kinds = getattr(model.config, "task_kinds", None) or {}
        self.kinds = {task: KIND_ALIASES.get(kinds.get(task), kinds.get(task, SINGLE_LABEL)) for task in self.tasks}
        # Pair tasks (the Pair tab: a box for each text) apart from the single-text ones (Classify, Search).
        self.pair_tasks = {task: labels for task, labels in self.tasks.items() if self.kinds[task] in PAIR_KINDS}
        self.tasks = {task: labels for task, labels in self.tasks.items() if task not in self.pair_tasks}
        self.corpus = normalize_corpus(corpus)
        self.corpus_embeddings = None
        if self.corpus:  # once, with a progress bar: the start-up cost of the Search tab
            self.corpus_embeddings = self._encode([entry["text"] for entry in self.corpus], show_progress_bar=True)

    def _encode(self, texts: list[str], show_progress_bar: bool = False) -> np.ndarray:
        return self.model.encode(
            texts, self.tokenizer, batch_size=64, normalize_embeddings=True, show_progress_bar=show_progress_bar
        )

    # ------------------------------------------------------------------ the three actions (plain Python, testable)

    def classify(self, text: str | None) -> list:
        """Each head's answer, in head order, as its output component shows it: `{label: probability}` for a
        classification head (a `gr.Label`), `[(label, probability), ...]` chips of the labels given for a multi-label
        head (a `gr.HighlightedText`; one grey chip saying so when none reaches its threshold), and the named values
        for a regression head (Markdown)."""
        with _shown_in_page():
            prediction = self.model.predict(_check_text(text), self.tokenizer)
        return [HEAD_VIEWS[self.kinds[task]](prediction[task]) for task in self.tasks]

    def compare(self, text: str | None):
        """A heatmap (matplotlib Figure) of the cosine similarities of the sentences, one per line of `text`."""
        sentences = [line.strip() for line in (text or "").splitlines() if line.strip()]
        if len(sentences) < 2:
            raise gr.Error(f"Compare needs at least 2 sentences, one per line; got {len(sentences)}.")
        if len(sentences) > MAX_COMPARE_SENTENCES:
            raise gr.Error(
                f"Got {len(sentences)} sentences; the heatmap takes at most {MAX_COMPARE_SENTENCES} (one per line)."
            )
        for number, sentence in enumerate(sentences, start=1):
            _check_text(sentence, what=f"sentence on line {number}")
        with _shown_in_page():
            embeddings = self._encode(sentences)
        return similarity_heatmap(embeddings @ embeddings.T, sentences)

    def search(self, query: str | None, top_k: int = TOP_K) -> list[list]:
        """The `top_k` corpus texts nearest to the query: rows of rank, cosine, text, source, then one column per head."""
        query = _check_text(query, what="query")
        if self.corpus_embeddings is None:
            raise gr.Error("This demo has no search corpus.")
        with _shown_in_page():
            scores = self.corpus_embeddings @ self._encode([query])[0]
        best = np.argsort(-scores, kind="stable")[:top_k]
        hits = [self.corpus[index] for index in best]
        predictions = self.model.predict([hit["text"] for hit in hits], self.tokenizer)
        return [
            [
                rank,
                round(float(scores[index]), 3),
                hit["text"],
                hit["source"],
                *(short_prediction(prediction[task]) for task in self.tasks),
            ]
            for rank, (index, hit, prediction) in enumerate(zip(best, hits, predictions, strict=True), start=1)
        ]

    # ------------------------------------------------------------------ the page

    def pair(self, text: str | None, text_pair: str | None) -> list:
        """Per pair task, in task order: `{label: probability}` for a pair classifier, else its value (a regression
        output, or the cosine similarity of the two texts' embeddings for an embedding task)."""
        pair = (_check_text(text, what="first text"), _check_text(text_pair, what="second text"))
        with _shown_in_page():
            prediction = self.model.predict(pair, self.tokenizer)
        return [
            prediction[task]["probabilities"] if "probabilities" in prediction[task]
            else round(next(iter(prediction[task]["values"].values())), 4)
            for task in self.pair_tasks
        ]  # fmt: skip

    def _pair_tab(self):
        with gr.Tab("Pair", id="pair"):
            gr.Markdown("Tasks over a pair of texts: each text is embedded once, as for search.")
            with gr.Row():
                first = gr.Textbox(label="Text", lines=2, elem_id="pair-text")
                second = gr.Textbox(label="Text pair", lines=2, elem_id="pair-text-pair")
            pair_button = gr.Button("Run", variant="primary", elem_id="pair-button")
            with gr.Row():
                outputs = [
                    gr.Label(label=f"{task}", num_top_classes=len(labels), elem_id=f"pair-{task}")
                    if self.kinds[task] == "pair_classification"
                    else gr.Number(label=f"{task}: {labels[0]}", elem_id=f"pair-{task}")
                    for task, labels in self.pair_tasks.items()
                ]
            gr.Examples(EXAMPLE_PAIRS, inputs=[first, second])
            pair_button.click(self.pair_outputs, inputs=[first, second], outputs=outputs)

    def pair_outputs(self, text: str | None, text_pair: str | None):
        values = self.pair(text, text_pair)
        return values[0] if len(values) == 1 else tuple(values)

    def build(self) -> gr.Blocks:
        heads = ", ".join(
            f"`{task}` ({describe_head(self.kinds[task], labels)})" for task, labels in self.tasks.items()
        )
        with gr.Blocks(title=self.title, analytics_enabled=False) as blocks:
            pairs = ", ".join(f"`{task}` ({self.kinds[task]})" for task in self.pair_tasks)
            gr.Markdown(
                f"# {self.title}\nOne sentence encoder with a head per task: {heads}."
                + (f" Tasks over a pair of texts: {pairs}." if pairs else "")
                + self._calibration_note()
            )
            with gr.Tab("Classify", id="classify"):
                text = gr.Textbox(label="Text", lines=3, placeholder="Type a sentence…", elem_id="classify-text")
                classify_button = gr.Button("Classify", variant="primary", elem_id="classify-button")
                with gr.Row():
                    outputs = [head_output(task, self.kinds[task], labels) for task, labels in self.tasks.items()]
                gr.Examples([[example] for example in EXAMPLE_TEXTS], inputs=text)
                for trigger in (classify_button.click, text.submit):
                    trigger(self.classify_outputs, inputs=text, outputs=outputs)
            if self.pair_tasks:
                self._pair_tab()
            with gr.Tab("Compare", id="compare"):
                sentences = gr.Textbox(
                    label=f"Sentences, one per line (2 to {MAX_COMPARE_SENTENCES})",
                    lines=6,
                    value=EXAMPLE_COMPARE,
                    elem_id="compare-text",
                )
                compare_button = gr.Button("Compare", variant="primary", elem_id="compare-button")
                heatmap = gr.Plot(label="Cosine similarity", format="png", elem_id="compare-plot")
                compare_button.click(self.compare, inputs=sentences, outputs=heatmap)
            with gr.Tab("Search", id="search"):
                gr.Markdown(f"Nearest of {len(self.corpus):,} built-in texts, by cosine similarity of the embeddings.")
                query = gr.Textbox(label="Query", placeholder="What are you looking for?", elem_id="search-text")
                search_button = gr.Button("Search", variant="primary", elem_id="search-button")
                results = gr.Dataframe(
                    headers=["rank", "cosine", "text", "source", *self.tasks],
                    datatype=["number", "number", "str", "str", *(["str"] * len(self.tasks))],
                    label="Nearest texts (with each head's prediction)",
                    column_widths=["7%", "9%", "44%", "18%", *[f"{22 / len(self.tasks):.0f}%"] * len(self.tasks)],
                    wrap=True,
                    interactive=False,
                    elem_id="search-results",
                )
                for trigger in (search_button.click, query.submit):
                    trigger(self.search, inputs=query, outputs=results)
        return blocks

    def _calibration_note(self) -> str:
        """Which heads' probabilities are calibrated (the model's `predict` applies the temperatures)."""
        calibration = getattr(self.model.config, "task_calibration", None) or {}
        calibrated = [f"`{task}`" for task in self.tasks if "temperature" in calibration.get(task, {})]
        if not calibrated:
            return " Probabilities are the heads' raw softmax (not calibrated)."
        return (
            f" Probabilities of {', '.join(calibrated)} are calibrated (one temperature per head, fitted on the "
            "validation split): read them as confidence on text like the training data."
        )

    def classify_outputs(self, text: str | None):
        probabilities = self.classify(text)
        return probabilities[0] if len(probabilities) == 1 else tuple(probabilities)


NO_LABEL = "no label reaches its threshold"

# Per kind of task: a `predict` entry -> what its Classify-tab component shows.
HEAD_VIEWS = {
    SINGLE_LABEL: lambda entry: entry["probabilities"],
    MULTI_LABEL: lambda entry: [(label, f"{score:.2f}") for label, score in zip(entry["labels"], entry["scores"],
                                                                             strict=True)] or [(NO_LABEL, None)],
    REGRESSION: lambda entry: "  \n".join(f"**{name}**: {value:.4g}" for name, value in entry["values"].items()),
}  # fmt: skip


def head_output(task: str, kind: str, labels: list[str]):
    """The Classify tab's output component of one head, by its kind."""
    if kind == MULTI_LABEL:
        return gr.HighlightedText(label=f"{task} (labels given)", show_legend=False, elem_id=f"head-{task}")
    if kind == REGRESSION:
        return gr.Markdown(label=task, elem_id=f"head-{task}")
    return gr.Label(label=f"{task}", num_top_classes=len(labels), elem_id=f"head-{task}")


def describe_head(kind: str, labels: list[str]) -> str:
    if kind == REGRESSION:
        return "values: " + ", ".join(labels)
    return f"{len(labels)} labels" + (", any number per text" if kind == MULTI_LABEL else "")


def short_prediction(entry: dict) -> str:
    """One head's prediction in a table cell, whatever its kind."""
    if "values" in entry:
        return ", ".join(f"{name} {value:.3g}" for name, value in entry["values"].items())
    if "labels" in entry:
        return ", ".join(f"{label} ({score:.2f})" for label, score in zip(entry["labels"], entry["scores"],
                                                                          strict=True)) or "(none)"  # fmt: skip
    return f"{entry['label']} ({entry['score']:.2f})"


def similarity_heatmap(similarity: np.ndarray, sentences: list[str]):
    """A labelled heatmap of a (n, n) similarity matrix; the sentences (shortened) label both axes."""
    from matplotlib.figure import Figure

    size = len(sentences)
    labels = [f"{number}. {_short(sentence, 40)}" for number, sentence in enumerate(sentences, start=1)]
    side = min(4.0 + 0.45 * size, 14.0)
    figure = Figure(figsize=(side + 3.0, side), dpi=100, layout="constrained")
    axis = figure.subplots()
    # aspect="auto": the axes take the room the labels leave (a square aspect lets long labels fall off the canvas)
    image = axis.imshow(similarity, cmap="viridis", vmin=min(0.0, float(similarity.min())), vmax=1.0, aspect="auto")
    figure.colorbar(image, ax=axis, label="cosine similarity")
    axis.set_xticks(range(size), labels=[str(number) for number in range(1, size + 1)])
    axis.set_yticks(range(size), labels=labels)
    if size <= 12:
        for row in range(size):
            for column in range(size):
                value = similarity[row, column]
                color = "black" if value > 0.6 else "white"
                axis.text(column, row, f"{value:.2f}", ha="center", va="center", color=color, fontsize="small")
    axis.set(title="Cosine similarity of the sentence embeddings", xlabel="sentence number")
    return figure


def main(model: str | None = None, revision: str | None = None, corpus_file: str | None = None, **launch_kwargs):
    """Serve a model: what a Space's `app.py` calls (the model id and pinned revision are written there)."""
    model = model or os.environ.get("MULTITASK_ST_MODEL")
    if not model:
        raise SystemExit("Pass a model folder or Hub id (or set MULTITASK_ST_MODEL).")
    loaded, tokenizer = load_model(model, revision=revision)
    corpus = load_corpus(corpus_file) if corpus_file and Path(corpus_file).is_file() else []
    print(f"Loaded {model}; embedding the search corpus ({len(corpus)} texts).", flush=True)
    demo = MultiTaskDemo(loaded, tokenizer, corpus=corpus, title=model.rstrip("/").split("/")[-1])
    demo.build().launch(**launch_kwargs)
