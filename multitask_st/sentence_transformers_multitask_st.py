"""The `SentenceTransformer` door of a multitask-st model: a sentence-transformers module that wraps the whole model.

This file is part of the Hub payload: `save_pretrained` copies it next to the weights and writes a `modules.json`
naming its class, so that `SentenceTransformer("org/multitask-st", trust_remote_code=True).encode(texts)` gives
`model.encode(texts, tokenizer)`'s vectors, whatever the pooling and projection. Only sentence-transformers (>= 6)
imports it; its import of sentence-transformers sits in a `try` block, which transformers' remote-code loader does not
require, so loading the model with `AutoModel` never needs sentence-transformers. It loads the model through
`AutoModel` and checks texts with the inference engine, so it imports no other payload file back (no import circle).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel

from .inference_multitask_st import check_texts, tokenize


try:
    from sentence_transformers.base.modules import InputModule
except ImportError as error:
    raise ImportError(
        "The SentenceTransformer door of a multitask-st model needs sentence-transformers 6 or newer: "
        "`pip install -U 'sentence-transformers>=6'`."
    ) from error


class MultiTaskSTSentenceEncoder(InputModule):
    """Tokenizer + the multitask-st model (encoder, pooling, projection) as sentence-transformers' one input module.

    `forward` writes `sentence_embedding`, exactly what `MultiTaskSTModel.encode` returns (normalised as the model's
    config says; `SentenceTransformer.encode(normalize_embeddings=True)` normalises on top, as for any model).
    """

    config_file_name = "sentence_bert_config.json"
    config_keys = ["max_seq_length"]
    save_in_root = True

    def __init__(self, model: PreTrainedModel, tokenizer, max_seq_length: int | None = None):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self._max_seq_length = max_seq_length

    @property
    def max_seq_length(self) -> int:
        return self._max_seq_length or self.model.default_max_length(self.tokenizer)

    @max_seq_length.setter
    def max_seq_length(self, value: int | None):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"`max_seq_length` must be a positive integer or None, got {value!r}.")
        self._max_seq_length = value

    def get_config_dict(self) -> dict[str, Any]:
        return {"max_seq_length": self._max_seq_length}

    def get_embedding_dimension(self) -> int:
        return self.model.config.embedding_dim

    def preprocess(self, inputs: list[str], prompt: str | None = None, **kwargs) -> dict[str, torch.Tensor]:
        texts = list(inputs)
        check_texts(texts)  # the engine's rule, as `encode`: strings with content (indices are within the batch)
        if prompt:
            texts = self._prepend_prompt(texts, prompt)
        return tokenize(self.tokenizer, texts, self.max_seq_length, padding=True, return_tensors="pt")

    def forward(self, features: dict[str, torch.Tensor], **kwargs) -> dict[str, torch.Tensor]:
        features["sentence_embedding"] = self.model.embed(
            features["input_ids"], features.get("attention_mask"), features.get("token_type_ids")
        )
        return features

    def on_model_ready(self, model) -> None:
        # sentence-transformers sorts texts by characters before batching; `MultiTaskSTModel.encode` sorts by tokens,
        # which pads 17-20% fewer positions on short texts (BENCHMARKS.md). Sorting this model's inputs the same way
        # keeps the door as fast as `encode`; the vectors do not depend on the batching either way.
        if hasattr(model, "_input_length"):
            model._input_length = self._token_count

    def _token_count(self, text) -> int:
        if not isinstance(text, str):
            return len(text) if hasattr(text, "__len__") else 0
        return len(tokenize(self.tokenizer, text, self.max_seq_length)["input_ids"])

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.model.save_pretrained(output_path, safe_serialization=safe_serialization)
        self.tokenizer.save_pretrained(output_path)
        self.save_config(output_path)

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        subfolder: str = "",
        token: bool | str | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        model_kwargs: dict | None = None,
        processor_kwargs: dict | None = None,
        config_kwargs: dict | None = None,
        **kwargs,
    ) -> MultiTaskSTSentenceEncoder:
        hub_kwargs = {
            "token": token,
            "cache_dir": cache_folder,
            "revision": revision,
            "local_files_only": local_files_only,
        }
        if subfolder:
            hub_kwargs["subfolder"] = subfolder
        # sentence-transformers runs this module only when the user trusted the folder's code: the model is its code.
        model_kwargs = {"trust_remote_code": True, **(model_kwargs or {})}
        model = AutoModel.from_pretrained(model_name_or_path, **hub_kwargs, **model_kwargs).eval()
        # `config=`: AutoTokenizer would otherwise read config.json, see our `auto_map` and ask to run remote code.
        tokenizer = AutoTokenizer.from_pretrained(
            model_name_or_path, config=model.config, **hub_kwargs, **(processor_kwargs or {})
        )
        config = cls.load_config(
            model_name_or_path,
            subfolder=subfolder,
            token=token,
            cache_folder=cache_folder,
            revision=revision,
            local_files_only=local_files_only,
        )
        return cls(model, tokenizer, max_seq_length=config.get("max_seq_length"))
