"""Pair heads (`pair_classification`, `pair_regression`) and embedding tasks (`embedding`: CoSENT on scored pairs,
`embedding_contrastive`: in-batch negatives) on the tiny config: config and save/load, the loss against hand-computed
values (a task with no labelled row gives exactly 0), the metrics, the data loader's errors, and every door giving
`predict`'s numbers."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config, train_arguments
from scipy.stats import pearsonr, spearmanr

from multitask_st import MultiTaskSTModel
from multitask_st.data.task_datasets import load_task_dataset
from multitask_st.layers_multitask_st import pair_features
from multitask_st.training.collator import MultiTaskDataCollator
from multitask_st.training.metrics import multitask_classification_metrics


KIND_TASKS = {
    "topic": ["world", "sports", "business"],
    "nli": ["entailment", "neutral", "contradiction"],
    "similar": ["score"],
    "sts": ["cosine_similarity"],
    "para": ["cosine_similarity"],
}
KINDS = {
    "nli": "pair_classification",
    "similar": "pair_regression",
    "sts": "embedding",
    "para": "embedding_contrastive",
}
PAIRS = [
    ("the movie", "a film"),
    ("stock market rose", "team won"),
    ("phone launch", "the phone"),
    ("vote", "election"),
]


def flat(predictions) -> tuple[list, list[float]]:
    """A door's predictions as (labels, numbers), to compare up to float noise (batch padding changes the last bits)."""
    labels, numbers = [], []

    def walk(value):
        if isinstance(value, dict):
            for key in value:
                labels.append(key)
                walk(value[key])
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str):
            labels.append(value)
        else:
            numbers.append(float(value))

    walk(predictions)
    return labels, numbers


def assert_same(found, expected, tolerance=1e-5):
    found_labels, found_numbers = flat(found)
    expected_labels, expected_numbers = flat(expected)
    assert found_labels == expected_labels
    assert found_numbers == pytest.approx(expected_numbers, abs=tolerance)


def kinds_model(seed: int = 0) -> MultiTaskSTModel:
    torch.manual_seed(seed)
    return MultiTaskSTModel(tiny_config(tasks=KIND_TASKS, task_kinds=KINDS)).eval()


def features(tokenizer, text, task_id, label, pair=None, negative=None) -> dict:
    feature = {**tokenizer(text), "task_id": task_id, "label": label}
    for prefix, second in (("pair_", pair), ("negative_", negative)):
        if second is not None:
            feature.update({prefix + key: value for key, value in tokenizer(second).items()})
    return feature


def test_kinds_save_and_load_with_their_heads_and_only_non_default_kinds_written(tmp_path, tiny_tokenizer):
    model = kinds_model()
    assert sorted(model.heads) == ["nli", "similar", "topic"]  # embedding tasks have no head
    assert model.heads["nli"][0].in_features == 4 * model.config.embedding_dim  # (u, v, |u - v|, u * v)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["task_kinds"] == KINDS
    loaded = MultiTaskSTModel.from_pretrained(tmp_path).eval()
    assert loaded.config.task_kinds == {"topic": "classification", **KINDS}
    assert loaded.predict(PAIRS, tiny_tokenizer) == model.predict(PAIRS, tiny_tokenizer)
    assert loaded.predict("the movie", tiny_tokenizer) == model.predict("the movie", tiny_tokenizer)


def test_kind_label_counts_are_checked():
    with pytest.raises(ValueError, match=r"^Task 'sts' \(embedding\) has one output name \(that of its score\), got "):
        tiny_config(tasks={"sts": ["a", "b"]}, task_kinds={"sts": "embedding"})
    with pytest.raises(ValueError, match=r"^Task 'nli' needs at least 2 labels, got \['yes'\]"):
        tiny_config(tasks={"nli": ["yes"]}, task_kinds={"nli": "pair_classification"})


def test_predict_takes_pairs_for_pair_tasks_and_texts_for_the_others(tiny_tokenizer):
    model = kinds_model()
    single = model.predict(PAIRS[0], tiny_tokenizer)
    assert list(single) == ["nli", "similar", "sts", "para"]
    assert set(single["nli"]) == {"label", "score", "probabilities"}
    embeddings = model.encode(list(PAIRS[0]), tiny_tokenizer, normalize_embeddings=True)
    cosine = float(embeddings[0] @ embeddings[1])
    assert single["sts"]["values"]["cosine_similarity"] == pytest.approx(cosine, abs=1e-6)  # each text embedded once
    assert single["para"]["values"]["cosine_similarity"] == pytest.approx(cosine, abs=1e-6)
    # The pair head reads the texts' embeddings as `encode` gives them (un-normalised here).
    u, v = (torch.from_numpy(row) for row in model.encode(list(PAIRS[0]), tiny_tokenizer))
    with torch.no_grad():
        expected = model.heads["similar"](pair_features(u[None], v[None]))[0, 0].item()
    assert single["similar"]["values"]["score"] == pytest.approx(expected, abs=1e-5)
    assert list(model.predict("the movie", tiny_tokenizer)) == ["topic"]
    # Batched, streamed from a generator, or one at a time: the same numbers.
    batched = model.predict(PAIRS, tiny_tokenizer, batch_size=3)
    assert_same(model.predict(iter(PAIRS), tiny_tokenizer, chunk_size=2, batch_size=3), batched)
    assert_same([model.predict(pair, tiny_tokenizer) for pair in PAIRS], batched)


def test_predict_refuses_a_task_of_the_other_input_and_a_bad_pair(tiny_tokenizer):
    model = kinds_model()
    with pytest.raises(ValueError, match=r"^Task\(s\) \['topic'\] do not take pairs of texts \(kinds "):
        model.predict(PAIRS, tiny_tokenizer, tasks=["nli", "topic"])
    with pytest.raises(ValueError, match=r"^Task\(s\) \['sts'\] do not take single texts"):
        model.predict("the movie", tiny_tokenizer, tasks="sts")
    with pytest.raises(ValueError, match=r"^The text_pair of `sentences\[1\]` is ' ': empty, whitespace"):
        model.predict([("the movie", "a film"), ("the movie", " ")], tiny_tokenizer)
    with pytest.raises(TypeError, match=r"^`sentences\[1\]` must be a \(text, text_pair\) pair like the items before"):
        model.predict([("the movie", "a film"), "the movie"], tiny_tokenizer)
    only_pairs = MultiTaskSTModel(tiny_config(tasks={"sts": ["cosine"]}, task_kinds={"sts": "embedding"}))
    with pytest.raises(ValueError, match=r"^This model has no task that takes single texts; its tasks \['sts'\]"):
        only_pairs.predict("the movie", tiny_tokenizer)


@pytest.mark.parametrize("task", ["nli", "similar", "sts", "para"])
def test_a_pair_task_has_no_single_text_head_view(task):
    with pytest.raises(
        ValueError, match=rf"^Task '{task}' \({KINDS[task]}\) takes pairs of texts, and a stock pipeline"
    ):
        kinds_model().head_view(task)


def labelled_batch(tokenizer):
    rows = [
        features(tokenizer, "the movie", 0, 1.0),
        features(tokenizer, "the movie", 1, 2.0, pair="a film"),
        features(tokenizer, "stock market rose", 1, 0.0, pair="stock market fell"),
        features(tokenizer, "team won", 2, 0.7, pair="team lost"),
        features(tokenizer, "team won", 3, 4.5, pair="team won the vote"),
        features(tokenizer, "phone launch", 3, 1.0, pair="a bad movie"),
        features(tokenizer, "stock rose", 3, 2.5, pair="market rose"),
        features(tokenizer, "stock fell", 4, 0.0, pair="market fell", negative="phone launch"),
        features(tokenizer, "great film", 4, 0.0, pair="a great movie"),
    ]
    return MultiTaskDataCollator(tokenizer, num_tasks=len(KIND_TASKS), label_widths=[1] * len(KIND_TASKS))(rows)


def test_collator_tokenises_pairs_as_two_sequences_with_their_rows(tiny_tokenizer):
    batch = labelled_batch(tiny_tokenizer)
    assert batch["labels"].dtype == torch.float32  # scores in the batch
    assert batch["pair_rows"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8] and batch["negative_rows"].tolist() == [7]
    first_pair = tiny_tokenizer("a film")["input_ids"]
    assert batch["pair_input_ids"][0, : len(first_pair)].tolist() == first_pair  # its own sequence, not appended
    assert batch["input_ids"][1].tolist()[:4] == tiny_tokenizer("the movie")["input_ids"]
    classification_only = MultiTaskDataCollator(tiny_tokenizer, num_tasks=5)(
        [features(tiny_tokenizer, "the movie", 0, 1)]
    )
    assert classification_only["labels"].dtype == torch.long and "pair_input_ids" not in classification_only


def test_each_kind_loss_matches_a_hand_computation(tiny_tokenizer):
    model = kinds_model().train()
    for module in model.modules():  # dropout off, so the hand computation sees the same head outputs
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    batch = labelled_batch(tiny_tokenizer)
    output = model(**batch)
    with torch.no_grad():
        u = model.projection(model.pool(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])[0])
        pairs = model.projection(model.pool(batch["pair_input_ids"], batch["pair_attention_mask"])[0])
        negative = model.projection(model.pool(batch["negative_input_ids"], batch["negative_attention_mask"])[0])
    v = torch.zeros_like(u)
    v[batch["pair_rows"]] = pairs
    nli = F.cross_entropy(model.heads["nli"](pair_features(u[1:3], v[1:3])), torch.tensor([2, 0]))
    similar = (model.heads["similar"](pair_features(u[3:4], v[3:4]))[0, 0] - 0.7) ** 2
    cosines = F.cosine_similarity(u[4:7], v[4:7]) * 20
    scores = torch.tensor([4.5, 1.0, 2.5])
    terms = [cosines[j] - cosines[i] for i in range(3) for j in range(3) if scores[i] > scores[j]]
    cosent = torch.log(1 + torch.exp(torch.stack(terms)).sum())
    anchors, positives = F.normalize(u[7:9]), F.normalize(v[7:9])
    candidates = torch.cat([positives, F.normalize(negative)])
    contrastive = F.cross_entropy(anchors @ candidates.T * 20, torch.tensor([0, 1]))
    losses = output.task_losses
    assert losses["nli"].item() == pytest.approx(nli.item(), rel=1e-5)
    assert losses["similar"].item() == pytest.approx(similar.item(), rel=1e-5)
    assert losses["sts"].item() == pytest.approx(cosent.item(), rel=1e-5)
    assert losses["para"].item() == pytest.approx(contrastive.item(), rel=1e-5)
    assert output.loss.item() == pytest.approx(sum(loss.item() for loss in losses.values()), rel=1e-5)
    output.loss.backward()
    assert model.heads["nli"][0].weight.grad.abs().sum() > 0


def test_a_pair_task_without_a_labelled_row_in_the_batch_gives_exactly_zero(tiny_tokenizer):
    model = kinds_model().train()
    collator = MultiTaskDataCollator(tiny_tokenizer, num_tasks=len(KIND_TASKS), label_widths=[1] * len(KIND_TASKS))
    texts_only = model(
        **collator([features(tiny_tokenizer, "the movie", 0, 1), features(tiny_tokenizer, "vote", 0, 2)])
    )
    # One pair row, labelled for `sts` only: the other pair tasks have none; CoSENT needs two scored rows to order.
    one_pair = model(**collator([features(tiny_tokenizer, "the movie", 3, 2.0, pair="a film")]))
    for output, absent in (
        (texts_only, ["nli", "similar", "sts", "para"]),
        (one_pair, ["nli", "similar", "sts", "para"]),
    ):
        for task in absent:
            assert output.task_losses[task].item() == 0.0
    (texts_only.loss + one_pair.loss).backward()  # every task stays in the graph


def test_a_labelled_pair_task_row_without_its_second_text_is_named(tiny_tokenizer):
    model = kinds_model()
    collator = MultiTaskDataCollator(tiny_tokenizer, num_tasks=5, label_widths=[1] * 5)
    batch = collator([features(tiny_tokenizer, "the movie", 1, 0)])
    with pytest.raises(
        ValueError, match=r"^Batch row 0 is labelled for task 'nli' \(pair_classification\), which takes"
    ):
        model(**batch)


def test_metrics_of_each_kind_against_hand_computed_values():
    labels = np.full((6, 5), np.nan)
    labels[:3, 1] = [0, 2, 1]  # nli
    labels[3:6, 2] = [0.5, 0.1, 0.9]  # similar
    labels[:4, 3] = [4.0, 1.0, 2.0, 3.0]  # sts
    labels[4:6, 4] = 0  # para
    nli = np.array([[2.0, 0, 0], [0, 0, 1.0], [0, 0, 1.0], [0] * 3, [0] * 3, [0] * 3])
    similar = np.array([[0.0], [0.0], [0.0], [0.4], [0.3], [0.8]])
    sts = np.array([[0.9], [0.1], [0.5], [0.2], [0.0], [0.0]])
    para = np.zeros((6, 7))
    para[4, :2], para[4, 2:4] = [1, 0], [0.8, 0.6]  # anchor 4: 0.8 to its positive, 0.3 to the other
    para[5, :2], para[5, 2:4] = [0, 1], [0.3, 0.5]  # anchor 5: 0.5 to its positive, 0.6 to the other
    predictions = {"nli": nli, "similar": similar, "sts": sts, "para": para}
    config = tiny_config(tasks=KIND_TASKS, task_kinds=KINDS)
    metrics = multitask_classification_metrics(predictions, labels, list(KIND_TASKS), config)
    assert metrics["nli_accuracy"] == pytest.approx(2 / 3)
    assert metrics["nli_f1"] == pytest.approx((1 + 0 + 2 / 3) / 3)  # per class F1: 1, 0, 2/3
    assert metrics["similar_pearson"] == pytest.approx(pearsonr([0.4, 0.3, 0.8], [0.5, 0.1, 0.9]).statistic)
    assert metrics["similar_spearman"] == pytest.approx(1.0)
    assert metrics["sts_spearman"] == pytest.approx(spearmanr([0.9, 0.1, 0.5, 0.2], [4, 1, 2, 3]).statistic)
    assert metrics["para_accuracy_at_1"] == pytest.approx(0.5) and metrics["para_mrr"] == pytest.approx(0.75)
    assert metrics["similar_rmse"] == pytest.approx(np.sqrt(np.mean(np.square([0.1, 0.2, 0.1]))))
    assert "sts_rmse" not in metrics  # a cosine is not in the scores' units
    assert metrics["mean_accuracy"] == pytest.approx(2 / 3)  # retrieval accuracy@1 is not a class accuracy
    # Each task's main metric: accuracy, Spearman, Spearman, accuracy@1.
    expected = (2 / 3 + 1.0 + metrics["sts_spearman"] + 0.5) / 4
    assert metrics["mean_score"] == pytest.approx(expected)


def write_pairs(path, rows, header="premise,hypothesis,label"):
    path.write_text(header + "\n" + "\n".join(",".join(row) for row in rows) + "\n")
    return path


def test_data_loader_reads_pairs_and_scores_and_names_a_bad_row(tmp_path):
    rows = [("the movie", "a film", "entailment"), ("team won", "team lost", "contradiction")] * 10
    nli = load_task_dataset(
        write_pairs(tmp_path / "nli.csv", rows), kind="pair_classification", text_column="premise",
        text_pair_column="hypothesis", label_names=["entailment", "neutral", "contradiction"],
    )  # fmt: skip
    assert set(nli["train"].column_names) == {"text", "label", "text_pair"}
    assert nli["train"].features["label"].names == ["entailment", "neutral", "contradiction"]
    missing = write_pairs(tmp_path / "missing.csv", [*rows[:3], ("the vote", " ", "neutral")])
    with pytest.raises(
        ValueError,
        match=r"^Dataset '.*missing.csv', split 'train', column 'text_pair', row 3: empty text ' '; expected",
    ):
        load_task_dataset(missing, kind="pair_classification", text_column="premise", text_pair_column="hypothesis")
    scores = write_pairs(tmp_path / "sts.csv", [("a", "b", "4.5"), ("c", "d", "high")] * 10, "s1,s2,score")
    with pytest.raises(
        ValueError,
        match=r"^Dataset '.*sts.csv', split 'train', column 'label', row 1: score 'high' is not a finite number",
    ):
        load_task_dataset(scores, kind="embedding", text_column="s1", text_pair_column="s2", label_column="score")
    with pytest.raises(ValueError, match=r"a pair_regression task takes pairs of texts; pass `text_pair_column=`"):
        load_task_dataset(scores, kind="pair_regression", text_column="s1", label_column="score")
    good = write_pairs(tmp_path / "good.csv", [("a b", "c d", str(i / 10)) for i in range(30)], "s1,s2,score")
    sts = load_task_dataset(good, kind="embedding", text_column="s1", text_pair_column="s2", label_column="score")
    assert sts["train"].features["label"].dtype == "float32" and sum(len(split) for split in sts.values()) == 30
    triplets = write_pairs(tmp_path / "para.csv", [("a b", "c d", "e f"), ("g", "h", "")] * 10, "anchor,positive,neg")
    para = load_task_dataset(
        triplets, kind="embedding_contrastive", text_column="anchor", text_pair_column="positive",
        negative_column="neg",
    )  # fmt: skip
    assert set(para["train"]["label"]) == {0} and None in para["train"]["negative"]  # a missing negative is allowed


def test_train_script_trains_every_kind_and_records_their_metrics(tmp_path, tiny_backbone_dir):
    words = "the a movie film great bad stock market rose fell team won lost election vote phone".split()
    rows = [
        (f"{words[i % 16]} {words[(3 * i) % 16]}", f"{words[(5 * i) % 16]} {words[(7 * i) % 16]}") for i in range(48)
    ]
    nli = write_pairs(tmp_path / "nli.csv", [(a, b, ("yes", "no")[i % 2]) for i, (a, b) in enumerate(rows)])
    sts = write_pairs(tmp_path / "sts.csv", [(a, b, str(i % 6)) for i, (a, b) in enumerate(rows)], "s1,s2,score")
    arguments = train_arguments(tmp_path, tiny_backbone_dir)
    tasks = arguments.index("--tasks")
    arguments[tasks + 2 : tasks + 3] = [f"nli={nli}", f"sts={sts}"]  # topic, nli (instead of sentiment), sts
    arguments[arguments.index("--task_label_names") + 1] = "nli=yes,no"
    arguments += ["--task_kinds", "nli=pair_classification", "sts=embedding", "--text_columns", "nli=premise",
                  "sts=s1", "--text_pair_columns", "nli=hypothesis", "sts=s2", "--label_columns", "sts=score"]  # fmt: skip
    from multitask_st.cli import train

    train.main(arguments)
    out = tmp_path / "out"
    model = MultiTaskSTModel.from_pretrained(out)
    assert model.config.tasks["sts"] == ["cosine_similarity"] and model.config.task_kinds["sts"] == "embedding"
    summary = json.loads((out / "training_summary.json").read_text())
    assert set(summary["metrics"]["tasks"]["sts"]["test"]) == {"pearson", "spearman"}
    assert set(summary["metrics"]["tasks"]["nli"]["test"]) == {"accuracy", "f1"}
    assert summary["run"]["embedding_distillation_weight"] == 0.0  # the default: off, as `sts` trains the embedding
    # The card: model-index results with each kind's task type and metrics, the pair tasks described.
    from huggingface_hub import ModelCard

    from multitask_st.sharing.model_card import render_model_card

    card = render_model_card(out, repo_id="org/kinds")
    results = {(r.task_name, r.metric_type): r for r in ModelCard(card).data.eval_results}
    sts = summary["metrics"]["tasks"]["sts"]["test"]
    assert results[("Semantic similarity of the embedding (sts)", "spearmanr")].task_type == "sentence-similarity"
    assert results[("Semantic similarity of the embedding (sts)", "spearmanr")].metric_value == sts["spearman"]
    assert results[("Sentence-pair classification (nli)", "accuracy")].task_type == "text-classification"
    assert "`nli` (pair_classification, takes a pair of texts): pair head over (u, v, |u - v|, u * v)" in card
    assert f"| `sts` | embedding | test | Pearson {sts['pearson']:.4f}, Spearman {sts['spearman']:.4f} |" in card


@pytest.fixture(scope="module")
def exported_kinds(tmp_path_factory, tiny_tokenizer):
    from multitask_st.export.onnx import export_onnx
    from multitask_st.export.onnx_runtime import MultiTaskSTOnnxModel

    folder = tmp_path_factory.mktemp("kinds")
    model = kinds_model()
    model.save_pretrained(folder / "model")
    tiny_tokenizer.save_pretrained(folder / "model")
    report = export_onnx(folder / "model", folder / "onnx", check_texts=24)
    return model, report, MultiTaskSTOnnxModel.from_pretrained(folder / "onnx"), folder / "model"


def test_every_door_gives_predicts_numbers_for_pairs(exported_kinds, tiny_tokenizer):
    from transformers import pipeline

    model, report, onnx_model, model_dir = exported_kinds
    expected = model.predict(PAIRS, tiny_tokenizer)
    assert report["pair_heads"]["file"] == "onnx/pair_heads.onnx" and report["pair_heads"]["labels_differing"] == {
        "nli": 0
    }
    assert_same(onnx_model.predict(PAIRS), expected)  # the pair heads' graph on the encoder graph's embeddings
    assert_same(onnx_model.predict(PAIRS[0]), expected[0])
    assert_same(onnx_model.predict("the movie"), model.predict("the movie", tiny_tokenizer))
    classifier = pipeline(model=str(model_dir), trust_remote_code=True)
    # The pipeline's shape: {"label", "score"} per classification task (no "probabilities"), scores as predict's.
    shaped = [{task: {k: v for k, v in entry.items() if k != "probabilities"} for task, entry in row.items()}
              for row in expected]  # fmt: skip
    assert_same(classifier(PAIRS), shaped)
    assert_same(classifier([{"text": a, "text_pair": b} for a, b in PAIRS]), shaped)
    assert_same(classifier({"text": PAIRS[0][0], "text_pair": PAIRS[0][1]}), shaped[0])
    assert_same(classifier(iter(PAIRS), tasks=["sts"]), [{"sts": row["sts"]} for row in expected])
    with pytest.raises(ValueError, match=r"^Task\(s\) \['topic'\] do not take pairs of texts"):
        classifier(PAIRS, tasks="topic")
    doors = (
        lambda **kw: model.predict(PAIRS, tiny_tokenizer, **kw),
        lambda **kw: onnx_model.predict(PAIRS, **kw),
        lambda **kw: classifier(PAIRS, **kw),
    )
    for door in doors:
        with pytest.raises(TypeError, match=r"^`calibrated` must be True or False, got 'no'\.$"):
            door(calibrated="no")
    # The sentence-transformers door embeds; an embedding task's score is the cosine of those embeddings.
    st = pytest.importorskip("sentence_transformers").SentenceTransformer(str(model_dir), trust_remote_code=True)
    first, second = st.encode([pair[0] for pair in PAIRS]), st.encode([pair[1] for pair in PAIRS])
    cosines = st.similarity_pairwise(first, second).tolist()
    assert cosines == pytest.approx([row["sts"]["values"]["cosine_similarity"] for row in expected], abs=1e-5)


def test_onnx_folder_without_the_pair_heads_graph_is_refused(exported_kinds, tmp_path):
    import shutil

    from multitask_st.export.onnx_runtime import MultiTaskSTOnnxModel

    _, _, onnx_model, _ = exported_kinds
    folder = tmp_path / "copy"
    shutil.copytree(onnx_model.model_path.parent.parent, folder)
    (folder / "onnx" / "pair_heads.onnx").unlink()
    with pytest.raises(ValueError, match=r"has pair-head tasks but no onnx/pair_heads.onnx: export the model again"):
        MultiTaskSTOnnxModel.from_pretrained(folder)


def test_app_pair_tab_gives_predicts_numbers(tiny_tokenizer):
    from multitask_st.app.demo import MultiTaskDemo

    model = kinds_model()
    demo = MultiTaskDemo(model, tiny_tokenizer, corpus=["the team won", "stock market fell"])
    assert list(demo.tasks) == ["topic"] and list(demo.pair_tasks) == ["nli", "similar", "sts", "para"]
    expected = model.predict(PAIRS[1], tiny_tokenizer)
    nli, similar, sts, para = demo.pair(*PAIRS[1])
    assert nli == expected["nli"]["probabilities"]
    assert similar == round(expected["similar"]["values"]["score"], 4)
    assert sts == para == round(expected["sts"]["values"]["cosine_similarity"], 4)
    assert demo.classify("the movie") == [model.predict("the movie", tiny_tokenizer)["topic"]["probabilities"]]
    assert [row[4] for row in demo.search("team")][0].startswith(("world", "sports", "business"))
    import gradio as gr

    with pytest.raises(gr.Error, match="The second text is empty: type a sentence first."):
        demo.pair("the movie", "  ")
    demo.build()  # the page, with its Pair tab, builds
