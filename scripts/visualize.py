"""Teaching pictures for one image: patch grid, one patch's numbers and the token they make, positional-embedding
similarity, attention and rollout into what the head reads ([CLS], or the mean of all tokens for pool="mean"),
feature norms, and the image with its patches shuffled, answered with and without positions (see
hf_vit/teaching.py).

    # a fresh (untrained) model and an image file
    python scripts/visualize.py --preset tiny --image cat.png --output_dir pictures/fresh
    # a trained model folder and test image 3 of CIFAR-10
    python scripts/visualize.py --model runs/cpu --dataset ../shared/data/cifar10 --index 3 --output_dir pictures/cpu
"""

import argparse
import sys

try:  # the libraries take seconds to load, before the script's own answer to Ctrl-C is in place
    from hf_vit.data import flags_in_messages
    from hf_vit.interrupted import results_left, run_script
    from hf_vit.output_folder import refuse_several_processes
    from hf_vit.presets import SHAPE_MEANINGS
    from hf_vit.teaching import (
        MAX_PICTURE_SIDE,
        PICTURES,
        PRESETS,
        check_output_dir,
        check_patch,
        check_pictures,
        fresh_model,
        load_dataset_image,
        load_image_file,
        load_model,
        write_pictures,
    )
except KeyboardInterrupt:  # nothing was done yet: one line and Ctrl-C's status, not a traceback
    print("visualize.py: interrupted while loading its libraries; nothing was done.", file=sys.stderr)
    sys.exit(130)

CONFIG_FLAGS = ("image_size", "patch_size", "dim", "depth", "heads", "dim_head", "mlp_dim")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_argument_group("model: a trained folder, or a fresh model from a preset and flags")
    model.add_argument("--model", help="model folder (config.json, model.safetensors, remote code) or Hub id")
    model.add_argument("--revision", help="with --model: a branch, tag or commit of the Hub model (default: its main "
                       "branch; not for a folder)")
    model.add_argument("--trust_remote_code", action="store_true",
                       help="let a --model whose architecture hf_vit does not know run its own .py files (only for a "
                       "model you trust; hf_vit models never need it)")
    model.add_argument("--preset", choices=sorted(PRESETS),
                       help="fresh model shape, as train.py's --preset (default: 'default', HfViTConfig(), the same as "
                       "'lesson')")
    # default None, 0 in effect: given with --model it would be ignored, so it is refused there
    model.add_argument("--seed", type=int, default=None, help="seed of the fresh model's initialisation (default: 0)")
    for name in CONFIG_FLAGS:  # the sizes are no preset's: HfViTConfig's own defaults
        default = {"image_size": "32", "patch_size": "4"}.get(name, "the --preset's")
        model.add_argument(f"--{name}", type=int, help=f"fresh model: {SHAPE_MEANINGS[name]} (default: {default})")
    model.add_argument("--pool", choices=("cls", "mean"),
                       help="fresh model: what the head reads, [CLS] alone or the mean of all tokens (default: the "
                       "--preset's)")
    image = parser.add_argument_group("image: a file, or one image of a dataset split")
    source = image.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", help="an image file (PNG/JPEG); resized to the model's image size")
    source.add_argument("--dataset", help="dataset folder or Hub id that datasets.load_dataset reads")
    image.add_argument("--dataset_revision", help="with --dataset: a branch, tag or commit of the Hub dataset "
                       "(default: its main branch; not for a folder)")
    # default None, "test" in effect: given with --image it would be ignored, so it is refused there
    image.add_argument("--split", default=None, help="dataset split (default: test)")
    image.add_argument("--index", type=int, help="row of the split to draw (needed with --dataset)")
    image.add_argument("--image_column", default=None, help="with --dataset; default: img, else image (as training)")
    image.add_argument("--label_column", default=None,
                       help="with --dataset; default: label, else labels (as training); a dataset without one: no true class shown")
    parser.add_argument("--output_dir", required=True, help="where the PNGs and pictures.json go")
    parser.add_argument(
        "--pictures", default=",".join(PICTURES),
        help=f"the pictures to draw, comma-separated, e.g. patch_grid,rollout (default: all: {', '.join(PICTURES)})"
    )
    parser.add_argument("--scale", type=int,
                        help="upscaling of the patch grid picture (default: 8, or more where its token numbers need "
                        f"larger cells, e.g. 10 for 2x2 patches; at most {MAX_PICTURE_SIDE} px a side). "
                        f"The other pictures keep to {MAX_PICTURE_SIDE} px a side too: their panels are drawn smaller "
                        "where needed, with a "
                        "message naming the picture")
    parser.add_argument("--patch", type=int,
                        help="the patch patch_numbers.png shows, by its token number in patch_grid.png (1..N; default: "
                        "the patch whose numbers vary most)")
    args = parser.parse_args(argv)

    fresh_only = [f"--{n}" for n in ("preset", "seed", *CONFIG_FLAGS, "pool") if getattr(args, n) is not None]
    if args.model and fresh_only:
        one = len(fresh_only) == 1
        parser.error(f"--model loads a trained model; {' '.join(fresh_only)} only appl{'ies' if one else 'y'} to a "
                     f"fresh model: leave {'it' if one else 'them'} out, or leave out --model.")
    if args.revision is not None and not args.model:
        parser.error("--revision pins the Hub model --model names; a fresh model has none. Pass --model OWNER/NAME, "
                     "or leave --revision out.")
    if args.dataset_revision is not None and not args.dataset:
        parser.error("--dataset_revision pins the Hub dataset --dataset names; an --image file has none. Pass "
                     "--dataset OWNER/NAME --index N, or leave --dataset_revision out.")
    if args.dataset and args.index is None:
        parser.error("--dataset needs --index N (which image of the split to draw).")
    dataset_only = [f"--{n}" for n in ("index", "split", "image_column", "label_column")
                    if getattr(args, n) is not None]
    if args.image and dataset_only:
        parser.error(f"{' '.join(dataset_only)} only appl{'ies' if len(dataset_only) == 1 else 'y'} with --dataset.")
    args.split = "test" if args.split is None else args.split  # "" is no split: the dataset says so, not test
    if args.scale is not None and args.scale < 1:
        parser.error(f"--scale must be >= 1, got {args.scale}.")
    args.pictures = [p.strip() for p in args.pictures.split(",") if p.strip()]
    if not args.pictures:
        parser.error(f"--pictures names no picture; choose from {','.join(PICTURES)} (all by default).")
    # --scale sizes patch_grid.png alone (the others fit their panels to the size limit): without it, it would be
    # ignored without a word. An unknown picture name is refused first, by _draw, in its own words.
    if args.scale is not None and "patch_grid" not in args.pictures and set(args.pictures) <= set(PICTURES):
        parser.error(f"--scale {args.scale} sizes patch_grid.png, which --pictures leaves out. Add patch_grid to "
                     "--pictures, or leave --scale out.")
    return args


def main(argv=None):
    args = parse_args(argv)
    with flags_in_messages():  # hf_vit.teaching's messages name this script's flags (--output_dir, --model)
        written = _draw(args)
    for path in written.values():
        print(path)


def _draw(args) -> dict:
    """The pictures of `args`, written; {name: path}. Any refusal exits with its `error: ...` line."""
    try:
        refuse_several_processes("visualize.py", "each would draw the same pictures into the same --output_dir")
        check_pictures(args.pictures)  # before the model and the image load: loading them takes seconds
        check_patch(None, args.patch, args.pictures)  # its range needs the model: write_pictures checks it
        check_output_dir(args.output_dir)
        if args.model:
            model, processor = load_model(args.model, trust_remote_code=args.trust_remote_code, revision=args.revision)
            channels = getattr(model.config, "num_channels", 3)
            if processor is None and channels != 3:  # CIFAR-10's statistics are three numbers: nothing to assume
                raise ValueError(
                    f"{args.model} has no preprocessor_config.json, and CIFAR-10's mean and std fit 3 channels, not "
                    f"{channels}. Save the model's own processor there: hf_vit.make_image_processor(config, mean, "
                    "std).save_pretrained(folder), with the statistics it was trained with."
                )
            if processor is None:  # no preprocessor_config.json (a broken one is refused): say what is assumed
                print(f"note: {args.model} has no preprocessor_config.json: the image is normalised with CIFAR-10's "
                      "mean and std (hf_vit's default). If the model was trained with others, save its processor "
                      "there (hf_vit.make_image_processor(config, mean, std).save_pretrained(folder)).", file=sys.stderr)
        else:
            fields = {n: getattr(args, n) for n in (*CONFIG_FLAGS, "pool")}
            model, processor = fresh_model(args.preset or "default", seed=args.seed or 0, **fields), None
        if args.image:
            image, label, source = load_image_file(args.image), None, args.image
        else:
            image, label = load_dataset_image(args.dataset, args.index, split=args.split,
                                              image_column=args.image_column, label_column=args.label_column,
                                              id2label=model.config.id2label,
                                              dataset_revision=args.dataset_revision)
            # a pinned dataset as the Hub's file system names it (hf://datasets/owner/name@revision)
            pinned = f"@{args.dataset_revision}" if args.dataset_revision is not None else ""
            source = f"{args.dataset}{pinned} [{args.split}][{args.index}]"
        return write_pictures(
            model, image, args.output_dir, processor=processor, pictures=args.pictures,
            scale=args.scale, label=label, source=source, patch=args.patch,
        )
    except (ValueError, OSError) as err:  # OSError: missing, unreadable or unwritable files, an unreachable Hub
        sys.exit(f"error: {err}")


if __name__ == "__main__":  # pictures.json, written last, marks a whole set; it goes first when one is replaced
    sys.exit(run_script("visualize.py", main, lambda: results_left(parse_args().output_dir, "pictures.json",
                                                                    "set of pictures")))
