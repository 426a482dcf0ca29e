import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from conftest import copy_without
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from multitask_st.cli import push as push_cli


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_token(monkeypatch, tmp_path):
    """No HF_TOKEN and no stored login."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "no-token"))


@pytest.mark.parametrize(
    "case, expected",
    [
        ("offline", "offline mode is enabled"),
        ("no token", "not logged in"),
        ("no dir", "does not exist"),
        ("incomplete", "missing model.safetensors"),
        ("no repo id", "--repo-id is required"),
    ],
)
def test_cli_errors_are_one_line(case, expected, trained, tmp_path, monkeypatch, no_token, capsys):
    incomplete = copy_without(trained.model_dir, tmp_path / "incomplete", "model.safetensors")
    argv = {
        "offline": [str(trained.model_dir), "--repo-id", "org/m"],
        "no token": [str(trained.model_dir), "--repo-id", "org/m"],
        "no dir": [str(tmp_path / "nowhere"), "--repo-id", "org/m"],
        "incomplete": [str(incomplete), "--dry-run"],
        "no repo id": [str(trained.model_dir)],
    }[case]
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", case == "offline")
    with mock.patch.object(HfApi, "create_repo", autospec=True) as create_repo:
        code = push_cli.main(argv)

    stderr = capsys.readouterr().err
    assert code != 0
    assert stderr.count("\n") == 1 and stderr.startswith("multitask-st push: error: ") and expected in stderr, stderr
    create_repo.assert_not_called()


def test_cli_maps_hub_errors_to_one_line():
    cli = push_cli
    args = cli.parse_args(["model", "--repo-id", "org/m"])

    def message(status: int) -> str:
        return cli._error_message(
            HfHubHTTPError(f"{status} error\nmore", response=mock.Mock(status_code=status)), args
        )

    assert "401 Unauthorized" in message(401) and "--token" in message(401)
    assert "403 Forbidden" in message(403) and "'org/m'" in message(403)
    assert message(500) == "the Hub answered 500: 500 error more"
    assert cli._error_message(RuntimeError("a bug"), args) is None  # bugs keep their traceback


@pytest.mark.slow
def test_cli_in_a_subprocess(trained, tmp_path):
    """The real command: a dry run stages and uploads nothing; a push without a login fails in one line, no traceback."""
    empty_home = tmp_path / "empty_hf_home"
    empty_home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "PYTHONPATH")}
    # No stored login; and should anything still try the network, it fails at once instead of hanging.
    env.update(HF_HOME=str(empty_home), HF_TOKEN_PATH=str(empty_home / "token"), HF_ENDPOINT="http://127.0.0.1:9")
    command = [sys.executable, str(ROOT / "push_to_hub.py"), str(trained.model_dir)]
    runs = {  # started together: each mostly waits for torch and transformers to import
        "dry run": subprocess.Popen(
            [*command, "--dry-run", "--stage-dir", "staged"],
            env={**env, "HF_HUB_OFFLINE": "1"},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),
        "no token": subprocess.Popen(
            [*command, "--repo-id", "org/multitask-st"],
            env={**env, "HF_HUB_OFFLINE": "0"},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),
    }
    outputs = {name: (*run.communicate(timeout=120), run.returncode) for name, run in runs.items()}

    stdout, stderr, code = outputs["dry run"]
    assert code == 0, stderr
    assert sorted(p.name for p in (tmp_path / "staged").iterdir()) == trained.expected_files
    assert all(f"  {name}\n" in stdout for name in trained.expected_files) and "nothing uploaded" in stdout
    assert "checkpoint-5/" in stdout  # what stays behind is said
    stdout, stderr, code = outputs["no token"]
    assert code == 1 and "Traceback" not in stderr
    assert stderr.splitlines() == [
        "push_to_hub.py: error: not logged in to the Hugging Face Hub: run `hf auth login`, set HF_TOKEN or pass --token."
    ]


@pytest.mark.parametrize("flag", ["--repo-id", "--space"])
@pytest.mark.parametrize("dry_run", [True, False])
def test_a_bad_repo_id_or_space_name_is_refused_before_anything_is_staged_or_pushed(
    flag, dry_run, trained, tmp_path, no_token, capsys
):
    names = {"--repo-id": "org/model", "--space": "org/demo", flag: "bad name!!"}
    argv = [str(trained.model_dir), "--repo-id", names["--repo-id"], "--space", names["--space"]]
    argv += ["--stage-dir", str(tmp_path / "stage")] + (["--dry-run"] if dry_run else ["--token", "hf_x"])
    with mock.patch.object(HfApi, "create_repo", autospec=True) as create_repo:
        assert push_cli.main(argv) == 1
    stderr = capsys.readouterr().err
    assert stderr.startswith(f"multitask-st push: error: invalid {flag} 'bad name!!': Repo id must")
    assert stderr.count("\n") == 1
    assert not (tmp_path / "stage").exists()
    create_repo.assert_not_called()
