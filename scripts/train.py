"""Train the ViT on CIFAR-10 (or any image dataset in the Hub layout) with the transformers Trainer.

    python scripts/train.py --recipe cpu --dataset_name ../shared/data/cifar10 --output_dir runs/cpu
    accelerate launch scripts/train.py --recipe gpu --dataset_name ../shared/data/cifar10 --output_dir runs/gpu
    torchrun --nproc_per_node 2 scripts/train.py --config_file my_recipe.yaml

All arguments: `python scripts/train.py --help`. The work is done in `hf_vit.training`.
"""

import sys

from hf_vit.training import main

if __name__ == "__main__":
    sys.stdout.reconfigure(errors="backslashreplace")  # class names an ASCII terminal cannot show: escaped, not fatal
    sys.exit(main())
