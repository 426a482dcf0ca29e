"""multitask-st: one Hugging Face model with a shared sentence encoder and a classification head per task.

`import multitask_st` registers the model with `AutoConfig` / `AutoModel` and imports nothing else: the config and model
code (transformers' `PretrainedConfig` alone imports torch, 2 s), training, data and sharing load on first use of one of
their names, as transformers' own `_LazyModule` does. The registration runs as soon as transformers' auto classes are
imported (now, if they are already), so `from multitask_st.export.onnx_runtime import MultiTaskSTOnnxModel` imports
neither torch nor transformers.
"""

import importlib
import importlib.abc
import importlib.util
import logging
import sys
from typing import TYPE_CHECKING


__version__ = "0.1.0"

# Public name -> the module (relative to this package) that defines it.
_LAZY_IMPORTS = {
    "MultiTaskSTConfig": "configuration_multitask_st",
    "MultiTaskSTModel": "modeling_multitask_st",
    "MultiTaskSTOutput": "modeling_multitask_st",
    "MultiTaskSTPooler": "layers_multitask_st",
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
    from .configuration_multitask_st import MultiTaskSTConfig
    from .data.corpora import BUILTIN_DATASETS
    from .data.task_datasets import load_task_dataset, subsample
    from .export.sentence_transformers_folder import export_sentence_transformers
    from .layers_multitask_st import MultiTaskSTPooler
    from .modeling_multitask_st import MultiTaskSTModel, MultiTaskSTOutput
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
    if module_name == "modeling_multitask_st":  # the real class replaces the stand-in `_register_model` put there
        from transformers import AutoModel

        AutoModel.register(module.MultiTaskSTConfig, module.MultiTaskSTModel, exist_ok=True)
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

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        return __getattr__("MultiTaskSTModel").from_pretrained(*args, **kwargs)

    @classmethod
    def _from_config(cls, *args, **kwargs):
        return __getattr__("MultiTaskSTModel")._from_config(*args, **kwargs)


# With the package installed, AutoConfig/AutoModel know the model type. (Without it, `save_pretrained` writes
# `auto_map` and copies the payload files for `trust_remote_code`: see `register_for_auto_class` in them.)
_CONFIG_AUTO = "transformers.models.auto.configuration_auto"
_MODEL_AUTO = "transformers.models.auto.modeling_auto"
_OUR_CONFIG = f"{__name__}.configuration_multitask_st"


def _register():
    """Registers the config with `AutoConfig` and the model (its stand-in) with `AutoModel`, as far as transformers'
    auto modules are imported. Runs right after either of them or our configuration module is first imported."""
    config_module = sys.modules.get(_OUR_CONFIG) or importlib.import_module(_OUR_CONFIG)
    config = getattr(config_module, "MultiTaskSTConfig", None)
    if config is None:  # our configuration module is importing transformers right now: its own hook registers it
        return
    # Each auto module only once it is fully imported (the hook of one may run while the other is importing).
    auto_config = getattr(sys.modules.get(_CONFIG_AUTO), "AutoConfig", None)
    if auto_config is not None:
        auto_config.register(config.model_type, config, exist_ok=True)
    auto_model = getattr(sys.modules.get(_MODEL_AUTO), "AutoModel", None)
    if auto_model is not None:
        from transformers.utils import is_torch_available

        # Not in an ONNX-only install (no model to build), nor over the real class once it is registered.
        if is_torch_available() and config not in auto_model._model_mapping:
            _MultiTaskSTModelStandIn.config_class = config
            auto_model.register(config, _MultiTaskSTModelStandIn, exist_ok=True)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs a function right after a module is first imported (a post-import hook), once: how the registration waits
    for transformers' auto classes without importing them, and torch with them, on `import multitask_st`."""

    def __init__(self, hooks: dict):
        self.hooks = hooks

    def find_spec(self, name, path=None, target=None):
        hook = self.hooks.pop(name, None)
        if hook is None:
            return None
        spec = importlib.util.find_spec(name)  # the real one: this finder has no hook for `name` any more
        if spec is not None and spec.loader is not None:
            spec.loader = _LoaderThenHook(spec.loader, hook)
        return spec


class _LoaderThenHook(importlib.abc.Loader):
    def __init__(self, loader, hook):
        self.loader, self.hook = loader, hook

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__spec__.loader = module.__loader__ = self.loader  # the module keeps its own loader (inspect, reload)
        self.loader.exec_module(module)
        _run_hook(self.hook)


def _run_hook(hook):
    try:
        hook()
    except Exception as error:  # a failed registration must never break importing transformers
        logging.getLogger(__name__).warning(
            f"multitask_st could not register with transformers' auto classes: {error}"
        )


_hooks = {name: _register for name in (_CONFIG_AUTO, _MODEL_AUTO, _OUR_CONFIG) if name not in sys.modules}
if _CONFIG_AUTO in sys.modules or _MODEL_AUTO in sys.modules:  # transformers' auto classes came first
    _run_hook(_register)
if _hooks:
    sys.meta_path.insert(0, _AfterImport(_hooks))
