"""The trainer writes its own record: any `MultiTaskTrainer` user gets training_summary.json and the confusion
matrices the card shows, without train.py."""

import pytest
from conftest import training_args

from multitask_st.model_folder import TRAINING_SUMMARY_NAME, load_training_summary
from multitask_st.training.record import _non_default_args, structured_metrics
from multitask_st.training.trainer import MultiTaskTrainer
from multitask_st.training.training_args import MultiTaskTrainingArguments


CONFUSION_MATRICES = ["confusion_matrix_sentiment.png", "confusion_matrix_topic.png"]


def _record_trainer(tmp_path, model, datasets_, tokenizer, **overrides) -> MultiTaskTrainer:
    train, evaluation = datasets_
    return MultiTaskTrainer(
        model=model,
        args=training_args(tmp_path, eval_strategy="steps", eval_steps=1, **overrides),
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        base_model="org/encoder",
        dataset_records={"topic": {"name": "topics.csv", "num_train": 24}},
    )


def test_the_trainer_writes_its_record_and_confusion_matrices(
    tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer
):
    pytest.importorskip("matplotlib")
    trainer = _record_trainer(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer)
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    trainer.evaluate()  # before training: no run to record
    assert not (out / TRAINING_SUMMARY_NAME).exists()

    result = trainer.train()
    summary = load_training_summary(out)
    assert summary["base_model"] == "org/encoder"
    assert summary["datasets"] == {"topic": {"name": "topics.csv", "num_train": 24}}
    assert summary["run"]["global_steps"] == 3
    assert summary["run"]["train_runtime_s"] == result.metrics["train_runtime"]
    # CPU seconds of the loop (the process's threads may make them exceed the wall clock); the set-up's are its own
    assert summary["run"]["train_cpu_s"] == result.metrics["train_cpu_s"] > 0
    run = summary["run"]
    assert run["distillation_setup_s"] == result.metrics["distillation_setup_runtime"] < run["train_runtime_s"]
    assert 0 <= run["distillation_setup_cpu_s"] == result.metrics["distillation_setup_cpu_s"]
    # Three evaluations ran during training; none is recorded as the final model's.
    assert sum("eval_loss" in entry for entry in trainer.state.log_history) == 3
    assert summary["metrics"] == {"tasks": {}, "other": {}}

    trainer.save_model(str(elsewhere))
    validation = trainer.evaluate()
    assert not list(out.glob("confusion_matrix_*.png"))
    test = trainer.predict(tiny_task_datasets[1])
    expected = structured_metrics({"validation": validation, "test": test.metrics}, ["topic", "sentiment"])
    assert expected["tasks"]["topic"]["validation"]["accuracy"] == validation["eval_topic_accuracy"]
    for folder in (out, elsewhere):
        assert load_training_summary(folder)["metrics"] == expected
        assert sorted(path.name for path in folder.glob("confusion_matrix_*.png")) == CONFUSION_MATRICES


def test_no_confusion_matrices_without_plots_or_a_test_split(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer):
    trainer = _record_trainer(tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer, save_plots=False)
    trainer.train()
    test = trainer.predict(tiny_task_datasets[1])
    assert not list((tmp_path / "out").glob("*.png"))
    assert load_training_summary(tmp_path / "out")["metrics"]["tasks"]["topic"]["test"] == {
        "accuracy": test.metrics["test_topic_accuracy"],
        "f1": test.metrics["test_topic_f1"],
    }
    trainer.args.save_plots = True
    trainer.predict(tiny_task_datasets[1], metric_key_prefix="eval")  # the validation split: no confusion matrix
    assert not list((tmp_path / "out").glob("*.png"))
    assert load_training_summary(tmp_path / "out")["metrics"]["tasks"]["topic"].keys() == {"validation", "test"}


def test_non_default_arguments_leave_accelerate_alone(tmp_path):
    args = MultiTaskTrainingArguments(str(tmp_path), use_cpu=True, layer_decay=0.9, report_to="none")
    state = args.distributed_state
    non_default = _non_default_args(args)
    assert args.distributed_state is state and state.initialized  # not reset under the running trainer
    # what a default-built instance (which does reset it) differs in: use_cpu also turns pinned memory off
    assert non_default == ["use_cpu", "dataloader_pin_memory", "layer_decay"]
    defaults = MultiTaskTrainingArguments(str(tmp_path)).to_dict()
    assert non_default == [key for key, value in args.to_dict().items() if defaults[key] != value]
