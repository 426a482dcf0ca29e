"""multitask-st: one Hugging Face model with a shared sentence encoder and a classification head per task.

`import multitask_st` registers the model with `AutoConfig` / `AutoModel` and imports nothing else: the model code
(transformers' `PreTrainedModel` alone takes seconds to import), training, data and sharing load on first use of one
of their names, as transformers' own `_LazyModule` does.
"""

import importlib
from typing import TYPE_CHECKING

from transformers import AutoConfig, AutoModel
from transformers.utils import is_torch_available

from .configuration_multitask_st import MultiTaskSTConfig


__version__ = "0.1.0"

# Public name -> the module (relative to this package) that defines it.
_LAZY_IMPORTS = {
    "MultiTaskSTModel": "modeling_multitask_st",
    "MultiTaskSTOutput": "modeling_multitask_st",
    "MultiTaskSTPooler": "modeling_multitask_st",
    "MultiTaskSTPipeline": "pipeline_multitask_st",
    "export_sentence_transformers": "export.sentence_transformers_folder",
    "MultiTaskTrainer": "training.trainer",
    "build_parameter_groups": "training.parameter_groups",
    "MultiTaskTrainingArguments": "training.training_args",
    "MultiTaskDataCollator": "training.collator",
    "MultiTaskSampler": "training.sampling",
    "UnfreezingCallback": "training.callbacks",
    "load_task_dataset": "data.task_datasets",
    "tokenize_task_dataset": "training.tokenization",
    "subsample": "data.task_datasets",
    "BUILTIN_DATASETS": "data.corpora",
    "render_model_card": "sharing.model_card",
    "read_model_dir": "sharing.model_dir",
    "stage_model_dir": "sharing.staging",
    "push_model_dir": "sharing.staging",
}

__all__ = [
    "MultiTaskSTConfig",
    "MultiTaskSTModel",
    "MultiTaskSTOutput",
    "MultiTaskSTPooler",
    "MultiTaskSTPipeline",
    "export_sentence_transformers",
    "MultiTaskTrainer",
    "build_parameter_groups",
    "MultiTaskTrainingArguments",
    "MultiTaskDataCollator",
    "MultiTaskSampler",
    "UnfreezingCallback",
    "load_task_dataset",
    "tokenize_task_dataset",
    "subsample",
    "BUILTIN_DATASETS",
    "render_model_card",
    "read_model_dir",
    "stage_model_dir",
    "push_model_dir",
    "__version__",
]

if TYPE_CHECKING:
    from .data.corpora import BUILTIN_DATASETS
    from .data.task_datasets import load_task_dataset, subsample
    from .export.sentence_transformers_folder import export_sentence_transformers
    from .modeling_multitask_st import MultiTaskSTModel, MultiTaskSTOutput, MultiTaskSTPooler
    from .pipeline_multitask_st import MultiTaskSTPipeline
    from .sharing.model_card import render_model_card
    from .sharing.model_dir import read_model_dir
    from .sharing.staging import push_model_dir, stage_model_dir
    from .training.callbacks import UnfreezingCallback
    from .training.collator import MultiTaskDataCollator
    from .training.parameter_groups import build_parameter_groups
    from .training.sampling import MultiTaskSampler
    from .training.tokenization import tokenize_task_dataset
    from .training.trainer import MultiTaskTrainer
    from .training.training_args import MultiTaskTrainingArguments


def __getattr__(name: str):
    module_name = _LAZY_IMPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f".{module_name}", __name__)
    if module_name == "modeling_multitask_st":
        AutoModel.register(MultiTaskSTConfig, module.MultiTaskSTModel, exist_ok=True)  # replaces the stand-in below
    value = getattr(module, name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _MultiTaskSTModelStandIn:
    """`AutoModel`'s entry for `MultiTaskSTConfig` until the model code is imported.

    `AutoModel.from_pretrained` / `from_config` call `from_pretrained` / `_from_config` on the class registered for a
    config; these import `MultiTaskSTModel`, register it in this stand-in's place and hand over.
    """

    config_class = MultiTaskSTConfig

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        return __getattr__("MultiTaskSTModel").from_pretrained(*args, **kwargs)

    @classmethod
    def _from_config(cls, *args, **kwargs):
        return __getattr__("MultiTaskSTModel")._from_config(*args, **kwargs)


# With the package installed, AutoConfig/AutoModel know the model type. (Without it, `save_pretrained` writes
# `auto_map` and copies the payload files for `trust_remote_code`: see `register_for_auto_class` in them.)
AutoConfig.register(MultiTaskSTConfig.model_type, MultiTaskSTConfig, exist_ok=True)
if is_torch_available():  # an ONNX-only install runs `multitask_st.export.onnx_runtime`, which needs no torch
    AutoModel.register(MultiTaskSTConfig, _MultiTaskSTModelStandIn, exist_ok=True)
