"""The `pipeline()` door of a multitask-st model: every head (and the embedding) from one forward pass.

This file is part of the Hub payload: `save_pretrained` copies it next to the weights and declares it under
`custom_pipelines` in config.json, so that

    pipeline(model="org/multitask-st", trust_remote_code=True)(["A text.", "Another."])

works without our package. It imports only torch, transformers and the payload files next to it, and formats the rows
the model's own `predict` computes (`MultiTaskSTModel.score_chunks` / `score_batch`, the engine's `label_rows`): one
implementation of the numbers and of the checks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from transformers import Pipeline, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .inference_multitask_st import (  # noqa: F401  (PIPELINE_*, custom_pipelines_entry: named here for readers)
    DEFAULT_BATCH_SIZE,
    MULTI_LABEL,
    PAIR_KINDS,
    PIPELINE_CLASS_REF,
    PIPELINE_TASK,
    REGRESSION,
    SINGLE_LABEL,
    check_input_tasks,
    check_max_length,
    check_positive_int,
    check_sentences,
    check_tasks,
    check_texts,
    custom_pipelines_entry,
    peek_pairs,
    tokenize,
)
from .layers_multitask_st import check_inference_dtype, inference_precision
from .scores_multitask_st import label_rows, resolve_calibration


EMBEDDING_KEY = "embedding"


class MultiTaskSTPipeline(Pipeline):
    r"""Classifies texts with every head of a multitask-st model (or the heads in `tasks`) from one forward pass.

    Returns, for one text, `{task: {"label": name, "score": probability}}` (a multi-label task: `{"labels": [names],
    "scores": [probabilities]}`, the labels at or above their thresholds; a regression task: `{"values": {output:
    number}}`) and a list of those for a list of texts. The numbers are `model.predict`'s.

    Args (at construction or per call):
        tasks (`str` or `list[str]`, *optional*): only these heads.
        top_k (`int` or `None`, *optional*, defaults to 1): with 1, one `{"label", "score"}` per task; otherwise a
            list of the `top_k` best labels per task, best first (`None`: every label), whatever the thresholds of a
            multi-label task (a regression task gives its values either way).
        thresholds (*optional*): a multi-label task's thresholds for this call, as `model.predict` takes them.
        return_embedding (`bool`, *optional*, defaults to `False`): add the sentence embedding (as `encode` gives it)
            under `"embedding"`, from the same forward pass.
        max_length (`int`, *optional*): tokens kept per text; defaults to the model's.
        dtype (`torch.dtype` or `str`, *optional*, per call): run the forward pass in this precision under autocast
            (`torch.bfloat16`), the weights left as loaded: `predict(..., dtype=...)`'s numbers. (`pipeline(...,
            dtype=...)` at construction is transformers' own: the precision the weights are loaded in.)
        calibrated (`bool`, *optional*, defaults to `True`): scores from the temperatures fitted after training
            (`config.task_calibration`), as `predict` gives them; `False`: the raw softmax.
        batch_size (`int`, *optional*, defaults to 32).

    Example:
        >>> from transformers import pipeline
        >>> classifier = pipeline(model="org/multitask-st", trust_remote_code=True)  # doctest: +SKIP
        >>> classifier("Shares fell sharply after the results.")  # doctest: +SKIP
        {'topic': {'label': 'business', 'score': 0.97}, 'sentiment': {'label': 'negative', 'score': 0.88}}
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def _sanitize_parameters(
        self,
        tasks=None,
        top_k=1,
        return_embedding=None,
        max_length=None,
        thresholds=None,
        dtype=None,
        calibrated=None,
        **kwargs,
    ):
        if kwargs:
            raise TypeError(
                f"Unexpected argument(s) {sorted(kwargs)}; this pipeline takes `tasks`, `top_k`, `return_embedding`, "
                "`max_length`, `thresholds`, `dtype`, `calibrated`, `batch_size` and `num_workers`."
            )
        preprocess, forward, postprocess = {}, {}, {}
        if thresholds is not None:
            config = self.model.config
            resolve_calibration(config.task_calibration, config.tasks, config.task_kinds, thresholds)  # checked now
            postprocess["thresholds"] = thresholds
        if dtype is not None:
            forward["dtype"] = check_inference_dtype(dtype)
        if max_length is not None:  # checked here, as `predict` checks it: 0 or 10000 is an error, not the default
            preprocess["max_length"] = check_max_length(max_length, None, self.model.position_limit())
        if tasks is not None:
            forward["tasks"] = postprocess["tasks"] = check_tasks(tasks, self.model.config.task_names)
        if return_embedding is not None:
            if not isinstance(return_embedding, bool):
                raise TypeError(f"`return_embedding` must be True or False, got {return_embedding!r}.")
            if return_embedding and EMBEDDING_KEY in self.model.config.tasks:
                raise ValueError(f"A task is named {EMBEDDING_KEY!r}, so `return_embedding=True` would overwrite it.")
            forward["return_embedding"] = postprocess["return_embedding"] = return_embedding
        if calibrated is not None:
            self.model.task_temperatures(self.model.config.task_names, calibrated)  # checks it
            forward["calibrated"] = calibrated
        if top_k != 1:
            if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
                raise ValueError(f"`top_k` must be a positive integer or None (every label), got {top_k!r}.")
            postprocess["top_k"] = top_k
        return preprocess, forward, postprocess

    def __call__(self, inputs, **kwargs):
        """Texts in, predictions out. A string or a list of strings goes through the model's own length-sorted
        batching (what `predict` runs); any other iterable (a generator, an iterator, a `datasets` column) streams
        through the standard pipeline loop, one result per text as it comes, checked by the same rule."""
        batch_size = kwargs.pop("batch_size", None)
        batch_size = self._batch_size or DEFAULT_BATCH_SIZE if batch_size is None else batch_size
        check_positive_int("batch_size", batch_size)
        inputs = _pair_dicts_as_tuples(inputs)
        pairs = False
        if not isinstance(inputs, (str, list, tuple)):
            if not isinstance(inputs, torch.utils.data.Dataset):  # the pipeline loop streams only generators
                _, pairs, inputs = peek_pairs(check_sentences(inputs))
                inputs = inputs if pairs else _checked_texts(inputs)
            if not pairs:  # pairs go through the model's batching below, lazily a chunk at a time all the same
                return super().__call__(inputs, batch_size=batch_size, **kwargs)
        kwargs.pop("num_workers", None)
        preprocess, forward, postprocess = self._sanitize_parameters(**kwargs)
        preprocess = {**self._preprocess_params, **preprocess}
        forward = {**self._forward_params, **forward}
        postprocess = {**self._postprocess_params, **postprocess}
        single, pairs, inputs = peek_pairs(inputs)
        tasks = check_input_tasks(forward.get("tasks"), self.model.config.task_kinds, pairs)
        return_embedding = forward.get("return_embedding", False)
        if return_embedding and pairs:
            raise ValueError("`return_embedding=True` takes single texts; embed each text of a pair with them.")
        chunks = self.model.score_chunks(
            inputs, self.tokenizer, tasks, return_embedding, forward.get("calibrated", True), batch_size=batch_size,
            max_length=preprocess.get("max_length"), show_progress_bar=False, dtype=forward.get("dtype"),
        )  # fmt: skip
        top_k, thresholds = postprocess.get("top_k", 1), postprocess.get("thresholds")
        results = [
            result for rows in chunks for result in self._format(rows, tasks, top_k, return_embedding, thresholds)
        ]
        return results[0] if single else results

    def preprocess(self, text, max_length=None):
        check_texts([text])
        max_length = max_length or self.model.default_max_length(self.tokenizer)
        return tokenize(self.tokenizer, text, max_length, return_tensors="pt")

    def _forward(self, model_inputs, tasks=None, return_embedding=False, dtype=None, calibrated=True):
        tasks = check_input_tasks(tasks, self.model.config.task_kinds, pairs=False)
        with inference_precision(self.model.device, dtype):
            rows = self.model.score_batch(dict(model_inputs), tasks, return_embedding, calibrated)
        return {"rows": rows}

    def postprocess(self, model_outputs, tasks=None, top_k=1, return_embedding=False, thresholds=None):
        rows = model_outputs["rows"].float().cpu().reshape(1, -1).numpy()
        tasks = check_input_tasks(tasks, self.model.config.task_kinds, pairs=False)
        return self._format(rows, tasks, top_k, return_embedding, thresholds)[0]

    def _format(
        self, rows, tasks: list[str], top_k: int | None, return_embedding: bool, thresholds=None
    ) -> list[dict]:
        config = self.model.config
        num_labels = sum(len(config.tasks[task]) for task in tasks)
        calibration = resolve_calibration(config.task_calibration, config.tasks, config.task_kinds, thresholds)
        predictions = label_rows(rows[:, :num_labels], config.tasks, tasks, config.task_kinds, calibration)
        results = [
            {task: _ranked(prediction[task], top_k, config.task_kinds[task]) for task in tasks}
            for prediction in predictions
        ]
        if return_embedding:
            for result, embedding in zip(results, rows[:, num_labels:].tolist(), strict=True):
                result[EMBEDDING_KEY] = embedding
        return results


def _checked_texts(texts) -> Iterator[str]:
    """The texts of any iterable, one by one, each checked by the engine's rule and named by its index."""
    for index, text in enumerate(texts):
        check_texts([text], offset=index)
        yield text


def _pair_dicts_as_tuples(inputs):
    """`{"text": ..., "text_pair": ...}` (the stock text-classification pipeline's pair), or a list of them, as
    `(text, text_pair)` tuples, the form `predict` takes."""

    def as_tuple(item):
        if isinstance(item, Mapping) and set(item) == {"text", "text_pair"}:
            return (item["text"], item["text_pair"])
        # Any other dict goes on as it is, so the pipeline refuses it with the same error as every other door.
        return item

    if isinstance(inputs, Mapping):
        return as_tuple(inputs)
    if isinstance(inputs, list) and inputs and isinstance(inputs[0], Mapping):
        return [as_tuple(item) for item in inputs]
    return inputs


def _ranked(prediction: Mapping, top_k: int | None, kind: str = SINGLE_LABEL) -> dict | list[dict]:
    """One task's `predict` entry in the pipeline's shape: `{"label", "score"}` (multi-label: `{"labels",
    "scores"}`; regression: `{"values"}`), or the `top_k` best labels, best first."""
    if "values" in prediction:  # regression, pair regression, embedding tasks
        return {"values": prediction["values"]}
    if top_k == 1 and kind == MULTI_LABEL:
        return {"labels": prediction["labels"], "scores": prediction["scores"]}
    if top_k == 1:
        return {"label": prediction["label"], "score": prediction["score"]}
    ranked = sorted(prediction["probabilities"].items(), key=lambda item: item[1], reverse=True)
    return [{"label": label, "score": score} for label, score in ranked[:top_k]]


HEAD_VIEW_MODEL_TYPE = "multitask-st-head-view"


def _declare_sequence_classifier():
    """List the view among the sequence classifiers the stock text-classification pipeline checks for, so it does not
    log an error naming every supported class (the check is by class name and only ever logs)."""
    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES
    except ImportError:  # another transformers layout: the pipeline works anyway, with the log line
        return
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES.setdefault(HEAD_VIEW_MODEL_TYPE, MultiTaskSTHeadView.__name__)


class MultiTaskSTHeadView(PreTrainedModel):
    """One head of a multitask-st model seen as an ordinary sequence classifier, for the stock pipelines.

    It shares every weight with the model it views (nothing is copied), runs the encoder and that head only, and
    returns `SequenceClassifierOutput(logits=...)` with the head's `id2label`, so that
    `pipeline("text-classification", model=model.head_view("sentiment"), tokenizer=tokenizer)` works unchanged,
    `top_k` and `function_to_apply` included. Build it with `MultiTaskSTModel.head_view(task)`. Its logits are the
    head's divided by the head's fitted temperature (`calibrated=False`: as the head gives them), so the pipeline's
    softmax gives `predict`'s probabilities. A multi-label head's view gives each label's probability (the stock
    pipeline's sigmoid) without the tuned thresholds `predict` applies; a regression head's gives its values. A pair
    or embedding task has no view: it takes two texts.
    """

    config_class = PretrainedConfig
    base_model_prefix = "multitask_model"
    main_input_name = "input_ids"

    def __init__(self, multitask_model: PreTrainedModel, task: str, calibrated: bool = True):
        labels = multitask_model.config.labels_of(task)
        kind = multitask_model.config.task_kinds[task]
        if kind in PAIR_KINDS:
            raise ValueError(
                f"Task {task!r} ({kind}) takes pairs of texts, and a stock pipeline gives its model one text per "
                "input: use the model's own pipeline (`pipeline(model=folder, trust_remote_code=True)`, pairs as "
                "tuples) or `predict` with `(text, text_pair)` tuples."
            )
        config = PretrainedConfig(
            id2label=dict(enumerate(labels)),
            label2id={label: index for index, label in enumerate(labels)},
            # transformers' names: the stock pipeline applies softmax, sigmoid or nothing accordingly
            problem_type={SINGLE_LABEL: "single_label_classification", MULTI_LABEL: "multi_label_classification"}.get(
                kind, "regression"
            ),
            pad_token_id=multitask_model.config.pad_token_id,
        )
        config.model_type = HEAD_VIEW_MODEL_TYPE
        config.task = task
        super().__init__(config)
        _declare_sequence_classifier()
        self.multitask_model = multitask_model  # a submodule: its parameters are the view's, shared
        self.task = task
        self.calibrated = calibrated
        multitask_model.task_temperatures([task], calibrated)  # checks it
        # No `post_init()`: it would initialise weights, and every weight here is the viewed model's, trained.

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        output = self.multitask_model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, tasks=[self.task]
        )
        # The temperature is read at each call: a model calibrated after the view was made is seen calibrated.
        (temperature,) = self.multitask_model.task_temperatures([self.task], self.calibrated)
        return SequenceClassifierOutput(logits=output.logits[self.task] / temperature)
