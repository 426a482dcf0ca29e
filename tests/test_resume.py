"""Kill a training run right after a checkpoint, resume it: the same checkpoints and final weights, bit for bit, as a
run that was never interrupted; and the training summary times the whole run."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import tiny_backbone_config, train_arguments
from transformers import BertModel


REPO = Path(__file__).resolve().parents[1]
DRIVER = textwrap.dedent(
    """
    import os, signal, sys
    from multitask_st.cli import train
    from transformers import TrainerCallback

    kill_at, interrupt_at = int(sys.argv[1]), int(sys.argv[2])
    # A shell's background job (`make test &`) starts with SIGINT ignored, and Python keeps it so: a Ctrl-C is the
    # point of one test, so the process takes SIGINT as an interactive one does.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    class KillAfterCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):  # the checkpoint is complete on disk
            if state.global_step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        def on_step_end(self, args, state, control, **kwargs):  # Ctrl-C: SIGINT to the process, mid-run
            if state.global_step == interrupt_at:
                os.kill(os.getpid(), signal.SIGINT)

    class Trainer(train.MultiTaskTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(KillAfterCheckpoint())

    train.MultiTaskTrainer = Trainer
    train.main(sys.argv[3:])
    """
)


def _run(driver: Path, kill_at: int, arguments: list[str], interrupt_at: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(driver), str(kill_at), str(interrupt_at), *arguments]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_tokenizer) -> SimpleNamespace:
    """The 6-step run (a checkpoint every 2 steps) that each test interrupts and resumes, run once uninterrupted for
    both: the same backbone (saved once: its weights are random) and data files, only the output folder differs."""
    folder = tmp_path_factory.mktemp("resume")
    backbone = folder / "backbone"
    BertModel(tiny_backbone_config(), add_pooling_layer=False).save_pretrained(backbone)
    tiny_tokenizer.save_pretrained(backbone)
    driver = folder / "driver.py"
    driver.write_text(DRIVER)
    arguments = train_arguments(folder, backbone)
    arguments[arguments.index("--save_strategy") + 1] = "steps"
    arguments[arguments.index("--max_steps") + 1] = "6"
    arguments += ["--save_steps", "2", "--save_total_limit", "10", "--learning_rate", "1e-3"]
    arguments[arguments.index("--output_dir") + 1] = str(folder / "whole")
    assert _run(driver, 0, arguments).returncode == 0
    return SimpleNamespace(driver=driver, arguments=arguments, whole=folder / "whole")


def _into(arguments: list[str], output_dir: Path) -> list[str]:
    arguments = list(arguments)
    arguments[arguments.index("--output_dir") + 1] = str(output_dir)
    return arguments


@pytest.mark.slow
def test_killed_and_resumed_run_matches_an_uninterrupted_one(tmp_path, uninterrupted):
    driver, whole, killed = uninterrupted.driver, uninterrupted.whole, tmp_path / "killed"
    arguments = _into(uninterrupted.arguments, killed)
    killed_run = _run(driver, 4, arguments)
    assert killed_run.returncode == -signal.SIGKILL, killed_run.stderr[-2000:]
    assert not (killed / "model.safetensors").exists()
    checkpoint = killed / "checkpoint-4"
    resumed = _run(driver, 0, [*arguments, "--resume_from_checkpoint", str(checkpoint)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    for name in ["checkpoint-2", "checkpoint-4", "checkpoint-6", "."]:
        assert (whole / name / "model.safetensors").read_bytes() == (killed / name / "model.safetensors").read_bytes()
    # The resumed run's speed covers the whole run: the time trained before the kill (recorded in checkpoint-4) is in.
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    trained_before = state["stateful_callbacks"]["RunClock"]["attributes"]["seconds_before"]
    summary = json.loads((killed / "training_summary.json").read_text())["run"]
    assert summary["train_runtime_s"] > trained_before > 0
    samples = 6 * 8  # all the run's steps x per_device_train_batch_size, not only the resumed part's
    assert summary["train_samples_per_second"] == pytest.approx(samples / summary["train_runtime_s"], rel=0.01)


@pytest.mark.slow
def test_ctrl_c_mid_run_then_resume_matches_an_uninterrupted_one(tmp_path, uninterrupted):
    driver, folder = uninterrupted.driver, tmp_path / "interrupted"
    arguments = _into(uninterrupted.arguments, folder)
    interrupted = _run(driver, 0, arguments, interrupt_at=5)  # after checkpoint-4, before checkpoint-6
    # Python's default SIGINT handling: KeyboardInterrupt, then the process ends; nothing half-finished. It ends by
    # SIGINT itself unless an exit handler runs code after the traceback (torch._dynamo's, once transformers' Trainer
    # imports it, does: CPython then exits with status 1), so either status is the interrupt's.
    assert interrupted.returncode in (-signal.SIGINT, 1), interrupted.stderr[-2000:]
    assert "KeyboardInterrupt" in interrupted.stderr
    assert sorted(path.name for path in folder.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert not (folder / "model.safetensors").exists() and not (folder / "training_summary.json").exists()
    resumed = _run(driver, 0, [*arguments, "--resume_from_checkpoint", str(folder / "checkpoint-4")])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for name in ["checkpoint-6", "."]:
        whole = uninterrupted.whole / name / "model.safetensors"
        assert whole.read_bytes() == (folder / name / "model.safetensors").read_bytes()
