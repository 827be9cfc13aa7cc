"""The teaching pictures show what they claim: checked on the arrays and on the pixels of the PNGs."""

import importlib.util
import json
import math
import re
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from datasets_cache import own_datasets_cache  # noqa: F401 (autouse: local loads list this module's cache only)
from stalled import signal_and_wait, start_stalled

from hf_vit import HfViTConfig, HfViTForImageClassification
from hf_vit.attention_maps import heat_map_image
from hf_vit.data import flags_in_messages
from hf_vit.teaching import (
    GRID_COLOR,
    PICTURES,
    cls_attention_maps,
    draw_pictures,
    fresh_model,
    load_image_file,
    patch_grid_cells,
    patch_number_rows,
    patch_numbers,
    pixel_values_for,
    pos_embedding_similarity,
    rollout_map,
    run_model,
    tile_boxes,
    token_norms,
    write_pictures,
)

REPO = Path(__file__).resolve().parents[1]
TINY = dict(dim=32, depth=2, heads=2, dim_head=16, mlp_dim=64)


def tiny_model(seed=0, **fields):
    torch.manual_seed(seed)
    return HfViTForImageClassification(HfViTConfig(**{**TINY, **fields})).eval()


def noise_image(height, width, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def load_png(path):
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB")).astype(int)


# ---------------------------------------------------------------------------
# (1) image -> patch tokens
# ---------------------------------------------------------------------------
def test_patch_grid_cells_tile_the_image_in_token_order():
    config = HfViTConfig(**TINY, image_size=(16, 24), patch_size=(4, 8))  # 4 x 3 grid, non-square patches
    cells = patch_grid_cells(config)
    assert len(cells) == (16 // 4) * (24 // 8) == 12
    assert [index for index, _ in cells] == list(range(1, 13))
    cover = np.zeros((16, 24), dtype=int)
    for index, (left, top, right, bottom) in cells:
        assert (right - left, bottom - top) == (8, 4)
        row, col = divmod(index - 1, 3)  # row by row
        assert (left, top) == (col * 8, row * 4)
        cover[top:bottom, left:right] += 1
    assert (cover == 1).all()  # every pixel in exactly one cell
    assert patch_grid_cells(config, scale=8)[4][1] == (8 * 8, 1 * 4 * 8, 16 * 8, 2 * 4 * 8)


def test_cell_numbers_are_the_models_token_order():
    """Token k of the model's Rearrange holds exactly the pixels of the cell numbered k."""
    model = tiny_model(image_size=(16, 24), patch_size=(4, 8))
    x = torch.randn(1, 3, 16, 24)
    tokens = model.vit.embeddings.to_patch_embedding[0](x)[0]  # (N, p1*p2*c)
    for index, (left, top, right, bottom) in patch_grid_cells(model.config):
        patch = x[0, :, top:bottom, left:right].permute(1, 2, 0).reshape(-1)  # (p1 p2 c)
        assert torch.equal(tokens[index - 1], patch)


def by_hand(x, box):
    """The pixels of `box` of the first image, in (p1 p2 c) order, cut out by hand (not by the model's Rearrange)."""
    left, top, right, bottom = box
    return x[0, :, top:bottom, left:right].permute(1, 2, 0).reshape(-1)


@pytest.mark.parametrize("channels", [3, 1])
def test_patch_numbers_are_what_the_patch_embedding_reads_and_makes(channels):
    """patch_numbers.png's numbers (goal 1): the patch's pixels in (p1 p2 c) order, which are the input of the
    model's Linear for that token (its Rearrange's output), and the token values are that Linear's output, the
    embeddings' output for the token before its position is added. By default the patch whose numbers vary most."""
    model = tiny_model(image_size=(16, 24), patch_size=(4, 8), num_channels=channels)  # a 4 x 3 grid
    torch.manual_seed(1)
    x = 0.01 * torch.randn(1, channels, 16, 24)
    x[0, :, 8:12, 8:16] = 3 * torch.randn(channels, 4, 8)  # row 2, column 1: token 2 * 3 + 1 + 1 = 8
    picked = patch_numbers(model, x)
    assert (picked["token"], picked["row"], picked["column"], picked["chosen"]) == (8, 2, 1, "most varied")
    rearranged = model.vit.embeddings.to_patch_embedding[0](x)[0]  # (N, p1*p2*c): the model's own
    linear = model.vit.embeddings.to_patch_embedding[1]
    embedded = run_model(model, x)["hidden_states"][0][0]  # (N+1, dim): [CLS] + tokens, positions added
    positions = model.vit.embeddings.pos_embedding[0].detach()
    for token in (1, 5, 8, 12):
        numbers = patch_numbers(model, x, patch=token)
        assert numbers["chosen"] == "given" and numbers["box"] == patch_grid_cells(model.config)[token - 1][1]
        assert numbers["numbers"].shape == (4 * 8 * channels,) and numbers["token_values"].shape == (32,)
        np.testing.assert_array_equal(numbers["numbers"], by_hand(x, numbers["box"]).numpy())
        np.testing.assert_array_equal(numbers["numbers"], rearranged[token - 1].detach().numpy())
        hand = linear.weight.detach() @ by_hand(x, numbers["box"]) + linear.bias.detach()  # Linear(4*8*c -> 32)
        np.testing.assert_allclose(numbers["token_values"], hand.numpy(), atol=1e-5)
        np.testing.assert_allclose(numbers["token_values"], (embedded[token] - positions[token]).numpy(), atol=1e-5)
        # The table drawn: row = pixel (p1, p2), then each channel's number with its place among the 4*8*c
        left, top, _, _ = numbers["box"]
        rows = patch_number_rows(numbers["numbers"], (4, 8), channels)
        assert len(rows) == 32
        for pixel in (0, 7, 8, 31):
            p1, p2 = divmod(pixel, 8)
            assert rows[pixel] == [f"{pixel} ({p1},{p2})"] + [
                f"{pixel * channels + c}: {float(x[0, c, top + p1, left + p2]):+.3f}" for c in range(channels)
            ]


def test_patch_numbers_png_shows_the_patch_its_numbers_and_token(tmp_path):
    """patch_numbers.png: the image with the chosen patch outlined and the patch enlarged (its own pixels), and
    pictures.json the numbers: the processor's pixel values of that patch in (p1 p2 c) order and the Linear's
    output for them. The patch asked for (patch=) is the one drawn; a patch outside the grid is refused."""
    from hf_vit.teaching import PATCH_PANEL, check_patch

    model = tiny_model()  # 32 x 32, 4 x 4 patches: an 8 x 8 grid
    pixels = np.full((32, 32, 3), 120, dtype=np.uint8)
    pixels[8:12, 8:12] = np.random.default_rng(3).integers(0, 256, (4, 4, 3))  # row 2, column 2: token 19
    image = Image.fromarray(pixels)
    out = tmp_path / "pictures"
    write_pictures(model, image, out, pictures=["patch_numbers"])
    record = json.loads((out / "pictures.json").read_text())["patch_numbers"]
    assert (record["token"], record["row"], record["column"], record["chosen"]) == (19, 2, 2, "most varied")
    x = pixel_values_for(image, model.config)
    assert record["numbers"] == by_hand(x, (8, 8, 12, 12)).tolist() and record["linear"] == [48, 32]
    linear = model.vit.embeddings.to_patch_embedding[1]
    hand = linear.weight.detach() @ by_hand(x, (8, 8, 12, 12)) + linear.bias.detach()
    np.testing.assert_allclose(record["token_values"], hand.numpy(), atol=1e-5)
    png = load_png(out / "patch_numbers.png")
    scale, cell, y0 = PATCH_PANEL // 32, PATCH_PANEL // 4, 16 + 4  # the image at 4x, each patch pixel 32 px
    whole = png[y0 : y0 + 32 * scale, 8 : 8 + 32 * scale]
    np.testing.assert_array_equal(whole[8 * scale : 12 * scale : scale, 8 * scale : 12 * scale : scale],
                                  pixels[8:12, 8:12])  # fmt: skip
    assert (whole[8 * scale - 1, 8 * scale : 12 * scale] == GRID_COLOR).all()  # the outline, just outside
    assert (whole[12 * scale, 8 * scale : 12 * scale] == GRID_COLOR).all()
    assert (whole[: 8 * scale - 2] == 120).all()  # the rows above it untouched
    x_patch = 8 + 32 * scale + 16
    enlarged = png[y0 : y0 + 4 * cell, x_patch : x_patch + 4 * cell]
    for p1 in range(4):  # each pixel a 32 px square of its colour (its number sits in the square's top left)
        for p2 in range(4):
            square = enlarged[p1 * cell + cell // 2 : (p1 + 1) * cell, p2 * cell : (p2 + 1) * cell]
            assert (square == pixels[8 + p1, 8 + p2]).all(), (p1, p2)

    write_pictures(model, image, out, pictures=["patch_numbers"], patch=3)
    record = json.loads((out / "pictures.json").read_text())["patch_numbers"]
    assert (record["token"], record["row"], record["column"], record["chosen"]) == (3, 0, 2, "given")
    assert record["numbers"] == by_hand(x, (8, 0, 12, 4)).tolist()
    enlarged = load_png(out / "patch_numbers.png")[y0 : y0 + 4 * cell, x_patch : x_patch + 4 * cell]
    # token 3's flat grey, in each pixel's square below its number
    assert (enlarged.reshape(4, cell, 4, cell, 3)[:, cell // 2 :] == 120).all()
    for patch, pictures, message in [
        (65, ["patch_numbers"], "patch=65 is no patch of this model: its image is cut into 8 x 8 = 64 patches, "
                                "tokens 1..64. Pass a number from 1 to 64."),
        (0, ["patch_numbers"], "patch=0 is no patch: pass a token number, 1 for the first patch (token 0 is [CLS], "
                               "which has no patch)."),
        (2, ["rollout"], "patch=2 chooses the patch of patch_numbers.png, which pictures leaves out. Add "
                         "patch_numbers to pictures, or leave patch out."),
    ]:
        with pytest.raises(ValueError) as err:
            write_pictures(model, image, tmp_path / "refused", pictures=pictures, patch=patch)
        assert str(err.value) == message
        with pytest.raises(ValueError):
            check_patch(model.config, patch, pictures)
        if pictures == ["patch_numbers"]:  # as a library call: never the last patch for patch=0
            with pytest.raises(ValueError, match="is no patch"):
                patch_numbers(model, x, patch)
    assert not (tmp_path / "refused").exists()


@pytest.mark.parametrize("patch_size", [8, (4, 8)])
def test_patch_numbers_png_shows_each_enlarged_pixel_beside_its_number(patch_size):
    """The enlarged patch numbers its pixels on black labels a third of a pixel high. For an 8x8 patch each pixel
    was 16 px, and label and padding covered over half of every pixel: the patch looked dark, its colours hidden.
    Now such a patch is drawn at 32 px a pixel: each pixel's number sits in its top left (the label's black
    corner) and the lower half of its square (at least) is the pixel's colour."""
    model = tiny_model(patch_size=patch_size)  # 32 x 32: a 4 x 4 (or 8 x 4) grid
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    pixels = np.random.default_rng(4).integers(40, 256, (32, 32, 3), dtype=np.uint8)  # no black pixel
    picture = draw_pictures(model, Image.fromarray(pixels), pictures=["patch_numbers"], patch=1)["patch_numbers"]
    png = np.asarray(picture.convert("RGB")).astype(int)
    cell, y0, x_patch = 32, 16 + 4, 8 + 128 + 16  # (NUMBERED_PIXEL) the image at 4x (128 px) before the patch
    enlarged = png[y0 : y0 + ph * cell, x_patch : x_patch + pw * cell]
    for p1 in range(ph):
        for p2 in range(pw):
            square = enlarged[p1 * cell : (p1 + 1) * cell, p2 * cell : (p2 + 1) * cell]
            assert (square[0, 0] == 0).all(), (p1, p2)  # its number's label
            assert (square[cell // 2 :] == pixels[p1, p2]).all(), (p1, p2)  # token 1: pixels from (0, 0)


@pytest.mark.parametrize("channels", [3, 1])
def test_patch_numbers_caption_says_where_each_pixel_s_numbers_go(channels, monkeypatch):
    """The caption gives each number's place among the patch's numbers. It said "(p1*4 + p2)*3 + c" without saying
    what c is, and "(p1*4 + p2)*1 + c" for a grey model, whose only channel leaves no c to choose. Now c is named
    (0 for R, 1 for G, 2 for B), a grey model's place is p1*4 + p2; both agree with the table's indices."""
    from hf_vit.image_processing import make_image_processor

    captions = record_captions(monkeypatch)
    model = tiny_model(num_channels=channels)
    processor = make_image_processor(model.config, [0.5] * channels, [0.25] * channels)
    draw_pictures(model, noise_image(32, 32), processor=processor, pictures=["patch_numbers"])
    place = {3: ", R, G, B within each pixel; number (p1*4 + p2)*3 + c, c = 0 for R, 1 for G, 2 for B",
             1: "; number p1*4 + p2 (one channel)"}[channels]
    assert f"row by row{place}. They are" in captions[0][1]
    row = patch_number_rows(np.arange(16 * channels), 4, channels)[6]  # pixel 6 = (1, 2): 1*4 + 2
    assert row[1:] == [f"{6 * channels + c}: +{6 * channels + c}.000" for c in range(channels)]


def test_patch_numbers_says_when_no_patch_varies_most(tmp_path, monkeypatch):
    """On a flat image every patch has the same numbers: patch_numbers.png showed token 1 and said it was "the patch
    whose numbers vary most". Now it says all patches are equal (pictures.json: chosen "all equal", ties 64); where
    several patches tie for the most spread (a repeated pattern) it says which of them it shows; a unique one is
    "the patch whose numbers vary most" as before."""
    captions = record_captions(monkeypatch)
    model = tiny_model()  # 32 x 32, 4 x 4 patches: an 8 x 8 grid
    noisy = np.random.default_rng(5).integers(0, 256, (4, 4, 3))
    flat = np.full((32, 32, 3), 90, dtype=np.uint8)
    twice = flat.copy()
    twice[8:12, 8:12] = twice[16:20, 20:24] = noisy  # tokens 19 and 38, alike
    once = twice.copy()
    once[16:20, 20:24] = 90
    for pixels, token, chosen, ties, why in [
        (flat, 1, "all equal", 64, "all 64 patches have the same numbers, so none varies most: the first"),
        (twice, 19, "most varied", 2, "the first of the 2 patches whose numbers vary most, equally"),
        (once, 19, "most varied", 1, "the patch whose numbers vary most"),
    ]:
        captions.clear()
        out = tmp_path / chosen.replace(" ", "_") / str(ties)
        write_pictures(model, Image.fromarray(pixels), out, pictures=["patch_numbers"])
        record = json.loads((out / "pictures.json").read_text())["patch_numbers"]
        assert (record["token"], record["chosen"], record.get("ties")) == (token, chosen, ties)
        row, column = divmod(token - 1, 8)
        assert captions[0][0] == f"token {token}: row {row}, column {column} of the 8 x 8 grid, counting from 0 ({why})."
    write_pictures(model, Image.fromarray(flat), out, pictures=["patch_numbers"], patch=5)  # asked for: no ties
    record = json.loads((out / "pictures.json").read_text())["patch_numbers"]
    assert (record["token"], record["chosen"], "ties" in record) == (5, "given", False)
    assert captions[-1][0].endswith("(the patch asked for).")


def test_patch_grid_png_has_grid_lines_at_the_cell_edges(tmp_path):
    config_fields = dict(image_size=(16, 24), patch_size=(4, 8))
    model = tiny_model(**config_fields)
    image = Image.new("RGB", (24, 16), (40, 80, 120))
    scale = 4
    write_pictures(model, image, tmp_path, pictures=["patch_grid"], scale=scale)
    png = load_png(tmp_path / "patch_grid.png")
    height, width = 16 * scale, 24 * scale
    assert png.shape[1] == max(width, 256) and png.shape[0] > height  # caption below the picture
    region = png[:height, :width]
    is_line = (region == GRID_COLOR).all(axis=-1)  # (H, W)
    line_cols = sorted(np.flatnonzero(is_line.all(axis=0)))
    line_rows = sorted(np.flatnonzero(is_line.all(axis=1)))
    assert line_cols == [0, 32, 64, width - 1]  # left edge of each of the 3 cells + right border
    assert line_rows == [0, 16, 32, 48, height - 1]  # top edge of each of the 4 cells + bottom border
    # Inside the cells: the image colour, and a white-on-black number at each cell's top left.
    labels = {}
    for index, (left, top, right, bottom) in patch_grid_cells(model.config, scale):
        assert (region[bottom - 3, right - 3] == (40, 80, 120)).all()
        label = region[top + 1 : top + 10, left + 1 : left + 12]
        assert (label == 255).all(axis=-1).any() and (label == 0).all(axis=-1).any(), f"cell {index} unlabelled"
        labels[index] = label.tolist()
    # Each cell shows its own token number: the 12 labels all differ, and cell k's label is the one cell k gets in a
    # grid of another shape (6 x 2 cells of the same size), where it sits elsewhere.
    assert len({str(label) for label in labels.values()}) == 12
    other = tiny_model(image_size=(24, 16), patch_size=(4, 8))
    write_pictures(other, Image.new("RGB", (16, 24), (40, 80, 120)), tmp_path / "other", pictures=["patch_grid"],
                   scale=scale)  # fmt: skip
    png = load_png(tmp_path / "other" / "patch_grid.png")
    for index, (left, top, _, _) in patch_grid_cells(other.config, scale)[:12]:
        assert png[top + 1 : top + 10, left + 1 : left + 12].tolist() == labels[index], f"cell {index}"


def test_patch_grid_numbers_are_never_cut_by_the_next_cell(tmp_path, monkeypatch):
    """2x2 patches of a 32-px image (256 tokens) at the default 8x made 16-px cells, too narrow for a 3-digit number:
    the next cell's grid line, drawn last, cut its last digit ("119" read "118"). Now the default scale is raised
    until every number's label ends before the next line (10x here; 4x4 patches stay at 8x), pictures.json says
    the scale; a scale given that is too small draws no numbers and its caption names the scale that does."""
    captions = record_captions(monkeypatch)
    model = tiny_model(patch_size=2)  # a 16 x 16 grid of 2x2 patches
    out = tmp_path / "p2"
    write_pictures(model, noise_image(32, 32), out, pictures=["patch_grid"])
    png = load_png(out / "patch_grid.png")
    scale = png.shape[1] // 32  # the picture's own scale: the image fills its width
    for index, (left, top, right, bottom) in patch_grid_cells(model.config, scale):
        line = min(right, 32 * scale - 1)  # the next cell's left line, or the right border
        assert (png[top + 1 : bottom, line] == GRID_COLOR).all(), index
        black = (png[top + 1, left + 1 : line] == 0).all(axis=-1)  # the label's box, from the cell's top left
        box = int(np.argmin(black)) if not black.all() else len(black)
        assert box >= 5 and left + 1 + box < line, index  # it ends inside the cell, not cut off by the line
    assert json.loads((out / "pictures.json").read_text())["patch_grid_scale"] == scale == 10
    write_pictures(tiny_model(), noise_image(32, 32), tmp_path / "p4", pictures=["patch_grid"])
    assert json.loads((tmp_path / "p4" / "pictures.json").read_text())["patch_grid_scale"] == 8
    captions.clear()
    picture = draw_pictures(model, noise_image(32, 32), pictures=["patch_grid"], scale=8)["patch_grid"]
    assert captions[0][-1] == ("the token numbers are left out: they do not fit 16x16-px cells at scale=8; scale=10 "
                               "draws them")
    grid = np.asarray(picture.convert("RGB"))[: 32 * 8, : 32 * 8]
    assert not (grid == 0).all(axis=-1).any() and not (grid == 255).all(axis=-1).any()  # no label, black or white


def test_draw_patch_grid_on_its_own_draws_what_draw_pictures_draws():
    """draw_patch_grid (public) kept the old default scale=8 when draw_pictures' became None (raised until the
    numbers fit): on its own it drew 2x2 patches without numbers, scale=None (draw_pictures' own default) failed
    with a TypeError, and scale=1000 built a 32,000-px picture that draw_pictures refuses. Now it takes the same
    default and limit."""
    from hf_vit.teaching import draw_patch_grid

    model, image = tiny_model(patch_size=2), noise_image(32, 32)
    drawn = np.asarray(draw_pictures(model, image, pictures=["patch_grid"])["patch_grid"])
    for alone in (draw_patch_grid(image, model.config), draw_patch_grid(image, model.config, scale=None)):
        assert np.array_equal(np.asarray(alone), drawn)  # numbered at 10x, as draw_pictures draws it
    with pytest.raises(ValueError, match=r"^scale=1000 makes the patch grid picture 32000x32000 px; at most 4096"):
        draw_patch_grid(image, model.config, scale=1000)


# ---------------------------------------------------------------------------
# (2) positional embeddings
# ---------------------------------------------------------------------------
def expected_color(v):
    """-1 blue, 0 white, +1 red, linear in between (written out independently of the module)."""
    if v >= 0:
        return (255, round(255 * (1 - v)), round(255 * (1 - v)))
    return (round(255 * (1 + v)), round(255 * (1 + v)), 255)


def set_positions(model, patch_vectors, cls_vector):
    with torch.no_grad():
        pos = model.vit.embeddings.pos_embedding
        pos.zero_()
        pos[0, 0] = cls_vector
        pos[0, 1:, : patch_vectors.shape[1]] = patch_vectors


@pytest.mark.parametrize("kind", ["one_hot", "angles"])
def test_pos_similarity_of_known_embeddings(tmp_path, kind):
    model = tiny_model(image_size=16, patch_size=4)  # 4 x 4 grid, N = 16
    n = 16
    if kind == "one_hot":
        vectors = torch.eye(n)
        expected = np.eye(n)
    else:
        # Position i points at angle i*pi/8 (length i+1: cosine ignores length): cos = cos(angle difference).
        angles = torch.arange(n) * math.pi / 8
        vectors = torch.stack([angles.cos(), angles.sin()], dim=1) * (torch.arange(n)[:, None] + 1)
        expected = np.cos(angles[:, None] - angles[None, :]).numpy()
    set_positions(model, vectors, cls_vector=torch.full((32,), 7.0))  # [CLS] must not enter the maps
    sim = pos_embedding_similarity(model)
    assert sim.shape == (n, n)
    np.testing.assert_allclose(sim, expected, atol=1e-5)

    write_pictures(model, noise_image(16, 16), tmp_path, pictures=["pos_similarity"])
    png = load_png(tmp_path / "pos_similarity.png")
    cell, gap = 32 // 4, 2  # tiles of 4 x 4 cells, 8 px each, 2 px gaps
    tile_size = 4 * cell
    assert png.shape[1] == max(gap + 4 * (tile_size + gap), 256)
    for i in (0, 5, 14):  # a few query positions
        r, c = divmod(i, 4)
        left, top = gap + c * (tile_size + gap), gap + r * (tile_size + gap)
        for j in range(n):
            rr, cc = divmod(j, 4)
            block = png[top + rr * cell : top + (rr + 1) * cell, left + cc * cell : left + (cc + 1) * cell]
            want = expected_color(float(expected[i, j]))
            assert (np.abs(block - want) <= 1).all(), (i, j, block[0, 0], want)
    # The gaps between tiles are grey, so the tiles are where the test looked.
    assert (png[gap + tile_size, gap : gap + tile_size] == 128).all()


# ---------------------------------------------------------------------------
# (3) attention and the residual stream
# ---------------------------------------------------------------------------
def test_attention_rows_sum_to_one_and_cls_maps(tmp_path):
    model = tiny_model(image_size=16, patch_size=4)  # 2 layers, 2 heads, 16 patches
    image = noise_image(16, 16, seed=1)
    from hf_vit.image_processing import make_image_processor

    pixels = make_image_processor(model.config)(images=image, return_tensors="pt")["pixel_values"]
    attentions = run_model(model, pixels)["attentions"]
    assert len(attentions) == 2
    for attn in attentions:
        assert attn.shape == (1, 2, 17, 17)
        torch.testing.assert_close(attn.sum(dim=-1), torch.ones(1, 2, 17), atol=1e-5, rtol=0)
    maps = cls_attention_maps(attentions, (4, 4))
    assert maps.shape == (2, 2, 4, 4)
    for layer in range(2):
        for head in range(2):
            np.testing.assert_array_equal(maps[layer, head], attentions[layer][0, head, 0, 1:].reshape(4, 4).numpy())

    # The PNG: after the input column, tile (layer, head) is exactly that map; the last column is the heads' mean.
    write_pictures(model, image, tmp_path, pictures=["cls_attention"])
    png = load_png(tmp_path / "cls_attention.png")
    tile, left, top, gap = 16 * 3, 28, 16, 2
    shown = np.asarray(image.resize((tile, tile), Image.NEAREST))
    assert (png[top + gap : top + gap + tile, left + gap : left + gap + tile] == shown).all()  # the input, first
    for layer, column, heat in [(0, 1, maps[0, 0]), (1, 2, maps[1, 1]), (1, 3, maps[1].mean(axis=0))]:
        x0, y0 = left + gap + column * (tile + gap), top + gap + layer * (tile + gap)
        want = np.asarray(heat_map_image(heat, (tile, tile))).astype(int)
        assert np.abs(png[y0 : y0 + tile, x0 : x0 + tile] - want).max() <= 1


def test_the_input_follows_the_models_device_and_dtype_and_results_come_back_as_float32_on_the_cpu(tmp_path):
    # Before, the CPU float32 input went to the model as it was: a model on a GPU failed ("Expected all tensors
    # to be on the same device"). This machine has one device, so the test checks the same move on the dtype:
    # the model sees its own dtype, and the maps come back on the CPU in float32 for NumPy.
    model = tiny_model(image_size=16, patch_size=4)
    image = noise_image(16, 16, seed=1)
    from hf_vit.image_processing import make_image_processor

    pixels = make_image_processor(model.config)(images=image, return_tensors="pt")["pixel_values"]
    full = run_model(model, pixels)
    seen = []
    model.to(torch.bfloat16).register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["pixel_values"]),
                                                       with_kwargs=True)  # fmt: skip
    half = run_model(model, pixels)
    assert seen[0].dtype == torch.bfloat16 and seen[0].device == next(model.parameters()).device
    for a, b in zip(half["attentions"], full["attentions"]):
        assert a.dtype == torch.float32 and a.device.type == "cpu"
        torch.testing.assert_close(a, b, atol=0.03, rtol=0)
    assert half["probs"].dtype == torch.float32
    written = write_pictures(model, image, tmp_path, pictures=["cls_attention", "feature_norms", "patch_numbers"])
    assert all(Path(path).stat().st_size > 0 for path in written.values())


def test_rollout_matches_a_hand_computation_on_two_layers(tmp_path):
    model = tiny_model(seed=3, image_size=16, patch_size=4)
    # Sharper attention than at init, so layers differ and the product matters.
    with torch.no_grad():
        for layer in model.vit.transformer.layers:
            layer.attn.to_qkv.weight.mul_(25)
    image = noise_image(16, 16, seed=2)
    from hf_vit.image_processing import make_image_processor

    pixels = make_image_processor(model.config)(images=image, return_tensors="pt")["pixel_values"]
    attentions = run_model(model, pixels)["attentions"]

    # By hand: heads averaged, (A + I) / 2 with rows renormalised, layer 2 @ layer 1, [CLS]'s row over patches.
    a1, a2 = (a[0].double().mean(dim=0).numpy() for a in attentions)
    eye = np.eye(17)
    b1, b2 = (a1 + eye) / 2, (a2 + eye) / 2
    b1, b2 = b1 / b1.sum(1, keepdims=True), b2 / b2.sum(1, keepdims=True)
    hand = (b2 @ b1)[0, 1:].reshape(4, 4)
    got = rollout_map(attentions, (4, 4))
    np.testing.assert_allclose(got, hand, atol=1e-6)
    assert abs(hand.sum() + (b2 @ b1)[0, 0] - 1) < 1e-9  # a flow: [CLS]'s row still sums to 1
    one_layer = (b2[0, 1:]).reshape(4, 4)
    assert np.abs(hand - one_layer).max() > 1e-3  # the first layer changed the result

    write_pictures(model, image, tmp_path, pictures=["rollout"])
    png = load_png(tmp_path / "rollout.png")
    tile, top, gap = 16 * 4, 16, 2
    x0 = gap + 1 * (tile + gap)  # second panel: no row labels, so no left margin
    want = np.asarray(heat_map_image(hand, (tile, tile))).astype(int)
    assert np.abs(png[top + gap : top + gap + tile, x0 : x0 + tile] - want).max() <= 1
    first = np.asarray(image.resize((64, 64), Image.NEAREST)).astype(int)
    assert (png[top + gap : top + gap + tile, gap : gap + tile] == first).all()


def test_token_norms_follow_the_residual_stream():
    model = tiny_model(image_size=16, patch_size=4)
    outputs = model(pixel_values=torch.randn(1, 3, 16, 16), output_hidden_states=True)
    norms = token_norms(outputs.hidden_states)
    assert norms.shape == (3, 17)  # embeddings + 2 blocks, [CLS] + 16 patches
    for stage, hidden in enumerate(outputs.hidden_states):
        want = torch.linalg.vector_norm(hidden[0], dim=-1).detach().numpy()
        np.testing.assert_allclose(norms[stage], want, rtol=1e-6)


def test_the_similarity_and_norm_captions_say_what_every_tile_and_cell_is(monkeypatch):
    """pos_similarity.png said "the red cell is the patch itself", but a trained model's tiles hold a red blob of
    neighbours (the README's point): now it says which cell is the patch and what other red cells mean.
    feature_norms.png said "after each block" over a first tile that is the embeddings': now it names both."""
    from hf_vit import teaching

    captions = []
    footer = teaching._with_footer
    monkeypatch.setattr(teaching, "_with_footer", lambda image, lines: captions.append(" ".join(lines)) or footer(image, lines))
    grid = torch.stack(torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij"), -1).reshape(16, 2)
    similarity = torch.exp(-torch.cdist(grid, grid)).numpy()  # trained-like: neighbours alike, so several red cells
    teaching.draw_pos_similarity(similarity, (4, 4))
    teaching.draw_feature_norms(np.ones((3, 17)), (4, 4))
    similarity_caption, norms_caption = captions
    assert "the red cell is" not in similarity_caption
    assert "cell (r,c) is the patch itself (always +1); other red cells are positions embedded alike" in similarity_caption
    assert "after the embeddings (emb) and after each block (L1..L2)" in norms_caption


# ---------------------------------------------------------------------------
# The script, end to end
# ---------------------------------------------------------------------------
def test_pictures_and_saved_mistakes_show_transparent_pixels_on_white_as_the_model_saw_them(tmp_path):
    """The evaluation scores transparent pixels laid on white (hf_vit.data.as_mode); visualize.py's image, an
    image file and a saved mistake must show that same picture, not the colour hidden under the transparency."""
    import datasets

    from hf_vit.analysis import _as_rgb
    from hf_vit.teaching import load_dataset_image, load_image_file

    rgba = np.zeros((32, 32, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:, :16, 3] = 255  # left half opaque red, right half transparent over red
    image = Image.fromarray(rgba, "RGBA")
    image.save(tmp_path / "a.png")
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    (tmp_path / "ds").mkdir()
    datasets.Dataset.from_dict({"img": [image], "label": [0]}, features=features).to_parquet(
        str(tmp_path / "ds" / "test-00000-of-00001.parquet")
    )
    assert datasets.load_dataset(str(tmp_path / "ds"), split="test")[0]["img"].mode == "RGBA"
    shown = [load_image_file(tmp_path / "a.png"), _as_rgb(image), load_dataset_image(str(tmp_path / "ds"), 0)[0]]
    for picture in shown:
        pixels = np.asarray(picture)
        assert picture.mode == "RGB" and (pixels[:, 16:] == 255).all() and (pixels[:, :16] == [200, 0, 0]).all()


def test_a_dataset_image_is_checked_by_the_label_column_given_as_the_evaluation_checks_it(tmp_path):
    """visualize.py --label_column: the check of a column holding class names in one split and ids in another (the
    evaluation's, by its --label_column) looked at label/labels instead, so it refused a dataset over a column the
    picture does not use, and let the given one through: ids read as the names '1', '0', shown as the class."""
    import datasets

    from hf_vit.analysis import load_split
    from hf_vit.data import DatasetError
    from hf_vit.teaching import load_dataset_image

    def write(folder, mixed: str):
        """Two splits; `mixed` holds names in train and ids in test, the other column ids in both."""
        (folder / "data").mkdir(parents=True)
        for split, names in (("train", ["cat", "dog"]), ("test", [1, 0])):
            other = "fine" if mixed == "label" else "label"
            columns = {"img": [Image.new("RGB", (32, 32))] * 2, mixed: names, other: [0, 1]}
            datasets.Dataset.from_dict(columns).to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))
        return str(folder)

    for mixed in ("label", "fine"):
        ds = write(tmp_path / mixed, mixed)
        message = rf"the column '{mixed}' holds text in the 'train' split .* but numbers in the 'test' split"
        with pytest.raises(DatasetError, match=message):  # the evaluation, by its --label_column
            load_split(ds, "test", label_column=mixed)
        with pytest.raises(DatasetError, match=message):  # the picture of that column, likewise
            load_dataset_image(ds, 0, label_column=mixed)
    # the mixed 'label' is no concern of a picture of 'fine': drawn, as the evaluation scores it
    assert len(load_split(str(tmp_path / "label"), "test", label_column="fine")) == 2
    assert load_dataset_image(str(tmp_path / "label"), 0, label_column="fine")[1] is None  # ids without names


def test_a_dataset_image_is_found_by_the_evaluations_column_rule(tmp_path):
    """visualize.py draws the image and class that the evaluation scored under that index: columns named
    img/image and label/labels (or the names given), not the first image and class columns of the table."""
    import datasets

    from hf_vit.teaching import load_dataset_image

    red, blue = (Image.new("RGB", (32, 32), colour) for colour in ((255, 0, 0), (0, 0, 255)))
    features = datasets.Features({
        "thumbnail": datasets.Image(), "coarse": datasets.ClassLabel(names=["animal", "vehicle"]),
        "img": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "truck"]), "plain": datasets.Value("int64"),
    })  # fmt: skip
    (tmp_path / "ds").mkdir()
    datasets.Dataset.from_dict(
        {"thumbnail": [blue], "coarse": [0], "img": [red], "label": [1], "plain": [1]}, features=features
    ).to_parquet(str(tmp_path / "ds" / "test-00000-of-00001.parquet"))
    ds = str(tmp_path / "ds")

    image, label = load_dataset_image(ds, 0)
    assert (np.asarray(image)[0, 0].tolist(), label) == ([255, 0, 0], "truck")
    image, label = load_dataset_image(ds, 0, image_column="thumbnail", label_column="coarse")
    assert (np.asarray(image)[0, 0].tolist(), label) == ([0, 0, 255], "animal")
    assert load_dataset_image(ds, 0, label_column="plain")[1] is None  # integers without names: no class shown
    # ... unless the model names them, as the evaluation does
    assert load_dataset_image(ds, 0, label_column="plain", id2label={0: "LABEL_0", 1: "LABEL_1"})[1] == "LABEL_1"
    with pytest.raises(ValueError, match=r"^the column 'coarse' of .* holds ClassLabel values, not images. Name"):
        load_dataset_image(ds, 0, image_column="coarse")
    with pytest.raises(ValueError, match=r"^no image column 'picture' in the dataset; its columns are \["):
        load_dataset_image(ds, 0, image_column="picture")
    # called from Python, the messages name its arguments; visualize.py names its flags (before: flags always)
    with pytest.raises(ValueError, match=r"^index=5 is out of range: split 'test' of .* has 1 images \(0\.\.0\)\.$"):
        load_dataset_image(ds, 5)
    with pytest.raises(ValueError, match=r"not images\. Name the image column with image_column\.$"):
        load_dataset_image(ds, 0, image_column="coarse")
    with flags_in_messages(), pytest.raises(ValueError, match=r"^--index 5 is out of range"):
        load_dataset_image(ds, 5)


def test_visualize_takes_an_empty_split_for_no_split_not_the_test_split(tmp_path):
    """visualize.py --split "" (an empty shell variable) drew the test split's image, as if --split were left out;
    evaluate_model.py refuses it. Now the dataset's own check names it, and nothing is written."""
    import datasets

    (tmp_path / "ds").mkdir()
    datasets.Dataset.from_dict({"img": [noise_image(32, 32)], "label": [1]}).to_parquet(
        str(tmp_path / "ds" / "test-00000-of-00001.parquet"))
    with pytest.raises(SystemExit) as exc:
        load_script().main(["--preset", "tiny", "--dataset", str(tmp_path / "ds"), "--index", "0", "--split", "",
                            "--output_dir", str(tmp_path / "out")])  # fmt: skip
    assert "has no split ''; its splits are ['test']. Choose one with --split." in str(exc.value.code)
    assert not (tmp_path / "out").exists()


def test_a_plain_kill_of_visualize_leaves_no_lock_file_and_no_summary(tmp_path):
    """`kill` (SIGTERM) of a real visualize.py while it writes its set: status 143, no pictures.json (the set is not
    whole) and no .hf_vit.lock left (before: Python's default ended it there, the lock file stayed in the folder)."""
    image_path = tmp_path / "input.png"
    noise_image(32, 32).save(image_path)
    out = tmp_path / "pictures"
    proc = start_stalled(tmp_path, [sys.executable, str(REPO / "scripts/visualize.py"), "--preset", "tiny", "--depth",
                                    "1", "--image", str(image_path), "--output_dir", str(out), "--scale", "2"],
                         "hf_vit.teaching.replace_text", REPO)  # fmt: skip
    output = signal_and_wait(proc, signal.SIGTERM)
    assert proc.returncode == 143, output[-3000:]
    assert re.findall(r"visualize\.py: [^\n]*", output) == [  # one line, as train.py's (before: nothing said)
        f"visualize.py: stopped by SIGTERM (kill); {out} holds no complete set of pictures (no pictures.json: any "
        "files there are not a whole one). Rerun the same command."
    ]
    assert not (out / "pictures.json").exists()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_visualize_script_on_a_fresh_model_and_an_image_file(tmp_path, monkeypatch):
    from test_train import run_as_main

    image_path = tmp_path / "input.png"
    noise_image(30, 40).save(image_path)  # not the model's size: the script resizes
    out = tmp_path / "pictures"
    cmd = [
        REPO / "scripts/visualize.py", "--preset", "tiny", "--depth", "2", "--heads", "2",
        "--image", image_path, "--output_dir", out, "--scale", "8",
    ]
    run_as_main(cmd, monkeypatch)  # the real script as __main__, in this process (a fresh one cost a start of torch)
    summary = json.loads((out / "pictures.json").read_text())
    assert summary["grid_size"] == [8, 8] and summary["num_patches"] == 64 and summary["depth"] == 2
    sizes = {}
    for name in ("patch_grid", "patch_numbers", "pos_similarity", "cls_attention", "rollout", "feature_norms",
                 "shuffled"):
        with Image.open(out / f"{name}.png") as img:
            img.load()
            assert img.format == "PNG"
            sizes[name] = img.size
    # Widths from the layouts (32 px image, 8 x 8 grid); heights add a wrapped caption under the content.
    assert sizes["patch_grid"][0] == 32 * 8 and sizes["patch_grid"][1] > 32 * 8
    assert sizes["pos_similarity"][0] == 2 + 8 * (8 * 4 + 2) and sizes["pos_similarity"][1] > 2 + 8 * 34
    # cls_attention: 28 px row labels + (input + 2 heads + mean) tiles of 96 px; 2 layer rows under a 16 px header.
    assert sizes["cls_attention"][0] == 28 + 2 + 4 * (96 + 2) and sizes["cls_attention"][1] > 16 + 2 + 2 * 98
    assert sizes["rollout"][0] == 2 + 3 * (128 + 2) and sizes["rollout"][1] > 16 + 2 + 130
    # feature_norms: 3 stages (embeddings + 2 blocks) of 64 px tiles = 200 px, widened to the 256 px minimum.
    assert sizes["feature_norms"][0] == 256 and sizes["feature_norms"][1] > 16 + 2 + 66
    # shuffled: the input and its shuffled patches, 128 px each (4x).
    assert sizes["shuffled"][0] == 2 + 2 * (128 + 2) and sizes["shuffled"][1] > 16 + 2 + 130
    # A picture drawn from the run: the patch grid's right border line at x = 32*8 - 1.
    grid = load_png(out / "patch_grid.png")
    assert (grid[: 32 * 8, 32 * 8 - 1] == GRID_COLOR).all()
    check_shuffled_picture(out, image_path, fresh_model("tiny", depth=2, heads=2))


def check_shuffled_picture(out, image_path, model):
    """Goal 2 seen: shuffled.png's second panel is the input's 4 x 4 patches moved by the recorded permutation;
    pictures.json's numbers under it are the model's own answers on the shuffled pixels with the positions (so
    they differ from the input's), and with the positions zeroed the same for both orders, to 1e-6. Drawing it
    leaves the model's positions as they were."""
    from test_maths import shuffle_blocks_by_hand

    numbers = json.loads((out / "pictures.json").read_text())["shuffled"]
    perm = numbers["permutation"]
    assert numbers["permutation_seed"] == 0 and sorted(perm) == list(range(64)) and perm != list(range(64))
    picture = load_png(out / "shuffled.png")
    (left, top, right, bottom), (left2, _, right2, _) = tile_boxes(1, 2, 128, 128, 0, 16).values()
    shown = load_image_file(image_path).resize((32, 32), Image.BILINEAR).resize((128, 128), Image.NEAREST)
    np.testing.assert_array_equal(picture[top:bottom, left:right], np.asarray(shown))  # the input, 4x
    hand = shuffle_blocks_by_hand(picture[None, top:bottom, left:right].transpose(0, 3, 1, 2), perm, (16, 16))
    np.testing.assert_array_equal(picture[top:bottom, left2:right2], hand[0].transpose(1, 2, 0))
    pixels = pixel_values_for(load_image_file(image_path), model.config)
    shuffled = torch.from_numpy(shuffle_blocks_by_hand(pixels.numpy(), perm, (4, 4)))
    with torch.no_grad():
        for name, x in (("input", pixels), ("shuffled", shuffled)):
            probs = model(pixel_values=x).logits.softmax(-1)[0]
            answer = numbers["with_positions"][name]
            assert answer["predicted"] == model.config.id2label[int(probs.argmax())]
            assert answer["probability"] == pytest.approx(float(probs.max()), abs=1e-6)
    with_positions, without = numbers["with_positions"], numbers["without_positions"]
    assert abs(with_positions["input"]["probability"] - with_positions["shuffled"]["probability"]) > 1e-5
    assert without["input"]["predicted"] == without["shuffled"]["predicted"]
    assert without["input"]["probability"] == pytest.approx(without["shuffled"]["probability"], abs=1e-6)
    assert abs(without["input"]["probability"] - with_positions["input"]["probability"]) > 1e-4  # really zeroed
    before = model.vit.embeddings.pos_embedding.detach().clone()
    draw_pictures(model, load_image_file(image_path), pictures=["shuffled", "rollout"])
    assert torch.equal(model.vit.embeddings.pos_embedding, before) and before.abs().sum() > 0


def test_visualize_launched_as_several_processes_is_refused(tmp_path):
    """`torchrun --nproc_per_node 2 scripts/visualize.py` drew every picture twice into one --output_dir, each
    process printing the same paths. Now each says to run it as one process; nothing is written."""
    image_path = tmp_path / "input.png"
    noise_image(32, 32).save(image_path)
    out = tmp_path / "pictures"
    from test_eval import launch_two_processes

    proc = launch_two_processes("visualize.py", "--preset", "tiny", "--image", image_path, "--output_dir", out)
    assert proc.returncode != 0
    assert ("error: visualize.py runs as one process, but it was launched as 2 (WORLD_SIZE=2, set by torchrun or "
            "accelerate launch): each would draw the same pictures into the same --output_dir. Run it with "
            "`python scripts/visualize.py ...`.") in proc.stderr, proc.stderr[-3000:]
    assert not out.exists() and "patch_grid.png" not in proc.stdout


def load_script():
    spec = importlib.util.spec_from_file_location("visualize_script", REPO / "scripts/visualize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def visualize_error(folder, tmp_path):
    """visualize.py --model `folder` on a 16x16 noise image into tmp_path/pictures; it must exit with an error.
    Returns the pytest ExceptionInfo of its SystemExit."""
    noise_image(16, 16).save(tmp_path / "in.png")
    with pytest.raises(SystemExit) as exc:
        load_script().main(["--model", str(folder), "--image", str(tmp_path / "in.png"), "--output_dir",
                            str(tmp_path / "pictures")])  # fmt: skip
    return exc


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "tiny", "--image", "missing.png"], "does not exist"),
        (["--preset", "tiny", "--image", "not_an_image.png"], "not an image"),
        (["--dataset", "somewhere"], "--dataset needs --index"),
        (["--image", "a.png", "--index", "3"], "--index only applies with --dataset"),
        # the split of an --image file: ignored without a word before, while --image_column was refused
        (["--preset", "tiny", "--image", "a.png", "--split", "train"], "error: --split only applies with --dataset."),
        (["--image", "a.png", "--split", "train", "--label_column", "y"], "--split --label_column only apply with"),
        (["--model", "runs/x", "--patch_size", "8", "--image", "a.png"], "--patch_size only applies to a fresh model"),
        # --seed initialises a fresh model only: with --model it was ignored without a word
        (["--model", "runs/x", "--seed", "3", "--image", "a.png"],
         "--model loads a trained model; --seed only applies to a fresh model: leave it out, or leave out --model."),
        (["--model", "runs/x", "--preset", "tiny", "--dim", "8", "--image", "a.png"],
         "--preset --dim only apply to a fresh model: leave them out"),
        (["--model", ".", "--image", "a.png"], "has no config.json"),
        (["--model", "./runs/nothere", "--image", "a.png"], "error: no model folder at "),
        (["--preset", "tiny", "--patch_size", "5", "--image", "a.png"], "does not divide"),
        (["--preset", "tiny", "--image", "a.png", "--pictures", "patch_grid,nope"], "Unknown picture"),
        (["--preset", "tiny", "--image", "a.png", "--pictures", ","], "--pictures names no picture"),
        (["--preset", "tiny", "--image", "a.png", "--patch", "65"], "error: --patch 65 is no patch of this model: its "
         "image is cut into 8 x 8 = 64 patches, tokens 1..64"),
        (["--model", "./nothere", "--image", "a.png", "--patch", "0"], "error: --patch 0 is no patch: pass a token "
         "number"),  # before a model is looked for
        (["--model", "./nothere", "--image", "a.png", "--pictures", "rollout", "--patch", "2"], "error: --patch 2 "
         "chooses the patch of patch_numbers.png, which --pictures leaves out"),
        # --scale sizes patch_grid.png only: without it in --pictures, it was ignored without a word
        (["--model", "./nothere", "--image", "a.png", "--pictures", "rollout,shuffled", "--scale", "4"],
         "error: --scale 4 sizes patch_grid.png, which --pictures leaves out. Add patch_grid to --pictures, or leave "
         "--scale out."),
    ],
)
def test_visualize_script_explains_bad_input(tmp_path, monkeypatch, capsys, args, message):
    """In-process (main(argv)), so each case costs no interpreter start."""
    monkeypatch.chdir(tmp_path)
    noise_image(8, 8).save(tmp_path / "a.png")
    (tmp_path / "not_an_image.png").write_text("plain text")
    with pytest.raises(SystemExit) as exc:
        load_script().main([*args, "--output_dir", str(tmp_path / "out")])
    assert exc.value.code != 0
    assert message in f"{exc.value.code} {capsys.readouterr().err}"


def test_visualize_refuses_an_unknown_picture_before_loading_anything(tmp_path, monkeypatch, capsys):
    """An unknown name in --pictures was refused only once the model and the dataset had loaded (seconds for a
    real model and CIFAR-10), and a mistyped --model or --dataset was named first. Now it is refused before
    anything loads, with the same message; nothing is written."""
    monkeypatch.chdir(tmp_path)
    unknown = ("error: Unknown picture(s) ['nope']. Choose from: patch_grid, patch_numbers, pos_similarity, "
               "cls_attention, rollout, feature_norms, shuffled.")
    for source in (["--model", "./nothere"], ["--preset", "tiny"]):  # a missing model: not even looked for
        for image in (["--image", "missing.png"], ["--dataset", "./no-data", "--index", "0"]):
            with pytest.raises(SystemExit) as exc:
                load_script().main([*source, *image, "--pictures", "rollout,nope", "--output_dir", "out"])
            assert exc.value.code == unknown, (source, image)
    assert not (tmp_path / "out").exists()


def test_visualize_script_refuses_a_file_as_output_dir_before_loading(tmp_path, capsys):
    noise_image(8, 8).save(tmp_path / "a.png")
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(SystemExit) as exc:  # the model does not exist either: the output folder is checked first
        load_script().main(["--model", "./nothere", "--image", str(tmp_path / "a.png"), "--output_dir", str(tmp_path / "taken")])
    assert exc.value.code == f"error: --output_dir '{tmp_path / 'taken'}' is a file, not a folder. Pass a folder for the pictures."


def test_teaching_library_messages_name_its_arguments_and_visualize_its_flags(tmp_path, monkeypatch):
    """hf_vit.teaching called from Python named visualize.py's flags (`--output_dir '...' is a file`, `(from --model
    ...)`, `pass --scale 256`); now it names its arguments (output_dir, path, model_dir, scale), and visualize.py,
    within flags_in_messages, its flags (--image for path, --model for model_dir)."""
    from hf_vit.teaching import check_output_dir, load_image_file, load_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").write_text("a file")
    (tmp_path / "adir").mkdir()
    cases = [  # (call, the library's words, the script's words)
        (lambda: check_output_dir("taken"), "output_dir='taken' is a file, not a folder.",
         "--output_dir 'taken' is a file, not a folder."),
        (lambda: load_image_file("adir"), "path='adir' is a folder, not an image file. Pass one PNG/JPEG file with "
         "path.", "--image 'adir' is a folder, not an image file. Pass one PNG/JPEG file with --image."),
        (lambda: load_image_file("none.png"), "Pass an existing PNG/JPEG with path.",
         "Pass an existing PNG/JPEG with --image."),
        (lambda: load_model("./nothere"), "(from model_dir='./nothere')", "(from --model './nothere')"),
        (lambda: write_pictures(tiny_model(), noise_image(32, 32), "o", pictures=["patch_grid"], scale=1000),
         "scale=1000 makes the patch grid picture", "--scale 1000 makes the patch grid picture"),
    ]
    for call, library, script in cases:
        with pytest.raises((ValueError, OSError)) as err:
            call()
        assert library in str(err.value) and "--" not in str(err.value), str(err.value)
        with flags_in_messages(), pytest.raises((ValueError, OSError)) as err:
            call()
        assert script in str(err.value), str(err.value)
    assert not (tmp_path / "o").exists()


def test_visualize_refuses_a_pickled_model_as_the_evaluation_does(tmp_path, capsys, monkeypatch):
    """A folder with only pytorch_model.bin is never unpickled; both scripts give the same message."""
    from safetensors.torch import load_file

    folder = tmp_path / "model"
    tiny_model().save_pretrained(folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    noise_image(8, 8).save(tmp_path / "a.png")
    with pytest.raises(SystemExit) as exc:
        load_script().main(["--model", str(folder), "--image", str(tmp_path / "a.png"), "--output_dir", str(tmp_path / "o")])
    assert exc.value.code == (
        f"error: {folder}: model.safetensors is missing (found pytorch_model.bin, a pickle: load it and save again "
        "with `save_pretrained`, which writes safetensors): save the model with `model.save_pretrained(folder)`."
    )
    # Past the folder check too (switched off here), the load itself takes safetensors only.
    import hf_vit.hub
    from hf_vit.teaching import load_model

    monkeypatch.setattr(hf_vit.hub, "check_weights", lambda folder: None)
    with pytest.raises(OSError, match="model.safetensors"):
        load_model(folder)


# ---------------------------------------------------------------------------
# The README walkthrough points at the right lines
# ---------------------------------------------------------------------------
def test_readme_walkthrough_line_references_hold_the_quoted_code():
    """Each table row "`code` | [hf_vit/modeling_hf_vit.py:A-B](...)" must find `code` within lines A..B."""
    import re

    readme = (REPO / "README.md").read_text()
    assert "## Walkthrough: the lesson's four goals" in readme
    source = (REPO / "hf_vit/modeling_hf_vit.py").read_text().splitlines()
    link = r"\[hf_vit/modeling_hf_vit\.py:(\d+)(?:-(\d+))?\]\(hf_vit/modeling_hf_vit\.py#L(\d+)"
    rows = re.findall(r"`([^`]+)`\s*\|\s*" + link, readme)
    assert len(rows) >= 15
    for code, first, last, anchor in rows:
        first, last = int(first), int(last or first)
        assert int(anchor) == first, f"link anchor L{anchor} != {first} for {code!r}"
        assert 1 <= first <= last <= len(source)
        assert code in "\n".join(source[first - 1 : last]), f"{code!r} is not in modeling_hf_vit.py:{first}-{last}"
    # Links in the prose (no quoted code) must at least point inside the file.
    for first, last in re.findall(r"\[hf_vit/modeling_hf_vit\.py:(\d+)(?:-(\d+))?\]", readme):
        assert 1 <= int(first) <= int(last or first) <= len(source)


def test_pictures_from_a_saved_model_folder(tmp_path):
    """load_model reads a folder as training writes it (weights, remote code, processor)."""
    from hf_vit import make_image_processor
    from hf_vit.teaching import load_model

    model = tiny_model(seed=5, image_size=16, patch_size=4)
    model.save_pretrained(tmp_path / "model")
    # statistics of the folder's own, not the package default's: the pictures must normalise with the folder's
    own = make_image_processor(model.config)
    own.image_mean, own.image_std = [0.2, 0.5, 0.8], [0.1, 0.3, 0.2]
    own.save_pretrained(tmp_path / "model")
    loaded, processor = load_model(tmp_path / "model")
    assert list(processor.image_mean) == own.image_mean and loaded.config.grid_size == (4, 4)
    np.testing.assert_allclose(pos_embedding_similarity(loaded), pos_embedding_similarity(model), atol=1e-6)
    image = noise_image(16, 16)
    written = write_pictures(loaded, image, tmp_path / "pictures", processor=processor, label="cat")
    assert sorted(written) == sorted(["patch_grid", "patch_numbers", "pos_similarity", "cls_attention", "rollout",
                                      "feature_norms", "shuffled"])
    summary = json.loads((tmp_path / "pictures" / "pictures.json").read_text())
    # the saved model's own answer on the image through the folder's processor: its top class and probability
    with torch.no_grad():
        probs = model(pixel_values=own(images=image, return_tensors="pt")["pixel_values"]).logits.softmax(-1)[0]
    assert summary["label"] == "cat" and summary["predicted"] == model.config.id2label[int(probs.argmax())]
    assert summary["probability"] == pytest.approx(float(probs.max()), abs=1e-4)


def test_visualize_says_which_statistics_it_assumed_for_a_folder_without_a_processor(tmp_path, capsys):
    tiny_model(seed=5, image_size=16, patch_size=4).save_pretrained(tmp_path / "model")  # weights only
    noise_image(16, 16).save(tmp_path / "in.png")
    spec = importlib.util.spec_from_file_location("visualize", REPO / "scripts" / "visualize.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(["--model", str(tmp_path / "model"), "--image", str(tmp_path / "in.png"), "--output_dir",
                 str(tmp_path / "pictures"), "--pictures", "patch_grid"])  # fmt: skip
    err = capsys.readouterr().err
    assert f"note: {tmp_path / 'model'} has no preprocessor_config.json: the image is normalised with CIFAR-10's" in err


def test_pictures_of_a_mean_pooled_model_say_that_the_head_does_not_read_cls(tmp_path):
    """The [CLS] maps explain a prediction only when the head reads [CLS]: a mean-pooled model's pictures
    carry one more caption line (saying so), and pictures.json records the pooling."""
    sizes = {}
    for pool in ("cls", "mean"):
        model = tiny_model(seed=1, image_size=16, patch_size=4, pool=pool)
        write_pictures(model, noise_image(16, 16), tmp_path / pool, pictures=("cls_attention", "rollout"))
        assert json.loads((tmp_path / pool / "pictures.json").read_text())["pool"] == pool
        sizes[pool] = {name: Image.open(tmp_path / pool / f"{name}.png").size for name in ("cls_attention", "rollout")}
    for name in ("cls_attention", "rollout"):
        (w_cls, h_cls), (w_mean, h_mean) = sizes["cls"][name], sizes["mean"][name]
        assert w_cls == w_mean and h_mean > h_cls, (name, sizes)


def test_an_image_file_is_turned_upright_by_its_exif_orientation_as_the_pipeline_sees_it(tmp_path):
    """A phone photo stored sideways with Orientation 6: --image must show (and feed) what load_image shows."""
    from transformers.image_utils import load_image

    from hf_vit.teaching import load_image_file

    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)  # stored 40 wide x 20 tall, left half red
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    ours, pipeline = load_image_file(tmp_path / "phone.jpg"), load_image(str(tmp_path / "phone.jpg"))
    assert ours.size == pipeline.size == (20, 40)
    assert np.array_equal(np.asarray(ours), np.asarray(pipeline.convert("RGB")))


def test_an_image_over_pils_pixel_limit_is_refused_in_one_line(tmp_path, monkeypatch):
    from hf_vit.teaching import load_image_file

    noise_image(30, 40).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1200 pixels > 2 x 100: PIL's DecompressionBombError
    with pytest.raises(ValueError, match=r"big.png is too large to decode safely \(Image size \(1200 pixels\) "
                       r"exceeds .*\)\. Downscale the image, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust it.$"):
        load_image_file(tmp_path / "big.png")


def test_a_folder_as_image_is_called_a_folder(tmp_path, capsys):
    (tmp_path / "adir").mkdir()
    with pytest.raises(SystemExit) as exc:
        load_script().main(["--preset", "tiny", "--image", str(tmp_path / "adir"), "--output_dir", str(tmp_path / "o")])
    assert exc.value.code == (
        f"error: --image '{tmp_path / 'adir'}' is a folder, not an image file. Pass one PNG/JPEG file with --image."
    )
    assert not (tmp_path / "o").exists()


def test_a_broken_preprocessor_config_is_refused_as_the_evaluation_refuses_it(tmp_path):
    """Only a folder without preprocessor_config.json falls back to CIFAR-10's statistics; a broken one is not
    replaced by them under a note saying that the file is missing."""
    from hf_vit import make_image_processor

    folder = tmp_path / "model"
    model = tiny_model(image_size=16, patch_size=4)
    model.save_pretrained(folder)
    make_image_processor(model.config).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text('{"image_mean": [0.5, 0.5,')  # cut off mid-write
    exc = visualize_error(folder, tmp_path)
    assert exc.value.code.startswith(f"error: No image processor for {str(folder)!r} (")
    assert exc.value.code.endswith(
        "). Save one beside the weights: `hf_vit.make_image_processor(model.config).save_pretrained(folder)` writes "
        "preprocessor_config.json."
    )
    assert not (tmp_path / "pictures").exists()


def test_a_processor_of_another_size_than_the_model_is_refused_as_the_evaluation_refuses_it(tmp_path):
    """A 224x224 processor beside a 16x16 model: the image was resized to 224x224 and the model refused it with a
    message about interpolate_pos_encoding, a flag visualize.py does not have. The evaluation's check names both
    sizes and the fix."""
    import json

    from hf_vit import make_image_processor

    folder = tmp_path / "model"
    model = tiny_model(image_size=16, patch_size=4)
    model.save_pretrained(folder)
    make_image_processor(model.config).save_pretrained(folder)
    settings = json.loads((folder / "preprocessor_config.json").read_text())
    (folder / "preprocessor_config.json").write_text(json.dumps({**settings, "size": {"height": 224, "width": 224}}))
    exc = visualize_error(folder, tmp_path)
    assert exc.value.code == (
        f"error: {str(folder)!r} (--model): preprocessor_config.json makes images of 224x224 but the model takes "
        "16x16 (config.json's image_size). Save the model's own processor beside the weights: "
        "`hf_vit.make_image_processor(model.config).save_pretrained(folder)`."
    )
    assert not (tmp_path / "pictures").exists()


def test_a_folder_exported_to_transformers_vit_is_named_as_such(tmp_path):
    """The export's folder holds transformers' ViTForImageClassification: the pictures need the hf_vit folder it
    came from, and trust_remote_code would not help."""
    from hf_vit import make_image_processor
    from hf_vit.export_transformers import export_to_transformers_vit

    model = tiny_model(image_size=16, patch_size=4)
    model.save_pretrained(tmp_path / "model")
    make_image_processor(model.config).save_pretrained(tmp_path / "model")
    export_to_transformers_vit(tmp_path / "model", tmp_path / "vit")
    noise_image(16, 16).save(tmp_path / "in.png")
    with pytest.raises(SystemExit) as exc:
        load_script().main(["--model", str(tmp_path / "vit"), "--image", str(tmp_path / "in.png"), "--output_dir",
                            str(tmp_path / "pictures")])  # fmt: skip
    assert exc.value.code == (
        f"error: {str(tmp_path / 'vit')!r} holds a transformers ViT (ViTForImageClassification, exported by "
        "export_to_transformers_vit.py), not an hf_vit model. Pass the hf_vit folder it was exported from."
    )
    assert not (tmp_path / "pictures").exists()


def test_pictures_of_a_one_channel_model_show_the_grey_image_it_reads(tmp_path):
    """Training and the evaluation take 1-channel models (images decoded to grey, hf_vit.data.as_mode): so do the
    pictures; the model reads the grey image through its processor, the overlays sit on that grey image."""
    from hf_vit import make_image_processor
    from hf_vit.data import as_mode
    from hf_vit.teaching import PICTURES, pixel_values_for

    model = tiny_model(image_size=16, patch_size=4, num_channels=1)
    processor = make_image_processor(model.config, [0.5], [0.25])
    image = noise_image(16, 16)
    grey = np.asarray(as_mode(image, "L")).astype(np.float32)
    pixels = pixel_values_for(image, model.config, processor)
    assert pixels.shape == (1, 1, 16, 16)
    np.testing.assert_allclose(pixels[0, 0].numpy(), (grey / 255 - 0.5) / 0.25, atol=1e-5)
    written = write_pictures(model, image, tmp_path / "pictures", processor=processor, scale=8)
    assert sorted(written) == sorted(PICTURES)
    assert sorted(json.loads((tmp_path / "pictures" / "pictures.json").read_text())["pictures"]) == sorted(PICTURES)
    grid = load_png(written["patch_grid"])
    for row in range(3, 16, 4):  # the last pixel of each 4x4 patch, away from its number and the grid lines
        for col in range(3, 16, 4):
            assert grid[row * 8 + 4, col * 8 + 4].tolist() == [int(grey[row, col])] * 3


def picture_files(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_a_subset_run_leaves_no_picture_of_an_earlier_runs_image(tmp_path):
    """The folder holds one run's pictures: a subset run for another image removes the earlier image's other
    pictures (pictures.json would name the new image beside them); files of one's own stay."""
    from hf_vit.teaching import PICTURES

    model, out = tiny_model(image_size=16, patch_size=4), tmp_path / "pictures"
    write_pictures(model, noise_image(16, 16, seed=1), out, source="A")
    assert sorted(picture_files(out)) == sorted([f"{name}.png" for name in PICTURES] + ["pictures.json"])
    (out / "notes.txt").write_text("mine")
    write_pictures(model, noise_image(16, 16, seed=2), out, pictures=["patch_grid"], source="B")
    assert sorted(picture_files(out)) == ["notes.txt", "patch_grid.png", "pictures.json"]
    summary = json.loads((out / "pictures.json").read_text())
    assert summary["source"] == "B" and summary["pictures"] == {"patch_grid": "patch_grid.png"}


def test_a_failure_while_drawing_leaves_the_previous_pictures_as_they_were(tmp_path, monkeypatch):
    """Everything is drawn before a file is written: an error (or Ctrl-C) halfway leaves the earlier set and its
    pictures.json byte for byte, no temporary files, and no folder where there was none."""
    import hf_vit.teaching as teaching

    model, out = tiny_model(image_size=16, patch_size=4), tmp_path / "pictures"
    write_pictures(model, noise_image(16, 16, seed=1), out, source="A")
    before = picture_files(out)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(teaching, "draw_cls_attention", interrupted)  # the third picture of five
    with pytest.raises(KeyboardInterrupt):
        write_pictures(model, noise_image(16, 16, seed=2), out, source="B")
    assert picture_files(out) == before
    with pytest.raises(KeyboardInterrupt):
        write_pictures(model, noise_image(16, 16, seed=2), tmp_path / "new", source="B")
    assert not (tmp_path / "new").exists()


def test_a_second_run_into_a_pictures_folder_in_use_is_refused(tmp_path):
    """Two visualize.py runs into one --output_dir at once mixed their pictures (each file whole, the set not):
    the second is refused naming the first, writes nothing, and runs once the first is done."""
    import socket

    from test_reliability import lock_held_elsewhere

    noise_image(16, 16).save(tmp_path / "in.png")
    out = tmp_path / "pictures"
    argv = ["--preset", "tiny", "--image_size", "16", "--image", str(tmp_path / "in.png"), "--output_dir", str(out)]
    with lock_held_elsewhere(out, "a visualize.py run") as pid:
        with pytest.raises(SystemExit) as exc:
            load_script().main(argv)
        assert exc.value.code == (
            f"error: --output_dir {str(out)!r} is in use by a visualize.py run (pid {pid} on {socket.gethostname()}): "
            "two runs there would mix their pictures. Wait for it to finish, or pass another --output_dir."
        )
        assert [p.name for p in out.iterdir()] == [".hf_vit.lock"]
    load_script().main(argv)
    assert (out / "pictures.json").is_file() and not (out / ".hf_vit.lock").exists()


def test_a_one_channel_folder_without_a_processor_names_what_is_missing(tmp_path, capsys):
    """A 1-channel model folder without preprocessor_config.json: the script printed that it would use CIFAR-10's
    mean and std, then failed on their three values. Now one line says what is missing and how to save it."""
    folder = tmp_path / "model"
    tiny_model(image_size=16, patch_size=4, num_channels=1).save_pretrained(folder)
    exc = visualize_error(folder, tmp_path)
    assert exc.value.code == (
        f"error: {folder} has no preprocessor_config.json, and CIFAR-10's mean and std fit 3 channels, not 1. Save "
        "the model's own processor there: hf_vit.make_image_processor(config, mean, std).save_pretrained(folder), "
        "with the statistics it was trained with."
    )
    assert "CIFAR-10's mean and std (hf_vit's default)" not in capsys.readouterr().err
    assert not (tmp_path / "pictures").exists()


def test_visualize_presets_are_the_training_presets():
    """visualize.py's --preset tiny was another model than train.py's --preset tiny (4 heads of 16 against 2 of 32),
    and train.py's lesson/small/base were unknown to it: a fresh model drawn to compare with a trained one had
    another shape. Now every training preset draws the model that training builds from it ('default' stays the
    lesson's shape, HfViTConfig())."""
    from hf_vit.teaching import PRESETS, fresh_model
    from hf_vit.training import PRESETS as TRAINING_PRESETS

    fields = ("dim", "depth", "heads", "dim_head", "mlp_dim", "pool")
    for name, preset in TRAINING_PRESETS.items():
        assert name in PRESETS
        built = fresh_model(name).config
        want = HfViTConfig(**preset)
        assert [getattr(built, f) for f in fields] == [getattr(want, f) for f in fields], name
    assert fresh_model("default").config.to_diff_dict() == fresh_model("lesson").config.to_diff_dict()
    assert load_script().parse_args(["--preset", "small", "--image", "a.png", "--output_dir", "o"]).preset == "small"


def test_attention_maps_draw_each_patch_as_one_block_of_its_own_colour_whatever_the_image():
    """The maps were blended over the image (alpha 0.6) after a bilinear resize: a dark object under a more attended
    patch came out darker than a bright background under a less attended one, so "black = least attended" read the
    image's own darkness as attention (the question the walkthrough asks: object or background?), and the smooth
    resize drew gradients inside patches that have one weight. Now each patch is one flat block of its weight's
    colour, the same on any image; the image is drawn beside the maps."""
    from hf_vit.attention_maps import heat_colours
    from hf_vit.eval_pictures import attention_strip
    from hf_vit.teaching import draw_cls_attention, draw_rollout

    image = Image.new("RGB", (16, 16), (250, 250, 250))
    image.paste((0, 0, 0), (0, 0, 8, 16))  # a dark object on the left half, a bright background on the right
    heat = np.arange(16, dtype=np.float64).reshape(4, 4)[:, ::-1].copy()  # the dark half holds the higher weights
    want = heat_colours((heat - heat.min()) / (heat.max() - heat.min()))  # (4, 4, 3)

    def blocks(png, x0, y0, cell):
        for r in range(4):
            for c in range(4):
                block = png[y0 + r * cell : y0 + (r + 1) * cell, x0 + c * cell : x0 + (c + 1) * cell]
                assert (block == want[r, c]).all(), (r, c)

    rollout = np.asarray(draw_rollout(image, heat, heat, scale=4)).astype(int)
    top, gap, tile = 16, 2, 16 * 4
    shown = np.asarray(image.resize((64, 64), Image.NEAREST))
    assert (rollout[top + gap : top + gap + tile, gap : gap + tile] == shown).all()  # the input, beside the maps
    for panel in (1, 2):  # rollout, last layer
        blocks(rollout, gap + panel * (tile + gap), top + gap, 16)
    maps = np.stack([heat, heat])[None]  # 1 layer, 2 heads
    grid = np.asarray(draw_cls_attention(image, maps, scale=3)).astype(int)
    left, tile = 28, 16 * 3
    for column in (1, 2, 3):  # after the input: h1, h2, mean
        blocks(grid, left + gap + column * (tile + gap), top + gap, 12)
    strip = np.asarray(attention_strip(image, heat, heat)).astype(int)  # the evaluation's: 16 px upscaled 8x
    for panel in (1, 2):
        blocks(strip, 4 + panel * (128 + 4), 18, 32)


def test_a_scale_that_makes_the_patch_grid_too_large_is_refused_before_drawing(tmp_path, capsys):
    """--scale 100000 drew a 3.2 million px wide patch grid: the process was killed for memory (11.8 GB) with no
    message. Now a picture over MAX_PICTURE_SIDE px a side is refused, naming the largest --scale that fits, and
    nothing is written."""
    from hf_vit.teaching import MAX_PICTURE_SIDE

    model = tiny_model(image_size=16, patch_size=4)
    scale = MAX_PICTURE_SIDE // 16 + 1  # one step over: cheap to draw on the old code, so this test sees it pass
    # called from Python: the argument (scale=...); visualize.py's --scale below
    with pytest.raises(ValueError, match=rf"^scale={scale} makes the patch grid picture {16 * scale}x{16 * scale} "
                                         rf"px; at most {MAX_PICTURE_SIDE} px a side: pass scale={scale - 1} or less"):
        write_pictures(model, noise_image(16, 16), tmp_path / "out", pictures=["patch_grid"], scale=scale)
    assert not (tmp_path / "out").exists()
    write_pictures(model, noise_image(16, 16), tmp_path / "out", pictures=["rollout"], scale=scale)  # not drawn: fine
    noise_image(16, 16).save(tmp_path / "in.png")
    with pytest.raises(SystemExit) as exc:
        load_script().main(["--preset", "tiny", "--image_size", "16", "--image", str(tmp_path / "in.png"),
                            "--output_dir", str(tmp_path / "o"), "--scale", "100000"])
    assert str(exc.value.code).startswith("error: --scale 100000 makes the patch grid picture 1600000x1600000 px")


def test_visualize_draws_a_fresh_model_of_either_pooling(tmp_path, capsys):
    """The README tells a learner that the cpu recipe pools by mean and that `--pool cls` makes a head that reads
    [CLS] alone, but visualize.py had no --pool: a fresh model of the other pooling could not be drawn to compare.
    Now --pool sets it (a fresh model only, like the other shape flags)."""
    from hf_vit.presets import PRESETS

    noise_image(16, 16).save(tmp_path / "in.png")
    for preset, pool in (("small", "cls"), ("tiny", "mean")):
        out = tmp_path / pool
        load_script().main(["--preset", preset, "--pool", pool, "--image_size", "16", "--depth", "1",
                            "--image", str(tmp_path / "in.png"), "--output_dir", str(out), "--pictures", "rollout"])
        summary = json.loads((out / "pictures.json").read_text())
        # the pool given, on the preset's shape (small: 4 heads, tiny: 2) with the depth given
        assert (summary["pool"], summary["heads"], summary["depth"]) == (pool, PRESETS[preset]["heads"], 1)
    with pytest.raises(SystemExit):
        load_script().main(["--model", "runs/x", "--pool", "cls", "--image", "in.png", "--output_dir", "o"])
    assert "--pool only applies to a fresh model" in capsys.readouterr().err


def record_captions(monkeypatch) -> list:
    """The captions (lists of lines) of the pictures drawn from here on, in drawing order."""
    from hf_vit import teaching

    captions = []
    footer = teaching._with_footer
    monkeypatch.setattr(teaching, "_with_footer", lambda image, lines: captions.append(lines) or footer(image, lines))
    return captions


def head_sure_of_class_1(model, share):
    """The head set by hand: its bias alone makes the probabilities, `share` for class 1 whatever the input."""
    head, n = model.mlp_head[-1], model.config.num_labels
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[1] = float(np.log(share * (n - 1) / (1 - share)))  # softmax: `share` for class 1


def test_rollout_never_calls_a_prediction_short_of_certain_100_percent(monkeypatch):
    """rollout.png's caption rounded the predicted class's probability to whole percents: a model 99.8% sure read
    "predicted 1 (100%)", a certainty it never had (the evaluation's captions already said ">99%"). Now ">99%";
    a probability of 1 itself stays 100%. The head is set by hand: its bias alone makes the probabilities."""
    captions = record_captions(monkeypatch)
    model = tiny_model(seed=0, image_size=16, patch_size=4)
    for share, said in ((0.998, ">99%"), (0.5, "50%")):
        head_sure_of_class_1(model, share)
        captions.clear()
        draw_pictures(model, noise_image(16, 16), pictures=["rollout"])
        assert captions[0][0] == f"predicted {model.config.id2label[1]} ({said})"


def test_shuffled_png_and_pictures_json_never_call_a_prediction_short_of_certain_certain(tmp_path, monkeypatch):
    """shuffled.png's caption wrote probabilities to 4 decimals, so 0.99996 read "1.0000", and pictures.json rounded
    the top class's probability to 4 places (saved as 1.0): a certainty the model never had. Now the caption uses
    the evaluation's percent (">99.99%"; 0.5 is "50.00%") and pictures.json keeps the unrounded float. The head is
    set by hand: its bias alone makes the probabilities, with or without positions, in either order."""
    captions = record_captions(monkeypatch)
    model = tiny_model(seed=0, image_size=16, patch_size=4)
    name = model.config.id2label[1]
    for share, said in ((0.99996, ">99.99%"), (0.5, "50.00%")):
        head_sure_of_class_1(model, share)
        captions.clear()
        out = tmp_path / str(share)
        write_pictures(model, noise_image(16, 16), out, pictures=["shuffled"])
        lines = captions[0]
        for i, key in ((1, "with the learned positions"), (2, "positions zeroed")):
            assert lines[i] == f"{key}: input {name} {said}, shuffled {name} {said}: identical"
        summary = json.loads((out / "pictures.json").read_text())
        probability = float(run_model(model, pixel_values_for(noise_image(16, 16), model.config))["probs"].max())
        assert summary["probability"] == probability and (share == 0.5 or 0.9999 < probability < 1)
    # a fresh model's head: the learned positions move the answer a little, said in percentage points
    captions.clear()
    write_pictures(tiny_model(seed=0, image_size=16, patch_size=4), noise_image(16, 16), out, pictures=["shuffled"])
    answers = json.loads((out / "pictures.json").read_text())["shuffled"]["with_positions"]
    (c_in, p_in), (c_sh, p_sh) = ((answers[k]["predicted"], answers[k]["probability"]) for k in ("input", "shuffled"))
    assert c_in == c_sh and abs(p_in - p_sh) > 1e-5
    assert captions[0][1] == (f"with the learned positions: input {c_in} {100 * p_in:.2f}%, shuffled {c_sh} "
                              f"{100 * p_sh:.2f}%: they differ by {100 * abs(p_in - p_sh):.2f} percentage points")
    assert captions[0][3].startswith("attention is order-blind: without positions the model sees a bag of patches")


def test_shuffled_png_says_when_the_shuffle_changes_nothing(monkeypatch):
    """On a flat image (or a pattern the shuffle maps onto itself) the shuffled image is the input: the caption said
    "with the learned positions: ... identical" and then "only the positions tell them apart", as if the positions
    did nothing. Now it says the shuffled image is the input itself and to draw one whose patches differ."""
    captions = record_captions(monkeypatch)
    model = tiny_model(seed=0, image_size=16, patch_size=4)
    checks = np.zeros((16, 16, 3), dtype=np.uint8)
    checks[::2, ::2] = checks[1::2, 1::2] = 255  # a checkerboard of 1-px squares: every 4x4 patch alike
    for image in (Image.new("RGB", (16, 16), (120, 90, 60)), Image.fromarray(checks)):
        captions.clear()
        draw_pictures(model, image, pictures=["shuffled"])
        with_positions, last = captions[0][1], captions[0][3]
        assert with_positions.endswith(": identical")
        assert last == ("every patch here is alike, so the shuffled image is the input itself and both orders get "
                        "the same answer even with positions; draw an image whose patches differ to see the positions "
                        "at work")


def test_the_attention_pictures_follow_what_the_head_reads_by_its_pool(tmp_path, monkeypatch):
    """A mean-pooled head reads the mean of all final tokens, yet cls_attention.png and rollout.png drew [CLS]'s
    row (and only said in a caption that the head does not read it). Now the maps follow config.pool: for "mean"
    the rollout panel is the mean of all N+1 rows of the rollout (the flow into the mean-pooled vector), the last
    layer panel and each cls_attention.png tile the mean of all rows of that attention; for "cls" [CLS]'s rows as
    before. Computed here by hand from output_attentions; the captions and pictures.json say which."""
    from hf_vit import teaching
    from hf_vit.image_processing import make_image_processor

    captions = []
    footer = teaching._with_footer
    monkeypatch.setattr(teaching, "_with_footer", lambda image, lines: captions.append(lines) or footer(image, lines))
    image = noise_image(16, 16, seed=2)
    for pool in ("mean", "cls"):
        model = tiny_model(seed=3, image_size=16, patch_size=4, pool=pool)
        with torch.no_grad():  # sharper attention than at init: rows differ, so [CLS]'s row is not the mean row
            for layer in model.vit.transformer.layers:
                layer.attn.to_qkv.weight.mul_(25)
        pixels = make_image_processor(model.config)(images=image, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            attn = [a[0].double().numpy() for a in model(pixel_values=pixels, output_attentions=True).attentions]
        rows = (lambda m: m[0]) if pool == "cls" else (lambda m: m.mean(axis=0))  # what the head reads
        flow = np.eye(17)
        for a in attn:  # heads averaged, (A + I) / 2 with rows renormalised, each layer after the ones before
            b = (a.mean(axis=0) + np.eye(17)) / 2
            flow = (b / b.sum(axis=1, keepdims=True)) @ flow
        rollout, last = rows(flow)[1:].reshape(4, 4), rows(attn[-1].mean(axis=0))[1:].reshape(4, 4)
        per_head = np.array([[rows(a[h])[1:].reshape(4, 4) for h in range(2)] for a in attn])
        if pool == "mean":
            assert np.abs(rollout - flow[0, 1:].reshape(4, 4)).max() > 1e-3  # not [CLS]'s row: the test can tell

        captions.clear()
        write_pictures(model, image, tmp_path / pool, pictures=["cls_attention", "rollout"])
        got = load_png(tmp_path / pool / "rollout.png")
        tile, top, gap = 16 * 4, 16, 2
        for panel, heat in ((1, rollout), (2, last)):
            x0 = gap + panel * (tile + gap)
            want = np.asarray(heat_map_image(heat, (tile, tile))).astype(int)
            assert np.abs(got[top + gap : top + gap + tile, x0 : x0 + tile] - want).max() <= 1, (pool, panel)
        got = load_png(tmp_path / pool / "cls_attention.png")
        tile, left = 16 * 3, 28
        for layer, column, heat in [(0, 1, per_head[0, 0]), (1, 2, per_head[1, 1]), (1, 3, per_head[1].mean(0))]:
            x0, y0 = left + gap + column * (tile + gap), top + gap + layer * (tile + gap)
            want = np.asarray(heat_map_image(heat, (tile, tile))).astype(int)
            assert np.abs(got[y0 : y0 + tile, x0 : x0 + tile] - want).max() <= 1, (pool, layer, column)

        text = [" ".join(lines) for lines in captions]  # cls_attention.png's caption, then rollout.png's
        summary = json.loads((tmp_path / pool / "pictures.json").read_text())
        if pool == "mean":
            assert all("attention into the mean-pooled vector (all tokens' rows averaged)" in t for t in text)
            assert "the mean of all tokens' rows of that layer and head's attention" in text[0]
            assert "the mean of all its rows" in text[1] and "[CLS]'s row" not in " ".join(text)
            assert summary["attention_maps_show"].startswith("attention into the mean-pooled vector")
        else:
            assert all("[CLS]'s attention (its row of each matrix)" in t for t in text)
            assert "its [CLS] row" in text[1] and "mean-pooled" not in " ".join(text)
            assert summary["attention_maps_show"].startswith("[CLS]'s attention")


def test_a_dataset_image_in_a_column_datasets_reads_as_images_is_drawn(tmp_path):
    """An image column of pixel arrays (0..255) without a datasets.Image feature: training and the evaluation read
    it as images (hf_vit.data.check_image_column lets it through), but load_dataset_image refused it ('holds List
    values, not images'), so visualize.py could not draw the image the evaluation had scored under an index. Now it
    reads it as they do; a column that holds no images is still refused with the same words."""
    import datasets

    from hf_vit.teaching import load_dataset_image

    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    pixels[..., 0] = 255  # red
    (tmp_path / "ds").mkdir()
    datasets.Dataset.from_dict({"arr": [pixels.tolist()], "label": [1]}).to_parquet(
        str(tmp_path / "ds" / "test-00000-of-00001.parquet"))  # fmt: skip
    image, _ = load_dataset_image(str(tmp_path / "ds"), 0, image_column="arr")
    assert image.size == (32, 32) and np.asarray(image)[0, 0].tolist() == [255, 0, 0]
    with pytest.raises(ValueError, match=r"^the column 'label' of .* holds Value values, not images. Name the image "
                                         r"column with image_column\.$"):
        load_dataset_image(str(tmp_path / "ds"), 0, image_column="label")


def test_every_picture_stays_within_the_size_limit_and_says_when_it_is_drawn_smaller(tmp_path, caplog):
    """--scale capped only the patch grid: cls_attention.png (every layer x head, 3x per panel) of a 224-px model of
    12 layers x 12 heads came out 9,466 x 8,106 px, and rollout.png of a 384-px model 4,616 px wide. Now every picture
    is kept within MAX_PICTURE_SIDE px a side (its panels drawn smaller: whole scales, then a fraction of 1), and
    visualize.py says which picture was drawn smaller and why; pictures.json keeps the note."""
    from hf_vit.teaching import MAX_PICTURE_SIDE

    noise_image(64, 64).save(tmp_path / "in.png")
    out = tmp_path / "pictures"
    small = ["--dim", "16", "--depth", "12", "--heads", "12", "--dim_head", "4", "--mlp_dim", "16"]
    load_script().main(["--image_size", "224", "--patch_size", "16", *small, "--image", str(tmp_path / "in.png"),
                        "--output_dir", str(out)])  # fmt: skip
    note = ("cls_attention.png: its 12 x 14 panels are drawn at 1x instead of 3x: at 3x the picture would be "
            f"9,466x8,106 px, over the limit of {MAX_PICTURE_SIDE} px a side.")
    assert [r.getMessage() for r in caplog.records if r.name == "hf_vit.teaching"] == [note]  # on stderr in a run
    assert json.loads((out / "pictures.json").read_text())["drawn_smaller"] == {"cls_attention": note}
    for name in PICTURES:
        with Image.open(out / f"{name}.png") as img:
            assert max(img.size) <= MAX_PICTURE_SIDE, (name, img.size)
    with Image.open(out / "cls_attention.png") as img:  # 28 px row labels + 14 panels of 224 px at 1x
        assert img.width == 28 + 2 + 14 * (224 + 2)

    # Under 1x: 12 x 14 panels of a 384-px model are drawn at 0.75x (288 px), the rollout's 3 at 3x, not 4x.
    model = tiny_model(image_size=384, patch_size=16, dim=16, depth=12, heads=12, dim_head=4, mlp_dim=16)
    write_pictures(model, noise_image(64, 64), tmp_path / "big", pictures=["cls_attention", "rollout"])
    smaller = json.loads((tmp_path / "big" / "pictures.json").read_text())["drawn_smaller"]
    assert "panels are drawn at 0.75x instead of 3x" in smaller["cls_attention"]
    assert "its 1 x 3 panels are drawn at 3x instead of 4x" in smaller["rollout"]
    for name in ("cls_attention", "rollout"):
        with Image.open(tmp_path / "big" / f"{name}.png") as img:
            assert max(img.size) <= MAX_PICTURE_SIDE, (name, img.size)
    with Image.open(tmp_path / "big" / "cls_attention.png") as img:
        assert img.width == 28 + 2 + 14 * (288 + 2)


def test_pictures_are_refused_in_a_model_or_evaluation_folder(tmp_path, capsys):
    """visualize.py --output_dir runs/x/evaluation wrote its five PNGs and pictures.json among the evaluation's: the
    push uploaded them as evaluation pictures (and a rerun of evaluate_model.py, which then cleared every top-level
    PNG, deleted them but left pictures.json naming them). Into the model folder they mixed with training's files. Both are refused now, naming
    a folder of their own; nothing is written."""
    model = tmp_path / "run"
    tiny_model(image_size=16).save_pretrained(model)
    (model / "evaluation" / "misclassified").mkdir(parents=True)
    noise_image(16, 16).save(tmp_path / "in.png")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for output_dir, whose, own in (
        (model / "evaluation", "an evaluation folder: a push would upload the pictures among the evaluation's",
         model / "pictures"),
        (model, "a model folder (it holds config.json): the pictures would mix with what training wrote there",
         model / "pictures"),
    ):
        with pytest.raises(SystemExit) as exc:
            load_script().main(["--model", str(model), "--image", str(tmp_path / "in.png"), "--output_dir",
                                str(output_dir)])  # fmt: skip
        assert str(exc.value.code).startswith(f"error: --output_dir '{output_dir}' is {whose}"), exc.value.code
        assert str(exc.value.code).endswith(f"Pass a folder of their own, e.g. --output_dir {own}.")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    load_script().main(["--model", str(model), "--image", str(tmp_path / "in.png"), "--output_dir",
                        str(model / "pictures"), "--pictures", "rollout"])  # fmt: skip
    assert (model / "pictures" / "rollout.png").is_file()


def test_the_pictures_leave_a_model_in_training_mode_as_they_found_it(tmp_path):
    # A learner draws the pictures between epochs of their own loop: the model must come back still training (its
    # dropout on), not switched to eval mode without a word for the epochs that follow.
    model = tiny_model(dropout=0.1).train()
    pixels = torch.randn(1, 3, 32, 32)
    first = run_model(model, pixels)
    assert model.training
    # ... while the pass itself runs without dropout: the eval-mode logits, the same every time
    assert torch.equal(first["logits"], run_model(model, pixels)["logits"])
    assert torch.equal(first["logits"], run_model(tiny_model(dropout=0.1).eval(), pixels)["logits"])
    write_pictures(model, noise_image(32, 32), tmp_path / "pictures", pictures=("rollout",))
    assert model.training and all(m.training for m in model.modules())
    model.eval()
    run_model(model, torch.zeros(1, 3, 32, 32))
    assert not model.training


def test_a_notebook_gets_the_pictures_as_images_without_writing_files(tmp_path, monkeypatch):
    # In a notebook the pictures are shown, not saved: draw_pictures hands back the PIL images write_pictures would
    # save (the same pixels), and writes nothing anywhere.
    from hf_vit.teaching import draw_pictures

    model, image = tiny_model(), noise_image(32, 32)
    monkeypatch.chdir(tmp_path)
    drawn = draw_pictures(model, image, label="cat")
    assert list(drawn) == list(PICTURES)
    assert all(isinstance(picture, Image.Image) and picture.mode == "RGB" for picture in drawn.values())
    assert list(tmp_path.iterdir()) == []
    written = write_pictures(model, image, tmp_path / "pictures", label="cat")
    for name, picture in drawn.items():
        assert np.array_equal(np.asarray(picture).astype(int), load_png(written[name])), name
    with pytest.raises(ValueError, match="Unknown picture"):
        draw_pictures(model, image, pictures=("patches",))


def test_visualize_help_gives_the_seed_and_pictures_defaults(capsys):
    """`visualize.py --help` named no default for --seed, though the README's untrained numbers come from seed 0
    ("the first command (seed 0)"), nor for --pictures, whose list argparse broke inside a name ("cl" / "s_attention"). Both now say theirs."""
    with pytest.raises(SystemExit) as exc:
        load_script().parse_args(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--seed SEED seed of the fresh model's initialisation (default: 0)" in text
    assert ("--pictures PICTURES the pictures to draw, comma-separated, e.g. patch_grid,rollout (default: all: "
            "patch_grid, patch_numbers, pos_similarity, cls_attention, rollout, feature_norms, shuffled)") in text
