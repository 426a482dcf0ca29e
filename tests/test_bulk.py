"""Bulk inference (`multitask-st embed`, multitask_st/bulk/): Parquet shards + manifest with the engine's numbers,
resumable after a crash, the same files from one process, two (torchrun) or a Ray Data actor pool."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import TEXTS, require_module, run_torchrun, save_tiny

from multitask_st.bulk import shards
from multitask_st.bulk.corpus import open_corpus
from multitask_st.bulk.folder import read_manifest
from multitask_st.bulk.shards import EmbedSettings, ShardModel, embed_corpus
from multitask_st.cli import embed


# 25 rows in shards of 9: three shards (9, 9, 7); row 11 has no content.
NUM_ROWS, SHARD_SIZE = 25, 9
EMPTY_ROW = 11


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    return save_tiny(tmp_path_factory.mktemp("bulk"), tiny_tokenizer)[1]


def corpus_rows() -> list[dict]:
    texts = [f"{TEXTS[i % len(TEXTS)]} {TEXTS[(5 * i) % len(TEXTS)]}" for i in range(NUM_ROWS)]
    texts[EMPTY_ROW] = "   "
    return [{"id": f"doc-{i}", "text": text} for i, text in enumerate(texts)]


@pytest.fixture
def corpus_csv(tmp_path) -> Path:
    path = tmp_path / "corpus.csv"
    pd.DataFrame(corpus_rows()).to_csv(path, index=False)
    return path


def settings_for(model_dir, source, **overrides) -> EmbedSettings:
    return EmbedSettings(**{"source": str(source), "model": str(model_dir), "keep_columns": ["id"],
                            "shard_size": SHARD_SIZE, **overrides})  # fmt: skip


def read_output(folder: Path) -> pa.Table:
    manifest = read_manifest(folder)
    return pa.concat_tables([pq.read_table(folder / shard["file"]) for shard in manifest["shards"]])


def shard_files(folder: Path) -> list[str]:
    return sorted(path.name for path in (folder / "shards").iterdir())


def test_outputs_are_the_engines_encode_and_predict(tmp_path, model_dir, corpus_csv, tiny_tokenizer):
    from multitask_st import MultiTaskSTModel

    settings = settings_for(model_dir, corpus_csv)
    result = embed_corpus(open_corpus(str(corpus_csv)), settings, tmp_path / "out", batch_size=4)
    assert result == {"written": [0, 1, 2], "skipped": [], "num_shards": 3, "complete": True}
    assert shard_files(tmp_path / "out") == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    manifest = read_manifest(tmp_path / "out")
    assert manifest["complete"] and manifest["num_rows"] == NUM_ROWS and manifest["num_empty_texts"] == 1
    assert [(s["index"], s["first_row"], s["num_rows"]) for s in manifest["shards"]] == [(0, 0, 9), (1, 9, 9),
                                                                                         (2, 18, 7)]  # fmt: skip
    assert manifest["tasks"] == {"topic": ["world", "sports", "business"], "sentiment": ["negative", "positive"]}

    table = read_output(tmp_path / "out").to_pydict()
    rows = corpus_rows()
    assert table["row"] == list(range(NUM_ROWS)) and table["id"] == [row["id"] for row in rows]
    valid = [i for i in range(NUM_ROWS) if i != EMPTY_ROW]
    model = MultiTaskSTModel.from_pretrained(model_dir)
    texts = [rows[i]["text"] for i in valid]
    np.testing.assert_allclose(np.array([table["embedding"][i] for i in valid]),
                               model.encode(texts, tiny_tokenizer), atol=1e-5)  # fmt: skip
    predictions = model.predict(texts, tiny_tokenizer)
    for task, labels in manifest["tasks"].items():
        assert [table[task][i] for i in valid] == [p[task]["label"] for p in predictions]
        np.testing.assert_allclose([table[f"{task}_score"][i] for i in valid],
                                   [p[task]["score"] for p in predictions], atol=1e-6)  # fmt: skip
        expected = [[p[task]["probabilities"][label] for label in labels] for p in predictions]
        np.testing.assert_allclose([table[f"{task}_probabilities"][i] for i in valid], expected, atol=1e-6)
    # the text without content: its row is there, with nulls (counted in the manifest, never dropped)
    assert table["embedding"][EMPTY_ROW] is None and table["topic"][EMPTY_ROW] is None
    assert table["sentiment_probabilities"][EMPTY_ROW] is None


def test_a_crash_mid_way_resumes_to_exactly_the_rows_of_an_uninterrupted_run(tmp_path, model_dir, corpus_csv,
                                                                             monkeypatch):  # fmt: skip
    settings = settings_for(model_dir, corpus_csv)
    model = ShardModel(str(model_dir))
    embed_corpus(open_corpus(str(corpus_csv)), settings, tmp_path / "whole", model, batch_size=4)

    # The crash: the process dies while writing shard 1 (half a file on disk, under its temporary name).
    write = shards.write_atomically

    def dies_writing_shard_1(table, path, metadata):
        if metadata["index"] == 1:
            temporary = path.with_name(f".{path.name}.99999.tmp")
            temporary.write_bytes(b"PAR1 half a shard")
            raise KeyboardInterrupt("killed")
        write(table, path, metadata)

    monkeypatch.setattr(shards, "write_atomically", dies_writing_shard_1)
    with pytest.raises(KeyboardInterrupt):
        embed_corpus(open_corpus(str(corpus_csv)), settings, tmp_path / "crashed", model, batch_size=4)
    monkeypatch.setattr(shards, "write_atomically", write)
    assert shard_files(tmp_path / "crashed") == [".part-00001.parquet.99999.tmp", "part-00000.parquet"]
    assert read_manifest(tmp_path / "crashed")["complete"] is False
    first = (tmp_path / "crashed/shards/part-00000.parquet").stat()

    written = []
    monkeypatch.setattr(shards, "write_atomically", lambda *args: written.append(args[2]["index"]) or write(*args))
    result = embed_corpus(open_corpus(str(corpus_csv)), settings, tmp_path / "crashed", model, batch_size=4)
    assert result == {"written": [1, 2], "skipped": [0], "num_shards": 3, "complete": True}
    assert written == [1, 2]  # shard 0 is not written twice
    again = (tmp_path / "crashed/shards/part-00000.parquet").stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    assert read_output(tmp_path / "crashed").equals(read_output(tmp_path / "whole"))
    assert shard_files(tmp_path / "crashed") == shard_files(tmp_path / "whole")  # the half shard is cleared away
    resumed, whole = read_manifest(tmp_path / "crashed"), read_manifest(tmp_path / "whole")
    strip = [{key: value for key, value in shard.items() if key != "seconds"} for shard in resumed["shards"]]
    assert strip == [{key: value for key, value in shard.items() if key != "seconds"} for shard in whole["shards"]]

    # A complete run run again writes nothing.
    written.clear()
    result = embed_corpus(open_corpus(str(corpus_csv)), settings, tmp_path / "crashed", model, batch_size=4)
    assert result["written"] == [] and result["complete"] and written == []


def test_a_rerun_refuses_a_changed_corpus_or_model_instead_of_mixing_them(tmp_path, model_dir, corpus_csv):
    """Resume keeps a shard only if it holds the rows the corpus gives now, from the same model and calibration: a
    corpus that grew, shrank or was edited, or a model retrained or recalibrated in place, is refused by name."""
    settings = settings_for(model_dir, corpus_csv)
    model = ShardModel(str(model_dir))
    rows = corpus_rows()

    def run(corpus_rows_now, run_model=model):
        pd.DataFrame(corpus_rows_now).to_csv(corpus_csv, index=False)
        return embed_corpus(open_corpus(str(corpus_csv)), settings, tmp_path / "run", run_model, batch_size=4)

    run(rows[:15])  # shards of 9 and 6 rows
    grown = rows[:15] + [{"id": f"new-{i}", "text": f"another text {i}"} for i in range(10)]
    with pytest.raises(
        ValueError, match=r"^Shard 1 in .* was written from other rows \(\{'first_row': 9, 'num_rows': 6"
    ):
        run(grown)  # shard 1 would now hold 9 rows: its 6 old ones are not kept as if they were all
    edited = [dict(row) for row in rows[:15]]
    edited[3]["text"] = "an edited text"
    with pytest.raises(ValueError, match=r"^Shard 0 in .* was written from other rows .*the corpus changed since"):
        run(edited)
    with pytest.raises(ValueError, match=r"holds shard\(s\) \['part-00001.parquet'\] beyond the corpus's 1 shard"):
        run(rows[:9])  # shard 0 as before, shard 1 no more
    assert run(rows[:15])["skipped"] == [0, 1]  # the same corpus again: nothing rewritten

    recalibrated = tmp_path / "recalibrated"
    shutil.copytree(model_dir, recalibrated)
    config = json.loads((recalibrated / "config.json").read_text())
    config["task_calibration"] = {"topic": {"temperature": 3.0}}
    (recalibrated / "config.json").write_text(json.dumps(config))
    other = ShardModel(str(recalibrated))
    assert other.fingerprint != model.fingerprint and other.fingerprint.startswith("sha256:")
    with pytest.raises(ValueError, match=r"other settings \(model: .*; the model's weights or calibration changed"):
        embed_corpus(open_corpus(str(corpus_csv)), settings_for(recalibrated, corpus_csv), tmp_path / "run", other)


def test_kept_columns_that_an_output_would_overwrite_and_a_bad_length_are_refused_first(tmp_path, model_dir):
    path = tmp_path / "gold.csv"
    pd.DataFrame([{"text": text, "topic": "gold"} for text in TEXTS[:4]]).to_csv(path, index=False)
    model = ShardModel(str(model_dir))
    with pytest.raises(ValueError, match=r"^`keep_columns` \['topic'\] would be overwritten by the output columns"):
        embed_corpus(
            open_corpus(str(path)), settings_for(model_dir, path, keep_columns=["topic"]), tmp_path / "a", model
        )
    with pytest.raises(ValueError, match=r"^`max_length` must be an integer in 1\.\.64 .*got 0"):
        embed_corpus(open_corpus(str(path)), settings_for(model_dir, path, keep_columns=[], max_length=0), tmp_path / "b",
                     model)  # fmt: skip
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing written: a rerun may fix it
    # Kept, not overwritten, when the outputs leave that head out.
    settings = settings_for(model_dir, path, keep_columns=["topic"], outputs=["embedding", "sentiment"])
    embed_corpus(open_corpus(str(path)), settings, tmp_path / "c", model)
    assert read_output(tmp_path / "c").column("topic").to_pylist() == ["gold"] * 4


def test_streaming_and_each_corpus_format_give_the_same_shards(tmp_path, model_dir, corpus_csv):
    model = ShardModel(str(model_dir))
    reference = None
    frame = pd.DataFrame(corpus_rows())
    sources = {"corpus.csv": corpus_csv}
    frame.to_parquet(tmp_path / "corpus.parquet")
    sources["corpus.parquet"] = tmp_path / "corpus.parquet"
    frame.to_json(tmp_path / "corpus.jsonl", orient="records", lines=True)
    sources["corpus.jsonl"] = tmp_path / "corpus.jsonl"
    for name, source in sources.items():
        for streaming in (False, True):
            folder = tmp_path / f"{name}-{streaming}"
            embed_corpus(open_corpus(str(source), streaming=streaming), settings_for(model_dir, source), folder, model)
            table = read_output(folder)
            reference = table if reference is None else reference
            assert table.equals(reference), (name, streaming)


def test_text_files_embed_one_line_per_row_and_outputs_pick_columns(tmp_path, model_dir):
    (tmp_path / "corpus.txt").write_text("\n".join(TEXTS) + "\n")
    settings = EmbedSettings(source=str(tmp_path / "corpus.txt"), model=str(model_dir), outputs=["sentiment"])
    embed_corpus(open_corpus(settings.source), settings, tmp_path / "out")
    table = read_output(tmp_path / "out")
    assert table.column_names == ["row", "sentiment", "sentiment_score", "sentiment_probabilities"]
    assert table.num_rows == len(TEXTS)
    settings = EmbedSettings(source=str(tmp_path / "corpus.txt"), model=str(model_dir), outputs=["embedding"])
    embed_corpus(open_corpus(settings.source), settings, tmp_path / "embedding-only")
    assert read_output(tmp_path / "embedding-only").column_names == ["row", "embedding"]


def test_bad_settings_and_folders_are_named(tmp_path, model_dir, corpus_csv, capsys):
    model = ShardModel(str(model_dir))
    dataset = open_corpus(str(corpus_csv))
    with pytest.raises(ValueError, match=r"Unknown output\(s\) \['topics'\]; choose from \['embedding', 'topic', "):
        embed_corpus(dataset, settings_for(model_dir, corpus_csv, outputs=["topics"]), tmp_path / "a", model)
    with pytest.raises(
        ValueError, match=r"The corpus has no column\(s\) \['body'\]; its columns are \['id', 'text'\]"
    ):
        embed_corpus(dataset, settings_for(model_dir, corpus_csv, text_column="body"), tmp_path / "b", model)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # checked before anything is written
    with pytest.raises(ValueError, match=r"`shard_size` must be a positive integer, got 0"):
        settings_for(model_dir, corpus_csv, shard_size=0)
    (tmp_path / "full").mkdir()
    (tmp_path / "full/notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"is not empty and holds no manifest.json"):
        embed_corpus(dataset, settings_for(model_dir, corpus_csv), tmp_path / "full", model)
    embed_corpus(dataset, settings_for(model_dir, corpus_csv), tmp_path / "run", model)
    with pytest.raises(ValueError, match=r"holds a bulk run with other settings \(shard_size: 9 there, 5 now\)"):
        embed_corpus(dataset, settings_for(model_dir, corpus_csv, shard_size=5), tmp_path / "run", model)
    # the command: one line on stderr, exit status 1
    capsys.readouterr()
    status = embed.main([str(model_dir), str(tmp_path / "missing.csv"), "--output", str(tmp_path / "c")])
    assert status == 1
    assert (
        capsys.readouterr().err
        == f"multitask-st embed: error: No such data file: {str(tmp_path / 'missing.csv')!r}.\n"
    )


def test_multi_label_and_regression_heads_get_their_own_columns(tmp_path, tiny_tokenizer):
    tasks = {"topic": ["world", "sports"], "tags": ["a", "b", "c"], "score": ["x", "y"]}
    model, folder = save_tiny(tmp_path, tiny_tokenizer, tasks=tasks, task_kinds={"tags": "multi_label",
                                                                                   "score": "regression"})  # fmt: skip
    (tmp_path / "corpus.txt").write_text("\n".join(TEXTS) + "\n")
    settings = EmbedSettings(source=str(tmp_path / "corpus.txt"), model=str(folder))
    embed_corpus(open_corpus(settings.source), settings, tmp_path / "out", batch_size=4)
    table = read_output(tmp_path / "out")
    assert table.column_names == ["row", "embedding", "topic", "topic_score", "topic_probabilities", "tags",
                                  "tags_probabilities", "score"]  # fmt: skip
    assert read_manifest(tmp_path / "out")["task_kinds"] == {"topic": "classification", "tags": "multi_label",
                                                            "score": "regression"}  # fmt: skip
    table = table.to_pydict()
    predictions = model.predict(TEXTS, tiny_tokenizer)
    assert table["tags"] == [p["tags"]["labels"] for p in predictions]
    np.testing.assert_allclose(
        table["tags_probabilities"],
        [[p["tags"]["probabilities"][n] for n in tasks["tags"]] for p in predictions],
        atol=1e-6,
    )
    np.testing.assert_allclose(table["score"], [[p["score"]["values"][n] for n in "xy"] for p in predictions],
                               atol=1e-5)  # fmt: skip


def test_pair_and_embedding_tasks_are_left_out_and_named_if_asked_for(tmp_path, tiny_tokenizer):
    tasks = {"topic": ["world", "sports"], "nli": ["yes", "no"], "sts": ["cosine_similarity"]}
    model, folder = save_tiny(tmp_path, tiny_tokenizer, tasks=tasks, task_kinds={"nli": "pair_classification",
                                                                                   "sts": "embedding"})  # fmt: skip
    (tmp_path / "corpus.txt").write_text("\n".join(TEXTS) + "\n")
    settings = EmbedSettings(source=str(tmp_path / "corpus.txt"), model=str(folder))
    embed_corpus(open_corpus(settings.source), settings, tmp_path / "out")
    table = read_output(tmp_path / "out")
    assert table.column_names == ["row", "embedding", "topic", "topic_score", "topic_probabilities"]
    assert table["topic"].to_pylist() == [p["topic"]["label"] for p in model.predict(TEXTS, tiny_tokenizer)]
    settings = EmbedSettings(source=str(tmp_path / "corpus.txt"), model=str(folder), outputs=["embedding", "nli"])
    with pytest.raises(
        ValueError,
        match=r"^Output\(s\) \['nli'\] read pairs of texts \(pair_classification\); a "
        r"corpus gives one text per row: choose from \['embedding', 'topic'\]\.$",
    ):
        embed_corpus(open_corpus(settings.source), settings, tmp_path / "pairs")


def test_onnx_runtime_writes_the_same_layout_with_its_numbers(tmp_path, model_dir, corpus_csv):
    from multitask_st.export.onnx import export_onnx
    from multitask_st.export.onnx_runtime import MultiTaskSTOnnxModel

    export_onnx(model_dir, tmp_path / "onnx-model", check_texts=8)
    settings = settings_for(tmp_path / "onnx-model", corpus_csv, runtime="onnx")
    embed_corpus(open_corpus(str(corpus_csv)), settings, tmp_path / "out", batch_size=4)
    table = read_output(tmp_path / "out").to_pydict()
    runtime = MultiTaskSTOnnxModel.from_pretrained(tmp_path / "onnx-model")
    valid = [i for i in range(NUM_ROWS) if i != EMPTY_ROW]
    texts = [corpus_rows()[i]["text"] for i in valid]
    np.testing.assert_allclose(np.array([table["embedding"][i] for i in valid]), runtime.encode(texts), atol=1e-6)
    assert [table["topic"][i] for i in valid] == [p["topic"]["label"] for p in runtime.predict(texts)]


# ---------------------------------------------------------------------------------------------------- several processes


@pytest.mark.slow
def test_two_processes_write_their_own_shards_and_the_same_files(tmp_path, model_dir, corpus_csv):
    result = run_torchrun("-m", "multitask_st", "embed", str(model_dir), str(corpus_csv), "--output",
                          str(tmp_path / "two"), "--keep_columns", "id", "--shard_size", str(SHARD_SIZE))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    reports = sorted(
        (json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"process"')),
        key=lambda r: r["process"],
    )
    assert [(r["process"], r["written"]) for r in reports] == [(0, [0, 2]), (1, [1])]  # shard k on process k % 2
    embed_corpus(open_corpus(str(corpus_csv)), settings_for(model_dir, corpus_csv), tmp_path / "one")
    assert read_manifest(tmp_path / "two")["complete"]
    assert read_output(tmp_path / "two").equals(read_output(tmp_path / "one"))


@pytest.mark.slow
def test_ray_data_actor_pool_gives_the_same_shards_and_numbers(tmp_path, model_dir, corpus_csv):
    ray = require_module("ray")
    from multitask_st.bulk.ray_data import embed_corpus_on_ray

    embed_corpus(open_corpus(str(corpus_csv)), settings_for(model_dir, corpus_csv), tmp_path / "one")
    settings = settings_for(model_dir, corpus_csv)
    # shard 0 written by an earlier run (as process 0 of 3 writes it): the pool writes the other two
    embed_corpus(open_corpus(str(corpus_csv)), settings, tmp_path / "ray", rank=0, world_size=3)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = embed_corpus_on_ray(open_corpus(str(corpus_csv)), settings, tmp_path / "ray", actors=2)
    finally:
        ray.shutdown()
    assert result == {"written": [1, 2], "skipped": [0], "num_shards": 3, "complete": True}
    assert read_output(tmp_path / "ray").equals(read_output(tmp_path / "one"))


@pytest.mark.slow
def test_spark_map_in_pandas_gives_the_rows_of_embed(tmp_path, model_dir, corpus_csv, monkeypatch):
    """Spark local mode (2 cores, 3 partitions): `embed_dataframe`'s rows are `embed_corpus`'s, value for value (the
    numbers within float32 noise: Spark's batches pad differently)."""
    pyspark = require_module("pyspark")
    from multitask_st.bulk.spark import embed_dataframe

    embed_corpus(open_corpus(str(corpus_csv)), settings_for(model_dir, corpus_csv), tmp_path / "one")
    expected = read_output(tmp_path / "one").to_pandas()
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)  # the workers: this interpreter, not the PATH's python
    spark = (pyspark.sql.SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
             .config("spark.sql.shuffle.partitions", "2").getOrCreate())  # fmt: skip
    try:
        rows = [{"row": i, **row} for i, row in enumerate(corpus_rows())]
        corpus = spark.createDataFrame(pd.DataFrame(rows)).repartition(3)
        found = embed_dataframe(corpus, str(model_dir), keep_columns=["id"], batch_size=4).toPandas()
        schema = embed_dataframe(corpus, str(model_dir), outputs=["sentiment"]).columns
    finally:
        spark.stop()
    found = found.sort_values("row").reset_index(drop=True)
    assert list(found.columns) == list(expected.columns)
    assert schema == ["row", "sentiment", "sentiment_score", "sentiment_probabilities"]
    for column in expected.columns:
        if column in ("embedding", "topic_probabilities", "sentiment_probabilities", "topic_score", "sentiment_score"):
            for got, want in zip(found[column], expected[column], strict=True):
                if want is None or (np.ndim(want) == 0 and pd.isna(want)):
                    assert got is None or pd.isna(got), column  # the empty text's row: null
                else:
                    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want), atol=1e-5)
        else:
            assert found[column].tolist() == expected[column].tolist(), column
