"""multitask-st: one Hugging Face model with a shared sentence encoder and a classification head per task."""

from transformers import AutoConfig, AutoModel

from .configuration_multitask_st import MultiTaskSTConfig
from .modeling_multitask_st import MultiTaskSTModel, MultiTaskSTOutput, MultiTaskSTPooler


__version__ = "0.1.0"

# With the package installed, AutoConfig/AutoModel know the model type...
AutoConfig.register(MultiTaskSTConfig.model_type, MultiTaskSTConfig, exist_ok=True)
AutoModel.register(MultiTaskSTConfig, MultiTaskSTModel, exist_ok=True)
# ...and without it, `save_pretrained` writes `auto_map` and copies the two payload files for trust_remote_code.
MultiTaskSTConfig.register_for_auto_class()
MultiTaskSTModel.register_for_auto_class("AutoModel")

__all__ = ["MultiTaskSTConfig", "MultiTaskSTModel", "MultiTaskSTOutput", "MultiTaskSTPooler", "__version__"]
