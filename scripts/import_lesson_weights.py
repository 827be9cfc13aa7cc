"""Import weights saved from the lesson's ViT (`torch.save(model.state_dict(), "vit.pt")`) into hf_vit.

    python scripts/import_lesson_weights.py vit.pt runs/lesson-import --heads 8
    python scripts/import_lesson_weights.py vit.safetensors out --config lesson_cfg.json

The lesson's cfg fields come from --config (a JSON object) and the flags below (flags win);
the rest are read off the weight shapes. The load is strict: a wrong or partial state
dict stops with the missing and unexpected keys. .pt files load with
torch.load(weights_only=True): pickled objects other than tensors are refused.
Writes a complete model folder (config, safetensors, remote code, image processor, card).
"""

import argparse
import json
import sys
from pathlib import Path

from hf_vit.import_lesson import import_lesson_weights

INT_FIELDS = ("image_size", "patch_size", "num_classes", "dim", "depth", "heads", "dim_head", "mlp_dim", "channels")
FLOAT_FIELDS = ("dropout", "emb_dropout")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", help="the lesson's state dict: .pt/.pth (torch.save) or .safetensors")
    parser.add_argument("output_dir", help="where to write the hf_vit model folder")
    parser.add_argument("--config", default=None, help="JSON file with the lesson's cfg fields")
    for name in INT_FIELDS:
        parser.add_argument(f"--{name}", type=int, default=None)
    for name in FLOAT_FIELDS:
        parser.add_argument(f"--{name}", type=float, default=None)
    parser.add_argument("--pool", choices=("cls", "mean"), default=None, help="default: cls (as the lesson)")
    parser.add_argument("--image_mean", type=float, nargs="+", default=None,
                        help="per-channel mean the weights were trained with (default: CIFAR-10's, 3 channels)")
    parser.add_argument("--image_std", type=float, nargs="+", default=None,
                        help="per-channel std the weights were trained with (default: CIFAR-10's, 3 channels)")
    parser.add_argument("--overwrite", action="store_true", help="replace output_dir if it exists")
    args = parser.parse_args(argv)

    cfg = {}
    if args.config:
        try:
            cfg = json.loads(Path(args.config).read_text())
        except (OSError, json.JSONDecodeError) as err:
            sys.exit(f"error: cannot read the config {args.config}: {err}")
        if not isinstance(cfg, dict):
            sys.exit(f"error: {args.config} must hold a JSON object of the lesson's cfg fields.")
    cfg.update({k: v for k in (*INT_FIELDS, *FLOAT_FIELDS, "pool") if (v := getattr(args, k)) is not None})
    try:
        out = import_lesson_weights(
            args.weights, args.output_dir, cfg, overwrite=args.overwrite, image_mean=args.image_mean, image_std=args.image_std
        )
    except (ValueError, OSError) as err:  # OSError: missing, unreadable or clashing files
        sys.exit(f"error: {err}")
    print(f"imported into {out}")


if __name__ == "__main__":
    main()
