"""hf-vit: the CIFAR-10 lesson's Vision Transformer as a Hugging Face model.

Importing the package registers the model with transformers' Auto classes, and
marks the classes so that `save_pretrained` copies their source files next to
the weights (remote code: a folder then loads with `trust_remote_code=True`
where `hf_vit` is not installed).
"""

from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from .configuration_hf_vit import CIFAR10_LABELS, CIFAR10_MEAN, CIFAR10_STD, HfViTConfig
from .image_processing import make_image_processor
from .modeling_hf_vit import HfViTForImageClassification, HfViTModel, HfViTPreTrainedModel

__version__ = "0.1.0"

AutoConfig.register(HfViTConfig.model_type, HfViTConfig, exist_ok=True)
AutoModel.register(HfViTConfig, HfViTModel, exist_ok=True)
AutoModelForImageClassification.register(HfViTConfig, HfViTForImageClassification, exist_ok=True)

HfViTConfig.register_for_auto_class()
HfViTModel.register_for_auto_class("AutoModel")
HfViTForImageClassification.register_for_auto_class("AutoModelForImageClassification")

__all__ = [
    "CIFAR10_LABELS",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "HfViTConfig",
    "HfViTForImageClassification",
    "HfViTModel",
    "HfViTPreTrainedModel",
    "make_image_processor",
]
