"""Every Python snippet of the rendered model card runs, as written, against a staged folder.

The card is rendered for a Hub id; the test swaps in the staged folder's path and runs each fenced block in a fresh
process: without multitask-st (blocked in `sys.modules`) unless the block itself imports it, and with stdin left open
so that transformers' "Do you wish to run the custom code?" prompt would hang and fail the test instead of reading
an end-of-file as "no".
"""

import json
import re

import pytest
import torch
from conftest import run_python, tiny_config
from huggingface_hub import ModelCard

from multitask_st import MultiTaskSTModel
from multitask_st.sharing.staging import stage_model_dir


REPO_ID = "org/multitask-st-demo"
PROMPT = "Do you wish to run the custom code"
FENCED_PYTHON = re.compile(r"```python\n(.*?)```", re.DOTALL)


def staged_card(tmp_path, tokenizer, **overrides) -> tuple:
    torch.manual_seed(0)
    model = MultiTaskSTModel(tiny_config(**overrides)).eval()
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    stage = tmp_path / "staged"
    stage_model_dir(tmp_path / "model", stage, repo_id=REPO_ID)
    card = ModelCard((stage / "README.md").read_text())
    return stage, card


def python_blocks(card: ModelCard) -> list[str]:
    return FENCED_PYTHON.findall(card.text)


def run_snippet(code: str, folder, cwd, timeout: int = 300) -> str:
    """Runs `code` with the folder's path for the repo id; returns its output. stdin stays open the whole time."""
    code = code.replace(json.dumps(REPO_ID), json.dumps(str(folder)))
    # a reader without the package, unless the snippet imports it
    result = run_python(code, cwd, block=() if "multitask_st" in code else ("multitask_st",), timeout=timeout)
    text = result.stdout + result.stderr
    process = result
    assert PROMPT not in text, f"the snippet stopped at transformers' remote-code prompt:\n{code}\n{text}"
    assert process.returncode == 0, f"snippet failed (exit {process.returncode}):\n{code}\n{text[-3000:]}"
    return text


def test_card_tells_the_truth_about_its_doors(tmp_path, tiny_tokenizer):
    stage, card = staged_card(tmp_path, tiny_tokenizer, pooling_mode="mean", projection="none")
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "text-classification"
    assert {"sentence-transformers", "sentence-similarity", "feature-extraction", "custom_code"} <= set(data["tags"])
    # The pipeline the Hub's snippet builds for pipeline_tag "text-classification" is the one config.json declares.
    config = json.loads((stage / "config.json").read_text())
    assert list(config["custom_pipelines"]) == [data["pipeline_tag"]]
    sections = [line for line in card.text.splitlines() if line.startswith("### ")]
    for door in ("remote code", "`pipeline()`", "`SentenceTransformer`", "multitask-st package", "plain sentence"):
        assert any(door in section for section in sections), door
    assert "does not handle several heads" not in card.text
    assert "**TEI-ready**" in card.text
    blocks = python_blocks(card)
    assert len(blocks) == 5
    assert all("trust_remote_code=True" in block for block in blocks if "multitask_st" not in block)

    _, attention_card = staged_card(tmp_path / "attention", tiny_tokenizer, pooling_mode="attention")
    assert "Not available for this model: Cannot export pooling_mode='attention'" in attention_card.text
    assert len(python_blocks(attention_card)) == 4
    _, linear_card = staged_card(tmp_path / "linear", tiny_tokenizer, pooling_mode="mean", projection="linear")
    assert "It is **not TEI-ready**: the projection's LayerNorm module is not one TEI applies" in linear_card.text


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        {"pooling_mode": "mean", "projection": "none"},  # every door, TEI-ready export
        {"pooling_mode": "attention", "projection": "mlp", "normalize_embeddings": True},  # no plain export
    ],
)
def test_every_card_snippet_runs_without_a_prompt(tmp_path, tiny_tokenizer, overrides):
    stage, card = staged_card(tmp_path, tiny_tokenizer, **overrides)
    blocks = python_blocks(card)
    assert blocks
    outputs = [run_snippet(block, stage, tmp_path) for block in blocks]
    assert "sentiment" in outputs[1] and "topic" in outputs[1]  # the pipeline printed every head
    assert "You are using a model of type" not in "".join(outputs)  # no config loaded as the wrong class
