"""Embedding distillation and held heads under DeepSpeed ZeRO-1/2/3 on CPU (gloo), in 1 and 2 processes under torchrun.

Opt-in (`pytest -m deepspeed`; `make test` deselects it): DeepSpeed is not installed by `make setup` nor in CI, and
its first run compiles a shared-memory op. What each run checks is in tests/deepspeed_distillation.py; TESTING.md has
the command and what it measured. The logic that needs no DeepSpeed (which targets each setup gets, the whole copy
of a partitioned model) is tested in the default suite (test_distillation.py)."""

import json
from pathlib import Path

import pytest
import torch
from conftest import WORDS, run_torchrun, tiny_config, train_arguments, word_tokenizer

from multitask_st import MultiTaskSTModel


# A plain skip even under CI (not `require_module`): CI's environment leaves DeepSpeed out on purpose (see above).
pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (opt-in: pip install deepspeed)")
pytestmark = [pytest.mark.deepspeed, pytest.mark.slow]

SCRIPT = str(Path(__file__).parent / "deepspeed_distillation.py")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("deepspeed") / "model"
    torch.manual_seed(0)
    MultiTaskSTModel(tiny_config()).save_pretrained(folder)  # topic and sentiment
    word_tokenizer(folder.parent, WORDS, model_max_length=64).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("processes, stage", [(1, 2), (2, 1), (2, 2), (1, 3), (2, 3)])
def test_distillation_and_held_heads_train_under_deepspeed(tmp_path, model_dir, processes, stage):
    result = run_torchrun(SCRIPT, str(model_dir), str(tmp_path), str(stage), processes=processes, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "is ignored" not in result.stderr and "not held" not in result.stderr
    run = json.loads((tmp_path / "result.json").read_text())
    assert run["partitioned"] == (stage == 3)  # transformers built the model under zero.Init
    assert run["distributed_type"] == "DEEPSPEED" and run["world_size"] == processes
    # the teacher columns are the starting model's, bit for bit (under ZeRO-3: from the copy gathered whole)
    assert run["teacher_column_differences"] == {"teacher_embedding": 0.0, "teacher_logits": 0.0}
    # logged every step; 0 at the first (the student is the teacher), then the model moves away
    for name in ("embedding_distillation_loss", "head_distillation_loss"):
        losses = run[name]
        assert len(losses) == 3 and all(isinstance(loss, float) and loss >= 0 for loss in losses), (name, losses)
        assert losses[-1] > 0, (name, losses)
    assert run["record"] == {"world_size": processes, "embedding_distillation_weight": 10.0, "held_tasks": ["topic"]}


def test_train_command_under_zero3_in_two_processes(tmp_path, tiny_backbone_dir):
    """`torchrun --nproc_per_node 2 train.py --deepspeed` with ZeRO-3 on CPU: the model loads partitioned (DeepSpeed's
    communication set up before it loads), distillation applies, the weights are saved whole, and the examples that
    rank 0 alone would run on a partitioned model are left out."""
    config = tmp_path / "zero3.json"
    config.write_text(json.dumps({
        "zero_optimization": {"stage": 3, "stage3_gather_16bit_weights_on_model_save": True},
        "train_micro_batch_size_per_gpu": "auto", "train_batch_size": "auto",
        "gradient_accumulation_steps": "auto", "gradient_clipping": "auto",
    }))  # fmt: skip
    train_py = str(Path(__file__).resolve().parents[1] / "train.py")
    arguments = train_arguments(tmp_path, tiny_backbone_dir) + ["--deepspeed", str(config), "--logging_steps", "1"]
    result = run_torchrun(train_py, *arguments, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "is ignored" not in result.stderr
    assert "the teacher pass runs on a whole copy gathered from it" in result.stderr
    assert "(DeepSpeed ZeRO-3: load it to try it)" in result.stdout
    summary = json.loads((tmp_path / "out" / "training_summary.json").read_text())
    assert summary["run"]["world_size"] == 2 and summary["run"]["embedding_distillation_weight"] == 10.0
    MultiTaskSTModel.from_pretrained(tmp_path / "out")  # saved whole
