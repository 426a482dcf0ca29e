"""How many processes a run was launched as, and whether the Trainer runs them as one job.

`torchrun --nproc_per_node 2 train.py` on a machine without a GPU starts two processes, but `TrainingArguments` only
joins them into one distributed job with `use_cpu`: without it each process trains its own model on the whole data
and saves it into the same folder, with nothing but a transformers warning. Here a launch of several processes either
becomes one data-parallel job (on a machine without an accelerator, `MultiTaskTrainingArguments` turns on `use_cpu`:
DDP over gloo) or stops before the data is loaded, saying why.
"""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist


# What launchers set to the number of processes of the job: torchrun and `accelerate launch` (WORLD_SIZE), MPI
# (the same variables accelerate reads for a multi-CPU run).
WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_world_size() -> int:
    """The number of processes the launcher started (1 when the script was run directly)."""
    for name in WORLD_SIZE_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"The environment variable {name}={value!r} must be a positive process count.")
            return int(value)
    return 1


def has_accelerator() -> bool:
    """Whether torch sees a GPU or another accelerator that a distributed run would place each process on."""
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    if accelerator is not None:
        return accelerator.is_available()
    return torch.cuda.is_available()


def check_one_job(world_size: int, use_cpu: bool):
    """Raises when the launcher started several processes but the Trainer would run each as a job of its own.

    Args:
        world_size: `TrainingArguments.world_size`, the processes the Trainer trains together.
        use_cpu: `TrainingArguments.use_cpu`, named in the advice.
    """
    launched = launched_world_size()
    if launched > 1 and world_size != launched:
        hint = (
            "pass `--use_cpu` (then the processes train one model with DDP over gloo)"
            if not use_cpu and not has_accelerator()
            else "check the launcher's settings (each process must join the same job)"
        )
        raise RuntimeError(
            f"The launcher started {launched} processes (WORLD_SIZE={launched}) but the Trainer runs this one as a job "
            f"of {world_size} process(es): they would train {launched} separate models into the same output folder. "
            f"Stopped before training; {hint}, or launch a single process."
        )


def process_records(device: torch.device | str) -> list[dict]:
    """One entry per process of the job, in rank order: `rank`, `local_rank`, `node` (0-based, in the order of the
    machines' first ranks: host names are not recorded), `device` and `device_name` (the GPU's, or `cpu`).

    Every process of a distributed job must call it (it gathers over the process group).
    """
    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    where = "cpu" if device.type == "cpu" else str(device)  # accelerate names the CPU `cpu:0` in a distributed run
    own = {"rank": rank, "local_rank": local_rank, "host": socket.gethostname(), "device": where, "name": name}
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        gathered: list[dict] = [{} for _ in range(dist.get_world_size())]
        dist.all_gather_object(gathered, own)
    else:
        gathered = [own]
    nodes: dict[str, int] = {}
    for entry in gathered:
        nodes.setdefault(entry["host"], len(nodes))
    return [
        {
            "rank": entry["rank"],
            "local_rank": entry["local_rank"],
            "node": nodes[entry["host"]],
            "device": entry["device"],
            "device_name": entry["name"],
        }
        for entry in gathered
    ]
