"""Train the ViT on CIFAR-10 (or any image dataset in the Hub layout) with the transformers Trainer.

    python scripts/train.py --recipe cpu --dataset_name ../shared/data/cifar10 --output_dir runs/cpu
    accelerate launch scripts/train.py --recipe gpu --dataset_name ../shared/data/cifar10 --output_dir runs/gpu
    torchrun --nproc_per_node 2 scripts/train.py --config_file my_recipe.yaml

All arguments: `python scripts/train.py --help`. The work is done in `hf_vit.training`.
"""

import sys

try:  # the libraries take seconds to load, before the script's own answer to Ctrl-C is in place
    from hf_vit.training import main
except KeyboardInterrupt:  # nothing was done yet: one line and Ctrl-C's status, not a traceback
    print("train.py: interrupted while loading its libraries; nothing was done.", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.stdout.reconfigure(errors="backslashreplace")  # class names an ASCII terminal cannot show: escaped, not fatal
    sys.exit(main())
