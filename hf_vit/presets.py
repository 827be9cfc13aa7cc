"""Model shapes by name, shared by training (train.py --preset) and the teaching pictures (visualize.py --preset),
so that a fresh model drawn under a name has the shape a model trained under that name has."""

PRESETS = {
    "tiny": dict(dim=64, depth=2, heads=2, dim_head=32, mlp_dim=128),  # tests, smoke runs
    "lesson": dict(dim=192, depth=6, heads=3, dim_head=64, mlp_dim=768),  # the lesson's (HfViTConfig defaults)
    "small": dict(dim=128, depth=6, heads=4, dim_head=32, mlp_dim=256, pool="mean"),  # 2 CPU cores
    "base": dict(dim=384, depth=9, heads=12, dim_head=32, mlp_dim=1536),  # one GPU, from scratch
}

# What each of the lesson's shape fields means, for the --help of every script that takes them as flags.
SHAPE_MEANINGS = {
    "image_size": "input size in pixels",
    "patch_size": "patch size in pixels",
    "dim": "token width",
    "depth": "number of encoder blocks",
    "heads": "attention heads",
    "dim_head": "width of one head",
    "mlp_dim": "feed-forward hidden width",
}

__all__ = ["PRESETS", "SHAPE_MEANINGS"]
