"""The deliberate bugs of issue 15, each applied in a throwaway copy of the repository, and the test that must kill it.

    python tests/mutation/deliberate_bugs.py            # every bug; prints one line per bug, exit 1 if one survives
    python tests/mutation/deliberate_bugs.py f1_is_accuracy

Each bug is a text replacement in one file (it must match exactly once, so a refactor that moves the code makes this
script fail loudly rather than test nothing); the named tests run in the copy (fast tests, `-x`) and must fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
TRAINER = "multitask_st/training/trainer.py"
# name -> (file, text, replacement, tests that must fail)
BUGS: dict[str, tuple[str, str, str, list[str]]] = {
    "f1_is_accuracy": (
        "multitask_st/training/metrics.py",
        'return {"accuracy": scores["accuracy"], "f1": scores["f1"]}',
        'return {"accuracy": scores["accuracy"], "f1": scores["accuracy"]}',
        ["tests/test_metrics.py::test_macro_f1_and_accuracy_match_a_hand_computed_imbalanced_case"],
    ),
    "spearman_sign_flipped": (
        "multitask_st/training/metrics.py",
        'return float(spearmanr(cosine, np.asarray(pairs["score"])).statistic)',
        'return -float(spearmanr(cosine, np.asarray(pairs["score"])).statistic)',
        ["tests/test_metrics.py::test_stsb_spearman_equals_scipy_on_the_models_cosines"],
    ),
    "lr_multipliers_ignored": (
        TRAINER,
        "projection_lr_multiplier=self.args.projection_lr_multiplier,\n"
        "                head_lr_multiplier=self.args.head_lr_multiplier,",
        "projection_lr_multiplier=2.0,\n                head_lr_multiplier=3.0,",
        ["tests/test_trainer.py::test_optimizer_groups_get_the_configured_multipliers_and_layer_decay"],
    ),
    "layer_decay_ignored": (
        TRAINER,
        "layer_decay=self.args.layer_decay,",
        "layer_decay=1.0,",
        ["tests/test_trainer.py::test_optimizer_groups_get_the_configured_multipliers_and_layer_decay"],
    ),
    "mixed_task_batches_ignored": (
        TRAINER,
        "mixed_batches=self.args.mixed_task_batches,",
        "mixed_batches=True,",
        ["tests/test_trainer.py::test_trainer_batches_follow_the_configured_task_mix"],
    ),
    "sampling_temperature_ignored": (
        TRAINER,
        "temperature=self.args.sampling_temperature,",
        "temperature=1.0,",
        ["tests/test_trainer.py::test_trainer_batches_follow_the_configured_task_mix"],
    ),
    "group_by_length_ignored": (
        TRAINER,
        "lengths=lengths,",
        "lengths=None,",
        ["tests/test_trainer.py::test_trainer_groups_batches_by_length_when_asked"],
    ),
    "task_losses_averaged_per_batch": (
        TRAINER,
        "total[0] = total[0] + part_loss.detach() * count\n                total[1] = total[1] + count",
        "total[0] = total[0] + part_loss.detach()\n                total[1] = total[1] + 1",
        ["tests/test_trainer.py::test_logged_task_losses_are_means_over_labelled_examples_of_mixed_batches"],
    ),
    "int8_gate_disabled": (
        "multitask_st/export/precision_gate.py",
        '        "passed": not refusals,',
        '        "passed": True,',
        [
            "tests/test_onnx_export.py::test_the_gate_refuses_on_each_kind_of_evidence",
        ],
    ),
    # Not one of issue 15's: the race the concurrency tests were written for (threads with different `max_length`
    # swap the fast tokenizer's truncation). The tiny model's test kills it; the real-MiniLM test, cut to one round on
    # 16 texts, did not in one run (its forward passes dwarf the tokenizer calls): TESTING.md, "The suite's time".
    "tokenizer_lock_removed": (
        "multitask_st/inference_multitask_st.py",
        "    with _tokenizer_lock(tokenizer):\n        return tokenizer(",
        "    with threading.Lock():\n        return tokenizer(",
        ["tests/test_concurrency.py::test_eight_threads_with_mixed_arguments_match_sequential_calls"],
    ),
    # Not issue 15's: the frozen-layer cache (`cache_frozen_layers`) kept from the wrong layer, padded on the wrong
    # side, or resumed from the wrong input of a DistilBERT-style backbone: each must stop the run or change its
    # training.
    "frozen_cache_one_layer_late": (
        "multitask_st/training/frozen_layers.py",
        "model.backbone_layers()[depth - 1].register_forward_hook(",
        "model.backbone_layers()[depth].register_forward_hook(",
        [
            "tests/test_frozen_layers.py::test_a_cached_run_trains_as_the_uncached_run_without_running_the_frozen_layers"
        ],
    ),
    "frozen_cache_padded_right_always": (
        "multitask_st/training/collator.py",
        'if self.tokenizer.padding_side == "left":',
        "if False:",
        ["tests/test_frozen_layers.py::test_the_collator_pads_the_cached_states_as_the_tokens"],
    ),
    "frozen_cache_first_positional_argument": (
        "multitask_st/training/frozen_layers.py",
        "next(arg for arg in args if isinstance(arg, torch.Tensor) and arg.is_floating_point())",
        "args[0]",
        ["tests/test_frozen_layers.py::test_a_distilbert_backbone_resumes_from_its_cache"],
    ),
}
COPIED = [
    "multitask_st",
    "tests",
    "train.py",
    "export.py",
    "push_to_hub.py",
    "app.py",
    "model_card.md",
    "pyproject.toml",
]


def check(name: str) -> tuple[bool, str]:
    """True when the bug is killed: every named test module run fails (the test fails on the bug)."""
    file, text, replacement, tests = BUGS[name]
    with tempfile.TemporaryDirectory(prefix=f"bug-{name}-") as temporary:
        copy = Path(temporary)
        for entry in COPIED:
            source = ROOT / entry
            if source.is_dir():
                shutil.copytree(source, copy / entry, ignore=shutil.ignore_patterns("__pycache__", "mutation"))
            else:
                shutil.copy2(source, copy / entry)
        target = copy / file
        source_text = target.read_text(encoding="utf-8")
        if source_text.count(text) != 1:
            return False, f"the text to break is not in {file} exactly once: update BUGS"
        target.write_text(source_text.replace(text, replacement), encoding="utf-8")
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        env.update(HF_HUB_OFFLINE="1", PYTHONPATH=str(copy))  # the broken copy, not the installed package
        outcomes = []
        for test in tests:
            run = subprocess.run(
                [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", test],
                cwd=copy, env=env, capture_output=True, text=True, timeout=1200,
            )  # fmt: skip
            summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-300:]
            outcomes.append((run.returncode == 1, f"{test}: {summary}"))
        return all(killed for killed, _ in outcomes), "; ".join(line for _, line in outcomes)


def main(argv: list[str]) -> int:
    names = argv or list(BUGS)
    survived = []
    for name in names:
        killed, detail = check(name)
        print(f"{'killed  ' if killed else 'SURVIVED'} {name}: {detail}", flush=True)
        if not killed:
            survived.append(name)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
