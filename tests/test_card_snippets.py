"""Every Python snippet of the rendered model card runs, as written, against a staged folder.

The card is rendered for a Hub id; the test swaps in the staged folder's path and runs each fenced block in a fresh
process: without multitask-st (blocked in `sys.modules`) unless the block itself imports it, and with stdin left open
so that transformers' "Do you wish to run the custom code?" prompt would hang and fail the test instead of reading
an end-of-file as "no". The same block of two cards (two model configurations) shares one process, each in a
namespace of its own: an interpreter start and `import torch` cost more than the block itself.
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
    stage = tmp_path / f"staged-{tmp_path.name}"  # remote code of two cards in one process: two module names
    stage_model_dir(tmp_path / "model", stage, repo_id=REPO_ID)
    card = ModelCard((stage / "README.md").read_text())
    return stage, card


def python_blocks(card: ModelCard) -> list[str]:
    return FENCED_PYTHON.findall(card.text)


SNIPPET_START = "--- snippet {} ---"


def run_snippets(snippets: list[tuple[str, object]], cwd, timeout: int = 300) -> list[str]:
    """Runs each `(code, folder)`, the folder's path for the repo id, one after the other in one fresh process, each
    in a namespace of its own (a snippet that forgets an import still fails); returns each one's standard output
    (the process's standard error goes with the last). stdin stays open the whole time."""
    codes = [code.replace(json.dumps(REPO_ID), json.dumps(str(folder))) for code, folder in snippets]
    uses_package = {"multitask_st" in code for code in codes}
    assert len(uses_package) == 1, "run the snippets that import multitask_st apart from those that do not"
    runner = (
        f"for index, code in enumerate({codes!r}):\n"
        f"    print({SNIPPET_START!r}.format(index), flush=True)\n"
        "    exec(compile(code, f'<snippet {index}>', 'exec'), {'__name__': '__main__'})\n"
    )
    # a reader without the package, unless the snippet imports it
    result = run_python(runner, cwd, block=() if uses_package.pop() else ("multitask_st",), timeout=timeout)
    text = result.stdout + result.stderr
    shown = "\n# ----\n".join(codes)
    assert PROMPT not in text, f"a snippet stopped at transformers' remote-code prompt:\n{shown}\n{text}"
    assert result.returncode == 0, f"snippet failed (exit {result.returncode}):\n{shown}\n{text[-3000:]}"
    outputs = [result.stdout.split(SNIPPET_START.format(index), 1)[1] for index in range(len(codes))]
    outputs = [output.split(SNIPPET_START.format(index + 1), 1)[0] for index, output in enumerate(outputs)]
    return [*outputs[:-1], outputs[-1] + result.stderr]


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


PAIR_ONLY = {  # a model whose every task takes pairs: no head reads a single text
    "tasks": {"nli": ["entailment", "neutral", "contradiction"], "sts": ["similarity"]},
    "task_kinds": {"nli": "pair_classification", "sts": "embedding"},
}


def test_a_card_for_pair_tasks_only(tmp_path, tiny_tokenizer):
    # The snippets show pairs where a model has no single-text head, and never index a head it lacks.
    _, card = staged_card(tmp_path, tiny_tokenizer, pooling_mode="mean", projection="none", **PAIR_ONLY)
    assert "and 2\ntasks (`nli`, `sts`) take pairs of texts, each embedded once." in card.text
    assert "- **Tasks:** 2\n" in card.text
    blocks = python_blocks(card)
    assert len(blocks) == 5
    remote_code, pipeline_block = blocks[:2]
    assert "model.predict(sentences" not in remote_code and "for prediction in model.predict(pairs" in remote_code
    assert "head_view" not in pipeline_block and "print(classifier(pair))" in pipeline_block
    assert "Each head only knows its own labels" not in card.text
    # An embedding task alone: no head at all.
    _, embedding_card = staged_card(
        tmp_path / "embedding", tiny_tokenizer, tasks={"sts": ["similarity"]}, task_kinds={"sts": "embedding"}
    )
    assert "and 1\ntask (`sts`) takes pairs of texts" in embedding_card.text


@pytest.mark.slow
def test_every_card_snippet_runs_without_a_prompt(tmp_path, tiny_tokenizer):
    cards = [
        staged_card(tmp_path / "plain", tiny_tokenizer, pooling_mode="mean", projection="none"),  # every door, TEI
        # no plain export, another pooling, projection and normalisation through the same snippets
        staged_card(tmp_path / "attention", tiny_tokenizer, pooling_mode="attention", projection="mlp",
                    normalize_embeddings=True),
        # pair tasks only (no plain export either: two cards' exports would write the same folder)
        staged_card(tmp_path / "pairs", tiny_tokenizer, pooling_mode="attention", projection="none", **PAIR_ONLY),
    ]  # fmt: skip
    blocks = [python_blocks(card) for _, card in cards]
    assert [len(card_blocks) for card_blocks in blocks] == [5, 4, 4]
    outputs = []
    for index in range(len(blocks[0])):
        # the same block of each card that has it
        snippets = [(card_blocks[index], stage) for card_blocks, (stage, _) in zip(blocks, cards, strict=True)
                    if index < len(card_blocks)]  # fmt: skip
        assert len({code.splitlines()[0] for code, _ in snippets}) == 1, snippets  # the same section of the card
        outputs.append(run_snippets(snippets, tmp_path))
    for printed in outputs[1][:2]:
        assert "sentiment" in printed and "topic" in printed  # the pipeline printed every head, on each card
    for printed in (outputs[0][2], outputs[1][2]):  # remote code and pipeline of the pair-only card: every pair task
        assert "'label'" in printed and "'values'" in printed
    assert "You are using a model of type" not in "".join(sum(outputs, []))  # no config loaded as the wrong class
