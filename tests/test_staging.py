import json
import shutil
import textwrap
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
from conftest import copy_without, run_python
from huggingface_hub import HfApi, ModelCard, RepoUrl
from huggingface_hub.errors import LocalTokenNotFoundError, OfflineModeIsEnabled

from multitask_st.model_folder import PAYLOAD_FILES, PICKLE_PATTERNS
from multitask_st.sharing import model_dir
from multitask_st.sharing.staging import STALE_WEIGHT_PATTERNS, push_model_dir, stage_model_dir


SENTENCES = ["the team won", "stock market fell", "great movie", "bad phone launch the election vote"]


# ---------------------------------------------------------------------------------------------------- staging


def test_stage_model_dir_writes_exactly_the_upload(trained, tmp_path):
    staged = stage_model_dir(trained.model_dir, tmp_path / "stage", repo_id="org/multitask-st")

    assert staged == trained.expected_files
    on_disk = sorted(p.relative_to(tmp_path / "stage").as_posix() for p in (tmp_path / "stage").rglob("*"))
    assert on_disk == staged  # no directories either: checkpoint-*/ and runs/ stay behind
    assert not [name for name in staged if name.endswith(tuple(pattern[1:] for pattern in PICKLE_PATTERNS))]
    config = json.loads((tmp_path / "stage" / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_multitask_st.MultiTaskSTConfig",
        "AutoModel": "modeling_multitask_st.MultiTaskSTModel",
    }
    with pytest.raises(ValueError, match="must be an empty directory"):
        stage_model_dir(trained.model_dir, tmp_path / "stage")


def test_stage_model_dir_names_what_is_missing(trained, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        stage_model_dir(tmp_path / "nowhere", tmp_path / "stage")
    incomplete = copy_without(
        trained.model_dir, tmp_path / "incomplete", "tokenizer*", "vocab*", "special_tokens_map.json", PAYLOAD_FILES[1]
    )
    with pytest.raises(ValueError, match=rf"missing {PAYLOAD_FILES[1]}; tokenizer_config.json; a tokenizer vocab"):
        stage_model_dir(incomplete, tmp_path / "stage")
    # Only pickle weights: refused, with the way out.
    pickled = copy_without(trained.model_dir, tmp_path / "pickled", "model.safetensors")
    (pickled / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match=r"only pickle weights \(pytorch_model.bin\).*save_pretrained"):
        stage_model_dir(pickled, tmp_path / "stage")
    assert not (tmp_path / "stage").exists()


@pytest.mark.slow
def test_staged_folder_loads_without_the_package(trained, tmp_path):
    stage_model_dir(trained.model_dir, tmp_path / "stage")
    elsewhere = shutil.copytree(tmp_path / "stage", tmp_path / "elsewhere" / "org--multitask-st")
    expected = {
        "embeddings": trained.model.encode(SENTENCES, trained.tokenizer).tolist(),
        "predictions": trained.model.predict(SENTENCES, trained.tokenizer),
    }
    (tmp_path / "expected.json").write_text(json.dumps(expected))
    script = textwrap.dedent(
        f"""
        import json
        from transformers import AutoModel, AutoTokenizer

        model = AutoModel.from_pretrained({str(elsewhere)!r}, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained({str(elsewhere)!r})
        sentences = {SENTENCES!r}
        result = {{
            "module": type(model).__module__,
            "tasks": model.config.task_names,
            "embeddings": model.encode(sentences, tokenizer).tolist(),
            "predictions": model.predict(sentences, tokenizer),
        }}
        with open("actual.json", "w") as file:
            json.dump(result, file)
        """
    )
    # `import multitask_st` fails there: only the repository's code may run
    run = run_python(
        script, tmp_path, block=("multitask_st",), env={"HF_HOME": str(tmp_path / "hf_home")}, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]

    actual = json.loads((tmp_path / "actual.json").read_text())
    assert actual["module"].startswith("transformers_modules"), actual["module"]
    assert actual["tasks"] == trained.model.config.task_names
    np.testing.assert_allclose(actual["embeddings"], expected["embeddings"], rtol=0, atol=1e-6)
    for got, want in zip(actual["predictions"], expected["predictions"], strict=True):
        assert {task: p["label"] for task, p in got.items()} == {task: p["label"] for task, p in want.items()}
        for task in want:
            assert got[task]["probabilities"] == pytest.approx(want[task]["probabilities"], abs=1e-6)


# ---------------------------------------------------------------------------------------------------- uploading


@pytest.fixture
def online(monkeypatch):
    """The test session runs with HF_HUB_OFFLINE=1; pretend otherwise (every Hub call below is mocked)."""
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)


def test_push_model_dir_uploads_the_staged_folder(trained, tmp_path, online):
    """One commit of exactly the staged bytes, stale weights deleted; the folder is read once per push."""
    staged = stage_model_dir(trained.model_dir, tmp_path / "staged", repo_id="org/multitask-st", revision="v1")
    uploads = []

    def upload_folder(self, *, folder_path, **kwargs):
        files = {
            p.relative_to(folder_path).as_posix(): p.read_bytes() for p in Path(folder_path).rglob("*") if p.is_file()
        }
        uploads.append({"files": files, "card": files["README.md"].decode(), **kwargs})
        commit_url = "https://hf.co/org/multitask-st/commit/0123"
        return SimpleNamespace(commit_url=commit_url, pr_url="https://hf.co/pr/1" if kwargs["create_pr"] else None)

    repo_url = RepoUrl("https://huggingface.co/org/multitask-st")
    reads = mock.Mock(wraps=model_dir.load_training_summary)
    with (
        mock.patch.object(HfApi, "create_repo", autospec=True, return_value=repo_url) as create_repo,
        mock.patch.object(HfApi, "create_branch", autospec=True) as create_branch,
        mock.patch.object(HfApi, "upload_folder", autospec=True, side_effect=upload_folder),
        mock.patch.object(model_dir, "load_training_summary", reads),
    ):
        commit = push_model_dir(
            trained.model_dir,
            "org/multitask-st",
            private=True,
            revision="v1",
            commit_message="First version",
            token="hf_test",
        )
        assert reads.call_count == 1  # read and validated once, then rendered, staged and uploaded from that
        pull = push_model_dir(trained.model_dir, "org/multitask-st", create_pr=True, token="hf_test")
        with pytest.raises(ValueError, match="cannot target revision 'v1'"):
            push_model_dir(trained.model_dir, "org/multitask-st", revision="v1", create_pr=True, token="hf_test")

    assert create_repo.call_args_list == [
        mock.call(mock.ANY, "org/multitask-st", private=True, exist_ok=True),
        mock.call(mock.ANY, "org/multitask-st", private=False, exist_ok=True),
    ]
    create_branch.assert_called_once_with(mock.ANY, "org/multitask-st", branch="v1", exist_ok=True)
    upload, pull_request = uploads
    assert sorted(upload["files"]) == sorted(pull_request["files"]) == staged == trained.expected_files
    for name in staged:  # the bytes uploaded are the staged bytes
        assert upload["files"][name] == (tmp_path / "staged" / name).read_bytes(), name
    assert upload["repo_id"] == "org/multitask-st"
    assert (upload["revision"], upload["create_pr"], upload["commit_message"]) == ("v1", False, "First version")
    assert (pull_request["revision"], pull_request["create_pr"]) == (None, True)
    assert pull_request["commit_message"] == "Upload multitask-st model"
    # Stale weights go: a re-upload deletes the remote weight files this commit does not replace.
    assert upload["delete_patterns"] == pull_request["delete_patterns"] == STALE_WEIGHT_PATTERNS
    assert STALE_WEIGHT_PATTERNS == [
        "*.safetensors",
        "*.safetensors.index.json",
        "onnx/*.onnx",
        "onnx/export_report.json",
    ]
    assert 'repo_id = "org/multitask-st"' in upload["card"] and 'revision = "v1"' in upload["card"]
    assert (commit.commit_url, commit.pr_url) == ("https://hf.co/org/multitask-st/commit/0123", None)
    assert pull.pr_url == "https://hf.co/pr/1"


def test_push_model_dir_fails_before_the_network(trained, monkeypatch, tmp_path):
    with mock.patch.object(HfApi, "create_repo", autospec=True) as create_repo:
        with pytest.raises(OfflineModeIsEnabled):
            push_model_dir(trained.model_dir, "org/multitask-st", token="hf_test")
        monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "no-token"))
        with (
            mock.patch("multitask_st.sharing.staging.get_token", return_value=None),
            pytest.raises(LocalTokenNotFoundError),
        ):
            push_model_dir(trained.model_dir, "org/multitask-st")
    create_repo.assert_not_called()


def test_model_push_to_hub_carries_the_remote_code(trained, online):
    """transformers' own `push_to_hub` (save_pretrained into a temporary folder, then one commit) ships the payload."""
    commits = []

    def create_commit(self, repo_id, operations, **kwargs):
        files = {op.path_in_repo: op.path_or_fileobj for op in operations}
        commits.append({"files": sorted(files), "config": json.loads(Path(files["config.json"]).read_text())})
        return SimpleNamespace(commit_url="https://hf.co/org/multitask-st/commit/1")

    repo_url = RepoUrl("https://huggingface.co/org/multitask-st")
    with (
        mock.patch.object(HfApi, "create_repo", autospec=True, return_value=repo_url),
        mock.patch.object(HfApi, "create_commit", autospec=True, side_effect=create_commit),
        mock.patch("transformers.utils.hub.create_and_tag_model_card", return_value=ModelCard("---\n---\n")),
    ):
        trained.model.push_to_hub("org/multitask-st", token="hf_test")

    [commit] = commits
    assert set(PAYLOAD_FILES) | {"config.json", "model.safetensors"} <= set(commit["files"])
    assert commit["config"]["auto_map"]["AutoModel"] == "modeling_multitask_st.MultiTaskSTModel"
    assert commit["config"]["auto_map"]["AutoConfig"] == "configuration_multitask_st.MultiTaskSTConfig"


def test_a_stage_dir_left_inside_the_model_folder_is_not_staged(trained, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(trained.model_dir, model_dir)
    # What an earlier `push_to_hub.py --dry-run --stage-dir model/onnx/stage` (or a copy of the folder) leaves behind.
    for leftover in ("onnx/stage/onnx/model.onnx", "onnx/stage/config.json", "stage/training_loss.png"):
        (model_dir / leftover).parent.mkdir(parents=True, exist_ok=True)
        (model_dir / leftover).write_bytes(b"a file of the earlier stage")
    (model_dir / "training_loss.png").write_bytes(b"the run's own plot")
    staged = stage_model_dir(model_dir, tmp_path / "stage")
    assert staged == sorted([*trained.expected_files, "training_loss.png"])


def test_symlinked_weights_are_staged_as_real_files_into_a_new_nested_folder(trained, tmp_path):
    folder = shutil.copytree(trained.model_dir, tmp_path / "model")
    elsewhere = tmp_path / "store" / "weights.safetensors"
    elsewhere.parent.mkdir()
    shutil.move(folder / "model.safetensors", elsewhere)
    (folder / "model.safetensors").symlink_to(elsewhere)
    stage = tmp_path / "a" / "b" / "stage"  # not there yet, nor its parents
    staged = stage_model_dir(folder, stage)
    assert "model.safetensors" in staged
    weights = stage / "model.safetensors"
    assert weights.is_file() and not weights.is_symlink() and weights.read_bytes() == elsewhere.read_bytes()
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "taken.txt").write_text("x")
    with pytest.raises(ValueError, match=r"`stage_dir` '.*c' must be an empty directory or not exist yet"):
        stage_model_dir(folder, tmp_path / "c")


@pytest.mark.parametrize(
    "revision, branch_created", [(None, False), ("main", False), ("refs/pr/3", False), ("v2", True)]
)
def test_push_uses_the_token_and_creates_only_a_missing_branch(trained, online, revision, branch_created):
    commit = SimpleNamespace(commit_url="https://hf.co/org/m/commit/1", pr_url=None)
    with (
        mock.patch.object(HfApi, "create_repo", autospec=True, return_value=RepoUrl("https://huggingface.co/org/m")) as create_repo,
        mock.patch.object(HfApi, "create_branch", autospec=True) as create_branch,
        mock.patch.object(HfApi, "upload_folder", autospec=True, return_value=commit) as upload_folder,
    ):  # fmt: skip
        push_model_dir(trained.model_dir, "org/m", revision=revision, token="hf_secret")
    api = create_repo.call_args.args[0]
    assert api.token == "hf_secret" and api.library_name == "multitask-st"
    assert create_branch.called is branch_created
    assert upload_folder.call_args.kwargs["revision"] == revision


# ---------------------------------------------------------------------------------------------------- what staging says and keeps


def _log_lines(logger_name: str) -> tuple[list[str], object]:
    """The messages a package logger emits at INFO, whatever the root logger's and the CLI's settings."""
    import logging

    lines = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    return lines, lambda: (logger.removeHandler(handler), logger.setLevel(previous))


def test_staging_names_what_it_leaves_out_and_copies_the_files_a_user_may_edit(trained, tmp_path):
    import os

    folder = shutil.copytree(trained.model_dir, tmp_path / "model")
    (folder / "README.md").write_text("the directory's own card")
    lines, restore = _log_lines("multitask_st.sharing.staging")
    try:
        staged = stage_model_dir(folder, tmp_path / "stage")
    finally:
        restore()
    left_out = (
        "all_results.json, checkpoint-5/, optimizer.pt, rng_state.pth, runs/, trainer_state.json, training_args.bin"
    )
    assert lines == [
        "The directory's own README.md is replaced by the rendered card.",
        f"Not uploading these entries of {folder}: {left_out}.",
        f"Staged {len(staged)} files in {tmp_path / 'stage'}.",
    ]
    # Weights are hard-linked (gigabytes, never edited in place); every other file is a copy, so editing the staged
    # card or config leaves the model folder as it was.
    for name in staged:
        linked = os.path.samefile(tmp_path / "stage" / name, folder / name) if (folder / name).exists() else False
        assert linked is name.endswith(".safetensors"), name


def test_the_license_language_and_template_reach_the_staged_card(trained, tmp_path):
    from conftest import REPO_ROOT

    template = tmp_path / "template.md"
    template.write_text((REPO_ROOT / "model_card.md").read_text() + "\nA line only this template has.\n")
    stage_model_dir(
        trained.model_dir, tmp_path / "stage", license="mit", language=["fr", "de"], template_path=template
    )
    card = ModelCard((tmp_path / "stage" / "README.md").read_text())
    assert (card.data.license, card.data.language) == ("mit", ["fr", "de"])
    assert "A line only this template has." in card.text


def test_push_keeps_the_stage_dir_passes_the_card_settings_and_checks_first(trained, tmp_path, online):
    commit = SimpleNamespace(commit_url="https://hf.co/org/m/commit/1", pr_url="https://hf.co/org/m/discussions/1")
    cards = []

    def upload_folder(self, *, folder_path, **kwargs):
        cards.append(ModelCard((Path(folder_path) / "README.md").read_text()))
        return commit

    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with (
        mock.patch.object(HfApi, "create_repo", autospec=True, return_value=RepoUrl("https://huggingface.co/org/m")) as create_repo,
        mock.patch.object(HfApi, "create_branch", autospec=True),
        mock.patch.object(HfApi, "upload_folder", autospec=True, side_effect=upload_folder),
    ):  # fmt: skip
        with pytest.raises(ValueError, match=r"`stage_dir` '.*taken' must be an empty directory or not exist yet"):
            push_model_dir(trained.model_dir, "org/m", token="hf_test", stage_dir=tmp_path / "taken")
        create_repo.assert_not_called()
        lines, restore = _log_lines("multitask_st.sharing.staging")
        try:  # a pull request against "main" by name is the default branch's
            push_model_dir(trained.model_dir, "org/m", token="hf_test", stage_dir=tmp_path / "kept", create_pr=True,
                           revision="main", license="mit", language="fr")  # fmt: skip
        finally:
            restore()
    kept = sorted(p.relative_to(tmp_path / "kept").as_posix() for p in (tmp_path / "kept").rglob("*"))
    assert kept == trained.expected_files  # the staged folder stays where it was asked to be
    assert (cards[0].data.license, cards[0].data.language) == ("mit", "fr")
    assert lines[-2:] == [
        f"Uploading {len(kept)} files to org/m: {', '.join(kept)}.",
        "Pushed org/m: https://hf.co/org/m/discussions/1",  # the pull request, when there is one
    ]


def test_push_errors_say_what_to_do(trained, monkeypatch, tmp_path):
    from huggingface_hub.errors import HFValidationError

    with pytest.raises(HFValidationError, match="'org/bad--id'"):  # checked here too, not only by the CLI
        push_model_dir(trained.model_dir, "org/bad--id", token="hf_test")
    with pytest.raises(OfflineModeIsEnabled) as error:
        push_model_dir(trained.model_dir, "org/multitask-st", token="hf_test")
    assert str(error.value) == (
        "Cannot push to the Hub: offline mode is enabled (HF_HUB_OFFLINE=1). Unset HF_HUB_OFFLINE, or only stage "
        "the files with `stage_model_dir`."
    )
    with pytest.raises(ValueError) as error:
        push_model_dir(trained.model_dir, "org/multitask-st", revision="v1", create_pr=True, token="hf_test")
    assert str(error.value) == (
        "`create_pr` opens a pull request against the default branch; it cannot target revision 'v1'. "
        "Pass one of the two."
    )
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    with mock.patch("multitask_st.sharing.staging.get_token", return_value=None), pytest.raises(
        LocalTokenNotFoundError
    ) as error:  # fmt: skip
        push_model_dir(trained.model_dir, "org/multitask-st")
    assert str(error.value) == (
        "No Hugging Face token: run `hf auth login`, set the HF_TOKEN environment variable or pass `token`."
    )
