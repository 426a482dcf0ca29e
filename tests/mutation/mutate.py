"""Mutation testing of the modules where a wrong number hides easily, one module at a time (`make mutate`).

    python tests/mutation/mutate.py                   # every module below, one after the other
    python tests/mutation/mutate.py metrics sampling  # some of them
    MUTATE_JOBS=2 python tests/mutation/mutate.py     # mutants run in parallel (default 1: the cores are shared)
    MUTATE_TESTS_FROM=/tmp/old MUTATE_REPORT=before python tests/mutation/mutate.py   # score an older tests/

Each module runs in its own scratch copy of the repository (`build/mutation/<module>/`, mutmut's `mutants/` inside),
with a mutmut configuration that mutates only that module's file(s) and runs only its fast tests, so a module takes
minutes, not the hours the whole package and suite would. mutmut 3 was chosen over cosmic-ray and pytest-gremlins for
that: it imports torch and collects the tests once, then forks a child per mutant that runs only the tests which
executed the mutated function (stopping at the first failure), where cosmic-ray starts a fresh pytest, and so a fresh
`import torch` (seconds), for every mutant.

The report goes to `build/mutation/report.md` (and `report.json`): per module, killed / survived / timeout /
no-tests counts and the score, then every surviving mutant as a diff. Survivors we keep on purpose are explained in
TESTING.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "mutation"

# module -> (files to mutate, mutant-name globs (None: every function of those files), fast tests that cover them).
# Function globs keep a big file to the part the module's tests are about (mutmut names a method
# `module.xǁClassǁmethod__mutmut_N` and a function `module.x_function__mutmut_N`).
TRAINER = "multitask_st.training.trainer"
MODULES: dict[str, tuple[list[str], list[str] | None, list[str]]] = {
    "loss": (
        ["multitask_st/losses_multitask_st.py"],
        None,
        # every kind's loss: the classification tests, the other kinds' hand computations, the held-head losses, and
        # the losses' edges on constructed outputs (test_losses.py, every test of which matches "loss")
        [
            "tests/test_modeling.py",
            "tests/test_task_kinds.py",
            "tests/test_pair_kinds.py",
            "tests/test_losses.py",
            "-k",
            "loss or labels",
        ],
    ),
    "task_logging": (
        ["multitask_st/training/trainer.py"],
        [
            f"{TRAINER}.xǁMultiTaskTrainerǁcompute_loss__mutmut_*",
            f"{TRAINER}.xǁMultiTaskTrainerǁ_pop_task_losses__mutmut_*",
        ],
        # with the tests that run the loss's distillation branches (embedding distillation, held heads)
        [
            "tests/test_trainer.py",
            "tests/test_distillation.py",
            "tests/test_add_task.py",
            "-k",
            "logged or per_task or evaluate_with or training_loss or held",
        ],
    ),
    "parameter_groups": (
        ["multitask_st/training/parameter_groups.py", "multitask_st/training/trainer.py"],
        [
            "multitask_st.training.parameter_groups.x_learning_rate_scale__mutmut_*",
            "multitask_st.training.parameter_groups.x_build_parameter_groups__mutmut_*",
            f"{TRAINER}.xǁMultiTaskTrainerǁcreate_optimizer__mutmut_*",
        ],
        ["tests/test_trainer.py", "-k", "group or optimizer or multipliers or frozen_parameters"],
    ),
    "sampler_wiring": (
        ["multitask_st/training/trainer.py"],
        [f"{TRAINER}.xǁMultiTaskTrainerǁ_get_train_sampler__mutmut_*"],
        ["tests/test_trainer.py", "-k", "task_mix or by_length or per_task_losses or frozen_parts or train_sampler"],
    ),
    "metrics": (
        ["multitask_st/training/metrics.py"],
        None,
        ["tests/test_metrics.py", "tests/test_trainer.py", "-k", "metric or stsb or spearman or f1"],
    ),
    "sampling": (["multitask_st/training/sampling.py"], None, ["tests/test_sampling.py"]),
    "unfreezing": (
        ["multitask_st/training/callbacks.py"],
        None,
        ["tests/test_trainer.py", "-k", "unfreez or stage or frozen or freeze"],
    ),
    # with the held heads' losses, whose hand computations are in test_add_task.py
    "distillation": (
        ["multitask_st/training/distillation.py"],
        None,
        ["tests/test_distillation.py", "tests/test_add_task.py", "-k", "distillation or held_heads"],
    ),
    # The int8 gate in two parts, each tested in seconds on constructed numbers: its statistics, and its verdict on a
    # candidate's outputs (`judge_outputs` and the decisions it compares; `judge_graph` only runs a graph to get them,
    # which test_onnx_export.py covers on real graphs). quantize.py's graph search is tested by its outcome only.
    "gate_statistics": (["multitask_st/export/gate_statistics.py"], None, ["tests/test_gate_statistics.py"]),
    "int8_gate": (
        ["multitask_st/export/precision_gate.py", "multitask_st/export/onnx_check.py"],
        [
            *(f"multitask_st.export.precision_gate.x_{name}__mutmut_*" for name in ("judge_outputs", "_config_view")),
            *(
                f"multitask_st.export.onnx_check.x_{name}__mutmut_*"
                for name in ("decisions_of_outputs", "decisions_of_predictions", "_target_std", "row_cosines")
            ),
        ],  # fmt: skip
        ["tests/test_gate_verdict.py"],
    ),
    "staging": (
        ["multitask_st/sharing/staging.py"],
        None,
        # with the one test that stages an ONNX export (onnx/ files are staged at their own depth)
        [
            "tests/test_staging.py",
            "tests/test_push_to_hub.py",
            "tests/test_onnx_export.py::test_staging_uploads_the_export_and_the_card_shows_it",
        ],
    ),
}
# Copied into each scratch folder (besides the mutated package): what the tests import or read.
ALSO_COPY = [
    "tests",
    "train.py",
    "export.py",
    "push_to_hub.py",
    "app.py",
    "model_card.md",
    "README.md",
    "pyproject.toml",
]


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(value) for value in values) + "]"


def prepare(module: str, tests_from: Path) -> Path:
    files, _, tests = MODULES[module]
    folder = BUILD / os.environ.get("MUTATE_REPORT", "report") / module
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    shutil.copytree(ROOT / "multitask_st", folder / "multitask_st", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ALSO_COPY:
        source = (tests_from if name == "tests" else ROOT) / name
        if source.is_dir():
            shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("__pycache__", "mutation"))
        elif source.exists():
            shutil.copy2(source, folder / name)
    pyproject = (folder / "pyproject.toml").read_text(encoding="utf-8")
    pyproject += (
        "\n[tool.mutmut]\n"
        'source_paths = ["multitask_st"]\n'
        f"only_mutate = {_toml_list(files)}\n"
        f"also_copy = {_toml_list([name for name in ALSO_COPY if name != 'pyproject.toml'])}\n"
        # the fast tests only; mutmut adds -x (stop at the first failure)
        f"pytest_add_cli_args_test_selection = {_toml_list(_existing(tests, folder))}\n"
        f'pytest_add_cli_args = ["-m", "not slow", "-p", "no:cacheprovider", "-W", "ignore"]\n'
        "use_git_change_detection = false\n"
    )
    (folder / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    return folder


def _existing(tests: list[str], folder: Path) -> list[str]:
    """The test selection less test files this copy of the tests does not have (measuring an older suite)."""
    kept = [arg for arg in tests if not arg.startswith("tests/") or (folder / arg.split("::")[0]).exists()]
    return kept if any(arg.startswith("tests/") for arg in kept) else ["tests", *kept]


def run(module: str, jobs: int, tests_from: Path = ROOT) -> dict:
    folder = prepare(module, tests_from)
    _, globs, _ = MODULES[module]
    mutmut = Path(sys.executable).parent / "mutmut"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    start = time.monotonic()
    log = folder / "mutmut.log"
    with open(log, "w") as output:
        subprocess.run(
            [str(mutmut), "run", "--max-children", str(jobs), *(globs or [])],
            cwd=folder, env=env, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
    seconds = time.monotonic() - start
    listing = subprocess.run(
        [str(mutmut), "results", "--all", "true"], cwd=folder, env=env, capture_output=True, text=True, check=False
    ).stdout
    statuses: dict[str, str] = {}
    for line in listing.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name and _selected(name, globs):
            statuses[name] = status.strip()
    survivors = {}
    for name, status in statuses.items():
        if status == "survived":
            survivors[name] = subprocess.run(
                [str(mutmut), "show", name], cwd=folder, env=env, capture_output=True, text=True, check=False
            ).stdout
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    tested = sum(counts.get(status, 0) for status in ("killed", "survived", "timeout", "suspicious"))
    caught = sum(counts.get(status, 0) for status in ("killed", "timeout"))
    return {
        "module": module,
        "files": MODULES[module][0],
        "counts": counts,
        "score": round(caught / tested, 3) if tested else None,
        "seconds": round(seconds),
        "survivors": survivors,
        "log": str(log.relative_to(ROOT)),
    }


def _selected(name: str, globs: list[str] | None) -> bool:
    from fnmatch import fnmatchcase

    return globs is None or any(fnmatchcase(name, pattern) for pattern in globs)


def report(results: list[dict]) -> str:
    lines = ["# Mutation report", "", "| module | mutants | killed | survived | other | score | time (s) |"]
    lines.append("|---|---:|---:|---:|---|---:|---:|")
    for result in results:
        counts = result["counts"]
        other = ", ".join(f"{key} {value}" for key, value in counts.items() if key not in ("killed", "survived"))
        lines.append(
            f"| {result['module']} | {sum(counts.values())} | {counts.get('killed', 0)} | {counts.get('survived', 0)} "
            f"| {other} | {result['score']} | {result['seconds']} |"
        )
    for result in results:
        if result["survivors"]:
            lines += ["", f"## Survivors: {result['module']}", ""]
            for name, diff in result["survivors"].items():
                lines += [f"### {name}", "", "```diff", diff.strip(), "```", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    modules = argv or list(MODULES)
    unknown = sorted(set(modules) - set(MODULES))
    if unknown:
        print(f"mutate.py: unknown module(s) {unknown}; choose from {list(MODULES)}", file=sys.stderr)
        return 2
    jobs = int(os.environ.get("MUTATE_JOBS", "1"))
    # MUTATE_TESTS_FROM=<a checkout>: mutate this code but run that checkout's tests/ (the score before a change)
    tests_from = Path(os.environ.get("MUTATE_TESTS_FROM", ROOT))
    results = []
    for module in modules:
        print(f"mutating {module} ...", flush=True)
        result = run(module, jobs, tests_from)
        print(f"  {result['counts']} score {result['score']} in {result['seconds']} s", flush=True)
        results.append(result)
    BUILD.mkdir(parents=True, exist_ok=True)
    name = os.environ.get("MUTATE_REPORT", "report")
    (BUILD / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (BUILD / f"{name}.md").write_text(report(results), encoding="utf-8")
    print(f"report: {BUILD / f'{name}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
