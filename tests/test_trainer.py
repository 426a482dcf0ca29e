import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_trainer, run_torchrun, tiny_config, training_args
from transformers import TrainerCallback

from multitask_st import MultiTaskSTModel
from multitask_st.training.callbacks import UnfreezingCallback, unfreezing_stages
from multitask_st.training.distillation import similarity_distillation_loss
from multitask_st.training.parameter_groups import build_parameter_groups, learning_rate_scale
from multitask_st.training.trainer import MultiTaskTrainer


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {name: parameter.detach().clone() for name, parameter in model.named_parameters()}


def _changed_parts(model, before) -> set[str]:
    changed = set()
    for part, named in model.parameter_parts().items():
        if any(not torch.equal(parameter, before[name]) for name, parameter in named):
            changed.add(part)
    return changed


# ---------------------------------------------------------------- parameter groups


def test_every_parameter_in_exactly_one_group_with_configured_learning_rates(tiny_model):
    groups = build_parameter_groups(
        tiny_model, learning_rate=1e-4, weight_decay=0.01, layer_decay=0.5, projection_lr_multiplier=2.0,
        head_lr_multiplier=3.0,
    )  # fmt: skip
    grouped = [id(p) for group in groups for p in group["params"]]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) == {id(p) for p in tiny_model.parameters()}
    lr = {group["name"]: group["lr"] for group in groups}
    # 2 layers: top layer 1 at 1x, layer 0 at 0.5x, embeddings at 0.25x
    assert lr["backbone.layer.1"] == pytest.approx(1e-4)
    assert lr["backbone.layer.0"] == pytest.approx(0.5e-4)
    assert lr["backbone.embeddings"] == pytest.approx(0.25e-4)
    assert lr["projection"] == pytest.approx(2e-4)
    assert lr["head:topic"] == lr["head:sentiment"] == pytest.approx(3e-4)
    for group in groups:
        no_decay = group["name"].endswith(".no_decay")
        assert group["weight_decay"] == (0.0 if no_decay else 0.01)
        assert all((p.dim() < 2) == no_decay for p in group["params"])


def test_frozen_parameters_are_still_grouped(tiny_model):
    tiny_model.freeze("backbone")
    grouped = {id(p) for group in build_parameter_groups(tiny_model, 1e-4) for p in group["params"]}
    assert grouped == {id(p) for p in tiny_model.parameters()}


def test_default_multipliers_give_1x_2x_3x():
    assert learning_rate_scale("backbone.layer.3", 6, 1.0, 2.0, 3.0) == 1.0
    assert learning_rate_scale("backbone.embeddings", 6, 1.0, 2.0, 3.0) == 1.0
    assert learning_rate_scale("pooling", 6, 1.0, 2.0, 3.0) == 2.0
    assert learning_rate_scale("head:x", 6, 1.0, 2.0, 3.0) == 3.0


def test_trainer_optimizer_uses_the_groups(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer):
    trainer = make_trainer(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer, layer_decay=0.5)
    optimizer = trainer.create_optimizer()
    names = [group["name"] for group in optimizer.param_groups]
    assert "backbone.layer.0" in names and "head:topic.no_decay" in names
    counted = sum(len(group["params"]) for group in optimizer.param_groups)
    assert counted == len(list(tiny_model.parameters()))


# ---------------------------------------------------------------- freezing


@pytest.mark.parametrize(
    "freeze, expected_frozen",
    [
        (["backbone"], {"backbone.embeddings", "backbone.layer.0", "backbone.layer.1"}),
        (["head:topic"], {"head:topic"}),
        (["backbone.layer.0", "projection"], {"backbone.layer.0", "projection"}),
        ([], set()),
    ],
)
def test_frozen_parts_stay_bit_identical_and_the_rest_changes(
    tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer, freeze, expected_frozen
):
    before = _snapshot(tiny_model)
    trainer = make_trainer(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer, freeze=freeze)
    trainer.train()
    all_parts = set(tiny_model.parameter_parts())
    assert _changed_parts(tiny_model, before) == all_parts - expected_frozen


def test_parts_frozen_on_the_model_before_training_stay_frozen(
    tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer
):
    tiny_model.freeze("heads")
    before = _snapshot(tiny_model)
    make_trainer(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer).train()
    changed = _changed_parts(tiny_model, before)
    assert not any(part.startswith("head:") for part in changed)
    assert "backbone.layer.1" in changed


def test_everything_frozen_refuses_to_train_but_evaluates(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer):
    trainer = make_trainer(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer, freeze=["all"])
    with pytest.raises(ValueError, match="Every part of the model is frozen"):
        trainer.train()
    metrics = trainer.evaluate()
    assert "eval_topic_accuracy" in metrics and np.isfinite(metrics["eval_loss"])


def test_unknown_freeze_target_is_a_clear_error(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer):
    with pytest.raises(ValueError, match="head:nope"):
        make_trainer(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer, freeze=["head:nope"])


def test_unfreezing_stages_top_down():
    parts = ["backbone.embeddings", "backbone.layer.0", "backbone.layer.1", "pooling", "projection", "head:a"]
    assert unfreezing_stages(parts) == [
        ["head:a"], ["pooling", "projection"], ["backbone.layer.1"], ["backbone.layer.0"], ["backbone.embeddings"],
    ]  # fmt: skip
    assert unfreezing_stages(parts, layers_per_stage=2)[2] == ["backbone.layer.1", "backbone.layer.0"]


def test_unfreezing_stages_put_the_backbones_other_parameters_with_its_top_layer():
    # A backbone with parameters outside its layers (a final norm, say: BERT without its pooler has none) unfreezes
    # them with its top layer, or alone when it has no layers.
    parts = ["backbone.embeddings", "backbone.layer.0", "backbone.layer.1", "backbone.other", "projection", "head:a"]
    assert unfreezing_stages(parts) == [
        ["head:a"], ["projection"], ["backbone.other", "backbone.layer.1"], ["backbone.layer.0"],
        ["backbone.embeddings"],
    ]  # fmt: skip
    assert unfreezing_stages(parts, layers_per_stage=2) == [
        ["head:a"], ["projection"], ["backbone.other", "backbone.layer.1", "backbone.layer.0"], ["backbone.embeddings"],
    ]  # fmt: skip
    assert unfreezing_stages(["backbone.other", "head:a"]) == [["head:a"], ["backbone.other"]]


def test_what_a_freezing_schedule_freezes_anything_means():
    # DDP must wrap a model with every part trainable when some part is frozen now but may train later.
    parts = ["backbone.layer.0", "head:a"]
    assert UnfreezingCallback(parts, schedule="progressive").freezes_anything is True
    assert UnfreezingCallback(parts, frozen=["head:a"]).freezes_anything is True
    assert UnfreezingCallback(parts).freezes_anything is False
    assert UnfreezingCallback(parts, schedule="progressive").stages == [["head:a"], ["backbone.layer.0"]]
    assert UnfreezingCallback(parts).stages == []
    layers = ["backbone.layer.0", "backbone.layer.1", "backbone.layer.2", "head:a"]
    assert UnfreezingCallback(layers, schedule="progressive", layers_per_stage=2).stages == [
        ["head:a"], ["backbone.layer.2", "backbone.layer.1"], ["backbone.layer.0"],
    ]  # fmt: skip


def test_a_run_resumed_in_a_later_epoch_starts_in_that_epochs_stage(tiny_model):
    from transformers import TrainerControl, TrainerState

    parts = list(tiny_model.parameter_parts())
    unfreezing = UnfreezingCallback(parts, schedule="progressive", every=1, unit="epoch")
    state = TrainerState(global_step=16, epoch=2.0)  # 8 steps an epoch: two epochs done
    unfreezing.on_train_begin(None, state, TrainerControl(), model=tiny_model)
    assert unfreezing.stage == 2
    trainable = {part for part, named in tiny_model.parameter_parts().items() if named[0][1].requires_grad}
    assert trainable == set(unfreezing.trainable_parts(2)) == {
        "head:topic", "head:sentiment", "projection", "backbone.layer.1",
    }  # fmt: skip


class _ChangesPerStep(TrainerCallback):
    """Records, for every optimizer step, the unfreezing stage and which parts changed."""

    def __init__(self, unfreezing: UnfreezingCallback):
        self.unfreezing, self.steps, self.stage_at_train_begin = unfreezing, [], None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.stage_at_train_begin = self.unfreezing.stage
        self.requires_grad_at_train_begin = {n: p.requires_grad for n, p in model.named_parameters()}

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self.before = _snapshot(model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.steps.append((self.unfreezing.stage, _changed_parts(model, self.before)))


def test_progressive_unfreezing_trains_exactly_the_unlocked_parts_at_each_stage(
    tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer
):
    trainer = make_trainer(
        tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer, max_steps=6, unfreeze_schedule="progressive",
        unfreeze_every=1, unfreeze_unit="step", freeze=["head:sentiment"],
    )  # fmt: skip
    recorder = _ChangesPerStep(trainer.unfreezing)
    trainer.add_callback(recorder)
    trainer.train()
    stages = [stage for stage, _ in recorder.steps]
    assert stages == [0, 1, 2, 3, 4, 4]  # heads, projection, layer 1, layer 0, embeddings (last stage holds)
    for stage, changed in recorder.steps:
        assert changed == set(trainer.unfreezing.trainable_parts(stage))
        assert "head:sentiment" not in changed
    assert recorder.steps[-1][1] == set(tiny_model.parameter_parts()) - {"head:sentiment"}


def _modes_in_training_forwards(model) -> list[dict[str, bool]]:
    """Per training forward pass: whether the embeddings, each backbone layer and the heads ran in train mode."""
    watched = {"backbone.embeddings": model.backbone.embeddings}
    watched.update({f"backbone.layer.{i}": layer for i, layer in enumerate(model.backbone_layers())})
    watched.update({f"head:{task}": head for task, head in model.heads.items()})
    passes = []

    def record(module, inputs, output):
        if model.training:  # Trainer's evaluation forwards are not training steps
            if module is watched["backbone.embeddings"]:
                passes.append({})
            passes[-1][next(name for name, watched_module in watched.items() if watched_module is module)] = (
                module.training
            )

    for module in watched.values():
        module.register_forward_hook(record)
    return passes


@pytest.mark.parametrize("eval_mode", [True, False])
def test_frozen_parts_run_in_eval_mode_only_when_asked_and_follow_the_unfreezing_stages(
    tmp_path, tiny_task_datasets, tiny_tokenizer, eval_mode
):
    from conftest import tiny_backbone_config

    torch.manual_seed(0)
    model = MultiTaskSTModel(
        tiny_config().__class__(
            backbone_config=tiny_backbone_config(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3),
            tasks=tiny_config().tasks,
        )
    ).eval()
    trainer = make_trainer(
        tmp_path, model, tiny_task_datasets, tiny_tokenizer, max_steps=5, unfreeze_schedule="progressive",
        unfreeze_every=1, unfreeze_unit="step", freeze=["backbone.embeddings"], frozen_parts_eval_mode=eval_mode,
        embedding_distillation_weight=0.0,  # no teacher pass: every forward here is a training step's
    )  # fmt: skip
    passes = _modes_in_training_forwards(model)
    trainer.train()
    # stages: heads, projection, layer 1, layer 0, embeddings (frozen all run: its stage adds nothing)
    trains = [
        {"backbone.layer.1": False, "backbone.layer.0": False},
        {"backbone.layer.1": False, "backbone.layer.0": False},
        {"backbone.layer.1": True, "backbone.layer.0": False},
        {"backbone.layer.1": True, "backbone.layer.0": True},
        {"backbone.layer.1": True, "backbone.layer.0": True},
    ]
    assert len(passes) == 5
    for modes, trained in zip(passes, trains, strict=True):
        expected = {"backbone.embeddings": not eval_mode, "head:topic": True, "head:sentiment": True}
        expected.update({layer: trains_now or not eval_mode for layer, trains_now in trained.items()})
        assert modes == expected


def test_frozen_modules_are_the_outermost_modules_that_train_nothing(tiny_model):
    from multitask_st.parts_multitask_st import frozen_modules

    assert frozen_modules(tiny_model) == []
    tiny_model.freeze("backbone.embeddings", "backbone.layer.0", "head:topic")
    assert frozen_modules(tiny_model) == [
        tiny_model.backbone.embeddings, tiny_model.backbone_layers()[0], tiny_model.heads["topic"]
    ]  # fmt: skip
    query = tiny_model.backbone_layers()[1].attention.self.query
    query.weight.requires_grad_(False)
    assert query not in frozen_modules(tiny_model)  # its bias still trains
    query.bias.requires_grad_(False)  # a module inside a part
    assert query in frozen_modules(tiny_model)
    assert tiny_model.backbone_layers()[1] not in frozen_modules(tiny_model)
    tiny_model.freeze("all")
    assert frozen_modules(tiny_model) == [child for child in tiny_model.children() if list(child.parameters())]


def test_resume_mid_schedule_restores_the_stage(tmp_path, tiny_task_datasets, tiny_tokenizer):
    torch.manual_seed(0)
    schedule = dict(unfreeze_schedule="progressive", unfreeze_every=1, unfreeze_unit="step")
    first = make_trainer(
        tmp_path, MultiTaskSTModel(tiny_config()), tiny_task_datasets, tiny_tokenizer, max_steps=2,
        save_strategy="steps", save_steps=2, **schedule,
    )  # fmt: skip
    first.train()
    checkpoint = tmp_path / "out" / "checkpoint-2"
    assert checkpoint.is_dir()

    second = make_trainer(
        tmp_path, MultiTaskSTModel(tiny_config()), tiny_task_datasets, tiny_tokenizer, max_steps=4, **schedule
    )
    recorder = _ChangesPerStep(second.unfreezing)
    second.add_callback(recorder)
    second.train(resume_from_checkpoint=str(checkpoint))
    assert recorder.stage_at_train_begin == 2
    trainable = set(second.unfreezing.trainable_parts(2))
    for part, named in second.model.parameter_parts().items():
        assert all(recorder.requires_grad_at_train_begin[name] == (part in trainable) for name, _ in named)
    assert [stage for stage, _ in recorder.steps] == [2, 3]


@pytest.mark.parametrize(
    ("change", "difference"),
    [
        (
            {"tasks": {"topic": ["world", "sports", "business"], "mood": ["negative", "positive"]}},
            "tasks: checkpoint {'topic': ['world', 'sports', 'business'], 'sentiment': ['negative', 'positive']}, "
            "this run {'topic': ['world', 'sports', 'business'], 'mood': ['negative', 'positive']}",
        ),
        (
            {"tasks": {"topic": ["world", "sports", "business"], "sentiment": ["bad", "good"]}},
            "tasks: checkpoint {'topic': ['world', 'sports', 'business'], 'sentiment': ['negative', 'positive']}, "
            "this run {'topic': ['world', 'sports', 'business'], 'sentiment': ['bad', 'good']}",
        ),
        ({"tasks": {"topic": ["world", "sports", "business"]}}, "tasks: checkpoint {'topic'"),
        ({"pooling_mode": "cls", "projection": "mlp"}, "pooling_mode: checkpoint 'mean', this run 'cls'; projection"),
    ],
)
def test_resuming_a_checkpoint_of_another_model_is_refused_before_any_step(
    tmp_path, tiny_task_datasets, tiny_tokenizer, change, difference
):
    torch.manual_seed(0)
    first = make_trainer(
        tmp_path, MultiTaskSTModel(tiny_config()), tiny_task_datasets, tiny_tokenizer, max_steps=1,
        save_strategy="steps", save_steps=1,
    )  # fmt: skip
    first.train()
    checkpoint = tmp_path / "out" / "checkpoint-1"
    model = MultiTaskSTModel(tiny_config(**change))
    by_position = list(tiny_task_datasets[0].values())
    datasets_ = ({task: by_position[i] for i, task in enumerate(model.config.tasks)}, None)
    second = make_trainer(tmp_path, model, datasets_, tiny_tokenizer, max_steps=2)
    with pytest.raises(ValueError) as refused:
        second.train(resume_from_checkpoint=str(checkpoint))
    assert str(refused.value).startswith(
        f"Cannot resume from {str(checkpoint)!r}: it was trained for another model than this run builds ("
    )
    assert difference in str(refused.value)
    assert second.state.global_step == 0


# ---------------------------------------------------------------- loss, logging, evaluation


def test_per_task_losses_are_logged_in_training(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer):
    trainer = make_trainer(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logged and all("topic_loss" in entry and "sentiment_loss" in entry for entry in logged)


def test_evaluate_with_single_task_batches_gives_per_task_metrics(
    tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer
):
    trainer = make_trainer(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer)
    metrics = trainer.evaluate()  # 8 topic then 8 sentiment rows, eval batch 8: every batch holds one task

    _, evaluation = tiny_task_datasets
    batch_losses = []
    for task_id, (task, dataset) in enumerate(evaluation.items()):
        batch = trainer.data_collator([{**row, "task_id": task_id} for row in dataset])
        with torch.no_grad():
            output = tiny_model(**batch)
        predictions = output.logits[task].argmax(-1)
        expected_accuracy = (predictions == torch.tensor(dataset["label"])).float().mean().item()
        assert metrics[f"eval_{task}_accuracy"] == pytest.approx(expected_accuracy)
        assert metrics[f"eval_{task}_loss"] == pytest.approx(output.task_losses[task].item(), abs=1e-4)
        assert 0.0 <= metrics[f"eval_{task}_f1"] <= 1.0
        batch_losses.append(output.loss.item())
    assert metrics["eval_loss"] == pytest.approx(np.mean(batch_losses), rel=1e-5)
    assert metrics["eval_mean_accuracy"] == pytest.approx(
        (metrics["eval_topic_accuracy"] + metrics["eval_sentiment_accuracy"]) / 2
    )


def test_stsb_spearman_reported_when_given(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer):
    import datasets

    pairs = datasets.Dataset.from_dict(
        {
            "sentence1": ["the movie", "a team won", "stock market rose", "the phone", "bad film"],
            "sentence2": ["the film", "the election", "market fell", "phone launch", "great movie"],
            "score": [4.5, 0.5, 2.5, 3.0, 1.0],
        }
    )
    train, evaluation = tiny_task_datasets
    trainer = MultiTaskTrainer(
        model=tiny_model, args=training_args(tmp_path, stsb_eval_pairs=3), train_dataset=train, eval_dataset=evaluation,
        processing_class=tiny_tokenizer, stsb_dataset=pairs,
    )  # fmt: skip
    assert len(trainer.stsb_dataset) == 3
    metrics = trainer.evaluate()
    assert -1.0 <= metrics["eval_stsb_spearman"] <= 1.0


def test_task_loss_weights_from_args_reach_the_model(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer):
    make_trainer(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer, task_loss_weights='{"topic": 0.25}')
    assert tiny_model.config.task_loss_weights == {"topic": 0.25, "sentiment": 1.0}


def test_bad_training_arguments(tmp_path):
    with pytest.raises(ValueError, match="sampling_strategy"):
        training_args(tmp_path, sampling_strategy="random")
    with pytest.raises(ValueError, match="layer_decay"):
        training_args(tmp_path, layer_decay=0)


@pytest.mark.parametrize("pooling_mode", ["mean", "cls", "max", "attention"])
def test_bf16_training_step_on_cpu(tmp_path, tiny_task_datasets, tiny_tokenizer, pooling_mode):
    torch.manual_seed(0)
    tiny_model = MultiTaskSTModel(tiny_config(pooling_mode=pooling_mode))
    before = _snapshot(tiny_model)
    trainer = make_trainer(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer, bf16=True, max_steps=2)
    output = trainer.train()
    assert np.isfinite(output.training_loss)
    assert _changed_parts(tiny_model, before) == set(tiny_model.parameter_parts())


# ---------------------------------------------------------------- multi-process

_DDP_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    sys.path.insert(0, {tests_dir!r})
    from conftest import tiny_config, make_task_dataset
    from transformers import BertTokenizerFast
    from multitask_st import MultiTaskSTModel
    from multitask_st.training.trainer import MultiTaskTrainer
    from multitask_st.training.training_args import MultiTaskTrainingArguments

    out = sys.argv[1]
    tokenizer = BertTokenizerFast.from_pretrained(out + "/tokenizer")
    torch.manual_seed(0)
    model = MultiTaskSTModel(tiny_config())
    train = {{"topic": make_task_dataset(tokenizer, 32, 3, 1), "sentiment": make_task_dataset(tokenizer, 32, 2, 2)}}
    args = MultiTaskTrainingArguments(
        output_dir=out + "/run", per_device_train_batch_size=4, max_steps=4, report_to=[],
        save_strategy="no", disable_tqdm=True, learning_rate=1e-3, weight_decay=0.01, freeze=["backbone.layer.0"],
        unfreeze_schedule="progressive", unfreeze_every=1, unfreeze_unit="step", sampling_strategy="round_robin",
    )  # no `use_cpu`: launched as 2 processes on a machine without a GPU, the arguments turn it on (DDP over gloo)
    trainer = MultiTaskTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    trainer.train()
    if trainer.is_world_process_zero():
        trainer.save_model(out + "/model")
        json.dump({{"world_size": args.world_size, "steps": trainer.state.global_step}}, open(out + "/info.json", "w"))
    """
)


@pytest.mark.slow
def test_two_process_data_parallel_run_on_cpu(tmp_path, tiny_tokenizer):
    tiny_tokenizer.save_pretrained(tmp_path / "tokenizer")
    script = tmp_path / "ddp_train.py"
    script.write_text(_DDP_SCRIPT.format(tests_dir=str(Path(__file__).parent)))
    result = run_torchrun(str(script), str(tmp_path), retry_dir=tmp_path / "run")
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads((tmp_path / "info.json").read_text())
    assert info == {"world_size": 2, "steps": 4}
    run = json.loads((tmp_path / "model" / "training_summary.json").read_text())["run"]
    assert run["world_size"] == 2 and run["distributed_type"] == "MULTI_CPU"
    assert run["processes"] == [
        {"rank": rank, "local_rank": rank, "node": 0, "device": "cpu", "device_name": "cpu"} for rank in (0, 1)
    ]

    torch.manual_seed(0)
    initial = MultiTaskSTModel(tiny_config())
    trained = MultiTaskSTModel.from_pretrained(tmp_path / "model")
    initial_params = dict(initial.named_parameters())
    for part, named in trained.parameter_parts().items():
        same = all(torch.equal(parameter, initial_params[name]) for name, parameter in named)
        # layer 0 frozen all run; the embeddings are unlocked only at stage 4, after the 4 steps; all else trained
        assert same == (part in {"backbone.layer.0", "backbone.embeddings"}), part


# ---------------------------------------------------------------- values the trainer really uses


def test_optimizer_groups_get_the_configured_multipliers_and_layer_decay(
    tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer
):
    # Non-default values, so a trainer that ignored any of them (and used the 1x/2x/3x defaults) shows.
    trainer = make_trainer(
        tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer, learning_rate=1e-3, layer_decay=0.5,
        projection_lr_multiplier=2.5, head_lr_multiplier=4.0,
    )  # fmt: skip
    optimizer = trainer.create_optimizer()
    expected_scale = {
        "backbone.embeddings": 0.25,  # decay^L, L = 2 layers
        "backbone.layer.0": 0.5,  # decay^(L-1-0)
        "backbone.layer.1": 1.0,  # the top layer trains at the base rate
        "projection": 2.5,
        "head:topic": 4.0,
        "head:sentiment": 4.0,
    }
    seen = set()
    for group in optimizer.param_groups:
        part = group["name"].removesuffix(".no_decay")
        assert group["lr"] == pytest.approx(1e-3 * expected_scale[part]), group["name"]
        seen.add(part)
    assert seen == set(expected_scale) == set(tiny_model.parameter_parts())


def test_default_optimizer_groups_are_1x_2x_3x(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer):
    trainer = make_trainer(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer, learning_rate=1e-3)
    lr = {group["name"]: group["lr"] for group in trainer.create_optimizer().param_groups}
    assert lr["backbone.embeddings"] == lr["backbone.layer.0"] == lr["backbone.layer.1"] == pytest.approx(1e-3)
    assert lr["projection"] == pytest.approx(2e-3)
    assert lr["head:topic"] == lr["head:sentiment.no_decay"] == pytest.approx(3e-3)


def test_logged_task_losses_are_means_over_labelled_examples_of_mixed_batches(
    tmp_path, tiny_task_datasets, tiny_tokenizer
):
    """With learning rate 0 the model stays as it is, so each logged task loss can be recomputed from the batches
    the trainer drew: the mean over the window's labelled examples, not the mean of per-batch means."""
    torch.manual_seed(0)
    model = MultiTaskSTModel(tiny_config(head_dropout=0.0))
    trainer = make_trainer(
        tmp_path, model, tiny_task_datasets, tiny_tokenizer, learning_rate=0.0, weight_decay=0.0, max_steps=3,
        logging_steps=3, sampling_strategy="proportional", mixed_task_batches=True, embedding_distillation_weight=0,
    )  # fmt: skip
    batches = []
    collate = trainer.data_collator

    def recording_collator(features):
        batch = collate(features)
        batches.append({key: value.clone() for key, value in batch.items()})
        return batch

    trainer.data_collator = recording_collator
    trainer.train()
    logged = next(entry for entry in trainer.state.log_history if "topic_loss" in entry)
    model.eval()
    for column, task in enumerate(model.config.task_names):
        sums, counts, means = 0.0, 0, []
        for batch in batches[:3]:  # the three training steps (the loader may have fetched one batch more)
            labelled = int((batch["labels"][:, column] != -100).sum())
            if not labelled:
                continue
            with torch.no_grad():
                loss = model(**batch).task_losses[task].item()
            sums, counts = sums + loss * labelled, counts + labelled
            means.append(loss)
        assert logged[f"{task}_loss"] == pytest.approx(sums / counts, rel=1e-5)
        assert abs(sums / counts - np.mean(means)) > 1e-4  # the batches hold different numbers of the task


def _padding_and_task_mix(trainer) -> tuple[int, list[float]]:
    """Total padding tokens of one epoch of the trainer's training batches and each batch's share of topic rows."""
    padding, topic_share = 0, []
    for batch in trainer.get_train_dataloader():
        padding += int((batch["attention_mask"] == 0).sum())
        topic_share.append(float((batch["labels"][:, 0] != -100).float().mean()))
    return padding, topic_share


@pytest.fixture
def skewed_task_datasets(tiny_tokenizer):
    """600 topic examples and 60 sentiment ones: the sampling strategies give clearly different mixes."""
    from conftest import make_task_dataset

    train = {
        "topic": make_task_dataset(tiny_tokenizer, 600, 3, seed=5),
        "sentiment": make_task_dataset(tiny_tokenizer, 60, 2, seed=6),
    }
    return train, None


# Configured probability of a topic example: proportional 600/660; temperature 2: sqrt(600)/(sqrt(600)+sqrt(60));
# round robin 1/2. The realised share over one epoch must be within TOLERANCE of it: with single-task batches of 4
# an epoch draws ~165 batches, whose topic share has a standard deviation of at most sqrt(0.25/165) = 0.039;
# 0.1 is about 2.5 of those and well under the 0.15 between the strategies' probabilities.
TOLERANCE = 0.1


@pytest.mark.parametrize(
    "strategy, temperature, expected",
    [
        ("proportional", 1.0, 600 / 660),
        ("temperature", 2.0, 600**0.5 / (600**0.5 + 60**0.5)),
        ("round_robin", 1.0, 0.5),
    ],
)
@pytest.mark.parametrize("mixed", [True, False])
def test_trainer_batches_follow_the_configured_task_mix(
    tmp_path, tiny_model, skewed_task_datasets, tiny_tokenizer, strategy, temperature, expected, mixed
):
    trainer = make_trainer(
        tmp_path, tiny_model, skewed_task_datasets, tiny_tokenizer, per_device_train_batch_size=4,
        sampling_strategy=strategy, sampling_temperature=temperature, mixed_task_batches=mixed,
    )  # fmt: skip
    _, shares = _padding_and_task_mix(trainer)
    assert np.mean(shares) == pytest.approx(expected, abs=TOLERANCE)
    if not mixed:  # every batch holds one task
        assert set(shares) <= {0.0, 1.0}
    else:
        assert any(0.0 < share < 1.0 for share in shares)


def test_trainer_groups_batches_by_length_when_asked(tmp_path, tiny_model, skewed_task_datasets, tiny_tokenizer):
    plain, _ = _padding_and_task_mix(
        make_trainer(tmp_path, tiny_model, skewed_task_datasets, tiny_tokenizer, sampling_strategy="proportional")
    )
    grouped, _ = _padding_and_task_mix(
        make_trainer(
            tmp_path,
            tiny_model,
            skewed_task_datasets,
            tiny_tokenizer,
            sampling_strategy="proportional",
            train_sampling_strategy="group_by_length",
        )  # fmt: skip
    )
    assert grouped < plain / 3


def test_unfreezing_by_epoch_changes_stage_at_each_epoch(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer):
    # 24 + 40 examples in batches of 8: 8 steps per epoch
    trainer = make_trainer(
        tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer, max_steps=-1, num_train_epochs=3,
        unfreeze_schedule="progressive", unfreeze_every=1, unfreeze_unit="epoch", sampling_strategy="proportional",
    )  # fmt: skip
    recorder = _ChangesPerStep(trainer.unfreezing)
    trainer.add_callback(recorder)
    trainer.train()
    assert [stage for stage, _ in recorder.steps] == [0] * 8 + [1] * 8 + [2] * 8
    for stage, changed in recorder.steps:
        assert changed <= set(trainer.unfreezing.trainable_parts(stage))
    assert {part for _, changed in recorder.steps[16:] for part in changed} == {
        "head:topic", "head:sentiment", "projection", "backbone.layer.1",
    }  # fmt: skip


def test_fp16_training_step_on_cpu(tmp_path, tiny_task_datasets, tiny_tokenizer):
    torch.manual_seed(0)
    tiny_model = MultiTaskSTModel(tiny_config())
    before = _snapshot(tiny_model)
    trainer = make_trainer(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer, fp16=True, max_steps=2)
    assert trainer.accelerator.mixed_precision == "fp16"
    output = trainer.train()
    assert np.isfinite(output.training_loss)
    assert _changed_parts(tiny_model, before) == set(tiny_model.parameter_parts())


def test_build_parameter_groups_defaults_are_1x_2x_3x_without_decay(tiny_model):
    groups = {group["name"]: group for group in build_parameter_groups(tiny_model, learning_rate=1e-3)}
    assert groups["backbone.embeddings"]["lr"] == groups["backbone.layer.0"]["lr"] == pytest.approx(1e-3)
    assert groups["projection"]["lr"] == pytest.approx(2e-3) and groups["head:topic"]["lr"] == pytest.approx(3e-3)
    assert {group["weight_decay"] for group in groups.values()} == {0.0}
    # A part of the backbone outside its layers (a final norm, a pooler) trains with the top layer: 1x.
    assert learning_rate_scale("backbone.other", 6, 0.5, 2.0, 3.0) == 1.0


def test_the_trainer_passes_weight_decay_and_the_optimizer_settings(
    tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer
):
    trainer = make_trainer(
        tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer, weight_decay=0.05, adam_epsilon=1e-5, adam_beta2=0.98
    )
    optimizer = trainer.create_optimizer()
    for group in optimizer.param_groups:
        assert group["weight_decay"] == (0.0 if group["name"].endswith(".no_decay") else 0.05), group["name"]
    assert (optimizer.defaults["eps"], optimizer.defaults["betas"]) == (1e-5, (0.9, 0.98))


def test_an_optimizer_class_given_to_the_trainer_gets_the_groups(
    tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer
):
    train, evaluation = tiny_task_datasets
    trainer = MultiTaskTrainer(
        model=tiny_model, args=training_args(tmp_path, layer_decay=0.5), train_dataset=train, eval_dataset=evaluation,
        processing_class=tiny_tokenizer, optimizer_cls_and_kwargs=(torch.optim.SGD, {"momentum": 0.5}),
    )  # fmt: skip
    optimizer = trainer.create_optimizer()
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.5
    lr = {group["name"]: group["lr"] for group in optimizer.param_groups}
    assert lr["backbone.layer.0"] == pytest.approx(0.5e-3) and lr["head:topic"] == pytest.approx(3e-3)


def test_data_seed_rather_than_seed_orders_the_task_mix(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer):
    def order(**overrides):
        trainer = make_trainer(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer, **overrides)
        return [batch["input_ids"].tolist() for batch in trainer.get_train_dataloader()]

    assert order(seed=0, data_seed=7) == order(seed=1, data_seed=7)
    assert order(seed=0, data_seed=7) != order(seed=0, data_seed=8)
    assert order(seed=3) != order(seed=4)  # without data_seed, seed orders it


def test_logged_distillation_loss_is_the_mean_over_the_windows_examples(tmp_path, tiny_tokenizer, monkeypatch):
    """One logging window of two batches of 3 and 2 examples: the logged embedding-distillation loss is each batch's
    loss weighted by its examples (a batch's loss is already a mean over its pairs), not the mean of the two."""
    from conftest import make_task_dataset

    import multitask_st.training.trainer as trainer_module

    computed = []

    def recording_loss(embeddings, teacher_embeddings):
        loss = similarity_distillation_loss(embeddings, teacher_embeddings)
        computed.append((loss.item(), embeddings.shape[0]))
        return loss

    monkeypatch.setattr(trainer_module, "similarity_distillation_loss", recording_loss)
    torch.manual_seed(0)
    model = MultiTaskSTModel(tiny_config(projection="mlp"))  # a fresh MLP projection: the loss starts above 0
    datasets_ = {"topic": make_task_dataset(tiny_tokenizer, 3, 3, seed=1),
                 "sentiment": make_task_dataset(tiny_tokenizer, 2, 2, seed=2)}  # fmt: skip
    trainer = make_trainer(
        tmp_path, model, (datasets_, None), tiny_tokenizer, per_device_train_batch_size=3, max_steps=-1,
        num_train_epochs=1, logging_steps=2, sampling_strategy="proportional", embedding_distillation_weight=2.0,
    )  # fmt: skip
    trainer.train()
    assert [size for _, size in computed] == [3, 2]
    logged = next(entry for entry in trainer.state.log_history if "embedding_distillation_loss" in entry)
    expected = (3 * computed[0][0] + 2 * computed[1][0]) / 5
    assert logged["embedding_distillation_loss"] == pytest.approx(expected, rel=1e-5)
    assert abs(expected - (computed[0][0] + computed[1][0]) / 2) > 1e-3 * expected  # the two means differ here


def test_train_sampler_without_an_argument_samples_the_trainers_own_task_mix(
    tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer
):
    from torch.utils.data import RandomSampler

    from multitask_st.training.sampling import MultiTaskSampler

    trainer = make_trainer(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer, sampling_strategy="temperature")
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, MultiTaskSampler) and sampler.task_sizes == [24, 40] and len(sampler) == 64
    # A training set other than the tasks' concatenation (given, or swapped in after construction): Trainer's own
    # sampler over that set.
    given = trainer._get_train_sampler(trainer.train_dataset.select(range(7)))
    assert type(given) is RandomSampler and len(given) == 7
    trainer.train_dataset = trainer.train_dataset.select(range(10))
    fallback = trainer._get_train_sampler()
    assert type(fallback) is RandomSampler and len(fallback) == 10


def test_per_task_loss_of_a_single_labelled_example_is_logged(
    tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer
):
    # A window with one topic example (and three sentiment ones): the topic loss is that one example's loss.
    trainer = make_trainer(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer)
    batch = trainer.data_collator([trainer.train_dataset[index] for index in (0, 24, 25, 26)])
    assert int((batch["labels"][:, 0] != -100).sum()) == 1
    tiny_model.eval()
    with torch.no_grad():
        expected = {task: loss.item() for task, loss in tiny_model(**batch).task_losses.items()}
        trainer.compute_loss(tiny_model, dict(batch))
    logged = trainer._pop_task_losses(training=False, prefix="eval_")
    assert logged == pytest.approx(
        {"eval_topic_loss": expected["topic"], "eval_sentiment_loss": expected["sentiment"]}
    )


def test_per_task_losses_log_only_the_tasks_of_the_window(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer):
    # Single-task batches, a log every step: each entry holds the loss of its batch's task only (a task with no
    # example in the window is left out, not logged as 0/0).
    trainer = make_trainer(
        tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer, mixed_task_batches=False,
        sampling_strategy="proportional", max_steps=4,
    )  # fmt: skip
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 4
    for entry in logged:
        tasks = [key for key in ("topic_loss", "sentiment_loss") if key in entry]
        assert len(tasks) == 1 and np.isfinite(entry[tasks[0]])


def test_per_task_logged_regression_loss_counts_rows_with_any_target(tmp_path, tiny_tokenizer):
    # A regression row with one of its two targets is a labelled row: its batch's loss is logged.
    from conftest import TEXTS

    torch.manual_seed(0)
    config = tiny_config(tasks={"topic": ["a", "b"], "score": ["x", "y"]}, task_kinds={"score": "regression"})
    model = MultiTaskSTModel(config).eval()
    trainer = MultiTaskTrainer(model=model, args=training_args(tmp_path), processing_class=tiny_tokenizer)
    batch = dict(tiny_tokenizer(TEXTS[:2], padding=True, return_tensors="pt"))
    batch["labels"] = torch.tensor([[0.0, float("nan"), float("nan")], [float("nan"), 3.0, float("nan")]])
    with torch.no_grad():
        expected = model(**batch).task_losses["score"].item()
        trainer.compute_loss(model, dict(batch))
    logged = trainer._pop_task_losses(training=False)
    assert logged["score_loss"] == pytest.approx(expected) and logged["topic_loss"] > 0


def test_a_regression_task_without_training_data_or_target_scaling_is_named(tmp_path, tiny_tokenizer):
    # Its targets' mean and std cannot be computed from no example (it failed inside numpy's reshape before).
    from conftest import make_task_dataset

    model = MultiTaskSTModel(
        tiny_config(tasks={"sentiment": ["neg", "pos"], "level": ["x"]}, task_kinds={"level": "regression"})
    )
    train = {"sentiment": make_task_dataset(tiny_tokenizer, 4, 2, seed=2)}
    with pytest.raises(ValueError) as error:
        make_trainer(tmp_path, model, (train, None), tiny_tokenizer)
    assert (
        str(error.value) == "Task 'level' has no training example to compute its 'balanced' weights or scaling from."
    )
