"""The image processor of a one-channel (greyscale) model, and the image conversion training decodes with.

A 1-channel model's preprocessor_config.json names `HfViTGreyImageProcessor` (auto_map "AutoImageProcessor"):
transformers' ViTImageProcessor has no conversion to grey, so on a palette image it reads the palette indices
as pixel values, and on an RGB or RGBA image it fails (`mean must have 3 elements`, or 4); pipeline() hands
the processor RGB images, so it cannot serve such a model at all. This processor first turns every image to
grey exactly as training decodes it (`as_mode`), then resizes and normalises as ViT's does.

This file is copied next to saved weights as remote code, so it imports nothing from `hf_vit` (only
`transformers`, numpy and PIL).
"""

import numpy as np
from PIL import Image, ImageOps
from transformers.image_utils import ChannelDimension, infer_channel_dimension_format

# The PIL backend, in transformers 5.4 and later (the top-level ViTImageProcessor is torchvision's where
# torchvision is installed): it resizes the 8-bit grey image with PIL's bilinear filter, as training does.
try:
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil
except ModuleNotFoundError as err:  # transformers 5.0-5.3: a Hub user would see only the module's name
    import transformers

    raise ImportError(
        f"This model's image processor (HfViTGreyImageProcessor) needs transformers 5.4 or later, which has "
        f"transformers.models.vit.image_processing_pil_vit; this is transformers {transformers.__version__}. "
        "Upgrade it: pip install -U 'transformers>=5.4,<6'."
    ) from err


class ImageDepthError(ValueError):
    """An image of more than 8 bits per value whose values PIL's conversion would clip or round away."""


def check_eight_bit(image) -> None:
    """Refuse a 16-bit, 32-bit or float image with values outside 0..255: PIL's conversion to "RGB" or "L" (and so
    transformers' image processor) clips them, and a 12-bit scan becomes an all-white picture without a word. Refuse
    too a float image scaled to 0..1 (what `datasets` stores for a float array, e.g. from torchvision's ToTensor): the
    conversion drops the fraction, leaving 0 (1 of 255 at 1.0), a black picture."""
    if image.mode not in ("I", "F") and not image.mode.startswith("I;16"):
        return
    low, high = image.getextrema()
    # A 0..1 image resampled (bicubic, Lanczos) overshoots a little either side, and is still 0..1's scale: a 0..255
    # image within -0.5..1.5 would be black throughout (at most 1 of 255). The fix clips: 1.02 * 255 as uint8 is 4.
    if image.mode == "F" and -0.5 <= low and 0 < high <= 1.5:
        raise ImageDepthError(
            f"it is an 'F' (float) image with values {low:g}..{high:g}, scaled to 0..1, which PIL's conversion to 8 "
            "bits (and transformers' image processor) cuts to 0 (1 of 255 at 1.0), so it would turn black. Convert the "
            "images to 8 bits first, e.g. "
            "`Image.fromarray((np.clip(np.asarray(im), 0, 1) * 255).round().astype('uint8'))`."
        )
    if low < 0 or high > 255:
        # A float array refuses `>> 8`: its values come from a scaling to undo, most often a Normalize (-1..1 for
        # mean = std = 0.5)
        fix = "e.g. `Image.fromarray((np.asarray(im) >> 8).astype('uint8'))` for 16 bits"
        if image.mode == "F":
            fix = ("undoing the scaling that made its values, e.g. a normalisation: "
                   "`Image.fromarray(((np.clip(np.asarray(im), -1, 1) + 1) * 127.5).round().astype('uint8'))` for "
                   "-1..1 (Normalize(0.5, 0.5)); else x * std + mean, then * 255")
        raise ImageDepthError(
            f"it is a {image.mode!r} image with values {low:g}..{high:g}, which PIL's conversion to 8 bits (and "
            "transformers' image processor) clips to 0..255, so most of it would turn white or black. Convert the "
            f"images to 8 bits first, {fix}."
        )


def as_mode(image, mode: str):
    """`image` in PIL mode "RGB" or "L", transparent pixels laid on white first: what transformers' image
    processors do at inference (convert_to_rgb), so training and evaluation see what a pipeline sees.
    Training's decoded-pixel cache keys on hf_vit.data.DECODE_VERSION: bump it when this changes."""
    check_eight_bit(image)
    if image.mode != mode and ("A" in image.getbands() or image.info.get("transparency") is not None):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image if image.mode == mode else image.convert(mode)


def as_grey(image, input_data_format=None):
    """One image (PIL, or a numpy array or torch tensor of 1, 3 or 4 channels) as training reads it for a
    1-channel model: upright (EXIF orientation), transparent pixels on white, PIL's conversion to "L"."""
    if isinstance(image, Image.Image):
        return as_mode(ImageOps.exif_transpose(image), "L")
    array = image.numpy() if hasattr(image, "numpy") and not isinstance(image, np.ndarray) else np.asarray(image)
    if array.ndim != 3:
        return array  # (H, W): grey already; any other shape transformers refuses itself
    if input_data_format is None:
        input_data_format = infer_channel_dimension_format(array, num_channels=(1, 3, 4))
    if ChannelDimension(input_data_format) == ChannelDimension.FIRST:
        array = np.moveaxis(array, 0, -1)
    if array.shape[-1] == 1:
        return array[..., 0]
    if array.dtype != np.uint8:  # PIL reads colour only as 8 bits; a float array's scale cannot be told
        raise ValueError(
            f"This model reads one-channel (grey) images, and a {array.shape[-1]}-channel {array.dtype} array cannot "
            "be turned grey as training does: pass a PIL image, a uint8 array, or the grey image itself: (H, W), "
            "(H, W, 1) or (1, H, W)."
        )
    return np.asarray(as_mode(Image.fromarray(array, "RGBA" if array.shape[-1] == 4 else "RGB"), "L"))


def with_channel(images, input_data_format=None):
    """A bare (H, W) array or tensor, alone or in a list, given its one channel: the grey image itself, which
    transformers' flattening of the inputs refuses ('Could not make a flat list of images')."""
    if isinstance(images, (list, tuple)):
        return type(images)(with_channel(image, input_data_format) for image in images)
    if getattr(images, "ndim", None) != 2:
        return images
    first = input_data_format is not None and ChannelDimension(input_data_format) == ChannelDimension.FIRST
    return images[None] if first else images[..., None]


class HfViTGreyImageProcessor(ViTImageProcessorPil):
    """ViT's image processor for a one-channel model: any image (palette, RGB, RGBA, LA, 16-bit, ...) is first
    made grey as training decodes it, then resized, rescaled and normalised with the one-channel statistics."""

    def preprocess(self, images, *args, **kwargs):
        return super().preprocess(with_channel(images, kwargs.get("input_data_format")), *args, **kwargs)

    def process_image(self, image, do_convert_rgb=None, input_data_format=None, **kwargs):
        # as_grey hands back a grey PIL image or (H, W) array: the input_data_format given described the image
        # before that, so it is left out
        return super().process_image(as_grey(image, input_data_format), do_convert_rgb=False, **kwargs)


__all__ = ["HfViTGreyImageProcessor"]
