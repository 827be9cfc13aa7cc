"""Where the model looked: attention and attention rollout into what the head reads.

Both take the `attentions` that `model(..., output_attentions=True)` returns:
a tuple of `depth` tensors of shape (B, heads, N+1, N+1), rows summing to 1.

The head reads one vector, set by config.pool (`head_reads`): [CLS]'s final state (pool="cls") or the mean of
all N+1 final tokens, [CLS] included (pool="mean"). Row i of a token-to-token matrix says how token i mixes the
tokens; the mean of N+1 tokens mixes them by the mean of their rows, so for pool="mean" the maps are the mean of
all rows (`pooled_row`): for one layer's attention, the weight each patch's value has in the mean of that layer's
attention outputs (the attention it receives, averaged over all queries), which the residual stream adds as it is
into the pooled vector (mean_i sum_j A[i, j] v[j] = sum_j mean_i(A[i, j]) v[j]), as [CLS]'s row weighs the values
in what that layer adds to [CLS]; for the rollout, the flow from each input patch into the pooled vector.
"""

import numpy as np
import torch
from PIL import Image


POOLS = ("cls", "mean")
# What the maps show, per pooling: said the same way in the pictures, pictures.json, metrics.json and the report.
MAPS_SHOW = {
    "cls": "[CLS]'s attention (its row of each matrix): the head reads [CLS]'s final state",
    "mean": "attention into the mean-pooled vector (all tokens' rows averaged): the head reads the mean of all "
            "final tokens, not [CLS]",
}


def head_reads(config) -> str | None:
    """"cls" or "mean": which final tokens the classifier's head reads, from config.pool. transformers' ViT (what
    export_to_transformers_vit.py writes) has no `pool`: its classifier reads token 0, [CLS]. None for any other
    config that does not say (or names a pooling other than these two)."""
    pool = getattr(config, "pool", None)
    if pool is None and getattr(config, "model_type", None) == "vit":
        return "cls"
    return pool if pool in POOLS else None


def pooled_row(matrix: torch.Tensor, pool: str) -> torch.Tensor:
    """The row of a (..., N+1, N+1) token-to-token matrix that leads into what the head reads, patch columns only
    (..., N): [CLS]'s row (pool="cls") or the mean of all N+1 rows, [CLS]'s included (pool="mean")."""
    if pool == "cls":
        return matrix[..., 0, 1:]
    if pool == "mean":
        return matrix.mean(dim=-2)[..., 1:]
    raise ValueError(f"unknown pool {pool!r}: the maps follow pool='cls' ([CLS]'s row) or pool='mean' (all rows).")


def pooled_attention(attentions, pool: str, layer: int = -1, head: int | None = None) -> torch.Tensor:
    """One layer's attention into what the head reads (`pooled_row`): (B, N), averaged over heads unless `head`
    is given."""
    attn = attentions[layer]  # (B, heads, N+1, N+1)
    attn = attn.mean(dim=1) if head is None else attn[:, head]  # (B, N+1, N+1)
    return pooled_row(attn, pool)


def cls_attention(attentions, layer: int = -1, head: int | None = None) -> torch.Tensor:
    """How much [CLS] attends to each patch in one layer: (B, N), averaged over heads unless `head` is given."""
    return pooled_attention(attentions, "cls", layer, head)


def attention_rollout(attentions, residual: bool = True) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): the attention flow from the input to every token.

    Per layer, heads are averaged and, with `residual`, the identity is added
    for the skip connection (A' = (A + I) / 2, rows renormalised); the layers'
    matrices are multiplied from the first to the last. Returns (B, N+1, N+1):
    row 0, columns 1.. is the [CLS] token's map over the patches.
    """
    rollout = None
    for attn in attentions:
        a = attn.float().mean(dim=1)  # (B, N+1, N+1)
        if residual:
            eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
            a = (a + eye) / 2
            a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    return rollout


def pooled_rollout(attentions, pool: str) -> torch.Tensor:
    """(B, N): the rollout's flow from each input patch into what the head reads (`pooled_row`)."""
    return pooled_row(attention_rollout(attentions), pool)


def patch_map_to_grid(weights: torch.Tensor, grid_size) -> np.ndarray:
    """(N,) patch weights -> (gh, gw) array in patch order (row by row, as the Rearrange reads them)."""
    gh, gw = grid_size
    return weights.detach().float().cpu().reshape(gh, gw).numpy()


# Inferno (matplotlib's colour map, public domain (CC0); sampled at 11 even steps), dark to bright: its luminance
# rises all the way, so the most attended patch is the brightest also in greyscale and to colour-blind readers (a blue -> yellow -> red
# ramp made red as dark as mid-grey). Written out here: no plotting library needed.
HEAT_SCALE_NAME = "inferno"  # recorded in metrics.json: the report states the key of the scale the pictures have
# How the maps are drawn (`heat_map_image`: one block per patch, beside the image), recorded in metrics.json too:
# strips of an older evaluation blend the map over the image, and a report rebuilt from them must not say otherwise.
HEAT_MAP_LAYOUT = "blocks"
HEAT_SCALE = np.array([
    (0, 0, 4), (22, 11, 57), (66, 10, 104), (106, 23, 110), (147, 38, 103), (188, 55, 84),
    (221, 81, 58), (243, 120, 25), (252, 165, 10), (246, 215, 70), (252, 255, 164),
], dtype=np.float64)


def heat_colours(values) -> np.ndarray:
    """Colours for values in [0, 1] (clipped): HEAT_SCALE interpolated linearly, 0 darkest. Returns uint8 (..., 3).

    NaN counts as 0 and inf as the largest float (so 1): NaN cast to an index crashed the lookup."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    pos = np.clip(values, 0, 1) * (len(HEAT_SCALE) - 1)
    low = np.minimum(pos.astype(np.int64), len(HEAT_SCALE) - 2)
    frac = (pos - low)[..., None]
    return np.round(HEAT_SCALE[low] + frac * (HEAT_SCALE[low + 1] - HEAT_SCALE[low])).astype(np.uint8)


def heat_map_image(heat: np.ndarray, size) -> Image.Image:
    """A (gh, gw) map as a picture of `size` (width, height): each patch one flat block in `heat_colours`, scaled
    from the map's lowest value (near black) to its highest (pale yellow).

    Not blended over the image, and not smoothed: under a blend a dark object looked less attended than it was (its
    own darkness showed through), and a smooth resize drew gradients inside a patch, which has one weight. Draw the
    image beside the map."""
    h = _finite(np.asarray(heat, dtype=np.float64))
    h = (h - h.min()) / (h.max() - h.min() + 1e-12)
    return Image.fromarray(heat_colours(h)).resize(tuple(size), Image.NEAREST)


def _finite(h: np.ndarray) -> np.ndarray:
    """NaN -> 0, +-inf -> the map's largest / smallest finite value: one bad patch must not blank the whole map
    (its min or max would make every normalised value NaN)."""
    finite = h[np.isfinite(h)]
    top, bottom = (finite.max(), finite.min()) if finite.size else (0.0, 0.0)
    return np.nan_to_num(h, nan=0.0, posinf=top, neginf=bottom)
