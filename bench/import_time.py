"""Wall time of `import multitask_st` against `from transformers import AutoModel` and `import sentence_transformers`.

Each contender runs in a fresh interpreter, round-robin over several rounds (the machine may be shared); medians.

    python bench/import_time.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


CONTENDERS = {
    "torch + transformers + AutoModel": "import torch, transformers; from transformers import AutoModel",
    "multitask_st": "import multitask_st",
    "multitask_st + MultiTaskSTModel": "import multitask_st; multitask_st.MultiTaskSTModel",
    "multitask_st ONNX runtime": "from multitask_st.export.onnx_runtime import MultiTaskSTOnnxModel",
    "sentence_transformers": "import sentence_transformers",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for _ in range(rounds):
        for name, statement in CONTENDERS.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", statement], env=env, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    reference = statistics.median(times["torch + transformers + AutoModel"])
    for name, values in times.items():
        median = statistics.median(values)
        runs = ", ".join(f"{value:.2f}" for value in values)
        print(f"{name:<34} median {median:6.2f} s  ({median - reference:+.2f} s)  runs: {runs}")


if __name__ == "__main__":
    main()
