import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_task_dataset, make_trainer, tiny_config
from transformers import TrainerCallback

from multitask_st import MultiTaskSTModel
from multitask_st.training.collator import TEACHER_LOGITS_COLUMN, MultiTaskDataCollator
from multitask_st.training.distillation import (
    DEFAULT_EMBEDDING_DISTILLATION_WEIGHT,
    TEACHER_COLUMN,
    add_teacher_embeddings,
    compute_teacher_embeddings,
    embedding_distillation_weight,
    is_partitioned,
    similarity_distillation_loss,
    whole_model_copy,
)
from multitask_st.training.record import training_record
from multitask_st.training.trainer import MultiTaskTrainer
from multitask_st.training.training_args import MultiTaskTrainingArguments


# ---------------------------------------------------------------- the loss


def test_loss_matches_a_hand_computation():
    student = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    teacher = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    # off-diagonal cosines: student (0,1)=0, (0,2)=(1,2)=1/sqrt(2); teacher (0,1)=1, (0,2)=(1,2)=0
    expected = 2 * ((0 - 1) ** 2 + 2 * (1 / 2**0.5) ** 2) / 6
    assert similarity_distillation_loss(student, teacher).item() == pytest.approx(expected)


def test_loss_is_zero_for_any_rotation_and_scaling_and_width():
    torch.manual_seed(0)
    teacher = torch.randn(6, 4)
    rotation, _ = torch.linalg.qr(torch.randn(4, 4))
    assert similarity_distillation_loss(3.0 * teacher @ rotation, teacher).item() == pytest.approx(0, abs=1e-6)
    wider = torch.cat([teacher, torch.zeros(6, 3)], dim=1)  # the projection may change the width
    assert similarity_distillation_loss(wider, teacher).item() == pytest.approx(0, abs=1e-6)
    assert similarity_distillation_loss(torch.randn(6, 4), teacher).item() > 0.01


def test_loss_of_a_single_example_is_zero_and_differentiable():
    student = torch.randn(1, 4, requires_grad=True)
    loss = similarity_distillation_loss(student, torch.randn(1, 4))
    loss.backward()
    assert loss.item() == 0 and torch.equal(student.grad, torch.zeros_like(student))


def test_loss_refuses_mismatched_batches():
    with pytest.raises(ValueError) as error:
        similarity_distillation_loss(torch.randn(3, 4), torch.randn(2, 4))
    assert str(error.value) == "Got 3 embeddings but 2 teacher embeddings; each example needs its own."


# ---------------------------------------------------------------- teacher embeddings


def test_teacher_embeddings_are_the_pooled_output_of_each_example_in_order(tiny_model, tiny_tokenizer):
    dataset = make_task_dataset(tiny_tokenizer, 13, 2, seed=5)  # lengths vary: batches are sorted and padded
    teacher = compute_teacher_embeddings(tiny_model, dataset, tiny_tokenizer, batch_size=4, show_progress_bar=False)
    assert teacher.shape == (13, tiny_model.config.backbone_hidden_size) and teacher.dtype == np.float32
    for index, example in enumerate(dataset):
        ids = torch.tensor([example["input_ids"]])
        with torch.no_grad():
            pooled, _ = tiny_model.pool(ids, torch.ones_like(ids), torch.tensor([example["token_type_ids"]]))
        np.testing.assert_allclose(teacher[index], pooled[0].numpy(), atol=1e-5)


def test_teacher_embeddings_are_computed_without_dropout_and_the_mode_is_restored(tiny_tokenizer):
    torch.manual_seed(0)
    model = MultiTaskSTModel(tiny_config())
    for module in model.backbone.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.5
    model.train()
    dataset = make_task_dataset(tiny_tokenizer, 6, 2, seed=7)
    first = compute_teacher_embeddings(model, dataset, tiny_tokenizer, show_progress_bar=False)
    second = compute_teacher_embeddings(model, dataset, tiny_tokenizer, show_progress_bar=False)
    assert model.training  # restored
    np.testing.assert_array_equal(first, second)  # dropout was off: deterministic


def test_teacher_column_is_added_once_and_collated(tiny_model, tiny_tokenizer):
    dataset = make_task_dataset(tiny_tokenizer, 5, 2, seed=6).add_column("task_id", [1] * 5)
    with_teacher = add_teacher_embeddings(tiny_model, dataset, tiny_tokenizer, show_progress_bar=False)
    assert with_teacher.column_names == [*dataset.column_names, TEACHER_COLUMN]
    assert isinstance(with_teacher[0][TEACHER_COLUMN], np.ndarray) and isinstance(with_teacher[0]["label"], int)
    assert add_teacher_embeddings(None, with_teacher, None) is with_teacher  # present: kept, not recomputed
    batch = MultiTaskDataCollator(tiny_tokenizer, num_tasks=2)([with_teacher[i] for i in range(5)])
    assert batch["teacher_embeddings"].shape == (5, 32) and batch["teacher_embeddings"].dtype == torch.float32
    assert tiny_model.training is False  # the model's mode is restored


@pytest.mark.parametrize(
    "function, what", [(compute_teacher_embeddings, "embeddings"), (add_teacher_embeddings, "outputs")]
)
def test_teacher_outputs_of_untokenised_or_empty_data_are_refused(tiny_model, tiny_tokenizer, function, what):
    import datasets

    untokenised = datasets.Dataset.from_dict({"text": ["the movie", "a film"], "label": [0, 1]})
    empty = make_task_dataset(tiny_tokenizer, 2, 2, seed=6).select([])
    for dataset, rows in ((untokenised, 2), (empty, 0)):
        with pytest.raises(ValueError) as error:
            function(tiny_model, dataset, tiny_tokenizer, show_progress_bar=False)
        assert str(error.value) == (
            f"Teacher {what} need tokenised examples; the dataset has {rows} rows and columns {dataset.column_names}."
        )


def test_holding_heads_the_teacher_embedding_is_the_models_own_embedding(tiny_tokenizer):
    """Adding a task to a trained model, the embedding held is what the model gave (its trained projection's output),
    not the backbone's pooled output under it: the distillation starts at zero and keeps what `encode` gave."""
    torch.manual_seed(0)
    model = MultiTaskSTModel(tiny_config()).eval()
    torch.nn.init.normal_(model.projection[0].weight, std=0.3)  # a trained projection: far from the identity
    dataset = make_task_dataset(tiny_tokenizer, 7, 2, seed=3).add_column("task_id", [1] * 7)
    held = add_teacher_embeddings(model, dataset, tiny_tokenizer, show_progress_bar=False, held_tasks=["topic"])
    fresh = add_teacher_embeddings(model, dataset, tiny_tokenizer, show_progress_bar=False)
    for index, example in enumerate(dataset):
        ids = torch.tensor([example["input_ids"]])
        with torch.no_grad():
            pooled, _ = model.pool(ids, torch.ones_like(ids), torch.tensor([example["token_type_ids"]]))
            embedding = model.finish_embedding(model.projection(pooled))
        np.testing.assert_allclose(held[index][TEACHER_COLUMN], embedding[0].numpy(), atol=1e-5)
        np.testing.assert_allclose(fresh[index][TEACHER_COLUMN], pooled[0].numpy(), atol=1e-5)
    assert not np.allclose(held[0][TEACHER_COLUMN], fresh[0][TEACHER_COLUMN], atol=1e-3)


def test_held_heads_outputs_are_added_task_after_task_next_to_a_kept_embedding_column(tiny_tokenizer):
    """The teacher_logits column holds each held head's logits in the order of `held_tasks`, from the model as it is;
    a dataset that already has the embedding column keeps it and gets the logits column alone."""
    torch.manual_seed(0)
    model = MultiTaskSTModel(tiny_config()).eval()
    dataset = make_task_dataset(tiny_tokenizer, 5, 2, seed=3).add_column("task_id", [1] * 5)
    pooled_only = add_teacher_embeddings(model, dataset, tiny_tokenizer, show_progress_bar=False)
    held = add_teacher_embeddings(
        model, pooled_only, tiny_tokenizer, show_progress_bar=False, held_tasks=["sentiment", "topic"]
    )
    assert held.column_names == [*dataset.column_names, TEACHER_COLUMN, TEACHER_LOGITS_COLUMN]
    for index, example in enumerate(dataset):
        ids = torch.tensor([example["input_ids"]])
        with torch.no_grad():
            logits = model(input_ids=ids, token_type_ids=torch.tensor([example["token_type_ids"]])).logits
        expected = torch.cat([logits["sentiment"], logits["topic"]], dim=-1)[0].numpy()
        np.testing.assert_allclose(held[index][TEACHER_LOGITS_COLUMN], expected, atol=1e-5)
        np.testing.assert_array_equal(held[index][TEACHER_COLUMN], pooled_only[index][TEACHER_COLUMN])


# ---------------------------------------------------------------- in training


class _RecordLogs(TrainerCallback):
    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def test_trainer_distils_from_the_model_as_it_was_before_training(
    tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer
):
    start = copy.deepcopy(tiny_model)
    recorder = _RecordLogs()
    trainer = make_trainer(
        tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer, callbacks=[recorder],
        embedding_distillation_weight=2.0,
    )  # fmt: skip
    trainer.train()
    column = np.asarray(trainer.train_dataset[TEACHER_COLUMN], dtype=np.float32)
    expected = compute_teacher_embeddings(start, trainer.train_dataset, tiny_tokenizer, show_progress_bar=False)
    np.testing.assert_allclose(column, expected, atol=1e-6)
    losses = [log["embedding_distillation_loss"] for log in recorder.logs if "embedding_distillation_loss" in log]
    assert len(losses) == 3 and all(np.isfinite(losses)) and losses[-1] > 0
    assert "eval_embedding_distillation_loss" not in trainer.evaluate()  # evaluation data carries no teacher


def test_training_loss_is_task_loss_plus_weighted_distillation_and_evaluation_leaves_it_out(
    tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer
):
    trainer = make_trainer(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer, embedding_distillation_weight=3.0)
    trainer.train()
    batch = next(iter(trainer.get_train_dataloader()))
    assert "teacher_embeddings" in batch
    inputs = {key: value for key, value in batch.items() if key != "teacher_embeddings"}
    with torch.no_grad():
        for training in (True, False):
            tiny_model.train(training)
            torch.manual_seed(1)  # the same dropout masks (heads) for both forward passes
            outputs = tiny_model(**inputs)
            torch.manual_seed(1)
            loss = trainer.compute_loss(tiny_model, dict(batch))
            if training:
                distillation = similarity_distillation_loss(outputs.embeddings, batch["teacher_embeddings"])
                assert distillation > 0
                torch.testing.assert_close(loss, outputs.loss + 3.0 * distillation)
            else:  # evaluating data that carries teacher embeddings reports the task losses alone
                assert torch.equal(loss, outputs.loss)


def test_training_loss_adds_the_weighted_mean_of_the_held_heads_distillation_and_evaluation_leaves_it_out(
    tmp_path, tiny_tokenizer
):
    """Only `sentiment` has data: `topic` (classification) and the regression heads `level` (target std 2 and 0.5) and
    `rank` (unscaled targets: std 1) are held. The training loss is the task loss plus the weight times the mean of each
    held head's distillation loss against its own slice of the teacher logits, each in its kind and target std."""
    from multitask_st.training.distillation import head_distillation_loss

    torch.manual_seed(0)
    tasks = {"topic": ["a", "b", "c"], "sentiment": ["neg", "pos"], "level": ["x", "y"], "rank": ["r"]}
    model = MultiTaskSTModel(
        tiny_config(
            tasks=tasks, task_kinds={"level": "regression", "rank": "regression"}, head_dropout=0.0,
            task_target_scaling={"level": {"mean": [0.0, 0.0], "std": [2.0, 0.5]}},
            task_loss_options={"rank": {"normalize_targets": False}},
        )
    )  # fmt: skip
    train = {"sentiment": make_task_dataset(tiny_tokenizer, 16, 2, seed=2)}
    trainer = make_trainer(
        tmp_path, model, (train, None), tiny_tokenizer, max_steps=2, learning_rate=1e-2,
        embedding_distillation_weight=0.0, head_distillation_weight=3.0,
    )  # fmt: skip
    trainer.train()  # two steps: the heads have moved away from the teacher
    assert trainer.held_tasks == ["topic", "level", "rank"]
    batch = next(iter(trainer.get_train_dataloader()))
    inputs = {key: value for key, value in batch.items() if key not in ("teacher_logits", "teacher_embeddings")}
    teacher = batch["teacher_logits"]  # topic (3) | level (2) | rank (1)
    with torch.no_grad():
        for training in (True, False):
            model.train(training)
            outputs = model(**inputs)
            loss = trainer.compute_loss(model, dict(batch))
            if not training:  # evaluating data that carries teacher logits reports the task losses alone
                assert torch.equal(loss, outputs.loss)
                continue
            held = torch.stack([
                head_distillation_loss(outputs.logits["topic"], teacher[:, :3], kind="classification"),
                head_distillation_loss(outputs.logits["level"], teacher[:, 3:5], kind="regression", target_std=[2.0, 0.5]),
                head_distillation_loss(outputs.logits["rank"], teacher[:, 5:], kind="regression", target_std=[1.0]),
            ]).mean()  # fmt: skip
            assert held > 0
            torch.testing.assert_close(trainer._step_losses["head_distillation"], held)
            torch.testing.assert_close(loss, outputs.loss + 3.0 * held)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"per_device_train_batch_size": 1}, "batch of one"),
        ({"data_collator": "custom"}, "not a MultiTaskDataCollator"),
    ],
)
def test_distillation_that_cannot_apply_is_skipped_with_a_warning(
    tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer, overrides, message, caplog
):
    overrides = dict(overrides)  # popped below: the parametrized dict itself must stay as it is for a rerun
    train, evaluation = tiny_task_datasets
    args = dict(output_dir=str(tmp_path), max_steps=2, report_to=[], use_cpu=True, save_strategy="no",
                disable_tqdm=True, stsb_eval_pairs=0, per_device_train_batch_size=4)  # fmt: skip
    collator = None
    if overrides.pop("data_collator", None):
        base = MultiTaskDataCollator(tiny_tokenizer, num_tasks=2)

        def collator(features):  # a user's collator: drops what it does not know
            return base([{k: v for k, v in f.items() if k != TEACHER_COLUMN} for f in features])

    args.update(overrides)
    trainer = MultiTaskTrainer(
        model=tiny_model, args=MultiTaskTrainingArguments(**args), train_dataset=train,
        processing_class=tiny_tokenizer, data_collator=collator,
    )  # fmt: skip
    with caplog.at_level("WARNING"):
        trainer.train()
    assert message in caplog.text and "embedding_distillation_weight=10.0 is ignored" in caplog.text
    assert TEACHER_COLUMN not in trainer.train_dataset.column_names
    record = training_record(trainer)
    assert record["run"]["embedding_distillation_weight"] == 0.0  # what the run applied...
    assert record["training_args"]["embedding_distillation_weight"] is None  # ...and what it was asked: the default


def test_distillation_off_adds_no_column_and_no_loss(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer):
    recorder = _RecordLogs()
    trainer = make_trainer(
        tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer, callbacks=[recorder],
        embedding_distillation_weight=0.0,
    )  # fmt: skip
    trainer.train()
    assert TEACHER_COLUMN not in trainer.train_dataset.column_names
    assert not any("embedding_distillation_loss" in log for log in recorder.logs)


def _similarity_drift(model, start, dataset, tokenizer) -> float:
    """Mean squared change of the pairwise cosine similarities of `dataset`'s embeddings since `start`."""
    now = torch.from_numpy(compute_teacher_embeddings(model, dataset, tokenizer, show_progress_bar=False))
    before = torch.from_numpy(compute_teacher_embeddings(start, dataset, tokenizer, show_progress_bar=False))
    # the pooled output is the projection's input: compare what the model embeds, through its own projection
    with torch.no_grad():
        now, before = F.normalize(model.projection(now), dim=-1), F.normalize(before, dim=-1)
    return (now @ now.T - before @ before.T).square().mean().item()


def test_distillation_keeps_the_embedding_geometry_closer_to_the_start(tmp_path, tiny_task_datasets, tiny_tokenizer):
    drift = {}
    for weight in (0.0, 20.0):
        torch.manual_seed(0)
        model = MultiTaskSTModel(tiny_config())
        start = copy.deepcopy(model)
        make_trainer(
            tmp_path / str(weight), model, tiny_task_datasets, tiny_tokenizer, max_steps=30, learning_rate=3e-3,
            embedding_distillation_weight=weight,
        ).train()  # fmt: skip
        drift[weight] = _similarity_drift(model, start, tiny_task_datasets[0]["sentiment"], tiny_tokenizer)
    assert drift[20.0] < 0.5 * drift[0.0], drift


def test_the_default_weight_holds_the_embedding_unless_a_task_trains_it():
    heads = {"topic": "classification", "tags": "multi_label"}
    assert embedding_distillation_weight(None, heads) == DEFAULT_EMBEDDING_DISTILLATION_WEIGHT == 10.0
    for kind in ("embedding", "embedding_contrastive"):
        assert embedding_distillation_weight(None, {**heads, "sts": kind}) == 0.0  # the task moves the embedding
        assert embedding_distillation_weight(2.5, {**heads, "sts": kind}) == 2.5  # asked for: applied
    assert embedding_distillation_weight(0, heads) == 0.0
    assert embedding_distillation_weight(None, {"nli": "pair_classification"}) == 10.0  # a pair head: a head


def test_an_embedding_task_without_data_in_the_run_leaves_the_embedding_held(
    tmp_path, tiny_task_datasets, tiny_tokenizer
):
    # Heads trained next to a model's embedding task that has no data here: nothing trains the embedding, so the default
    # holds it, as for any run of heads.
    torch.manual_seed(0)
    tasks = {"topic": ["a", "b", "c"], "sentiment": ["neg", "pos"], "sts": ["cosine_similarity"]}
    model = MultiTaskSTModel(tiny_config(tasks=tasks, task_kinds={"sts": "embedding"}))
    trainer = make_trainer(
        tmp_path, model, tiny_task_datasets, tiny_tokenizer, max_steps=1, head_distillation_weight=0
    )
    trainer.train()
    assert trainer.embedding_distillation_weight == DEFAULT_EMBEDDING_DISTILLATION_WEIGHT
    assert TEACHER_COLUMN in trainer.train_dataset.column_names


def test_negative_weight_is_refused(tmp_path):
    with pytest.raises(ValueError, match="embedding_distillation_weight.*-1"):
        MultiTaskTrainingArguments(str(tmp_path), embedding_distillation_weight=-1, report_to=[])


# ---------------------------------------------------------------- under DeepSpeed and FSDP


def partition_like_zero3(model, monkeypatch) -> list[str]:
    """DeepSpeed ZeRO-3's state without DeepSpeed: each parameter of `model` keeps an empty placeholder marked with a
    `ds_id` (its values set aside, as a process holds only its slice), a stand-in `deepspeed` module whose
    `zero.GatheredParameters` puts the values back for the duration of the context, and transformers told a ZeRO-3
    config is known (so building a model would enter `deepspeed.zero.Init`, which here refuses). Returns the names of
    the parameters gathered, in order, as they are gathered."""
    import importlib.machinery
    import sys
    import types
    from contextlib import contextmanager

    import transformers.modeling_utils

    values, names, gathered = {}, {}, []
    for index, (name, parameter) in enumerate(model.named_parameters()):
        values[parameter], names[parameter] = parameter.data, name
        parameter.data = torch.empty(0, dtype=parameter.dtype)
        parameter.ds_id = index

    @contextmanager
    def gathered_parameters(parameters, modifier_rank=None):
        assert modifier_rank is None  # read-only: no process's changes are broadcast
        for parameter in parameters:
            parameter.data = values[parameter]
            gathered.append(names[parameter])
        yield
        for parameter in parameters:
            parameter.data = torch.empty(0, dtype=parameter.dtype)

    def init(*args, **kwargs):
        raise AssertionError("the whole copy must be built outside deepspeed.zero.Init")

    deepspeed = types.ModuleType("deepspeed")
    deepspeed.zero = types.SimpleNamespace(GatheredParameters=gathered_parameters, Init=init)
    # what accelerate looks for where DeepSpeed is installed (`unwrap_model`): a spec, and an engine class to unwrap
    deepspeed.__spec__ = importlib.machinery.ModuleSpec("deepspeed", None)
    deepspeed.DeepSpeedEngine = type("DeepSpeedEngine", (), {})
    monkeypatch.setitem(sys.modules, "deepspeed", deepspeed)
    monkeypatch.setattr(transformers.modeling_utils, "is_deepspeed_zero3_enabled", lambda: True)
    return gathered


def test_the_whole_copy_of_a_partitioned_model_gives_exactly_the_models_outputs(monkeypatch, tiny_tokenizer):
    torch.manual_seed(0)
    tasks = {"topic": ["a", "b", "c"], "level": ["x", "y"]}
    model = MultiTaskSTModel(tiny_config(tasks=tasks, task_kinds={"level": "regression"}))
    model.set_target_scaling("level", [1.0, -2.0], [2.0, 0.5])  # buffers: copied as they are
    start = copy.deepcopy(model).eval()
    gathered = partition_like_zero3(model, monkeypatch)
    assert is_partitioned(model) and not is_partitioned(start)
    whole = whole_model_copy(model)
    assert gathered == [name for name, _ in start.named_parameters()]  # each one, in the same order on every process
    assert not is_partitioned(whole) and not whole.training
    assert not any(parameter.requires_grad for parameter in whole.parameters())
    assert all(parameter.numel() == 0 for parameter in model.parameters())  # the model itself is left partitioned
    inputs = dict(tiny_tokenizer(["the movie was great", "stock market fell fell"], padding=True, return_tensors="pt"))
    with torch.no_grad():
        expected, got = start(**inputs), whole(**inputs)
    assert torch.equal(got.embeddings, expected.embeddings)
    assert all(torch.equal(got.logits[task], expected.logits[task]) for task in tasks)


def test_the_whole_copy_of_a_bf16_partitioned_model_runs_in_float32(monkeypatch):
    """ZeRO-3 casts the partitions to the config's dtype (bf16 on most GPU configs): the teacher is gathered into
    float32, so it runs as under DDP and ZeRO-1/2 (from the bf16-rounded values ZeRO-3 kept)."""
    torch.manual_seed(0)
    model = MultiTaskSTModel(tiny_config()).to(torch.bfloat16)
    start = copy.deepcopy(model)
    partition_like_zero3(model, monkeypatch)
    whole = whole_model_copy(model)
    for (name, got), (_, expected) in zip(whole.named_parameters(), start.named_parameters(), strict=True):
        assert got.dtype == torch.float32 and torch.equal(got, expected.float()), name


@pytest.mark.parametrize("setup", ["deepspeed", "deepspeed_zero3", "fsdp"])
def test_distillation_and_held_heads_apply_under_deepspeed_and_fsdp(
    tmp_path, tiny_tokenizer, monkeypatch, caplog, setup
):
    """Which targets each setup gets, decided in `_set_up_distillation` (the accelerate side is faked: DeepSpeed and
    FSDP do not run on this CPU; tests/test_deepspeed.py runs DeepSpeed itself, opt-in). ZeRO-1/2 keep the model whole
    until `accelerator.prepare`: the precomputed columns, as under DDP. ZeRO-3 has partitioned it already: the columns
    from a whole copy, exactly the starting model's. FSDP: the frozen copy per batch, held heads included."""
    torch.manual_seed(0)
    model = MultiTaskSTModel(tiny_config())
    start = copy.deepcopy(model).eval()
    train = {"sentiment": make_task_dataset(tiny_tokenizer, 16, 2, seed=2)}  # topic has no data: held
    trainer = make_trainer(tmp_path, model, (train, None), tiny_tokenizer, head_distillation_weight=1.0)
    trainer.is_deepspeed_enabled = setup.startswith("deepspeed")
    trainer.is_fsdp_enabled = setup == "fsdp"
    gathered = partition_like_zero3(model, monkeypatch) if setup == "deepspeed_zero3" else []
    with caplog.at_level("WARNING"):
        trainer._set_up_distillation()
    assert "ignored" not in caplog.text and "not held" not in caplog.text
    assert trainer.embedding_distillation_weight == DEFAULT_EMBEDDING_DISTILLATION_WEIGHT
    assert trainer.held_tasks == ["topic"]
    if setup == "fsdp":
        assert trainer.teacher.held_tasks == ["topic"] and TEACHER_COLUMN not in trainer.train_dataset.column_names
        return
    assert trainer.teacher is None and len(gathered) == (len(list(start.parameters())) if gathered else 0)
    columns = [TEACHER_COLUMN, TEACHER_LOGITS_COLUMN]
    expected = add_teacher_embeddings(
        start, trainer.train_dataset.remove_columns(columns), tiny_tokenizer, show_progress_bar=False,
        held_tasks=["topic"],
    )  # fmt: skip
    for column in columns:
        np.testing.assert_array_equal(np.stack(trainer.train_dataset[column]), np.stack(expected[column]))
    gathered_before = len(gathered)
    trainer._set_up_distillation()  # a second `train()` of this trainer: the columns are there, nothing gathered again
    assert len(gathered) == gathered_before
