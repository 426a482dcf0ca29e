import base64
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import torch
from conftest import tiny_config
from huggingface_hub import HfApi, ModelCard, RepoUrl
from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

from multitask_st import MultiTaskSTModel
from multitask_st.sharing.model_card import render_model_card
from multitask_st.sharing.model_dir import PAYLOAD_FILES, PICKLE_SUFFIXES
from multitask_st.sharing.staging import push_model_dir, stage_model_dir


ROOT = Path(__file__).resolve().parents[1]
SENTENCES = ["the team won", "stock market fell", "great movie", "bad phone launch the election vote"]
SUMMARY = {
    "base_model": "sentence-transformers/all-MiniLM-L6-v2",
    "datasets": {
        "topic": {
            "name": "ag_news_tiny",
            "hub_id": "org/ag-news-tiny",
            "description": "News | topics",
            "num_train": 9,
        },
        "sentiment": {"name": "local_reviews", "hub_id": None, "source": "pkg==1.0", "num_train": 7},
    },
    "metrics": {
        "validation": {
            "eval_topic_accuracy": 0.91,
            "eval_topic_f1": 0.9,
            "eval_sentiment_accuracy": 0.81,
            "eval_sentiment_f1": 0.8,
            "eval_stsb_spearman": 0.77,
            "eval_loss": 0.5,
        },
        "test": {"test_topic_accuracy": 0.88, "test_topic_f1": 0.87, "test_loss": 0.6},
    },
    "training": {"learning_rate": 5e-5, "task_loss_weights": {"topic": 1.0, "sentiment": 0.5}, "freeze": ["backbone"]},
    "framework_versions": {"transformers": "5.24.0"},
}
TRAINER_LEFTOVERS = ["training_args.bin", "trainer_state.json", "optimizer.pt", "rng_state.pth", "all_results.json"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_tokenizer) -> SimpleNamespace:
    """A saved model directory as train.py leaves it: model, tokenizer, summary, and Trainer leftovers."""
    model_dir = tmp_path_factory.mktemp("hub") / "model"
    torch.manual_seed(0)
    model = MultiTaskSTModel(tiny_config()).eval()
    model.save_pretrained(model_dir)
    tokenizer_files = [Path(path).name for path in tiny_tokenizer.save_pretrained(model_dir) if Path(path).is_file()]
    (model_dir / "training_summary.json").write_text(json.dumps(SUMMARY))
    for name in TRAINER_LEFTOVERS:
        (model_dir / name).write_bytes(b"leftover")
    (model_dir / "checkpoint-5").mkdir()
    (model_dir / "checkpoint-5" / "pytorch_model.bin").write_bytes(b"pickle")
    (model_dir / "runs").mkdir()
    (model_dir / "runs" / "events.out.tfevents").write_bytes(b"log")
    expected_files = sorted(
        ["README.md", "config.json", *PAYLOAD_FILES, "model.safetensors", *tokenizer_files, "training_summary.json"]
    )
    return SimpleNamespace(model_dir=model_dir, model=model, tokenizer=tiny_tokenizer, expected_files=expected_files)


def _copy_without(model_dir: Path, target: Path, *names: str) -> Path:
    shutil.copytree(model_dir, target, ignore=shutil.ignore_patterns(*names))
    return target


# ---------------------------------------------------------------------------------------------------- staging


def test_stage_model_dir_writes_exactly_the_upload(trained, tmp_path):
    staged = stage_model_dir(trained.model_dir, tmp_path / "stage", repo_id="org/multitask-st")

    assert staged == trained.expected_files
    on_disk = sorted(p.relative_to(tmp_path / "stage").as_posix() for p in (tmp_path / "stage").rglob("*"))
    assert on_disk == staged  # no directories either: checkpoint-*/ and runs/ stay behind
    assert not [name for name in staged if name.endswith(PICKLE_SUFFIXES)]
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
    incomplete = _copy_without(
        trained.model_dir, tmp_path / "incomplete", "tokenizer*", "vocab*", "special_tokens_map.json", PAYLOAD_FILES[1]
    )
    with pytest.raises(ValueError, match=rf"missing {PAYLOAD_FILES[1]}; tokenizer_config.json; a tokenizer vocab"):
        stage_model_dir(incomplete, tmp_path / "stage")
    # Only pickle weights: refused, with the way out.
    pickled = _copy_without(trained.model_dir, tmp_path / "pickled", "model.safetensors")
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
        import sys
        sys.modules["multitask_st"] = None  # `import multitask_st` now fails: only the repository's code may run
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
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"), HF_MODULES_CACHE=str(tmp_path / "modules"))
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
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


# ---------------------------------------------------------------------------------------------------- the card


def test_model_card_metadata_and_body(trained):
    text = render_model_card(trained.model_dir, repo_id="org/multitask-st", revision="abc123")
    card = ModelCard(text, ignore_metadata_errors=False)  # parses and validates the metadata as the Hub library does
    data = card.data.to_dict()

    assert data["library_name"] == "transformers"
    assert data["pipeline_tag"] == "text-classification"
    assert {"multitask-st", "sentence-embeddings", "custom_code"} <= set(data["tags"])
    assert data["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert data["datasets"] == ["org/ag-news-tiny"]  # the dataset without a Hub id is not listed
    assert data["license"] and data["language"]

    results = data["model-index"][0]["results"]
    classification = [r for r in results if r["task"]["type"] == "text-classification"]
    assert [r["dataset"]["name"] for r in classification] == ["ag_news_tiny", "local_reviews"]  # one per task
    metrics = {
        (r["dataset"]["name"], r["dataset"]["split"]): {m["type"]: m["value"] for m in r["metrics"]}
        for r in classification
    }
    assert metrics == {
        ("ag_news_tiny", "test"): {"accuracy": 0.88, "f1": 0.87},  # the test split when recorded...
        ("local_reviews", "validation"): {"accuracy": 0.81, "f1": 0.8},  # ...else validation
    }
    similarity = [r for r in results if r["task"]["type"] == "sentence-similarity"]
    assert [m["value"] for r in similarity for m in r["metrics"]] == [0.77]

    config = trained.model.config
    for task, labels in config.tasks.items():
        assert f"| `{task}` | {len(labels)} | {', '.join(labels)} |" in card.text
    assert 'revision = "abc123"' in card.text and 'repo_id = "org/multitask-st"' in card.text
    assert "trust_remote_code=True" in card.text and "model.predict(" in card.text
    assert "News \\| topics" in card.text  # table cells escape pipes
    assert "| `sentiment` | local_reviews | Source: pkg==1.0. | 7 | not recorded | not recorded |" in card.text
    sections = [line for line in card.text.splitlines() if line.startswith("## ")]
    assert sections == [
        "## Model Details",
        "## Usage",
        "## Evaluation",
        "## Bias, Risks and Limitations",
        "## Training Details",
    ]


def test_model_card_without_training_summary(trained, tmp_path):
    model_dir = _copy_without(trained.model_dir, tmp_path / "bare", "training_summary.json")
    card = ModelCard(render_model_card(model_dir), ignore_metadata_errors=False)

    assert card.data.eval_results is None and "model-index" not in card.data.to_dict()
    assert card.data.base_model is None and card.data.datasets is None  # nothing invented
    assert "Per-task metrics: not recorded." in card.text
    assert "### Training Data\n\nNot recorded." in card.text
    assert 'repo_id = "bare"' in card.text


def test_model_card_never_publishes_a_local_path(trained, tmp_path):
    model_dir = _copy_without(trained.model_dir, tmp_path / "local", "training_summary.json")
    local_backbone = str(tmp_path / "checkpoints" / "minilm")
    summary = {"base_model": local_backbone, "datasets": {"topic": {"name": "mine", "hub_id": "/data/topics"}}}
    (model_dir / "training_summary.json").write_text(json.dumps(summary))
    text = render_model_card(model_dir)

    assert local_backbone not in text and "/data/topics" not in text
    card = ModelCard(text)
    assert card.data.base_model is None and card.data.datasets is None


# ---------------------------------------------------------------------------------------------------- uploading


@pytest.fixture
def online(monkeypatch):
    """The test session runs with HF_HUB_OFFLINE=1; pretend otherwise (every Hub call below is mocked)."""
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)


def test_push_model_dir_uploads_the_staged_folder(trained, tmp_path, online):
    uploads = []

    def upload_folder(self, *, folder_path, **kwargs):
        files = sorted(p.relative_to(folder_path).as_posix() for p in Path(folder_path).rglob("*") if p.is_file())
        card = (Path(folder_path) / "README.md").read_text()
        uploads.append({"files": files, "card": card, **kwargs})
        return SimpleNamespace(commit_url="https://hf.co/org/multitask-st/commit/1", pr_url="https://hf.co/pr/1")

    repo_url = RepoUrl("https://huggingface.co/org/multitask-st")
    with (
        mock.patch.object(HfApi, "create_repo", autospec=True, return_value=repo_url) as create_repo,
        mock.patch.object(HfApi, "create_branch", autospec=True) as create_branch,
        mock.patch.object(HfApi, "upload_folder", autospec=True, side_effect=upload_folder),
    ):
        push_model_dir(
            trained.model_dir,
            "org/multitask-st",
            private=True,
            revision="v1",
            commit_message="First version",
            token="hf_test",
        )
        push_model_dir(trained.model_dir, "org/multitask-st", create_pr=True, token="hf_test")
        with pytest.raises(ValueError, match="cannot target revision 'v1'"):
            push_model_dir(trained.model_dir, "org/multitask-st", revision="v1", create_pr=True, token="hf_test")

    assert create_repo.call_args_list == [
        mock.call(mock.ANY, "org/multitask-st", private=True, exist_ok=True),
        mock.call(mock.ANY, "org/multitask-st", private=False, exist_ok=True),
    ]
    create_branch.assert_called_once_with(mock.ANY, "org/multitask-st", branch="v1", exist_ok=True)
    upload, pull_request = uploads
    assert upload["files"] == pull_request["files"] == trained.expected_files
    assert upload["repo_id"] == "org/multitask-st"
    assert (upload["revision"], upload["create_pr"], upload["commit_message"]) == ("v1", False, "First version")
    assert (pull_request["revision"], pull_request["create_pr"]) == (None, True)
    assert 'repo_id = "org/multitask-st"' in upload["card"] and 'revision = "v1"' in upload["card"]


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


# ---------------------------------------------------------------------------------------------------- the CLI


def _load_cli():
    spec = importlib.util.spec_from_file_location("push_to_hub_cli", ROOT / "push_to_hub.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    return cli


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
    incomplete = _copy_without(trained.model_dir, tmp_path / "incomplete", "model.safetensors")
    argv = {
        "offline": [str(trained.model_dir), "--repo-id", "org/m"],
        "no token": [str(trained.model_dir), "--repo-id", "org/m"],
        "no dir": [str(tmp_path / "nowhere"), "--repo-id", "org/m"],
        "incomplete": [str(incomplete), "--dry-run"],
        "no repo id": [str(trained.model_dir)],
    }[case]
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", case == "offline")
    with mock.patch.object(HfApi, "create_repo", autospec=True) as create_repo:
        code = _load_cli().main(argv)

    stderr = capsys.readouterr().err
    assert code != 0
    assert stderr.count("\n") == 1 and stderr.startswith("push_to_hub.py: error: ") and expected in stderr, stderr
    create_repo.assert_not_called()


def test_cli_maps_hub_errors_to_one_line():
    cli = _load_cli()
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


# ---------------------------------------------------------------------------------------------------- the HTTP layer

FAKE_ENDPOINT = "https://hub.example.invalid"  # never resolves: even a leaked request could not reach anyone
FAKE_COMMIT_OID = "0123456789abcdef0123456789abcdef01234567"
# What the fake repository already holds on every branch: the commit must delete the stale shards, not re-add them.
REMOTE_FILES = ["model-00001-of-00002.safetensors", "model.safetensors.index.json", "model.safetensors", "notes.txt"]


class FakeHub:
    """The Hub endpoints a push calls, answered in memory; every request is recorded, an unknown one fails the test.

    Every file is answered `uploadMode: "regular"`, so the commit carries the files' contents and neither LFS nor xet
    storage (which `hf_xet` reaches over its own Rust HTTP client, out of this transport's reach) is involved.
    """

    def __init__(self, xet_pipeline: bool):
        self.xet_pipeline = xet_pipeline
        self.requests = []  # (method, path with the revision still quoted, query params, parsed body)
        self.commits = []  # {"revision", "params", "header", "files": {path: bytes}, "deleted"}

    def __call__(self, request):
        import httpx2

        assert f"{request.url.scheme}://{request.url.host}" == FAKE_ENDPOINT, f"unexpected host: {request.url}"
        assert request.headers.get("authorization") == "Bearer hf_fake"
        path = request.url.raw_path.decode().split("?")[0]
        params = dict(request.url.params)
        body = request.read()
        self.requests.append((request.method, path, params, body))
        route = (request.method, *path.removeprefix("/api/").split("/"))
        match route:
            case ("POST", "repos", "create"):
                payload = json.loads(body)
                name = f"{payload['organization']}/{payload['name']}"
                return httpx2.Response(200, json={"url": f"{FAKE_ENDPOINT}/{name}", "name": name})
            case ("POST", "models", _, _, "branch", _):
                return httpx2.Response(200, json={})
            case ("GET", "models", _, _, "tree", _):
                tree = [{"type": "file", "path": name, "oid": "f" * 40, "size": 1} for name in REMOTE_FILES]
                return httpx2.Response(200, json=tree)
            case ("POST", "validate-yaml"):  # the card's metadata is checked before anything is uploaded
                return httpx2.Response(200, json={"errors": [], "warnings": []})
            case ("POST", "models", _, _, "preupload", _):
                files = [
                    {"path": file["path"], "uploadMode": "regular", "shouldIgnore": False}
                    for file in json.loads(body)["files"]
                ]
                return httpx2.Response(200, json={"files": files})
            case ("POST", "models", org, name, "discussions"):  # the xet pipeline opens the PR before committing
                assert json.loads(body)["pullRequest"] is True
                return httpx2.Response(200, json={"num": 1, "url": f"{FAKE_ENDPOINT}/{org}/{name}/discussions/1"})
            case ("GET", "models", org, name, "discussions", "1"):
                return httpx2.Response(200, json=self._pull_request(f"{org}/{name}"))
            case ("POST", "models", org, name, "commit", revision):
                assert request.headers["content-type"] == "application/x-ndjson"
                return httpx2.Response(200, json=self._commit(f"{org}/{name}", revision, params, body))
        raise AssertionError(f"unexpected request: {request.method} {request.url}")

    def _commit(self, repo_id, revision, params, body):
        lines = [json.loads(line) for line in body.decode().splitlines() if line]
        assert [line["key"] for line in lines[:1]] == ["header"]
        files = {
            line["value"]["path"]: base64.b64decode(line["value"]["content"])
            for line in lines
            if line["key"] == "file"
        }
        deleted = [line["value"]["path"] for line in lines if line["key"] in ("deletedFile", "deletedFolder")]
        assert len(lines) == 1 + len(files) + len(deleted), [line["key"] for line in lines]  # no lfsFile lines
        self.commits.append(
            {"revision": revision, "params": params, "header": lines[0]["value"], "files": files, "deleted": deleted}
        )
        pull_request = f"{FAKE_ENDPOINT}/{repo_id}/discussions/1" if params.get("create_pr") == "1" else None
        return {
            "commitUrl": f"{FAKE_ENDPOINT}/{repo_id}/commit/{FAKE_COMMIT_OID}",
            "commitOid": FAKE_COMMIT_OID,
            "pullRequestUrl": pull_request,
        }

    @staticmethod
    def _pull_request(repo_id):
        return {
            "num": 1,
            "title": "pull request",
            "status": "draft",
            "isPullRequest": True,
            "createdAt": "2025-01-01T00:00:00.000Z",
            "repo": {"name": repo_id, "type": "model"},
            "events": [],
            "changes": {"base": "refs/heads/main"},
            "filesWithConflicts": [],
        }


@pytest.fixture(params=[True, False], ids=["xet pipeline", "create_commit"])
def fake_hub(request, monkeypatch, online):
    """huggingface_hub's HTTP client answered by a `FakeHub`, through both upload paths of `upload_folder`.

    With hf_xet installed `upload_folder` streams through the xet pipeline (a PR is opened explicitly, then committed
    to); without it, one `create_commit` (a PR is opened by the commit's `create_pr=1`).
    """
    # huggingface_hub 2.x talks through `httpx2` (1.x used `httpx`, 0.x `requests`): skip where it is another client.
    httpx2 = pytest.importorskip("httpx2")
    from huggingface_hub import close_session, set_client_factory
    from huggingface_hub.utils._http import default_client_factory, hf_request_event_hook
    from huggingface_hub.utils._runtime import is_xet_available

    if request.param and not is_xet_available():
        pytest.skip("hf_xet is not installed")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_DISABLE_XET", not request.param)
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", FAKE_ENDPOINT)
    hub = FakeHub(xet_pipeline=request.param)
    # The hub's own request hook stays: it is what refuses requests in offline mode.
    set_client_factory(
        lambda: httpx2.Client(transport=httpx2.MockTransport(hub), event_hooks={"request": [hf_request_event_hook]})
    )
    try:
        yield hub
    finally:
        close_session()
        set_client_factory(default_client_factory)


def test_push_through_a_mocked_http_layer(trained, tmp_path, fake_hub):
    staged = stage_model_dir(trained.model_dir, tmp_path / "staged", repo_id="org/multitask-st", revision="v1")

    commit = push_model_dir(
        trained.model_dir,
        "org/multitask-st",
        private=True,
        revision="v1",
        commit_message="First version",
        token="hf_fake",
        stage_dir=tmp_path / "stage",
    )

    routes = [(method, path) for method, path, _, _ in fake_hub.requests]
    assert routes[:2] == [("POST", "/api/repos/create"), ("POST", "/api/models/org/multitask-st/branch/v1")]
    create = json.loads(fake_hub.requests[0][3])
    assert (create["organization"], create["name"], create["visibility"]) == ("org", "multitask-st", "private")
    assert ("GET", "/api/models/org/multitask-st/tree/v1") in routes  # where the stale weights are looked up
    assert ("POST", "/api/models/org/multitask-st/preupload/v1") in routes
    [sent] = fake_hub.commits
    assert (sent["revision"], sent["params"]) == ("v1", {})
    assert sent["header"]["summary"] == "First version"
    assert sorted(sent["files"]) == staged == trained.expected_files
    for name in staged:  # the bytes committed are the staged bytes
        assert sent["files"][name] == (tmp_path / "staged" / name).read_bytes(), name
    # Stale weights go, weights re-uploaded are simply overwritten, other files stay.
    assert sorted(sent["deleted"]) == ["model-00001-of-00002.safetensors", "model.safetensors.index.json"]
    assert commit.oid == FAKE_COMMIT_OID and commit.pr_url is None
    assert commit.commit_url == f"{FAKE_ENDPOINT}/org/multitask-st/commit/{FAKE_COMMIT_OID}"


def test_push_through_a_mocked_http_layer_opens_a_pull_request(trained, fake_hub):
    # Against the default branch: huggingface_hub >= 2.4 refuses `create_pr=True` with another `revision` in
    # `upload_folder` (its pull requests always target the default branch).
    commit = push_model_dir(trained.model_dir, "org/multitask-st", create_pr=True, token="hf_fake")

    routes = [(method, path) for method, path, _, _ in fake_hub.requests]
    assert json.loads(fake_hub.requests[0][3])["visibility"] == "public"
    assert not [path for _, path in routes if "/branch/" in path]  # no branch to create for main
    [preupload] = [params for _, path, params, _ in fake_hub.requests if "/preupload/" in path]
    assert preupload == {"create_pr": "1"}
    [sent] = fake_hub.commits
    assert sent["header"]["summary"] == "Upload multitask-st model"
    assert sorted(sent["files"]) == trained.expected_files
    if fake_hub.xet_pipeline:  # the PR is opened first, then committed to through its ref
        assert ("POST", "/api/models/org/multitask-st/discussions") in routes
        assert (sent["revision"], sent["params"]) == ("refs%2Fpr%2F1", {})
    else:  # the commit itself opens the PR
        assert (sent["revision"], sent["params"]) == ("main", {"create_pr": "1"})
    assert commit.pr_url == f"{FAKE_ENDPOINT}/org/multitask-st/discussions/1"
    assert commit.oid == FAKE_COMMIT_OID
