"""A model that lives on: `add_task`, `remove_task`, `rename_labels`, `add_labels` round trips through every door, the
lineage in the config and the card, and `multitask-st train --init_model` training a new task alone while the old heads
are held."""

import json
import logging
import random
import shutil
import textwrap

import numpy as np
import pytest
import torch
from conftest import TEXTS, make_model, run_python
from transformers import AutoModel

from multitask_st import MultiTaskSTConfig, MultiTaskSTModel


NEW_LABELS = ["comp", "rec", "sci", "talk"]


def saved(model, tokenizer, folder):
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def probabilities(model, tokenizer, texts=TEXTS, **kwargs):
    rows = model.predict(texts, tokenizer, **kwargs)
    return {task: np.array([list(row[task]["probabilities"].values()) for row in rows]) for task in rows[0]}


def test_add_task_keeps_every_old_output_and_round_trips(tmp_path, tiny_tokenizer):
    model = make_model(task_calibration={"topic": {"temperature": 2.0}})
    before = probabilities(model, tiny_tokenizer)
    embeddings = model.encode(TEXTS, tiny_tokenizer)
    assert model.add_task("newsgroup", NEW_LABELS) is model
    assert model.config.task_names == ["topic", "sentiment", "newsgroup"]
    assert model.config.task_loss_weights["newsgroup"] == 1.0
    after = probabilities(model, tiny_tokenizer)
    for task in ("topic", "sentiment"):
        np.testing.assert_array_equal(after[task], before[task])
    np.testing.assert_array_equal(model.encode(TEXTS, tiny_tokenizer), embeddings)
    assert after["newsgroup"].shape == (len(TEXTS), 4)
    (entry,) = model.config.lineage
    assert entry["change"] == "add_task" and entry["task"] == "newsgroup" and entry["labels"] == NEW_LABELS

    folder = saved(model, tiny_tokenizer, tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    assert config["tasks"][-1] == ["newsgroup", NEW_LABELS] and config["lineage"][0]["task"] == "newsgroup"
    assert config["task_calibration"] == {"topic": {"temperature": 2.0}}
    for loaded in (MultiTaskSTModel.from_pretrained(folder), AutoModel.from_pretrained(folder)):
        for task, values in probabilities(loaded.eval(), tiny_tokenizer).items():
            np.testing.assert_allclose(values, after[task], atol=1e-6)
    # The change is recorded against the model it was made to: a loaded folder names its weights' hash.
    again = MultiTaskSTModel.from_pretrained(folder).add_task("extra", ["x", "y"])
    assert again.config.lineage[-1]["base_revision"].startswith("sha256:")
    assert again.config.lineage[-1]["base_model"] is None  # a local path is not published


def test_remove_task_and_rename_labels_round_trip(tmp_path, tiny_tokenizer):
    model = make_model(task_calibration={"sentiment": {"temperature": 3.0}})
    before = probabilities(model, tiny_tokenizer)
    model.rename_labels("sentiment", {"negative": "neg"}).rename_labels("topic", ["World", "Sports", "Business"])
    model.remove_task("topic")
    assert model.config.tasks == {"sentiment": ["neg", "positive"]}
    assert "topic" not in model.heads and model.config.task_calibration == {"sentiment": {"temperature": 3.0}}
    assert [entry["change"] for entry in model.config.lineage] == ["rename_labels", "rename_labels", "remove_task"]
    assert model.config.lineage[0]["renamed"] == {"negative": "neg"}
    loaded = AutoModel.from_pretrained(saved(model, tiny_tokenizer, tmp_path / "model")).eval()
    rows = loaded.predict(TEXTS, tiny_tokenizer)
    assert list(rows[0]) == ["sentiment"] and list(rows[0]["sentiment"]["probabilities"]) == ["neg", "positive"]
    got = np.array([list(row["sentiment"]["probabilities"].values()) for row in rows])
    np.testing.assert_allclose(got, before["sentiment"], atol=1e-6)  # same head, same temperature, new names


def test_add_labels_keeps_the_old_rows(tmp_path, tiny_tokenizer, caplog):
    model = make_model(task_calibration={"topic": {"temperature": 2.0}})
    inputs = tiny_tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        old = model(**inputs).logits["topic"]
    with caplog.at_level(logging.WARNING, logger="multitask_st"):
        model.add_labels("topic", ["science", "health"])
    assert "Task 'topic' has new labels: its calibration was dropped" in caplog.text
    assert model.config.tasks["topic"] == ["world", "sports", "business", "science", "health"]
    assert model.config.task_calibration == {}
    with torch.no_grad():
        new = model(**inputs).logits["topic"]
    assert new.shape == (len(TEXTS), 5)
    torch.testing.assert_close(new[:, :3], old, rtol=0, atol=1e-6)  # a wider matmul may sum in another order
    loaded = MultiTaskSTModel.from_pretrained(saved(model, tiny_tokenizer, tmp_path / "model")).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits["topic"], new, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.add_task("topic", ["a", "b"]), "Task 'topic' exists already (this model's tasks are ['topic', "
         "'sentiment']); use `add_labels` to give it more labels, or `remove_task` first."),
        (lambda m: m.add_task("news group", ["a", "b"]), "Task names must be non-empty strings of letters, digits"),
        (lambda m: m.add_task("news", ["a"]), "Task 'news' needs at least 2 labels, got ['a']."),
        (lambda m: m.add_task("news", ["a", "b"], kind="ranking"), "`task_kinds['news']` must be one of"),
        (lambda m: m.remove_task("colour"), "Unknown task 'colour'; this model's tasks are ['topic', 'sentiment']."),
        (lambda m: m.remove_task("topic").remove_task("sentiment"), "Cannot remove 'sentiment', the model's only task"),
        (lambda m: m.rename_labels("sentiment", ["bad"]), "`names` must be 2 new names for the labels ['negative', "
         "'positive'] of task 'sentiment', in id order, or an {old: new} mapping; got ['bad']."),
        (lambda m: m.rename_labels("sentiment", {"neutral": "x"}), "Task 'sentiment' has no label(s) ['neutral'] to "
         "rename; its labels are ['negative', 'positive']."),
        (lambda m: m.rename_labels("sentiment", ["bad", "bad"]), "Labels of task 'sentiment' must be unique"),
        (lambda m: m.add_labels("sentiment", ["positive"]), "Labels of task 'sentiment' must be unique"),
        (lambda m: m.add_labels("sentiment", "neutral"), "`names` must be a non-empty list of new labels"),
        (lambda m: m.add_task("score", ["value"], kind="regression").add_labels("score", ["other"]), "Task 'score' is "
         "a regression task: its outputs are not labels to add to (labels can be added to classification, "
         "multi_label, pair_classification tasks)."),
        (lambda m: m.add_task("pr", ["value"], kind="pair_regression").add_labels("pr", ["x"]), "Task 'pr' is a "
         "pair_regression task: its outputs are not labels to add to"),
    ],
)  # fmt: skip
def test_bad_changes_are_named_and_change_nothing(change, message):
    model = make_model()
    config = model.config.to_dict()
    with pytest.raises(ValueError) as error:
        change(model)
    assert message in str(error.value)
    if "only task" not in message and "not labels to add to" not in message:  # those changed the model first, as asked
        assert model.config.to_dict() == config and list(model.heads) == ["topic", "sentiment"]


def test_an_embedding_task_is_added_and_removed_without_a_head(tmp_path, tiny_tokenizer):
    model = make_model()
    before = probabilities(model, tiny_tokenizer)
    model.add_task("similar", ["similarity"], kind="embedding")
    assert list(model.heads) == ["topic", "sentiment"] and model.config.task_kinds["similar"] == "embedding"
    loaded = AutoModel.from_pretrained(saved(model, tiny_tokenizer, tmp_path / "model")).eval()
    assert loaded.config.task_names == ["topic", "sentiment", "similar"]
    (row,) = loaded.predict([("a text", "a text")], tiny_tokenizer, tasks="similar")
    assert row["similar"]["values"]["similarity"] == pytest.approx(1.0, abs=1e-5)
    loaded.remove_task("similar")
    assert loaded.config.task_names == ["topic", "sentiment"]
    after = probabilities(loaded, tiny_tokenizer)
    for task in ("topic", "sentiment"):
        np.testing.assert_allclose(after[task], before[task], rtol=0, atol=1e-6)


def test_every_door_sees_the_new_head(tmp_path, tiny_tokenizer):
    """The pipeline, the ONNX runtime and the folder's own code (package blocked) see a head added after training."""
    pytest.importorskip("onnxruntime")
    from doors import Doors

    from multitask_st.export.onnx import export_onnx

    model = make_model().add_task("newsgroup", NEW_LABELS).rename_labels("sentiment", ["neg", "pos"])
    model.config.task_calibration = {"newsgroup": {"temperature": 0.1}}
    folder = saved(model, tiny_tokenizer, tmp_path / "model")
    export_onnx(folder, tmp_path / "onnx", check_texts=8)
    doors = Doors(folder, model, tiny_tokenizer, tmp_path / "onnx")
    reference = doors.predict("model", TEXTS)
    for door in ("pipeline", "onnx"):
        rows = doors.predict(door, TEXTS)
        for row, expected in zip(rows, reference, strict=True):
            assert sorted(row) == ["newsgroup", "sentiment", "topic"]
            for task, entry in expected.items():
                assert row[task]["label"] == entry["label"]
                labels = list(entry["probabilities"])
                np.testing.assert_allclose([row[task]["probabilities"][label] for label in labels],
                                           [entry["probabilities"][label] for label in labels], atol=1e-5)  # fmt: skip
    script = textwrap.dedent(
        f"""
        import json
        from transformers import AutoModel, AutoTokenizer, pipeline
        model = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        tokenizer = AutoTokenizer.from_pretrained({str(folder)!r})
        rows = model.predict({TEXTS!r}, tokenizer)
        piped = pipeline(model={str(folder)!r}, trust_remote_code=True, device="cpu")({TEXTS!r}, top_k=None)
        json.dump({{"module": type(model).__module__, "rows": rows, "piped": piped, "lineage": model.config.lineage}},
                  open({str(tmp_path / "remote.json")!r}, "w"))
        """
    )
    result = run_python(script, tmp_path, block=("multitask_st",), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads((tmp_path / "remote.json").read_text())
    assert remote["module"].startswith("transformers_modules.")
    assert [entry["change"] for entry in remote["lineage"]] == ["add_task", "rename_labels"]
    for row, piped, expected in zip(remote["rows"], remote["piped"], reference, strict=True):
        for task, entry in expected.items():
            assert row[task]["label"] == entry["label"] and piped[task][0]["label"] == entry["label"]
            for label, value in entry["probabilities"].items():
                assert row[task]["probabilities"][label] == pytest.approx(value, abs=1e-5)


def test_the_card_shows_the_lineage(tmp_path, tiny_tokenizer):
    from multitask_st.sharing.model_card import render_model_card

    model = make_model().add_task("newsgroup", NEW_LABELS)
    card = render_model_card(saved(model, tiny_tokenizer, tmp_path / "model"))
    assert "### Lineage" in card
    assert (
        '| 1 | add_task | `newsgroup` | kind: classification; labels: `["comp", "rec", "sci", "talk"]` | '
        "not a Hub model | not recorded |" in card
    )


# ---------------------------------------------------------------------------------------------------- training


NEWS_CUES = {"comp": "phone launch", "rec": "film movie", "sci": "stock rose", "talk": "vote lost"}


@pytest.fixture(scope="module")
def starting_model(tmp_path_factory, tiny_tokenizer):
    from tiny_training import train_tiny_model

    return train_tiny_model(tmp_path_factory.mktemp("start"), tiny_tokenizer, max_steps=30)


def add_task_run(root, starting, *extra):
    from multitask_st.cli import train

    rng = random.Random(1)
    rows = []
    for index in range(160):
        label = list(NEWS_CUES)[index % 4]
        words = NEWS_CUES[label].split() + rng.choices(["the", "a", "great", "bad"], k=2)
        rng.shuffle(words)
        rows.append(f"{' '.join(words)},{label}")
    (root / "news.csv").write_text("\n".join(["text,label", *rows]) + "\n")
    output = root / "added"
    train.main(
        [
            "--init_model", str(starting), "--tasks", f"newsgroup={root / 'news.csv'}",
            "--task_label_names", "newsgroup=" + ",".join(NEWS_CUES), "--max_steps", "12",
            "--learning_rate", "2e-3", "--per_device_train_batch_size", "16", "--eval_strategy", "no",
            "--save_strategy", "no", "--load_best_model_at_end", "false", "--stsb_eval", "false", "--use_cpu",
            "--disable_tqdm", "true", "--output_dir", str(output), *extra,
        ]
    )  # fmt: skip
    return output


def test_frozen_encoder_and_old_heads_keep_their_outputs_exactly(starting_model, tmp_path, tiny_tokenizer):
    freeze = ["--freeze", "backbone", "projection", "head:topic", "head:sentiment"]
    output = add_task_run(tmp_path, starting_model, *freeze, "--calibrate", "false")
    before = MultiTaskSTModel.from_pretrained(starting_model).eval()
    after = MultiTaskSTModel.from_pretrained(output).eval()
    old, new = probabilities(before, tiny_tokenizer), probabilities(after, tiny_tokenizer)
    for task in ("topic", "sentiment"):
        np.testing.assert_array_equal(new[task], old[task])
    assert after.config.task_names == ["topic", "sentiment", "newsgroup"]
    # Only the new head trained (and was evaluated); the frozen old ones were held all the same.
    summary = json.loads((output / "training_summary.json").read_text())
    assert list(summary["metrics"]["tasks"]) == ["newsgroup"] and summary["run"]["held_tasks"] == [
        "topic",
        "sentiment",
    ]
    assert summary["run"]["freeze"] == sorted(["backbone.embeddings", "backbone.layer.0", "backbone.layer.1",
                                               "projection", "head:topic", "head:sentiment"])  # fmt: skip


def test_old_heads_are_held_by_distillation_without_old_data(starting_model, tmp_path, tiny_tokenizer):
    output = add_task_run(tmp_path, starting_model, "--label_smoothing", "newsgroup=0.1", "--max_seq_length", "32")
    config = MultiTaskSTConfig.from_pretrained(output)
    # The loss and length flags apply to a trained model as to a new one (they were silently dropped).
    assert config.task_loss_options == {"newsgroup": {"label_smoothing": 0.1}} and config.max_seq_length == 32
    summary = json.loads((output / "training_summary.json").read_text())
    assert summary["run"]["held_tasks"] == ["topic", "sentiment"] and summary["run"]["head_distillation_weight"] == 1.0
    assert set(summary["datasets"]) == {"topic", "sentiment", "newsgroup"}  # the held heads' data still credited
    config = MultiTaskSTConfig.from_pretrained(output)
    assert config.lineage[-1]["change"] == "add_task" and config.lineage[-1]["base_revision"].startswith("sha256:")
    # The old calibration stays, the new head gets its own.
    assert set(config.task_calibration) == {"topic", "sentiment", "newsgroup"}
    before = MultiTaskSTConfig.from_pretrained(starting_model).task_calibration
    assert config.task_calibration["topic"] == before["topic"]


def test_a_trained_heads_kind_is_not_changed_by_task_kinds(starting_model, tmp_path):
    from multitask_st.cli import train

    rows = [f"text {index},{['world', 'sports', 'business'][index % 3]}" for index in range(30)]
    (tmp_path / "topics.csv").write_text("\n".join(["text,label", *rows]) + "\n")
    with pytest.raises(ValueError, match=r"^Task 'topic' of --init_model .* is a classification task, but --task_kinds "
                       r"makes it multi_label: a trained head keeps its kind"):  # fmt: skip
        train.main([
            "--init_model", str(starting_model), "--tasks", f"topic={tmp_path / 'topics.csv'}", "--task_kinds",
            "topic=multi_label", "--task_label_names", "topic=world,sports,business", "--max_steps", "1",
            "--use_cpu", "--output_dir", str(tmp_path / "out"),
        ])  # fmt: skip


def test_the_record_scores_held_heads_on_their_built_in_splits(starting_model, tmp_path, tiny_tokenizer):
    """The before/after of adding a task comes from the two records: a held head whose starting record names a built-in
    dataset is scored again on the same validation and test texts (the starting run's seed and split sizes)."""
    from multitask_st.data.task_datasets import load_task_dataset, subsample

    starting = tmp_path / "start"
    shutil.copytree(starting_model, starting)
    record_path = starting / "training_summary.json"
    record = json.loads(record_path.read_text())
    # As if the sentiment head had been trained on Rotten Tomatoes (same labels) with 40/30 validation/test texts.
    record["datasets"]["sentiment"] = {"name": "rotten_tomatoes", "num_validation": 40, "num_test": 30}
    record["training_args"]["seed"] = 3
    record_path.write_text(json.dumps(record))
    output = add_task_run(tmp_path, starting, "--max_seq_length", "16")

    summary = json.loads((output / "training_summary.json").read_text())
    # topic's data is a CSV file of the starting run: not scored; sentiment's is built in: scored on both splits.
    assert set(summary["metrics"]["tasks"]) == {"sentiment", "newsgroup"}
    assert set(summary["metrics"]["tasks"]["sentiment"]) == {"validation", "test"}
    test = subsample(load_task_dataset("rotten_tomatoes", seed=3), {"test": 30}, seed=3)["test"]
    model = MultiTaskSTModel.from_pretrained(output).eval()
    rows = model.predict(list(test["text"]), tiny_tokenizer, tasks="sentiment", calibrated=False)
    names = model.config.tasks["sentiment"]
    predicted = np.asarray([names.index(row["sentiment"]["label"]) for row in rows])
    labels = test["label"]
    picked = np.asarray([row["sentiment"]["probabilities"][names[y]] for row, y in zip(rows, labels, strict=True)])
    assert summary["metrics"]["tasks"]["sentiment"]["test"]["accuracy"] == pytest.approx(
        np.mean(predicted == np.asarray(test["label"]))
    )
    # The loss pins the very texts (a toy head's accuracy is much the same on any sample with the same label mix).
    assert summary["metrics"]["other"]["sentiment_loss"]["test"] == pytest.approx(-np.log(picked).mean(), rel=1e-4)
    assert summary["run"]["held_tasks"] == ["topic", "sentiment"]  # held in training all the same


def test_head_distillation_loss():
    from multitask_st.training.distillation import head_distillation_loss

    teacher = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    assert head_distillation_loss(teacher.clone(), teacher).item() == pytest.approx(0.0, abs=1e-7)
    student = torch.zeros_like(teacher, requires_grad=True)
    loss = head_distillation_loss(student, teacher)
    # By hand: KL(softmax(t/2) || softmax(0)) * 4, averaged over the 2 rows.
    p = torch.softmax(teacher / 2, dim=-1)
    assert loss.item() == pytest.approx(((p * (p.log() - np.log(1 / 3))).sum(-1).mean() * 4).item(), rel=1e-5)
    loss.backward()
    assert student.grad[0].argmin() == 0  # descending the gradient raises the teacher's favourite label
    with pytest.raises(ValueError, match=r"Got logits of shape \(2, 2\) but teacher logits of shape \(2, 3\)"):
        head_distillation_loss(torch.zeros(2, 2), teacher)


def test_held_heads_of_every_kind_with_a_head_are_held():
    """A multi-label head is held label by label (a shift every softmax would ignore still costs), a regression head by
    its outputs in target std; a kind without a head to run on single texts is refused, naming it."""
    from multitask_st.training.distillation import head_distillation_loss

    teacher = torch.tensor([[2.0, -1.0], [0.5, 0.0]])
    assert head_distillation_loss(teacher.clone(), teacher, kind="multi_label").item() == pytest.approx(0.0, abs=1e-7)
    shifted = head_distillation_loss(teacher + 10, teacher, kind="multi_label")
    p, q = torch.sigmoid(teacher / 2), torch.sigmoid((teacher + 10) / 2)  # per-label Bernoulli KL at temperature 2
    by_hand = (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).mean() * 4
    assert shifted.item() == pytest.approx(by_hand.item(), rel=1e-5) and shifted.item() > 1.0
    assert head_distillation_loss(teacher + 10, teacher, kind="classification").item() == pytest.approx(0.0, abs=1e-6)

    values, start = torch.tensor([[5.0], [-3.0]]), torch.tensor([[0.0], [1.0]])
    std = torch.tensor([2.0])
    assert head_distillation_loss(values, start, kind="regression", target_std=std).item() == pytest.approx(
        ((5 / 2) ** 2 + (4 / 2) ** 2) / 2
    )
    # The trainer passes the config's list (one std per output).
    assert head_distillation_loss(values, start, kind="regression", target_std=[2.0]).item() == pytest.approx(
        ((5 / 2) ** 2 + (4 / 2) ** 2) / 2
    )
    with pytest.raises(
        ValueError, match=r"A 'pair_classification' head cannot be held by distillation; kinds that can: "
    ):
        head_distillation_loss(teacher, teacher, kind="pair_classification")
