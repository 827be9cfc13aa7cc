"""Pictures for the evaluation, drawn with PIL only (no plotting library).

- `confusion_matrix_image`: a heatmap with counts and class names,
- `per_class_accuracy_image`: a horizontal bar chart,
- `gallery_image`: a grid of (mistaken) images with their labels,
- `attention_strip`: an image next to its attention rollout and last-layer attention into what the head reads
  ([CLS], or the mean of all tokens for pool="mean"; one block per patch).
"""

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .attention_maps import heat_colours, heat_map_image

# GREY text is 5.9:1 on white and 5.2:1 on the bars' (240, 240, 240) track: WCAG AA asks 4.5:1 (120 was 4.4:1).
WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (100, 100, 100)
DARK_BLUE = np.array([8, 48, 107], dtype=np.float64)
BAR_BLUE = (49, 130, 189)
RED = (200, 40, 40)


def font(size: int) -> ImageFont.ImageFont:
    """Pillow's bundled font at `size` px (a fixed-size bitmap font if FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def text_size(draw: ImageDraw.ImageDraw, text: str, fnt) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=fnt)
    return right - left, bottom - top


def _luminance(rgb) -> float:
    """WCAG 2.1 relative luminance of an sRGB colour with channels 0..255."""
    c = np.asarray(rgb, dtype=np.float64) / 255
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return float(linear @ np.array([0.2126, 0.7152, 0.0722]))


def contrast_ratio(a, b) -> float:
    """WCAG contrast ratio of two colours, 1 to 21."""
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def readable_on(background) -> tuple[int, int, int]:
    """BLACK or WHITE, whichever contrasts more with `background`: at least 4.58:1 on any colour."""
    return max((BLACK, WHITE), key=lambda text: contrast_ratio(text, background))


def _measure(texts, fnt) -> int:
    """Width in px of the widest text."""
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    return max((text_size(draw, t, fnt)[0] for t in texts), default=0)


def _rotated_text(text: str, fnt, fill=BLACK) -> Image.Image:
    """`text` turned 90 degrees counter-clockwise (reads bottom to top), on a transparent background."""
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=fnt)
    img = Image.new("RGBA", (right - left + 2, bottom - top + 2), (255, 255, 255, 0))
    ImageDraw.Draw(img).text((-left + 1, -top + 1), text, font=fnt, fill=fill)
    return img.rotate(90, expand=True)


# No picture over this many px a side (visualize.py's too, hf_vit.teaching): 1000 classes drew a 14,099 x 14,127 px
# confusion matrix (1.2 GB, a minute), which report.html then carried as a data URI.
MAX_PICTURE_SIDE = 4096
NAMED_CELL = 14  # the smallest cell that still has room for a class name beside its row and above its column


def confusion_matrix_image(confusion, names, title: str = "Confusion matrix") -> Image.Image:
    """Heatmap of a (C, C) count matrix (rows: true class, columns: predicted class).

    Colour is the row-normalised share (the recall of each cell), so small and
    large classes read alike; the number in each cell is the raw count. Within
    MAX_PICTURE_SIDE: classes too many for named rows of NAMED_CELL px get smaller cells and no names (in the
    order of the labels).
    """
    cm = np.asarray(confusion, dtype=np.int64)
    num_classes = cm.shape[0]
    cell = int(max(NAMED_CELL, min(48, 640 // max(num_classes, 1))))
    f_names, f_cell, f_title = font(13), font(max(8, min(14, cell // 3))), font(16)
    name_w = _measure(names, f_names) + 10
    named = name_w + 52 + num_classes * cell + 10 <= MAX_PICTURE_SIDE  # the top margin is the larger one
    if not named:  # the names' margins dropped; cells as large as the limit allows, at least 1 px
        name_w = 0
        cell = max(1, (MAX_PICTURE_SIDE - 52 - 10) // max(num_classes, 1))
    left, top = name_w + 24, name_w + 52  # room for the names, the axis captions and the title
    # as wide as the title too: a few classes make a matrix narrower than "Confusion matrix (500 of 10,000 images)"
    width, height = max(left + num_classes * cell + 10, _measure([title], f_title) + 20), top + num_classes * cell + 10
    img = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(img)
    draw.text((10, 8), title, font=f_title, fill=BLACK)
    axis = "predicted class ->" if named else "predicted class -> (classes in the order of labels)"
    draw.text((left, 30), axis, font=f_names, fill=GREY)
    caption = _rotated_text("<- true class", f_names, GREY)  # turned a quarter left: the arrow points down the rows
    img.paste(caption, (4, top), caption)

    row_sums = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, row_sums, out=np.zeros(cm.shape, dtype=np.float64), where=row_sums > 0)
    # All cells at once: (C, C, 3) colours blown up to cell x cell blocks, each outlined in light grey.
    colours = (np.array(WHITE) + share[..., None] * (DARK_BLUE - np.array(WHITE))).astype(np.uint8)  # (C, C, 3)
    blocks = colours.repeat(cell, axis=0).repeat(cell, axis=1)  # (C * cell, C * cell, 3)
    if cell >= 4:  # smaller cells would be all outline
        edge = np.isin(np.arange(num_classes * cell) % cell, (0, cell - 1))
        blocks[edge, :] = blocks[:, edge] = (220, 220, 220)
    img.paste(Image.fromarray(blocks), (left, top))
    if cell >= 20:
        for i in range(num_classes):
            for j in range(num_classes):
                colour = tuple(int(c) for c in colours[i, j])
                x0, y0 = left + j * cell, top + i * cell
                text = str(cm[i, j])
                tw, th = text_size(draw, text, f_cell)
                draw.text(
                    (x0 + (cell - tw) / 2, y0 + (cell - th) / 2 - 1),
                    text,
                    font=f_cell,
                    fill=readable_on(colour),  # by contrast, not share: white on a mid blue was 3:1
                )
    for k, name in enumerate(names if named else ()):
        tw, th = text_size(draw, name, f_names)
        draw.text((left - tw - 6, top + k * cell + (cell - th) / 2 - 2), name, font=f_names, fill=BLACK)
        rotated = _rotated_text(name, f_names)
        img.paste(rotated, (left + k * cell + (cell - rotated.width) // 2, top - rotated.height - 6), rotated)
    return img


def per_class_accuracy_image(accuracies, names, overall: float | None = None, title: str = "Accuracy per class"):
    """Horizontal bars: the share of each class's images classified correctly (its recall; None: no images).

    Within MAX_PICTURE_SIDE: classes too many for labelled rows of 24 px (1000 made the chart 24,070 px tall) get
    thinner bars, in the order of the labels, without their names and numbers (report.html's table has them); a
    class without images then has no bar at all."""
    f_names, f_title = font(13), font(16)
    bar_h, gap, bar_max = 18, 6, 320
    top = 40
    labelled = top + len(names) * (bar_h + gap) + 30 <= MAX_PICTURE_SIDE
    if not labelled:
        row = max(1, (MAX_PICTURE_SIDE - top - 46) // len(names))  # 16 px more below: what the bars are
        gap = 1 if row > 2 else 0
        bar_h = row - gap
    name_w = _measure(names, f_names) + 12 if labelled else 0
    left = name_w + 10
    width = max(left + bar_max + 70, _measure([title], f_title) + 20)  # and room for a longer title
    height = top + len(names) * (bar_h + gap) + (30 if labelled else 46)
    img = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(img)
    draw.text((10, 8), title, font=f_title, fill=BLACK)
    for k, (name, acc) in enumerate(zip(names, accuracies)):
        y = top + k * (bar_h + gap)
        if labelled:
            tw, th = text_size(draw, name, f_names)
            draw.text((left - tw - 8, y + (bar_h - th) / 2 - 2), name, font=f_names, fill=BLACK)
        if acc is None:  # no images of this class in the split: nothing to measure
            if labelled:
                draw.rectangle([left, y, left + bar_max, y + bar_h], fill=(240, 240, 240))
                draw.text((left + 6, y + 1), "no images", font=f_names, fill=GREY)
            continue
        draw.rectangle([left, y, left + bar_max, y + bar_h - (0 if labelled else 1)], fill=(240, 240, 240))
        draw.rectangle([left, y, left + round(bar_max * float(acc)), y + bar_h - (0 if labelled else 1)],
                       fill=BAR_BLUE)
        if labelled:
            draw.text((left + bar_max + 6, y + 1), f"{100 * float(acc):.1f}%", font=f_names, fill=BLACK)
    axis_y = top + len(names) * (bar_h + gap)
    for frac in (0, 0.5, 1):
        x = left + round(bar_max * frac)
        draw.line([x, axis_y, x, axis_y + 4], fill=GREY)
        draw.text((x - 8, axis_y + 6), f"{int(frac * 100)}%", font=font(11), fill=GREY)
    if not labelled:
        draw.text((10, axis_y + 24), f"{len(names)} classes, in the order of labels", font=font(11), fill=GREY)
    if overall is not None:
        # The overall accuracy as a red line, to spot the classes below it; a 1 px white outline parts it from
        # the blue bars (red on that blue is 1.3:1).
        x = left + round(bar_max * float(overall))
        draw.rectangle([x - 2, top - 5, x + 1, axis_y + 1], fill=WHITE)
        draw.rectangle([x - 1, top - 4, x, axis_y], fill=RED)
        draw.text((x + 4, top - 16), f"overall {100 * float(overall):.1f}%", font=font(11), fill=RED)
    return img


def _upscale(image: Image.Image, target: int) -> tuple[Image.Image, int]:
    """Enlarge a small image by a whole factor (nearest: the pixels stay honest) to about `target` px."""
    scale = max(1, math.ceil(target / max(image.width, image.height)))
    if scale == 1:
        image = image.copy()
        image.thumbnail((target, target))
        return image, 1
    return image.resize((image.width * scale, image.height * scale), Image.NEAREST), scale


def _gallery_cell(tile: int, lines: int, pad: int = 8) -> tuple[int, int]:
    """(width, height) of one gallery cell: the image and `lines` caption lines under it."""
    return tile + pad, tile + 15 * lines + 4 + pad


def gallery_capacity(columns: int = 8, tile: int = 96, lines: int = 3) -> int:
    """How many images `gallery_image` draws within MAX_PICTURE_SIDE px a side (208 at the evaluation's layout)."""
    cell_w, cell_h = _gallery_cell(tile, lines)
    return min(columns, (MAX_PICTURE_SIDE - 16) // cell_w) * ((MAX_PICTURE_SIDE - 34) // cell_h)


def gallery_image(images, captions, columns: int = 8, tile: int = 96, title: str = "Most confident mistakes"):
    """A grid of images, each with caption lines under it (`captions[i]` is a list of (text, colour))."""
    f_text, f_title = font(12), font(16)
    lines = max((len(c) for c in captions), default=0)
    columns = max(1, min(columns, len(images)))
    rows = max(1, math.ceil(len(images) / columns))
    pad = 8
    cell_w, cell_h = _gallery_cell(tile, lines, pad)
    heading = title if images else f"{title}: none"
    heading_w = _measure([heading], f_title)
    # As wide as the heading too: one or two images (or none) make a grid narrower than its title.
    img = Image.new("RGB", (max(2 * pad + columns * cell_w, 2 * pad + heading_w), 34 + rows * cell_h), WHITE)
    draw = ImageDraw.Draw(img)
    draw.text((pad, 8), heading, font=f_title, fill=BLACK)
    for k, (image, caption) in enumerate(zip(images, captions)):
        r, c = divmod(k, columns)
        x, y = pad + c * cell_w, 34 + r * cell_h
        thumb, _ = _upscale(image.convert("RGB"), tile)
        img.paste(thumb, (x + (tile - thumb.width) // 2, y + (tile - thumb.height) // 2))
        for n, (text, colour) in enumerate(caption):
            # Trim long names so that neighbours stay readable.
            while text and text_size(draw, text, f_text)[0] > tile + pad - 2:
                text = text[:-3] + ".." if len(text) > 2 else ""
            draw.text((x, y + tile + 2 + 15 * n), text, font=f_text, fill=colour)
    return img


def _colour_key(width: int, fnt) -> Image.Image:
    """The maps' colour scale as a bar between "low" and "high", `width` px wide in all (the picture's own key)."""
    low, high = "attention: low", "high"
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    low_w, high_w = text_size(draw, low, fnt)[0], text_size(draw, high, fnt)[0]
    # Both texts on one baseline, measured together: the descender of "high"'s g reaches below "low" (sized by
    # "low" alone, the key cut the g's last row off).
    _, text_top, _, text_bottom = draw.textbbox((0, 0), low + high, font=fnt)
    bar_w, bar_h = max(32, width - low_w - high_w - 12), 10
    key = Image.new("RGB", (low_w + bar_w + high_w + 12, max(bar_h, text_bottom - text_top) + 4), WHITE)
    ramp = heat_colours(np.linspace(0, 1, bar_w))[None].repeat(bar_h, axis=0)  # (bar_h, bar_w, 3), left = 0
    key.paste(Image.fromarray(ramp), (low_w + 6, (key.height - bar_h) // 2))
    draw = ImageDraw.Draw(key)
    y = (key.height - (text_bottom - text_top)) // 2 - text_top  # the text's ink centred like the bar
    draw.text((0, y), low, font=fnt, fill=BLACK)
    draw.text((low_w + bar_w + 12, y), high, font=fnt, fill=BLACK)
    return key


# The maps' titles by what they follow (hf_vit.attention_maps.pooled_row): [CLS]'s row, or the mean of all rows.
STRIP_TITLES = {
    "cls": ["image", "rollout into [CLS]", "last layer into [CLS]"],
    "mean": ["image", "rollout into mean", "last layer into mean"],
}


def attention_strip(image: Image.Image, rollout_map, cls_map, caption: str = "", target: int = 128,
                    pool: str = "cls") -> Image.Image:
    """[image | attention rollout | last-layer attention], both into what the head reads (`pool`: the model's,
    which the maps follow), beside the image as one block per patch (`heat_map_image`), with titles and a
    low -> high colour key under the maps."""
    base, _ = _upscale(image.convert("RGB"), target)
    panels = [base, heat_map_image(rollout_map, base.size), heat_map_image(cls_map, base.size)]
    titles = STRIP_TITLES[pool]
    f_text = font(12)
    pad, head, foot = 4, 18, 20 if caption else 0
    w, h = panels[0].size
    col = max(w, _measure(titles, f_text))  # a tall, narrow image: the titles set the width, not the panels
    key = _colour_key(2 * col + pad, f_text)  # as wide as the two maps it explains
    width = max(pad + 3 * (col + pad), _measure([caption], f_text) + 2 * pad, key.width + 2 * pad)
    strip = Image.new("RGB", (width, head + h + 4 + key.height + foot + pad), WHITE)
    draw = ImageDraw.Draw(strip)
    for k, (panel, name) in enumerate(zip(panels, titles)):
        x = pad + k * (col + pad)
        strip.paste(panel.resize((w, h)), (x + (col - w) // 2, head))
        draw.text((x, 2), name, font=f_text, fill=BLACK)
    strip.paste(key, (min(2 * pad + col, width - pad - key.width), head + h + 4))  # under the maps
    if caption:
        draw.text((pad, head + h + 4 + key.height + 3), caption, font=f_text, fill=BLACK)
    return strip
