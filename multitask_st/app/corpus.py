"""The demo's default search corpus: the test snippets of the default data (BBC News and Rotten Tomatoes)."""

from __future__ import annotations

import random

from transformers.utils import logging

from ..data.corpora import bbc_news, rotten_tomatoes


logger = logging.get_logger(__name__)


SNIPPET_CHARS = 300
MAX_REVIEWS = 400


def _snippet(text: str, width: int = SNIPPET_CHARS) -> str:
    """A BBC article's headline and first paragraph (the part worth showing as a search hit), at most `width` chars."""
    paragraphs = [" ".join(part.split()) for part in text.split("\n\n") if part.strip()]
    snippet = ": ".join(paragraphs[:2])
    if len(snippet) <= width:
        return snippet
    return snippet[: width - 1].rsplit(" ", 1)[0] + "…"


def default_search_corpus(max_reviews: int = MAX_REVIEWS, seed: int = 0) -> list[dict]:
    """`[{"text", "source"}]`: every BBC News test article (headline + first paragraph) and `max_reviews` Rotten
    Tomatoes test snippets (seeded sample), with their gold label in `source`, each text once; `[]` when the data
    packages are missing.

    The test splits are the ones `train.py` holds out with the same seed, so no hit was seen in training.
    """
    try:
        articles, reviews = bbc_news(seed=seed)["test"], rotten_tomatoes(seed=seed)["test"]
    except FileNotFoundError as error:
        logger.warning(f"No built-in search corpus: {error}")
        return []
    corpus = []
    names = articles.features["label"].names
    for text, label in zip(articles["text"], articles["label"], strict=True):
        corpus.append({"text": _snippet(text), "source": f"BBC News · {names[label]}"})
    names, texts, labels = reviews.features["label"].names, reviews["text"], reviews["label"]
    for row in sorted(random.Random(seed).sample(range(len(texts)), min(max_reviews, len(texts)))):
        corpus.append({"text": texts[row], "source": f"Rotten Tomatoes · {names[labels[row]]}"})
    # Two versions of one story can share their headline and first paragraph: keep one hit for each snippet.
    unique = {entry["text"]: entry for entry in reversed(corpus)}
    return [entry for entry in corpus if unique[entry["text"]] is entry]
