"""A tiny CIFAR-10 look-alike in the Hub's layout, built on the fly.

`load_dataset(folder)` on it gives what `load_dataset("uoft-cs/cifar10")`
gives: columns `img` (Image) and `label` (ClassLabel with the 10 CIFAR-10
names), splits train and test. Each class has its own colour and stripe
orientation, so a small model can learn it in a few steps.
"""

import json
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, Features, Image

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

README = """---
configs:
- config_name: plain_text
  data_files:
  - split: train
    path: plain_text/train-*
  - split: test
    path: plain_text/test-*
  default: true
dataset_info:
  config_name: plain_text
  features:
  - name: {image_column}
    dtype: image
  - name: {label_column}
    dtype:
      class_label:
        names:
{names}
---
# Tiny synthetic CIFAR-10 look-alike (tests only)
"""


def class_image(label: int, rng: np.random.Generator, size: int = 32, num_classes: int = 10) -> np.ndarray:
    """A (size, size, 3) uint8 image whose colour and stripes encode `label`, plus noise."""
    hue = np.array([(label * 37) % 256, (label * 91 + 60) % 256, (label * 53 + 120) % 256], dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    stripes = ((xx if label % 2 else yy) // (2 + label % 4)) % 2
    img = hue[None, None, :] * (0.5 + 0.5 * stripes[..., None]) + rng.normal(0, 12, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_tiny_cifar(
    root,
    n_train: int = 200,
    n_test: int = 50,
    size: int = 32,
    seed: int = 0,
    image_column: str = "img",
    label_column: str = "label",
    names=CIFAR10_NAMES,
) -> Path:
    """Write the dataset under `root` and return it (a folder `load_dataset` accepts)."""
    root = Path(root)
    (root / "plain_text").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    features = Features({image_column: Image(), label_column: ClassLabel(names=list(names))})
    for split, n in (("train", n_train), ("test", n_test)):
        labels = [i % len(names) for i in range(n)]
        rng.shuffle(labels)
        images = [class_image(int(y), rng, size, len(names)) for y in labels]
        from PIL import Image as PILImage

        ds = Dataset.from_dict(
            {image_column: [PILImage.fromarray(a) for a in images], label_column: labels}, features=features
        )
        ds.to_parquet(str(root / "plain_text" / f"{split}-00000-of-00001.parquet"))
    name_lines = "\n".join(f"          '{i}': {json.dumps(str(n))}" for i, n in enumerate(names))  # quoted: yes/no stay text
    (root / "README.md").write_text(
        README.format(image_column=image_column, label_column=label_column, names=name_lines)
    )
    return root
