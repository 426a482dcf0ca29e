"""Ship the Gradio demo as a Hugging Face Space for a model on the Hub (the inference widget does not run remote code).

The staged folder (`stage_space`) is a complete Gradio Space:

    app.py                 what the Space runs: serves `model_id` at the pinned revision
    multitask_st_demo.py   a copy of `multitask_st/app/demo.py` (self-contained: the model's own code comes from the
                           model repository with `trust_remote_code=True`, so the Space installs no multitask-st)
    requirements.txt       torch, transformers, matplotlib (the Space installs gradio itself, at `sdk_version`)
    corpus.json            the Search tab's texts
    README.md              the Space's front matter (`sdk: gradio`, `app_file`, `models`...) and a short description
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from huggingface_hub import HfApi, SpaceCard, SpaceCardData
from huggingface_hub.utils import validate_repo_id
from transformers.utils import logging


logger = logging.get_logger(__name__)


DEMO_MODULE = "multitask_st_demo.py"
CORPUS_FILE = "corpus.json"  # what `multitask_st/app/demo.py: CORPUS_FILE` reads
REQUIREMENTS = ["torch>=2.4", "transformers>=4.56", "matplotlib>=3.7", "numpy"]
DEFAULT_GRADIO_VERSION = "5.0.0"

APP_TEMPLATE = '''"""Gradio Space serving {model_id}, a multitask-st model: classify, compare, search."""

import os

from multitask_st_demo import main


MODEL_ID = {model_id!r}
REVISION = {revision!r}  # the model commit this Space was made for (None: the latest)

if __name__ == "__main__":  # the Space runs `python app.py`
    corpus_file = os.path.join(os.path.dirname(os.path.abspath(__file__)), {corpus_file!r})
    main(os.environ.get("MULTITASK_ST_MODEL", MODEL_ID), revision=REVISION, corpus_file=corpus_file)
'''


def _demo_source() -> Path:
    # The file is copied, not imported: staging a Space works without gradio installed.
    return Path(__file__).resolve().parent.parent / "app" / "demo.py"


def _gradio_version() -> str:
    try:
        return version("gradio")
    except PackageNotFoundError:
        return DEFAULT_GRADIO_VERSION


def stage_space(
    model_id: str,
    stage_dir: str | os.PathLike,
    revision: str | None = None,
    corpus: Iterable[str | Mapping] | None = None,
    title: str | None = None,
    license: str | None = "apache-2.0",
) -> list[str]:
    """Write a Gradio Space for the Hub model `model_id` into `stage_dir` (empty or new).

    Args:
        model_id: the model repository (`org/name`) the Space serves.
        stage_dir: where to write.
        revision: the model commit to pin (what `push_model_dir` returned as `.oid`); None serves the latest.
        corpus: texts for the Search tab (strings or `{"text", "source"}`); defaults to the default data's test
            snippets (none when their packages are missing).
        title: the Space's title; defaults to the model's name.
        license: the Space's license (a Hub license id).

    Returns:
        The staged file names, sorted.
    """
    validate_repo_id(model_id)
    stage_dir = Path(stage_dir)
    if stage_dir.exists() and (not stage_dir.is_dir() or any(stage_dir.iterdir())):
        raise ValueError(f"`stage_dir` {str(stage_dir)!r} must be an empty directory or not exist yet.")
    if corpus is None:
        from ..app.corpus import default_search_corpus

        corpus = default_search_corpus()
    corpus = [{"text": item, "source": ""} if isinstance(item, str) else dict(item) for item in corpus]
    title = title or model_id.split("/")[-1]
    stage_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(_demo_source(), stage_dir / DEMO_MODULE)
    (stage_dir / "app.py").write_text(
        APP_TEMPLATE.format(model_id=model_id, revision=revision, corpus_file=CORPUS_FILE), encoding="utf-8"
    )
    (stage_dir / "requirements.txt").write_text("\n".join(REQUIREMENTS) + "\n", encoding="utf-8")
    (stage_dir / CORPUS_FILE).write_text(json.dumps(corpus, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (stage_dir / "README.md").write_text(
        _space_readme(model_id, revision, title, license, len(corpus)), encoding="utf-8"
    )
    staged = sorted(path.name for path in stage_dir.iterdir())
    logger.info(f"Staged the Space for {model_id} in {stage_dir}: {', '.join(staged)}.")
    return staged


def _space_readme(model_id: str, revision: str | None, title: str, license: str | None, corpus_size: int) -> str:
    card_data = SpaceCardData(
        title=title,
        sdk="gradio",
        sdk_version=_gradio_version(),
        app_file="app.py",
        license=license,
        models=[model_id],
        tags=["multitask-st", "sentence-embeddings", "text-classification"],
        short_description="Classify with every head, compare sentences, search texts.",
    )
    pinned = f"commit `{revision}`" if revision else "its latest commit"
    text = f"""---
{card_data.to_yaml()}
---

# {title}

A demo of [{model_id}](https://huggingface.co/{model_id}) ({pinned}), a multi-task sentence transformer:

- **Classify**: each head's label probabilities for a text.
- **Compare**: the cosine similarity of the embeddings of several sentences, as a heatmap.
- **Search**: the texts of `{CORPUS_FILE}` ({corpus_size:,}) nearest to a query, with each hit's head predictions.

The model's code loads from its repository with `trust_remote_code=True`; `app.py` pins the revision.
"""
    SpaceCard(text, ignore_metadata_errors=False)  # parse it back as the Hub does: fails here, not after the upload
    return text


def push_space(
    space_id: str,
    model_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    token: str | None = None,
    corpus: Iterable[str | Mapping] | None = None,
    stage_dir: str | os.PathLike | None = None,
):
    """Stage the Space (`stage_space`) and upload it to `space_id` (created as a Gradio Space if missing).

    Returns the `huggingface_hub.CommitInfo` of the upload.
    """
    validate_repo_id(space_id)
    api = HfApi(token=token, library_name="multitask-st", library_version=version("multitask-st"))
    with tempfile.TemporaryDirectory(prefix="multitask-st-space-") as temporary_dir:
        folder = Path(stage_dir) if stage_dir is not None else Path(temporary_dir)
        stage_space(model_id, folder, revision=revision, corpus=corpus)
        space_id = api.create_repo(
            space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True
        ).repo_id
        commit = api.upload_folder(
            repo_id=space_id, repo_type="space", folder_path=folder, commit_message=f"Demo of {model_id}"
        )
    logger.info(f"Pushed the Space {space_id}: {commit.commit_url}")
    return commit
