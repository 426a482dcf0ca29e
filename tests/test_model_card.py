import json

from conftest import copy_without
from huggingface_hub import ModelCard

from multitask_st.sharing.model_card import render_model_card


def test_model_card_metadata_and_body(trained):
    text = render_model_card(trained.model_dir, repo_id="org/multitask-st", revision="abc123")
    card = ModelCard(text, ignore_metadata_errors=False)  # parses and validates the metadata as the Hub library does
    data = card.data.to_dict()

    assert data["library_name"] == "transformers"
    assert data["pipeline_tag"] == "text-classification"
    assert {"multitask-st", "sentence-transformers", "sentence-similarity", "custom_code"} <= set(data["tags"])
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
    assert f"- **Parameters:** {trained.model.num_parameters():,}\n" in card.text  # as many as the weights hold
    assert "| `sentiment` | local_reviews | Source: pkg==1.0. | 7 | not recorded | not recorded |" in card.text
    # The training record as it is: arguments listed (always-listed or non-default), what the run resolved wins.
    assert "- **learning_rate:** 5e-05\n" in card.text and "- **warmup_steps:** 0.1\n" in card.text
    assert '- **freeze:** `["backbone.embeddings"]`\n' in card.text  # the resolved parts, not the argument
    assert "`topic`: 1.0, `sentiment`: 0.5" in card.text
    sections = [line for line in card.text.splitlines() if line.startswith("## ")]
    assert sections == [
        "## Model Details",
        "## Usage",
        "## Evaluation",
        "## Bias, Risks and Limitations",
        "## Training Details",
    ]


def test_model_card_without_training_summary(trained, tmp_path):
    model_dir = copy_without(trained.model_dir, tmp_path / "bare", "training_summary.json")
    card = ModelCard(render_model_card(model_dir), ignore_metadata_errors=False)

    assert card.data.eval_results is None and "model-index" not in card.data.to_dict()
    assert card.data.base_model is None and card.data.datasets is None  # nothing invented
    assert "Per-task metrics: not recorded." in card.text
    assert "### Training Data\n\nNot recorded." in card.text
    assert 'repo_id = "bare"' in card.text


def test_model_card_never_publishes_a_local_path(trained, tmp_path):
    model_dir = copy_without(trained.model_dir, tmp_path / "local", "training_summary.json")
    local_backbone = str(tmp_path / "checkpoints" / "minilm")
    summary = {"base_model": local_backbone, "datasets": {"topic": {"name": "mine", "hub_id": "/data/topics"}}}
    (model_dir / "training_summary.json").write_text(json.dumps(summary))
    text = render_model_card(model_dir)

    assert local_backbone not in text and "/data/topics" not in text
    card = ModelCard(text)
    assert card.data.base_model is None and card.data.datasets is None
