"""Reading an exported multitask-st ONNX folder: where it is (a folder or a Hub snapshot), its config, tokenizer and
graph, each refused with a clear error naming the file when it cannot serve. No torch, no transformers: the ONNX
runtime (`onnx_runtime.py`) loads through these.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..inference_multitask_st import MODEL_INPUTS
from ..model_folder import EXPORT_REPORT_NAME, ONNX_SUBFOLDER


EMBEDDING_OUTPUT = "sentence_embedding"
UNNORMALIZED_EMBEDDING_OUTPUT = "sentence_embedding_unnormalized"
LOGITS_PREFIX = "logits_"
# ONNX metadata the exporter writes, so a graph can be checked against the config.json next to it.
METADATA_TASKS = "multitask_st.tasks"
# The pair heads' graph (`model_folder.PAIR_HEADS_FILE_NAME`): its inputs, two texts' un-normalised embeddings, and
# the export report's entry for it.
PAIR_TEXT_INPUT = "text_embedding"
PAIR_SECOND_INPUT = "pair_embedding"
PAIR_HEADS_REPORT_KEY = "pair_heads"
METADATA_NORMALIZE = "multitask_st.normalize_embeddings"
# What a model folder needs besides the ONNX file (the tokenizer's own config is optional).
FOLDER_FILES = ("config.json", "tokenizer.json")
TOKENIZER_EXTRA_FILES = ("tokenizer_config.json", "special_tokens_map.json")


def config_tasks(config: dict) -> dict[str, list[str]]:
    tasks = config.get("tasks")
    if isinstance(tasks, list):  # what MultiTaskSTConfig.to_dict writes: ordered [task, labels] pairs
        tasks = {task: labels for task, labels in tasks}
    if not isinstance(tasks, dict) or not tasks or config.get("model_type") != "multitask-st":
        raise ValueError("config.json is not a multitask-st config (no `tasks`, or another `model_type`).")
    return {task: list(labels) for task, labels in tasks.items()}


def check_graph(model):
    """A clear error when the ONNX graph does not belong to the config.json next to it."""
    path, outputs = model.model_path, {node.name: node for node in model.session.get_outputs()}
    problems = []
    unknown_inputs = sorted(set(model.input_names) - set(MODEL_INPUTS))
    if unknown_inputs or "input_ids" not in model.input_names:
        problems.append(f"inputs {model.input_names} (expected input_ids, attention_mask[, token_type_ids])")
    if EMBEDDING_OUTPUT not in outputs:
        problems.append(f"no `{EMBEDDING_OUTPUT}` output")
    elif outputs[EMBEDDING_OUTPUT].shape[-1] != model.embedding_dim:
        problems.append(f"embedding size {outputs[EMBEDDING_OUTPUT].shape[-1]}, config {model.embedding_dim}")
    graph_tasks = {name[len(LOGITS_PREFIX) :] for name in outputs if name.startswith(LOGITS_PREFIX)}
    if graph_tasks != set(model.head_tasks):
        problems.append(f"heads {sorted(graph_tasks)}, config single-text heads {sorted(model.head_tasks)}")
    for task in model.head_tasks:
        labels = model.tasks[task]
        size = outputs[LOGITS_PREFIX + task].shape[-1] if task in graph_tasks else len(labels)
        if size != len(labels):
            problems.append(f"head {task!r} has {size} labels, config {len(labels)}")
    if model.normalize_embeddings and UNNORMALIZED_EMBEDDING_OUTPUT not in outputs:
        problems.append(f"no `{UNNORMALIZED_EMBEDDING_OUTPUT}` output although the config normalises")
    metadata = model.session.get_modelmeta().custom_metadata_map
    if METADATA_TASKS in metadata and json.loads(metadata[METADATA_TASKS]) != model.tasks:
        problems.append(f"label names {metadata[METADATA_TASKS]}, config {json.dumps(model.tasks)}")
    if METADATA_NORMALIZE in metadata and json.loads(metadata[METADATA_NORMALIZE]) != model.normalize_embeddings:
        problems.append(f"normalize_embeddings {metadata[METADATA_NORMALIZE]}, config {model.normalize_embeddings}")
    if problems:
        raise ValueError(
            f"{path} does not match the config.json next to it: {'; '.join(problems)}. Export the model again "
            "(`python export.py MODEL_DIR --format onnx`) instead of mixing files of different models."
        )


def resolve_folder(model_name_or_path, file_name, revision, token, cache_dir, local_files_only) -> Path:
    """The local folder to load: the path itself, or a Hub repository's snapshot; the files the runtime needs present."""
    folder = Path(model_name_or_path)
    if not folder.is_dir():
        name = str(model_name_or_path)
        if folder.exists():
            raise NotADirectoryError(f"{name} is a file; pass the folder `export.py --format onnx` wrote.")
        looks_local = name.startswith((".", "/", "~")) or os.path.isabs(name) or name.count("/") > 1 or "\\" in name
        if looks_local or not _is_repo_id(name):
            raise FileNotFoundError(
                f"No folder {name!r} (and it is not a Hub repo id such as 'org/model'): pass the folder "
                "`export.py --format onnx` wrote, or a Hub repository holding one."
            )
        folder = download(name, file_name, revision, token, cache_dir, local_files_only)
    missing = [name for name in FOLDER_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder} lacks {', '.join(missing)}: not a folder written by `export.py --format onnx`."
        )
    return folder


def _is_repo_id(name: str) -> bool:
    try:
        from huggingface_hub.utils import HFValidationError, validate_repo_id
    except ImportError:  # without huggingface_hub only local folders load
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}): export the model again or restore the file.") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(value).__name__}.")
    return value


def read_tokenizer(path: Path):
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as error:  # tokenizers raises a bare Exception with serde's message ("Model missing...")
        raise ValueError(
            f"{path} is not a usable tokenizers file ({_first_line(error)}): save the model's tokenizer again "
            "(`AutoTokenizer.from_pretrained(model_dir).save_pretrained(folder)`) or export the model again."
        ) from None


# Runtimes an exported graph runs on, and the precisions each offers (`dtype`, the first is the default).
BACKENDS = {"onnxruntime": ("float32",), "openvino": ("bfloat16", "float32")}


def open_session(
    model_path: Path,
    provider: str | None,
    threads: int | None,
    session_options,
    backend: str = "onnxruntime",
    dtype: str | None = None,
    performance_hint: str | None = None,
):
    """A session on `backend` (`BACKENDS`): onnxruntime's `InferenceSession`, or OpenVINO's compiled model behind the
    same calls (`openvino_session.OpenVINOSession`). `dtype` defaults to the backend's first precision."""
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {list(BACKENDS)}, got {backend!r}.")
    dtype = BACKENDS[backend][0] if dtype is None else dtype
    if dtype not in BACKENDS[backend]:
        raise ValueError(
            f"`dtype` {dtype!r} is not offered on {backend}, which runs {list(BACKENDS[backend])}"
            + (" (bf16: backend='openvino')." if backend == "onnxruntime" else ".")
        )
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"`threads` must be a positive integer, got {threads!r}.")
    if backend == "openvino":
        if provider is not None or session_options is not None:
            raise ValueError("`provider` and `session_options` are onnxruntime's; backend='openvino' takes neither.")
        from .openvino_session import OpenVINOSession

        return OpenVINOSession(model_path, threads, dtype, "latency" if performance_hint is None else performance_hint)
    if performance_hint is not None:
        raise ValueError(
            f"`performance_hint` is OpenVINO's (backend='openvino'); got {performance_hint!r} for {backend}."
        )
    import onnxruntime as ort

    # The caller's options are theirs (their optimisation level included); ours go on a fresh object only.
    options = session_options
    if options is None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    elif threads is not None:
        raise ValueError("Pass `threads` or `session_options` (set its intra_op_num_threads), not both.")
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    available = ort.get_available_providers()
    if provider is None:
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        providers = [name for name in providers if name in available]
    elif provider not in available:
        raise ValueError(f"Execution provider {provider!r} is not available; onnxruntime has {available}.")
    else:
        providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
    try:
        return ort.InferenceSession(str(model_path), options, providers=providers)
    except Exception as error:  # onnxruntime raises its own Fail/InvalidProtobuf/InvalidGraph types
        raise ValueError(
            f"Cannot load {model_path} as an ONNX model ({type(error).__name__}: {_first_line(error)}). The file is "
            "damaged or not an ONNX graph: export it again with `python export.py MODEL_DIR --format onnx`."
        ) from None


def resolve_onnx_file(folder: Path, file_name: str) -> Path:
    for candidate in (folder / file_name, folder / ONNX_SUBFOLDER / file_name):
        if candidate.is_file():
            return candidate
    found = sorted(path.relative_to(folder).as_posix() for path in folder.glob(f"{ONNX_SUBFOLDER}/*.onnx"))
    raise FileNotFoundError(f"No ONNX file {file_name!r} in {folder}; it has {found or 'none'}.")


def download(repo_id, file_name, revision, token, cache_dir, local_files_only) -> Path:
    from huggingface_hub import snapshot_download

    patterns = [*FOLDER_FILES, *TOKENIZER_EXTRA_FILES, file_name, f"{ONNX_SUBFOLDER}/{file_name}"]
    patterns.append(f"{ONNX_SUBFOLDER}/{EXPORT_REPORT_NAME}")  # the checksums `from_pretrained` checks
    return Path(
        snapshot_download(
            repo_id,
            allow_patterns=patterns,
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
        )
    )


def pad_token_id(tokenizer, config: dict) -> int:
    pad_token = config.get("_tokenizer_config", {}).get("pad_token")
    if isinstance(pad_token, dict):  # an AddedToken written out
        pad_token = pad_token.get("content")
    token_id = tokenizer.token_to_id(pad_token) if isinstance(pad_token, str) else None
    if token_id is None:
        token_id = config.get("pad_token_id")
    return int(token_id or 0)  # any id works for padding: the attention mask hides it


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:300] + ("..." if len(text) > 300 else "")
