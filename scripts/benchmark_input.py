"""Input pipeline vs training speed for a recipe's model on this machine.

    python scripts/benchmark_input.py                      # cpu recipe; the real copy if ../shared/data/cifar10 exists
    python scripts/benchmark_input.py --recipe gpu --steps 20   # the step on the GPU, where train.py trains it

Pipeline img/s = the Trainer's path without the model: DataLoader over the decoded (cached) images,
batch fetched with one indexing op, augmented and normalised by the collator. Training img/s = forward +
backward + AdamW step of the recipe's model on random batches of the same shape. The pipeline should be >= 5x faster.
A recipe with augment_on_device (gpu) augments in the training step, on its device: the pipeline then only
fetches the uint8 batches, and the step's figure includes the augmentation, timed on that device.
"""

import argparse
import os
import sys
import time
from pathlib import Path

try:  # the libraries take seconds to load, before the script's own answer to Ctrl-C is in place
    import torch

    from hf_vit import CIFAR10_MEAN, CIFAR10_STD
    from hf_vit.benchmarking import _sync, compare_models, timed_device, why_not_timed
    from hf_vit.data import BatchCollator, DatasetError, ImageTensorDataset, flags_in_messages, looks_local, prepare_data
    from hf_vit.augment import BatchAugment
    from hf_vit.interrupted import NOTHING_LEFT, run_script
    from hf_vit.training import (
        RECIPES_DIR, SetupError, available_recipes, build_config, cpu_has_native_bf16, parse_args, read_recipe,
        set_cpu_threads,
    )
except KeyboardInterrupt:  # nothing was done yet: one line and Ctrl-C's status, not a traceback
    print("benchmark_input.py: interrupted while loading its libraries; nothing was done.", file=sys.stderr)
    sys.exit(130)

REAL_COPY = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"  # the repo is a sibling of shared/
WINDOWS = 5  # the step is timed in this many windows of equal length; the median window is the figure


def step_device(requested, training_args) -> torch.device:
    """Where the step is timed: --device, else where train.py trains the recipe (the CPU under its use_cpu, else
    the GPU when this machine has one)."""
    if requested is None:
        device = training_args.device
        if device.type not in ("cpu", "cuda"):  # e.g. the gpu recipe on a Mac: mps, which timed_device refuses too
            raise ValueError(  # no CUDA here (the recipe would train there): the CPU is the device left to time
                f"--device not given: the recipe trains on {device.type} on this machine, and "
                f"{why_not_timed(device.type)}. Pass --device cpu."
            )
        return device
    return timed_device(requested)  # a CPU or a CUDA GPU, else a ValueError naming the fix


def step_dtype(recipe: str, device: torch.device) -> str:
    """The dtype training would use on `device`: the recipe's bf16 only where the hardware has it (emulated on a CPU
    it runs ~13x slower, and train.py falls back to fp32)."""
    wants_bf16 = read_recipe(RECIPES_DIR / f"{recipe}.yaml").get("bf16")
    native = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_native_bf16()
    return "bf16" if wants_bf16 and native else "fp32"


def input_pipeline(dataset_name, default_copy, config, data_args):
    """(training images, collator) as train.py makes them for the recipe's `config` and `data_args`: from
    `dataset_name`, else synthetic images of the same shapes. The collator augments where the recipe does: with
    augment_on_device it only hands the uint8 batch and its seed on, and the training step augments."""
    if dataset_name is not None:
        t0 = time.perf_counter()
        try:
            with flags_in_messages():  # named as train.py's flags, which the recipe holds
                data = prepare_data(
                    dataset_name, config.image_size, config.num_channels, CIFAR10_MEAN, CIFAR10_STD,
                    augment=data_args.augment_config(), validation_size=0,  # speed only: no images held back
                    augment_on_device=data_args.augment_on_device,
                )
        except DatasetError as err:
            sys.exit(f"benchmark_input.py: error: {err} (the recipe's settings; this script times its input pipeline)")
        print(f"data: {dataset_name} (load + decode/cache: {time.perf_counter() - t0:.1f} s)")
        return data.train, data.collator
    print(f"data: synthetic (no CIFAR-10 copy at {default_copy})")  # a stand-in with the same shapes
    pixels = torch.randint(0, 256, (45000, 3, 32, 32), dtype=torch.uint8)
    train_set = ImageTensorDataset(pixels, torch.randint(0, 10, (45000,)), augment=True)
    augment = BatchAugment(CIFAR10_MEAN, CIFAR10_STD, data_args.augment_config())
    return train_set, BatchCollator(augment, on_device=data_args.augment_on_device)


def device_augment_rate(augment, batches, device: torch.device) -> float:
    """img/s of the augmentation HfViTTrainer runs inside the training step (augment_on_device) on `device`, over
    the collator's uint8 batches with their seeds: the step pays it, not the input pipeline."""
    moved = [(b["pixel_values"].to(device), b["labels"].to(device), b["aug_seed"]) for b in batches]
    augment(*moved[0])  # first-call costs (kernels, the device's copy of mean and std) are not the rate
    _sync(device)
    start = time.perf_counter()
    for images, labels, seed in moved:
        augment(images, labels, seed)
    _sync(device)
    return sum(len(labels) for _, labels, _ in moved) / (time.perf_counter() - start)


def check_steps(steps: int) -> str | None:
    """Why --steps cannot be timed as asked, or None: equal windows keep their median a fair figure."""
    if steps % WINDOWS == 0:
        return None
    lower = steps // WINDOWS * WINDOWS
    choices = f"{lower} or {lower + WINDOWS}" if lower else str(WINDOWS)
    return (f"--steps must be a multiple of {WINDOWS} (the step is timed in {WINDOWS} windows of --steps/{WINDOWS} "
            f"steps, and the median window taken), got {steps}. Pass {choices}.")


def main():
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--recipe", default="cpu", help="the shipped recipe whose model and batch are timed: "
                     f"{', '.join(available_recipes())} (default: cpu)")
    cli.add_argument("--dataset_name", default=None,
                     help="a dataset folder (default: the CIFAR-10 copy if present, else synthetic images)")
    cli.add_argument("--batches", type=int, default=100, help="batches timed through the pipeline (default: 100)")
    cli.add_argument("--steps", type=int, default=10, help=f"training steps timed, a multiple of {WINDOWS} "
                     f"(median of {WINDOWS} windows; default: 10)")
    cli.add_argument("--device", default=None,
                     help="where the training step is timed: cpu, cuda, cuda:<index> (default: where train.py trains "
                     "the recipe: the cpu recipe on the CPU, the gpu recipe on the GPU if this machine has one)")
    args = cli.parse_args()
    for flag in ("batches", "steps"):
        if getattr(args, flag) < 1:
            cli.error(f"--{flag} must be at least 1, got {getattr(args, flag)}.")
    if problem := check_steps(args.steps):
        cli.error(problem)

    try:
        model_args, data_args, run_args, training_args = parse_args(["--recipe", args.recipe, "--bf16", "false", "--torch_compile", "false"])
        # the threads training sets (not this process's default, which OMP_NUM_THREADS may have lowered)
        threads = set_cpu_threads(run_args.num_threads, 1)
        device = step_device(args.device, training_args)
    except (SetupError, ValueError) as err:
        sys.exit(f"benchmark_input.py: error: {err}")
    config = build_config(model_args)
    batch_size = training_args.per_device_train_batch_size
    dtype = step_dtype(args.recipe, device)  # the recipe's bf16 only where the hardware has it
    attn = config._attn_implementation or "sdpa"
    print(f"recipe {args.recipe}: batch {batch_size}, {dtype}, {attn} attention, step on {device}, "
          f"torch threads {torch.get_num_threads()}")

    default_copy = os.environ.get("HF_VIT_CIFAR10", str(REAL_COPY))
    if args.dataset_name is not None and looks_local(args.dataset_name) and not Path(args.dataset_name).is_dir():
        # a mistyped path must not time other data (a Hub id goes to prepare_data, which says if it is unreachable)
        sys.exit(f"benchmark_input.py: error: --dataset_name {args.dataset_name!r} is not a folder. Pass a dataset "
                 "folder in the Hub layout, or leave it out for the CIFAR-10 copy (synthetic images without it).")
    if args.dataset_name is None and Path(default_copy).is_dir():
        args.dataset_name = default_copy
    train_set, collator = input_pipeline(args.dataset_name, default_copy, config, data_args)

    loader = torch.utils.data.DataLoader(
        train_set, batch_size=batch_size, shuffle=True, collate_fn=collator, drop_last=True
    )
    if not len(loader):
        sys.exit(f"benchmark_input.py: error: {args.dataset_name} has {len(train_set)} training images, fewer than "
                 f"one batch of {batch_size} (the recipe's). Time a larger dataset, or leave --dataset_name out.")
    batches, it = [], iter(loader)
    n = min(args.batches, len(loader))
    t0 = time.perf_counter()
    for _ in range(n):
        batches.append(next(it))
    pipe = n * batch_size / (time.perf_counter() - t0)

    # The model step, timed the way scripts/benchmark.py times it (fresh process, same batch size).
    step = compare_models(
        config, ["hf_vit"], batch=batch_size, steps=args.steps // WINDOWS, rounds=WINDOWS, device=str(device),
        threads=threads, dtype=dtype, attns=[attn], memory=False,
    )[0]
    trainer = step["train_img_s"]
    path, stepped = "decoded cache -> batch fetch -> augment -> normalise", ""
    if collator.on_device:  # HfViTTrainer augments each batch on the step's device before the forward pass
        augmented = device_augment_rate(collator.augment, batches, device)
        trainer = 1 / (1 / trainer + 1 / augmented)
        path = "decoded cache -> batch fetch; the recipe's augment_on_device augments in the training step"
        stepped = f", and augment + normalise there: {augmented:.0f} img/s alone"

    ratio = pipe / trainer
    print(f"input pipeline: {pipe:9.0f} img/s  ({path})")
    print(f"training step : {trainer:9.0f} img/s  (forward + backward + AdamW, on {step['device']}{stepped})")
    print(f"ratio         : {ratio:9.1f}x  ({'OK' if ratio >= 5 else 'BELOW'} the 5x target)")
    return 0 if ratio >= 5 else 1


if __name__ == "__main__":  # compare_models spawns processes that re-import this file
    sys.exit(run_script("benchmark_input.py", main, NOTHING_LEFT))
