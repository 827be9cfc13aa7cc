"""A minimal model card (README.md) for a trained model folder.

Placeholder with the final signature: the Hub feature replaces it with a card
rendered from the top-level `model_card.md` template.
"""

import json
from pathlib import Path


def _read(path: Path):
    return json.loads(path.read_text()) if path.is_file() else {}


def write_model_card(model_dir, repo_id=None) -> Path:
    """Write `<model_dir>/README.md` from config.json, metrics.json and training_recipe.json; return its path."""
    model_dir = Path(model_dir)
    config, metrics = _read(model_dir / "config.json"), _read(model_dir / "metrics.json")
    name = repo_id or model_dir.name
    shape = ", ".join(f"{k} {config[k]}" for k in ("patch_size", "dim", "depth", "heads", "dim_head", "mlp_dim") if k in config)
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: image-classification",
        "tags: [vision-transformer, hf_vit, cifar10]",
        "---",
        f"# {name}",
        "",
        f"A Vision Transformer (`hf_vit`, {shape}) trained from scratch on `{metrics.get('dataset', 'CIFAR-10')}`.",
        "",
    ]
    if "accuracy" in metrics:
        val = (metrics.get("validation") or {}).get("accuracy")
        lines += [
            f"Test accuracy: **{metrics['accuracy']:.4f}** on {metrics.get('num_examples', '?')} images"
            + (f" (best validation accuracy {val:.4f})." if val is not None else "."),
            "",
        ]
    lines += [
        "```python",
        "from transformers import pipeline",
        f'classify = pipeline("image-classification", model="{name}", trust_remote_code=True)',
        "```",
        "",
    ]
    path = model_dir / "README.md"
    path.write_text("\n".join(lines))
    return path
