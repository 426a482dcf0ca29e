"""The Gradio Space for a pushed model: `push_space` (Hub calls mocked) and `push_to_hub.py --space` (offline)."""

from pathlib import Path
from unittest import mock

from huggingface_hub import CommitInfo, HfApi, RepoUrl, SpaceCard

from multitask_st.cli import push as push_cli
from multitask_st.sharing.space import DEMO_MODULE, push_space


ROOT = Path(__file__).resolve().parents[1]
SPACE_FILES = ["README.md", "app.py", "corpus.json", DEMO_MODULE, "requirements.txt"]


def test_push_space_creates_a_gradio_space_and_uploads_the_staged_folder():
    uploaded = {}

    def upload_folder(self, *, folder_path, **kwargs):
        uploaded.update(kwargs, files=sorted(path.name for path in Path(folder_path).iterdir()))
        uploaded["app"] = (Path(folder_path) / "app.py").read_text()
        url = "https://huggingface.co/spaces/org/demo/commit/abc"
        return CommitInfo(commit_url=url, commit_message="m", commit_description="", oid="abc")

    with (
        mock.patch.object(HfApi, "create_repo", autospec=True, return_value=RepoUrl("https://huggingface.co/spaces/org/demo")) as create_repo,
        mock.patch.object(HfApi, "upload_folder", autospec=True, side_effect=upload_folder),
    ):  # fmt: skip
        commit = push_space("org/demo", "org/model", revision="f00d", token="hf_x", corpus=["a text"])
    assert commit.oid == "abc"
    kwargs = create_repo.call_args.kwargs
    assert (kwargs["repo_type"], kwargs["space_sdk"], kwargs["exist_ok"]) == ("space", "gradio", True)
    assert uploaded["repo_type"] == "space" and uploaded["repo_id"] == "org/demo"
    assert uploaded["files"] == SPACE_FILES
    assert "MODEL_ID = 'org/model'" in uploaded["app"] and "REVISION = 'f00d'" in uploaded["app"]


def test_cli_dry_run_stages_the_model_and_the_space(trained, tmp_path, capsys):
    cli = push_cli
    code = cli.main(
        [
            str(trained.model_dir), "--dry-run", "--repo-id", "org/model", "--stage-dir", str(tmp_path / "model"),
            "--space", "org/demo", "--space-stage-dir", str(tmp_path / "space"),
        ]
    )  # fmt: skip
    assert code == 0
    assert sorted(path.name for path in (tmp_path / "space").iterdir()) == SPACE_FILES
    assert SpaceCard.load(tmp_path / "space" / "README.md").data.models == ["org/model"]
    assert "staged the Space org/demo for org/model" in capsys.readouterr().out


def test_cli_space_needs_the_model_repo_and_a_direct_commit(trained, capsys):
    cli = push_cli
    assert cli.main([str(trained.model_dir), "--dry-run", "--space", "org/demo"]) == 1
    assert "--space needs --repo-id" in capsys.readouterr().err
    assert cli.main([str(trained.model_dir), "--repo-id", "org/m", "--create-pr", "--space", "org/demo"]) == 1
    assert "cannot follow --create-pr" in capsys.readouterr().err


def test_cli_pins_the_space_to_the_model_commit_it_just_pushed(trained, tmp_path, capsys, monkeypatch):
    """`push_to_hub.py --space`: the Space's app.py serves the model at the commit of this push, not at `main`."""
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)  # every Hub call below is mocked
    uploads = []

    def upload_folder(self, *, folder_path, repo_id, repo_type=None, **kwargs):
        oid = "5pace" if repo_type == "space" else "c0ffee1234"
        app = Path(folder_path) / "app.py"
        uploads.append((repo_id, repo_type, app.read_text() if app.exists() else None, kwargs.get("revision")))
        url = f"https://huggingface.co/{repo_id}/commit/{oid}"
        return CommitInfo(commit_url=url, commit_message="m", commit_description="", oid=oid)

    def create_repo(self, repo_id, **kwargs):
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    with (
        mock.patch.object(HfApi, "create_repo", autospec=True, side_effect=create_repo),
        mock.patch.object(HfApi, "upload_folder", autospec=True, side_effect=upload_folder),
    ):
        code = push_cli.main(
            [str(trained.model_dir), "--repo-id", "org/model", "--space", "org/demo", "--token", "hf_x",
             "--space-stage-dir", str(tmp_path / "space")]
        )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    (model_repo, _, _, _), (space_repo, space_type, space_app, _) = uploads
    assert (model_repo, space_repo, space_type) == ("org/model", "org/demo", "space")
    assert "MODEL_ID = 'org/model'" in space_app and "REVISION = 'c0ffee1234'" in space_app
    assert "commit `c0ffee1234`" in (tmp_path / "space" / "README.md").read_text()
    assert 'Pin this version with revision="c0ffee1234".' in capsys.readouterr().out
