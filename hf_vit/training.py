"""Training with the transformers `Trainer`: arguments, recipes, the run, the final model folder.

    parse_args(argv)       HfArgumentParser over (ModelArguments, DataArguments, RunArguments, TrainingArguments);
                           a recipe file (--recipe cpu | --config_file x.yaml) sets defaults, CLI flags win
    train(...)             data (hf_vit.data) -> HfViTForImageClassification -> HfViTTrainer.train()
                           -> best checkpoint by validation accuracy -> test metrics -> model folder

The same code runs under `python`, `accelerate launch` and `torchrun`: the Trainer reads the launcher's
environment, and only the main process writes the final files.
"""

import argparse
import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.utils import parse_flag_from_env
from transformers import HfArgumentParser, Trainer, TrainerCallback, TrainingArguments, set_seed

from .augment import AugmentConfig, BatchAugment
from .configuration_hf_vit import CIFAR10_LABELS, CIFAR10_MEAN, CIFAR10_STD, HfViTConfig
from .data import DEFAULT_DATASET, DatasetError, dataset_reference, flags_in_messages, prepare_data
from .image_processing import make_image_processor
from .metrics import classification_metrics, compute_metrics, forget_batches, gathered_labels, gathered_logits
from .modeling_hf_vit import HfViTForImageClassification
from .presets import PRESETS, SHAPE_MEANINGS  # shapes by name; config fields given beside a preset override it
from .output_folder import (
    FolderInUseError, SIGTERM_EXIT, folder_lock, launched_processes, probe_writable, replace_text, sigterm_exits,
    signals_held,
)
from .training_flags import (
    Given,
    SetupError,
    _text,
    advice_for_unknown,
    as_written,
    check_one_precision,
    check_push_flags,
    check_validation_size,
    check_what_runs,
    flags_given,
    note_unlimited_checkpoints,
    settle_direction,
    settle_evaluation,
    settle_warmup,
    stray_value_message,
    unknown_flag_message,
)

logger = logging.getLogger(__name__)

RECIPES_DIR = Path(__file__).parent / "recipes"

# Our defaults for TrainingArguments (a recipe file or the command line overrides each).
TRAINING_DEFAULTS = dict(
    output_dir="runs/hf-vit",
    eval_strategy="epoch",
    save_strategy="epoch",
    load_best_model_at_end=True,
    metric_for_best_model="accuracy",  # greater_is_better follows it (False for a loss), as in the Trainer
    save_total_limit=2,
    remove_unused_columns=False,  # our batches are tensors, not dataset columns
    report_to="none",
    logging_steps=50,
    lr_scheduler_type="cosine",
    ddp_find_unused_parameters=False,
)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the message names the step."""


def _preset_default(name: str) -> str:
    return f"{SHAPE_MEANINGS[name]} (default: the --preset's)"


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "fine-tune a trained hf_vit model (a folder or Hub id) instead of starting from random "
                  "weights: its shape, image size and normalisation are kept, and its head follows the dataset's "
                  "classes (--preset and the shape flags build a fresh model only)"},
    )
    model_revision: str | None = field(
        default=None,
        metadata={"help": "a branch, tag or commit of the --model_name_or_path Hub model (default: its main branch); "
                  "not for a local folder"},
    )
    preset: str = field(default="lesson", metadata={"help": f"model shape by name: {', '.join(PRESETS)}"})
    image_size: list[int] | None = field(
        default=None, metadata={"help": "input size: one number (square) or height width (default 32)"})
    patch_size: list[int] | None = field(
        default=None, metadata={"help": "patch size: one number (square) or height width (default 4)"})
    dim: int | None = field(default=None, metadata={"help": _preset_default("dim")})
    depth: int | None = field(default=None, metadata={"help": _preset_default("depth")})
    heads: int | None = field(default=None, metadata={"help": _preset_default("heads")})
    dim_head: int | None = field(default=None, metadata={"help": _preset_default("dim_head")})
    mlp_dim: int | None = field(default=None, metadata={"help": _preset_default("mlp_dim")})
    pool: str | None = field(default=None, metadata={"help": "'cls' or 'mean' (default: the --preset's)"})
    dropout: float | None = field(default=None, metadata={"help": "dropout in attention and feed-forward (default 0)"})
    emb_dropout: float | None = field(default=None, metadata={"help": "dropout after the position embedding (default 0)"})
    attn_implementation: str | None = field(
        default=None,
        metadata={"help": "attention kernel: 'sdpa' (transformers' default), 'eager', 'flash_attention_2', ... "
                  "(eager is the faster one on CPU at 65 tokens: scripts/benchmark.py)"},
    )
    image_mean: list[float] | None = field(default=None, metadata={"help": "normalisation mean (default CIFAR-10)"})
    image_std: list[float] | None = field(default=None, metadata={"help": "normalisation std (default CIFAR-10)"})


@dataclass
class DataArguments:
    dataset_name: str = field(
        default=DEFAULT_DATASET, metadata={"help": "Hub id or a local folder in the Hub layout (../shared/data/cifar10)"}
    )
    dataset_config: str | None = field(default=None, metadata={"help": "dataset configuration name"})
    dataset_revision: str | None = field(
        default=None,
        metadata={"help": "a branch, tag or commit of the --dataset_name Hub dataset (default: its main branch), "
                  "recorded in metrics.json and the card; not for a local folder"},
    )
    image_column: str | None = field(default=None, metadata={"help": "image column (default: img or image)"})
    label_column: str | None = field(default=None, metadata={"help": "label column (default: label or labels)"})
    train_split: str = field(default="train", metadata={"help": "the split to train on"})
    test_split: str = field(default="test", metadata={"help": "the split scored once training ends (the test "
                            "figures in metrics.json and the card)"})
    validation_size: int = field(default=5000, metadata={"help": "images carved (stratified) from train to choose the "
                                 "best checkpoint; 0: no validation, the last step's model is kept"})
    validation_split: str | None = field(
        default=None,
        metadata={"help": "choose checkpoints on this split of the dataset (e.g. 'validation') instead of carving "
                  "--validation_size images from train"},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "use a random subset of the training images"})
    max_eval_samples: int | None = field(default=None, metadata={"help": "use a random subset of the validation images"})
    max_test_samples: int | None = field(default=None, metadata={"help": "use a random subset of the test images"})
    pad: int = field(default=4, metadata={"help": "random crop: zero padding in pixels (0 = no crop)"})
    hflip: bool = field(default=True, metadata={"help": "random horizontal flip"})
    randaugment_ops: int = field(default=0, metadata={"help": "RandAugment: ops per image (0 = off)"})
    randaugment_magnitude: float = field(default=9.0, metadata={"help": "RandAugment: max strength, 0..10"})
    random_erasing: float = field(default=0.0, metadata={"help": "random erasing probability per image"})
    mixup_alpha: float = field(default=0.0, metadata={"help": "Mixup Beta(alpha, alpha) (0 = off)"})
    cutmix_alpha: float = field(default=0.0, metadata={"help": "CutMix Beta(alpha, alpha) (0 = off)"})
    mix_prob: float = field(default=1.0, metadata={"help": "probability that a batch is mixed"})
    mix_switch_prob: float = field(default=0.5, metadata={"help": "with both on: probability of CutMix"})
    augment_on_device: bool = field(
        default=False, metadata={"help": "augment on the accelerator inside the training step (GPU)"}
    )

    def augment_config(self) -> AugmentConfig:
        try:
            return self._augment_config()
        except ValueError as err:  # a value out of range, named by its flag
            raise SetupError(str(err)) from None

    def _augment_config(self) -> AugmentConfig:
        return AugmentConfig(
            pad=self.pad,
            hflip=self.hflip,
            randaugment_ops=self.randaugment_ops,
            randaugment_magnitude=self.randaugment_magnitude,
            random_erasing=self.random_erasing,
            mixup_alpha=self.mixup_alpha,
            cutmix_alpha=self.cutmix_alpha,
            mix_prob=self.mix_prob,
            mix_switch_prob=self.mix_switch_prob,
        )


@dataclass
class RunArguments:
    stop_after_steps: int | None = field(
        default=None,
        metadata={
            "help": "end this session after this many global steps with a checkpoint, keeping the full run's "
            "schedule; continue later with --resume_from_checkpoint (for time-limited machines)"
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "start afresh in an --output_dir that holds an earlier run: its checkpoints and model files "
            "are deleted first (without it such a folder is refused; --resume_from_checkpoint continues it)"
        },
    )
    num_threads: int | None = field(
        default=None,
        metadata={
            "help": "CPU training: torch threads per process (default: the CPUs this process may use divided by the "
            "processes on this machine; `accelerate launch` would otherwise leave one thread per process)"
        },
    )


CPUINFO = "/proc/cpuinfo"  # Linux's CPU description (a module name, so that tests can point elsewhere)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX). Without them bf16 autocast is emulated:
    the cpu recipe's training step ran 13x slower than in fp32 on an AVX2-only AMD EPYC (11 vs 146 img/s)."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(probe) for probe in probes):
        return any(probe() for probe in probes)
    try:  # an older torch: ask the kernel
        flags = Path(CPUINFO).read_text().split()
    except OSError:
        return True  # unknown: keep what the recipe asks for
    return "avx512_bf16" in flags or "amx_bf16" in flags


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, which a container or taskset narrows), else all of them."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def set_cpu_threads(requested: int | None, local_processes: int) -> int:
    """Threads for CPU training. `accelerate launch` exports OMP_NUM_THREADS=1 unless told otherwise, which
    halves the speed of a one-process run on 2 cores (measured: 230 vs 370-390 img/s for the cpu recipe, over several runs)."""
    if requested is not None and requested < 1:
        raise SetupError(f"--num_threads must be at least 1, got {requested}.")
    threads = requested or max(1, usable_cpus() // max(1, local_processes))
    torch.set_num_threads(threads)
    return threads


def keep_freed_memory() -> bool:
    """Let glibc's malloc reuse freed activation memory instead of handing it back to the OS.

    By default every block above a moving threshold (~4 MB and up: most activations of a batch) is a fresh
    mmap, and freed memory above another is handed back, so a training step can page-fault its activations in
    again every time (measured for the cpu recipe's bare step: 6k-17k page faults per step; with this, none).
    Only glibc has `mallopt`; elsewhere this does nothing and returns False.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl without mallopt)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    # Blocks up to 64 MiB come from the heap; freed memory stays there (up to 2 GiB) for the next step.
    return bool(mallopt(m_mmap_threshold, 64 << 20)) and bool(mallopt(m_trim_threshold, 2 << 30))


# ---------------------------------------------------------------------------
# Arguments and recipes
# ---------------------------------------------------------------------------
def available_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def read_recipe(path) -> dict:
    """A recipe file (YAML or JSON) as a flat dict of argument names to values."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SetupError(f"no recipe file at {str(path)!r}. Pass an existing .yaml/.json file to --config_file.")
    text = path.read_text(encoding="utf-8")
    try:
        values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise SetupError(f"cannot parse the recipe {str(path)!r}: {err}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise SetupError(f"the recipe {str(path)!r} must be a mapping of argument names to values.")
    # YAML reads a bare `eval_strategy: no` as false; a strategy is never a boolean, so it is the "no" meant
    # (before: "False is not a valid IntervalStrategy").
    return {k: "no" if k in NO_STRATEGIES and values[k] is False else values[k] for k in values}


NO_STRATEGIES = ("eval_strategy", "save_strategy", "logging_strategy")  # the strategies that have a "no"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help without "(default: None)": an unset flag leaves the value to the preset, the model or transformers
    (the help says which), and after a help that names its own default, "(default 32) (default: None)" contradicted it."""

    def _get_help_string(self, action):
        said = action.default is None or "(default " in (action.help or "")
        if said or isinstance(action, argparse._StoreFalseAction):  # a --no_X twin: X's default is printed on --X
            return action.help
        return super()._get_help_string(action)


def parse_args(argv=None):
    """(model_args, data_args, run_args, training_args) from a recipe file and/or the command line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--recipe")
    pre.add_argument("--config_file")
    known, rest = pre.parse_known_args(argv)
    # A single positional .yaml/.json is a config file too (HfArgumentParser's own convention).
    if known.config_file is None and len(rest) == 1 and rest[0].endswith((".yaml", ".yml", ".json")):
        known.config_file, rest = rest[0], []

    # prog: the same name in every error line, however the script is started (python, accelerate, torchrun, tests)
    parser = HfArgumentParser((ModelArguments, DataArguments, RunArguments, TrainingArguments), prog="train.py",
                              formatter_class=_HelpFormatter)
    # argparse would print every one of the ~130 flags' usage above each error line
    parser.usage = "%(prog)s [--recipe NAME] [--config_file FILE] [--flag value ...]  (every flag: %(prog)s --help)"
    # argparse's negative-number pattern has no exponent: `--learning_rate -1e-3` failed with "expected one
    # argument" instead of reaching the value checks. The flags here never look like negative numbers.
    parser._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
    parser.add_argument("--recipe", help=f"a shipped recipe: {', '.join(available_recipes())}")
    parser.add_argument("--config_file", help="a recipe file (.yaml or .json); command-line flags override it")
    defaults = dict(TRAINING_DEFAULTS)
    sources = []  # (path, the arguments it sets), the recipe before the config file that overrides it
    given = Given({})
    if known.recipe:
        path = RECIPES_DIR / f"{known.recipe}.yaml"
        if not path.is_file():
            raise SetupError(f"no recipe named {known.recipe!r}; the shipped recipes are {available_recipes()}.")
        sources.append((path, given.recipe))
    if known.config_file:
        sources.append((Path(known.config_file), given.config_file))
    dests = {a.dest for a in parser._actions}
    for path, sets in sources:
        values = read_recipe(path)
        nested = sorted({"recipe", "config_file"} & set(values))
        if nested:  # read here only after the files are chosen: it would be ignored without a word
            raise SetupError(
                f"the recipe file {str(path)!r} sets {nested}, which only works on the command line: pass "
                "`--recipe NAME --config_file FILE` (the file's values override the recipe's)."
            )
        unknown = sorted(set(values) - dests)
        if unknown:
            # transformers 4's names and run_image_classification.py's get the advice they get as flags
            advice = "".join(f" {hint}" for name in unknown if (hint := advice_for_unknown(f"--{name}", values[name])))
            raise SetupError(
                f"unknown argument(s) {unknown} in the recipe {str(path)!r}; see `scripts/train.py --help`.{advice}"
            )
        defaults.update(values)
        sets.update(values)
    parser.set_defaults(**defaults)
    for action in parser._actions:  # transformers' help names its own default, which ours replaces
        if isinstance(action, argparse._StoreFalseAction):  # HfArgumentParser gives --no_X the help of X
            action.help = f"turns --{action.dest} off (the same as --{action.dest} false)"
        elif action.dest == "metric_for_best_model":
            action.help = (
                "the evaluation metric that picks the best checkpoint (accuracy, loss, macro_f1, ...); "
                "its direction follows it (a loss is best lowest)"
            )
    options = {o for a in parser._actions for o in a.option_strings}
    for i, token in enumerate(rest):
        flag = token.split("=", 1)[0]
        if flag.startswith("--") and flag not in options:  # a typo: name the closest flag, not just the parser's list
            value = token if "=" in token else f"{flag}={rest[i + 1] if i + 1 < len(rest) else ''}"
            raise SetupError(unknown_flag_message(value, options))
    given.command_line = flags_given(parser, rest)
    check_validation_size(given.command_line.get("validation_size"))  # before argparse's "invalid int value"
    notes = []
    # What was asked for, before TrainingArguments' own checks run on it: settle how evaluation and checkpoints
    # fit together first, so that those checks never blame a flag the user left alone.
    asked, stray = parser.parse_known_args(rest)
    if stray:
        raise SetupError(stray_value_message(rest, stray[0], options))
    parser.set_defaults(**settle_evaluation(asked, given, notes))
    note_unlimited_checkpoints(asked, given, notes)
    parser.set_defaults(**settle_direction(asked, given, notes), **settle_warmup(asked, given, notes))
    where = {1: f"the {known.recipe} recipe", 2: f"the config file {known.config_file}"}
    check_one_precision(asked, given, where)
    check_processes_joined(asked.use_cpu)  # before TrainingArguments set up the device
    try:
        model_args, data_args, run_args, training_args, *_ = parser.parse_args_into_dataclasses(args=rest)
    except ValueError as err:  # TrainingArguments' own checks (e.g. save/eval step mismatch): no traceback
        if "use_cpu" in str(err) and not torch.cuda.is_available():  # bf16 asked for on a machine without a GPU
            which = f"the {known.recipe} recipe trains" if known.recipe else "these settings train"
            raise SetupError(
                f"{which} in bf16 on a GPU, and this machine has no CUDA GPU. Use --recipe cpu here, or pass "
                "--use_cpu true to train these settings on the CPU (slowly)."
            ) from None
        raise SetupError(str(err).strip()) from None
    check_what_runs(asked, given, training_args.eval_strategy)
    check_push_flags(given)
    if training_args.remove_unused_columns:  # only a flag or file sets it (our default is false); train() turns it off
        raise SetupError(
            "--remove_unused_columns true would drop the image and label columns (the model's forward names "
            "neither) before the collator makes them into tensors; train.py keeps them, so the flag would be ignored. "
            "Leave it out."
        )
    fell_back = False
    if training_args.bf16 and training_args.use_cpu and not cpu_has_native_bf16():
        emulated = (
            "this CPU has no bf16 instructions (AVX512-BF16 or AMX), so bf16 autocast is emulated and trains "
            "about 13x slower than fp32"
        )
        if any(arg == "--bf16" or arg.startswith("--bf16=") for arg in rest):
            notes.append(f"{emulated}; drop --bf16 true to train in fp32.")
        else:  # the recipe's bf16 is a speed setting for CPUs that have it: here fp32 is the fast choice
            parser.set_defaults(bf16=False)
            model_args, data_args, run_args, training_args, *_ = parser.parse_args_into_dataclasses(args=rest)
            notes.append(f"{emulated}: training in fp32 instead. Pass --bf16 true to force bf16.")
            fell_back = True
    check_launcher_precision(training_args, fell_back)
    # train.py always trains and tests: recorded so (training_recipe.json, the card), not TrainingArguments' false
    training_args.do_train = training_args.do_predict = True
    # A shipped recipe is recorded by its place in the package, not this machine's path to it: training_recipe.json
    # goes to the Hub, and the card shows it.
    training_args._hf_vit_sources = [
        p.relative_to(RECIPES_DIR.parent.parent).as_posix() if p.parent == RECIPES_DIR else str(p) for p, _ in sources
    ]
    training_args._hf_vit_notes = notes
    # where the settings train() judges came from, for its messages: a recipe file's value is named as its key there
    said = {0: "the default", 3: "the command line", **where}
    training_args._hf_vit_said = {name: said[given.level(name)]
                                  for name in ("overwrite_output_dir", "resume_from_checkpoint", "warmup_steps")}
    return model_args, data_args, run_args, training_args


def check_launcher_precision(training_args: TrainingArguments, fell_back: bool) -> None:
    """`accelerate launch --mixed_precision X` (or an `accelerate config` default) reaches the Trainer as
    ACCELERATE_MIXED_PRECISION. TrainingArguments takes it only when neither --bf16 nor --fp16 is set (they replace
    it, and the Accelerator follows the Trainer's choice over the launcher's), so it changes only a run whose flags
    say fp32. This run's summary, training_recipe.json and card, and the checks on fp16 on a CPU, emulated bf16 and
    FlashAttention read the flags only: that case is refused."""
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").strip().lower()
    if training_args.fp16 or training_args.bf16 or launched in ("no", ""):
        return  # the flags' precision is the one trained in
    trains = "fp32"
    if fell_back:  # parse_args dropped the recipe's bf16 on this CPU
        trains = "fp32 (this CPU has no bf16 instructions: the recipe's bf16 would be emulated, about 13x slower)"
    raise SetupError(
        f"accelerate launch asks for {launched} mixed precision (its --mixed_precision flag or `accelerate config`), "
        f"but this run trains in {trains}: {_launcher_fix(launched, training_args, fell_back)}."
    )


def check_processes_joined(use_cpu: bool) -> None:
    """torchrun and accelerate launch start train.py once per process. On a machine without an accelerator (or on
    MPS, where accelerate runs one process only), the Trainer (accelerate's PartialState) makes them one run only
    with use_cpu or ACCELERATE_USE_CPU: without it each took itself for the only process (world size 1, rank 0) and
    trained alone into the same --output_dir, where the first one's lock refused the others, naming as "a training
    run" a sibling of the same launch. Said before the arguments are built: building them sets up the device, which
    in a launched process already opens the launch's process group (waiting for the others)."""
    launched = launched_processes()
    accelerator = getattr(torch, "accelerator", None)  # torch 2.6+: CUDA, XPU, MPS, ...; before it, CUDA alone
    on_accelerator = accelerator.is_available() if accelerator else torch.cuda.is_available()
    # accelerate has no several-process run on MPS (an Apple GPU): there too each process runs alone
    on_mps = on_accelerator and accelerator and getattr(accelerator.current_accelerator(), "type", None) == "mps"
    try:  # accelerate's own reading of the flag, so the two agree on which words mean yes
        cpu_asked = parse_flag_from_env("ACCELERATE_USE_CPU")
    except ValueError:  # not a yes or a no: accelerate names the bad value itself when it reads it
        cpu_asked = False
    if launched > 1 and not (use_cpu or cpu_asked or (on_accelerator and not on_mps)):
        raise SetupError(
            f"{launched} processes were launched (WORLD_SIZE={launched}, set by torchrun or accelerate launch), but "
            f"{'on an Apple GPU (MPS)' if on_mps else 'without a GPU'} they join one run only with --use_cpu true"
            f"{' (on the CPU)' if on_mps else ''}: each would train alone, as rank 0, into the same --output_dir. Pass "
            "--use_cpu true (accelerate launch: or set ACCELERATE_USE_CPU=1), or run one process with `python "
            "scripts/train.py ...`."
        )


def _launcher_fix(launched: str, training_args: TrainingArguments, fell_back: bool) -> str:
    """Launch in fp32, or ask for the launcher's precision with its flag where it can train (fp16 needs a CUDA GPU,
    and bf16 on a CPU without bf16 instructions is emulated, about 13x slower)."""
    fix = "launch with --mixed_precision no"
    on_cpu = training_args.use_cpu or not torch.cuda.is_available()
    if launched == "fp16" and on_cpu:
        return f"{fix} (fp16 needs a CUDA GPU)"
    if launched == "bf16" and on_cpu and not cpu_has_native_bf16():
        if fell_back:  # the reason is given already
            return fix
        return f"{fix} (this CPU has no bf16 instructions: bf16 would be emulated, about 13x slower)"
    if launched in ("bf16", "fp16"):  # fp8 and others have no flag here
        fix += f", or pass --{launched} true"
    return fix


SHAPE_FLAGS = ("image_size", "patch_size", "dim", "depth", "heads", "dim_head", "mlp_dim", "pool")


def build_config(model_args: ModelArguments, label_names=None, num_labels=None, start: HfViTConfig | None = None
                 ) -> HfViTConfig:
    """The config to train: the preset and flags, or the shape of `start` (the model being fine-tuned)."""
    if model_args.preset not in PRESETS:
        raise SetupError(f"unknown --preset {model_args.preset!r}; choose one of {list(PRESETS)}.")
    fields = dict(PRESETS[model_args.preset])
    if start is not None:
        fields = {k: getattr(start, k) for k in (*SHAPE_FLAGS, "num_channels", "dropout", "emb_dropout",
                                                 "layer_norm_eps", "initializer_range")}
    for name in (*SHAPE_FLAGS, "dropout", "emb_dropout"):
        value = getattr(model_args, name)
        if isinstance(value, (list, tuple)):  # --image_size 32 or --image_size 64 48 (height width)
            if len(value) not in (1, 2):
                raise SetupError(f"--{name} takes one number (square) or two (height width), got {len(value)}: {value}.")
            value = value[0] if len(value) == 1 else list(value)
        if start is not None and name in SHAPE_FLAGS and value is not None and value != fields[name]:
            raise SetupError(
                f"--{name} {value} differs from the model being fine-tuned ({name}={fields[name]}, from "
                f"--model_name_or_path {model_args.model_name_or_path!r}): its weights fit its own shape only. Leave "
                f"--{name} out (a --recipe or --config_file may set it too)."
            )
        if value is not None:
            fields[name] = value
    if label_names:
        fields["id2label"] = dict(enumerate(label_names))
    elif num_labels is not None:  # integer labels without names: never guess CIFAR-10's, even for 10 classes
        fields["id2label"] = {i: f"LABEL_{i}" for i in range(num_labels)}
    try:
        config = HfViTConfig(**fields)
    except ValueError as err:  # the config names the field; the flag has the same name
        raise SetupError(str(err)) from None
    if model_args.attn_implementation is not None:
        config._attn_implementation = model_args.attn_implementation
        try:  # transformers checks the name (and that its kernel is installed) when a model is built
            with torch.device("meta"):
                HfViTForImageClassification(config)
        except (ValueError, ImportError) as err:
            raise SetupError(
                f"--attn_implementation {model_args.attn_implementation!r} cannot be used here: "
                f"{str(err).splitlines()[0]} Use 'sdpa' (the default) or 'eager'."
            ) from None
    return config


def check_attention_kernel(config: HfViTConfig, training_args: TrainingArguments) -> None:
    """A kernel that builds but cannot train this run (it would fail at the first step, after the decoding, or
    quietly train without the attention dropout): refused now, naming the fix."""
    kernel = config._attn_implementation or "sdpa"
    if kernel == "flex_attention" and training_args.device.type == "cpu":
        problem = "PyTorch's flex attention has no backward pass on a CPU (only inference runs there). Train on a GPU"
    elif kernel == "flex_attention" and config.dropout > 0:
        problem = f"flex attention has no attention dropout, and --dropout is {config.dropout}. Pass --dropout 0"
    elif kernel.startswith("flash_attention") and not (training_args.bf16 or training_args.fp16):
        problem = "FlashAttention runs in bf16 or fp16 only. Add --bf16 (or --fp16)"
    elif kernel == "flash_attention_3" and config.dropout > 0:
        problem = (f"FlashAttention 3 has no attention dropout (it would go unused), and --dropout is "
                   f"{config.dropout}. Pass --dropout 0")
    else:
        return
    raise SetupError(f"--attn_implementation {kernel!r} cannot train this run: {problem}, or use 'sdpa' (the default).")


# ---------------------------------------------------------------------------
# The Trainer
# ---------------------------------------------------------------------------
class HfViTTrainer(Trainer):
    """`Trainer` with a loss that understands Mixup/CutMix pairs and optional on-device augmentation.

    Batches may carry `labels_b` and `mix_lam` (B,): loss = lam * CE(y_a) + (1 - lam) * CE(y_b), both with the
    run's label smoothing. A batch with `aug_seed` holds raw uint8 images and is augmented here, on the model's
    device, with the same seeded policy the CPU collator would use (on a GPU its generator's stream differs
    from the CPU's, so the draws differ; the policy and the per-batch seeding are the same).
    """

    def __init__(self, *args, batch_augment: BatchAugment | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.batch_augment = batch_augment
        # Our loss is a per-batch mean: let the Trainer scale it for gradient accumulation itself.
        self.model_accepts_loss_kwargs = False
        self._bad_step = self._bad_loss = None  # first non-finite loss since the last check (device tensors)
        self._epochs = {}  # step -> epoch, for the message
        self.images_trained = 0  # in this process, this session (the RankReport line)
        self.run_fingerprint = None  # set by train(): written into each checkpoint
        if self.compute_metrics is not None:
            self.compute_metrics = self._finite_outputs_first(self.compute_metrics)

    def _finite_outputs_first(self, compute_metrics):
        """Weights spoiled by the last update reach an evaluation before the next step's loss shows them: stop
        there with the same advice as the loss check, not the metric's traceback."""

        def checked(eval_pred, compute_result=None):
            logits = gathered_logits(eval_pred.predictions)  # per batch (batch_eval_metrics): a device tensor
            bad = ~np.isfinite(np.asarray(logits, dtype=np.float32)).all(axis=-1)  # (N,)
            if bad.any():
                raise NonFiniteLossError(
                    f"the model's outputs are NaN or infinite for {int(bad.sum())} of {len(bad)} evaluation images "
                    f"after step {self.state.global_step} (epoch {self.state.epoch or 0.0:.2f}); training stopped. "
                    "Lower --learning_rate, keep --max_grad_norm on, check the images and --image_mean/--image_std, "
                    "and resume from a checkpoint saved before that step."
                )
            if compute_result is None:  # the whole set at once: a compute_metrics without compute_result works too
                return compute_metrics(eval_pred)
            return compute_metrics(eval_pred, compute_result=compute_result)

        return checked

    def _defer_loss_check(self) -> bool:
        """On an accelerator, reading the loss every step stalls the queue: record it there, read it now and then."""
        return self.args.device.type != "cpu"

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        seed = inputs.pop("aug_seed", None)
        if seed is not None:
            images = inputs["pixel_values"]
            with torch.autocast(images.device.type, enabled=False):  # augment in fp32 even under bf16
                inputs.update(self.batch_augment(images, inputs["labels"], int(seed)))
        labels = inputs.pop("labels")
        labels_b, lam = inputs.pop("labels_b", None), inputs.pop("mix_lam", None)
        outputs = model(pixel_values=inputs["pixel_values"])
        logits = outputs.logits.float()  # (B, C)
        eps = self.args.label_smoothing_factor
        loss = F.cross_entropy(logits, labels, label_smoothing=eps, reduction="none")  # (B,)
        if labels_b is not None:
            loss = lam * loss + (1 - lam) * F.cross_entropy(logits, labels_b, label_smoothing=eps, reduction="none")
        loss = loss.mean()
        if model.training:
            self.images_trained += labels.shape[0]  # a shape: no device sync
            self._watch_loss(loss.detach())
        return (loss, outputs) if return_outputs else loss

    def _watch_loss(self, loss):
        step = self.state.global_step + 1
        if not self._defer_loss_check():  # on a CPU, checking every step costs nothing
            if not torch.isfinite(loss):
                self._stop_on_loss(loss.item(), step, self.state.epoch or 0.0)
            return
        # No host-device sync here: keep the first bad step and its loss on the device.
        self._epochs.setdefault(step, self.state.epoch or 0.0)
        if self._bad_step is None:
            self._bad_step = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._bad_loss = torch.zeros((), dtype=loss.dtype, device=loss.device)
        first = ~torch.isfinite(loss) & (self._bad_step < 0)
        self._bad_step = torch.where(first, step, self._bad_step)
        self._bad_loss = torch.where(first, loss, self._bad_loss)
        # The Trainer syncs at logging steps anyway; its state holds them in steps (a --logging_steps below 1 is a
        # fraction of the run there).
        if step % max(1, int(self.state.logging_steps or self.args.logging_steps)) == 0:
            self.check_loss()

    def check_loss(self):
        """Read the deferred record; raise if a step since the last check had a non-finite loss."""
        if self._bad_step is None:
            return
        bad_step, epochs, self._epochs = int(self._bad_step), self._epochs, {}
        if bad_step >= 0:
            self._stop_on_loss(float(self._bad_loss), bad_step, epochs.get(bad_step, 0.0))

    def _stop_on_loss(self, loss, step, epoch):
        raise NonFiniteLossError(
            f"the training loss is {loss} at step {step} (epoch {epoch:.2f}); training stopped. Lower "
            "--learning_rate, keep --max_grad_norm on, check the images and --image_mean/--image_std, and resume "
            "from a checkpoint saved before that step."
        )

    def _save_checkpoint(self, model, trial):
        self.check_loss()  # never save weights a non-finite step has already spoiled
        if self.run_fingerprint is not None and self.args.should_save:
            # What a resume must match, written before the Trainer's trainer_state.json, which makes the checkpoint
            # count as complete: a save cut short in between leaves a checkpoint that is skipped, never one that
            # passes for complete but cannot be checked against the run.
            folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)
            write_json(folder / RUN_FINGERPRINT, self._fingerprint_of_this_batch())
        # What this run's passes took: a resume keeps the checkpoint's trainer_state.json, whose train_batch_size is
        # then its run's, not this one's (2 processes x 16 resumed as one x 32); the next resume reads it.
        self.state.train_batch_size = self._train_batch_size
        return super()._save_checkpoint(model, trial)

    def _fingerprint_of_this_batch(self) -> dict:
        """run_fingerprint with the batch the steps take now: --auto_find_batch_size lowers the Trainer's batch when
        one does not fit, after the fingerprint recorded the flag's (a resume compares the batch, and a refusal
        names it as the one to relaunch with)."""
        fingerprint = dict(self.run_fingerprint)
        fingerprint["schedule"] = {**fingerprint["schedule"],
                                   "per_device_train_batch_size": self._train_batch_size // max(1, self.args.n_gpu)}
        fingerprint["process_step"] = {**fingerprint["process_step"], "train_batch_size": self._train_batch_size}
        return fingerprint

    def train(self, *args, **kwargs):
        result = super().train(*args, **kwargs)
        self.check_loss()  # the steps since the last check
        return result

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        forget_batches()  # batch_eval_metrics: nothing of an evaluation stopped part-way is counted in this one
        try:
            output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys,
                                             metric_key_prefix)
        finally:
            forget_batches()
        key = f"{metric_key_prefix}_loss"
        if self.args.world_size > 1 and key in output.metrics and output.label_ids is not None:
            output.metrics[key] = self._loss_of_every_image_once(output.predictions, output.label_ids)
        return output

    def _loss_of_every_image_once(self, predictions, label_ids) -> float:
        """In several processes the Trainer averages each rank's batch losses, and the last round of batches holds
        images the distributed sampler repeated to fill it: its gathered predictions drop them, its loss does not.
        The loss of those predictions, as compute_loss takes it (no mixing at evaluation)."""
        logits = torch.from_numpy(np.asarray(gathered_logits(predictions), dtype=np.float32))  # whole, or per batch
        labels = torch.from_numpy(np.asarray(gathered_labels(label_ids))).long()
        return F.cross_entropy(logits, labels, label_smoothing=self.args.label_smoothing_factor).item()


class StopAfterSteps(TrainerCallback):
    """Save a checkpoint and end the session at a given global step (the LR schedule is the full run's)."""

    def __init__(self, steps: int):
        self.steps, self.stopped = steps, False

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.steps and state.global_step < state.max_steps:
            control.should_save = True
            control.should_training_stop = True
            self.stopped = True


def _noted_sigterms() -> list:
    """Wrap the SIGTERM handler in place (--enable_jit_checkpoint: the Trainer's) so that each kill it answers is
    noted in the list returned. _train puts back the handler from before the Trainer once training is over."""
    noted = []
    answer = signal.getsignal(signal.SIGTERM)
    if callable(answer) and threading.current_thread() is threading.main_thread():  # signal.signal works only there

        def note(signum, frame):
            noted.append(signum)
            answer(signum, frame)

        signal.signal(signal.SIGTERM, note)
    return noted


class RankReport(TrainerCallback):
    """Each process prints one line when training ends: its rank, its steps, the images it trained on."""

    def __init__(self, trainer):
        # Counted by the trainer, in this process: a collator's count would stay in data-loader workers.
        self.trainer, self.steps = trainer, 0

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1

    def on_train_end(self, args, state, control, **kwargs):
        print(
            f"[hf_vit] rank {args.process_index}/{args.world_size}: {self.steps} steps this session "
            f"(global step {state.global_step}), {self.trainer.images_trained} training images on this rank",
            flush=True,
        )


class AccuracyCurve(TrainerCallback):
    """Validation accuracy against wall time since training began (time-to-accuracy, in metrics.json)."""

    def __init__(self):
        self.start, self.points = None, []

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.start is not None and metrics and "eval_accuracy" in metrics:
            self.points.append(
                {
                    "step": state.global_step,
                    "epoch": round(state.epoch or 0.0, 3),
                    "elapsed_s": round(time.perf_counter() - self.start, 1),
                    "accuracy": metrics["eval_accuracy"],
                }
            )


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------
def check_output_dir(path):
    """Fail now, not after hours of training, if the output folder cannot be written."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe_writable(path)  # every rank checks
    except OSError as err:
        raise SetupError(
            f"cannot write the output folder {str(path)!r} ({err.strerror or err}). "
            "Choose a writable --output_dir."
        ) from None


# What a run leaves in its output folder: checkpoint-* folders and the final model folder's files.
RUN_FILES = (
    "config.json", "model.safetensors", "model.safetensors.index.json", "preprocessor_config.json",
    "configuration_hf_vit.py", "modeling_hf_vit.py", "image_processing_hf_vit.py",  # the last: 1-channel models'
    "metrics.json", "training_recipe.json", "training_args.bin", "evaluation",
)


def earlier_run(output_dir) -> list[str]:
    """The names in `output_dir` that an earlier training run wrote (empty: nothing to clash with)."""
    path = Path(output_dir)
    if not path.is_dir():
        return []
    found = sorted(p.name for p in path.glob("checkpoint-*") if p.is_dir())
    return found + [name for name in RUN_FILES if (path / name).exists()]


def remove_entry(path: Path) -> None:
    """Delete a file or folder of the output folder; a symbolic link goes itself, never what it points to."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def clear_earlier_run(output_dir, overwrite: bool, is_main: bool, delete: bool = True) -> None:
    """Refuse an output folder holding another run (`--resume_from_checkpoint last` would pick its checkpoints,
    and its model files would pass for this run's), or, with --overwrite_output_dir, delete that run first.
    `delete=False` only refuses: training checks first and deletes once its settings and data have passed every
    check, so that a run refused for its dataset leaves the earlier model in place."""
    found = earlier_run(output_dir)
    if not found:
        return
    if not overwrite:
        shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
        raise SetupError(
            f"--output_dir {str(output_dir)!r} already holds a training run ({shown}). Continue it with "
            "--resume_from_checkpoint last, start afresh there with --overwrite_output_dir, or choose another "
            "--output_dir."
        )
    if not is_main or not delete:  # one process deletes; the others only checked
        return
    path = Path(output_dir)
    if (path / "config.json").exists() and (path / "README.md").is_file():
        found.append("README.md")  # the earlier model's card
    for name in found:
        remove_entry(path / name)
    print(f"[hf_vit] --overwrite_output_dir: deleted the earlier run in {path} ({len(found)} entries)", flush=True)


@contextmanager
def hold_output_dir(output_dir: Path, is_main: bool):
    """One training per --output_dir, and no evaluation of the model there meanwhile: a second run would overwrite
    the first's checkpoints and model. Only the main process locks it; the other ranks are the same run."""
    with ExitStack() as held:
        if is_main:
            try:
                held.enter_context(folder_lock(output_dir, "a training run"))
            except FolderInUseError as err:
                raise SetupError(
                    f"--output_dir {str(output_dir)!r} is in use by {err.holder}: this run would write over the files "
                    "it uses. Wait for it to finish, or choose another --output_dir."
                ) from None
            except OSError as err:  # its lock file cannot be opened (another user's, left behind)
                raise SetupError(f"--output_dir {str(output_dir)!r}: {err}") from None
        yield


def write_json(path, obj):
    """Write JSON through a temporary file, so that a crash never leaves half a file."""
    replace_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def last_complete_checkpoint(output_dir) -> str | None:
    """The newest checkpoint-* folder with a readable trainer_state.json, which the Trainer writes last.

    A run killed while saving leaves a newer folder without it; transformers' `get_last_checkpoint` would pick
    that half-written folder, this skips it (and says so).
    """
    steps = []
    for path in Path(output_dir).glob("checkpoint-*"):
        if path.is_dir() and path.name.split("-", 1)[1].isdigit():
            steps.append((int(path.name.split("-", 1)[1]), path))
    for _, path in sorted(steps, reverse=True):
        try:
            json.loads((path / "trainer_state.json").read_text())
            return str(path)
        except (OSError, ValueError):
            print(f"[hf_vit] skipping {path}: incomplete (no readable trainer_state.json), a save cut short", flush=True)
    return None


def resolve_resume(value, output_dir):
    """--resume_from_checkpoint: a checkpoint folder, or 'true'/'last' for the newest one in output_dir."""
    if value is None or value == "":
        return None
    if str(value).lower() in ("true", "last", "latest"):
        last = last_complete_checkpoint(output_dir) if Path(output_dir).is_dir() else None
        if last is None:
            raise SetupError(
                f"--resume_from_checkpoint {value}: no complete checkpoint-* folder in {str(output_dir)!r}."
            )
        return last
    if not (Path(value) / "trainer_state.json").is_file():
        raise SetupError(
            f"--resume_from_checkpoint {value!r} is not a checkpoint folder (no trainer_state.json). Pass one of "
            f"the {str(output_dir)!r}/checkpoint-* folders, or 'last'."
        )
    # The Trainer finds the best checkpoint, and rotates old ones, in output_dir: a checkpoint from elsewhere would
    # make it pick (or delete) whatever checkpoint-N of another run lies there.
    if Path(value).resolve().parent != Path(output_dir).resolve():
        raise SetupError(
            f"--resume_from_checkpoint {value!r} is not in --output_dir {str(output_dir)!r}: a run continues in its "
            f"own folder. Pass --output_dir {str(Path(value).parent)!r} (or copy that whole run folder and resume in "
            "the copy)."
        )
    return value


# What each evaluation during training computes (hf_vit.metrics.compute_metrics), plus the Trainer's loss.
EVAL_METRICS = ("loss", "accuracy", "top3_accuracy", "macro_f1")


def check_trainer_flags(training_args: TrainingArguments, run_args) -> None:
    """TrainingArguments that would fail late (after the data is decoded, or at the first evaluation) or do
    something else than they say in this setup: refused now, each naming the fix."""
    args = training_args
    at_least = {"per_device_train_batch_size": 1, "per_device_eval_batch_size": 1, "gradient_accumulation_steps": 1,
                "dataloader_num_workers": 0, "learning_rate": 0, "weight_decay": 0}  # fmt: skip
    for name, low in at_least.items():  # torch would say so only after the dataset is decoded, in a traceback
        if getattr(args, name) < low:
            raise SetupError(f"--{name} must be at least {low}, got {getattr(args, name)}.")
    if args.use_liger_kernel:  # installed, Liger only logs that it has no kernels for this model; absent, a traceback
        raise SetupError(
            "--use_liger_kernel true: Liger's kernels replace layers of language models (Llama, Qwen, ...) and it has "
            "none for this ViT, so it would change nothing. Leave it out (--attn_implementation eager is the faster "
            "kernel on a CPU)."
        )
    if args.include_num_input_tokens_seen != "no":  # the Trainer counts the elements of the model's main input
        value = {"all": "true"}.get(args.include_num_input_tokens_seen, args.include_num_input_tokens_seen)
        raise SetupError(
            f"--include_num_input_tokens_seen {value} counts a language model's input tokens; for this ViT the "
            "Trainer would count every pixel value of every image (3,072 per 32x32 RGB image) and log them as tokens "
            "seen and tokens per second. Leave it out (train_samples_per_second counts the images)."
        )
    if args.prediction_loss_only:  # a KeyError at the first evaluation, or a TypeError at the test
        raise SetupError(
            "--prediction_loss_only true keeps no predictions, but train.py scores each evaluation's accuracy "
            "(which picks the best checkpoint) and the test split's metrics.json from them: leave it out."
        )
    if args.dataloader_persistent_workers and args.dataloader_num_workers == 0:  # torch's error, after decoding
        raise SetupError(
            "--dataloader_persistent_workers true keeps the data-loader workers alive between epochs, but "
            "--dataloader_num_workers 0 starts none: pass --dataloader_num_workers N (1 or more) with it, or leave "
            "it out."
        )
    if not 0 <= args.label_smoothing_factor < 1:
        raise SetupError(f"--label_smoothing_factor must be in [0, 1), got {args.label_smoothing_factor} (0.1 is usual).")
    if args.max_steps <= 0 and args.num_train_epochs <= 0:
        raise SetupError(
            f"--max_steps {args.max_steps} and --num_train_epochs {args.num_train_epochs} leave nothing to train: "
            "give a positive --num_train_epochs (or --max_steps)."
        )
    metric = (args.metric_for_best_model or "").removeprefix("eval_")
    if args.metric_for_best_model and metric not in EVAL_METRICS:
        raise SetupError(
            f"--metric_for_best_model {args.metric_for_best_model!r} is not computed at each evaluation: choose one "
            f"of {', '.join(EVAL_METRICS)} (top-5 and per-class figures are in the final metrics.json only)."
        )
    if args.label_names not in (None, ["labels"]):
        raise SetupError(
            f"--label_names {' '.join(args.label_names)}: the batches name the labels 'labels' whatever the "
            "dataset's column is called (--label_column picks the column). Leave --label_names out."
        )
    if args.fp16 and args.device.type == "cpu":
        raise SetupError(
            "--fp16 needs a CUDA GPU: on a CPU the Trainer would train in fp32 and record fp16. Leave it out, or "
            "use --bf16 true on a CPU with bf16 instructions."
        )
    if args.fp16_full_eval and args.bf16 and args.device.type == "cpu":
        raise SetupError(
            "--fp16_full_eval true casts the model to float16 to evaluate, and on a CPU the bf16 autocast of --bf16 "
            "true cannot run a float16 model (torch stops at the first evaluation). Leave --fp16_full_eval out, or "
            "evaluate in bfloat16 with --bf16_full_eval true."
        )
    if args.batch_eval_metrics and args.world_size > 1:
        raise SetupError(
            f"--batch_eval_metrics true in {args.world_size} processes: the Trainer then keeps no predictions, so the "
            "validation loss would count the images the distributed sampler repeats to fill the last batches (and "
            "--metric_for_best_model eval_loss would select on it). Leave --batch_eval_metrics out (the validation "
            "predictions of CIFAR-10 take about 0.2 MB)."
        )
    if args.save_only_model and run_args.stop_after_steps:
        raise SetupError(
            "--stop_after_steps ends the session to be resumed, but --save_only_model true leaves the optimizer "
            "and learning-rate schedule out of the checkpoints, so a resume could not continue the run. Drop one."
        )
    optim = getattr(args.optim, "value", args.optim)
    if args.optim_args and any(pair.count("=") != 1 for pair in args.optim_args.replace(" ", "").split(",")):
        raise SetupError(f"--optim_args takes key=value pairs separated by commas (e.g. momentum=0.9,nesterov=true), "
                         f"got {args.optim_args!r}.")
    try:  # an optimizer whose package is missing failed at the first step, after the data was decoded
        ignored = ignored_optim_args(args)
    except (ImportError, ValueError) as err:
        line = str(err).strip().splitlines()[0].rstrip(".")
        raise SetupError(f"--optim {optim}: {line}; or leave --optim out (AdamW, the default).") from None
    if ignored:
        adamw = " (AdamW's settings are flags of their own: --adam_beta1, --adam_beta2, --adam_epsilon)"
        raise SetupError(
            f"--optim_args {args.optim_args}: --optim {optim} does not read {', '.join(ignored)}, so the Trainer would "
            f"ignore {'it' if len(ignored) == 1 else 'them'} without a word. Leave {'it' if len(ignored) == 1 else 'them'} "
            f"out{adamw if optim.startswith('adamw_torch') else ''}."
        )
    from transformers.integrations import get_reporting_integration_callbacks

    try:  # a logger whose package is missing fails when the Trainer is built: after the data is decoded
        for callback in get_reporting_integration_callbacks(args.report_to):
            callback()
    except (RuntimeError, ImportError, ValueError) as err:
        raise SetupError(f"--report_to {' '.join(args.report_to)}: {_logger_problem(err)}") from None
    if args.lr_scheduler_type == "reduce_lr_on_plateau":
        # The Trainer steps it with --metric_for_best_model; torch's default mode "min" would read a rising
        # accuracy as no progress and cut the learning rate.
        kwargs = dict(args.lr_scheduler_kwargs or {})
        kwargs.setdefault("mode", "max" if args.greater_is_better else "min")
        args.lr_scheduler_kwargs = kwargs
    check_scheduler(args)
    check_compiler(args)


def check_compiler(args: TrainingArguments) -> None:
    """--torch_compile on a CPU: the inductor backend writes C++ kernels and builds them with a C++ compiler; without
    one it failed at the first step, after the data was decoded, in a many-screen InductorError."""
    if not args.torch_compile or args.torch_compile_backend not in (None, "inductor") or args.device.type != "cpu":
        return
    from torch._inductor import config as inductor_config
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        get_cpp_compiler()
    except Exception:  # torch's InvalidCxxCompiler (its text is a page long)
        searched = ", ".join(str(c) for c in inductor_config.cpp.cxx if c)
        raise SetupError(
            f"--torch_compile true builds C++ kernels on a CPU, and no C++ compiler was found (searched: {searched}; "
            "the environment variable CXX names another): install one (e.g. `apt-get install g++`), or leave "
            "--torch_compile out (eager PyTorch trains the same model, 8-17% slower)."
        ) from None


def check_scheduler(args: TrainingArguments) -> None:
    """The Trainer builds the learning-rate schedule at its first step, after the data is decoded: a schedule that
    needs --lr_scheduler_kwargs (cosine_with_min_lr's min_lr, warmup_stable_decay's num_decay_steps) or is given
    one it does not take stopped there in a traceback. Built now, as the Trainer will, on a stand-in optimizer."""
    from transformers import get_scheduler

    # two parameter groups, as the Trainer's optimizer has (with and without weight decay): a per-group argument
    # (ReduceLROnPlateau's min_lr list) is checked against as many groups as the run will have
    groups = [{"params": [torch.zeros(1, requires_grad=True)]} for _ in range(2)]
    stand_in = torch.optim.SGD(groups, lr=args.learning_rate or 1.0)
    try:
        get_scheduler(args.lr_scheduler_type, optimizer=stand_in, num_warmup_steps=args.get_warmup_steps(100),
                      num_training_steps=100, scheduler_specific_kwargs=args.lr_scheduler_kwargs)  # fmt: skip
    except (TypeError, ValueError) as err:
        schedule = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
        kwargs = json.dumps(args.lr_scheduler_kwargs) if args.lr_scheduler_kwargs else "none"
        raise SetupError(
            f"--lr_scheduler_type {schedule} with --lr_scheduler_kwargs {kwargs}: {str(err).strip().splitlines()[0]}. "
            "Pass the schedule's own arguments as --lr_scheduler_kwargs '{\"name\": value}' (e.g. "
            "cosine_with_min_lr: '{\"min_lr_rate\": 0.1}'), or another --lr_scheduler_type."
        ) from None


def check_best_metric_for_classes(metric_for_best_model: str | None, num_labels: int) -> None:
    """A top-k accuracy whose k guesses cover every class is 100% for any checkpoint (and with fewer than k classes
    it is not computed: the Trainer's KeyError at the first evaluation), so it cannot pick the best one. Checked
    once the dataset's classes are known, before the output folder is touched."""
    found = re.fullmatch(r"top(\d+)_accuracy", (metric_for_best_model or "").removeprefix("eval_"))
    if found and int(found.group(1)) >= num_labels:
        raise SetupError(
            f"--metric_for_best_model {metric_for_best_model}: the dataset has {num_labels} classes, so "
            f"{found.group(1)} guesses always include the right one and every checkpoint would score 100%: nothing to "
            "choose by. Choose accuracy, macro_f1 or loss."
        )


def ignored_optim_args(args: TrainingArguments) -> list[str]:
    """The keys of --optim_args that --optim's optimizer never reads (transformers' AdamW reads none, SGD only its
    momentum, dampening, weight_decay and nesterov): each is tried alone, and one that leaves the optimizer's
    arguments as they are without it is ignored. Raises the optimizer factory's error for a missing package."""
    import copy

    def optimizer_kwargs(optim_args):
        one = copy.copy(args)
        one.optim_args = optim_args
        return Trainer.get_optimizer_cls_and_kwargs(one)[1]

    plain = optimizer_kwargs(None)
    pairs = [pair.strip() for pair in (args.optim_args or "").split(",") if pair.strip()]
    return [pair.split("=", 1)[0].strip() for pair in pairs if optimizer_kwargs(pair) == plain]


def _logger_problem(err: Exception) -> str:
    """The first line of a logger's refusal. transformers' TensorBoard one advises "update your PyTorch version or
    install tensorboardX", but torch's SummaryWriter, which it uses, needs the tensorboard package."""
    line = str(err).strip().splitlines()[0]
    if line.startswith("TensorBoardCallback requires tensorboard"):
        return ("TensorBoardCallback requires tensorboard to be installed. Run `pip install tensorboard`, or leave "
                "--report_to out.")
    return line


def take_over_push(training_args: TrainingArguments) -> str | None:
    """--push_to_hub: the finished folder goes up once, with its card and metrics, through hf_vit.hub (the
    Trainer would push the weights before the card and metrics exist). Checked now; returns the repo id."""
    args = training_args
    if not args.push_to_hub:
        return None
    from huggingface_hub import get_token

    from .hub import BadRepoId, check_repo_id, push_branch

    strategy = getattr(args.hub_strategy, "value", args.hub_strategy)
    if strategy not in ("end", "every_save"):  # every_save is the default: here the one save is the finished folder
        raise SetupError(
            f"--hub_strategy {strategy}: train.py pushes the finished model folder once, at the end; checkpoints "
            "hold optimizer states and stay home. Leave --hub_strategy out."
        )
    repo_id = args.hub_model_id or Path(args.output_dir).name
    try:  # push_to_hub.py's check: a web address names the id in it
        check_repo_id(repo_id)
    except BadRepoId as err:
        raise SetupError(f"--push_to_hub needs a repo id, and {repo_id!r} is not one: {err.reason} Pass it with "
                         "--hub_model_id.") from None
    try:
        push_branch(args.hub_revision)
    except ValueError as err:
        raise SetupError(f"--hub_revision: {err}") from None
    if not (args.hub_token or get_token()):
        raise SetupError(
            "--push_to_hub: no Hugging Face token found. Log in with `hf auth login`, set HF_TOKEN or pass "
            "--hub_token (write access), or train without --push_to_hub and push later with scripts/push_to_hub.py."
        )
    from .data import hub_unreachable_reason

    why = hub_unreachable_reason()
    if why:  # known now, not after hours of training (the Trainer would create the repo at start)
        raise SetupError(
            f"--push_to_hub: the Hugging Face Hub cannot be reached ({why}). Train without --push_to_hub and push "
            "the finished folder later with scripts/push_to_hub.py."
        )
    if args.hub_private_repo and "/" in repo_id:  # the push would refuse it, after the whole run: known now
        refuse_public_now(repo_id, args.hub_token)
    args.push_to_hub = False  # the Trainer's own push stays off
    return repo_id


# Written into each checkpoint: what a resume from it must keep (see run_fingerprint).
RUN_FINGERPRINT = "hf_vit_run.json"
SHAPE_KEYS = ("image_size", "patch_size", "num_channels", "dim", "depth", "heads", "dim_head", "mlp_dim", "pool",
              "num_labels")
# A resume loads these from the checkpoint's optimizer and scheduler state: a new value would be ignored.
OPTIMIZER_KEYS = ("learning_rate", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "optim", "optim_args")


def optimizer_family(optim) -> str:
    """--optim as far as the checkpoint's state cares: the fused and plain AdamW share one state (and transformers'
    default is one or the other by torch version, so the same command may record either)."""
    value = str(getattr(optim, "value", optim))
    return value.removesuffix("_fused")


def run_fingerprint(config, processor, data_args, training_args, train_size: int) -> dict:
    """What a checkpoint's weights and its place in the run depend on, keyed by the flag that sets it.

    model: the shape (another shape cannot load the weights). data: the validation carve and the training
    subset (another seed or size would put images the model trained on into validation). schedule: what fixes
    the run's number of steps (the same values mean the checkpoint's max_steps is this run's too). optimizer:
    what the checkpoint's optimizer state brings back. training: what may change on a resume (named, not refused).
    """
    return {
        "model": {**{k: getattr(config, k) for k in SHAPE_KEYS}, "image_mean": list(processor.image_mean),
                  "image_std": list(processor.image_std)},
        # The head's rows, in order: the same count of other classes (another dataset, renamed or text labels)
        # would train each row towards another class.
        "classes": [config.id2label[i] for i in range(config.num_labels)],
        "data": {k: getattr(data_args, k) for k in ("dataset_config", "dataset_revision", "image_column",
                                                    "label_column", "train_split", "validation_size",
                                                    "validation_split", "max_train_samples", "max_eval_samples")}
        | {"seed": training_args.seed, "data_seed": training_args.data_seed},
        "schedule": {"train_images": train_size, "world_size": training_args.world_size}
        | {k: getattr(training_args, k) for k in ("max_steps", "num_train_epochs", "per_device_train_batch_size",
                                                  "gradient_accumulation_steps", "dataloader_drop_last")},
        # One process's step: the per-device batch on each GPU it drives (DataParallel: several visible GPUs).
        "process_step": {"train_batch_size": training_args.train_batch_size,
                         "auto_find_batch_size": training_args.auto_find_batch_size},
        "optimizer": {k: getattr(training_args, k) for k in OPTIMIZER_KEYS}
        | {"optim": optimizer_family(training_args.optim)},
        "training": asdict(data_args.augment_config())
        | {k: getattr(training_args, k) for k in ("label_smoothing_factor", "max_grad_norm", "lr_scheduler_type",
                                                  "warmup_steps")},
    }


def check_resume(resume, fingerprint: dict, state: dict) -> bool:
    """Refuse a checkpoint of another model shape, data split, optimizer or batches (naming the flags); True when
    the checkpoint (`state`: its trainer_state.json) already ends this run's schedule (a crash after the last save),
    so that training is skipped, not overrun."""
    saved = _read_json_or_none(Path(resume) / RUN_FINGERPRINT)
    if saved is None:  # a checkpoint from before this file existed: nothing to compare
        return False
    if "optim" in (saved.get("optimizer") or {}):  # recorded as given by an earlier version: adamw_torch_fused
        saved["optimizer"]["optim"] = optimizer_family(saved["optimizer"]["optim"])
    check_classes(resume, saved, fingerprint)
    changes = _changes(saved, fingerprint, "model", "data", "optimizer")
    if changes:
        optimizer = [key for part, key, _, _ in changes if part == "optimizer"]
        raise SetupError(
            f"--resume_from_checkpoint {str(resume)!r} was saved by a run with other settings: {_said(changes)} "
            "(checkpoint -> now). Resume with the checkpoint's values, or start a new run in another --output_dir."
            + _optimizer_advice(resume, optimizer)
        )
    check_batches(resume, saved, fingerprint, state)
    # the same steps (check_batches), over as many images and as long a run: the checkpoint's max_steps is this run's
    length = [{k: v for k, v in (schedule or {}).items() if k not in BATCH_KEYS}
              for schedule in (saved.get("schedule"), fingerprint["schedule"])]
    same_schedule = bool(saved.get("schedule")) and _json_value(length[0]) == _json_value(length[1])
    return same_schedule and 0 < state.get("max_steps", 0) <= state.get("global_step", 0)


def check_classes(resume, saved: dict, fingerprint: dict) -> None:
    """Refuse a resume on other classes than the checkpoint's head was trained for (a checkpoint from before this
    record is not compared; another class count is a shape change, said with the model's)."""
    old, new = saved.get("classes"), fingerprint["classes"]
    if not isinstance(old, list) or old == new or len(old) != len(new):
        return
    differ = [f"{i}: {a!r} -> {b!r}" for i, (a, b) in enumerate(zip(old, new)) if a != b]
    more = f" (and {len(differ) - 5} more)" if len(differ) > 5 else ""
    if sorted(map(str, old)) == sorted(map(str, new)):  # the same names: only their numbering differs
        numbers = all(isinstance(n, str) and re.fullmatch(r"[+-]?\d+", n) for n in new)
        # text labels that are whole numbers were numbered as text before hf_vit numbered them as numbers
        why = (" The class names are whole numbers: an older hf_vit numbered them as text ('10' before '2'), this "
               "one numbers them as numbers." if numbers and old == sorted(old) else "")
        raise SetupError(
            f"--resume_from_checkpoint {str(resume)!r} was trained on the same classes numbered in another order: its "
            f"head's rows are {'; '.join(differ[:5])}{more} (checkpoint -> this dataset), so a resume would train each "
            f"row towards another class.{why} A resume keeps the head's rows as they are: "
            + ("" if why else "resume on the dataset numbered as it was, or ")
            + f"fine-tune its weights with --model_name_or_path {str(resume)!r} in another --output_dir (its head is "
            "kept, its rows reordered to this numbering)."
        )
    raise SetupError(
        f"--resume_from_checkpoint {str(resume)!r} was trained on other classes: its head's rows are "
        f"{'; '.join(differ[:5])}{more} (checkpoint -> this dataset). Resume on the dataset it trained on, or "
        f"fine-tune its weights on this one with --model_name_or_path {str(resume)!r} in another --output_dir "
        "(a head for the same class names is kept, its rows reordered; other classes get a new one)."
    )


# What a step and an epoch are made of: the Trainer places a resume by the checkpoint's step count (its epoch,
# how many batches of that epoch to skip, how far along the learning-rate schedule), in the batches of this run.
BATCH_KEYS = ("world_size", "per_device_train_batch_size", "gradient_accumulation_steps", "dataloader_drop_last")


def check_batches(resume, saved: dict, fingerprint: dict, state: dict) -> None:
    """Refuse a resume whose optimiser steps hold other images than the checkpoint's: another count of images per
    step (processes x images per process step x accumulation), another last-batch rule, or another count of steps
    per epoch. Its step count would be read in the new steps, so the resume would skip or repeat images and run the
    schedule to another length. The same images per step made otherwise (2 processes x 16, then one x 32; 16, then
    8 x 2 accumulated) resume: the sampler's order, the place in the epoch and the schedule are the same. A longer or
    shorter schedule (--max_steps, --num_train_epochs) stays allowed."""
    old, new = saved.get("schedule") or {}, fingerprint["schedule"]
    known = {k: old.get(k, new[k]) for k in BATCH_KEYS}  # a value the checkpoint did not record is not compared
    was = _step(known, _checkpoint_process_batch(saved, state) or known["per_device_train_batch_size"])
    now = _step(new, _process_batch_now(fingerprint, state))
    images = old.get("train_images", new["train_images"])
    per_epoch = [_steps_per_epoch(images, step) for step in (was, now)]
    if _step_images(was) == _step_images(now) and was["drop_last"] == now["drop_last"] and per_epoch[0] == per_epoch[1]:
        return
    keys = [k for k in BATCH_KEYS if k in old and _json_value(old[k]) != _json_value(new[k])]
    if not keys:  # the same flags: one process's step took another batch (visible GPUs, --auto_find_batch_size)
        _refuse_process_batch(resume, new["per_device_train_batch_size"], was["process_batch"], now["process_batch"])
    changes = [f"{_batch_name(k)} {_json_value(old[k])!r} -> {_json_value(new[k])!r}" for k in keys]
    if _step_images(was) != _step_images(now):
        changes.append(f"images per step {_step_images(was)} -> {_step_images(now)}")
    elif per_epoch[0] != per_epoch[1] and was["drop_last"] == now["drop_last"]:  # grouped otherwise, dropping
        changes.append(f"steps per epoch {per_epoch[0]} -> {per_epoch[1]}")
    values = [f"--{k} {_json_value(old[k])}" for k in keys if k != "world_size"]
    if "world_size" in keys:
        n = old["world_size"]
        values.insert(0, "one process: `python scripts/train.py ...`" if n == 1 else (
            f"{n} processes in all: `torchrun --nproc_per_node {n}` or `accelerate launch --num_processes {n}` on one "
            "machine"))
    raise SetupError(
        f"--resume_from_checkpoint {str(resume)!r} was saved by a run with other batches: {'; '.join(changes)} "
        "(checkpoint -> now). Its place in the epoch and in the learning-rate schedule is counted in its own steps, "
        "so this resume would skip or repeat images and stretch or cut the schedule. Relaunch with the checkpoint's "
        f"values ({'; '.join(values)}), or start a new run from its weights with --model_name_or_path "
        f"{str(resume)!r} in another --output_dir."
    )


def _overwrite_with_resume(training_args: TrainingArguments, output_dir: Path) -> str:
    """--overwrite_output_dir true beside --resume_from_checkpoint, each named where it was set: a recipe file's
    value (never typed on this command line) by its key and file. A flag overrides a file's value; only a flag can
    be left out."""
    line = "the command line"
    said = getattr(training_args, "_hf_vit_said", {})
    overwrite, resuming = (said.get(name, line) for name in ("overwrite_output_dir", "resume_from_checkpoint"))
    if overwrite == resuming == line:
        fix = "pass one of the two"
    else:
        to_resume = ("leave --overwrite_output_dir out" if overwrite == line else
                     "pass --overwrite_output_dir false (it overrides the file's)")
        afresh = ("leave --resume_from_checkpoint out" if resuming == line else
                  f"take resume_from_checkpoint out of {resuming}")
        fix = f"{to_resume} to resume, or {afresh} to start afresh"

    def shown(name, value, source):
        return f"--{name} {value}" if source == line else as_written(name, value, source)

    return (f"{shown('overwrite_output_dir', 'true', overwrite)} deletes the earlier run in {str(output_dir)!r} to "
            f"start afresh, and {shown('resume_from_checkpoint', training_args.resume_from_checkpoint, resuming)} "
            f"continues it: {fix}.")


def warmup_past_the_run(args: TrainingArguments, schedule: dict, per_process: int) -> str | None:
    """A warmup as long as the run or longer: the learning rate climbs for every step and never reaches
    --learning_rate (the schedule's factor at step s is s / warmup). The Trainer takes it without a word. A note,
    not a refusal: the run still trains (a smoke run of --max_steps 1 beside a recipe's warmup is no mistake), and
    the number of steps is known only once the data is read. `schedule`: run_fingerprint's."""
    if args.max_steps > 0:
        total = args.max_steps
    else:  # as the Trainer counts: the optimizer steps of an epoch, times the epochs, rounded up
        per_epoch = _steps_per_epoch(schedule["train_images"], _step(schedule, per_process))
        total = math.ceil(args.num_train_epochs * per_epoch)
    warmup = args.get_warmup_steps(total)
    if total <= 0 or warmup < total:
        return None
    source = getattr(args, "_hf_vit_said", {}).get("warmup_steps", "the command line")
    value = _text(args.warmup_steps)
    of = f" ({value} of {total} steps)" if args.warmup_steps < 1 else ""
    return (f"{as_written('warmup_steps', value, source)} warms up over {warmup} steps{of}, and this run takes "
            f"{total} optimizer step(s): the learning rate climbs for the whole run and never reaches --learning_rate "
            f"{_text(args.learning_rate)}. Pass a --warmup_steps below {total} (or a fraction of the run, such as "
            "0.1), or train longer.")


def _step_words(args: TrainingArguments, per_process: int) -> str:
    """The images of one optimizer step, and what makes them: the learning rate and the schedule's steps go by it,
    and the Trainer says it only at its info level. `per_process`: one pass of one process as the run starts;
    --auto_find_batch_size may lower it later (by a tenth at each out-of-memory error), so the figure is said to be
    the starting one there."""
    accumulation, processes = args.gradient_accumulation_steps, args.world_size
    at_first = ", to start with: --auto_find_batch_size may lower it" if args.auto_find_batch_size else ""
    return (f"{per_process * accumulation * processes} images per optimizer step ({per_process} per process x "
            f"{accumulation} accumulated x {processes} process(es)){at_first}")


def _step(schedule: dict, process_batch: int) -> dict:
    """What one optimiser step is made of: `process_batch` images in each pass of each process (per device x the
    GPUs it sees), accumulated over as many passes."""
    return {"processes": schedule["world_size"], "process_batch": process_batch,
            "accumulation": schedule["gradient_accumulation_steps"], "drop_last": schedule["dataloader_drop_last"]}


def _step_images(step: dict) -> int:
    return step["processes"] * step["process_batch"] * step["accumulation"]


def _steps_per_epoch(images: int, step: dict) -> int:
    """The Trainer's optimiser steps per epoch of `images`: the sampler's batches of one pass, dealt round the
    processes (accelerate: the last round filled, or dropped with --dataloader_drop_last), grouped by the
    accumulation (a short last group is a step too)."""
    batch, processes = step["process_batch"], step["processes"]
    if step["drop_last"]:
        passes = images // batch // processes
    else:
        passes = -(-(-(-images // batch)) // processes)
    return max(-(-passes // step["accumulation"]), 1)


def _checkpoint_process_batch(saved: dict, state: dict) -> int | None:
    """The images of one pass of one process in the checkpoint's run: trainer_state.json's train_batch_size (per
    device x the GPUs it saw), else as hf_vit_run.json recorded it (None: neither did)."""
    for recorded in (state.get("train_batch_size"), (saved.get("process_step") or {}).get("train_batch_size")):
        if isinstance(recorded, int) and recorded > 0:
            return recorded
    return None


def _process_batch_now(fingerprint: dict, state: dict) -> int:
    """The images of one pass of one process in this run: with --auto_find_batch_size the Trainer takes the
    checkpoint's (trainer_state.json), else per device x the GPUs this process sees."""
    step, restored = fingerprint["process_step"], state.get("train_batch_size")
    if step["auto_find_batch_size"] and isinstance(restored, int) and restored > 0:
        return restored
    return step["train_batch_size"]


def _refuse_process_batch(resume, per_device: int, saved: int, now: int) -> None:
    """Refuse a resume whose passes hold other images under the same flags: one process that sees several GPUs
    (DataParallel) puts --per_device_train_batch_size on each, and trainer_state.json records what its passes took;
    --auto_find_batch_size records the smaller batch it fell back to."""
    if saved % per_device or now % per_device:
        raise SetupError(
            f"--resume_from_checkpoint {str(resume)!r} was saved by a process whose steps took {saved} images "
            f"(trainer_state.json's train_batch_size: --auto_find_batch_size lowers the batch when one does not "
            f"fit); here they would take {now}, so this resume would skip or repeat images and stretch or cut the "
            "schedule. Relaunch with --auto_find_batch_size (it takes the checkpoint's batch), or start a new run "
            f"from its weights with --model_name_or_path {str(resume)!r} in another --output_dir."
        )

    def devices(images: int) -> str:
        n = images // per_device
        return f"{images} images ({n} visible GPUs x --per_device_train_batch_size {per_device})" if n > 1 else (
            f"{images} images (one device)")

    raise SetupError(
        f"--resume_from_checkpoint {str(resume)!r} was saved by a process whose steps took {devices(saved)}; here "
        f"they would take {devices(now)}: one process puts --per_device_train_batch_size on each GPU it sees "
        "(DataParallel), so this resume would skip or repeat images and stretch or cut the schedule. Make "
        f"{saved // per_device} GPU(s) visible (CUDA_VISIBLE_DEVICES) as the checkpoint's run had, or start a new run "
        f"from its weights with --model_name_or_path {str(resume)!r} in another --output_dir."
    )


def _batch_name(key: str) -> str:
    return "processes" if key == "world_size" else f"--{key}"


def _changes(saved: dict, fingerprint: dict, *parts: str) -> list[tuple]:
    """(part, key, old, new) for each value of `parts` that the checkpoint's run had otherwise (keys it did not
    record, from an older version, are not compared)."""
    return [
        (part, key, _json_value(saved[part][key]), _json_value(value))
        for part in parts
        for key, value in fingerprint[part].items()
        if key in (saved.get(part) or {}) and _json_value(saved[part][key]) != _json_value(value)
    ]


def _said(changes) -> str:
    return "; ".join(f"--{key} {old!r} -> {new!r}" for _, key, old, new in changes)


def _optimizer_advice(resume, keys) -> str:
    """Why a changed optimizer setting cannot be resumed with, and the way to train the weights with it."""
    reasons = []
    if restored := [f"--{k}" for k in keys if k != "optim"]:
        reasons.append(f"a resume takes {', '.join(restored)} from the checkpoint's optimizer and schedule state, "
                       "so a new value would be ignored")
    if "optim" in keys:
        reasons.append("another --optim cannot continue the checkpoint's optimizer state")
    if not reasons:
        return ""
    text = "; ".join(reasons)
    return (f" {text[0].upper()}{text[1:]}; to train its weights with the new values, start a new run with "
            f"--model_name_or_path {str(resume)!r}.")


def resume_changes(resume, fingerprint: dict) -> list[str]:
    """The augmentation and loss settings this resume changes (they apply from its first step on): said, not
    refused, as a longer or shorter schedule is not."""
    saved = _read_json_or_none(Path(resume) / RUN_FINGERPRINT)
    return [_said([change]) for change in _changes(saved, fingerprint, "training")] if saved else []


def _read_json_or_none(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _json_value(value):
    """A value as it reads back from JSON (tuples become lists), for comparing with a saved one."""
    return json.loads(json.dumps(value, default=str))


def selected_validation_accuracy(state) -> float | None:
    """Validation accuracy of the checkpoint that load_best_model_at_end chose (best_metric is that of
    --metric_for_best_model, which may be the loss)."""
    step = state.best_global_step
    if not step and state.best_model_checkpoint:
        step = int(Path(state.best_model_checkpoint).name.rsplit("-", 1)[-1])
    for entry in state.log_history:
        if entry.get("step") == step and "eval_accuracy" in entry:
            return entry["eval_accuracy"]
    return None


def finish_without_training(trainer, resume, output_dir):
    """The checkpoint already holds the run's last step: load its state and the best weights, as train() would."""
    from safetensors.torch import load_file
    from transformers import TrainerState
    from transformers.trainer_utils import TrainOutput

    trainer.state = TrainerState.load_from_json(str(Path(resume) / "trainer_state.json"))
    best = Path(resume)
    if trainer.args.load_best_model_at_end and trainer.state.best_global_step:
        candidate = Path(output_dir) / f"checkpoint-{trainer.state.best_global_step}"
        best = candidate if (candidate / "model.safetensors").is_file() else best
    # Read on the CPU: load_state_dict copies onto the model's device, and safetensors refuses the CPU ranks' "cpu:0".
    trainer.model.load_state_dict(load_file(str(best / "model.safetensors"), device="cpu"))
    if trainer.is_world_process_zero():
        print(
            f"[hf_vit] {Path(resume).name} is the run's last step ({trainer.state.global_step} of "
            f"{trainer.state.max_steps}): no training this session; testing and writing {best.name}",
            flush=True,
        )
    return TrainOutput(trainer.state.global_step, 0.0, {})


@dataclass
class Start:
    """The trained model a fine-tuning run starts from (--model_name_or_path)."""

    source: str  # what from_pretrained reads: a checked local folder or a Hub id
    local_only: bool  # a Hub id without a connection: the Hugging Face cache only
    is_local: bool
    config: HfViTConfig
    processor: object | None  # its saved image processor, if any
    revision: str | None = None  # --model_revision: the Hub model's branch, tag or commit


def load_start(model_args: ModelArguments, output_dir=None) -> Start:
    """--model_name_or_path, checked up front: before `output_dir` (which must not hold it) is cleared."""
    from transformers import AutoConfig
    # from its module: transformers 5.17 without torchvision exports a placeholder that raises
    from transformers.models.auto.image_processing_auto import AutoImageProcessor

    from .analysis import check_model_revision, hub_unreachable, locate_model
    from .hub import weights_against_config

    name, revision = model_args.model_name_or_path, model_args.model_revision
    try:
        with flags_in_messages():  # named as train.py's flag
            check_model_revision(name, revision, "model_name_or_path", flag=None, revision_argument="model_revision")
            source, is_local = locate_model(name, "model_name_or_path", flag=None)
    except (OSError, ValueError) as err:
        raise SetupError(str(err)) from None
    if is_local and output_dir is not None:
        target, here = Path(output_dir).resolve(), Path(source).resolve()
        inside = here.relative_to(target).parts if target in here.parents else ()
        # what a run replaces there: the model files and checkpoints (another folder in it is left alone)
        if here == target or (inside and (inside[0].startswith("checkpoint-") or inside[0] in RUN_FILES)):
            raise SetupError(
                f"--model_name_or_path {name!r} is the model or a checkpoint in --output_dir {str(output_dir)!r}, "
                "which this run replaces: fine-tune into another --output_dir, or copy the model out first."
            )
    local_only = not is_local and hub_unreachable()
    try:
        # trust_remote_code=False, never None: transformers would ask on the terminal and run a folder's code on "y"
        config = AutoConfig.from_pretrained(source, trust_remote_code=False, local_files_only=local_only,
                                            revision=revision)
    except (OSError, ValueError) as err:
        if isinstance(err, ValueError) and "trust_remote_code" in str(err):
            raise SetupError(
                f"--model_name_or_path {name!r} is a model whose code comes with it (auto_map in config.json names "
                ".py files that would run here). Fine-tuning here starts from an hf_vit model, which needs none."
            ) from None
        where = "its config.json" if is_local else "it from the Hugging Face Hub (or its local cache)"
        raise SetupError(
            f"--model_name_or_path {name!r}: could not read {where}: {str(err).strip().splitlines()[0]} Pass an "
            "hf_vit model folder (what training wrote) or a Hub id you can reach."
        ) from None
    if not isinstance(config, HfViTConfig):
        raise SetupError(
            f"--model_name_or_path {name!r} is a {config.model_type!r} model: fine-tuning here starts from an hf_vit "
            "model (config.json says \"model_type\": \"hf_vit\"), such as a folder this script wrote."
        )
    if is_local:
        problems = weights_against_config(Path(source), config.to_dict() | {"model_type": "hf_vit"})
        if problems:
            raise SetupError(f"--model_name_or_path {name!r}: {problems[0]}")
    try:
        processor = AutoImageProcessor.from_pretrained(source, trust_remote_code=False, local_files_only=local_only,
                                                       revision=revision)
    except (OSError, ValueError) as err:  # none saved: CIFAR-10's numbers (or --image_mean/--image_std), and a note
        if "trust_remote_code" in str(err):
            raise SetupError(
                f"--model_name_or_path {name!r}: its preprocessor_config.json names .py files (auto_map) that would "
                "run here to build its image processor; hf_vit's processor needs none. Delete auto_map from that "
                "file (or the file, to start from CIFAR-10's normalisation)."
            ) from None
        processor = None
    return Start(source, local_only, is_local, config, processor, revision)


def load_for_fine_tuning(start: Start, config: HfViTConfig, attn_implementation=None):
    """The saved weights in a model of `config` (the start's shape, the dataset's classes), and what became of the
    head: the same classes keep it (rows reordered to the dataset's class order); other classes get a new one."""
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model, info = HfViTForImageClassification.from_pretrained(
        start.source, config=config, ignore_mismatched_sizes=True, use_safetensors=True,
        local_files_only=start.local_only, output_loading_info=True, revision=start.revision, **kwargs,
    )
    fresh = sorted({*(info.get("missing_keys") or []), *(k for k, *_ in info.get("mismatched_keys") or [])})
    body = [k for k in fresh if not k.startswith("mlp_head.")]
    unused = sorted(info.get("unexpected_keys") or [])
    if body or unused:  # only the head may be new: anything else means the weights are not this model's
        detail = f"lacks weights of the model's body ({', '.join(body[:3])}" if body else (
            f"holds weights its config.json does not describe ({', '.join(unused[:3])}")
        raise SetupError(
            f"--model_name_or_path {start.source!r} {detail}{' ...' if len(body or unused) > 3 else ''}): only a "
            "classification head may start afresh. Use the folder as training (or save_pretrained) wrote it."
        )
    old = [str(start.config.id2label[i]) for i in range(start.config.num_labels)]
    new = [str(config.id2label[i]) for i in range(config.num_labels)]
    head = model.mlp_head[-1]  # the class-specific layer; the LayerNorm before it is the image vector's
    if fresh:
        return model, f"a new head for {config.num_labels} classes starts afresh ({', '.join(fresh)})"
    unnamed = [f"LABEL_{i}" for i in range(config.num_labels)]  # transformers' placeholders: class ids, no names
    if old == new or unnamed in (old, new):
        return model, "" if old == new else "the head is kept row by row (class ids without names on one side)"
    with torch.no_grad():
        if sorted(old) == sorted(new):  # the same classes in another order: each keeps its own row
            order = torch.tensor([old.index(name) for name in new])
            head.weight.copy_(head.weight[order])
            head.bias.copy_(head.bias[order])
            return model, f"the head's rows follow the dataset's class order ({', '.join(new[:4])}{', ...' if len(new) > 4 else ''})"
        # other classes, as many: rows trained for another class each would only mislead; a new head, as above
        head.weight.normal_(0.0, config.initializer_range)
        head.bias.zero_()
    return model, (f"a new head for {config.num_labels} classes starts afresh (its classes are not the model's: "
                   f"{', '.join(new[:3])}, ... instead of {', '.join(old[:3])}, ...)")


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------
def train(
    model_args: ModelArguments,
    data_args: DataArguments,
    run_args: RunArguments,
    training_args: TrainingArguments,
    extra_callbacks=(),
):
    """Train, select by validation accuracy, test, and write the model folder. Returns the test metrics (or None).

    `extra_callbacks` are added to the Trainer's (the benchmark times the steps with one).
    """
    output_dir = Path(training_args.output_dir)
    if training_args.process_index == 0:
        for note in getattr(training_args, "_hf_vit_notes", ()):
            print(f"[hf_vit] note: {note}", flush=True)
    check_output_dir(output_dir)
    with hold_output_dir(output_dir, is_main=training_args.process_index == 0), _sigterm_handler_kept():
        return _train(model_args, data_args, run_args, training_args, extra_callbacks)


@contextmanager
def _sigterm_handler_kept():
    """The caller's SIGTERM handler, back however the block ends. --enable_jit_checkpoint: building the Trainer puts
    in its own, which transformers puts back only after a training it ran; a run refused or failed in between (a
    resume refused once the Trainer is built) left it in a Python caller (a notebook), where a kill then went to it."""
    before = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        _put_back_sigterm(before)


def _put_back_sigterm(handler) -> None:
    if threading.current_thread() is threading.main_thread():  # signal.signal works only there
        signal.signal(signal.SIGTERM, signal.SIG_DFL if handler is None else handler)  # None: set outside Python


def _train(model_args, data_args, run_args, training_args, extra_callbacks):
    """train's work, once --output_dir is held."""
    output_dir = Path(training_args.output_dir)
    if run_args.stop_after_steps is not None and run_args.stop_after_steps < 1:
        raise SetupError(f"--stop_after_steps must be at least 1, got {run_args.stop_after_steps}.")
    if run_args.stop_after_steps and training_args.save_strategy == "best":
        raise SetupError(
            "--stop_after_steps needs a checkpoint at the stop, but --save_strategy best saves only when validation "
            "improves. Use --save_strategy steps (or epoch) with it."
        )
    check_trainer_flags(training_args, run_args)
    one_pass = training_args.max_steps <= 0 and training_args.num_train_epochs <= 1  # no epoch to repeat
    sequential = getattr(training_args, "train_sampling_strategy", "random") == "sequential"
    if sequential and not one_pass and data_args.augment_config().is_random:
        # Each batch's augmentation is seeded by its images (so a resumed run replays it exactly); in the same
        # order every epoch, every epoch would get the same crops, flips and mixes.
        raise SetupError(
            "--train_sampling_strategy sequential: the augmentation of a batch is drawn from the images in it, so "
            "every epoch would see the same crops, flips and mixes. Leave it at random (the default), or turn the "
            "augmentation off (--pad 0 --hflip false, no RandAugment, erasing or mixing)."
        )
    hub_repo = take_over_push(training_args)
    if model_args.model_revision is not None and not model_args.model_name_or_path:  # it would pin nothing
        raise SetupError(
            f"--model_revision {model_args.model_revision!r} pins the Hub model --model_name_or_path names, and none "
            "is named: this run starts from random weights. Pass --model_name_or_path OWNER/NAME, or leave "
            "--model_revision out."
        )
    # The model to fine-tune is read before anything of --output_dir is cleared: it may not lie in there.
    start = load_start(model_args, output_dir) if model_args.model_name_or_path else None
    if training_args.resume_from_checkpoint not in (None, "") and run_args.overwrite_output_dir:
        # a resume never clears the folder: the flag was ignored without a word, and the run continued
        raise SetupError(_overwrite_with_resume(training_args, output_dir))
    resume = resolve_resume(training_args.resume_from_checkpoint, output_dir)
    if resume is None:  # refused now, before the data is read; deleted once this run's data and settings pass
        clear_earlier_run(output_dir, run_args.overwrite_output_dir, training_args.process_index == 0, delete=False)
    training_args.remove_unused_columns = False  # batches are tensors; column removal would break them
    if data_args.validation_size <= 0 and data_args.validation_split is None:  # nothing to select on: keep the last model
        training_args.eval_strategy = "no"
        training_args.load_best_model_at_end = False
    set_seed(training_args.seed)
    if training_args.device.type == "cpu":
        local = int(os.environ.get("LOCAL_WORLD_SIZE", training_args.world_size))
        set_cpu_threads(run_args.num_threads, local)
        keep_freed_memory()

    probe_config = build_config(model_args, start=start.config if start else None)
    check_attention_kernel(probe_config, training_args)
    # A fine-tuned model keeps the normalisation it was trained with, unless the flags say otherwise.
    start_processor = start.processor if start else None
    image_mean = model_args.image_mean or list(getattr(start_processor, "image_mean", None) or CIFAR10_MEAN)
    image_std = model_args.image_std or list(getattr(start_processor, "image_std", None) or CIFAR10_STD)
    if len(image_mean) != probe_config.num_channels or len(image_std) != probe_config.num_channels:
        raise SetupError(
            f"--image_mean and --image_std need one value per channel ({probe_config.num_channels}), got "
            f"{len(image_mean)} and {len(image_std)}. Give both with {probe_config.num_channels} value(s) each."
        )
    try:
        processor = make_image_processor(probe_config, image_mean, image_std)
    except ValueError as err:
        raise SetupError(str(err)) from None
    # Rank 0 decodes first and caches; the other ranks then read its cache.
    with training_args.main_process_first(desc="decoding the dataset"):
        data = prepare_data(
            data_args.dataset_name,
            image_size=probe_config.image_size,
            num_channels=probe_config.num_channels,
            image_mean=processor.image_mean,  # the processor's numbers: inference sees what training saw
            image_std=processor.image_std,
            augment=data_args.augment_config(),
            seed=training_args.seed,
            validation_size=data_args.validation_size,
            dataset_config=data_args.dataset_config,
            image_column=data_args.image_column,
            label_column=data_args.label_column,
            train_split=data_args.train_split,
            test_split=data_args.test_split,
            max_train_samples=data_args.max_train_samples,
            max_eval_samples=data_args.max_eval_samples,
            max_test_samples=data_args.max_test_samples,
            augment_on_device=data_args.augment_on_device,
            validation_split=data_args.validation_split,
            dataset_revision=data_args.dataset_revision,
        )
        check_best_metric_for_classes(training_args.metric_for_best_model, data.num_labels)
        config = build_config(model_args, data.label_names, data.num_labels, start=start.config if start else None)
        if start is None:
            model = HfViTForImageClassification(config)
        else:
            model, head = load_for_fine_tuning(start, config, model_args.attn_implementation)
    if resume is None:
        # The earlier run goes once every rank has its data: a rank reading a copy of its own (another node's) may
        # refuse it where rank 0's passed, and a refused run deletes nothing. The others wait until it is gone.
        training_args.distributed_state.wait_for_everyone()
        if training_args.process_index == 0:
            clear_earlier_run(output_dir, run_args.overwrite_output_dir, is_main=True)
        training_args.distributed_state.wait_for_everyone()
    if start is not None:
        if training_args.process_index == 0:
            head = f"; {head}" if head else ""
            kept = "" if start.processor is not None else "; it has no preprocessor_config.json: CIFAR-10's mean and std"
            at = f" (revision {start.revision})" if start.revision is not None else ""
            print(f"[hf_vit] fine-tuning {model_args.model_name_or_path}{at}{head}{kept}", flush=True)
    if training_args.process_index == 0:  # asked for a sample, got every image: said, and recorded as no limit
        for note in data.uncapped.values():
            print(f"[hf_vit] note: {note}", flush=True)

    curve = AccuracyCurve()
    callbacks = [curve, *extra_callbacks]
    stopper = StopAfterSteps(run_args.stop_after_steps) if run_args.stop_after_steps else None
    if stopper:
        callbacks.append(stopper)
    jit = getattr(training_args, "enable_jit_checkpoint", False)
    sigterm_before = signal.getsignal(signal.SIGTERM)  # --enable_jit_checkpoint: the Trainer's own replaces it
    trainer = HfViTTrainer(
        model=model,
        args=training_args,
        train_dataset=data.train,
        eval_dataset=data.validation,
        data_collator=data.collator,
        processing_class=processor,
        compute_metrics=compute_metrics,
        callbacks=callbacks,
        batch_augment=data.collator.augment,
    )
    # An early end is no sign of a kill (a callback's: EarlyStoppingCallback); the kills the Trainer answered are.
    kills = _noted_sigterms() if jit else []
    trainer.add_callback(RankReport(trainer))
    trainer.run_fingerprint = run_fingerprint(config, processor, data_args, training_args, len(data.train))
    # the starting weights: a local folder by where it is, however it was spelled
    trainer.run_fingerprint["model"]["model_name_or_path"] = (
        str(Path(start.source).resolve()) if start and start.is_local else model_args.model_name_or_path)
    trainer.run_fingerprint["model"]["model_revision"] = model_args.model_revision
    # read now: save_total_limit may delete that checkpoint during training
    resume_state = (_read_json_or_none(Path(resume) / "trainer_state.json") or {}) if resume else {}
    finished = resume is not None and check_resume(resume, trainer.run_fingerprint, resume_state)
    # A checkpoint from before hf_vit_run.json existed cannot be compared; at its schedule's end it needs no optimizer.
    unchecked = resume is not None and not (Path(resume) / RUN_FINGERPRINT).is_file()
    at_end = unchecked and 0 < resume_state.get("max_steps", 0) <= resume_state.get("global_step", 0)
    if resume is not None and not (finished or at_end) and not (Path(resume) / "optimizer.pt").is_file():
        raise SetupError(
            f"--resume_from_checkpoint {str(resume)!r} holds no optimizer state (saved with --save_only_model true): "
            "a resume would restart the optimizer and the learning-rate schedule, not continue the run. Start a new "
            "run, without --save_only_model if it is to be resumed."
        )
    if trainer.is_world_process_zero():
        per_process = _process_batch_now(trainer.run_fingerprint, resume_state)
        n_params = sum(p.numel() for p in model.parameters())
        # a model loaded in bfloat16/float16 (a folder saved so) trains in those weights whatever --bf16/--fp16 say
        weights = {torch.bfloat16: "bf16 weights", torch.float16: "fp16 weights"}.get(next(model.parameters()).dtype)
        autocast = {"bf16": "bf16 autocast", "fp16": "fp16 autocast"}.get(training_args.mixed_precision, "fp32")
        precision = weights or autocast
        print(
            f"[hf_vit] {n_params / 1e6:.2f}M parameters; train {len(data.train)}, validation "
            f"{len(data.validation) if data.validation else 0}, test {len(data.test)} images; "
            f"{training_args.world_size} process(es), {torch.get_num_threads()} thread(s) each on "
            f"{_device_name(training_args.device)}; "
            f"{model.config._attn_implementation} attention, {precision}; "
            # a resume under --auto_find_batch_size starts from the batch its checkpoint fell back to
            f"{_step_words(training_args, per_process)}",
            flush=True,
        )
        note = warmup_past_the_run(training_args, trainer.run_fingerprint["schedule"], per_process)
        if note and not finished:  # (a finished schedule takes no step)
            print(f"[hf_vit] note: {note}", flush=True)
        changes = resume_changes(resume, trainer.run_fingerprint) if resume is not None and not finished else []
        if changes:
            print(
                f"[hf_vit] resuming {Path(resume).name} with settings its run did not use: {'; '.join(changes)} "
                f"(checkpoint -> now); they apply from step {resume_state.get('global_step', 0) + 1} on",
                flush=True,
            )
    try:
        if finished:  # the Trainer would take one more step past the schedule's end
            train_result = finish_without_training(trainer, resume, output_dir)
        else:
            train_result = trainer.train(resume_from_checkpoint=resume)
    finally:
        # The Trainer's handler only schedules a checkpoint within a training, and it puts the earlier one back only
        # after a training it ran: left in place (no training this session, or a failed one), a kill goes unheeded.
        if jit:  # (train() puts it back too, however the run ends)
            _put_back_sigterm(sigterm_before)
    if kills:
        # --enable_jit_checkpoint: the Trainer answers a kill (SIGTERM) by saving a checkpoint and ending training
        # early, as if it were done; the run stops as a kill stops it, rather than test and write a half-trained model.
        # So too where --stop_after_steps ended the session first (within the Trainer's wait before its checkpoint).
        raise SystemExit(SIGTERM_EXIT)
    if stopper and stopper.stopped:
        if trainer.is_world_process_zero():
            print(
                f"[hf_vit] session ended at step {trainer.state.global_step} of {trainer.state.max_steps}; continue "
                f"with --resume_from_checkpoint {output_dir / f'checkpoint-{trainer.state.global_step}'}",
                flush=True,
            )
        return None

    # The best model (by validation accuracy) is loaded now; score it on the test split on every rank.
    # --bf16/fp16_full_eval: outside training the Trainer casts the model itself to evaluate; keep the weights.
    kept = None
    if training_args.bf16_full_eval or training_args.fp16_full_eval:
        kept = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    prediction = trainer.predict(data.test, metric_key_prefix="test")
    precision = prediction_precision(trainer)  # before the weights go back to float32
    # The validation accuracy of the model that is written: the best checkpoint's, or else the final model's own.
    selected = bool(training_args.load_best_model_at_end and trainer.state.best_metric is not None)
    best_val = selected_validation_accuracy(trainer.state) if selected else None
    if best_val is None and data.validation is not None:
        best_val = trainer.evaluate()["eval_accuracy"]
    if kept is not None:
        trainer.model.to(next(iter(kept.values())).dtype)
        trainer.model.load_state_dict(kept)
    metrics, pushing = None, False
    try:
        # Ctrl-C or a kill (a launcher stopping the ranks when another failed) while the model folder is written takes
        # effect once it is whole: never a config.json beside half the weights, or weights without their card.
        with signals_held():
            metrics = _write_model_folder(trainer, prediction, precision, selected, best_val, train_result, curve,
                                          resume_state, data, config, model_args, data_args, run_args, training_args,
                                          start)  # fmt: skip
        if metrics is None:  # another rank: rank 0 wrote the folder
            return None
        from .card import precision_words

        # bf16 autocast: evaluate_model.py, in float32, may count a few images otherwise
        under = "" if precision == "float32" else f" {precision_words(precision)}"
        print(f"[hf_vit] test accuracy {metrics['accuracy']:.4f}{under} ({_validation_words(metrics['validation'])}); "
              f"model folder: {output_dir}", flush=True)  # fmt: skip
        if hub_repo:
            pushing = True
            push_finished_folder(output_dir, hub_repo, training_args)
    except (KeyboardInterrupt, SystemExit, RuntimeError) as err:  # RuntimeError: another process lost (main)
        if metrics is not None:  # the folder is whole: main's line says so, not "continue with a resume"
            err.hf_vit_left = _left_after_folder(output_dir, hub_repo, training_args, pushing)
        raise
    return metrics


def _left_after_folder(output_dir: Path, hub_repo: str | None, training_args: TrainingArguments, pushing: bool) -> str:
    """What a run stopped after its model folder was written left: the folder complete, and the push, if any, to do."""
    left = (f"The model folder {output_dir} is complete (its test accuracy is in metrics.json): no need to resume, "
            "which would only test and write it again.")  # fmt: skip
    if hub_repo:
        push = "was cut short" if pushing else "was skipped"
        left += f" The push to {hub_repo!r} {push}: push it with `{_push_command(output_dir, hub_repo, training_args)}`."
    return left


def _push_command(output_dir: Path, repo_id: str, training_args: TrainingArguments) -> str:
    """scripts/push_to_hub.py's command that pushes where train.py's --push_to_hub would: its branch, and private if
    this run asked for it."""
    from .hub import on_main

    branch = not on_main(training_args.hub_revision)
    same = (f" --revision {training_args.hub_revision}" if branch else "") + (
        " --private" if training_args.hub_private_repo else "")
    return f"python scripts/push_to_hub.py {output_dir} {repo_id}{same}"


def _write_model_folder(trainer, prediction, precision, selected, best_val, train_result, curve, resume_state, data,
                        config, model_args, data_args, run_args, training_args, start) -> dict | None:
    """Write the model folder at --output_dir: weights, processor, metrics.json, training_recipe.json and the card.
    Returns the test metrics on rank 0, None on the other ranks."""
    output_dir = Path(training_args.output_dir)
    if trainer.is_world_process_zero():
        # An earlier evaluation of this folder scored other weights (a resumed run ends in a new model), and an
        # earlier metrics.json, card and recipe describe them too: gone before the new weights land, so a crash
        # (kill -9) between the two never pairs them.
        remove_entry(output_dir / "evaluation")
        for name in ("metrics.json", "README.md", "training_recipe.json"):
            (output_dir / name).unlink(missing_ok=True)
    trainer.save_model(str(output_dir))  # config (auto_map), weights, remote code, preprocessor_config.json
    # save_model also pickles the TrainingArguments; the model folder holds no pickles (training_recipe.json has them).
    if trainer.is_world_process_zero():
        (output_dir / "training_args.bin").unlink(missing_ok=True)
    if not trainer.is_world_process_zero():
        return None

    metrics = classification_metrics(gathered_logits(prediction.predictions), gathered_labels(prediction.label_ids),
                                     label_names=data.label_names)  # whole, or per batch (eval_do_concat_batches)
    metrics.update(
        dataset=dataset_reference(data_args.dataset_name),
        dataset_config=data.dataset_config,  # the one loaded (--dataset_config, else the default): the model-index's
        dataset_revision=data_args.dataset_revision,  # None: the Hub dataset's main branch as it was, or a folder
        image_format=data.image_format,  # "JPEG": the card's "JPEG copy" of CIFAR-10 rests on it
        split=data_args.test_split,
        train_split_size=data.train_split_size,  # the card says how many training images the dataset had
        numeric_precision=precision,  # evaluate_model.py scores the saved float32 weights in float32: a few images apart
        # the weights' dtype now is training's: predict's --bf16/fp16_full_eval cast was undone above
        hardware=training_hardware(training_args, next(trainer.model.parameters()).dtype),  # what the training time and images per second were measured on
        # model: "best" (the checkpoint chosen on validation was loaded) or "final" (the last step's weights)
        validation={"accuracy": best_val, "model": "best" if selected else "final"}
        | ({"selected_by": training_args.metric_for_best_model} if selected else {}),
        train={
            "runtime_s": train_result.metrics.get("train_runtime"),
            "steps": trainer.state.global_step,
            # a resumed run: runtime and curve cover only this session, which began at this step
            "resumed_from_step": resume_state.get("global_step"),
            "epochs": trainer.state.epoch,
            "train_samples_per_second": train_result.metrics.get("train_samples_per_second"),
            # validation accuracy after each evaluation, with seconds since this session's training began
            "curve": curve.points,
        },
    )
    write_json(output_dir / "metrics.json", metrics)
    write_json(
        output_dir / "training_recipe.json",
        {
            "recipe_files": training_args._hf_vit_sources,
            "model": {**asdict(model_args), "config": config.to_diff_dict()} | ({
                # a local folder is recorded so that the card, rendered anywhere, never links it as a Hub model;
                # the preset does not apply (the model's own shape does)
                "model_name_or_path": dataset_reference(model_args.model_name_or_path), "preset": None,
            } if start else {}),
            # a cap that took every image limited nothing: none is recorded, so the card claims no sample
            "data": {**asdict(data_args), "dataset_name": dataset_reference(data_args.dataset_name)}
            | dict.fromkeys(data.uncapped),
            "run": asdict(run_args),
            "training": json.loads(training_args.to_json_string()),
        },
    )
    from .card import write_model_card

    write_model_card(output_dir)
    return metrics


def prediction_precision(trainer: Trainer) -> str:
    """The precision trainer.predict ran the model in, as metrics.json records it: the weights' dtype ("float32";
    "bfloat16" or "float16" under --bf16/fp16_full_eval, which cast the model), or "bf16 autocast" / "fp16 autocast"
    for float32 weights whose forward accelerate wrapped in autocast (--bf16/--fp16 train, and so score, that way)."""
    dtype = str(next(trainer.model.parameters()).dtype).removeprefix("torch.")
    mixed = trainer.accelerator.mixed_precision
    if not (trainer.accelerator.native_amp and mixed in ("bf16", "fp16") and hasattr(trainer.model, "_original_forward")):
        return dtype
    if dtype == "float32":
        return f"{mixed} autocast"
    return dtype if dtype == {"bf16": "bfloat16", "fp16": "float16"}[mixed] else f"{dtype} under {mixed} autocast"


def training_hardware(training_args: TrainingArguments, weights: torch.dtype = torch.float32) -> dict:
    """What training ran on, for metrics.json: the card gives it beside the training time and speed, which mean
    little without it. threads_per_process is the CPU's torch thread count (None on a GPU, which it does not drive).
    `weights`: the dtype the model trained in; a bfloat16 or float16 model (fine-tuned from a folder saved so) ran
    in it whatever --bf16/--fp16 say."""
    device = training_args.device
    held = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(weights)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _processor_name()
    return {
        "device": device.type,  # "cpu", "cuda", "mps"
        "name": name or None,
        "processes": training_args.world_size,
        # one process drives every visible GPU (DataParallel) unless launched one per GPU: n_gpu is then 1
        "gpus_per_process": training_args.n_gpu if device.type == "cuda" else None,
        "threads_per_process": torch.get_num_threads() if device.type == "cpu" else None,
        "precision": held or {"bf16": "bf16", "fp16": "fp16"}.get(training_args.mixed_precision, "fp32"),
    }


def _processor_name() -> str:
    """The CPU's model ("Intel(R) Xeon(R) ...", "Apple M2 Pro"): /proc/cpuinfo's "model name" on Linux
    (platform.processor() says only "x86_64" there); without that file (macOS), sysctl's brand string
    (platform.processor() says only "arm" on Apple silicon); else platform.processor(), which may be empty."""
    import platform
    import subprocess

    try:
        with open(CPUINFO, encoding="utf-8", errors="replace") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:  # not Linux
        try:  # a name is a nicety: no sysctl, a hang or an error leaves it to platform.processor()
            found = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], stdin=subprocess.DEVNULL,
                                   capture_output=True, text=True, errors="replace", timeout=2, check=True)
            if found.stdout.strip():
                return found.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor()


def _device_name(device: torch.device) -> str:
    """The device of the summary line: 'cpu' for every CPU process (in several the Trainer names its 'cpu:0')."""
    return "cpu" if device.type == "cpu" else str(device)


def _validation_words(validation: dict) -> str:
    """The printed validation accuracy, with how it was chosen (the card's wording)."""
    if validation.get("accuracy") is None:  # --validation_size 0: nothing to print but None
        return "no validation set"
    value = round(validation["accuracy"], 4)
    if validation.get("model") != "best":
        return f"validation accuracy of the final model {value}"
    by = str(validation.get("selected_by") or "accuracy").removeprefix("eval_")
    words = "best validation accuracy" if by == "accuracy" else f"validation accuracy of the checkpoint chosen by {by}"
    return f"{words} {value}"


def refuse_public_now(repo_id: str, token) -> None:
    """--hub_private_repo into an existing public repository: refused before training (the push would refuse it at
    the end). A repository not made yet passes (the push makes it private), as does any answer but "public": the
    push itself says what went wrong then."""
    from huggingface_hub import HfApi

    from .hub import refuse_public

    try:
        refuse_public(HfApi(token=token), repo_id, True, "--hub_private_repo")
    except ValueError as err:
        raise SetupError(f"--push_to_hub: {err}") from None
    except Exception:  # not made yet (404), the network, a token the Hub refuses: the push says so, as before
        pass


def push_finished_folder(output_dir: Path, repo_id: str, training_args: TrainingArguments) -> None:
    """--push_to_hub: the folder as scripts/push_to_hub.py would push it (card for the repo id, metrics)."""
    from .hub import push_model_folder

    try:
        files, info = pushed = push_model_folder(
            output_dir, repo_id, private=training_args.hub_private_repo, token=training_args.hub_token,
            revision=training_args.hub_revision, held_by_caller=True,  # this run holds the folder it finished
            private_flag="--hub_private_repo",
        )
    except Exception as err:  # the network, the token's rights: the trained folder is complete either way
        raise SetupError(
            f"the model folder {output_dir} is complete, but the push to {repo_id!r} failed: "
            f"{(str(err).strip().splitlines() or [type(err).__name__])[0].rstrip('.')}. Push it with "
            f"`{_push_command(output_dir, repo_id, training_args)}`."
        ) from None
    gone = f" and deleted {len(pushed.deleted)} files of an earlier push" if pushed.deleted else ""
    print(f"[hf_vit] pushed {len(files)} files{gone} to {getattr(info, 'commit_url', None) or repo_id}", flush=True)


def main(argv=None) -> int:
    """Entry point of scripts/train.py: user errors become one line on stderr and exit status 2."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    speaks = True  # whether a stop is said here: until the arguments are read, no process knows its rank
    overwrite = False  # the run's --overwrite_output_dir: "the same command" plus a resume would be refused with it
    try:
        args = parse_args(argv)
        overwrite = bool(getattr(args[2], "overwrite_output_dir", False))
        # A Ctrl-C or a launcher's kill reaches every process of the run: rank 0 says what the run left, as it alone
        # says the rest (another rank's line would repeat it, or advise a resume of a model folder rank 0 finished).
        speaks = args[3].process_index == 0
        # Every process reads the same data, and logged the same warnings: once per machine now, from its first
        # process (which also decodes and caches the data there, so that a cache it cannot write is still said).
        if args[3].local_process_index != 0:
            logging.getLogger("hf_vit").setLevel(logging.ERROR)
        output_dir = Path(args[3].output_dir)
        existed = output_dir.exists()
        try:
            # the data's messages name train.py's flags, not prepare_data's arguments; a kill (SIGTERM) stops the run
            # as Ctrl-C does, through the clean-up (Python's default would end it at once, leaving its lock file)
            with flags_in_messages(), sigterm_exits():
                try:
                    train(*args)
                except RuntimeError as err:
                    if not lost_a_process(err, args[3].world_size):
                        raise
                    if threading.current_thread() is threading.main_thread():  # signal.signal works only there
                        # the launcher stops the processes left once one has ended: this line first (sigterm_exits
                        # puts the handler back after it)
                        signal.signal(signal.SIGTERM, signal.SIG_IGN)
                    # Rank 0 speaks for the run; of two processes, the one left speaks where rank 0 is the one lost.
                    if speaks or args[3].world_size == 2:
                        print(f"train.py: error: {_lost_process_words(args[3])}{_what_is_left(err, output_dir, overwrite)}",
                              file=sys.stderr, flush=True)  # fmt: skip
                    raise ProcessLostError from None
        except BaseException:
            # A run refused during setup leaves no empty --output_dir behind (check_output_dir made it).
            if not existed and output_dir.is_dir() and not any(output_dir.iterdir()):
                try:
                    output_dir.rmdir()
                except OSError:  # another process got there first, or wrote into it
                    pass
            raise
    except (DatasetError, SetupError, NonFiniteLossError) as err:
        print(f"train.py: error: {err}", file=sys.stderr, flush=True)
        return 2
    except ProcessLostError:  # said above
        return 1
    except (KeyboardInterrupt, SystemExit) as err:  # Ctrl-C, or a kill (sigterm_exits)
        killed = isinstance(err, SystemExit)
        if killed and err.code != SIGTERM_EXIT:
            raise
        if speaks:
            print(f"train.py: {'stopped by SIGTERM (kill)' if killed else 'interrupted'}."
                  f"{_what_is_left(err, output_dir if 'output_dir' in locals() else None, overwrite)}", file=sys.stderr,
                  flush=True)  # fmt: skip
        return SIGTERM_EXIT if killed else 130
    return 0


class ProcessLostError(Exception):
    """Another process of the run ended while this one waited for it in a collective; main has said so."""


def lost_a_process(err: RuntimeError, world_size: int) -> bool:
    """Whether a collective failed because another process of the run is gone (killed by the out-of-memory killer or
    a kill of its own, or crashed): gloo says its connection was closed or reset by the peer."""
    text = str(err)
    return world_size > 1 and any(words in text for words in ("closed by peer", "reset by peer", "Broken pipe"))


def _lost_process_words(args: TrainingArguments) -> str:
    """What happened, as this process can tell: which process ended where there were two, else another one."""
    other = f"rank {1 - args.process_index}" if args.world_size == 2 else "another process"
    return (f"{other} of this run ended (its own error above says why; with none, it was killed, e.g. by the "
            "out-of-memory killer: the launcher's summary names the signal), so rank "
            f"{args.process_index} stopped too.")


def _what_is_left(err: BaseException, output_dir: Path | None, overwrite: bool = False) -> str:
    """What a stopped run left, as the sentence that follows the line saying why it stopped. A run with
    --overwrite_output_dir true is told to pass it false: beside a resume it is refused (it would delete the run)."""
    if getattr(err, "hf_vit_left", None):  # stopped once the model folder was whole (train() says what is left)
        return f" {err.hf_vit_left}"
    # checkpoints are written in place, so one cut short is not named
    done = last_complete_checkpoint(output_dir) if output_dir is not None and output_dir.is_dir() else None
    if done:
        if overwrite:
            return (" Continue with the same command and --resume_from_checkpoint last --overwrite_output_dir false (a "
                    f"resume keeps the folder; the newest is {Path(done).name}).")
        return f" Continue with the same command and --resume_from_checkpoint last (the newest is {Path(done).name})."
    return " No checkpoint was written yet."
