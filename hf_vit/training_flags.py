"""train.py's flags, taken together: which were given where, and what follows from them.

The command line wins over --config_file, which wins over --recipe, which wins over the script's defaults
(`Given`). From that order, settings that only work together are settled before TrainingArguments sees them: a
lone --eval_strategy brings --save_strategy along (load_best_model_at_end needs a checkpoint at each evaluation),
no validation images switch evaluation off, and combinations that cannot work are one line naming the fix
(transformers' own errors blame a flag the user never set). Flag names of transformers' example script
run_image_classification.py get a hint of what does their work here.
"""

import argparse
import difflib
from dataclasses import dataclass, field


class SetupError(ValueError):
    """A bad recipe, argument or output folder; the message says how to fix it."""


def flags_given(parser: argparse.ArgumentParser, tokens) -> dict:
    """{dest: its text} of each flag on the command line (the last wins, as in argparse; a bare `--bf16`: None)."""
    given = {}
    for i, token in enumerate(tokens):
        flag, has_value, value = token.partition("=")
        action = parser._option_string_actions.get(flag) if flag.startswith("--") else None
        if action is None:
            continue
        if not has_value:
            after = tokens[i + 1] if i + 1 < len(tokens) else None
            value = None if after is None or after.startswith("--") else after
        given[action.dest] = value
    return given


@dataclass
class Given:
    """Where each argument was set: the command line wins over --config_file, which wins over --recipe (the file's
    values override the recipe's), which wins over our defaults."""

    command_line: dict
    config_file: set = field(default_factory=set)
    recipe: set = field(default_factory=set)
    followed: dict = field(default_factory=dict)  # a setting that followed another: that one's level

    def level(self, name: str) -> int:
        said = 3 if name in self.command_line else 2 if name in self.config_file else 1 if name in self.recipe else 0
        return max(said, self.followed.get(name, 0))


def as_written(name: str, value, source: str) -> str:
    """A setting as the user wrote it, and where: a flag (`--bf16 true (the command line)`), or a recipe file's key
    (`bf16: true (the config file x.yaml)`)."""
    if source == "the command line":
        return f"--{name} {value} ({source})"
    return f"{name}: {value} ({source})"


def _text(value) -> str:
    """A value as a flag takes it: `steps`, `true`, `50` (not IntervalStrategy.STEPS, True, 50.0)."""
    value = getattr(value, "value", value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# Evaluation flags that mean nothing without validation images (they were switched off without a word).
EVALUATION_FLAGS = ("eval_strategy", "eval_steps", "load_best_model_at_end", "metric_for_best_model",
                    "max_eval_samples", "eval_on_start")  # fmt: skip
# Evaluation flags that ask for an evaluation by themselves, whatever --eval_strategy says.
EVALUATING_ANYWAY = ("load_best_model_at_end", "eval_on_start")


def check_validation_size(value) -> None:
    """--validation_size counts images. A fraction (run_image_classification.py's --train_val_split 0.15) met
    argparse's bare "invalid int value", and a negative count passed as 0."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return  # not a number at all: argparse's own message names it
    if number < 0:
        raise SetupError(f"--validation_size must be 0 (no validation) or a number of images, got {value}.")
    if not number.is_integer():
        raise SetupError(f"--validation_size counts images, got {value}: {_as_images(number) or 'pass a whole number'}.")


def _as_images(fraction: float) -> str:
    """What a fraction of the train split comes to on CIFAR-10 (train.py's flag takes the count)."""
    if not 0 < fraction < 1:
        return ""
    return f"{fraction:g} of CIFAR-10's 50,000 training images would be --validation_size {round(fraction * 50000)}"


# Flags of transformers' run_image_classification.py, and what does their work here (the nearest name by spelling
# is wrong for some: --train_val_split is no --train_split).
EXAMPLE_SCRIPT_FLAGS = {
    "--train_val_split": "here --validation_size N counts the images carved from train; {images}",
    "--train_dir": "pass the dataset folder that holds the train split as --dataset_name FOLDER (--train_split "
                   "names the split)",
    "--validation_dir": "pass --validation_split NAME, a split of the --dataset_name dataset",
    "--dataset_config_name": "here it is --dataset_config",
    "--image_column_name": "here it is --image_column",
    "--label_column_name": "here it is --label_column",
    "--ignore_mismatched_sizes": "not needed here: fine-tuning (--model_name_or_path) makes a new head by itself "
                                 "when the dataset's classes differ from the model's",
}  # fmt: skip


# TrainingArguments that transformers 5 removed, which a user of transformers 4 still reaches for: what to pass now.
REMOVED_TRAINER_FLAGS = {
    "--warmup_ratio": "a --warmup_steps below 1 is now the fraction of the run: pass --warmup_steps {value}",
    "--logging_dir": "TensorBoard writes under --output_dir (runs/...), or where the environment variable "
                     "TENSORBOARD_LOGGING_DIR says",
    "--no_cuda": "pass --use_cpu true",
    "--group_by_length": "it is --train_sampling_strategy group_by_length now, which groups texts by length; every "
                         "image here has the same size, so leave it out",
    "--include_inputs_for_metrics": "pass --include_for_metrics inputs",
    "--save_safetensors": "checkpoints and models are always safetensors now: leave it out",
    "--use_mps_device": "the Trainer takes an Apple GPU by itself: leave it out (--use_cpu true keeps to the CPU)",
    "--fp16_backend": "mixed precision runs through torch's autocast: leave it out",
    "--half_precision_backend": "mixed precision runs through torch's autocast: leave it out",
    "--push_to_hub_token": "pass --hub_token",
}  # fmt: skip

# Everyday names of training scripts, whose nearest flag by spelling is another setting (--batch_size is one
# letter from --patch_size, --eval_batch_size from nothing near): the flag that does their work.
EVERYDAY_NAMES = {
    "--batch_size": "--per_device_train_batch_size", "--train_batch_size": "--per_device_train_batch_size",
    "--eval_batch_size": "--per_device_eval_batch_size", "--lr": "--learning_rate", "--epochs": "--num_train_epochs",
    "--num_epochs": "--num_train_epochs", "--steps": "--max_steps", "--wd": "--weight_decay",
}  # fmt: skip


def _split_as_images(value: str) -> str:
    """--train_val_split's value as train.py's --validation_size: the given fraction, 0 as no validation set, and
    that script's default 0.15 as the example only where no number was given."""
    try:
        fraction = float(value)
    except ValueError:
        return _as_images(0.15)
    if fraction == 0:
        return "0 would be --validation_size 0 (no validation set)"
    return _as_images(fraction) or f"{value} is no fraction of the train split (0 to 1); {_as_images(0.15)}"


def unknown_flag_message(token: str, options) -> str:
    """The refusal of a flag this script does not have: what to use instead for run_image_classification.py's
    names, else the closest flag by spelling."""
    flag, _, value = token.partition("=")
    if flag in EXAMPLE_SCRIPT_FLAGS:
        advice = EXAMPLE_SCRIPT_FLAGS[flag].format(images=_split_as_images(value))
        return f"unknown flag {flag} (from transformers' run_image_classification.py): {advice}."
    if flag in REMOVED_TRAINER_FLAGS:
        try:
            shown = _text(float(value)) if 0 < float(value) < 1 else "0.1"
        except ValueError:
            shown = "0.1"
        advice = REMOVED_TRAINER_FLAGS[flag].format(value=shown)
        return f"unknown flag {flag} (transformers 5 removed it from TrainingArguments): {advice}."
    close = [EVERYDAY_NAMES[flag]] if flag in EVERYDAY_NAMES else difflib.get_close_matches(flag, sorted(options), n=1,
                                                                                         cutoff=0.75)  # fmt: skip
    hint = f" Did you mean {close[0]}?" if close else ""
    return f"unknown flag {flag}.{hint} See `scripts/train.py --help` for the flags."


def stray_value_message(tokens, stray: str, options) -> str:
    """A word argparse left over (HfArgumentParser said only "Some specified arguments are not used by the
    HfArgumentParser: ['5']"): a one-dash flag, or one value too many after a flag that takes one."""
    if stray.startswith("-"):
        double = f"--{stray.lstrip('-')}"
        meant = [double] if double in options else [EVERYDAY_NAMES[double]] if double in EVERYDAY_NAMES else (
            difflib.get_close_matches(double, sorted(options), n=1, cutoff=0.75))  # fmt: skip
        hint = f" (did you mean {meant[0]}?)" if meant else ""
        return f"unknown flag {stray}: the flags here start with two dashes{hint}. See `scripts/train.py --help`."
    # the stray where it follows no flag that takes it (the same word may be an earlier flag's value: '5' of
    # `--num_train_epochs 5 --learning_rate 1e-3 5`), else its first place
    places = [i for i, token in enumerate(tokens) if token == stray]
    at = next((i for i in places if i == 0 or not tokens[i - 1].startswith("--") or "=" in tokens[i - 1]), places[0])
    token = next((token for token in reversed(tokens[:at]) if token.startswith("--")), None)
    if token is None:
        return f"{stray!r} is no flag: every argument here is a --flag (value), e.g. --learning_rate 1e-3."
    flag, has_value, value = token.partition("=")
    given = [value] if has_value else tokens[tokens.index(token) + 1:at]
    took = f" took {', '.join(repr(v) for v in given)} and" if given else ""
    several = (" (several loggers: list them in a --config_file, `report_to: [tensorboard, wandb]`)"
               if flag == "--report_to" else "")  # fmt: skip
    return (f"{stray!r} after {flag} is one value too many: {flag}{took} takes no more{several}. Remove it, or put "
            "its flag in front of it.")


def advice_for_unknown(flag: str, value) -> str:
    """unknown_flag_message for a name of transformers 4 or of run_image_classification.py (a recipe file's key
    too), else ''."""
    if flag in REMOVED_TRAINER_FLAGS or flag in EXAMPLE_SCRIPT_FLAGS:
        return unknown_flag_message(f"{flag}={value}", ()).removeprefix("unknown flag ")
    return ""


def settle_evaluation(asked, given: Given, notes: list) -> dict:
    """The defaults that make the evaluation and checkpoint flags fit together (each change gets a note), or a
    one-line refusal where the flags the user gave contradict each other."""
    check_validation_size(asked.validation_size)  # a recipe file's value: argparse checked only the command line's
    changes = strategies_for_steps(asked, given, notes)
    for name, value in changes.items():
        setattr(asked, name, value)
    if asked.validation_size == 0 and asked.validation_split is None:
        return changes | without_validation(asked, given, notes)
    if _text(asked.save_strategy) == "best" and _text(asked.eval_strategy) == "no":  # it would save nothing
        raise SetupError(
            "--save_strategy best saves a checkpoint when an evaluation finds a new best, but --eval_strategy no "
            "evaluates none: pass --eval_strategy epoch (or steps), or another --save_strategy."
        )
    return changes | matching_checkpoints(asked, given, notes)


# A number of steps and the strategy it counts under: the Trainer reads it only under `steps`.
STEP_FLAGS = {"eval_steps": "eval_strategy", "save_steps": "save_strategy", "logging_steps": "logging_strategy"}


def strategies_for_steps(asked, given: Given, notes: list) -> dict:
    """`--eval_steps 100` beside our default (or a recipe's) --eval_strategy epoch was ignored without a word: the
    run evaluated once an epoch. A number of steps given above its strategy makes it `steps` (a note says so); a
    strategy given above the steps wins over them, as any higher level does; the two given together (a command
    line that overrides the strategy of its own flags) keep the strategy, and a note says the steps go unused."""
    changes = {}
    for steps, strategy in STEP_FLAGS.items():
        value, count = _text(getattr(asked, strategy)), _text(getattr(asked, steps))
        if value == "steps" or given.level(steps) < given.level(strategy) or not given.level(steps):
            continue
        if given.level(steps) == given.level(strategy):
            notes.append(f"--{steps} {count} goes unused: it counts only under --{strategy} steps, and --{strategy} "
                         f"is {value}.")
            continue
        changes[strategy] = "steps"
        given.followed[strategy] = given.level(steps)
        notes.append(f"--{strategy} steps follows --{steps} {count} (the {value} strategy would ignore it).")
    return changes


def without_validation(asked, given: Given, notes: list) -> dict:
    """No validation images: no evaluation, and the last step's model is kept. Evaluation flags on the command line
    are refused (they would go unused); a recipe's are switched off, with a note."""
    off = {"eval_strategy": "no", "load_best_model_at_end": "false", "eval_on_start": "false"}
    evaluating = _text(asked.eval_strategy) != "no"  # with evaluation off, its steps, metric and sample cap are moot
    asking = [name for name in EVALUATION_FLAGS
              if name in given.command_line and off.get(name) != _text(getattr(asked, name))
              and (evaluating or name in EVALUATING_ANYWAY)]  # fmt: skip
    if _text(asked.save_strategy) == "best":  # saves when an evaluation finds a new best: never, here
        asking.append("save_strategy")
    if asking:
        shown = [f"--{name} {_text(getattr(asked, name))}" for name in asking]
        shown = " and ".join([", ".join(shown[:-1]), shown[-1]] if len(shown) > 1 else shown)
        raise SetupError(
            f"{shown} {'needs' if len(asking) == 1 else 'need'} validation images, but --validation_size 0 leaves "
            "none: carve some from train with --validation_size N (or pass --validation_split NAME), or leave "
            f"{'it' if len(asking) == 1 else 'them'} out."
        )
    if all(_text(getattr(asked, name)) == value for name, value in off.items()):
        return {}
    notes.append("no validation set (--validation_size 0): no evaluation during training, and the model written is "
                 "the last step's.")
    return {"eval_strategy": "no", "load_best_model_at_end": False, "eval_on_start": False}


def matching_checkpoints(asked, given: Given, notes: list) -> dict:
    """load_best_model_at_end (on by default here) needs a checkpoint at each evaluation. transformers refuses
    other save and eval strategies in a many-line error that blames the one the user left alone (our default):
    the one given at the higher level (command line > --config_file > --recipe) leads and the other follows, with
    its steps."""
    if not asked.load_best_model_at_end:
        return {}
    load_best = "--load_best_model_at_end" + (" (on by default here)" if not given.level("load_best_model_at_end")
                                              else " true")  # fmt: skip
    strategy = {"eval": _text(asked.eval_strategy), "save": _text(asked.save_strategy)}
    if strategy["save"] == "best":  # saves at a new best, which needs no save at each evaluation
        return {}
    if "no" in strategy.values():
        return without_best_checkpoint("eval" if strategy["eval"] == "no" else "save", given, load_best, notes)
    steps = {"eval": asked.eval_steps or asked.logging_steps, "save": asked.save_steps}  # the Trainer's fallback
    steps_level = {"eval": given.level("eval_steps" if asked.eval_steps else "logging_steps"),
                   "save": given.level("save_steps")}  # fmt: skip
    changes = {}
    if strategy["eval"] != strategy["save"]:
        lead, follow = _leader({kind: given.level(f"{kind}_strategy") for kind in strategy})
        if lead is None:
            raise SetupError(
                f"--eval_strategy {strategy['eval']} and --save_strategy {strategy['save']} differ, but {load_best} "
                "needs a checkpoint at each evaluation: give both the same strategy, or pass "
                "--load_best_model_at_end false."
            )
        strategy[follow] = changes[f"{follow}_strategy"] = strategy[lead]
        followed = f"--{follow}_strategy {strategy[lead]} follows"
        if strategy[lead] == "steps" and steps_level[follow] < given.level(f"{lead}_strategy"):
            steps[follow] = changes[f"{follow}_steps"] = steps[lead]
            followed = f"--{follow}_strategy steps and --{follow}_steps {_text(steps[lead])} follow"
        notes.append(f"{followed} --{lead}_strategy: {load_best} needs a checkpoint at each evaluation.")
    if strategy["eval"] == "steps":
        changes.update(matching_steps(steps, steps_level, load_best, notes))
    return changes


def matching_steps(steps: dict, levels: dict, load_best: str, notes: list) -> dict:
    """--save_steps must be a multiple of --eval_steps, and transformers cannot check that for a fraction of the run
    (below 1) against a number of steps: it blamed the one the user left alone (the recipe's 440, or its default
    500). The one given at the lower level follows the other; both at the same level: one line."""
    if min(steps.values()) <= 0:  # transformers' own checks name these
        return {}
    mixed = (steps["eval"] < 1) != (steps["save"] < 1)
    if not mixed and _is_multiple(steps["save"], steps["eval"]):
        return {}
    lead, follow = _leader(levels)
    if lead is None:
        shown = f"--save_steps {_text(steps['save'])}", f"--eval_steps {_text(steps['eval'])}"
        problem = (f"{shown[0]} and {shown[1]} mix a fraction of the run with a number of steps" if mixed
                   else f"{shown[0]} is not a multiple of {shown[1]}")  # fmt: skip
        fix = "give both as fractions or both as numbers of steps" if mixed else "give both the same number"
        raise SetupError(f"{problem}, but {load_best} needs a checkpoint at each evaluation: {fix}, or pass "
                         "--load_best_model_at_end false.")
    notes.append(f"--{follow}_steps {_text(steps[lead])} follows --{lead}_steps: {load_best} needs a checkpoint "
                 "at each evaluation.")
    return {f"{follow}_steps": steps[lead]}


def _is_multiple(save_steps: float, eval_steps: float) -> bool:
    """transformers' own test: two fractions of the run are compared in millionths (0.3 % 0.1 is not 0 in floats)."""
    if save_steps % eval_steps == 0:
        return True
    return save_steps < 1 and eval_steps < 1 and (save_steps * 1_000_000) % (eval_steps * 1_000_000) == 0


def without_best_checkpoint(kind: str, given: Given, load_best: str, notes: list) -> dict:
    """--eval_strategy no or --save_strategy no (`kind`): no best checkpoint to load, so load-best goes off, unless
    it was given where the strategy was (or above): then the two are the user's to settle."""
    if given.level("load_best_model_at_end") >= given.level(f"{kind}_strategy"):
        does = {"eval": "evaluates", "save": "saves"}[kind]
        raise SetupError(
            f"{load_best} keeps the best evaluated checkpoint, but --{kind}_strategy no {does} none: pass "
            f"--load_best_model_at_end false, or another --{kind}_strategy."
        )
    notes.append(f"--{kind}_strategy no: no best checkpoint to keep, so the model written is the last step's "
                 "(load_best_model_at_end false).")
    return {"load_best_model_at_end": False}


def _leader(levels: dict) -> tuple:
    """(lead, follow): the names of `levels`' two entries, the one given at the higher level first; (None, None)
    when given at the same level (both on the command line: the user's to settle)."""
    (first, at), (second, at_second) = levels.items()
    if at == at_second:
        return None, None
    return (first, second) if at > at_second else (second, first)


def check_what_runs(asked, given: Given, eval_strategy) -> None:
    """train.py always trains, evaluates as --eval_strategy says and tests the model it writes; the Trainer's
    --do_train/--do_eval/--do_predict (which run_image_classification.py reads) would be ignored where they ask
    for less: refused. Their `true` stays accepted, as that script's users pass it."""
    said = {name: given.level(name) > 0 for name in ("do_train", "do_eval", "do_predict")}
    evaluate_instead = "to evaluate a trained model, run scripts/evaluate_model.py --model FOLDER --dataset DATA"
    if said["do_train"] and not asked.do_train:
        problem = f"--do_train false: train.py always trains; {evaluate_instead}"
    elif said["do_eval"] and asked.do_eval and not asked.do_train:
        problem = (f"--do_eval without --do_train asks for an evaluation only, but train.py always trains: "
                   f"{evaluate_instead} (or add --do_train)")
    elif said["do_eval"] and not asked.do_eval and _text(eval_strategy) != "no":
        problem = (f"--do_eval false: evaluation during training follows --eval_strategy ({_text(eval_strategy)} "
                   "here); pass --eval_strategy no instead")
    elif said["do_predict"] and not asked.do_predict:
        problem = ("--do_predict false: train.py always tests the model it writes on --test_split (metrics.json's "
                   "accuracy); leave --do_predict out (--max_test_samples N tests fewer images)")
    else:
        return
    raise SetupError(f"{problem}.")


def check_one_precision(asked, given: Given, where: dict) -> None:
    """--fp16 and --bf16 both true: transformers' refusal ('At most one of fp16 and bf16 ...') blames a flag that a
    recipe may have set, unseen. Say where each came from; `where` names the levels above the defaults (1: the
    recipe, 2: the config file)."""
    if not (asked.fp16 and asked.bf16):
        return
    fp16, bf16 = given.level("fp16"), given.level("bf16")
    if fp16 == bf16 == 3:
        raise SetupError("--fp16 true and --bf16 true (both on the command line) each ask for a mixed precision, and "
                         "a run trains in one: leave one of them out.")
    said = {3: "the command line", **where}
    # the less explicit one gives way; fp16 is for CUDA GPUs only
    drop, keep = ("bf16", "fp16") if bf16 < fp16 else ("fp16", "bf16")
    gpu = " (a CUDA GPU only)" if keep == "fp16" else ""
    raise SetupError(
        f"{as_written('fp16', 'true', said[fp16])} and {as_written('bf16', 'true', said[bf16])} each ask for a mixed "
        f"precision, and a run trains in one: pass --{drop} false as well to train in {keep}{gpu}, or leave "
        f"--{keep} out."
    )


# Flags that only say where and how --push_to_hub pushes.
PUSH_FLAGS = ("hub_model_id", "hub_private_repo", "hub_revision", "hub_strategy", "hub_always_push")


def check_push_flags(given: Given) -> None:
    """`--hub_model_id you/name` without --push_to_hub trained for hours and pushed nothing, without a word (the
    Trainer reads the Hub flags only when pushing). Refused where --push_to_hub was not given at all; a --push_to_hub
    false given anywhere keeps a recipe's Hub settings quiet."""
    named = [f"--{name}" for name in PUSH_FLAGS if given.level(name)]
    if named and not given.level("push_to_hub"):
        raise SetupError(
            f"{' and '.join(named)} {'says' if len(named) == 1 else 'say'} where to push, but --push_to_hub is off, so "
            "nothing would be pushed: add --push_to_hub true (the finished folder goes up once, at the end), or leave "
            f"{'it' if len(named) == 1 else 'them'} out and push later with scripts/push_to_hub.py."
        )


def note_unlimited_checkpoints(asked, given: Given, notes: list) -> None:
    """The Trainer reads --save_total_limit 0 (or below) as no limit: every checkpoint stays, where the number reads
    as "keep none". It is the one way to lift train.py's default of 2 (a flag cannot say None), so it stays, said."""
    if given.level("save_total_limit") and asked.save_total_limit is not None and asked.save_total_limit <= 0:
        notes.append(f"--save_total_limit {asked.save_total_limit} keeps every checkpoint (the Trainer reads 0 and "
                     "below as no limit); --save_strategy no saves none, and N keeps the newest N (and the best).")


def settle_direction(asked, given: Given, notes: list) -> dict:
    """--greater_is_better against --metric_for_best_model's own direction (accuracy and F1 best highest, a loss
    lowest) keeps the worst checkpoint as the best. Given below the metric (a config file's `greater_is_better:
    false` for its loss, then --metric_for_best_model accuracy on the command line), it was kept, without a word:
    now it follows the metric, with a note. Given with the metric or above it: refused, naming both."""
    metric = asked.metric_for_best_model
    if asked.greater_is_better is None or not metric:
        return {}
    higher = not metric.removeprefix("eval_").endswith("loss")
    if _as_bool(asked.greater_is_better) == higher:
        return {}
    direction = "highest" if higher else "lowest"
    if given.level("greater_is_better") < given.level("metric_for_best_model"):
        notes.append(f"--greater_is_better follows --metric_for_best_model {metric} ({direction} is best).")
        return {"greater_is_better": None}
    raise SetupError(
        f"--metric_for_best_model {metric} is best when {direction}, and --greater_is_better "
        f"{_text(_as_bool(asked.greater_is_better))} would keep the worst checkpoint as the best: leave "
        "--greater_is_better out (it follows the metric)."
    )


def _as_bool(value) -> bool:
    """A bool flag's value as argparse or a recipe file gives it (True, 'false', ...)."""
    return value if isinstance(value, bool) else str(value).lower() in ("true", "1", "yes")


# Learning-rate schedules that take no warmup: transformers' get_scheduler builds them without num_warmup_steps.
WITHOUT_WARMUP = ("constant", "reduce_lr_on_plateau", "greedy")


def settle_warmup(asked, given: Given, notes: list) -> dict:
    """--lr_scheduler_type constant (or reduce_lr_on_plateau, greedy) ignores --warmup_steps without a word, and the
    run recorded a warmup it never did. A recipe's warmup under a schedule given above it goes to 0, with a note; a
    warmup given with the schedule or above it is refused, naming the schedule that has one."""
    schedule = _text(asked.lr_scheduler_type)
    if schedule not in WITHOUT_WARMUP or not asked.warmup_steps:
        return {}
    warmup = _text(asked.warmup_steps)
    instead = "constant_with_warmup" if schedule == "constant" else None
    if given.level("warmup_steps") < given.level("lr_scheduler_type"):
        keep = f" (--lr_scheduler_type {instead} keeps it)" if instead else ""
        notes.append(f"--lr_scheduler_type {schedule} has no warmup: warmup_steps {warmup} does not apply{keep}.")
        return {"warmup_steps": 0}
    fix = f"pass --lr_scheduler_type {instead}, or leave --warmup_steps out" if instead else "leave --warmup_steps out"
    raise SetupError(f"--warmup_steps {warmup} asks for a warmup, and --lr_scheduler_type {schedule} has none (the "
                     f"Trainer would ignore it): {fix}.")
