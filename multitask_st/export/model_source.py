"""The model folder an export reads: its tokenizer, checked usable and the model's own before anything is exported.

`AutoTokenizer` builds a tokenizer from a `tokenizer_config.json` alone (no `tokenizer.json`, no `vocab.txt`): a few
special tokens, every word `[UNK]`. An export made with it would check its graph against the PyTorch model on the same
`[UNK]`s and agree with itself, so both exporters load the tokenizer through `load_model_tokenizer`.
"""

from __future__ import annotations

import os
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from ..configuration_multitask_st import MultiTaskSTConfig
from ..inference_multitask_st import vocabulary_fingerprint


def load_model_tokenizer(
    model_dir: str | os.PathLike, config: MultiTaskSTConfig, revision: str | None = None
) -> PreTrainedTokenizerBase:
    """The tokenizer saved with the model; a `ValueError` naming the folder and what is missing or wrong otherwise.

    Args:
        model_dir: A model folder (its vocabulary file must be there) or a Hub repository id.
        config: The model's config: a recorded `tokenizer_fingerprint` must match the tokenizer's vocabulary.
        revision: For a Hub repository id.
    """
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, revision=revision)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"{model_dir} has no usable tokenizer ({error}). Save the model's tokenizer into it: "
            "`tokenizer.save_pretrained(model_dir)`."
        ) from error
    folder = Path(model_dir)
    vocabularies = sorted(set(tokenizer.vocab_files_names.values()))
    if folder.is_dir() and not any((folder / name).is_file() for name in vocabularies):
        raise ValueError(
            f"{folder} has no usable tokenizer: none of {', '.join(vocabularies)} (the vocabulary "
            f"{type(tokenizer).__name__} reads) is there, so every word would become {tokenizer.unk_token!r}. Save "
            "the model's tokenizer into it: `tokenizer.save_pretrained(model_dir)`."
        )
    expected = config.tokenizer_fingerprint
    found = vocabulary_fingerprint(tokenizer.get_vocab()) if expected else None
    if found != expected:
        raise ValueError(
            f"The tokenizer in {model_dir} is not the one the model was trained with: its vocabulary fingerprint is "
            f"{found}, config.json's `tokenizer_fingerprint` is {expected}. Save the model's own tokenizer into it."
        )
    return tokenizer
