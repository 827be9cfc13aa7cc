"""The image processor saved beside every model: resize to the model's size,
scale to [0, 1], normalise with the CIFAR-10 statistics.

Training normalises with the numbers stored here too (see `hf_vit.data`), so
inference through `pipeline(...)` sees exactly what training saw.
"""

from .configuration_hf_vit import CIFAR10_MEAN, CIFAR10_STD, HfViTConfig, _pair


def make_image_processor(config: HfViTConfig, image_mean=CIFAR10_MEAN, image_std=CIFAR10_STD):
    """A `ViTImageProcessor` for `config.image_size` with the given (default CIFAR-10) statistics."""
    # Imported here: without torchvision transformers warns that it falls back to the PIL backend.
    from transformers import ViTImageProcessor

    height, width = _pair(config.image_size)
    if len(image_mean) != config.num_channels or len(image_std) != config.num_channels:
        raise ValueError(
            f"image_mean/image_std need one value per channel ({config.num_channels}), got {len(image_mean)} and "
            f"{len(image_std)}. Pass `image_mean` and `image_std` with {config.num_channels} value(s) each: the "
            "statistics the model was trained with (the CIFAR-10 defaults fit 3 channels; in "
            "scripts/import_lesson_weights.py: --image_mean / --image_std)."
        )
    if any(not float(std) > 0 for std in image_std):  # (x - mean) / 0: every score NaN, blamed on the model
        raise ValueError(f"image_std must be positive for every channel, got {list(image_std)}: a standard deviation "
                         "of 0 divides by zero. Pass the statistics the model was trained with (--image_std).")
    return ViTImageProcessor(
        do_resize=True,
        size={"height": height, "width": width},
        resample=2,  # PIL bilinear: 32x32 CIFAR images pass through unchanged
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(image_mean),
        image_std=list(image_std),
        do_convert_rgb=config.num_channels == 3,
    )
