"""Pictures for the lesson's learning goals, drawn with PIL only.

For one image and one model (a trained folder or a fresh model) this writes:

    patch_grid.png       the image cut into its patch grid, each cell numbered in token order
    patch_numbers.png    one patch enlarged beside its numbers in the Rearrange's order, the Linear they go
                         through and the first numbers of the token it makes
    pos_similarity.png   cosine similarity of the learned positional embeddings, one map per position
    cls_attention.png    attention into what the head reads, per layer (rows) and head (columns, + their mean):
                         [CLS]'s row (pool="cls") or all tokens' rows averaged (pool="mean")
    rollout.png          attention rollout across all layers into what the head reads, next to the last layer's map
    feature_norms.png    the norm of every token in the residual stream after each block
    shuffled.png         the image and the same patches shuffled, each with the model's top class with its learned
                         positions and with them zeroed (then both answers are the same: a bag of patches)

The numbers behind each picture come from pure functions returning arrays
(`patch_grid_cells`, `patch_numbers`, `pos_embedding_similarity`, `cls_attention_maps`,
`rollout_map`, `token_norms`, `shuffle_patches` + `shuffled_predictions`); the `draw_*` functions only turn those arrays
into pixels, so the tests can check both.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .attention_maps import MAPS_SHOW, heat_map_image, patch_map_to_grid, pooled_attention, pooled_rollout
from .configuration_hf_vit import HfViTConfig, _pair
from .data import ImageDepthError, as_mode, setting
from .eval_pictures import MAX_PICTURE_SIDE
from .output_folder import (
    FolderInUseError, folder_lock, holds_an_evaluation, replace_file, replace_text, sigterm_exits,
)
from .presets import PRESETS as TRAINING_PRESETS

logger = logging.getLogger(__name__)

PICTURES = ("patch_grid", "patch_numbers", "pos_similarity", "cls_attention", "rollout", "feature_norms", "shuffled")
SHUFFLE_SEED = 0  # shuffled.png's patch order: fixed, so every run (and a trained and a fresh model) shows the same

# Fresh-model presets: train.py's (tiny, lesson, small, base: a fresh model has the shape a trained one of that
# name has) and "default", HfViTConfig() (the lesson's shape). Flags such as --patch_size override single fields.
PRESETS = {"default": {}, **TRAINING_PRESETS}

GRID_COLOR = (255, 255, 0)  # patch grid lines: yellow stands out on CIFAR images
BACKGROUND = (255, 255, 255)
GAP_COLOR = (128, 128, 128)  # between tiles
TEXT_COLOR = (0, 0, 0)


# ---------------------------------------------------------------------------
# Numbers (pure functions; the pictures are drawn from these)
# ---------------------------------------------------------------------------
def _base_model(model, name=None):
    """The ViT body of a classifier (`model.vit`) or the body itself; works for remote-code classes too.
    `name`: the folder it came from, for the message."""
    base = getattr(model, "vit", model)
    if getattr(model.config, "model_type", None) == "vit":  # transformers' own ViT: its layers are named otherwise
        where = f"{str(name)!r} holds" if name is not None else "this is"
        raise ValueError(
            f"{where} a transformers ViT ({type(model).__name__}, exported by export_to_transformers_vit.py), not an "
            "hf_vit model. Pass the hf_vit folder it was exported from."
        )
    if not hasattr(base, "embeddings") or not hasattr(base.embeddings, "pos_embedding"):
        raise ValueError(
            f"{type(model).__name__} is not an hf_vit model (no `embeddings.pos_embedding`). Load a folder "
            "saved by hf_vit (HfViTForImageClassification, as training writes it) or build HfViTConfig."
        )
    return base


def patch_grid_cells(config: HfViTConfig, scale: int = 1) -> list[tuple[int, tuple[int, int, int, int]]]:
    """Token index (1..N) and pixel box (left, top, right, bottom; right/bottom exclusive) of every patch.

    The order is the Rearrange's `b c (h p1) (w p2) -> b (h w) (p1 p2 c)`: row by row, left to right.
    Token 0 is [CLS], which has no patch. `scale` multiplies the boxes (for an upscaled picture).
    """
    (ph, pw), (gh, gw) = _pair(config.patch_size), config.grid_size
    cells = []
    for row in range(gh):
        for col in range(gw):
            box = (col * pw * scale, row * ph * scale, (col + 1) * pw * scale, (row + 1) * ph * scale)
            cells.append((1 + row * gw + col, box))
    return cells


def patch_numbers(model, pixel_values: torch.Tensor, patch: int | None = None) -> dict:
    """One patch of the first image as the model's patch embedding reads it, and the token it makes:

    {"token": k (1..N), "row", "column" (its place in the grid), "box" (left, top, right, bottom; as
    `patch_grid_cells`), "chosen": "given" (`patch`, a token index), "most varied" (the patch whose numbers
    spread most, their standard deviation: a flat patch shows little; the first of "ties" patches that spread
    equally most) or "all equal" (every patch has the same numbers, a flat image: token 1), "numbers":
    (patch_dim,) the normalised pixel values in the Rearrange's (p1 p2 c) order, "token_values": (dim,) the
    Linear's output for them, before [CLS] and the positions are added}. Arrays float32 on the CPU.

    Both come from the model's own layers (`to_patch_embedding`: Rearrange, then Linear), so they are what it
    computes, on its device and dtype; number (p1 * patch_width + p2) * channels + c is channel c of pixel (p1, p2).
    """
    config = model.config
    check_patch(config, patch, ["patch_numbers"])  # patch 0 or -1 would index the last patch without a word
    (ph, pw), gw = _pair(config.patch_size), config.grid_size[1]
    weight = next(model.parameters())
    x = pixel_values[:1].to(weight.device, weight.dtype)
    rearrange, linear = _base_model(model).embeddings.to_patch_embedding  # (B, N, patch_dim), then (B, N, dim)
    with torch.no_grad():
        flat = rearrange(x)
        tokens = linear(flat)
    flat, tokens = flat[0].float().cpu(), tokens[0].float().cpu()
    ties = 1
    if patch is None:
        spread = flat.std(dim=-1, correction=0)
        # equal patches (a repeated pattern) spread equally, up to float rounding: the first of them is shown
        tied = torch.isclose(spread, spread.max(), rtol=1e-5, atol=1e-7)
        token, ties = int(tied.nonzero()[0]) + 1, int(tied.sum())
        # A flat image (every patch the same numbers) has no patch that varies most: say so, not "most varied"
        chosen = "all equal" if bool((flat == flat[:1]).all()) else "most varied"
    else:
        token, chosen = int(patch), "given"
    row, col = divmod(token - 1, gw)
    return {
        "token": token,
        "row": row,
        "column": col,
        "box": (col * pw, row * ph, (col + 1) * pw, (row + 1) * ph),
        "chosen": chosen,
        "ties": ties,
        "numbers": flat[token - 1].numpy(),
        "token_values": tokens[token - 1].numpy(),
    }


def pos_embedding_similarity(model) -> np.ndarray:
    """(N, N) cosine similarity between the learned positional embeddings of the N patch positions.

    Row i, reshaped to the (gh, gw) grid, is the map drawn for patch i+1. The [CLS] position (row 0 of
    `pos_embedding`) is left out: it belongs to no place in the image.
    """
    pos = _base_model(model).embeddings.pos_embedding.detach().float()[0, 1:]  # (N, dim)
    pos = torch.nn.functional.normalize(pos, dim=-1)
    return (pos @ pos.T).cpu().numpy()  # (N, N)


def cls_attention_maps(attentions, grid_size, pool: str = "cls") -> np.ndarray:
    """(depth, heads, gh, gw): each layer and head's attention into what the head reads, over the patches, for the
    first image: [CLS]'s row (pool="cls") or the mean of all tokens' rows (pool="mean"; `pooled_row`)."""
    depth, heads = len(attentions), attentions[0].shape[1]
    maps = np.zeros((depth, heads, *grid_size), dtype=np.float32)
    for layer in range(depth):
        for head in range(heads):
            maps[layer, head] = patch_map_to_grid(pooled_attention(attentions, pool, layer, head)[0], grid_size)
    return maps


def rollout_map(attentions, grid_size, pool: str = "cls") -> np.ndarray:
    """(gh, gw): attention rollout from the input patches into what the head reads, for the first image: the
    rollout's [CLS] row (pool="cls") or the mean of all its rows (pool="mean"; `pooled_rollout`)."""
    return patch_map_to_grid(pooled_rollout(attentions, pool)[0], grid_size)


def token_norms(hidden_states) -> np.ndarray:
    """(depth+1, N+1) L2 norm of every token (column 0 = [CLS]) in the residual stream, first image.

    Row 0 is the embedding output (patches + positions), row l the output of block l.
    """
    return torch.stack([h[0].detach().float().norm(dim=-1) for h in hidden_states]).cpu().numpy()


@torch.no_grad()
def run_model(model, pixel_values: torch.Tensor) -> dict:
    """One forward pass with attentions and hidden states: {logits, probs, attentions, hidden_states}.

    The input goes to the model's device and dtype (a GPU or bf16 model works as it is); what comes back is on
    the CPU in float32, ready for NumPy and the pictures. The pass runs in eval mode (no dropout); a model in
    training mode (drawn between epochs of one's own loop) is handed back in it.
    """
    modes = {module: module.training for module in model.modules()}
    model.eval()
    weight = next(model.parameters())
    try:
        out = model(pixel_values=pixel_values.to(weight.device, weight.dtype), output_attentions=True,
                    output_hidden_states=True)  # fmt: skip
    finally:
        for module, training in modes.items():
            module.training = training
    logits = out.logits.float().cpu()
    return {
        "logits": logits,
        "probs": logits.softmax(dim=-1),
        "attentions": tuple(a.float().cpu() for a in out.attentions),  # depth x (B, heads, N+1, N+1)
        "hidden_states": tuple(h.float().cpu() for h in out.hidden_states),  # (depth+1) x (B, N+1, dim)
    }


def shuffle_patches(pixels: torch.Tensor, patch_size, permutation) -> torch.Tensor:
    """(B, C, H, W) with its patches moved block by block: new patch k (token k + 1, row by row) is old patch
    permutation[k]; the pixels inside a patch keep their places."""
    ph, pw = _pair(patch_size)
    b, c, h, w = pixels.shape
    gh, gw = h // ph, w // pw
    patches = pixels.reshape(b, c, gh, ph, gw, pw).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c, ph, pw)
    patches = patches[:, torch.as_tensor(np.asarray(permutation), dtype=torch.long)]
    return patches.reshape(b, gh, gw, c, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def shuffled_predictions(model, pixel_values: torch.Tensor, permutation) -> dict:
    """The model's probabilities (1-D, float32, CPU) on the input and on its patches shuffled by `permutation`,
    with the learned positions and with them zeroed: {"with_positions": {"input": p, "shuffled": p},
    "without_positions": {...}}. The positions are put back afterwards, whatever happens."""
    shuffled = shuffle_patches(pixel_values, model.config.patch_size, permutation)
    pos = _base_model(model).embeddings.pos_embedding

    def probs():
        return {name: run_model(model, x)["probs"][0] for name, x in (("input", pixel_values), ("shuffled", shuffled))}

    result = {"with_positions": probs()}
    saved = pos.detach().clone()
    try:
        with torch.no_grad():
            pos.zero_()
        result["without_positions"] = probs()
    finally:
        with torch.no_grad():
            pos.copy_(saved)
    return result


# ---------------------------------------------------------------------------
# Colours and layout
# ---------------------------------------------------------------------------
def similarity_colors(values) -> np.ndarray:
    """Diverging colours for values in [-1, 1]: -1 blue, 0 white, +1 red. Returns uint8 (..., 3)."""
    v = np.clip(np.asarray(values, dtype=np.float64), -1.0, 1.0)
    pos, neg = np.clip(v, 0, 1), np.clip(-v, 0, 1)
    rgb = np.stack([1 - neg, 1 - pos - neg, 1 - pos], axis=-1)  # red keeps R, blue keeps B
    return np.round(rgb * 255).astype(np.uint8)


def magnitude_colors(values, vmax: float) -> np.ndarray:
    """Sequential colours for values in [0, vmax]: dark blue (0) to yellow (vmax). Returns uint8 (..., 3)."""
    t = np.clip(np.asarray(values, dtype=np.float64) / max(vmax, 1e-12), 0, 1)[..., None]
    low, high = np.array([20, 20, 80.0]), np.array([255, 230, 0.0])
    return np.round(low + t * (high - low)).astype(np.uint8)


def tile_boxes(rows: int, cols: int, tile_w: int, tile_h: int, left: int = 0, top: int = 0, gap: int = 2):
    """Box (left, top, right, bottom) of tile (r, c) in a rows x cols layout with `gap` px around tiles."""
    return {
        (r, c): (
            left + gap + c * (tile_w + gap),
            top + gap + r * (tile_h + gap),
            left + gap + c * (tile_w + gap) + tile_w,
            top + gap + r * (tile_h + gap) + tile_h,
        )
        for r in range(rows)
        for c in range(cols)
    }


def _font(size: int):
    return ImageFont.load_default(size=size)


def _text_width(text: str, font) -> int:
    return int(font.getbbox(text)[2]) if text else 0


MIN_WIDTH = 256  # every picture is at least this wide, so its caption has room
FOOTER_FONT, FOOTER_LINE, FOOTER_PAD = 11, 15, 4


def _wrap(text: str, font, width: int) -> list[str]:
    """Greedy word wrap of `text` to `width` pixels."""
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and _text_width(candidate, font) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + ([line] if line else [])


def _with_footer(image: Image.Image, paragraphs: list[str]) -> Image.Image:
    """`image` at the top left of a canvas max(image.width, MIN_WIDTH) wide, the caption wrapped below it."""
    font = _font(FOOTER_FONT)
    width = max(image.width, MIN_WIDTH)
    lines = [line for text in paragraphs for line in _wrap(text, font, width - 2 * FOOTER_PAD)]
    canvas = Image.new("RGB", (width, image.height + FOOTER_PAD + len(lines) * FOOTER_LINE), BACKGROUND)
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, text in enumerate(lines):
        draw.text((FOOTER_PAD, image.height + FOOTER_PAD // 2 + i * FOOTER_LINE), text, fill=TEXT_COLOR, font=font)
    return canvas


def input_mode(config) -> str:
    """The PIL mode the model reads, as training decodes its images (hf_vit.data): "L" for 1 channel, else "RGB"."""
    return "L" if config.num_channels == 1 else "RGB"


def model_image(image: Image.Image, config: HfViTConfig) -> Image.Image:
    """The picture the model sees (before normalisation) at config.image_size, resized bilinearly; in RGB (a
    1-channel model's grey image too), as the pictures show it beside their coloured maps."""
    height, width = _pair(config.image_size)
    image = as_mode(image, input_mode(config)).convert("RGB")
    return image if image.size == (width, height) else image.resize((width, height), Image.BILINEAR)


# ---------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------
# MAX_PICTURE_SIDE (4096, the evaluation's limit too) holds for every picture: the patch grid at --scale 100000 asked
# for gigabytes and the process was killed; cls_attention.png of a 224-px model of 12 layers x 12 heads came out
# 9,466 x 8,106 px.
FOOTER_ROOM = 200  # px kept for a caption's wrapped lines when panels are fitted under MAX_PICTURE_SIDE
# Per-panel scales the pictures are drawn at when they fit (cls_attention and rollout: times the image; the
# similarity and norm tiles: px per patch, as similarity_tile_size and draw_feature_norms choose them).
CLS_ATTENTION_SCALE, ROLLOUT_SCALE = 3, 4


def canvas_size(rows: int, cols: int, tile_w: int, tile_h: int, left: int = 0, top: int = 0, gap: int = 2):
    """(width, height) of a rows x cols layout of tiles at `tile_boxes`, before any caption."""
    return left + gap + cols * (tile_w + gap), top + gap + rows * (tile_h + gap)


def fit_scale(panel, rows: int, cols: int, asked, left: int = 0, top: int = 0, gap: int = 2):
    """The largest per-panel scale up to `asked` at which rows x cols panels of `panel` (width, height) px, with a
    caption below, stay within MAX_PICTURE_SIDE px a side: `asked` when it fits, else a whole scale (square pixels)
    down to 1, and only then a fraction of 1."""
    width, height = panel
    room_w, room_h = MAX_PICTURE_SIDE - left - gap, MAX_PICTURE_SIDE - top - gap - FOOTER_ROOM
    fits = min((room_w / cols - gap) / width, (room_h / rows - gap) / height)
    if fits >= asked:
        return asked
    return math.floor(fits) if fits >= 1 else fits


def check_patch_grid_scale(config: HfViTConfig, scale: int) -> None:
    """Refuse a `scale` that makes the patch grid picture over MAX_PICTURE_SIDE px a side (1 always passes: the
    image at the model's own size)."""
    height, width = _pair(config.image_size)
    if scale > 1 and max(height, width) * scale > MAX_PICTURE_SIDE:
        raise ValueError(
            f"{setting('scale', scale)} makes the patch grid picture {width * scale}x{height * scale} px; at most "
            f"{MAX_PICTURE_SIDE} px a side: pass {setting('scale', max(1, MAX_PICTURE_SIDE // max(height, width)))} "
            "or less."
        )


GRID_SCALE = 8  # the patch grid's upscaling unless one is given; raised where the token numbers need larger cells


def _grid_label_size(config: HfViTConfig, scale: int) -> int | None:
    """The font size of the patch grid's token numbers at `scale`, or None where the widest number's label would
    run into the next cell: its grid line, drawn last, cut the last digit ("119" read "118" in the 16-px cells of
    2x2 patches at 8x)."""
    cell_h, cell_w = (side * scale for side in _pair(config.patch_size))
    size = max(8, min(cell_h, cell_w) // 3)
    font = _font(size)
    widest = len(str(config.num_patches)) * max(font.getlength(digit) for digit in "0123456789") + 2  # + bearing
    return size if widest + 3 <= cell_w and size + 3 <= cell_h else None  # the label box, clear of the next line


def patch_grid_scale(config: HfViTConfig, scale: int | None = None) -> int:
    """`scale` if given; else GRID_SCALE, raised to the smallest scale at which every token number fits its cell
    (10 for 2x2 patches of a 32-px image) while the picture stays within MAX_PICTURE_SIDE px a side."""
    if scale is not None:
        return scale
    scale, most = GRID_SCALE, MAX_PICTURE_SIDE // max(_pair(config.image_size))
    while scale < most and _grid_label_size(config, scale) is None:
        scale += 1
    return scale


def draw_patch_grid(image: Image.Image, config: HfViTConfig, scale: int | None = None) -> Image.Image:
    """The image upscaled `scale` times (default: `patch_grid_scale`, as draw_pictures), 1-px grid lines on every
    cell's left/top edge (and the right/bottom border), each cell numbered with its token index where the numbers fit
    the cells (else the caption says which scale draws them). Caption below."""
    # Called on its own too (a public function): the same default and size limit as draw_pictures' patch grid.
    scale = patch_grid_scale(config, scale)
    check_patch_grid_scale(config, scale)
    (image_h, image_w), (patch_h, patch_w) = _pair(config.image_size), _pair(config.patch_size)
    image = model_image(image, config).resize((image_w * scale, image_h * scale), Image.NEAREST)  # square pixels
    cells = patch_grid_cells(config, scale)
    cell_h, cell_w = patch_h * scale, patch_w * scale
    size = _grid_label_size(config, scale)
    draw = ImageDraw.Draw(image)
    draw.fontmode = "1"  # crisp, unsmoothed digits: legible at 8 px
    font = _font(size or 8)
    for index, (left, top, _, _) in cells if size else ():
        text = str(index)
        draw.rectangle((left + 1, top + 1, left + 2 + _text_width(text, font), top + 2 + size), fill=(0, 0, 0))
        draw.text((left + 2, top + 1), text, fill=(255, 255, 255), font=font)
    # Lines last, so a number never hides one.
    for _, (left, top, right, bottom) in cells:
        draw.line((left, top, right - 1, top), fill=GRID_COLOR)
        draw.line((left, top, left, bottom - 1), fill=GRID_COLOR)
    draw.line((image.width - 1, 0, image.width - 1, image.height - 1), fill=GRID_COLOR)
    draw.line((0, image.height - 1, image.width - 1, image.height - 1), fill=GRID_COLOR)
    gh, gw = config.grid_size
    if size is None:  # a cut number misreads ("119" as "118"): none drawn, and the scale that draws them named
        fits = patch_grid_scale(config)
        unnumbered = [
            f"the token numbers are left out: they do not fit {cell_w}x{cell_h}-px cells at {setting('scale', scale)}"
            + (f"; {setting('scale', fits)} draws them" if _grid_label_size(config, fits) else "")
        ]
    return _with_footer(
        image,
        [
            f"{gh} x {gw} = {gh * gw} patches of {patch_h}x{patch_w} px",
            f"tokens 1..{gh * gw}: row by row (token 0 = [CLS])",
            *(unnumbered if size is None else []),
        ],
    )


PATCH_PANEL = 128  # px the image and the enlarged patch of patch_numbers.png are drawn to (whole scales, at least 1x)
NUMBERED_PIXEL = 32  # px a side of an enlarged pixel that carries its number (patches up to 8 px: up to 256 px)
TABLE_PIXELS = 64  # patch_numbers.png lists the numbers of this many pixels at most (pictures.json has all)
TOKEN_SHOWN = 8  # ... and this many of the token's dim numbers
TABLE_FONT, TABLE_LINE = 11, 14


def channel_names(channels: int) -> list[str]:
    """What channel c of a pixel is, as patch_numbers.png labels it: R, G, B; grey for a 1-channel model."""
    return ["grey"] if channels == 1 else ["R", "G", "B"] if channels == 3 else [f"c{c}" for c in range(channels)]


def patch_number_rows(numbers, patch_size, channels: int, limit: int = TABLE_PIXELS) -> list[list[str]]:
    """The table of patch_numbers.png, one row per pixel of the patch in the Rearrange's (p1 p2 c) order (at most
    `limit` pixels): [f"{pixel} ({p1},{p2})", f"{index}: {value:+.3f}" for each channel], `index` being the
    number's place among the patch_dim numbers the Linear reads."""
    ph, pw = _pair(patch_size)
    rows = []
    for pixel in range(min(ph * pw, limit)):
        p1, p2 = divmod(pixel, pw)
        index = pixel * channels
        rows.append([f"{pixel} ({p1},{p2})"]
                    + [f"{index + c}: {float(numbers[index + c]):+.3f}" for c in range(channels)])
    return rows


def draw_patch_numbers(image: Image.Image, config: HfViTConfig, numbers: dict) -> Image.Image:
    """Goal 1 for one patch (`patch_numbers`'s dict): the image with the patch outlined, the patch enlarged (its
    pixels numbered row by row), its numbers in the Rearrange's order, and the first TOKEN_SHOWN numbers of the
    token the Linear makes of them. Caption below."""
    (image_h, image_w), (ph, pw) = _pair(config.image_size), _pair(config.patch_size)
    channels, dim = config.num_channels, config.dim
    patch_dim, token = ph * pw * channels, numbers["token"]
    left, top, right, bottom = numbers["box"]
    font = _font(TABLE_FONT)
    shown = model_image(image, config)

    # The image, 128 px or its own size, with the patch outlined in the grid's yellow, 2 px outside its pixels.
    scale = max(1, PATCH_PANEL // max(image_h, image_w))
    whole = shown.resize((image_w * scale, image_h * scale), Image.NEAREST)
    # The patch alone, enlarged with square pixels, each numbered in the order its numbers come (when legible).
    # A number's black label is a third of its pixel high: at 16 px a pixel (an 8x8 patch in 128 px) label and
    # padding hid over half of each pixel and the patch looked dark; such patches are drawn larger, up to 256 px.
    cell = max(1, PATCH_PANEL // max(ph, pw))
    if max(ph, pw) <= 2 * PATCH_PANEL // NUMBERED_PIXEL:
        cell = max(cell, NUMBERED_PIXEL)
    enlarged = shown.crop((left, top, right, bottom)).resize((pw * cell, ph * cell), Image.NEAREST)
    if cell >= NUMBERED_PIXEL:
        label_font, draw = _font(max(8, cell // 3)), ImageDraw.Draw(enlarged)
        draw.fontmode = "1"
        for pixel in range(ph * pw):
            x, y, text = (pixel % pw) * cell, (pixel // pw) * cell, str(pixel)
            draw.rectangle((x, y, x + 1 + _text_width(text, label_font), y + 1 + max(8, cell // 3)), fill=(0, 0, 0))
            draw.text((x + 1, y), text, fill=(255, 255, 255), font=label_font)

    rows = patch_number_rows(numbers["numbers"], (ph, pw), channels)
    header = ["pixel (p1,p2)", *channel_names(channels)]
    if len(rows) < ph * pw:
        more = f"... {patch_dim - len(rows) * channels} more numbers (pixels {len(rows)}..{ph * pw - 1}), same order"
    values = numbers["token_values"]
    token_rows = [f"{i}: {float(values[i]):+.3f}" for i in range(min(dim, TOKEN_SHOWN))]
    token_rows += [f"... {dim - TOKEN_SHOWN} more"] if dim > TOKEN_SHOWN else []
    flow = f"-> Linear({patch_dim} -> {dim}) -> token {token}"

    columns = [max(_text_width(text, font) for text in column) + 10 for column in zip(header, *rows)]
    titles = (f"token {token} in the image", f"patch {ph}x{pw}, enlarged", f"{patch_dim} numbers, (p1 p2 c) order")
    gap = 8
    x_whole = gap
    x_patch = x_whole + max(whole.width, _text_width(titles[0], font)) + 2 * gap
    x_table = x_patch + max(enlarged.width, _text_width(titles[1], font)) + 2 * gap
    x_token = x_table + max(sum(columns), _text_width(titles[2], font)) + 2 * gap
    table_bottom = LABEL_TOP + (len(rows) + 2 + (len(rows) < ph * pw)) * TABLE_LINE
    width = x_token + max(_text_width(flow, font), *(_text_width(t, font) for t in token_rows)) + gap
    height = max(LABEL_TOP + 4 + whole.height, LABEL_TOP + 4 + enlarged.height, table_bottom,
                 LABEL_TOP + (len(token_rows) + 2) * TABLE_LINE) + gap
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    y0 = LABEL_TOP + 4  # the pictures' top edge: room for the outline above the image
    canvas.paste(whole, (x_whole, y0))
    draw.rectangle((x_whole + left * scale - 2, y0 + top * scale - 2, x_whole + right * scale + 1,
                    y0 + bottom * scale + 1), outline=GRID_COLOR, width=2)  # fmt: skip
    canvas.paste(enlarged, (x_patch, y0))
    for x, title in zip((x_whole, x_patch, x_table), titles):
        draw.text((x, 2), title, fill=TEXT_COLOR, font=font)
    for line, texts in enumerate([header, *rows]):
        x = x_table
        for text, column_width in zip(texts, columns):
            draw.text((x, LABEL_TOP + line * TABLE_LINE), text, fill=TEXT_COLOR, font=font)
            x += column_width
    if len(rows) < ph * pw:
        draw.text((x_table, LABEL_TOP + (len(rows) + 1) * TABLE_LINE), more, fill=TEXT_COLOR, font=font)
    draw.text((x_token, 2), flow, fill=TEXT_COLOR, font=font)
    draw.text((x_token, LABEL_TOP), f"{dim} numbers:", fill=TEXT_COLOR, font=font)
    for line, text in enumerate(token_rows):
        draw.text((x_token, LABEL_TOP + (line + 1) * TABLE_LINE), text, fill=TEXT_COLOR, font=font)

    gh, gw = config.grid_size
    why = {
        "given": "the patch asked for",
        "all equal": f"all {gh * gw} patches have the same numbers, so none varies most: the first",
    }.get(numbers["chosen"], "the patch whose numbers vary most")
    ties = numbers.get("ties", 1)
    if numbers["chosen"] == "most varied" and ties > 1:  # e.g. a repeated pattern: the others are as good
        why = f"the first of the {ties} patches whose numbers vary most, equally"
    order = ", ".join(channel_names(channels))
    # c named: "(p1*4 + p2)*1 + c" left a 1-channel model's reader asking what c is
    place = (f"(p1*{pw} + p2)*{channels} + c, c = "
             + ", ".join(f"{c} for {name}" for c, name in enumerate(channel_names(channels)))
             if channels > 1 else f"p1*{pw} + p2 (one channel)")
    return _with_footer(canvas, [
        f"token {token}: row {numbers['row']}, column {numbers['column']} of the {gh} x {gw} grid, counting from 0 ({why}).",
        f"its {ph}x{pw} pixels x {channels} channel{'s' if channels > 1 else ''} = {patch_dim} numbers, flattened "
        f"as the model's Rearrange does, (p1 p2 c): pixel by pixel, row by row"
        + (f", {order} within each pixel" if channels > 1 else "")
        + f"; number {place}. They are the pixel values the model reads, normalised by its "
        "image processor ((x/255 - mean) / std).",
        f"{patch_dim} numbers -> Linear({patch_dim} -> {dim}) -> token {token}: {dim} numbers (the first "
        f"{min(dim, TOKEN_SHOWN)} shown), before [CLS] is put in front and the positions are added. Every patch "
        "goes through the same Linear; pictures.json has all the numbers.",
    ])


def similarity_tile_size(grid_size, target: int = 32) -> int:
    """Pixels per cell inside one similarity tile, so that a tile is about `target` px wide."""
    return max(2, target // max(grid_size))


def draw_pos_similarity(similarity: np.ndarray, grid_size, cell: int | None = None, gap: int = 2) -> Image.Image:
    """gh x gw tiles; tile (r, c) is the (gh, gw) map of cos(pos[r, c], pos[every patch]), coloured by
    `similarity_colors` (fixed range -1..1, so tiles compare). Tiles sit at `tile_boxes(...)`."""
    gh, gw = grid_size
    n = gh * gw
    if similarity.shape != (n, n):
        raise ValueError(f"similarity has shape {similarity.shape}, expected ({n}, {n}) for a {gh}x{gw} grid.")
    cell = cell or similarity_tile_size(grid_size)
    tile_w, tile_h = gw * cell, gh * cell
    boxes = tile_boxes(gh, gw, tile_w, tile_h, gap=gap)
    canvas = Image.new("RGB", canvas_size(gh, gw, tile_w, tile_h, gap=gap), GAP_COLOR)
    for i in range(n):
        colors = similarity_colors(similarity[i].reshape(gh, gw))  # (gh, gw, 3)
        tile = Image.fromarray(colors).resize((tile_w, tile_h), Image.NEAREST)
        left, top, _, _ = boxes[(i // gw, i % gw)]
        canvas.paste(tile, (left, top))
    return _with_footer(
        canvas,
        [
            "tile (r,c): cosine similarity of patch (r,c)'s positional embedding with every patch's "
            "([CLS] left out).",
            "-1 blue, 0 white, +1 red; in tile (r,c), cell (r,c) is the patch itself (always +1); other red cells "
            "are positions embedded alike.",
        ],
    )


LABEL_LEFT, LABEL_TOP = 28, 16  # margins of a labelled grid (row labels on the left, column labels on top)


def _labelled_grid(tiles: list[list[Image.Image]], row_labels, col_labels, gap: int = 2) -> Image.Image:
    """Tiles (all one size) in rows and columns, labels on the left (if any) and on top.

    Tile (r, c) sits at `tile_boxes(rows, cols, w, h, left=LABEL_LEFT or 0, top=LABEL_TOP, gap)[(r, c)]`.
    """
    font = _font(11)
    left = LABEL_LEFT if any(row_labels) else 0
    tile_w, tile_h = tiles[0][0].size
    rows, cols = len(tiles), len(tiles[0])
    boxes = tile_boxes(rows, cols, tile_w, tile_h, left=left, top=LABEL_TOP, gap=gap)
    canvas = Image.new("RGB", canvas_size(rows, cols, tile_w, tile_h, left, LABEL_TOP, gap), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for (r, c), (x0, y0, _, _) in boxes.items():
        canvas.paste(tiles[r][c], (x0, y0))
    for r, text in enumerate(row_labels):
        draw.text((3, boxes[(r, 0)][1] + tile_h // 2 - 6), text, fill=TEXT_COLOR, font=font)
    for c, text in enumerate(col_labels):
        draw.text((boxes[(0, c)][0] + 2, 2), text, fill=TEXT_COLOR, font=font)
    return canvas


# What each map is, per config.pool (`cls_attention_maps`, `rollout_map`): the pictures' captions say it.
LAYER_MAPS = {
    "cls": "each tile: [CLS]'s row of that layer and head's attention",
    "mean": "each tile: the mean of all tokens' rows of that layer and head's attention (the attention each patch "
            "receives, averaged over the queries)",
}
ROLLOUT_MAPS = {
    "cls": ["rollout: (A+I)/2 per layer, heads averaged, multiplied; its [CLS] row",
            "last layer: [CLS]'s row of the last attention, heads averaged"],
    "mean": ["rollout: (A+I)/2 per layer, heads averaged, multiplied; the mean of all its rows (the flow into "
             "the mean of the final tokens)",
             "last layer: the mean of all tokens' rows of the last attention, heads averaged"],
}


def draw_cls_attention(image: Image.Image, maps: np.ndarray, scale=CLS_ATTENTION_SCALE,
                       pool: str = "cls") -> Image.Image:
    """Rows = layers; columns = the input (first row only), the heads and their mean. Each map tile is
    `heat_map_image(map, image size x scale)`: one block per patch, beside the image rather than over it. `pool`:
    the model's, which `maps` follow (`cls_attention_maps`); the caption says what they show."""
    depth, heads = maps.shape[:2]
    shown = model_image_scaled(image, scale)
    blank = Image.new("RGB", shown.size, BACKGROUND)
    tiles = [
        [shown if layer == 0 else blank]
        + [heat_map_image(maps[layer, head], shown.size) for head in range(heads)]
        + [heat_map_image(maps[layer].mean(axis=0), shown.size)]
        for layer in range(depth)
    ]
    canvas = _labelled_grid(
        tiles, [f"L{layer + 1}" for layer in range(depth)], ["input"] + [f"h{h + 1}" for h in range(heads)] + ["mean"]
    )
    return _with_footer(
        canvas,
        [
            MAPS_SHOW[pool],
            f"{LAYER_MAPS[pool]}; row = layer, column = head (last: the heads' mean); one block per patch",
            "bright yellow = most attended, black = least (scaled per tile)",
        ],
    )


def model_image_scaled(image: Image.Image, scale) -> Image.Image:
    """The image upscaled with square pixels (drawn beside the maps); a scale under 1 (a picture kept under
    MAX_PICTURE_SIDE) averages pixels instead of dropping them."""
    image = image.convert("RGB")
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.NEAREST if scale >= 1 else Image.BOX)


def draw_rollout(image: Image.Image, rollout: np.ndarray, last_layer: np.ndarray, scale=ROLLOUT_SCALE,
                 caption: list[str] | None = None, pool: str = "cls") -> Image.Image:
    """Three panels: the input, rollout over all layers, the last layer's attention (mean of heads), both into
    what the head reads (`pool`: the model's, which the maps follow; the caption says what they show)."""
    shown = model_image_scaled(image, scale)
    tiles = [[shown, heat_map_image(rollout, shown.size), heat_map_image(last_layer, shown.size)]]
    canvas = _labelled_grid(tiles, [""], ["input", "rollout", "last layer"])
    return _with_footer(canvas, (caption or []) + [MAPS_SHOW[pool], *ROLLOUT_MAPS[pool],
                                                   "bright yellow = most attended, black = least (scaled per panel)"])


def draw_shuffled(image: Image.Image, permutation, patch_size, answers: dict, scale=ROLLOUT_SCALE) -> Image.Image:
    """Two panels, the input and its patches shuffled by `permutation` (`shuffle_patches`), with the top class
    and probability of each, with the learned positions and with them zeroed: `answers`, {"with_positions":
    {"input": (class, p), "shuffled": (class, p)}, "without_positions": {...}}."""
    pixels = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)[None]  # a copy: writable
    moved = shuffle_patches(pixels, patch_size, permutation)[0].permute(1, 2, 0).numpy()
    tiles = [[model_image_scaled(image, scale), model_image_scaled(Image.fromarray(moved), scale)]]
    canvas = _labelled_grid(tiles, [""], ["input", "patches shuffled"])

    # percent, as the other captions: 0.99996 at 4 decimals read "1.0000", a certainty the model never had, and a
    # difference under 0.00005 "they differ (0.0000 apart)". Imported here: hf_vit.metrics loads evaluate (0.4 s).
    from .metrics import percent

    def line(key, text):
        (c_in, p_in), (c_sh, p_sh) = answers[key]["input"], answers[key]["shuffled"]
        if c_in != c_sh:
            verdict = "they differ: another top class"
        elif abs(p_in - p_sh) <= 1e-6:
            verdict = "identical"
        else:
            verdict = f"they differ by {percent(abs(p_in - p_sh), 2)[:-1]} percentage points"
        return f"{text}: input {c_in} {percent(p_in, 2)}, shuffled {c_sh} {percent(p_sh, 2)}: {verdict}"

    if np.array_equal(moved, pixels[0].permute(1, 2, 0).numpy()):
        # a flat image (or a pattern the shuffle maps onto itself): "only the positions tell them apart" beside
        # "with the learned positions: identical" read as if positions did nothing
        why = ("every patch here is alike, so the shuffled image is the input itself and both orders get the same "
               "answer even with positions; draw an image whose patches differ to see the positions at work")
    else:
        why = ("attention is order-blind: without positions the model sees a bag of patches and both orders get "
               "the same answer; only the positions tell them apart (an untrained model's random positions move it "
               "only slightly)")
    return _with_footer(canvas, [
        f"the same patches in another order (seed {SHUFFLE_SEED}); the top class and its probability:",
        line("with_positions", "with the learned positions"),
        line("without_positions", "positions zeroed"),
        why,
    ])


def norm_tile_size(grid_size) -> int:
    """Pixels per cell inside one feature-norm tile, so that a tile is about 64 px wide."""
    return max(2, 64 // max(grid_size))


def draw_feature_norms(norms: np.ndarray, grid_size, cell: int | None = None) -> Image.Image:
    """One tile per stage (embeddings, after block 1..L): the patch tokens' norms on the grid, one colour
    scale for all tiles (`magnitude_colors` up to the largest patch norm); [CLS]'s norm written below."""
    gh, gw = grid_size
    stages = norms.shape[0]
    cell = cell or norm_tile_size(grid_size)
    vmax = float(norms[:, 1:].max())
    maps = [magnitude_colors(norms[s, 1:].reshape(gh, gw), vmax) for s in range(stages)]  # (gh, gw, 3) each
    tiles = [[Image.fromarray(m).resize((gw * cell, gh * cell), Image.NEAREST) for m in maps]]
    col_labels = ["emb"] + [f"L{s}" for s in range(1, stages)]
    canvas = _labelled_grid(tiles, [""], col_labels)
    return _with_footer(canvas, [
        f"norm of each patch token after the embeddings (emb) and after each block (L1..L{stages - 1}) (blue 0 -> "
        f"yellow {vmax:.2f}); each block adds its output to this residual stream, which no LayerNorm rescales",
        "[CLS] norms: " + ", ".join(f"{name} {norms[s, 0]:.2f}" for s, name in enumerate(col_labels)),
    ])


# ---------------------------------------------------------------------------
# Models, images, the whole set of pictures
# ---------------------------------------------------------------------------
def fresh_model(preset: str = "default", seed: int = 0, **overrides):
    """A freshly initialised HfViTForImageClassification from a preset plus field overrides (None = keep)."""
    from .modeling_hf_vit import HfViTForImageClassification

    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}. Choose one of: {', '.join(PRESETS)}.")
    fields = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    torch.manual_seed(seed)
    return HfViTForImageClassification(HfViTConfig(**fields)).eval()


def load_model(model_dir, trust_remote_code: bool = False, revision: str | None = None):
    """(model, image processor or None) from a folder written by training (or a Hub id, if reachable, at
    `revision`: a branch, tag or commit of it).

    Loaded as the evaluation loads it (`hf_vit.analysis.load_classifier`): the same checks and messages,
    and safetensors only (a folder with just a pickled pytorch_model.bin is refused, never unpickled).
    """
    from .analysis import check_processor_size, load_classifier, load_image_processor

    model, source, local_only = load_classifier(
        model_dir, "model_dir", trust_remote_code=trust_remote_code, attn_implementation="eager", revision=revision
    )
    _base_model(model, model_dir)
    path = Path(source)
    if path.exists() and not (path / "preprocessor_config.json").is_file():
        return model.eval(), None  # no processor saved: the script says which statistics it assumes
    try:  # trust_remote_code given, never None: transformers would ask on the terminal and run it on a "y"
        processor = load_image_processor(source, model_dir, trust_remote_code, local_only, revision)
    except FileNotFoundError as err:
        cause = err.__cause__
        if isinstance(cause, ValueError) and "trust_remote_code" in str(cause):
            raise ValueError(
                f"{str(model_dir)!r}: its preprocessor_config.json names .py files (auto_map) that would run here to "
                "build its image processor; hf_vit's processor needs none. If you trust its author, pass "
                f"{setting('trust_remote_code', True)}; otherwise delete auto_map from that file."
            ) from None
        if path.exists() or not isinstance(cause, OSError):
            raise  # a preprocessor_config.json that is there but broken: refused as the evaluation refuses it
        processor = None  # a Hub id without a processor: the script says which statistics it assumes
    if processor is not None:  # one of another size than the model's: refused as the evaluation refuses it
        check_processor_size(processor, model.config, model_dir, setting("model_dir", flag="model"))
    return model.eval(), processor


def check_output_dir(output_dir) -> Path:
    """`output_dir` as a Path, refused when it is a file (the pictures go in a folder, created if absent), a model
    folder or an evaluation folder: their files are training's and the evaluation's, which the push uploads as such
    (evaluation/*.png goes up as the evaluation's pictures)."""
    output_dir = Path(output_dir).expanduser()
    given = setting("output_dir", str(output_dir))
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"{given} is a file, not a folder. Pass a folder for the pictures.")
    model, evaluation = (output_dir / "config.json").is_file(), holds_an_evaluation(output_dir)
    if model or evaluation:
        whose = (
            "a model folder (it holds config.json): the pictures would mix with what training wrote there" if model
            else "an evaluation folder: a push would upload the pictures among the evaluation's, as if the "
            "evaluation had drawn them"
        )
        own = output_dir / "pictures" if model else output_dir.parent / "pictures"  # beside the evaluation
        raise ValueError(
            f"{given} is {whose}. Pass a folder of their own, e.g. {setting('output_dir', str(own), quote=False)}."
        )
    return output_dir


def load_image_file(path) -> Image.Image:
    """The image file as the evaluation and the pipeline see it: turned upright by its EXIF orientation, RGB."""
    from PIL import ImageOps

    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"{setting('path', str(path), flag='image')} is a folder, not an image file. Pass one "
                         f"PNG/JPEG file with {setting('path', flag='image')}.")
    if not path.is_file():
        raise FileNotFoundError(
            f"Image file {path} does not exist. Pass an existing PNG/JPEG with {setting('path', flag='image')}."
        )
    try:
        with Image.open(path) as img:
            img.load()  # read now: an RGB file comes back as is, and the file closes here
            # A phone photo's EXIF orientation: transformers' load_image (the pipeline) and the datasets turn it
            # upright (hf_vit.data._decode_one too), so the pictures must show it so.
            img = ImageOps.exif_transpose(img)
            return as_mode(img, "RGB")  # transparent pixels on white, as the evaluation and the pipeline
    except ImageDepthError as err:
        raise ValueError(f"{path}: {err}") from None
    except Image.DecompressionBombError as err:  # over PIL's pixel limit: not an OSError
        raise ValueError(
            f"{path} is too large to decode safely ({err}). Downscale the image, or raise PIL.Image.MAX_IMAGE_PIXELS "
            "if you trust it."
        ) from None
    except OSError as err:
        raise ValueError(f"{path} is not an image PIL can read ({err}). Pass a PNG or JPEG file.") from err


def load_dataset_image(
    dataset: str, index: int, split: str = "test", image_column: str | None = None, label_column: str | None = None,
    id2label: dict | None = None, dataset_revision: str | None = None,
) -> tuple[Image.Image, str | None]:
    """Image number `index` of a dataset split (a local folder or a Hub id, at `dataset_revision`) and its class
    name, if labelled.

    A ClassLabel column names its classes, a column of names holds them; plain integer labels are named by
    `id2label` (the model's, as the evaluation names them), else left out.

    The columns are found as training and the evaluation find them (img/image, label/labels, or the names given),
    so a picture shows the image and class the evaluation scored under that index.
    """
    import datasets

    from .data import DatasetError, check_image_column, find_columns, get_split, holds_names, load_dataset

    # label_column: the one checked to hold names or ids alike in every split, as the evaluation checks it
    loaded = load_dataset(dataset, argument="dataset", dataset_revision=dataset_revision, label_column=label_column)
    ds = get_split(loaded, split, dataset, "split")
    if not 0 <= index < len(ds):
        raise ValueError(
            f"{setting('index', index)} is out of range: split {split!r} of {dataset} has {len(ds)} images (0..{len(ds) - 1})."
        )
    image_column, label_column = find_columns(ds, image_column, label_column, label_required=False)
    if not isinstance(ds.features[image_column], datasets.Image):
        try:  # what training and the evaluation read as images (pixel arrays, encoded bytes, paths) is drawn too
            check_image_column(ds, image_column, dataset)
        except DatasetError:
            raise ValueError(
                f"the column {image_column!r} of {dataset} holds {type(ds.features[image_column]).__name__} values, "
                f"not images. Name the image column with {setting('image_column')}."
            ) from None
        ds = ds.cast_column(image_column, datasets.Image())
    row = ds[index]
    feature = ds.features[label_column] if label_column else None
    if isinstance(feature, datasets.ClassLabel):
        label = feature.int2str(row[label_column])
    elif label_column and id2label and isinstance(row[label_column], int) and row[label_column] in id2label:
        label = id2label[row[label_column]]
    elif holds_names(feature):  # a column of class names (training takes them so)
        label = row[label_column]
    else:  # no names to show: the picture gives the prediction only
        label = None
    try:
        return as_mode(row[image_column], "RGB"), label  # what the evaluation scored for this index
    except ImageDepthError as err:
        raise ValueError(f"{setting('index', index)} of split {split!r} of {dataset}: {err}") from None


def pixel_values_for(image: Image.Image, config, processor=None) -> torch.Tensor:
    """(1, C, H, W) normalised input, through the model folder's processor or the package default; grey for a
    1-channel model (as training decodes its images)."""
    if processor is None:
        from .image_processing import make_image_processor

        processor = make_image_processor(config)
    return processor(images=as_mode(image, input_mode(config)), return_tensors="pt")["pixel_values"]


def check_pictures(pictures) -> None:
    """Refuse a name that is not one of PICTURES (visualize.py: before the model and the image load)."""
    unknown = [p for p in pictures if p not in PICTURES]
    if unknown:
        raise ValueError(f"Unknown picture(s) {unknown}. Choose from: {', '.join(PICTURES)}.")


def check_patch(config, patch, pictures) -> None:
    """Refuse a `patch` (patch_numbers.png's token, 1..N) that is no patch of this model, or given without
    patch_numbers among the pictures (it would choose nothing). `config` None (visualize.py, before the model
    loads): what needs no model only."""
    if patch is None:
        return
    if isinstance(patch, bool) or not isinstance(patch, (int, np.integer)) or patch < 1:
        raise ValueError(f"{setting('patch', patch)} is no patch: pass a token number, 1 for the first patch (token 0 "
                         "is [CLS], which has no patch).")
    if "patch_numbers" not in pictures:
        raise ValueError(
            f"{setting('patch', patch)} chooses the patch of patch_numbers.png, which {setting('pictures')} leaves "
            f"out. Add patch_numbers to {setting('pictures')}, or leave {setting('patch')} out."
        )
    if config is not None and patch > config.num_patches:
        (gh, gw), n = config.grid_size, config.num_patches
        raise ValueError(f"{setting('patch', patch)} is no patch of this model: its image is cut into {gh} x {gw} = "
                         f"{n} patches, tokens 1..{n}. Pass a number from 1 to {n}.")


def _check_drawable(model, pictures, scale, patch=None) -> None:
    """Refuse what the pictures cannot be drawn for, before the model runs."""
    check_pictures(pictures)
    config = model.config
    if config.num_channels not in (1, 3):  # as training: images decode to grey or RGB only
        raise ValueError(f"The pictures need a model of 1 or 3 channels (num_channels), this one has "
                         f"{config.num_channels}. Train it on grey (1) or RGB (3) images.")
    _base_model(model)  # refuses a model without hf_vit's layers (transformers' ViT, another class)
    if "patch_grid" in pictures:
        check_patch_grid_scale(config, patch_grid_scale(config, scale))
    check_patch(config, patch, pictures)


def draw_pictures(model, image: Image.Image, processor=None, pictures=PICTURES, scale: int | None = None,
                  label: str | None = None, patch: int | None = None) -> dict:
    """The chosen pictures as PIL images, {name: image}, drawn in memory and written nowhere: in a notebook, a cell
    ending in one shows it (or `display(...)` each). The same pictures write_pictures saves; `label`, the image's
    true class, goes into rollout's caption; `patch`, a token 1..N, is the patch patch_numbers.png shows (default:
    the one whose numbers vary most); `scale`, the patch grid's upscaling (default: 8, or more where its token
    numbers need larger cells: `patch_grid_scale`). A model in training mode stays in it (see run_model)."""
    _check_drawable(model, pictures, scale, patch)
    return _draw_pictures(model, image, processor, pictures, scale, label, source=None, patch=patch)[0]


def write_pictures(model, image: Image.Image, output_dir, processor=None, pictures=PICTURES, scale: int | None = None,
                   label: str | None = None, source: str | None = None, patch: int | None = None) -> dict:
    """Run the model on `image` and write the chosen PNGs plus pictures.json as one set (`_write_set`); returns
    {name: path}."""
    _check_drawable(model, pictures, scale, patch)
    output_dir = check_output_dir(output_dir)
    drawn, summary = _draw_pictures(model, image, processor, pictures, scale, label, source, patch)
    return _write_set(output_dir, drawn, summary)


def _draw_pictures(model, image, processor, pictures, scale, label, source, patch=None) -> tuple[dict, dict]:
    """({name: PIL image}, what pictures.json records) for a model and pictures `_check_drawable` accepted."""
    config = model.config
    shown = model_image(image, config)
    pixel_values = pixel_values_for(image, config, processor)
    result = run_model(model, pixel_values)
    grid = config.grid_size
    probs = result["probs"][0]

    def label_of(p):
        top = int(p.argmax())
        return config.id2label.get(top, str(top)) if config.id2label else str(top)

    top = int(probs.argmax())
    predicted = label_of(probs)
    # percent: a share short of 1 is never "100%" (0.998 is ">99%"), as in the evaluation's captions. Imported
    # here: hf_vit.metrics imports evaluate, 0.4 s that visualize.py's start need not wait for.
    from .metrics import percent

    caption = [f"predicted {predicted} ({percent(probs[top], 0)})" + (f", true {label}" if label else "")]
    # The attention maps follow what the head reads: [CLS]'s row, or all tokens' rows averaged for a mean pool.
    pool = config.pool

    smaller = {}  # name -> why the picture is drawn smaller than asked (logged, and kept in pictures.json)

    def fitted(name, panel, rows, cols, asked, left=0, top=0):
        """`asked`, or the per-panel scale that keeps picture `name` within MAX_PICTURE_SIDE (said in `smaller`)."""
        fit = fit_scale(panel, rows, cols, asked, left, top)
        if fit < asked:
            width, height = canvas_size(rows, cols, round(panel[0] * asked), round(panel[1] * asked), left, top)
            smaller[name] = (
                f"{name}.png: its {rows} x {cols} panels are drawn at {fit:.2g}x instead of {asked}x: at {asked}x the "
                f"picture would be {width:,}x{height:,} px, over the limit of {MAX_PICTURE_SIDE} px a side."
            )
        return fit

    gh, gw = grid
    shown_size = shown.size
    if "shuffled" in pictures:  # goal 2: the same answer for both orders once the positions are zeroed
        permutation = np.random.default_rng(SHUFFLE_SEED).permutation(config.num_patches).tolist()
        shuffled_probs = shuffled_predictions(model, pixel_values, permutation)
        shuffled_answers = {key: {name: (label_of(p), float(p.max())) for name, p in both.items()}
                            for key, both in shuffled_probs.items()}

    if "patch_numbers" in pictures:  # goal 1 for one patch: its numbers and the token the Linear makes of them
        one_patch = patch_numbers(model, pixel_values, patch)

    def draw(name):
        if name == "patch_grid":
            return draw_patch_grid(shown, config, scale=patch_grid_scale(config, scale))
        if name == "patch_numbers":
            return draw_patch_numbers(shown, config, one_patch)
        if name == "pos_similarity":
            cell = max(1, int(fitted(name, (gw, gh), gh, gw, similarity_tile_size(grid))))
            return draw_pos_similarity(pos_embedding_similarity(model), grid, cell=cell)
        if name == "cls_attention":
            maps = cls_attention_maps(result["attentions"], grid, pool)  # (depth, heads, gh, gw)
            rows, cols = maps.shape[0], maps.shape[1] + 2  # the input, the heads, their mean
            fit = fitted(name, shown_size, rows, cols, CLS_ATTENTION_SCALE, LABEL_LEFT, LABEL_TOP)
            return draw_cls_attention(shown, maps, scale=fit, pool=pool)
        if name == "rollout":
            last = patch_map_to_grid(pooled_attention(result["attentions"], pool, layer=-1)[0], grid)
            fit = fitted(name, shown_size, 1, 3, ROLLOUT_SCALE, 0, LABEL_TOP)
            return draw_rollout(shown, rollout_map(result["attentions"], grid, pool), last, scale=fit,
                                caption=caption, pool=pool)
        if name == "shuffled":
            fit = fitted(name, shown_size, 1, 2, ROLLOUT_SCALE, 0, LABEL_TOP)
            return draw_shuffled(shown, permutation, config.patch_size, shuffled_answers, scale=fit)
        norms = token_norms(result["hidden_states"])  # (depth + 1, N + 1): one tile per stage
        cell = max(1, int(fitted(name, (gw, gh), 1, len(norms), norm_tile_size(grid), 0, LABEL_TOP)))
        return draw_feature_norms(norms, grid, cell=cell)

    def within_limit(name, picture):
        """The last word on MAX_PICTURE_SIDE, for what no fitted scale keeps under it (e.g. a 1-px-per-patch
        similarity grid of thousands of patches): shrunk as a whole."""
        if max(picture.size) <= MAX_PICTURE_SIDE:
            return picture
        before = picture.size
        picture.thumbnail((MAX_PICTURE_SIDE, MAX_PICTURE_SIDE), Image.LANCZOS)
        smaller[name] = (
            f"{name}.png is shrunk from {before[0]:,}x{before[1]:,} to {picture.width}x{picture.height} px: the limit "
            f"is {MAX_PICTURE_SIDE} px a side (its labels may be hard to read)."
        )
        return picture

    # All drawn in memory before the folder is touched: a failure (or Ctrl-C) while drawing leaves it as it was.
    drawn = {name: within_limit(name, draw(name)) for name in pictures}
    for note in smaller.values():
        logger.warning(note)
    summary = {
        "source": source,
        "label": label,
        "predicted": predicted,
        "probability": float(probs[top]),  # unrounded: at 4 places 0.99996 was saved as 1.0, a certainty
        "image_size": list(_pair(config.image_size)),
        "patch_size": list(_pair(config.patch_size)),
        "grid_size": list(grid),
        "num_patches": config.num_patches,
        "depth": config.depth,
        "heads": config.heads,
        "pool": config.pool,
        "attention_maps_show": MAPS_SHOW[pool],  # what cls_attention.png and rollout.png follow, by the pool
        "pictures": {name: f"{name}.png" for name in drawn},
        **({"patch_grid_scale": patch_grid_scale(config, scale)} if "patch_grid" in drawn else {}),
        **({"drawn_smaller": smaller} if smaller else {}),
    }
    if "patch_numbers" in drawn:  # every number, unrounded (the picture shows 3 decimals and the token's first few)
        summary["patch_numbers"] = {
            "token": one_patch["token"],
            "row": one_patch["row"],
            "column": one_patch["column"],
            "chosen": one_patch["chosen"],
            # how many patches spread as much as the one shown (it is the first of them); N for a flat image
            **({"ties": one_patch["ties"]} if one_patch["chosen"] != "given" else {}),
            "order": "(p1 p2 c)",  # number (p1 * patch width + p2) * channels + c
            "numbers": [float(v) for v in one_patch["numbers"]],
            "linear": [len(one_patch["numbers"]), config.dim],  # in and out features
            "token_values": [float(v) for v in one_patch["token_values"]],  # before [CLS] and the positions
        }
    if "shuffled" in drawn:  # the numbers under shuffled.png, unrounded (the picture shows percents to 2 places)
        summary["shuffled"] = {
            "permutation_seed": SHUFFLE_SEED,
            "permutation": permutation,  # new patch k is old patch permutation[k], in token order
            **{key: {name: {"predicted": c, "probability": p} for name, (c, p) in both.items()}
               for key, both in shuffled_answers.items()},
        }
    return drawn, summary


def _write_set(output_dir: Path, drawn: dict, summary: dict) -> dict:
    """Write the drawn pictures as one set: each PNG whole (temporary file + os.replace), pictures of an earlier
    run that this one did not redraw removed (they would show another image beside this run's pictures.json),
    pictures.json last, so a set that has one is complete. Returns {name: path}."""
    try:  # one run per folder, as the evaluation's: two runs writing it at once would mix their pictures
        # a kill while the set is written still releases the folder (Python's default would leave the lock file)
        with sigterm_exits(), folder_lock(output_dir, "a visualize.py run"):
            return _write_locked_set(output_dir, drawn, summary)
    except FolderInUseError as err:
        raise FolderInUseError(
            f"{setting('output_dir', str(output_dir))} is in use by {err.holder}: two runs there would mix their "
            f"pictures. Wait for it to finish, or pass another {setting('output_dir')}.", err.holder, err.readers,
        ) from None


def _write_locked_set(output_dir: Path, drawn: dict, summary: dict) -> dict:
    (output_dir / "pictures.json").unlink(missing_ok=True)  # until the new set is whole, none claims the folder
    for name in PICTURES:
        if name not in drawn:
            (output_dir / f"{name}.png").unlink(missing_ok=True)
    written = {
        name: replace_file(output_dir / f"{name}.png", lambda tmp, picture=picture: picture.save(tmp, format="PNG"))
        for name, picture in drawn.items()
    }
    replace_text(output_dir / "pictures.json", json.dumps(summary, indent=2) + "\n")
    return written


__all__ = [
    "PICTURES",
    "PRESETS",
    "cls_attention_maps",
    "draw_cls_attention",
    "draw_feature_norms",
    "draw_patch_grid",
    "draw_patch_numbers",
    "draw_pictures",
    "draw_pos_similarity",
    "draw_rollout",
    "draw_shuffled",
    "fresh_model",
    "load_dataset_image",
    "load_image_file",
    "load_model",
    "magnitude_colors",
    "patch_grid_cells",
    "patch_numbers",
    "pixel_values_for",
    "pos_embedding_similarity",
    "rollout_map",
    "run_model",
    "shuffle_patches",
    "shuffled_predictions",
    "similarity_colors",
    "tile_boxes",
    "token_norms",
    "write_pictures",
    "check_output_dir",
    "check_patch",
]
