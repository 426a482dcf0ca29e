"""`cache_frozen_layers`: the frozen bottom layers run once, before training, and each step runs the layers above
(`multitask_st/training/frozen_layers.py`)."""

import copy

import pytest
import torch
from conftest import TINY_TASKS, make_trainer, tiny_backbone_config

from multitask_st import MultiTaskSTConfig, MultiTaskSTModel
from multitask_st.training.collator import MultiTaskDataCollator
from multitask_st.training.frozen_layers import check_cached_route, forward_above, frozen_bottom_depth


def _model_with_dropout() -> MultiTaskSTModel:
    # dropout in the trainable layer: the cached run must keep it there (and draw the same masks) to train alike
    torch.manual_seed(0)
    config = MultiTaskSTConfig(
        backbone_config=tiny_backbone_config(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1),
        tasks=TINY_TASKS,
    )
    return MultiTaskSTModel(config).eval()


def _grad_modes(module) -> list[bool]:
    """Per forward of `module` from now on: whether it ran with autograd recording (a training step's forward)."""
    modes = []
    module.register_forward_hook(
        lambda *_: modes.append(torch.is_grad_enabled() and not torch.is_inference_mode_enabled())
    )
    return modes


@pytest.mark.parametrize("only_topic", [False, True], ids=["both-tasks", "sentiment-held"])
def test_a_cached_run_trains_as_the_uncached_run_without_running_the_frozen_layers(
    tmp_path, tiny_task_datasets, tiny_tokenizer, only_topic
):
    train, evaluation = tiny_task_datasets
    if only_topic:  # no sentiment data: its head is held by distillation from the teacher columns the pass fills
        train = {"topic": train["topic"], "sentiment": train["sentiment"].select([])}
    start = _model_with_dropout()
    freeze = ["backbone.embeddings", "backbone.layer.0"]
    results = {}
    for cache in (False, True):
        model = copy.deepcopy(start)
        bottom, top = _grad_modes(model.backbone_layers()[0]), _grad_modes(model.backbone_layers()[1])
        trainer = make_trainer(
            tmp_path / str(cache), model, (train, evaluation), tiny_tokenizer, freeze=freeze,
            frozen_parts_eval_mode=True, cache_frozen_layers=cache, max_steps=4, eval_strategy="no",
        )  # fmt: skip
        trainer.train()
        assert trainer.held_tasks == (["sentiment"] if only_topic else [])
        assert trainer.cached_depth == (1 if cache else 0)
        results[cache] = model
        assert top.count(True) == 4  # the layer above trained at every step either way
        assert bottom.count(True) == (0 if cache else 4)  # the frozen layer ran in no training step of the cached run
    uncached, cached = results[False].state_dict(), results[True].state_dict()
    assert any(not torch.equal(uncached[name], start.state_dict()[name]) for name in uncached)  # it trained
    for name, value in uncached.items():
        torch.testing.assert_close(cached[name], value, atol=2e-6, rtol=1e-5, msg=name)


def test_frozen_bottom_depth_counts_frozen_layers_from_the_bottom_over_frozen_embeddings():
    assert frozen_bottom_depth(["backbone.embeddings", "backbone.layer.0", "backbone.layer.1"], 6) == 2
    assert frozen_bottom_depth(["backbone.embeddings", "backbone.layer.1"], 6) == 0  # layer 0 trains
    assert frozen_bottom_depth(["backbone.layer.0", "backbone.layer.1"], 6) == 0  # the embeddings train
    assert frozen_bottom_depth(["backbone.embeddings", *(f"backbone.layer.{i}" for i in range(6))], 6) == 5


@pytest.mark.parametrize(
    ("freeze", "frozen"),
    [
        ([], "[]"),
        (["backbone.layer.0"], "['backbone.layer.0']"),
        (["backbone.embeddings", "backbone.layer.1"], "['backbone.embeddings', 'backbone.layer.1']"),
    ],
)
def test_a_cache_without_a_frozen_bottom_is_refused(
    tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer, freeze, frozen
):
    trainer = make_trainer(
        tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer, freeze=freeze, cache_frozen_layers=True
    )
    with pytest.raises(ValueError) as error:
        trainer.train()
    assert str(error.value) == (
        "cache_frozen_layers=True cannot apply: it needs the embeddings and at least the bottom layer frozen for the "
        "whole run (e.g. `freeze=['backbone.embeddings', 'backbone.layer.0']`); frozen all run now: " + frozen + "."
    )


def test_a_backbone_the_cache_cannot_resume_is_refused(tiny_model, tiny_tokenizer):
    batch = dict(tiny_tokenizer(["the movie rose", "a great film won the vote"], padding=True, return_tensors="pt"))
    with torch.inference_mode():
        hidden = tiny_model.backbone(**batch, output_hidden_states=True).hidden_states
    check_cached_route(tiny_model, {**batch, "frozen_hidden_states": hidden[1]}, depth=1)  # layer 0's output: resumes
    with pytest.raises(RuntimeError, match=r"BertModel backbone resumed at layer 1 from its cached hidden states gives "
                                           r"other embeddings than its full forward pass"):  # fmt: skip
        check_cached_route(tiny_model, {**batch, "frozen_hidden_states": hidden[0]}, depth=1)  # one layer short


def test_the_route_above_puts_the_backbone_back_even_on_error(tiny_model):
    layers, embeddings = tiny_model.backbone.encoder.layer, tiny_model.backbone.embeddings
    with pytest.raises(RuntimeError):
        forward_above(
            tiny_model, {"frozen_hidden_states": torch.zeros(1, 3, 5), "attention_mask": torch.ones(1, 3)}, 1
        )
    assert tiny_model.backbone.encoder.layer is layers and tiny_model.backbone.embeddings is embeddings


@pytest.mark.parametrize("side", ["right", "left"])
def test_the_collator_pads_the_cached_states_as_the_tokens(tiny_tokenizer, side):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.padding_side = side
    states = [torch.arange(6.0).reshape(3, 2).numpy(), torch.full((1, 2), 9.0).numpy()]
    features = [
        {"input_ids": [2, 5, 3], "frozen_hidden_states": states[0]},
        {"input_ids": [2], "frozen_hidden_states": states[1]},
    ]
    batch = MultiTaskDataCollator(tokenizer, num_tasks=2)(features)
    mask = batch["attention_mask"].bool()
    assert batch["frozen_hidden_states"].shape == (2, 3, 2)
    for row in range(2):
        assert torch.equal(batch["frozen_hidden_states"][row][mask[row]], torch.as_tensor(states[row]))
        assert not batch["frozen_hidden_states"][row][~mask[row]].any()


def test_a_distilbert_backbone_resumes_from_its_cache():
    # DistilBERT's model passes `inputs_embeds` to its embedding module by position, not by keyword as BERT does
    from transformers import DistilBertConfig

    torch.manual_seed(0)
    backbone = DistilBertConfig(
        vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=64
    )
    model = MultiTaskSTModel(MultiTaskSTConfig(backbone_config=backbone, tasks=TINY_TASKS)).eval()
    batch = {
        "input_ids": torch.tensor([[2, 5, 7, 3], [2, 9, 3, 0]]),
        "attention_mask": torch.tensor([[1] * 4, [1, 1, 1, 0]]),
    }
    with torch.inference_mode():
        hidden = model.backbone(**batch, output_hidden_states=True).hidden_states
    check_cached_route(model, {**batch, "frozen_hidden_states": hidden[1]}, depth=1)
    with pytest.raises(RuntimeError, match=r"DistilBertModel backbone resumed at layer 1"):
        check_cached_route(model, {**batch, "frozen_hidden_states": hidden[0]}, depth=1)
