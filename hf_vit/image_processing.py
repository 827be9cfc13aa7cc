"""The image processor saved beside every model: resize to the model's size,
scale to [0, 1], normalise with the CIFAR-10 statistics.

Training normalises with the numbers stored here too (see `hf_vit.data`), so
inference through `pipeline(...)` sees exactly what training saw.
"""

from .configuration_hf_vit import CIFAR10_MEAN, CIFAR10_STD, HfViTConfig, _pair
from .data import setting


def make_image_processor(config: HfViTConfig, image_mean=CIFAR10_MEAN, image_std=CIFAR10_STD):
    """A `ViTImageProcessor` for `config.image_size` with the given (default CIFAR-10) statistics; for a
    1-channel model, `HfViTGreyImageProcessor`, which first makes any image grey as training decodes it."""
    # Imported here: without torchvision transformers warns that it falls back to the PIL backend.
    from transformers import ViTImageProcessor

    from .image_processing_hf_vit import HfViTGreyImageProcessor

    height, width = _pair(config.image_size)
    image_mean, image_std = _floats("image_mean", image_mean), _floats("image_std", image_std)
    if len(image_mean) != config.num_channels or len(image_std) != config.num_channels:
        raise ValueError(
            f"image_mean/image_std need one value per channel ({config.num_channels}), got {len(image_mean)} and "
            f"{len(image_std)}. Pass {setting('image_mean')} and {setting('image_std')} with {config.num_channels} "
            "value(s) each: the statistics the model was trained with (the CIFAR-10 defaults fit 3 channels)."
        )
    if any(not float(std) > 0 for std in image_std):  # (x - mean) / 0: every score NaN, blamed on the model
        raise ValueError(f"image_std must be positive for every channel, got {list(image_std)}: a standard deviation "
                         "of 0 divides by zero. Pass the statistics the model was trained with "
                         f"({setting('image_std')}).")
    if not all(0 <= mean <= 1 for mean in image_mean) or not all(std <= 1 for std in image_std):
        # The processor scales pixels to 0..1 first: statistics of 0..255 pixels (or NaN, inf) would turn every
        # image into the same few values, and the model would be trained and served on them without a word.
        raise ValueError(
            f"image_mean must lie in [0, 1] and image_std in (0, 1] for every channel (the scale of the pixels after "
            f"rescaling by 1/255), got mean {image_mean} and std {image_std}. Statistics of 0..255 pixels are 255 "
            f"times too large: divide them by 255 (CIFAR-10's are mean {list(CIFAR10_MEAN)}, std {list(CIFAR10_STD)})."
        )
    # A 3-channel model keeps transformers' own class: its folder loads with no code of ours.
    processor_class = HfViTGreyImageProcessor if config.num_channels == 1 else ViTImageProcessor
    return processor_class(
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


def is_grey_processor(settings) -> bool:
    """preprocessor_config.json's settings (`processor.to_dict()` or the file's JSON) are hf_vit's grey processor,
    loaded as remote code (auto_map): what make_image_processor saves for a 1-channel model (before it existed,
    a plain ViTImageProcessor)."""
    if not isinstance(settings, dict):
        return False
    auto_map = settings.get("auto_map")
    return (settings.get("image_processor_type") == "HfViTGreyImageProcessor" and isinstance(auto_map, dict)
            and "AutoImageProcessor" in auto_map)


def _floats(name: str, values) -> list[float]:
    """`values` as plain floats: numpy or torch numbers (a dataset's computed statistics) make a processor that
    fails to save (`Object of type float32 is not JSON serializable`)."""
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):  # a single number (not iterable), or text that is not a number
        raise ValueError(f"{name} needs one number per channel, e.g. a list of 3 for RGB, got {values!r}.") from None


def size_dict(size):
    """A processor's `size` or `crop_size` as a dict: one number is a square (the older feature extractors'
    `"size": 224`, as transformers' get_size_dict reads it); anything else as it is."""
    return {"height": size, "width": size} if isinstance(size, int) and not isinstance(size, bool) else size


def processor_size_mismatch(settings: dict, image_size):
    """`(made, wanted)` when an image processor with these settings (`processor.to_dict()`, or the JSON of
    preprocessor_config.json) makes images of another size than the model's `image_size`; None when they agree
    or the images keep their own size (or only a shortest edge is set): the model then names a wrong one.

    A centre crop sets the size whether or not the processor resizes first; a size of one number is a square
    (the older feature extractors' `"size": 224`, as transformers' get_size_dict reads it)."""
    if settings.get("do_center_crop"):
        size = settings.get("crop_size")
    elif settings.get("do_resize", True):
        size = settings.get("size")
    else:
        return None
    size = size_dict(size)
    if not isinstance(size, dict) or image_size is None:
        return None
    made, wanted = (size.get("height"), size.get("width")), tuple(_pair(image_size))
    return None if None in made or made == wanted else (made, wanted)
