"""Streaming multi-task training: memory as the rows stream past, speed against map-style training, and the cost of
embedding distillation computed per batch against the precomputed `teacher_embedding` column.

    python bench/streaming.py --part rss --rows 1000000           # RSS after 10k / 100k / 1M streamed rows (tiny model)
    python bench/streaming.py --part speed --rows 20000 --steps 60 --repeats 3            # samples/s, tiny model
    python bench/streaming.py --part speed --rows 20000 --steps 20 --repeats 2 --model minilm
    python bench/streaming.py --part distill --rows 4000 --steps 20 --repeats 2           # MiniLM, distillation on

Every run is a fresh subprocess (`--child`), so RSS is its own. Data: a generated CSV of short texts (8-16 words of a
90-word vocabulary) labelled 0-2 for task `topic` and another for `sentiment` (labels 0-1), the size of `--rows` each.
`tiny` is a 2-layer, 32-wide BERT over a word-level vocabulary (the data pipeline dominates: the worst case for
streaming); `minilm` the packaged all-MiniLM-L6-v2. Map-style runs load and tokenise the files first (timed apart:
`prepare_s`), as `multitask-st train` does; `train_samples_per_second` is Trainer's, over the training steps only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
from common import backbone_path, machine


VOCABULARY = (
    "the a an of to in on for with at by from up about into over after film movie story actor scene music plot "
    "great good bad poor dull fine brilliant awful boring moving funny sad market stock price shares bank profit "
    "loss trade economy team match goal player coach season cup league win lost vote election party minister law "
    "court policy government phone software chip device launch data network internet science space research study "
    "health doctor drug virus water energy climate city road train car weather storm"
).split()
TASKS = {"topic": ["world", "sports", "business"], "sentiment": ["neg", "pos"]}
CHECKPOINTS = (10_000, 100_000, 1_000_000)


def write_data(folder: Path, rows: int, seed: int = 0) -> dict[str, Path]:
    files = {}
    for offset, (task, labels) in enumerate(TASKS.items()):
        path = folder / f"{task}-{rows}.csv"
        if not path.exists():
            rng = random.Random(seed + offset)
            with path.open("w") as file:
                file.write("text,label\n")
                for _ in range(rows):
                    file.write(f"{' '.join(rng.choices(VOCABULARY, k=rng.randint(8, 16)))},{rng.choice(labels)}\n")
        files[task] = path
    return files


def tokenizer_and_model(kind: str, folder: Path):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertTokenizerFast

    from multitask_st import MultiTaskSTConfig, MultiTaskSTModel

    torch.manual_seed(0)
    if kind == "minilm":
        backbone = backbone_path(None)
        return AutoTokenizer.from_pretrained(backbone), MultiTaskSTModel.from_backbone(backbone, tasks=TASKS)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *VOCABULARY]) + "\n")
    tokenizer = BertTokenizerFast(str(vocab))
    backbone = BertConfig(vocab_size=len(VOCABULARY) + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=37, max_position_embeddings=64)  # fmt: skip
    return tokenizer, MultiTaskSTModel(MultiTaskSTConfig(backbone_config=backbone, tasks=TASKS))


class RssSampler:
    """Peak RSS (sampled every 5 ms) and the RSS when the streamed examples pass each of `CHECKPOINTS`."""

    def __init__(self):
        self.process, self.peak, self.running = psutil.Process(), 0, True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def rss(self) -> int:
        return self.process.memory_info().rss


def child(settings: dict) -> dict:
    import datasets
    import torch
    from transformers import TrainerCallback

    from multitask_st.data.streaming import load_task_stream
    from multitask_st.data.task_datasets import load_task_dataset
    from multitask_st.training.streaming import tokenize_task_stream
    from multitask_st.training.tokenization import tokenize_task_dataset
    from multitask_st.training.trainer import MultiTaskTrainer
    from multitask_st.training.training_args import MultiTaskTrainingArguments

    datasets.disable_progress_bars()
    torch.set_num_threads(settings["threads"])
    folder = Path(settings["folder"])
    sampler = RssSampler()
    tokenizer, model = tokenizer_and_model(settings["model"], folder)
    baseline = sampler.rss()
    files = {task: Path(path) for task, path in settings["files"].items()}
    started = time.perf_counter()
    if settings["streaming"]:
        train = {}
        for task, path in files.items():
            stream, _, _ = load_task_stream(path, label_names=TASKS[task], held_out=100)
            train[task] = tokenize_task_stream(stream, tokenizer, max_length=64)
    else:  # as `multitask-st train` loads a task: whole, validated, split, tokenised (cached)
        train = {}
        for task, path in files.items():
            data = load_task_dataset(path, label_names=TASKS[task], validation_size=0.0, test_size=0.0)
            train[task] = tokenize_task_dataset(data, tokenizer, max_length=64, cache_dir=folder / "cache")["train"]
    prepare = time.perf_counter() - started
    after_prepare = sampler.rss()
    at_rows, step_times = {}, {}

    class RowCheckpoints(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            step_times[state.global_step] = time.perf_counter()
            seen = state.global_step * args.per_device_train_batch_size
            for mark in CHECKPOINTS:
                if mark not in at_rows and seen >= mark:
                    at_rows[mark] = sampler.rss()

    args = MultiTaskTrainingArguments(
        output_dir=str(folder / "out"), per_device_train_batch_size=settings["batch_size"],
        max_steps=settings["steps"], report_to=[], use_cpu=True, save_strategy="no", logging_steps=10**9,
        disable_tqdm=True, seed=0, stsb_eval_pairs=0, calibrate=False, save_plots=False, learning_rate=1e-4,
        sampling_strategy="round_robin", embedding_distillation_weight=settings["distillation"],
        overwrite_output_dir=True, stream_shuffle_buffer_size=settings["shuffle_buffer"],
        train_sampling_strategy="random",
    )  # fmt: skip
    trainer = MultiTaskTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer,
                               callbacks=[RowCheckpoints()])  # fmt: skip
    started = time.perf_counter()
    output = trainer.train()
    total = time.perf_counter() - started
    sampler.running = False
    return {
        **{key: settings[key] for key in ("streaming", "model", "rows", "steps", "batch_size", "distillation")},
        "prepare_s": round(prepare, 2),
        "train_total_s": round(total, 2),  # Trainer's train(), the precomputed teacher pass included
        "train_samples_per_second": output.metrics["train_samples_per_second"],
        "s_per_step": round(output.metrics["train_runtime"] / settings["steps"], 4),
        # after the first 10 steps (the shuffle buffers filled, the first batches tokenised): what a long run sees
        "steady_samples_per_second": round(
            (settings["steps"] - 10) * settings["batch_size"] / (step_times[settings["steps"]] - step_times[10]), 2
        )
        if settings["steps"] > 10
        else None,
        "rss_baseline_mb": round(baseline / 2**20),
        "rss_after_prepare_mb": round(after_prepare / 2**20),
        "rss_at_rows_mb": {str(mark): round(value / 2**20) for mark, value in at_rows.items()},
        "rss_peak_mb": round(sampler.peak / 2**20),
    }


def run_child(settings: dict) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, __file__, "--child", json.dumps(settings)]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"child failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["rss", "speed", "distill"], default=None)
    parser.add_argument("--rows", type=int, default=1_000_000, help="Rows of each task's generated file.")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch_size", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--model", choices=["tiny", "minilm"], default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--folder", default="/tmp/multitask-st-bench-streaming")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        print(json.dumps(child(json.loads(arguments.child))))
        return
    folder = Path(arguments.folder)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"# {machine()}; loaded machine (2 shared cores)", flush=True)
    base = {"folder": str(folder), "threads": arguments.threads, "distillation": 0.0, "shuffle_buffer": 10_000}
    if arguments.part == "rss":
        # both tasks of --rows rows, read in turn: the 1M-row mark is passed after 1M examples (half of each file)
        files = {task: str(path) for task, path in write_data(folder, arguments.rows).items()}
        batch = arguments.batch_size or 256
        steps = arguments.steps or -(-max(mark for mark in CHECKPOINTS if mark <= 2 * arguments.rows) // batch)
        result = run_child({**base, "streaming": True, "model": arguments.model or "tiny", "files": files,
                            "rows": arguments.rows, "steps": steps, "batch_size": batch})  # fmt: skip
        print(json.dumps(result), flush=True)
        for rows in CHECKPOINTS:  # map-style, for comparison: the same kind of file, loaded whole
            if rows > arguments.rows:
                break
            small = {task: str(path) for task, path in write_data(folder, rows).items()}
            print(json.dumps(run_child({**base, "streaming": False, "model": arguments.model or "tiny", "files": small,
                                        "rows": rows, "steps": 20, "batch_size": batch})), flush=True)  # fmt: skip
        return
    files = {task: str(path) for task, path in write_data(folder, arguments.rows).items()}
    model = arguments.model or ("minilm" if arguments.part == "distill" else "tiny")
    batch = arguments.batch_size or 32
    steps = arguments.steps or 60
    if arguments.part == "speed":
        variants = {"map-style": dict(streaming=False), "streaming": dict(streaming=True)}
    else:
        variants = {
            "map-style, distillation off": dict(streaming=False),
            "map-style, precomputed column": dict(streaming=False, distillation=10.0),
            "streaming, distillation off": dict(streaming=True),
            "streaming, frozen copy per batch": dict(streaming=True, distillation=10.0),
        }
    results = {name: [] for name in variants}
    for _ in range(arguments.repeats):  # taking turns: the machine is shared
        for name, variant in variants.items():
            settings = {**base, "model": model, "files": files, "rows": arguments.rows, "steps": steps,
                        "batch_size": batch, **variant}  # fmt: skip
            result = run_child(settings)
            results[name].append(result)
            print(name, json.dumps(result), flush=True)
    print(
        "\n| run | samples/s (Trainer, median) | after step 10 | s/step | train() total s | prepare s | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        median = {key: statistics.median(run[key] for run in runs)
                  for key in ("train_samples_per_second", "steady_samples_per_second", "s_per_step", "train_total_s",
                              "prepare_s", "rss_peak_mb")}  # fmt: skip
        print(f"| {name} | {median['train_samples_per_second']:.1f} | {median['steady_samples_per_second']:.1f} | "
              f"{median['s_per_step']:.3f} | "
              f"{median['train_total_s']:.1f} | {median['prepare_s']:.1f} | {median['rss_peak_mb']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
