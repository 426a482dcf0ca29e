"""Multi-process launches: one data-parallel job or a stop before training, never N runs into one folder
(`multitask_st/training/processes.py`). The two-process run itself: tests/test_trainer.py."""

from pathlib import Path

import pytest
from conftest import make_trainer, run_torchrun, tiny_config, train_arguments

from multitask_st import MultiTaskSTModel
from multitask_st.cli import train
from multitask_st.training import processes, training_args
from multitask_st.training.processes import launched_world_size, process_records


def test_launched_world_size_reads_the_launchers_variables(monkeypatch):
    for name in processes.WORLD_SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert launched_world_size() == 1
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "3")
    assert launched_world_size() == 3
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun's wins
    assert launched_world_size() == 2
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match=r"WORLD_SIZE='two' must be a positive process count"):
        launched_world_size()


def _launched_as_two_where_use_cpu_is_not_turned_on(monkeypatch):
    """WORLD_SIZE=2 without a process group, on a machine that (as far as the arguments know) has a GPU: the
    Trainer would run this process as a job of one, as it did for every launch on CPU before `use_cpu` was automatic."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(training_args, "has_accelerator", lambda: True)
    monkeypatch.setattr(processes, "has_accelerator", lambda: True)


def test_a_process_that_would_train_alone_stops_before_training(tmp_path, tiny_task_datasets, tiny_tokenizer,
                                                                monkeypatch):  # fmt: skip
    _launched_as_two_where_use_cpu_is_not_turned_on(monkeypatch)
    model = MultiTaskSTModel(tiny_config())
    with pytest.raises(RuntimeError) as error:
        make_trainer(tmp_path, model, tiny_task_datasets, tiny_tokenizer, use_cpu=False)
    assert str(error.value) == (
        "The launcher started 2 processes (WORLD_SIZE=2) but the Trainer runs this one as a job of 1 process(es): "
        "they would train 2 separate models into the same output folder. Stopped before training; check the "
        "launcher's settings (each process must join the same job), or launch a single process."
    )
    assert not (tmp_path / "out").exists()


def test_train_command_stops_before_the_data_or_the_folder(tmp_path, tiny_backbone_dir, monkeypatch):
    _launched_as_two_where_use_cpu_is_not_turned_on(monkeypatch)
    arguments = [argument for argument in train_arguments(tmp_path, tiny_backbone_dir) if argument != "--use_cpu"]
    with pytest.raises(RuntimeError, match=r"^The launcher started 2 processes \(WORLD_SIZE=2\)"):
        train.main(arguments)
    output_dir = arguments[arguments.index("--output_dir") + 1]
    assert not (tmp_path / output_dir).exists()


def test_the_hint_names_use_cpu_where_there_is_no_gpu(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setattr(processes, "has_accelerator", lambda: False)
    with pytest.raises(RuntimeError, match=r"pass `--use_cpu` \(then the processes train one model with DDP"):
        processes.check_one_job(world_size=1, use_cpu=False)
    processes.check_one_job(world_size=4, use_cpu=True)  # one job of 4: nothing to say


def test_a_single_process_records_itself():
    assert process_records("cpu") == [{"rank": 0, "local_rank": 0, "node": 0, "device": "cpu", "device_name": "cpu"}]


_FSDP_SCRIPT = """
import sys
sys.path.insert(0, {tests_dir!r})
from conftest import make_task_dataset, tiny_config, word_tokenizer, WORDS
from pathlib import Path
from multitask_st import MultiTaskSTModel
from multitask_st.training.trainer import MultiTaskTrainer
from multitask_st.training.training_args import MultiTaskTrainingArguments

tokenizer = word_tokenizer(Path(sys.argv[1]) / "tokenizer", WORDS, model_max_length=64)
args = MultiTaskTrainingArguments(output_dir=sys.argv[1] + "/run", fsdp="full_shard", report_to=[], max_steps=1)
train = {{"topic": make_task_dataset(tokenizer, 8, 3, 1), "sentiment": make_task_dataset(tokenizer, 8, 2, 2)}}
MultiTaskTrainer(model=MultiTaskSTModel(tiny_config()), args=args, train_dataset=train, processing_class=tokenizer)
"""


@pytest.mark.slow
def test_fsdp_asked_for_where_accelerate_cannot_shard_stops_before_training(tmp_path):
    # Two processes on CPU: accelerate drops the FSDP plugin and would train unsharded (DDP), without a word.
    script = tmp_path / "fsdp.py"
    script.write_text(_FSDP_SCRIPT.format(tests_dir=str(Path(__file__).parent)))
    (tmp_path / "tokenizer").mkdir()
    result = run_torchrun(str(script), str(tmp_path))
    assert result.returncode != 0
    assert (
        "RuntimeError: `fsdp` is set but accelerate runs this job as MULTI_CPU on cpu: it shards with "
        "FSDP on GPUs (or other accelerators) only. Stopped before training; drop `--fsdp` to train with DDP here, or "
        "run on GPUs."
    ) in result.stderr
    assert not any((tmp_path / "run").iterdir())  # the Trainer made the folder; nothing was trained into it
