"""Serve a trained model folder or Hub id with the Gradio demo (what `python app.py` runs)."""

from __future__ import annotations

import os

from transformers import AutoTokenizer

from ..modeling_multitask_st import MultiTaskSTModel
from .corpus import default_search_corpus
from .demo import MultiTaskDemo, load_corpus


def build_demo(
    model_name_or_path: str | os.PathLike,
    revision: str | None = None,
    corpus: bool | str | os.PathLike | list = True,
) -> MultiTaskDemo:
    """Load the model with the installed package and embed the search corpus once.

    Args:
        model_name_or_path: a saved model folder or a Hub id.
        revision: the Hub revision (pin a commit hash).
        corpus: `True` for the default one (the default data's test snippets), a JSON file (a list of texts or of
            `{"text", "source"}`), a list of those, or `False` for none.
    """
    model = MultiTaskSTModel.from_pretrained(model_name_or_path, revision=revision)
    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, revision=revision)
    if corpus is True:
        texts = default_search_corpus()
    elif isinstance(corpus, (str, os.PathLike)):
        texts = load_corpus(corpus)
    else:
        texts = list(corpus or [])
    name = str(model_name_or_path).rstrip("/").split("/")[-1]
    return MultiTaskDemo(
        model, tokenizer, corpus=texts, title=name if "multitask-st" in name else f"multitask-st: {name}"
    )


def launch(demo: MultiTaskDemo, server_name: str = "127.0.0.1", server_port: int = 7860, **launch_kwargs):
    """Serve the demo (blocks until interrupted unless `prevent_thread_lock=True`): offline, no analytics, no share
    link, no server-side rendering."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    launch_kwargs = {"share": False, "ssr_mode": False, **launch_kwargs}
    return demo.build().launch(server_name=server_name, server_port=server_port, **launch_kwargs)
