"""Where the model looked: [CLS] attention and attention rollout.

Both take the `attentions` that `model(..., output_attentions=True)` returns:
a tuple of `depth` tensors of shape (B, heads, N+1, N+1), rows summing to 1.
"""

import numpy as np
import torch
from PIL import Image


def cls_attention(attentions, layer: int = -1, head: int | None = None) -> torch.Tensor:
    """How much [CLS] attends to each patch in one layer: (B, N), averaged over heads unless `head` is given."""
    attn = attentions[layer]  # (B, heads, N+1, N+1)
    attn = attn.mean(dim=1) if head is None else attn[:, head]  # (B, N+1, N+1)
    return attn[:, 0, 1:]  # row of [CLS], patch columns  (B, N)


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


def patch_map_to_grid(weights: torch.Tensor, grid_size) -> np.ndarray:
    """(N,) patch weights -> (gh, gw) array in patch order (row by row, as the Rearrange reads them)."""
    gh, gw = grid_size
    return weights.detach().float().cpu().reshape(gh, gw).numpy()


def overlay_heatmap(image: Image.Image, heat: np.ndarray, alpha: float = 0.5, scale: int = 1) -> Image.Image:
    """Lay a (gh, gw) map over an RGB image: red = high, transparent-ish blue = low."""
    image = image.convert("RGB")
    if scale != 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    h = np.asarray(heat, dtype=np.float64)
    h = (h - h.min()) / (h.max() - h.min() + 1e-12)
    # A simple blue -> yellow -> red ramp, no plotting library needed.
    r, g, b = np.clip(2 * h, 0, 1), np.clip(1 - np.abs(2 * h - 1), 0, 1), np.clip(1 - 2 * h, 0, 1)
    rgb = np.stack([r, g, b], axis=-1)  # (gh, gw, 3)
    heat_img = Image.fromarray((rgb * 255).astype(np.uint8)).resize(image.size, Image.BILINEAR)
    return Image.blend(image, heat_img, alpha)
