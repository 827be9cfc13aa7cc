"""Batched data augmentation with torch ops (no torchvision, no per-image PIL).

Every function takes a whole batch and a `torch.Generator`, so one batch costs a
handful of tensor ops and the result depends only on the generator's seed:

    uint8 (B, 3, H, W)
      -> random crop with zero padding, horizontal flip          (always, `pad`/`hflip`)
      -> RandAugment-style policy: `num_ops` random ops per image (optional)
      -> float in [0, 1] -> normalise with the image processor's mean/std
      -> random erasing (optional)
      -> Mixup or CutMix: pairs image b with image B-1-b          (optional)

`BatchAugment` chains them; `seed_for_batch` derives the generator's seed from
the run's seed and the batch's dataset indices, so a resumed run (which replays
the same sampler order) sees exactly the same augmented pixels.
"""

import math
import numbers
import zlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def seed_for_batch(seed: int, indices) -> int:
    """A 63-bit seed from the run seed and the (ordered) dataset indices of a batch."""
    digest = zlib.crc32(np.asarray(indices, dtype=np.int64).tobytes())
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, digest]).generate_state(2, np.uint64)[0] >> 1)


# ---------------------------------------------------------------------------
# Base: random crop with padding + horizontal flip (uint8 or float)
# ---------------------------------------------------------------------------
def random_crop(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by `pad` pixels and cut a random H x W window per image."""
    if pad <= 0:
        return images
    b, c, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))  # (B, C, H+2p, W+2p)
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=images.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=images.device)
    rows = (oy[:, None] + torch.arange(h, device=images.device))[:, :, None]  # (B, H, 1)
    cols = (ox[:, None] + torch.arange(w, device=images.device))[:, None, :]  # (B, 1, W)
    batch = torch.arange(b, device=images.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()  # (B, C, H, W)


def random_hflip(images: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    flip = torch.rand(images.shape[0], generator=generator, device=images.device) < p
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


# ---------------------------------------------------------------------------
# RandAugment-style policy on float images in [0, 1]
# Each op gets images and a per-image signed strength v in [-1, 1]; ops without
# a direction use |v|. Ops draw no random numbers themselves, so the CPU path
# (each op on the images that drew it) and the accelerator path (each family of
# ops once on the whole batch, then a select: no host-device syncs) give the
# same result. Two families share one computation on the accelerator:
#   blends  (brightness, contrast, color, sharpness): x -> target + f (x - target)
#   affine  (rotate, shear, translate): one warp with each image's own matrix
# ---------------------------------------------------------------------------
def _gray(x):  # (B, 3, H, W) -> (B, 1, H, W), ITU-R 601 luma as PIL uses
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]) if x.shape[1] == 3 else x.mean(1, keepdim=True)


def _blend(a, b, factor):  # factor (B,): 0 -> b, 1 -> a (PIL ImageEnhance semantics)
    return (b + factor[:, None, None, None] * (a - b)).clamp(0, 1)


def _blurred(x):  # PIL's SMOOTH kernel [[1 1 1] [1 5 1] [1 1 1]] / 13, the reference of ImageEnhance.Sharpness
    # = (3x3 box sum + 4 x centre) / 13. Built from ops, not a kernel tensor: a tensor made from host
    # numbers is a blocking host-to-device copy, which stalls an accelerator's queue every batch.
    box = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1) * 9
    # PIL (and torchvision) filter the inside only: the 1-pixel border keeps its pixels. The mask comes from
    # arange on the device, not from host numbers.
    h, w = x.shape[-2:]
    rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    inside = ((rows > 0) & (rows < h - 1))[:, None] & ((cols > 0) & (cols < w - 1))[None, :]
    return torch.where(inside, (box + 4 * x) / 13, x)


BLEND_TARGETS = {  # what each blend moves the image towards (factor 1 + 0.9 v: v < 0 towards it, v > 0 away)
    "brightness": lambda x: torch.zeros_like(x),
    "contrast": lambda x: _gray(x).mean(dim=(1, 2, 3), keepdim=True).expand_as(x),
    "color": lambda x: _gray(x).expand_as(x),
    "sharpness": _blurred,
}


def _posterize(x, v):
    bits = (8 - (v.abs() * 4).round()).clamp(4, 8)  # 8 bits (no-op) .. 4 bits
    levels = (2 ** bits)[:, None, None, None]
    return torch.floor(x * 255 / (256 / levels)) * (256 / levels) / 255


def _solarize(x, v):
    # Pixels of 256 (1 - |v|) and above, on the 0..255 scale (timm's increasing solarize): at strength 0 the
    # threshold is 256, over every pixel, so nothing is inverted, white included.
    threshold = (256 / 255 * (1 - v.abs()))[:, None, None, None]
    return torch.where(x >= threshold, 1 - x, x)


def _autocontrast(x, v):
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    scale = torch.where(hi > lo, 1 / (hi - lo).clamp_min(1e-6), torch.ones_like(hi))
    return torch.where(hi > lo, (x - lo) * scale, x).clamp(0, 1)


def _equalize_like(x, v):
    # Per-image, per-channel standardisation to a fixed spread: a cheap stand-in for histogram equalisation.
    # A channel of one level (black, or a pure colour's zero channels) stays as it is, as PIL's equalize leaves it.
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.std(dim=(2, 3), keepdim=True)
    spread = ((x - mean) / std.clamp_min(1e-3) * 0.25 + 0.5).clamp(0, 1)
    return torch.where(std < 1 / 255, x, spread)


def _matrix(a, b, c, d, e, f):  # (B,) each -> (B, 2, 3) rows [a b c], [d e f] in affine_grid's [-1, 1] frame
    return torch.stack([torch.stack([a, b, c], 1), torch.stack([d, e, f], 1)], 1)


def _rotate_theta(v):
    angle = v * math.radians(30)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    return _matrix(cos, -sin, zero, sin, cos, zero)


def _shear_theta(axis):
    def theta(v):
        s, one, zero = v * 0.3, torch.ones_like(v), torch.zeros_like(v)
        return _matrix(one, s, zero, zero, one, zero) if axis == 0 else _matrix(one, zero, zero, s, one, zero)

    return theta


def _translate_theta(axis):
    def theta(v):
        t, one, zero = v * 0.45 * 2, torch.ones_like(v), torch.zeros_like(v)  # up to 45% of the side
        return _matrix(one, zero, t, zero, one, zero) if axis == 0 else _matrix(one, zero, zero, zero, one, t)

    return theta


AFFINE_THETAS = {
    "rotate": _rotate_theta,
    "shear_x": _shear_theta(0),
    "shear_y": _shear_theta(1),
    "translate_x": _translate_theta(0),
    "translate_y": _translate_theta(1),
}


def _affine(x, theta):
    height, width = x.shape[-2:]
    if height != width:
        # The matrices are written as if the image were square. affine_grid's frame runs -1..1 along each side,
        # so on a non-square image its unit is longer along the long side: conjugate the 2x2 part with
        # diag(W/2, H/2) (pixels), which keeps a 30 degree rotation 30 degrees. Translations stay a share of the side.
        theta = theta.clone()
        theta[:, 0, 1] = theta[:, 0, 1] * (height / width)
        theta[:, 1, 0] = theta[:, 1, 0] * (width / height)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _blend_op(target):
    return lambda x, v: _blend(x, target(x), 1 + 0.9 * v)


def _affine_op(theta):
    return lambda x, v: _affine(x, theta(v))


RANDAUGMENT_OPS = {
    "identity": lambda x, v: x,
    "autocontrast": _autocontrast,
    "equalize": _equalize_like,
    **{name: _blend_op(target) for name, target in BLEND_TARGETS.items()},
    "posterize": _posterize,
    "solarize": _solarize,
    **{name: _affine_op(theta) for name, theta in AFFINE_THETAS.items()},
}
_OP_INDEX = {name: k for k, name in enumerate(RANDAUGMENT_OPS)}


def _select(mask, a, b):  # per image: a where mask (B,), else b
    return torch.where(mask[:, None, None, None], a, b)


def _dense_round(x, choice, v):
    """One round on the whole batch, each op family computed once: a few dozen kernels, no syncs."""
    picked = {name: choice == k for name, k in _OP_INDEX.items()}  # (B,) bool each
    # blends: every image moves towards its own op's target (brightness unless it drew another blend)
    target = torch.zeros_like(x)
    for name in ("contrast", "color", "sharpness"):
        target = _select(picked[name], BLEND_TARGETS[name](x), target)
    out = _blend(x, target, 1 + 0.9 * v)
    # affine: one warp, each image with its own op's matrix (identity for the images that drew no affine op)
    theta = torch.eye(2, 3, dtype=x.dtype, device=x.device).expand(x.shape[0], 2, 3)
    for name, op_theta in AFFINE_THETAS.items():
        theta = torch.where(picked[name][:, None, None], op_theta(v), theta)
    is_affine = torch.stack([picked[name] for name in AFFINE_THETAS]).any(0)
    out = _select(is_affine, _affine(x, theta), out)
    for name in ("identity", "autocontrast", "equalize", "posterize", "solarize"):
        out = _select(picked[name], RANDAUGMENT_OPS[name](x, v), out)
    return out


def rand_augment(x: torch.Tensor, num_ops: int, magnitude: float, generator: torch.Generator, dense=None) -> torch.Tensor:
    """Apply `num_ops` randomly chosen ops per image; strength uniform in [0, magnitude/10], random sign.

    `dense` (default: off on CPU, on elsewhere) computes each op family on the whole batch and selects per image.
    """
    ops = list(RANDAUGMENT_OPS.values())
    b = x.shape[0]
    dense = x.device.type != "cpu" if dense is None else dense
    for _ in range(num_ops):
        choice = torch.randint(0, len(ops), (b,), generator=generator, device=x.device)  # (B,)
        strength = torch.rand(b, generator=generator, device=x.device) * (magnitude / 10)
        sign = torch.where(torch.rand(b, generator=generator, device=x.device) < 0.5, -1.0, 1.0)
        v = strength * sign  # (B,) in [-1, 1]
        if dense:  # on an accelerator: no data-dependent shapes, no syncs
            x = _dense_round(x, choice, v)
            continue
        out = x.clone()  # cheapest on a CPU: each op on its own images only
        for k, op in enumerate(ops):
            idx = (choice == k).nonzero(as_tuple=True)[0]
            if idx.numel():
                out[idx] = op(x[idx], v[idx])
        x = out
    return x


# ---------------------------------------------------------------------------
# Random erasing and Mixup / CutMix on normalised float images
# ---------------------------------------------------------------------------
def random_erasing(x: torch.Tensor, p: float, generator: torch.Generator, scale=(0.02, 0.25)) -> torch.Tensor:
    """With probability p per image, replace a random rectangle by Gaussian noise."""
    b, _, h, w = x.shape
    dev = x.device
    area = torch.empty(b, device=dev).uniform_(*scale, generator=generator) * h * w
    log_ratio = torch.empty(b, device=dev).uniform_(math.log(0.3), math.log(3.3), generator=generator)
    eh = (area * log_ratio.exp()).sqrt().round().clamp(1, h)
    ew = (area / log_ratio.exp()).sqrt().round().clamp(1, w)
    y0 = (torch.rand(b, generator=generator, device=dev) * (h - eh + 1)).floor()
    x0 = (torch.rand(b, generator=generator, device=dev) * (w - ew + 1)).floor()
    apply = torch.rand(b, generator=generator, device=dev) < p
    ys = torch.arange(h, device=dev)[None, :, None]
    xs = torch.arange(w, device=dev)[None, None, :]
    box = (
        (ys >= y0[:, None, None]) & (ys < (y0 + eh)[:, None, None]) & (xs >= x0[:, None, None]) & (xs < (x0 + ew)[:, None, None])
    )  # (B, H, W)
    mask = (box & apply[:, None, None])[:, None]  # (B, 1, H, W)
    noise = torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype)
    return torch.where(mask, noise, x)


def mix_batch(x, labels, mixup_alpha, cutmix_alpha, prob, switch_prob, rng: np.random.Generator):
    """Mixup or CutMix of image b with image B-1-b. Returns (x, labels_b, lam (B,)) or (x, None, None)."""
    use_mixup, use_cutmix = mixup_alpha > 0, cutmix_alpha > 0
    if not (use_mixup or use_cutmix) or rng.random() >= prob:
        return x, None, None
    cutmix = use_cutmix and (not use_mixup or rng.random() < switch_prob)
    lam = float(rng.beta(cutmix_alpha, cutmix_alpha) if cutmix else rng.beta(mixup_alpha, mixup_alpha))
    flipped = x.flip(0)
    if cutmix:
        h, w = x.shape[-2:]
        cut = math.sqrt(1 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[:, :, y0:y1, x0:x1] = flipped[:, :, y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the share of image b actually left
    else:
        x = lam * x + (1 - lam) * flipped
    return x, labels.flip(0), torch.full((x.shape[0],), lam, dtype=torch.float32, device=x.device)


# ---------------------------------------------------------------------------
# The whole policy
# ---------------------------------------------------------------------------
@dataclass
class AugmentConfig:
    pad: int = 4
    hflip: bool = True
    randaugment_ops: int = 0  # 0 = off
    randaugment_magnitude: float = 9.0  # 0..10 scale of RandAugment
    random_erasing: float = 0.0  # probability per image
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0  # probability that a batch is mixed at all
    mix_switch_prob: float = 0.5  # with both on: probability of CutMix over Mixup

    @property
    def is_random(self) -> bool:
        """Whether any augmentation is on (the batch then depends on its seed)."""
        return bool(self.pad or self.hflip or self.randaugment_ops or self.random_erasing or self.mixup_alpha
                    or self.cutmix_alpha)

    def __post_init__(self):
        # Out of range, most of these would not fail: they would switch a feature off (pad -2, alpha -1) or
        # distort every image (magnitude 50 rotates by 150 degrees) without a word. The names are the flags'.
        if not isinstance(self.hflip, (bool, np.bool_)):  # hflip="no" would be true: every other image flipped
            raise ValueError(f"--hflip must be True or False, got {self.hflip!r}.")
        for name in ("randaugment_magnitude", "random_erasing", "mixup_alpha", "cutmix_alpha", "mix_prob",
                     "mix_switch_prob"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):  # "5" would fail the range checks
                raise ValueError(f"--{name} must be a number, got {value!r}.")
        for name in ("pad", "randaugment_ops"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"--{name} must be a whole number >= 0 (0 = off), got {value!r}.")
        if not 0 <= self.randaugment_magnitude <= 10:
            raise ValueError(f"--randaugment_magnitude is on RandAugment's 0..10 scale, got {self.randaugment_magnitude}.")
        for name in ("random_erasing", "mix_prob", "mix_switch_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"--{name} is a probability in [0, 1], got {getattr(self, name)}.")
        for name in ("mixup_alpha", "cutmix_alpha"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"--{name} must be >= 0 (0 = off), got {getattr(self, name)}.")


def _check_images(images, channels: int, uint8_only: bool) -> None:
    """A clear error for a batch the ops would misread; reads shapes and dtypes only (no device sync)."""
    if not torch.is_tensor(images):
        raise ValueError(f"BatchAugment takes the images as a torch tensor (B, C, H, W), got {type(images).__name__}. "
                         "Convert them first, e.g. torch.from_numpy(images).")
    shape = tuple(images.shape)
    if images.ndim != 4 or shape[1] != channels:
        channels_last = images.ndim == 4 and shape[-1] == channels
        fix = ("Move the channels first: images.permute(0, 3, 1, 2)." if channels_last else
               "Add the batch dimension: images.unsqueeze(0)." if images.ndim == 3 and shape[0] == channels else
               f"Pass {channels}-channel images, or mean/std with one value per channel of yours.")
        raise ValueError(f"BatchAugment takes images of shape (B, C, H, W) with C = {channels} (one per mean/std "
                         f"value), got {shape}. {fix}")
    if images.dtype == torch.uint8 or (images.is_floating_point() and not uint8_only):
        return
    if uint8_only and images.is_floating_point():
        # x / 255 again: images already in [0, 1] would come out almost black, without a word.
        raise ValueError(f"BatchAugment takes uint8 images (0..255, as hf_vit.data.decode_images gives), got "
                         f"{images.dtype}, which it would divide by 255. Pass (images * 255).round().to(torch.uint8) "
                         "for images in [0, 1], or only normalise them with .normalize(images).")
    raise ValueError(f"BatchAugment takes uint8 images (0..255){'' if uint8_only else ' or floats in [0, 1]'}, got "
                     f"{images.dtype}. Convert them with images.to(torch.uint8).")


def _check_labels(labels, batch: int) -> None:
    if not torch.is_tensor(labels) or tuple(labels.shape) != (batch,):
        got = tuple(labels.shape) if torch.is_tensor(labels) else type(labels).__name__
        raise ValueError(f"BatchAugment takes the labels as a tensor of {batch} class ids (one per image), got {got}. "
                         "Pass torch.as_tensor(labels).reshape(-1).")


class BatchAugment:
    """uint8 (B, C, H, W) + labels (B,) -> normalised float batch (+ Mixup/CutMix partners).

    Anything else (float images, channels last, a channel count other than the mean's) is a ValueError.
    """

    def __init__(self, mean, std, config: AugmentConfig | None = None):
        self.config = config or AugmentConfig()
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        # Copies on other devices, made once: a host-to-device copy per batch would stall an accelerator's queue.
        # The host copies stay as they are: data-loader workers normalise evaluation batches with them.
        self._on_device = {}

    def __getstate__(self):  # a worker process gets the host copies only, never accelerator tensors
        return {**self.__dict__, "_on_device": {}}

    def _stats(self, device: torch.device):
        if device == self.mean.device:
            return self.mean, self.std
        if device not in self._on_device:
            self._on_device[device] = (self.mean.to(device), self.std.to(device))
        return self._on_device[device]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float (B, C, H, W) -> (x - mean) / std, exactly the image processor's arithmetic."""
        _check_images(images, self.mean.shape[1], uint8_only=False)
        if images.dtype == torch.uint8:
            images = images.float() * (1 / 255)
        mean, std = self._stats(images.device)
        return (images - mean) / std

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, seed: int | None = None) -> dict:
        """`seed` decides the batch's draws (the collator's: one per batch, from the run seed and its indices). Left
        out, as in one's own loop, each call draws one from torch's global generator (torch.manual_seed repeats it)."""
        _check_images(images, self.mean.shape[1], uint8_only=True)
        _check_labels(labels, images.shape[0])
        if seed is None:
            seed = int(torch.randint(0, 2**62, ()))
        cfg = self.config
        dev = images.device
        generator = torch.Generator(device=dev).manual_seed(seed)
        rng = np.random.default_rng(seed)  # per-batch scalars (Beta draws, CutMix box)
        x = random_crop(images, cfg.pad, generator)
        if cfg.hflip:
            x = random_hflip(x, generator)
        x = x.float() * (1 / 255)  # (B, C, H, W) in [0, 1]
        if cfg.randaugment_ops > 0:
            x = rand_augment(x, cfg.randaugment_ops, cfg.randaugment_magnitude, generator)
        x = self.normalize(x)
        if cfg.random_erasing > 0:
            x = random_erasing(x, cfg.random_erasing, generator)
        batch = {"pixel_values": x, "labels": labels}
        x, labels_b, lam = mix_batch(x, labels, cfg.mixup_alpha, cfg.cutmix_alpha, cfg.mix_prob, cfg.mix_switch_prob, rng)
        if labels_b is not None:
            batch.update(pixel_values=x, labels_b=labels_b, mix_lam=lam)
        return batch
