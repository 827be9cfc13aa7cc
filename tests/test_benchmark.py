"""The side-by-side benchmark (scripts/benchmark.py) compares like with like and reports sound figures."""

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from hf_vit import data as data_module
from hf_vit.benchmarking import (
    StepTimer, _Bench, build_model, compare_models, end_to_end_img_s, forward_flops, main, train_flops,
)
from hf_vit.configuration_hf_vit import HfViTConfig
from hf_vit.training import PRESETS, cpu_has_native_bf16
from tiny_data import make_tiny_cifar

SMALL_CLS = {**PRESETS["small"], "pool": "cls"}  # the shape scripts/benchmark.py times by default


def _counted_flops(model, batch):
    x = torch.randn(batch, 3, 32, 32)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(pixel_values=x) if hasattr(model, "config") else model(x)
    return counter.get_total_flops()


def in_this_process(target, args):
    """A stand-in for benchmarking._child where the test is not about the child process: the child's function run in
    this process (a plain queue instead of a spawned interpreter, ~5 s less), its answer read as _child reads it."""
    import queue

    answer = queue.Queue()
    target(*args, answer)
    return json.loads(answer.get_nowait())


@pytest.mark.parametrize("kind", ["hf_vit", "transformers", "lesson"])
def test_forward_flops_match_the_matmuls_torch_counts(kind):
    # GFLOP/s and "% of peak" rest on this formula; torch's own counter must agree on every model.
    config = HfViTConfig(**SMALL_CLS)
    assert _counted_flops(build_model(kind, config, "eager"), 3) == forward_flops(config, 3)


def test_forward_flops_for_a_shape_with_narrow_heads_and_mean_pooling():
    config = HfViTConfig(image_size=32, patch_size=8, dim=48, depth=2, heads=3, dim_head=8, mlp_dim=96, pool="mean")
    for kind in ("hf_vit", "lesson"):
        assert _counted_flops(build_model(kind, config, "eager"), 2) == forward_flops(config, 2)
    # One head as wide as dim: the model has no output projection, and the count leaves it out too.
    config = HfViTConfig(image_size=32, patch_size=8, dim=64, depth=2, heads=1, dim_head=64, mlp_dim=128)
    assert _counted_flops(build_model("hf_vit", config, "eager"), 2) == forward_flops(config, 2)


@pytest.mark.parametrize("kind", ["hf_vit", "transformers", "lesson"])
def test_training_flops_match_what_torch_counts_for_forward_and_backward(kind):
    # The training GFLOP/s column rests on this count. The patch embedding's backward computes no input gradient
    # (before: 3x the forward, which counted one for it: 0.2% too many at the benchmark's shape).
    config = HfViTConfig(**SMALL_CLS)
    model, x, y = build_model(kind, config, "eager"), torch.randn(3, 3, 32, 32), torch.randint(0, 10, (3,))
    with FlopCounterMode(display=False) as counter:
        out = model(pixel_values=x) if hasattr(model, "config") else model(x)
        torch.nn.functional.cross_entropy(getattr(out, "logits", out), y).backward()
    assert counter.get_total_flops() == train_flops(config, 3)


def test_benchmark_input_refuses_a_count_below_one_and_a_missing_dataset(monkeypatch, capsys, tmp_path):
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_input.py"
    spec = importlib.util.spec_from_file_location("_benchmark_input", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for flag in ("--batches", "--steps"):
        monkeypatch.setattr(sys, "argv", ["benchmark_input.py", flag, "0"])
        with pytest.raises(SystemExit) as exit_info:
            module.main()
        assert exit_info.value.code == 2
        assert f"error: {flag} must be at least 1, got 0." in capsys.readouterr().err
    # a mistyped folder is an error, not a timing of synthetic images; a folder that is no dataset is one line
    for folder, message in ((str(tmp_path / "cifr10"), "is not a folder. Pass a dataset folder"),
                            (str(tmp_path), "benchmark_input.py: error: ")):  # fmt: skip
        monkeypatch.setattr(sys, "argv", ["benchmark_input.py", "--dataset_name", folder])
        with pytest.raises(SystemExit) as exit_info:
            module.main()
        assert message in str(exit_info.value.code) and "Traceback" not in capsys.readouterr().err
    # a dataset smaller than the recipe's validation carve is timed (validation plays no part in the speed) or,
    # smaller than one batch, named as such (before: "--validation_size 5000 leaves no training images")
    from tiny_data import make_tiny_cifar

    small = make_tiny_cifar(tmp_path / "small", n_train=60, n_test=10)
    monkeypatch.setattr(sys, "argv", ["benchmark_input.py", "--dataset_name", str(small)])
    with pytest.raises(SystemExit) as exit_info:
        module.main()
    assert str(exit_info.value.code) == (
        f"benchmark_input.py: error: {small} has 60 training images, fewer than one batch of 128 (the recipe's). "
        "Time a larger dataset, or leave --dataset_name out."
    )


def test_benchmark_input_times_with_the_threads_training_uses(monkeypatch, capsys):
    # before: this process's torch threads (1 under OMP_NUM_THREADS=1, as accelerate launch sets it), while
    # training sets one per CPU: the step was timed slower than training runs, flattering the pipeline's ratio
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_input.py"
    spec = importlib.util.spec_from_file_location("_benchmark_input", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv("HF_VIT_CIFAR10", "/nonexistent")  # synthetic images: no dataset needed
    monkeypatch.setattr(sys, "argv", ["benchmark_input.py", "--batches", "1", "--steps", "5"])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        module.main()
    finally:
        torch.set_num_threads(before)
    out = capsys.readouterr().out
    assert f"torch threads {len(os.sched_getaffinity(0))}\n" in out
    # the cpu recipe's step runs where its use_cpu trains it, and says so from inside the timed process
    assert "step on cpu, " in out and "(forward + backward + AdamW, on cpu)" in out


def test_benchmark_input_times_the_step_on_the_device_asked_for_and_exactly_the_steps_asked_for(monkeypatch, capsys):
    """--steps N timed 5 windows of max(1, N // 5) steps, so --steps 3 timed 5 and --steps 12 timed 10: a count
    that is not a multiple of the 5 windows is refused, naming the nearest. The step's device (before: always
    compare_models' default, the CPU, even for the gpu recipe on a GPU machine) is --device, else the recipe's
    training device; a device that cannot be used is one error line naming the fix."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_input.py"
    spec = importlib.util.spec_from_file_location("_benchmark_input", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def error(*argv):
        monkeypatch.setattr(sys, "argv", ["benchmark_input.py", *argv])
        with pytest.raises(SystemExit) as exit_info:
            module.main()
        return exit_info.value.code, capsys.readouterr().err

    if not torch.cuda.is_available():
        assert error("--recipe", "gpu", "--device", "cuda") == (
            "benchmark_input.py: error: --device cuda: CUDA is not available on this machine. Use --device cpu.", "")
    code, message = error("--recipe", "gpu", "--device", "mps")
    assert "--device mps:" in str(code) and "Use --device cpu" in str(code)
    for steps, choices in (("3", "Pass 5."), ("12", "Pass 10 or 15.")):
        code, message = error("--device", "cpu", "--steps", steps)
        assert code == 2 and (f"error: --steps must be a multiple of 5 (the step is timed in 5 windows of --steps/5 "
                              f"steps, and the median window taken), got {steps}. {choices}") in message  # fmt: skip


def test_the_three_models_are_the_same_network():
    # Like for like: same parameter count, layer for layer (transformers' ViT gets qkv_bias=False to match).
    config = HfViTConfig(**SMALL_CLS)
    counts = {kind: sum(p.numel() for p in build_model(kind, config).parameters()) for kind in ("hf_vit", "transformers", "lesson")}
    assert len(set(counts.values())) == 1, counts
    # Models built from one config keep their own kernel (a model holds on to the config object it was given).
    first, second = build_model("hf_vit", config, "sdpa"), build_model("hf_vit", config, "eager")
    assert (first.config._attn_implementation, second.config._attn_implementation) == ("sdpa", "eager")
    with pytest.raises(ValueError, match="heads \\* dim_head == dim"):
        build_model("transformers", HfViTConfig(**{**SMALL_CLS, "dim_head": 16}))


def test_the_three_models_get_the_same_inputs():
    # before: each kind drew its inputs from the global generator after its own initialisation, so each got others
    config = HfViTConfig(**SMALL_CLS)
    hf_vit, *others = (_Bench(kind, "eager", config, 4, "cpu", False) for kind in ("hf_vit", "transformers", "lesson"))
    for other in others:
        assert torch.equal(other.x, hf_vit.x) and torch.equal(other.y, hf_vit.y), other.name


def test_compare_models_pairs_every_model_with_every_other(monkeypatch):
    from hf_vit import benchmarking

    config = HfViTConfig(image_size=32, patch_size=8, dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64, pool="cls")
    monkeypatch.setattr(benchmarking, "_child", in_this_process)  # the pairing is arithmetic on the child's windows
    before = torch.get_num_threads()
    try:
        rows = compare_models(config, ["hf_vit", "lesson"], batch=4, steps=1, rounds=3, threads=1, attns=["sdpa", "eager"],
                              memory=False)  # fmt: skip
    finally:
        torch.set_num_threads(before)
    assert [r["model"] for r in rows] == ["hf_vit/sdpa", "hf_vit/eager", "lesson"]
    by_name = {r["model"]: r for r in rows}
    for a in by_name:
        for b in by_name:
            if a != b:  # a median over an odd number of rounds: a/b and b/a are exact reciprocals
                for phase in ("train", "infer"):
                    assert by_name[a]["paired"][b][phase] * by_name[b]["paired"][a][phase] == pytest.approx(1.0)
    for r in rows:
        assert r["train_gflops"] == pytest.approx(r["train_img_s"] * train_flops(config, 1) / 1e9)
        assert r["infer_img_s"] > 0 and r["peak_mem_mb"] is None


@pytest.fixture(scope="module")
def memory_run():
    """One compare_models run with peak memory and the control, after this process has touched 1 GiB: its timing
    child and one memory child per model (a fresh interpreter each, ~5 s) serve both tests below."""
    import resource

    config = HfViTConfig(image_size=32, patch_size=8, dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64, pool="cls")
    block = torch.ones(2**28)  # 1 GiB, touched, then freed: this process's peak stays above it
    del block
    parent_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = compare_models(config, ["hf_vit", "lesson"], batch=4, steps=1, rounds=3, threads=1, attns=["sdpa"], memory=True, control=True)
    return config, rows, parent_peak_mb


def test_the_control_is_the_same_model_on_the_same_inputs(memory_run):
    # The noise floor is only a noise floor if the copy computes exactly what its twin computes.
    config, rows, _ = memory_run
    twin, copy = (_Bench("hf_vit", "eager", config, 4, "cpu", False, False, c) for c in (False, True))
    assert (twin.name, copy.name) == ("hf_vit/eager", "hf_vit/eager (copy)")
    assert torch.equal(twin.x, copy.x) and torch.equal(twin.y, copy.y)
    for (key, a), b in zip(twin.model.state_dict().items(), copy.model.state_dict().values()):
        assert torch.equal(a, b), key
    # rows: compare_models(config, ["hf_vit", "lesson"], ..., attns=["sdpa"], memory=True, control=True)
    assert [r["model"] for r in rows] == ["hf_vit/sdpa", "lesson", "hf_vit/sdpa (copy)"]
    assert [r["copy"] for r in rows] == [False, False, True]
    assert rows[0]["peak_mem_mb"] > 0 and rows[2]["peak_mem_mb"] is None  # the copy's memory is its twin's


def test_peak_memory_is_the_models_own_process_not_the_one_that_started_it(memory_run):
    # before: ru_maxrss survives the exec of a spawned child, so every model read this process's peak (here >1 GiB,
    # touched by the fixture before its compare_models run)
    _, rows, parent_peak_mb = memory_run
    measured = [r for r in rows if not r["copy"]]  # the copy is measured by its twin (the test above)
    assert [r["model"] for r in measured] == ["hf_vit/sdpa", "lesson"]
    for r in measured:
        assert 0 < r["peak_mem_mb"] < parent_peak_mb - 500, (r["model"], r["peak_mem_mb"], parent_peak_mb)


@pytest.fixture(scope="module")
def benchmark_run(tmp_path_factory):
    """One whole benchmark run (scripts/benchmark.py's main) whose printout and shapes serve the four tests below,
    each with its own assertion: hf_vit and the lesson with the control (the noise floor), the default dtypes
    (no --dtype), and an end-to-end Trainer run of --preset tiny --pool mean with --threads 1 (2 on a one-CPU
    machine). One matmul peak, one timing child, one bare-step child and one Trainer run instead of four of each."""
    import contextlib
    import io

    from hf_vit import benchmarking, training
    from hf_vit.training import SHAPE_FLAGS

    shapes = {}
    real_compare, real_train, real_peak = benchmarking.compare_models, training.train, benchmarking.matmul_peak_gflops

    def compare(config, kinds, *args, **kwargs):  # the last call is the bare step beside the end-to-end run
        shapes["bare"] = {k: getattr(config, k) for k in SHAPE_FLAGS}
        return real_compare(config, kinds, *args, **kwargs)

    def train(model_args, *args, **kwargs):
        config = training.build_config(model_args)
        shapes["trainer"] = {k: getattr(config, k) for k in SHAPE_FLAGS}
        return real_train(model_args, *args, **kwargs)

    threads = 1 if len(os.sched_getaffinity(0)) > 1 else 2
    data = make_tiny_cifar(tmp_path_factory.mktemp("benchmark_run") / "data", n_train=16, n_test=4)
    out, before = io.StringIO(), torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.setattr(benchmarking, "compare_models", compare)
        patch.setattr(training, "train", train)
        # the real matmul peak, on 1024 x 1024 for 0.2 s (not 2048 for 2 s): no test reads its figure, only its words
        patch.setattr(benchmarking, "matmul_peak_gflops", lambda *a, **k: real_peak(*a, **k, n=1024, seconds=0.2))
        try:
            main(["--preset", "tiny", "--pool", "mean", "--models", "hf_vit,lesson", "--attn", "eager",
                  "--batch_size", "4", "--steps", "1", "--rounds", "1", "--threads", str(threads), "--no_memory",
                  "--e2e_steps", "2", "--dataset", str(data)])  # fmt: skip
        finally:
            torch.set_num_threads(before)
    return {"out": out.getvalue(), "shapes": shapes, "threads": threads}


def test_the_benchmark_prints_the_noise_floor_and_keeps_the_copy_out_of_the_comparisons(benchmark_run):
    # benchmark_run: --models hf_vit,lesson --attn eager, with the control (no --no_control)
    out = benchmark_run["out"]
    assert "noise floor: hf_vit/eager (copy) / hf_vit/eager (the same model twice): train " in out
    assert "hf_vit/eager / lesson: train " in out
    assert "(copy) / lesson" not in out and "/ hf_vit/eager (copy)" not in out


def test_the_default_dtypes_leave_out_bf16_only_on_a_cpu_that_would_emulate_it(benchmark_run):
    # benchmark_run: no --dtype, --rounds 1, --no_memory
    out = benchmark_run["out"]
    assert "\nfp32 (median of 1 interleaved windows" in out
    assert re.search(r"\nhf_vit/eager +[\d.]+ +[\d.]+ +- ", out)  # --no_memory: no peak-memory process, a dash
    assert ("\nbf16 (median of" in out) == cpu_has_native_bf16()
    assert ("only fp32 is timed" in out) != cpu_has_native_bf16()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dtype", "fp16"], "--dtype 'fp16': use a comma list of fp32, bf16"),
        (["--attn", "flash"], "--attn 'flash': use a comma list of sdpa, eager"),
        (["--models", "resnet"], "--models 'resnet': use a comma list of hf_vit, transformers, lesson"),
        (["--rounds", "0"], "--rounds 0 / --steps 4: both must be at least 1"),
        (["--device", "gpu"], "--device 'gpu' is not a device torch knows. Use auto, cpu, cuda, cuda:<index> or mps."),
        (["--device", "cuda:99"], "--device cuda:99: "),  # no CUDA here, or not 100 devices
        (["--threads", "-1"], "--threads -1: must be at least 1"),
        (["--batch_size", "0"], "--batch_size 0: must be at least 1"),
        (["--pool", "max"], "argument --pool: invalid choice: 'max'"),
        # before: a negative count skipped the end-to-end run silently; a name twice gave two rows of one model
        # (their windows pooled) and a dtype twice two tables
        (["--e2e_steps", "-1"], "--e2e_steps -1: must be at least 1, or 0 to skip the end-to-end run"),
        (["--attn", "eager,sdpa,eager"], "--attn 'eager,sdpa,eager' names eager twice: list each once"),
        (["--models", "hf_vit,lesson,hf_vit"], "--models 'hf_vit,lesson,hf_vit' names hf_vit twice: list each once"),
        (["--dtype", "fp32,fp32"], "--dtype 'fp32,fp32' names fp32 twice: list each once"),
        # The end-to-end run's dataset is opened before any timing, not after minutes of it.
        (["--dataset", "/nonexistent"], "error: no dataset folder at '/nonexistent' (from --dataset '/nonexistent')"),
        # a --dataset no run reads was ignored without a word
        (["--dataset", "/x", "--e2e_steps", "0"], "error: --dataset is read by the end-to-end run only, which "
         "--e2e_steps 0 skips: leave --dataset out, or run it (hf_vit in --models, --e2e_steps N)."),
        (["--dataset", "/x", "--models", "lesson,transformers"],
         "which --models lesson,transformers (no hf_vit) leaves out: leave --dataset out"),
    ],
)
def test_bad_benchmark_arguments_are_named(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_benchmark_input_help_gives_its_defaults(monkeypatch, capsys):
    """`benchmark_input.py --help` named no default for --batches or --steps and gave --recipe no help at all (not
    even which recipes there are). Each now says its own."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_input.py"
    spec = importlib.util.spec_from_file_location("_benchmark_input", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", ["benchmark_input.py", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        module.main()
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--recipe RECIPE the shipped recipe whose model and batch are timed: cpu, gpu (default: cpu)" in text
    assert "--batches BATCHES batches timed through the pipeline (default: 100)" in text
    assert "training steps timed, a multiple of 5 (median of 5 windows; default: 10)" in text


def test_benchmark_help_gives_the_defaults_the_readme_quotes(capsys):
    """`benchmark.py --help` named no default for --batch_size, --steps, --rounds, --device, --attn, --models or
    --e2e_steps, though the README describes a default run by them (batch 128, 4 steps per window, 10 rounds, 40
    Trainer steps); --device, --threads and --models had no help at all. Each now says its default."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for said in ("--preset {base,lesson,small,tiny} model shape (default: small, the cpu recipe's)",
                 "--batch_size BATCH_SIZE images per batch (default: 128)", "--steps STEPS steps per timed window (default: 4)",
                 "figures are medians (default: 10)", "--device DEVICE where to time: cpu, cuda or cuda:<index> "
                 "(default: cpu)", "transformers' ViT (default: sdpa,eager)", "--threads THREADS torch CPU threads "
                 "(default: torch's own count)", "--models MODELS which models to time, comma-separated (default: "
                 "hf_vit,transformers,lesson)", "Trainer steps of the end-to-end run (default: 40; 0 = skip)"):
        assert said in text, said


def test_end_to_end_split_puts_a_slow_input_pipeline_outside_the_steps(tmp_path, monkeypatch):
    """A real Trainer run on tiny data whose collator is made slow on purpose (a test-only wrapper that sleeps
    50 ms per batch): StepTimer must count that time between the steps, not inside them."""
    data = make_tiny_cifar(tmp_path / "data", n_train=64, n_test=8)
    slow_call = data_module.BatchCollator.__call__

    def slowed(self, *args, **kwargs):
        time.sleep(0.05)
        return slow_call(self, *args, **kwargs)

    monkeypatch.setattr(data_module.BatchCollator, "__call__", slowed)
    steps, batch = 6, 8
    r = end_to_end_img_s(
        "tiny", data, batch, steps, "cpu", "fp32", tmp_path / "run", ["--num_threads", "1", "--disable_tqdm", "true"]
    )
    assert r["steps"] == steps
    outside_s = r["total_s"] - r["inside_s"]
    assert outside_s >= steps * 0.05  # every batch's fetch (and its sleep) lies between steps
    assert r["outside_share"] == pytest.approx(outside_s / r["total_s"])
    assert r["in_step_img_s"] == pytest.approx(steps * batch / r["inside_s"])
    assert r["in_step_img_s"] > r["train_img_s"]  # the Trainer's figure includes the slow pipeline


def test_the_end_to_end_run_trains_with_the_bare_steps_threads(benchmark_run):
    # before: the Trainer run took its own default (every CPU this process may use), so --threads 1 on 2 cores
    # set one thread against two. benchmark_run: --threads 1 (2 on one CPU), --e2e_steps 2 on 16 tiny images
    out, threads = benchmark_run["out"], benchmark_run["threads"]
    assert f"; {threads} threads; device cpu" in out
    assert f"1 process(es), {threads} thread(s) each on cpu" in out


def test_the_end_to_end_run_trains_full_batches_only(tmp_path, capsys):
    """The Trainer's img/s counts each step as a full batch. before: a dataset smaller than one batch was
    accepted (16 images at --batch_size 64 read 1150 img/s, 139% of the bare step, for 96 images trained), and
    an epoch's last, partial batch counted as full."""
    data = make_tiny_cifar(tmp_path / "data", n_train=24, n_test=4)
    with pytest.raises(SystemExit) as exit_info:
        main(["--models", "hf_vit", "--batch_size", "32", "--e2e_steps", "4", "--dataset", str(data)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().endswith(
        f"error: --dataset {data}: its 'train' split has 24 images, fewer than one batch of 32 (--batch_size). "
        "Pass a larger dataset, a smaller --batch_size, or --e2e_steps 0 to skip the run."
    )
    # 24 images in batches of 16: every step trains 16 (the second of each epoch, 8 images, is left out)
    end_to_end_img_s("tiny", data, 16, 4, "cpu", "fp32", tmp_path / "run", ["--num_threads", "1", "--disable_tqdm", "true"])
    assert "4 steps this session (global step 4), 64 training images on this rank" in capsys.readouterr().out


def test_the_benchmark_children_make_only_an_indexed_gpu_current(monkeypatch):
    """cuda:1 becomes the children's current GPU; `cuda` (what --device cuda and auto resolve to) and mps leave
    it alone (torch.cuda.set_device refuses a device without an index: every timing child failed). No GPU here:
    the call torch would make is recorded instead of made."""
    from hf_vit import benchmarking

    made_current = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: made_current.append(str(device)))
    for device in ("cuda", "mps", "cuda:1", "cpu"):
        benchmarking._like_training(device)
    assert made_current == ["cuda:1"]


def test_the_end_to_end_run_for_cuda_n_sees_that_gpu_only(tmp_path, monkeypatch):
    """--device cuda:1: the Trainer would take cuda:0 (and spread over every visible GPU), so the end-to-end run
    goes to a child process shown only GPU 1. No GPU here: the environment it gets, and the child path run on
    the CPU (a real Trainer run in a spawned process), leaving this process's environment as it was."""
    from hf_vit import benchmarking

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert benchmarking.one_gpu_env("cpu") == {}
    assert benchmarking.one_gpu_env("cuda:1") == {"CUDA_VISIBLE_DEVICES": "1"}
    assert benchmarking.one_gpu_env("cuda") == {"CUDA_VISIBLE_DEVICES": "0"}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")  # cuda:1 is then the machine's GPU 6
    assert benchmarking.one_gpu_env("cuda:1") == {"CUDA_VISIBLE_DEVICES": "6"}

    data = make_tiny_cifar(tmp_path / "data", n_train=32, n_test=8)
    args = ("tiny", str(data), 8, 3, "cpu", "fp32", str(tmp_path / "run"), ["--num_threads", "1", "--disable_tqdm", "true"])
    r = benchmarking._child(benchmarking._end_to_end_child, args, env={"CUDA_VISIBLE_DEVICES": ""})
    assert r["steps"] == 3 and r["train_img_s"] > 0
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "4,6"  # set for the child only


def test_on_a_gpu_the_step_timer_never_syncs_during_the_run(monkeypatch):
    """A sync at each step edge would serialise host and GPU, the very overlap the end-to-end figure is about.
    No GPU here: a stand-in for torch.cuda.Event records the host clock when `record()` is called (which is when
    a real event would be queued), and torch.cuda.synchronize is counted."""
    syncs = []

    class Event:
        def __init__(self, enable_timing=False):
            assert enable_timing
            self.at = None

        def record(self):
            self.at = time.perf_counter()

        def elapsed_time(self, end):  # milliseconds, like torch.cuda.Event; only valid once the events happened
            assert syncs, "an event read before torch.cuda.synchronize()"
            return (end.at - self.at) * 1000

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: syncs.append(1))
    timer = StepTimer("cuda")
    timer.on_train_begin(None, None, None)
    for _ in range(3):
        time.sleep(0.01)  # the host fetches a batch
        timer.on_step_begin(None, None, None)
        time.sleep(0.02)  # the step
        timer.on_step_end(None, None, None)
    assert syncs == []
    timer.on_train_end(None, None, None)
    assert len(syncs) == 1 and timer.steps == 3
    assert timer.inside_s >= 0.06 and timer.total_s - timer.inside_s >= 0.03  # the sleeps, on either side


def test_a_benchmark_child_that_dies_without_an_answer_is_an_error_not_a_hang():
    import sys as sys_module

    from hf_vit.benchmarking import _child

    start = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"benchmark child exit failed \(exit code 1\)"):
        _child(sys_module.exit, ())  # exits at once (status 1: its argument is the queue), putting nothing
    assert time.perf_counter() - start < 120  # before: queue.get() waited forever


def test_the_lessons_module_outside_a_checkout_is_named(monkeypatch, tmp_path, capsys):
    # An installed (non-editable) package has no tests/lesson_vit.py beside it: the default --models included
    # 'lesson', whose child failed to import it while the parent waited forever.
    import hf_vit.benchmarking as benchmarking

    monkeypatch.setattr(benchmarking, "__file__", str(tmp_path / "site-packages" / "hf_vit" / "benchmarking.py"))
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "elsewhere" / "benchmark.py")])
    with pytest.raises(SystemExit) as exit_info:
        main(["--models", "hf_vit,lesson", "--e2e_steps", "0"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().endswith(
        "--models lesson times the lesson's module, tests/lesson_vit.py, which comes with a checkout of hf-vit, not "
        "with the installed package: run scripts/benchmark.py of a checkout, or pass --models hf_vit,transformers."
    )


def test_a_slower_peer_gives_hf_vit_a_ratio_above_one(monkeypatch):
    """The timing child run in this process (a plain queue instead of a spawned interpreter, so that a test-only
    100 ms sleep added to the lesson's steps applies): hf_vit's paired ratio to the lesson is above 1 (it is the
    faster), the lesson's to hf_vit below, and the img/s agree. (A 20 ms sleep gave 1.20 on a host at load 15, when
    a step of this tiny model took as long: 100 ms stays far above any step's time.)"""
    from hf_vit import benchmarking

    def slowed(step):
        def run(self):
            if self.kind == "lesson":
                time.sleep(0.1)
            step(self)

        return run

    monkeypatch.setattr(benchmarking, "_child", in_this_process)
    monkeypatch.setattr(_Bench, "train_step", slowed(_Bench.train_step))
    monkeypatch.setattr(_Bench, "infer_step", slowed(_Bench.infer_step))
    config = HfViTConfig(image_size=32, patch_size=8, dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64, pool="cls")
    ours, lesson = compare_models(config, ["hf_vit", "lesson"], batch=4, steps=1, rounds=3, threads=1, attns=["eager"],
                                  memory=False)  # fmt: skip
    for phase in ("train", "infer"):
        assert ours["paired"]["lesson"][phase] > 1.5 and lesson["paired"]["hf_vit/eager"][phase] < 1 / 1.5
        assert ours[f"{phase}_img_s"] > lesson[f"{phase}_img_s"]


def test_the_printout_divides_each_figure_the_right_way(monkeypatch, capsys, tmp_path):
    """main() with its measurements replaced by fixed figures (no timing here, only the arithmetic and the words
    around it): % of peak, the paired ratios, the noise floor and the end-to-end share. Every figure that a wrong
    choice could print instead differs (train and inference GFLOP/s of a row, a ratio and its reverse, the bare step
    and the table's row), and each percentage is checked against the figures the printout itself shows."""
    from hf_vit import benchmarking

    def row(model, kind, train, infer, paired, copy=False):
        return {"model": model, "kind": kind, "attn": "eager", "compiled": False, "copy": copy, "dtype": "fp32",
                "train_img_s": train, "infer_img_s": infer, "train_gflops": train / 10, "infer_gflops": infer / 25,
                "peak_mem_mb": None, "paired": paired}  # fmt: skip

    ours = row("hf_vit/eager", "hf_vit", 400, 1200, {"lesson": {"train": 1.25, "infer": 0.8},
                                                     "hf_vit/eager (copy)": {"train": 0.98, "infer": 1.01}})
    lesson = row("lesson", "lesson", 320, 1500, {"hf_vit/eager": {"train": 0.8, "infer": 1.25}})
    copy = row("hf_vit/eager (copy)", "hf_vit", 408, 1188, {"hf_vit/eager": {"train": 1.02, "infer": 0.99}}, copy=True)

    def fixed_rows(config, kinds, *args, **kwargs):
        if kinds == ["hf_vit"]:  # the bare step next to the end-to-end run
            return [row("hf_vit/eager", "hf_vit", 500, 1500, {})]
        return [ours, lesson, copy]

    monkeypatch.setattr(benchmarking, "compare_models", fixed_rows)
    monkeypatch.setattr(benchmarking, "matmul_peak_gflops", lambda *a, **k: 80.0)
    monkeypatch.setattr(benchmarking, "end_to_end_img_s", lambda *a, **k: {
        "train_img_s": 360.0, "in_step_img_s": 480.0, "outside_share": 0.125})
    data = make_tiny_cifar(tmp_path / "data", n_train=8, n_test=4)
    assert main(["--models", "hf_vit,lesson", "--dtype", "fp32", "--attn", "eager", "--threads", "1", "--batch_size", "4",
                 "--e2e_steps", "2", "--dataset", str(data), "--no_memory"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    peak = float(re.search(r"matmul peak \(fp32, 2048\^3\): ([\d.]+) GFLOP/s", out).group(1))
    table = {line[:20].strip(): line[20:].split() for line in out.splitlines() if line.endswith("%")}
    assert list(table) == ["hf_vit/eager", "lesson", "hf_vit/eager (copy)"]
    for name, (train, infer, memory, gflops, share) in table.items():
        assert memory == "-"  # --no_memory
        assert float(gflops) == pytest.approx(float(train) / 10, abs=0.05)  # the training column, not inference
        assert share == f"{100 * float(gflops) / peak:.0f}%"
    # hf_vit's share of the peak is its training row's, as the table shows it
    assert f"hf_vit/eager achieved {table['hf_vit/eager'][4]} of the matmul peak in training" in out
    # each ratio line is the first model's timing over the second's: its own paired entry, not the peer's reverse
    pair, twin = ours["paired"]["lesson"], copy["paired"]["hf_vit/eager"]
    assert f"hf_vit/eager / lesson: train {pair['train']:.2f}x, inference {pair['infer']:.2f}x" in out
    assert (f"noise floor: hf_vit/eager (copy) / hf_vit/eager (the same model twice): train {twin['train']:.2f}x, "
            f"inference {twin['infer']:.2f}x") in out  # fmt: skip
    # the end-to-end run over the bare step of the same model (500 img/s), not over the table's row (400)
    e2e, bare, share = re.search(r"([\d.]+) img/s vs bare model step ([\d.]+) img/s -> (\d+)%", out).groups()
    assert float(bare) == 500.0 and share == f"{100 * float(e2e) / float(bare):.0f}%"[:-1]
    inside, in_step, outside = re.search(
        r"split by StepTimer: ([\d.]+)% of its wall time inside the training steps \(([\d.]+) img/s there\), "
        r"([\d.]+)% between them", out).groups()  # fmt: skip
    assert float(inside) + float(outside) == pytest.approx(100.0) and float(outside) == 12.5 and float(in_step) == 480.0


def test_a_device_the_benchmark_cannot_time_is_refused_before_any_timing(monkeypatch, capsys):
    """The timing waits on CUDA's queue only: on another device (meta here; mps, also what --device auto picks on a
    Mac) a step would be timed as it is queued, not as it runs. before: `--device meta` measured a 'matmul peak' for
    2 s and then died in a timing child with a traceback (autocast has no meta device)."""
    from hf_vit import benchmarking

    peaks = []
    monkeypatch.setattr(benchmarking, "matmul_peak_gflops", lambda *a, **k: peaks.append(a) or 1.0)
    with pytest.raises(SystemExit) as exit_info:
        main(["--device", "meta", "--models", "hf_vit", "--e2e_steps", "0"])
    assert exit_info.value.code == 2 and peaks == []
    assert capsys.readouterr().err.strip().endswith(
        "error: --device meta: the benchmark times a CPU or a CUDA GPU only (it waits on CUDA's queue; on meta it "
        "would time the queueing, not the work). Use --device cpu or cuda."
    )


def test_more_threads_than_cpus_is_refused_before_any_timing(capsys):
    """More torch threads than CPUs time the threads' contention, not the models. before: `--threads 64` on this
    2-core machine was timed without a word (5.6 img/s of training for a tiny model that trains hundreds)."""
    from hf_vit.training import usable_cpus

    cpus = usable_cpus()
    assert cpus == len(os.sched_getaffinity(0))
    with pytest.raises(SystemExit) as exit_info:
        main(["--threads", str(cpus + 1), "--preset", "tiny", "--models", "hf_vit", "--dtype", "fp32", "--batch_size", "2",
              "--steps", "1", "--rounds", "1", "--e2e_steps", "0", "--no_control", "--no_memory"])  # fmt: skip
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().endswith(
        f"error: --threads {cpus + 1}: more than the {cpus} CPU(s) this process may use; the threads would contend "
        f"for them, and the figures would time that. Pass at most {cpus}, or leave --threads out."
    )


def test_the_end_to_end_run_trains_the_shape_of_its_bare_step(benchmark_run):
    """The end-to-end img/s is set against the bare step of exactly the model the Trainer trains. before: --pool
    reached the bare step but not the Trainer run, which trained the preset's own pool (--preset tiny --pool mean:
    the bare step pooled the mean, the Trainer's model [CLS]). benchmark_run: --preset tiny --pool mean, its shapes
    those compare_models (last: the bare step) and training.train were given."""
    shapes = benchmark_run["shapes"]
    assert "end-to-end Trainer run (2 steps" in benchmark_run["out"]
    assert shapes["bare"]["pool"] == "mean" and shapes["trainer"] == shapes["bare"]


def test_the_flop_count_is_the_same_for_either_kernel_though_torchs_counter_misses_cpu_sdpa():
    """What FlopCounterMode counts: matmuls and convolutions only (no softmax, scaling, norms, GELU, residual adds or
    optimizer), and under the CPU's SDPA kernel no attention matmul at all (it has no formula for
    _scaled_dot_product_flash_attention_for_cpu). The benchmark's count is the eager one for both kernels: the same
    q k^T and attn v, written out here (2 matmuls x 2 FLOPs x tokens^2 x dim_head per head and layer)."""
    config = HfViTConfig(**SMALL_CLS)
    tokens, batch = (32 // 4) ** 2 + 1, 3
    attention = 2 * 2 * tokens * tokens * config.dim_head * config.heads * config.depth * batch  # forward, batch
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    counts = {}
    for attn in ("eager", "sdpa"):
        model = build_model("hf_vit", config, attn)
        with torch.no_grad(), FlopCounterMode(display=False) as forward:
            model(pixel_values=x)
        with FlopCounterMode(display=False) as both:
            torch.nn.functional.cross_entropy(model(pixel_values=x).logits, y).backward()
        counts[attn] = forward.get_total_flops(), both.get_total_flops()
        ops = {str(op).removeprefix("aten.") for op in both.get_flop_counts()["Global"]}
        assert ops == ({"mm", "addmm", "bmm"} if attn == "eager" else {"mm", "addmm"}), (attn, ops)
    assert counts["eager"] == (forward_flops(config, batch), train_flops(config, batch))
    # the backward of q k^T and attn v is two matmuls each: 3x the forward's
    assert counts["sdpa"] == (forward_flops(config, batch) - attention, train_flops(config, batch) - 3 * attention)
    assert attention / forward_flops(config, batch) == pytest.approx(0.112, abs=0.001)  # 11% of the forward


def test_every_model_of_a_table_computes_in_its_dtype():
    """bf16: every matmul and convolution of all three models runs in bf16 (autocast), fp32 otherwise."""
    config = HfViTConfig(image_size=32, patch_size=8, dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64, pool="cls")
    for autocast, dtype in ((False, torch.float32), (True, torch.bfloat16)):
        for kind in ("hf_vit", "transformers", "lesson"):
            bench = _Bench(kind, "eager", config, 2, "cpu", autocast)
            seen = set()
            for module in bench.model.modules():
                if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                    module.register_forward_hook(lambda m, i, out: seen.add(out.dtype))
            bench.train_step()
            bench.infer_step()
            assert seen == {dtype}, (kind, autocast, seen)
            assert all(p.dtype == torch.float32 for p in bench.model.parameters())  # weights stay fp32, as training


def test_warm_up_steps_are_left_out_and_the_matmul_peak_uses_the_models_threads(monkeypatch, capsys):
    """The timing child run in this process (as in test_a_slower_peer_gives_hf_vit_a_ratio_above_one): the lesson's
    first 3 steps of each phase sleep 0.5 s (a compilation, a cold allocator), and its figures must not show it. The
    matmul peak is measured with the threads every step runs with."""
    from hf_vit import benchmarking

    calls, threads_seen = {"train": 0, "infer": 0}, set()

    def slow_start(phase, step):
        def run(self):
            threads_seen.add(torch.get_num_threads())
            if self.kind == "lesson":
                calls[phase] += 1
                if calls[phase] <= 3:
                    time.sleep(0.5)
            step(self)

        return run

    peak_threads = []
    monkeypatch.setattr(benchmarking, "_child", in_this_process)
    monkeypatch.setattr(benchmarking, "matmul_peak_gflops", lambda *a, **k: peak_threads.append(torch.get_num_threads()) or 50.0)
    for phase in ("train", "infer"):
        monkeypatch.setattr(_Bench, f"{phase}_step", slow_start(phase, getattr(_Bench, f"{phase}_step")))
    before = torch.get_num_threads()
    try:
        main(["--preset", "tiny", "--models", "hf_vit,lesson", "--dtype", "fp32", "--attn", "eager", "--batch_size", "2",
              "--steps", "2", "--rounds", "3", "--threads", "1", "--no_control", "--no_memory", "--e2e_steps", "0"])  # fmt: skip
    finally:
        torch.set_num_threads(before)
    assert calls == {"train": 3 + 3 * 2, "infer": 3 + 3 * 2}  # 3 warm-up steps, then 3 windows of 2
    assert peak_threads == [1] and threads_seen == {1}
    ratios = re.search(r"hf_vit/eager / lesson: train ([\d.]+)x, inference ([\d.]+)x", capsys.readouterr().out)
    # A timed 0.5 s sleep would read ~100x; steps of a few ms vary up to ~4x on a loaded host (3.75x seen at load 4)
    assert all(float(r) < 20 for r in ratios.groups()), ratios.group(0)


def test_the_end_to_end_split_counts_every_image_of_an_accumulated_step(tmp_path):
    """StepTimer's edges are the optimizer steps (on_step_begin/on_step_end once per step, whatever the gradient
    accumulation), and the Trainer's img/s counts batch x accumulation per step. before: the in-step img/s counted
    one batch per step, half the images at --gradient_accumulation_steps 2, and read slower than the whole run."""
    data = make_tiny_cifar(tmp_path / "data", n_train=32, n_test=4)
    steps, batch, accumulation = 3, 4, 2
    r = end_to_end_img_s("tiny", data, batch, steps, "cpu", "fp32", tmp_path / "run", [
        "--num_threads", "1", "--disable_tqdm", "true", "--gradient_accumulation_steps", str(accumulation)])
    assert r["steps"] == steps
    assert r["train_img_s"] == pytest.approx(steps * batch * accumulation / r["runtime_s"], rel=0.01)
    assert r["in_step_img_s"] == pytest.approx(steps * batch * accumulation / r["inside_s"])
    assert r["in_step_img_s"] > r["train_img_s"]  # the steps are part of the run's time


@pytest.mark.skipif(torch.cuda.is_available(), reason="the message of a machine without CUDA")
def test_cuda_on_a_machine_without_it_is_one_error_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--device", "cuda", "--models", "hf_vit", "--e2e_steps", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().endswith("error: --device cuda: CUDA is not available on this machine. Use --device cpu.")
    assert "Traceback" not in err


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux's CPU affinity")
def test_the_threads_limit_is_the_cpus_of_the_affinity_mask_not_the_machines(monkeypatch, capsys):
    """A container or taskset narrows the CPUs a process may use below os.cpu_count(): the refusal counts those (here
    1 of this machine's CPUs), and --threads within them is timed. test_more_threads_than_cpus_is_refused_before_any_
    timing passes with either count on a machine whose mask holds every CPU."""
    from hf_vit import benchmarking

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    monkeypatch.setattr(benchmarking, "matmul_peak_gflops", lambda *a, **k: 1.0)
    monkeypatch.setattr(benchmarking, "_child", in_this_process)  # the timing of --threads 1, in this process
    argv = ["--preset", "tiny", "--models", "hf_vit", "--dtype", "fp32", "--attn", "eager", "--batch_size", "2",
            "--steps", "1", "--rounds", "1", "--e2e_steps", "0", "--no_control", "--no_memory"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(["--threads", "2", *argv])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().endswith(
        "error: --threads 2: more than the 1 CPU(s) this process may use; the threads would contend for them, and the "
        "figures would time that. Pass at most 1, or leave --threads out."
    )
    before = torch.get_num_threads()
    try:
        main(["--threads", "1", *argv])
    finally:
        torch.set_num_threads(before)
    assert "1 threads" in capsys.readouterr().out


def test_benchmark_input_without_device_refuses_a_training_device_it_cannot_time():
    """Without --device the step is timed where the recipe trains: on a Mac the gpu recipe trains on mps, whose steps
    would be timed as they are queued (only --device mps was refused). The refusal says the device came from the
    recipe, since no --device was given, and explains the limit in the words of the refusal of --device (before:
    the same limit in other words)."""
    import importlib.util
    from types import SimpleNamespace

    script = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_input.py"
    spec = importlib.util.spec_from_file_location("_benchmark_input", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.step_device(None, SimpleNamespace(device=torch.device("cpu"))) == torch.device("cpu")
    with pytest.raises(ValueError) as refused:
        module.step_device(None, SimpleNamespace(device=torch.device("mps")))
    # the limit in benchmark.py's words (timed_device's refusal of --device mps), then what to pass here
    assert str(refused.value) == (
        "--device not given: the recipe trains on mps on this machine, and the benchmark times a CPU or a CUDA GPU "
        "only (it waits on CUDA's queue; on mps it would time the queueing, not the work). Pass --device cpu."
    )
    with pytest.raises(ValueError) as given:
        module.step_device("meta", SimpleNamespace(device=torch.device("cpu")))
    assert str(given.value) == (
        "--device meta: the benchmark times a CPU or a CUDA GPU only (it waits on CUDA's queue; on meta it would "
        "time the queueing, not the work). Use --device cpu or cuda."
    )


def test_benchmark_input_augments_where_the_recipe_trains_it(tmp_path, capsys):
    """The gpu recipe augments on the GPU inside the training step (augment_on_device), but benchmark_input.py timed
    its pipeline with the CPU collator's RandAugment, work train.py never does on the CPU there, and called the
    ratio BELOW target. Now the pipeline is the recipe's: its collator hands the uint8 batch and its seed on, and
    the step's figure includes the augmentation, timed where the step runs (here the CPU), on the same pixels the
    CPU collator makes. The cpu recipe's pipeline still augments."""
    import importlib.util

    from hf_vit.training import build_config, parse_args

    script = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_input.py"
    spec = importlib.util.spec_from_file_location("_benchmark_input", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tiny = make_tiny_cifar(tmp_path / "tiny", n_train=16, n_test=4)
    batches = {}
    for recipe in ("cpu", "gpu"):
        model_args, data_args, _, _ = parse_args(["--recipe", recipe, "--bf16", "false"])
        train_set, collator = module.input_pipeline(str(tiny), None, build_config(model_args), data_args)
        batches[recipe] = collator(train_set.__getitems__(list(range(8))))
        assert collator.on_device == (recipe == "gpu")
    assert batches["cpu"]["pixel_values"].dtype == torch.float32 and "aug_seed" not in batches["cpu"]
    uint8, seed = batches["gpu"]["pixel_values"], batches["gpu"]["aug_seed"]
    assert uint8.dtype == torch.uint8 and isinstance(seed, int)
    assert module.device_augment_rate(collator.augment, [batches["gpu"]] * 2, torch.device("cpu")) > 0
    on_cpu = module.BatchCollator(collator.augment, seed=collator.seed)(train_set.__getitems__(list(range(8))))
    torch.testing.assert_close(collator.augment(uint8, batches["gpu"]["labels"], seed)["pixel_values"],
                               on_cpu["pixel_values"], rtol=0, atol=0)
    capsys.readouterr()
