"""The maths of the teaching pictures, the batched augmentation and the metrics, against computations written
out here: NumPy loops and formulas from the definitions, never the package's own helpers.

- attention: each layer's softmax(q k^T / sqrt(dim_head)) recomputed from the weights, then the maps into what
  the head reads ([CLS]'s row, or all rows averaged for pool="mean"), head by head and averaged, and the rollout
  ((A + I) / 2 per layer, heads averaged, later layers on the left), on a non-square image with non-square patches;
- positional-embedding similarity, token norms, where each token's map is drawn; without positions, shuffled
  patches give the same logits (attention is order-blind);
- crop, flip, erasing, Mixup and CutMix: per image, within bounds, seeded, on non-square and 1-channel images;
- accuracy, top-k with ties, per-class precision/recall/F1 and the macro means, against a hand computation.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from hf_vit import HfViTConfig, HfViTForImageClassification
from hf_vit.augment import AugmentConfig, BatchAugment
from hf_vit.data import BatchCollator, ImageTensorDataset
from hf_vit.metrics import classification_metrics, compute_metrics
from hf_vit.teaching import (
    cls_attention_maps, pos_embedding_similarity, rollout_map, run_model, shuffle_patches, token_norms,
)

# 12 x 20 pixels in 3 x 2 patches: a 4 x 10 grid, neither the image, the patch nor the grid square.
FIELDS = dict(image_size=(12, 20), patch_size=(3, 2), dim=16, depth=3, heads=2, dim_head=8, mlp_dim=32)


def random_model(pool="cls", num_channels=3, seed=0):
    torch.manual_seed(seed)
    model = HfViTForImageClassification(HfViTConfig(**FIELDS, pool=pool, num_channels=num_channels)).eval()
    with torch.no_grad():  # weights far from init: attention that differs by layer, head and patch
        for p in model.parameters():
            p.normal_(0, 0.5)
    return model


def layer_norm(x, norm):
    w, b = norm.weight.detach().double().numpy(), norm.bias.detach().double().numpy()
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + norm.eps) * w + b


def attention_by_hand(model, hidden_states):
    """(depth, heads, N+1, N+1) attention of image 0, from each block's input and its weights."""
    config, maps = model.config, []
    for block, x in zip(model.vit.transformer.layers, hidden_states):
        h = layer_norm(x[0].detach().double().numpy(), block.attn_norm)  # (N+1, dim)
        qkv = h @ block.attn.to_qkv.weight.detach().double().numpy().T  # (N+1, 3 * heads * dim_head)
        q, k, _ = np.split(qkv, 3, axis=-1)
        heads = []
        for i in range(config.heads):
            cols = slice(i * config.dim_head, (i + 1) * config.dim_head)  # "b n (h d)": head-major
            scores = q[:, cols] @ k[:, cols].T / np.sqrt(config.dim_head)
            e = np.exp(scores - scores.max(-1, keepdims=True))
            heads.append(e / e.sum(-1, keepdims=True))
        maps.append(np.stack(heads))
    return np.stack(maps)


def model_outputs(model, seed=0):
    pixels = torch.from_numpy(np.random.default_rng(seed).normal(size=(1, model.config.num_channels, 12, 20)))
    result = run_model(model, pixels.float())
    return result, attention_by_hand(model, result["hidden_states"])


# ---------------------------------------------------------------------------
# Teaching: attention, rollout, positions, norms
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_attention_maps_per_head_follow_the_row_the_head_reads_recomputed_from_the_weights(pool):
    model = random_model(pool)
    result, attn = model_outputs(model)
    gh, gw = 4, 10
    for layer in range(3):
        np.testing.assert_allclose(result["attentions"][layer][0].double().numpy(), attn[layer], atol=2e-5)
    maps = cls_attention_maps(result["attentions"], (gh, gw), pool)
    assert maps.shape == (3, 2, gh, gw)
    for layer in range(3):
        for head in range(2):
            a = attn[layer, head]
            # pool="mean": the head reads mean_i x_i, which mixes the values by the mean of all N+1 rows
            row = a[0] if pool == "cls" else a.sum(0) / a.shape[0]
            want = np.zeros((gh, gw))
            for token in range(1, gh * gw + 1):  # token t is patch (row, col) = divmod(t - 1, gw): row by row
                r, c = divmod(token - 1, gw)
                want[r, c] = row[token]  # column 0, [CLS], is no patch
            np.testing.assert_allclose(maps[layer, head], want, atol=2e-5)
    assert np.abs(maps[0, 0] - maps[0, 1]).max() > 1e-3 and np.abs(maps[0] - maps[2]).max() > 1e-3  # not flat


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_rollout_is_the_product_of_the_layers_from_the_first_on_the_right(pool):
    model = random_model(pool, seed=1)
    result, attn = model_outputs(model, seed=1)
    n = attn.shape[-1]
    flow = np.eye(n)
    for layer in range(3):  # token states after layer l mix those before it: x_l = A'_l x_(l-1)
        a = attn[layer].mean(0)
        a = (a + np.eye(n)) / 2
        a = a / a.sum(1, keepdims=True)
        flow = a @ flow
    row = flow[0] if pool == "cls" else flow.mean(0)
    want = row[1:].reshape(4, 10)
    got = rollout_map(result["attentions"], (4, 10), pool)
    np.testing.assert_allclose(got, want, atol=2e-5)
    reversed_order = np.eye(n)
    for layer in range(3):
        a = (attn[layer].mean(0) + np.eye(n)) / 2
        reversed_order = reversed_order @ a
    wrong = (reversed_order[0] if pool == "cls" else reversed_order.mean(0))[1:].reshape(4, 10)
    assert np.abs(wrong - want).max() > 1e-3  # the order of the product shows in these numbers
    assert abs(row.sum() - 1) < 1e-9  # a flow: the pooled row still sums to 1 ([CLS]'s share included)


def test_positional_similarity_and_token_norms_recomputed():
    model = random_model()
    pos = model.vit.embeddings.pos_embedding.detach().double().numpy()[0]  # (N+1, dim), row 0 = [CLS]
    sim = pos_embedding_similarity(model)
    assert sim.shape == (40, 40)
    for i in range(40):
        for j in range(40):
            a, b = pos[1 + i], pos[1 + j]
            assert abs(sim[i, j] - a @ b / np.sqrt((a @ a) * (b @ b))) < 1e-5
    result, _ = model_outputs(model)
    norms = token_norms(result["hidden_states"])
    assert norms.shape == (4, 41)  # embeddings + 3 blocks; [CLS] + 40 patches
    for stage, h in enumerate(result["hidden_states"]):
        h = h[0].double().numpy()
        np.testing.assert_allclose(norms[stage], np.sqrt((h * h).sum(-1)), rtol=1e-5)


def shuffle_blocks_by_hand(image, perm, patch):
    """(B, C, H, W) array with its patch-sized blocks moved: new block k (row by row) is old block perm[k]."""
    (ph, pw), (h, w) = patch, image.shape[-2:]
    gh, gw = h // ph, w // pw
    blocks = [image[:, :, r * ph:(r + 1) * ph, c * pw:(c + 1) * pw] for r in range(gh) for c in range(gw)]
    return np.concatenate([np.concatenate([blocks[perm[r * gw + c]] for c in range(gw)], -1)
                           for r in range(gh)], -2)


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_without_positions_the_model_sees_a_bag_of_patches(pool):
    """The README's goal 2: attention is order-blind. Shuffle an image's patches (by hand, block by block): with
    the learned positions the prediction changes; with them zeroed the logits are the same and every final patch
    token is the one of its patch, moved with it; [CLS] alone cannot tell the orders apart."""
    model = random_model(pool)
    rng = np.random.default_rng(0)
    image = rng.normal(size=(1, 3, 12, 20))
    perm = rng.permutation(40)  # new patch k is old patch perm[k], on the 4 x 10 grid of 3 x 2 patches
    shuffled = shuffle_blocks_by_hand(image, perm, (3, 2))
    image, shuffled = torch.from_numpy(image).float(), torch.from_numpy(shuffled).float()
    # shuffled.png's helper moves the same blocks (visualize.py draws goal 2 with it)
    torch.testing.assert_close(shuffle_patches(image, (3, 2), perm), shuffled, atol=0, rtol=0)
    with torch.no_grad():
        assert not torch.allclose(model(image).logits, model(shuffled).logits, atol=1e-4)
        model.vit.embeddings.pos_embedding.zero_()
        before, after = model(image, output_hidden_states=True), model(shuffled, output_hidden_states=True)
    torch.testing.assert_close(after.logits, before.logits, atol=1e-4, rtol=1e-4)
    last_before, last_after = before.hidden_states[-1][0], after.hidden_states[-1][0]
    torch.testing.assert_close(last_after[1:], last_before[1 + torch.from_numpy(perm)], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(last_after[0], last_before[0], atol=1e-4, rtol=1e-4)


def test_a_patch_is_the_token_its_grid_cell_numbers_and_its_map_is_drawn_in_that_cell():
    """Pixels changed inside cell (r, c) change the patch embedding of token 1 + r * gw + c alone; a map drawn
    over a non-square image puts that token's weight in that cell (not transposed)."""
    from hf_vit.attention_maps import heat_map_image, patch_map_to_grid
    from hf_vit.teaching import patch_grid_cells

    model = random_model()
    embed = model.vit.embeddings.to_patch_embedding
    x = torch.randn(1, 3, 12, 20)
    base = embed(x)[0].detach()
    cells = dict(patch_grid_cells(model.config))
    for token in (1, 2, 10, 11, 40):
        r, c = divmod(token - 1, 10)
        assert cells[token] == (c * 2, r * 3, (c + 1) * 2, (r + 1) * 3)  # (left, top, right, bottom), px
        y = x.clone()
        y[0, :, r * 3 : (r + 1) * 3, c * 2 : (c + 1) * 2] += 1
        moved = (embed(y)[0].detach() - base).abs().amax(-1) > 1e-6  # (N,)
        assert moved.nonzero().flatten().tolist() == [token - 1]
    weights = torch.arange(40, dtype=torch.float32)  # token t + 1 weighs t
    picture = np.asarray(heat_map_image(patch_map_to_grid(weights, (4, 10)), (20 * 4, 12 * 4)))  # (48, 80, 3)
    # Drawn 4 times larger, a 3 x 2 px patch is a 12 x 8 px block; its colour is the inferno table read linearly at
    # its weight scaled from the map's lowest (0) to highest (39). Every pixel is checked, each token its own colour.
    want = np.zeros((48, 80, 3), dtype=np.uint8)
    for token in range(1, 41):
        r, c = divmod(token - 1, 10)
        assert patch_grid_cells(model.config, scale=4)[token - 1] == (token, (c * 8, r * 12, (c + 1) * 8, (r + 1) * 12))
        want[r * 12 : (r + 1) * 12, c * 8 : (c + 1) * 8] = inferno((token - 1) / 39)
    assert len({tuple(want[r * 12, c * 8]) for r in range(4) for c in range(10)}) == 40
    np.testing.assert_array_equal(picture, want)


def inferno(value):
    """The colour for a value in [0, 1]: HEAT_SCALE's 11 inferno samples (the data) at 0, 0.1, ..., 1, the two about
    `value` mixed linearly, rounded to whole levels."""
    from hf_vit.attention_maps import HEAT_SCALE

    i = min(int(value * 10), 9)
    t = value * 10 - i
    return [round(float(lo + t * (hi - lo))) for lo, hi in zip(HEAT_SCALE[i], HEAT_SCALE[i + 1])]


# ---------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------
def images_of(b, c, h, w, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (b, c, h, w), dtype=np.uint8))


def normalised(images, mean, std):
    m, s = np.asarray(mean, dtype=np.float32)[:, None, None], np.asarray(std, dtype=np.float32)[:, None, None]
    return (images.numpy().astype(np.float32) / 255 - m) / s


def crop_and_flip_of(out, image, pad, mean, std):
    """The (offset y, offset x, flipped) that turn `image` into `out` (normalised), found by trying them all."""
    c, h, w = image.shape
    padded = np.zeros((c, h + 2 * pad, w + 2 * pad), dtype=np.uint8)
    padded[:, pad : pad + h, pad : pad + w] = image.numpy()
    found = []
    for oy in range(2 * pad + 1):
        for ox in range(2 * pad + 1):
            window = torch.from_numpy(padded[:, oy : oy + h, ox : ox + w].copy())
            for flipped in (False, True):
                want = normalised(window[None], mean, std)[0]
                if flipped:
                    want = want[:, :, ::-1]  # the width axis
                if np.allclose(out, want, atol=1e-5):
                    found.append((oy, ox, flipped))
    return found


@pytest.mark.parametrize("channels", [1, 3])
def test_crop_and_flip_per_image_within_the_padding_on_non_square_images(channels):
    mean, std = [0.5] * channels, [0.25] * channels
    aug = BatchAugment(mean, std, AugmentConfig(pad=3, hflip=True))
    images = images_of(24, channels, 10, 14)
    out = aug(images, torch.arange(24), seed=7)["pixel_values"].numpy()
    assert out.shape == (24, channels, 10, 14)
    draws = []
    for b in range(24):
        found = crop_and_flip_of(out[b], images[b], 3, mean, std)
        assert len(found) == 1, (b, found)  # random pixels: one offset in 0..2*pad and one flip explain it
        draws.append(found[0])
    assert len({d[:2] for d in draws}) > 8 and {d[2] for d in draws} == {False, True}  # each image its own draw
    # the window moves up to `pad` either way along both sides: offsets 0..2*pad each drawn (24 draws of 7 here)
    assert {d[0] for d in draws} == {d[1] for d in draws} == set(range(7))
    # Another batch's content at the other positions changes nothing here: the draws depend on the seed alone.
    others = images_of(24, channels, 10, 14, seed=1)
    others[5] = images[5]
    assert np.array_equal(aug(others, torch.arange(24), seed=7)["pixel_values"][5].numpy(), out[5])
    assert np.array_equal(aug(images, torch.arange(24), seed=7)["pixel_values"].numpy(), out)  # seeded
    assert not np.array_equal(aug(images, torch.arange(24), seed=8)["pixel_values"].numpy(), out)


@pytest.mark.parametrize("channels", [1, 3])
def test_evaluation_batches_are_normalised_and_nothing_else(channels):
    mean, std = [0.4] * channels, [0.2] * channels
    strong = AugmentConfig(pad=4, randaugment_ops=2, random_erasing=1.0, mixup_alpha=1.0, cutmix_alpha=1.0)
    collator = BatchCollator(BatchAugment(mean, std, strong), seed=3)
    images = images_of(6, channels, 10, 14)
    rows = ImageTensorDataset(images, torch.arange(6)).__getitems__(list(range(6)))
    batch = collator(rows)
    assert set(batch) == {"pixel_values", "labels"}  # no Mixup partners
    np.testing.assert_allclose(batch["pixel_values"].numpy(), normalised(images, mean, std), atol=1e-6)
    train = collator(ImageTensorDataset(images, torch.arange(6), augment=True).__getitems__(list(range(6))))
    assert not np.allclose(train["pixel_values"].numpy(), normalised(images, mean, std), atol=1e-3)


def mixed_and_unmixed(cfg, images, labels, seed, mean, std):
    aug = BatchAugment(mean, std, cfg)
    plain = AugmentConfig(**{**cfg.__dict__, "mixup_alpha": 0.0, "cutmix_alpha": 0.0})
    # The mix comes last and draws from its own generator: the same seed without it gives the batch before it.
    return aug(images, labels, seed), BatchAugment(mean, std, plain)(images, labels, seed)["pixel_values"]


@pytest.mark.parametrize("channels", [1, 3])
def test_cutmix_pastes_one_box_and_its_lambda_is_the_area_left(channels):
    mean, std = [0.5] * channels, [0.25] * channels
    cfg = AugmentConfig(pad=0, random_erasing=0.5, cutmix_alpha=1.0)  # no padding: no zeros two images share
    # each image its own band of values: no pixel of an image equals its partner's, the box shows whole
    images = images_of(5, channels, 9, 16) // 5 + 51 * torch.arange(5, dtype=torch.uint8)[:, None, None, None]
    labels = torch.tensor([3, 1, 4, 1, 5])
    lams = set()
    for seed in range(40):
        mixed, before = mixed_and_unmixed(cfg, images, labels, seed, mean, std)
        x, lam = mixed["pixel_values"], mixed["mix_lam"]
        assert torch.equal(mixed["labels"], labels) and torch.equal(mixed["labels_b"], labels.flip(0))
        partner = before.flip(0)
        pasted = (x != before).any(1)  # (B, H, W)
        for b in range(5):
            if b == 2:  # the middle image pairs with itself: nothing to see
                continue
            assert torch.equal(x[b][:, pasted[b]], partner[b][:, pasted[b]])  # what changed is the partner's
            assert torch.equal(x[b][:, ~pasted[b]], before[b][:, ~pasted[b]])
            ys, xs = np.nonzero(pasted[b].numpy())
            area = 0 if not len(ys) else (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
            assert area == len(ys)  # one axis-aligned box, inside the image
            # the label weights: lam for the image's own, 1 - lam for the partner's, summing to 1
            assert abs(float(lam[b]) - (1 - area / (9 * 16))) < 1e-6
        assert torch.equal(pasted[0], pasted[4])  # one box for the whole batch
        lams.add(round(float(lam[0]), 6))
    assert len(lams) > 10 and min(lams) < 0.7 and max(lams) <= 1


def test_mixup_blends_each_image_with_its_partner_by_lambda():
    mean, std = [0.5], [0.25]
    cfg = AugmentConfig(pad=2, mixup_alpha=0.4)
    images, labels = images_of(4, 1, 9, 16), torch.tensor([0, 1, 2, 3])
    lams = set()
    for seed in range(5):
        mixed, before = mixed_and_unmixed(cfg, images, labels, seed, mean, std)
        lam = mixed["mix_lam"]
        assert lam.shape == (4,) and torch.all(lam == lam[0]) and 0 < float(lam[0]) < 1
        want = float(lam[0]) * before.numpy() + (1 - float(lam[0])) * before.flip(0).numpy()
        np.testing.assert_allclose(mixed["pixel_values"].numpy(), want, atol=1e-5)
        assert np.abs(mixed["pixel_values"].numpy() - before.numpy()).max() > 1e-3  # a blend, not the batch as it was
        assert torch.equal(mixed["labels_b"], labels.flip(0))
        lams.add(float(lam[0]))
    assert len(lams) == 5  # a Beta draw per batch (seed), not a fixed share


def test_random_erasing_replaces_one_box_per_image_with_probability_p():
    mean, std = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
    images = images_of(200, 3, 9, 16)
    erased, before = (BatchAugment(mean, std, AugmentConfig(pad=0, hflip=False, random_erasing=p))(
        images, torch.zeros(200, dtype=torch.long), seed=11)["pixel_values"] for p in (0.5, 0.0))  # fmt: skip
    np.testing.assert_allclose(before.numpy(), normalised(images, mean, std), atol=1e-6)
    changed = (erased != before).any(1)  # (B, H, W)
    hit = changed.flatten(1).any(1)
    assert 70 < int(hit.sum()) < 130  # p = 0.5, per image
    for b in np.flatnonzero(hit.numpy()):
        ys, xs = np.nonzero(changed[b].numpy())
        box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        assert box == len(ys) and box <= 0.25 * 9 * 16 + 9  # one box (round() may add a row), inside the image
        assert torch.equal((erased[b] != before[b]).any(0), (erased[b] != before[b]).all(0))  # every channel
    # What fills the boxes is standard normal noise (in the normalised units), not a constant or the image.
    noise = erased.permute(1, 0, 2, 3)[:, changed].flatten()
    assert len(noise) > 3000 and abs(float(noise.mean())) < 0.1 and abs(float(noise.std()) - 1) < 0.1


@pytest.mark.parametrize("height, width", [(16, 40), (40, 16), (24, 24)])
def test_rotation_and_translation_keep_their_pixel_geometry_on_non_square_images(height, width):
    """RandAugment's warps run in affine_grid's [-1, 1] frame, whose unit differs along a non-square image's sides:
    a blob 4 px right and 2 px below the centre turns by 30 degrees at full strength and keeps its distance (in
    pixels, measured here from the output's centroid); a translation moves by 45% of the side it runs along."""
    from hf_vit.augment import RANDAUGMENT_OPS

    def centroid(image):
        ys, xs = np.mgrid[0:height, 0:width]
        m = image[0, 0].numpy()
        return (m * ys).sum() / m.sum(), (m * xs).sum() / m.sum()

    cy, cx = (height - 1) / 2, (width - 1) / 2
    ys, xs = np.mgrid[0:height, 0:width]
    blob = np.exp(-((ys - cy - 2) ** 2 + (xs - cx - 4) ** 2) / 1.3)  # smooth: bilinear sampling keeps its centroid
    x = torch.from_numpy(blob).float()[None, None]
    y0, x0 = centroid(x)
    for v in (1.0, -1.0):
        y1, x1 = centroid(RANDAUGMENT_OPS["rotate"](x, torch.tensor([v])))
        turned = np.degrees(np.arctan2(y1 - cy, x1 - cx) - np.arctan2(y0 - cy, x0 - cx))
        assert abs(abs(turned) - 30) < 0.5 and abs(np.hypot(y1 - cy, x1 - cx) - np.hypot(y0 - cy, x0 - cx)) < 0.1
    block = torch.zeros(1, 1, height, width)
    block[0, 0, height // 2 - 1 : height // 2 + 1, width // 2 - 1 : width // 2 + 1] = 1
    by, bx = centroid(block)
    for op, axis, side in (("translate_x", 1, width), ("translate_y", 0, height)):
        moved = centroid(RANDAUGMENT_OPS[op](block, torch.tensor([0.5])))  # half strength: stays inside
        shift = np.subtract(moved, (by, bx))
        assert abs(abs(shift[axis]) - 0.225 * side) < 0.05 and abs(shift[1 - axis]) < 1e-6, (op, shift)


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------
def test_metrics_of_a_hand_worked_example():
    """5 classes: 0 and 1 confused, 2 never predicted, 3 predicted but never true, 4 in neither."""
    labels = [0, 0, 0, 1, 1, 2, 2, 1]
    preds = [0, 0, 1, 1, 0, 1, 3, 1]
    scores = np.full((8, 5), -1.0)
    scores[np.arange(8), preds] = 2.0
    scores[0, 2] = scores[5, 2] = 1.0  # second best: class 2 (true for image 5: a top-2 hit)
    m = classification_metrics(scores, labels, top_k=(2, 5))
    assert m["accuracy"] == 4 / 8
    # top 2 of the rows, ties (-1) going to the lower class id: image 5 gets {1, 2}; 6 gets {3, 0}; the rest
    # have their prediction and 0 (or 1 for a prediction of 0): hits at 0, 1, 2, 3, 4, 5, 7.
    assert m["top2_accuracy"] == 7 / 8 and m["top5_accuracy"] == 1.0
    # class: tp, predicted, true -> precision, recall, f1 (0/0 is None: no score; 0 in the macro means)
    # 0: 2, 3, 3 -> 2/3, 2/3, 2/3     1: 2, 4, 3 -> 1/2, 2/3, 4/7     2: 0, 0, 2 -> None, 0, 0
    # 3: 0, 1, 0 -> 0, None, 0        4: absent from both -> None, left out of the means
    want = {"0": (2 / 3, 2 / 3, 2 / 3, 3), "1": (1 / 2, 2 / 3, 4 / 7, 3), "2": (None, 0, 0, 2), "3": (0, None, 0, 0),
            "4": (None, None, None, 0)}
    for name, (p, r, f, support) in want.items():
        got = m["per_class"][name]
        assert got["support"] == support
        for key, value in (("precision", p), ("recall", r), ("f1", f)):
            assert (got[key] is None) if value is None else abs(got[key] - value) < 1e-12, (name, key)
    assert abs(m["macro_precision"] - (2 / 3 + 1 / 2) / 4) < 1e-12
    assert abs(m["macro_recall"] - (2 / 3 + 2 / 3) / 4) < 1e-12
    assert abs(m["macro_f1"] - (2 / 3 + 4 / 7) / 4) < 1e-12
    # rows the true class, columns the predicted one: (0, 0) twice, (0, 1), (1, 1) twice, (1, 0), (2, 1), (2, 3)
    assert m["confusion_matrix"] == [[2, 1, 0, 0, 0], [1, 2, 0, 0, 0], [0, 1, 0, 1, 0], [0] * 5, [0] * 5]


def test_top_k_ties_go_to_the_lower_class_id_as_argmax_picks():
    scores = np.array([[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    for labels, acc, top2, top3 in [([0, 1, 3], 2 / 3, 2 / 3, 2 / 3), ([2, 3, 2], 0, 0, 1)]:
        m = classification_metrics(scores, labels, top_k=(2, 3))
        assert (m["accuracy"], m["top2_accuracy"], m["top3_accuracy"]) == (acc, top2, top3), labels


def naive_metrics(scores, labels, ks):
    n, classes = len(scores), len(scores[0])
    preds = [max(range(classes), key=lambda c: (scores[i][c], -c)) for i in range(n)]
    out = {"accuracy": sum(p == y for p, y in zip(preds, labels)) / n}
    for k in ks:
        ranked = [sorted(range(classes), key=lambda c: (-scores[i][c], c))[:k] for i in range(n)]
        out[f"top{k}_accuracy"] = sum(labels[i] in ranked[i] for i in range(n)) / n
    rows = []
    for c in range(classes):
        tp = sum(p == c and y == c for p, y in zip(preds, labels))
        npred, ntrue = preds.count(c), list(labels).count(c)
        if npred == 0 and ntrue == 0:
            continue
        p = tp / npred if npred else 0.0
        r = tp / ntrue if ntrue else 0.0
        rows.append((p, r, 2 * p * r / (p + r) if p + r else 0.0))
    for j, name in enumerate(("macro_precision", "macro_recall", "macro_f1")):
        out[name] = sum(row[j] for row in rows) / len(rows)
    return out


def test_metrics_match_a_loop_over_random_cases_with_ties_and_missing_classes():
    rng = np.random.default_rng(0)
    for case in range(60):
        classes, n = int(rng.integers(2, 7)), int(rng.integers(1, 30))
        scores = rng.integers(0, 3, (n, classes)).astype(np.float64)  # few values: many ties
        labels = rng.integers(0, max(1, classes - 1), n).tolist()  # the last class never true
        ks = [k for k in (2, 3, 5) if k <= classes]
        got = classification_metrics(scores, labels, top_k=ks)
        for key, value in naive_metrics(scores.tolist(), labels, ks).items():
            assert abs(got[key] - value) < 1e-12, (case, key)
        # batch by batch (batch_eval_metrics) gives the whole set's numbers
        from types import SimpleNamespace

        halves = [(scores[: n // 2], labels[: n // 2]), (scores[n // 2 :], labels[n // 2 :])]
        if n > 1 and classes > 3:
            compute_metrics(SimpleNamespace(predictions=halves[0][0], label_ids=np.array(halves[0][1])), False)
            whole = compute_metrics(SimpleNamespace(predictions=halves[1][0], label_ids=np.array(halves[1][1])), True)
            assert whole == {k: got[k] for k in ("accuracy", "top3_accuracy", "macro_f1")}, case
