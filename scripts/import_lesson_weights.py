"""Import weights saved from the lesson's ViT (`torch.save(model.state_dict(), "vit.pt")`) into hf_vit.

    python scripts/import_lesson_weights.py vit.pt runs/lesson-import --heads 8
    python scripts/import_lesson_weights.py vit.safetensors out --config lesson_cfg.json
    python scripts/import_lesson_weights.py vit.pt out --heads 8 --image_size 32 64 --patch_size 4 8

The lesson's cfg fields come from --config (a JSON object) and the flags below (flags win);
the rest are read off the weight shapes (image and patch sizes as squares, with 3
channels unless --channels says otherwise, and said: give a non-square one as H W;
sizes given are checked against the weights). The load is strict: a wrong or partial state
dict stops with the missing and unexpected keys. .pt files load with
torch.load(weights_only=True): pickled objects other than tensors are refused. Of a
training checkpoint holding several state dicts, the model's own is taken and the
others named (--key picks one).
The weights are saved as float32 (what training from the folder needs; half-precision
weights are said when changed): --dtype auto keeps their own, like transformers' dtype (formerly torch_dtype).
The weights carry no class names: --labels gives them (default: CIFAR-10's for a
10-class head, the lesson's dataset). Writes a complete model folder (config,
safetensors, remote code, image processor, card).
"""

import argparse
import json
import logging
import sys
from contextlib import contextmanager
from pathlib import Path

try:  # the libraries take seconds to load, before the script's own answer to Ctrl-C is in place
    from hf_vit import HfViTConfig
    from hf_vit.data import flags_in_messages
    from hf_vit.import_lesson import DTYPES, import_lesson_weights
    from hf_vit.interrupted import run_script
    from hf_vit.output_folder import refuse_several_processes
    from hf_vit.presets import SHAPE_MEANINGS
except KeyboardInterrupt:  # nothing was done yet: one line and Ctrl-C's status, not a traceback
    print("import_lesson_weights.py: interrupted while loading its libraries; nothing was done.", file=sys.stderr)
    sys.exit(130)

INT_FIELDS = ("num_classes", "dim", "depth", "heads", "dim_head", "mlp_dim", "channels")
SIZE_FIELDS = ("image_size", "patch_size")  # one number (square) or two (height width), as the lesson's cfg
FLOAT_FIELDS = ("dropout", "emb_dropout")
READ = "(default: read off the weights)"
# The lesson's cfg fields as flags: what each means, and where it comes from when not given.
FIELD_HELP = {
    "num_classes": f"classes of the head {READ}",
    **{name: f"{SHAPE_MEANINGS[name]} {READ}" for name in ("dim", "depth", "mlp_dim")},
    "heads": "attention heads (no default: the weights hold the attention width heads * dim_head but not its "
             "split, so give --heads or --dim_head; a model whose attention has no output projection has one head)",
    "dim_head": "width of one head (default: the weights' attention width / --heads)",
    "channels": "colour channels of the input images (default: 3, the lesson's; 1 for grey images)",
    "dropout": "dropout in attention and feed-forward, used only when training on from the folder (default: 0; "
               "the weights keep no trace of it)",
    "emb_dropout": "dropout after the position embedding, used only when training on from the folder (default: "
                   "0; the weights keep no trace of it)",
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", help="the lesson's state dict: .pt/.pth (torch.save) or .safetensors")
    parser.add_argument("output_dir", help="where to write the hf_vit model folder")
    parser.add_argument("--config", default=None, help="JSON file with the lesson's cfg fields")
    for name in SIZE_FIELDS:
        parser.add_argument(f"--{name}", type=int, nargs="+", default=None, metavar="N",
                            help=f"{SHAPE_MEANINGS[name]}: N for a square, or H W (default: read off the weights, "
                            "assuming a square)")
    for name in INT_FIELDS:
        parser.add_argument(f"--{name}", type=int, default=None, help=FIELD_HELP[name])
    for name in FLOAT_FIELDS:
        parser.add_argument(f"--{name}", type=float, default=None, help=FIELD_HELP[name])
    parser.add_argument("--pool", choices=("cls", "mean"), default=None, help="what the head reads: the [CLS] token or the mean of all tokens (default: cls, as the lesson; the "
                        "weights fit either)")
    parser.add_argument("--image_mean", type=float, nargs="+", default=None,
                        help="per-channel mean the weights were trained with (default: CIFAR-10's, 3 channels)")
    parser.add_argument("--image_std", type=float, nargs="+", default=None,
                        help="per-channel std the weights were trained with (default: CIFAR-10's, 3 channels)")
    parser.add_argument("--labels", nargs="+", default=None, metavar="NAME",
                        help="the class names, in the order of the head's outputs (default: CIFAR-10's for 10 "
                             "classes, else LABEL_0, LABEL_1, ...)")
    parser.add_argument("--dtype", choices=DTYPES, default=None,
                        help="the dtype the model folder's weights are saved in, as transformers' dtype "
                             "(default: float32, what training from the folder needs; half-precision weights are said "
                             "when they are changed; auto: the weights' own, e.g. float16 or bfloat16)")
    parser.add_argument("--key", default=None,
                        help="for a training checkpoint dict holding several state dicts (the model and its EMA copy, "
                             "a student and a teacher): the entry to import (default: the model's own, said; none "
                             "plainly the model's stops the import)")
    parser.add_argument("--overwrite", action="store_true", help="replace output_dir if it exists")
    args = parser.parse_args(argv)

    cfg = {}
    if args.config:
        try:
            cfg = json.loads(Path(args.config).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            sys.exit(f"error: cannot read the config {args.config}: {err}")
        if not isinstance(cfg, dict):
            sys.exit(f"error: {args.config} must hold a JSON object of the lesson's cfg fields.")
    for name in SIZE_FIELDS:
        size = getattr(args, name)
        if size is not None and len(size) > 2:
            parser.error(f"--{name} takes one number (a square) or two (height width), got {len(size)}.")
        if size is not None:
            cfg[name] = size[0] if len(size) == 1 else size
    cfg.update({k: v for k in (*INT_FIELDS, *FLOAT_FIELDS, "pool") if (v := getattr(args, k)) is not None})
    try:
        refuse_several_processes("import_lesson_weights.py", "each would import the weights into the same output_dir")
        with flags_in_messages(), _notes() as notes:  # the import's messages name this script's flags
            out = import_lesson_weights(
                args.weights, args.output_dir, cfg, overwrite=args.overwrite, image_mean=args.image_mean,
                image_std=args.image_std, labels=args.labels, key=args.key, dtype=args.dtype,
            )
    except (ValueError, OSError) as err:  # OSError: missing, unreadable or clashing files
        sys.exit(f"error: {err}")
    c = HfViTConfig.from_pretrained(out)
    print(f"imported into {out}: image {_size(c.image_size)}, patch {_size(c.patch_size)}, dim {c.dim}, depth "
          f"{c.depth}, {c.heads} heads of {c.dim_head}, mlp_dim {c.mlp_dim}, pool {c.pool}, {c.num_labels} classes "
          f"({', '.join(c.id2label[i] for i in range(min(c.num_labels, 10)))}{', ...' if c.num_labels > 10 else ''}), "
          f"{str(c.dtype or 'float32').removeprefix('torch.')} weights")
    for note in notes:  # what the import chose on its own (e.g. which of a checkpoint's state dicts)
        print(f"note: {note}")
    if args.labels is None:  # the weights carry no names: say where these came from
        print("note: --labels not given: the class names above are " + (
            "CIFAR-10's (the lesson's dataset)" if c.num_labels == 10 else "placeholders") + "; if the lesson trained "
              "on other classes, import again with --labels NAME ... --overwrite.")
    if "pool" not in cfg:  # no trace in the weights: a mean-pooled model imports as a [CLS]-pooled one
        print("note: --pool not given: the model pools the [CLS] token, as the lesson's cfg does by default. If the "
              "lesson's cfg said pool='mean', import again with --pool mean --overwrite: the weights fit either way, "
              "but the logits differ.")


@contextmanager
def _notes():
    """The import's warnings, collected to be printed as notes once it has succeeded (not on stderr meanwhile)."""
    notes, log = [], logging.getLogger("hf_vit.import_lesson")

    class Collect(logging.Handler):
        def emit(self, record):
            notes.append(record.getMessage())

    handler, propagate = Collect(logging.WARNING), log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield notes
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


def _size(value):
    height, width = (value, value) if isinstance(value, int) else value
    return f"{height}x{width}"


if __name__ == "__main__":  # the import is written into a hidden staging folder, which replaces output_dir when whole
    sys.exit(run_script("import_lesson_weights.py", main, "nothing was imported: output_dir is as it was (an import "
                        "replaces it whole, or not at all). Rerun the same command."))
