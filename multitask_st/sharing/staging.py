"""Share a trained model on the Hugging Face Hub: stage exactly the files to upload (card rendered), push them.

A model directory (what `model.save_pretrained(dir)` + `tokenizer.save_pretrained(dir)` or `train.py` write) becomes a
Hub repository that loads with `AutoModel.from_pretrained(repo_id, trust_remote_code=True)`,
`pipeline(model=repo_id, trust_remote_code=True)` and `SentenceTransformer(repo_id, trust_remote_code=True)` without
this package:

    config.json (`auto_map`, `custom_pipelines`)   model.safetensors (or shards + model.safetensors.index.json)
    configuration_multitask_st.py  modeling_multitask_st.py  pipeline_multitask_st.py
    sentence_transformers_multitask_st.py                    (the code `trust_remote_code` runs)
    modules.json  config_sentence_transformers.json  sentence_bert_config.json    (what sentence-transformers reads)
    tokenizer files                          training_summary.json (if any)    README.md (the rendered card)
    the training plots (*.png, if any), which the card shows             (names: `multitask_st.model_folder`)
    onnx/*.onnx + onnx/export_report.json (if `export.py --format onnx` added them to the folder)

Everything else in the directory (Trainer leftovers, checkpoints, logs) stays home, and no pickle file is ever staged.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from fnmatch import fnmatch
from importlib.metadata import version
from pathlib import Path

from huggingface_hub import HfApi, constants, get_token
from huggingface_hub.errors import LocalTokenNotFoundError, OfflineModeIsEnabled
from huggingface_hub.utils import filter_repo_objects, validate_repo_id
from transformers.utils import logging

from ..export.checksums import check_artifacts, check_exported_from
from ..model_folder import (
    EXPORT_REPORT_NAME,
    IGNORE_PATTERNS,
    MODEL_CARD_NAME,
    ONNX_PATTERNS,
    ONNX_SUBFOLDER,
    PICKLE_PATTERNS,
    UPLOAD_PATTERNS,
)
from .checks import check_staged_folder, check_weight_files
from .model_card import DEFAULT_LANGUAGE, DEFAULT_LICENSE, render_model_card
from .model_dir import ModelDir, read_model_dir


logger = logging.get_logger(__name__)


# On re-upload, weight files that the new commit does not contain are deleted, so a stale `model.safetensors` never
# shadows a new sharded checkpoint (or stale shards a new single file), nor an ONNX export of old weights stays.
STALE_WEIGHT_PATTERNS = ["*.safetensors", "*.safetensors.index.json", *ONNX_PATTERNS]


# ---------------------------------------------------------------------------------------------------- staging


def files_to_upload(model_dir: str | os.PathLike | ModelDir) -> dict[str, Path]:
    """`{path in the repository: file}` of everything staged from a model folder, the card (rendered apart) excepted."""
    folder = read_model_dir(model_dir)
    names = sorted(path.relative_to(folder.path).as_posix() for path in folder.path.rglob("*") if path.is_file())
    allowed = [*UPLOAD_PATTERNS, *folder.tokenizer_patterns]
    files = {
        name: folder.path / name
        for name in filter_repo_objects(names, allow_patterns=allowed, ignore_patterns=IGNORE_PATTERNS)
        # A pattern's `*` matches `/` too: a file counts only at its pattern's depth, so a folder nested in the
        # model folder (an old stage dir in `onnx/`, a copy of the model) is never staged as part of it.
        if any(fnmatch(name, pattern) and name.count("/") == pattern.count("/") for pattern in allowed)
    }
    files.update({path.name: path for path in folder.weight_files})
    return dict(sorted(files.items()))


def stage_model_dir(
    model_dir: str | os.PathLike | ModelDir,
    stage_dir: str | os.PathLike,
    repo_id: str | None = None,
    revision: str | None = None,
    license: str | None = DEFAULT_LICENSE,
    language: str | list[str] | None = DEFAULT_LANGUAGE,
    template_path: str | os.PathLike | None = None,
) -> list[str]:
    """Write to `stage_dir` exactly the folder that [`push_model_dir`] uploads.

    That is config.json, the safetensors weights, the tokenizer files, the four payload `.py` files, the
    sentence-transformers files, training_summary.json if present (see `UPLOAD_PATTERNS`), and README.md (the rendered
    card). An ONNX export in the folder is staged only when each graph still has the sha256 its export recorded and
    was exported from the weights next to it (`export/checksums.py`). Trainer leftovers
    (`checkpoint-*/`, `runs/`, `training_args.bin`, `trainer_state.json`, optimizer states...) stay behind, and no
    pickle file is staged.

    Args:
        model_dir: The saved model directory (or a [`ModelDir`] read from it).
        stage_dir: Where to write; must be empty or not exist yet.
        repo_id, revision, license, language, template_path: passed to [`render_model_card`].

    Returns:
        The staged paths, sorted.

    Example:
        >>> stage_model_dir("outputs/model", "staged")  # doctest: +SKIP
        ['README.md', 'config.json', 'configuration_multitask_st.py', 'model.safetensors', ...]
    """
    folder = read_model_dir(model_dir)
    stage_dir = _check_stage_dir(stage_dir)
    files = files_to_upload(folder)
    check_weight_files(folder.weight_files)  # readable, finite
    export_report = folder.path / ONNX_SUBFOLDER / EXPORT_REPORT_NAME
    check_artifacts(export_report)  # each graph is the file its export wrote (the staged report keeps the sha256s)
    check_exported_from(export_report)  # ... from these weights, not another model's
    card = render_model_card(
        folder, repo_id=repo_id, revision=revision, license=license, language=language, template_path=template_path
    )
    stage_dir.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        _link_or_copy(source, stage_dir / name)
    (stage_dir / MODEL_CARD_NAME).write_text(card, encoding="utf-8")
    staged = sorted(path.relative_to(stage_dir).as_posix() for path in stage_dir.rglob("*") if path.is_file())
    pickles = [name for name in staged if any(fnmatch(name.lower(), pattern) for pattern in PICKLE_PATTERNS)]
    if pickles:  # cannot happen with IGNORE_PATTERNS above; the last line of defence against publishing a pickle
        raise RuntimeError(f"Refusing to stage pickle files {pickles}.")
    top_level = {name.split("/")[0] for name in staged}
    left_out = sorted(
        path.name + ("/" if path.is_dir() else "") for path in folder.path.iterdir() if path.name not in top_level
    )
    if (folder.path / MODEL_CARD_NAME).is_file():
        logger.info(f"The directory's own {MODEL_CARD_NAME} is replaced by the rendered card.")
    if left_out:
        logger.info(f"Not uploading these entries of {folder.path}: {', '.join(left_out)}.")
    check_staged_folder(stage_dir)  # what was staged loads: real files, nothing missing
    logger.info(f"Staged {len(staged)} files in {stage_dir}.")
    return staged


def _check_stage_dir(stage_dir: str | os.PathLike) -> Path:
    stage_dir = Path(stage_dir)
    if stage_dir.exists() and (not stage_dir.is_dir() or any(stage_dir.iterdir())):
        raise ValueError(f"`stage_dir` {str(stage_dir)!r} must be an empty directory or not exist yet.")
    return stage_dir


def _link_or_copy(source: Path, target: Path):
    target.parent.mkdir(parents=True, exist_ok=True)
    source = source.resolve()  # a symlinked file is staged as the file it points to, never as a (dangling) link
    # Weights can be gigabytes: hard-link them when the file system allows (nobody edits them in place); copy the
    # small files, which a user may edit in a staged folder.
    if source.suffix in (".safetensors", ".onnx"):
        try:
            os.link(source, target)
            return
        except OSError:
            pass
    shutil.copy2(source, target)


# ---------------------------------------------------------------------------------------------------- pushing


def push_model_dir(
    model_dir: str | os.PathLike | ModelDir,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    token: str | None = None,
    license: str | None = DEFAULT_LICENSE,
    language: str | list[str] | None = DEFAULT_LANGUAGE,
    stage_dir: str | os.PathLike | None = None,
):
    """Upload a model directory to the Hub as one commit: the folder [`stage_model_dir`] writes, card included.

    Args:
        model_dir: The saved model directory.
        repo_id: `"org/name"` (or `"name"` for your own namespace); created if it does not exist.
        private: Create the repository private. Has no effect on a repository that exists already.
        revision: Branch to commit to; created from `main` when it does not exist yet. Defaults to `main`.
        create_pr: Open a pull request against the default branch instead of committing directly (huggingface_hub
            opens pull requests only there, so it excludes `revision`).
        commit_message: Defaults to `"Upload multitask-st model"`.
        token: Defaults to the `HF_TOKEN` environment variable, else the token `hf auth login` stored.
        license, language: passed to [`render_model_card`].
        stage_dir: Keep the staged folder there (empty or new); defaults to a temporary directory.

    Returns:
        `huggingface_hub.CommitInfo`, a `str` holding the commit URL, with `.oid` (the commit hash to pin) and `.pr_url`.
    """
    # Everything that can fail locally fails before anything touches the network.
    folder = read_model_dir(model_dir)
    if stage_dir is not None:
        _check_stage_dir(stage_dir)
    validate_repo_id(repo_id)
    if create_pr and revision not in (None, "main"):
        raise ValueError(
            f"`create_pr` opens a pull request against the default branch; it cannot target revision {revision!r}. "
            "Pass one of the two."
        )
    if constants.is_offline_mode():
        raise OfflineModeIsEnabled(
            "Cannot push to the Hub: offline mode is enabled (HF_HUB_OFFLINE=1). Unset HF_HUB_OFFLINE, or only stage "
            "the files with `stage_model_dir`."
        )
    if token is None and get_token() is None:
        raise LocalTokenNotFoundError(
            "No Hugging Face token: run `hf auth login`, set the HF_TOKEN environment variable or pass `token`."
        )
    api = HfApi(token=token, library_name="multitask-st", library_version=version("multitask-st"))
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    if revision not in (None, "main") and not revision.startswith("refs/pr/"):
        api.create_branch(repo_id, branch=revision, exist_ok=True)  # upload_folder needs the branch to exist
    with tempfile.TemporaryDirectory(prefix="multitask-st-upload-") as temporary_dir:
        stage = Path(stage_dir) if stage_dir is not None else Path(temporary_dir)
        files = stage_model_dir(folder, stage, repo_id=repo_id, revision=revision, license=license, language=language)
        logger.info(f"Uploading {len(files)} files to {repo_id}: {', '.join(files)}.")
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=stage,
            revision=revision,
            create_pr=create_pr,
            commit_message=commit_message or "Upload multitask-st model",
            delete_patterns=STALE_WEIGHT_PATTERNS,
        )
    logger.info(f"Pushed {repo_id}: {commit.pr_url or commit.commit_url}")
    return commit
