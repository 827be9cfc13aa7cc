"""hf-vit: the CIFAR-10 lesson's Vision Transformer as a Hugging Face model.

Importing the package registers the model with transformers' Auto classes, and
marks the classes so that `save_pretrained` copies their source files next to
the weights (remote code: a folder then loads with `trust_remote_code=True`
where `hf_vit` is not installed).
"""

from transformers import AutoConfig, AutoModel, AutoModelForImageClassification, PretrainedConfig
from transformers.models.auto.image_processing_auto import AutoImageProcessor
from transformers.models.auto.video_processing_auto import VIDEO_PROCESSOR_MAPPING

from .configuration_hf_vit import CIFAR10_LABELS, CIFAR10_MEAN, CIFAR10_STD, HfViTConfig
from .image_processing import make_image_processor
from .image_processing_hf_vit import HfViTGreyImageProcessor
from .modeling_hf_vit import HfViTForImageClassification, HfViTModel, HfViTPreTrainedModel

__version__ = "0.1.0"

AutoConfig.register(HfViTConfig.model_type, HfViTConfig, exist_ok=True)
AutoModel.register(HfViTConfig, HfViTModel, exist_ok=True)
AutoModelForImageClassification.register(HfViTConfig, HfViTForImageClassification, exist_ok=True)


class _GreyProcessorKey(PretrainedConfig):
    """Only a key for the registration below. Under HfViTConfig the grey processor would also be hf_vit's
    processor for any folder whose preprocessor_config.json names no class (a 3-channel one, or one that names
    other code in auto_map, which would then never be refused)."""

    model_type = "hf_vit_grey_image_processor"


# A 1-channel model's processor (preprocessor_config.json names HfViTGreyImageProcessor): with hf_vit imported,
# transformers finds the class by that name and loads it without trust_remote_code, as it loads the model. Under both
# backends: the class is PIL's either way, and with torchvision installed transformers asks for that one first.
AutoImageProcessor.register(_GreyProcessorKey, exist_ok=True, image_processor_classes={
    "pil": HfViTGreyImageProcessor, "torchvision": HfViTGreyImageProcessor})  # fmt: skip
# pipeline() also looks for a video processor, and AutoVideoProcessor reads the grey processor's auto_map entry as
# remote code (HfViTGreyVideoProcessor, which does not exist): with the model and processor local, a terminal still
# got "Do you wish to run the custom code? [y/N]" and waited 15 s. Registered here as having no video processor,
# the model is local code to that search too: it ends at once, with none, as for a 3-channel model.
VIDEO_PROCESSOR_MAPPING.register(HfViTConfig, {}, exist_ok=True)

HfViTConfig.register_for_auto_class()
HfViTModel.register_for_auto_class("AutoModel")
HfViTForImageClassification.register_for_auto_class("AutoModelForImageClassification")
HfViTGreyImageProcessor.register_for_auto_class("AutoImageProcessor")

__all__ = [
    "CIFAR10_LABELS",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "HfViTConfig",
    "HfViTForImageClassification",
    "HfViTGreyImageProcessor",
    "HfViTModel",
    "HfViTPreTrainedModel",
    "make_image_processor",
]
