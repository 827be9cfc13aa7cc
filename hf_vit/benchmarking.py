"""Side-by-side speed measurements (used by `scripts/benchmark.py`).

Every model is timed on the same config, threads, batch and inputs, all in
one fresh process in interleaved windows (a slow spell of a shared machine
hits them alike); peak memory (RSS on CPU, allocator peak on CUDA) comes from
a fresh process per model, so that it belongs to that model alone. The
end-to-end run is a real short `Trainer` run, split by `StepTimer` into time
inside the training steps and time between them.
"""

import copy
import json
import multiprocessing as mp
import os
import queue as queue_module
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from .configuration_hf_vit import HfViTConfig, _pair


def _patch_flops(config: HfViTConfig) -> int:
    """Multiply-adds x 2 of one image's patch embedding."""
    (ih, iw), (ph, pw) = _pair(config.image_size), _pair(config.patch_size)
    return 2 * (ih // ph) * (iw // pw) * (config.num_channels * ph * pw) * config.dim


def forward_flops(config: HfViTConfig, batch: int) -> float:
    """Multiply-adds x 2 of one forward pass (matmuls only; norms and softmax are noise)."""
    (ih, iw), (ph, pw) = _pair(config.image_size), _pair(config.patch_size)
    n = (ih // ph) * (iw // pw)
    t = n + 1  # tokens with [CLS]
    inner = config.heads * config.dim_head
    patch = _patch_flops(config)
    project_out = not (config.heads == 1 and config.dim_head == config.dim)  # as the model builds to_out
    per_layer = (
        2 * t * config.dim * 3 * inner  # to_qkv
        + 2 * 2 * t * t * inner  # q k^T and attn v
        + (2 * t * inner * config.dim if project_out else 0)  # to_out (an identity for one head as wide as dim)
        + 2 * 2 * t * config.dim * config.mlp_dim  # FFN
    )
    head = 2 * config.dim * config.num_labels
    return float(batch * (patch + config.depth * per_layer + head))


def train_flops(config: HfViTConfig, batch: int) -> float:
    """Forward + backward: the backward of each matmul is two (input and weight gradients), except the patch
    embedding's, which has no input gradient to compute (the pixels need none)."""
    return 3 * forward_flops(config, batch) - batch * _patch_flops(config)


def matmul_peak_gflops(device: str = "cpu", n: int = 2048, dtype=torch.float32, seconds: float = 2.0) -> float:
    """Measured GFLOP/s of an n x n x n matmul: the machine's practical ceiling."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    _sync(device)
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)  # that GPU's queue: a bare synchronize() waits on the current one (cuda:0)


def why_not_timed(device_type: str) -> str:
    """Why the benchmarks refuse to time a step on `device_type`: one wording for --device and for a recipe's device."""
    return (f"the benchmark times a CPU or a CUDA GPU only (it waits on CUDA's queue; on {device_type} it would time "
            "the queueing, not the work)")


def timed_device(requested: str | None) -> torch.device:
    """--device as the benchmarks time it: a CPU or a CUDA GPU, whose queue `_sync` waits on. On any other device
    (mps, meta) a step would be timed as it is queued; a ValueError names the fix."""
    from .analysis import resolve_device
    from .data import flags_in_messages

    with flags_in_messages():  # named as the script's --device
        device = resolve_device(requested)
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {requested}: {why_not_timed(device.type)}. Use --device cpu or cuda.")
    return device


def build_model(kind: str, config: HfViTConfig, attn: str = "sdpa"):
    """'hf_vit', 'transformers' (built-in ViTForImageClassification) or 'lesson' (the reference).

    `attn` picks transformers' attention kernel ('sdpa' or 'eager') for hf_vit and transformers'
    ViT alike; the lesson's module has one way only (matmul + softmax, what 'eager' also does).
    """
    if kind == "hf_vit":
        from .modeling_hf_vit import HfViTForImageClassification

        model = HfViTForImageClassification(copy.deepcopy(config))  # the model keeps the object: one each
        model.set_attn_implementation(attn)
        return model
    if kind == "transformers":
        from transformers import ViTConfig, ViTForImageClassification

        if config.heads * config.dim_head != config.dim:
            raise ValueError("transformers' ViT needs heads * dim_head == dim for a like-for-like comparison.")
        vit_config = ViTConfig(
            hidden_size=config.dim, num_hidden_layers=config.depth, num_attention_heads=config.heads,
            intermediate_size=config.mlp_dim, image_size=config.image_size, patch_size=config.patch_size,
            num_channels=config.num_channels, qkv_bias=False, layer_norm_eps=config.layer_norm_eps,
            num_labels=config.num_labels, hidden_act="gelu",
        )
        model = ViTForImageClassification(vit_config)
        model.set_attn_implementation(attn)
        if model.config._attn_implementation != attn:
            raise RuntimeError(f"expected {attn!r} attention, got {model.config._attn_implementation!r}")
        return model
    if kind == "lesson":
        if not lesson_module_found():
            raise RuntimeError(LESSON_MISSING)
        from lesson_vit import ViT, ViTConfig as LessonConfig

        return ViT(
            LessonConfig(
                image_size=config.image_size, patch_size=config.patch_size, num_classes=config.num_labels,
                dim=config.dim, depth=config.depth, heads=config.heads, mlp_dim=config.mlp_dim,
                pool=config.pool, channels=config.num_channels, dim_head=config.dim_head,
            )
        )
    raise ValueError(f"unknown model kind {kind!r}: use 'hf_vit', 'transformers' or 'lesson'.")


def _logits(model, x):
    out = model(x) if not hasattr(model, "config") else model(pixel_values=x)
    return out if isinstance(out, torch.Tensor) else out.logits


class _Bench:
    """One model with its optimizer and inputs: a training step and an inference step."""

    def __init__(self, kind, attn, config, batch, device, autocast, compiled=False, copy=False):
        torch.manual_seed(0)  # same weights for every model of a kind
        self.name, self.kind, self.attn, self.compiled = _name(kind, attn, compiled, copy), kind, attn, compiled
        self.copy = copy
        self.model = build_model(kind, config, attn).to(device)
        if compiled:  # what --torch_compile does in the Trainer; the warm-up steps pay for the compilation
            self.model = torch.compile(self.model)
        # The inputs come from a generator of their own: each kind's initialisation draws another number of values
        # from the global one, which left every kind with other inputs.
        inputs = torch.Generator().manual_seed(0)
        self.x = torch.randn(batch, config.num_channels, *_pair(config.image_size), generator=inputs).to(device)
        self.y = torch.randint(0, config.num_labels, (batch,), generator=inputs).to(device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.device_type, self.autocast = torch.device(device).type, autocast

    def train_step(self):
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.autocast):
            loss = torch.nn.functional.cross_entropy(_logits(self.model, self.x), self.y)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def infer_step(self):
        with torch.inference_mode(), torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.autocast):
            _logits(self.model, self.x)


def _like_training(device):
    """The allocator settings a CPU training run uses (see `keep_freed_memory`), so the bare step is timed alike."""
    if torch.device(device).type == "cpu":
        from .training import keep_freed_memory

        keep_freed_memory()
    elif torch.device(device).type == "cuda" and torch.device(device).index is not None:
        torch.cuda.set_device(torch.device(device))  # cuda:1: events, streams and memory statistics use the current GPU


def time_models(jobs, config_dict, batch, steps, rounds, device, threads, dtype_name, result_queue):
    """Child process: all models side by side, in interleaved windows of `steps` steps.

    Round r times one window per model, in an order rotated by r, so that a slow spell of a shared
    machine hits every model alike. Each figure is the median window; each ratio the median of the
    per-round ratios (paired: both windows of a pair ran in the same round, side by side only for
    neighbours in the order).
    """
    torch.set_num_threads(threads)
    _like_training(device)
    config = HfViTConfig(**config_dict)
    benches = [
        _Bench(kind, attn, config, batch, device, dtype_name == "bf16", compiled, copy)
        for kind, attn, compiled, copy in jobs
    ]
    seconds = {(b.name, phase): [] for b in benches for phase in ("train", "infer")}
    for phase in ("train", "infer"):
        for b in benches:
            b.model.train(phase == "train")
            for _ in range(3):  # warm-up: allocator, kernels, optimizer state
                getattr(b, f"{phase}_step")()
        for round_ in range(rounds):
            shift = round_ % len(benches)
            for b in benches[shift:] + benches[:shift]:
                step = getattr(b, f"{phase}_step")
                _sync(device)
                start = time.perf_counter()
                for _ in range(steps):
                    step()
                _sync(device)
                seconds[b.name, phase].append((time.perf_counter() - start) / steps)

    fwd, fwd_bwd = forward_flops(config, 1), train_flops(config, 1)
    rows = []
    for b in benches:
        row = {
            "model": b.name, "kind": b.kind, "attn": b.attn, "compiled": b.compiled, "copy": b.copy,
            "dtype": dtype_name, "paired": {},
            "device": str(next(b.model.parameters()).device),  # where the timed model ran
        }
        for phase in ("train", "infer"):
            row[f"{phase}_img_s"] = batch / statistics.median(seconds[b.name, phase])
            for other in benches:  # how much faster b is than `other`, round by round
                if other is not b:
                    ratios = [o / m for m, o in zip(seconds[b.name, phase], seconds[other.name, phase])]
                    row["paired"].setdefault(other.name, {})[phase] = statistics.median(ratios)
        row["train_gflops"] = row["train_img_s"] * fwd_bwd / 1e9
        row["infer_gflops"] = row["infer_img_s"] * fwd / 1e9
        rows.append(row)
    result_queue.put(json.dumps(rows))


def peak_memory(kind, attn, compiled, config_dict, batch, device, threads, dtype_name, result_queue):
    """Child process, one model alone: peak memory (RSS on CPU, allocator peak on CUDA) of train + infer steps."""
    torch.set_num_threads(threads)
    _like_training(device)
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    bench = _Bench(kind, attn, HfViTConfig(**config_dict), batch, device, dtype_name == "bf16", compiled)
    for phase in ("train", "infer"):
        bench.model.train(phase == "train")
        for _ in range(3):
            getattr(bench, f"{phase}_step")()
    if str(device).startswith("cuda"):
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = own_peak_rss_mb()
    result_queue.put(json.dumps(peak))


def own_peak_rss_mb() -> float:
    """This process's peak resident memory, in MB.

    Linux keeps it per process image (VmHWM). getrusage's ru_maxrss survives the exec that starts a spawned
    child: a benchmark child read the peak of the process that started it whenever that one was higher.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (2**20 if sys.platform == "darwin" else 1024)  # bytes on macOS, kB elsewhere


def _child(target, args, env=None):
    ctx = mp.get_context("spawn")  # a fresh interpreter: no state (threads, allocator, compiled kernels) carried over
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    saved = {name: os.environ.get(name) for name in env or {}}
    os.environ.update(env or {})  # the child's environment is this one at its start
    try:
        proc.start()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    result = None
    while result is None:  # before join(): a child blocks on exit until its queue is drained
        try:
            result = queue.get(timeout=1.0)
        except queue_module.Empty:
            if not proc.is_alive() and queue.empty():  # it died without an answer: waiting would never end
                break
    proc.join()
    if proc.exitcode != 0 or result is None:
        raise RuntimeError(f"benchmark child {target.__name__} failed (exit code {proc.exitcode}); see the output above.")
    return json.loads(result)


# The lesson's module is part of a checkout (tests/lesson_vit.py), not of the installed package.
LESSON_MISSING = (
    "--models lesson times the lesson's module, tests/lesson_vit.py, which comes with a checkout of hf-vit, not with "
    "the installed package: run scripts/benchmark.py of a checkout, or pass --models hf_vit,transformers."
)


def lesson_module_found() -> bool:
    """Put the checkout's tests/ on sys.path (spawned children inherit it) if it holds lesson_vit.py."""
    # the package's checkout (an editable install), else the checkout whose scripts/benchmark.py runs
    places = [Path(__file__).resolve()] + ([Path(sys.argv[0]).resolve()] if sys.argv and sys.argv[0] else [])
    for root in (place.parents[1] for place in places if len(place.parents) > 1):
        if (root / "tests" / "lesson_vit.py").is_file():
            if str(root / "tests") not in sys.path:
                sys.path.insert(0, str(root / "tests"))
            return True
    return False


def compare_models(
    config: HfViTConfig, kinds, batch=128, steps=4, rounds=10, device="cpu", threads=None, dtype="fp32",
    attns=("sdpa",), memory=True, compiled=False, control=False,
):
    """Time the models side by side; one result dict per (kind, attention kernel).

    hf_vit and transformers' ViT are timed with each kernel in `attns`; the lesson's module has one
    way only (matmul + softmax, what 'eager' also does). `compiled` adds hf_vit under `torch.compile`
    for each kernel. `control` adds a second, identical hf_vit (same weights and inputs; eager attention,
    the CPU recipe's, if timed) to the same windows: its ratio to its twin is what "equally fast"
    reads as in this run, the yardstick for every other ratio. Speed comes from one process with
    interleaved windows (`time_models`); peak memory from a fresh process per model (`peak_memory`).
    """
    threads = threads or torch.get_num_threads()
    jobs = [(k, a, False, False) for a in attns for k in kinds if k != "lesson"]
    jobs += [("lesson", "eager", False, False)] * ("lesson" in kinds)
    jobs += [("hf_vit", a, True, False) for a in attns] if compiled and "hf_vit" in kinds else []
    if control and "hf_vit" in kinds:
        jobs.append(("hf_vit", "eager" if "eager" in attns else attns[0], False, True))
    config_dict = {k: v for k, v in config.to_dict().items() if k in HfViTConfig().to_dict()}
    rows = _child(time_models, (jobs, config_dict, batch, steps, rounds, device, threads, dtype))
    for row, job in zip(rows, jobs):
        measure = memory and not job[3]  # a copy's memory is its twin's
        row["peak_mem_mb"] = _child(peak_memory, (*job[:3], config_dict, batch, device, threads, dtype)) if measure else None
    return rows


# ---------------------------------------------------------------------------
# End to end: a real short Trainer run
# ---------------------------------------------------------------------------
class StepTimer(TrainerCallback):
    """Splits a run's wall time: inside the optimizer steps (forward, backward, clipping, optimizer) and
    between them (fetching, collating and augmenting the next batch; logging).

    The Trainer fetches a step's batch before `on_step_begin`, so the input pipeline lands outside. Both
    parts come from the same run, so a machine that speeds up or slows down moves them together. On a
    GPU both are read on the GPU's timeline: "between" is then time in which the GPU waited for the host.
    """

    def __init__(self, device="cpu"):
        # GPU work is asynchronous, and a host clock would need a sync at each edge: that would change the run
        # it times. On a GPU, CUDA events mark the edges in the GPU's own stream; they are read once, at the end.
        self.cuda = str(device).startswith("cuda")
        self.marks = []  # (edge, time.perf_counter() or a recorded torch.cuda.Event)
        self.inside_s = self.total_s = 0.0
        self.steps = 0
        self.images_per_step = 0  # one optimizer step: a batch per accumulated micro-batch

    def _mark(self, edge):
        if self.cuda:
            mark = torch.cuda.Event(enable_timing=True)
            mark.record()
        else:
            mark = time.perf_counter()
        self.marks.append((edge, mark))

    def _seconds(self, a, b):
        return a.elapsed_time(b) / 1000 if self.cuda else b - a

    def on_train_begin(self, args, state, control, **kwargs):
        self.marks = []
        if args is not None:  # None where the callback is driven by hand, not by a Trainer
            self.images_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps
        self._mark("train")

    def on_step_begin(self, args, state, control, **kwargs):
        self._mark("step")

    def on_step_end(self, args, state, control, **kwargs):
        self._mark("step_end")

    def on_train_end(self, args, state, control, **kwargs):
        self._mark("train_end")
        if self.cuda:
            torch.cuda.synchronize()  # once: every event has happened
        edges = zip(self.marks, self.marks[1:])
        steps = [(a, b) for (edge_a, a), (edge_b, b) in edges if (edge_a, edge_b) == ("step", "step_end")]
        self.steps = len(steps)
        self.inside_s = sum(self._seconds(a, b) for a, b in steps)
        self.total_s = self._seconds(self.marks[0][1], self.marks[-1][1])


def end_to_end_img_s(preset, dataset, batch, steps, device, dtype, output_dir, extra_args=()) -> dict:
    """img/s of `steps` Trainer steps with the real input pipeline (decode cached, batched augmentation).

    Also the same run's img/s counting only the time inside the training steps (`in_step_img_s`) and
    the share of its wall time spent between steps (`outside_share`).
    """
    from .training import parse_args, train

    argv = [
        "--preset", preset, "--dataset_name", str(dataset), "--output_dir", str(output_dir),
        "--max_steps", str(steps), "--per_device_train_batch_size", str(batch),
        "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
        "--validation_size", "0", "--max_test_samples", "200", "--logging_steps", str(max(1, steps // 2)),
        "--warmup_steps", "0", "--report_to", "none",
        # The Trainer's img/s counts every step as a full batch: an epoch's last, partial one is left out. Its test
        # pass (untimed) goes one image at a time, so that no test image is left out with it.
        "--dataloader_drop_last", "true", "--per_device_eval_batch_size", "1",
    ]
    if device == "cpu":
        argv += ["--use_cpu", "true"]
    if dtype == "bf16":
        argv += ["--bf16", "true"]
    timer = StepTimer(device)
    metrics = train(*parse_args(argv + list(extra_args)), extra_callbacks=[timer])
    return {
        "train_img_s": metrics["train"]["train_samples_per_second"],
        "runtime_s": metrics["train"]["runtime_s"],
        "in_step_img_s": timer.steps * timer.images_per_step / timer.inside_s,  # the Trainer's count of images
        "outside_share": 1 - timer.inside_s / timer.total_s,
        "inside_s": timer.inside_s,
        "total_s": timer.total_s,
        "steps": timer.steps,
    }


def _end_to_end_child(*args):
    """Child process: `end_to_end_img_s(*args)`, its answer put on the queue (the last argument)."""
    *args, result_queue = args
    result_queue.put(json.dumps(end_to_end_img_s(*args)))


def one_gpu_env(device) -> dict:
    """The environment that shows a child process only `device`'s GPU ({} for a CPU)."""
    device = torch.device(device)
    if device.type != "cuda":
        return {}
    index = device.index or 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")  # cuda:N counts the GPUs this process sees
    return {"CUDA_VISIBLE_DEVICES": visible.split(",")[index].strip() if visible else str(index)}


def end_to_end_on(device, preset, dataset, batch, steps, dtype, output_dir, extra_args=()) -> dict:
    """`end_to_end_img_s` on `device` alone. The Trainer takes cuda:0 and spreads a run over every GPU it sees
    (DataParallel), so on a GPU the run goes to a child process that sees only the chosen one."""
    env = one_gpu_env(device)
    if not env:
        return end_to_end_img_s(preset, dataset, batch, steps, device, dtype, output_dir, extra_args)
    return _child(_end_to_end_child, (preset, str(dataset), batch, steps, "cuda", dtype, str(output_dir),
                                      list(extra_args)), env=env)  # fmt: skip


def _print_table(rows, peak, dtype, rounds, steps):
    print(f"\n{dtype} (median of {rounds} interleaved windows of {steps} steps):")
    print(f"{'model':<20}{'train img/s':>13}{'infer img/s':>13}{'peak MB':>10}{'train GFLOP/s':>15}{'% of peak':>11}")
    for r in rows:
        mem = f"{r['peak_mem_mb']:>10.0f}" if r["peak_mem_mb"] is not None else f"{'-':>10}"
        print(
            f"{r['model']:<20}{r['train_img_s']:>13.1f}{r['infer_img_s']:>13.1f}{mem}"
            f"{r['train_gflops']:>15.1f}{100 * r['train_gflops'] / peak:>10.0f}%"
        )
    print(f"matmul peak ({dtype}, 2048^3): {peak:.1f} GFLOP/s")


def _name(kind, attn, compiled=False, copy=False):
    name = kind if kind == "lesson" else f"{kind}/{attn}" + ("+compile" if compiled else "")
    return name + " (copy)" if copy else name


def _print_ratios(rows, peak):
    """hf_vit against each peer (paired ratios): transformers' ViT with either kernel, and the lesson."""
    for base in (r for r in rows if r["kind"] == "hf_vit" and not r["copy"]):
        for other in rows:
            if other["kind"] == "hf_vit":
                continue
            pair = base["paired"][other["model"]]
            print(f"{base['model']} / {other['model']}: train {pair['train']:.2f}x, inference {pair['infer']:.2f}x")
        print(f"{base['model']} achieved {100 * base['train_gflops'] / peak:.0f}% of the matmul peak in training")
    for copy in (r for r in rows if r["copy"]):
        twin = copy["model"].removesuffix(" (copy)")
        pair = copy["paired"][twin]
        print(
            f"noise floor: {copy['model']} / {twin} (the same model twice): train {pair['train']:.2f}x, "
            f"inference {pair['infer']:.2f}x; ratios within this distance of 1.00 are ties"
        )


def _split(value, allowed, flag, parser):
    items = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in items if v not in allowed]
    if unknown or not items:
        parser.error(f"{flag} {value!r}: use a comma list of {', '.join(allowed)}")
    twice = sorted({v for v in items if items.count(v) > 1})
    if twice:  # a name twice would time one model as two rows sharing its windows
        parser.error(f"{flag} {value!r} names {', '.join(twice)} twice: list each once")
    return items


def main(argv=None) -> int:
    import argparse
    import tempfile

    from .training import PRESETS, cpu_has_native_bf16, usable_cpus

    parser = argparse.ArgumentParser(description="hf_vit speed, side by side")
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS),
                        help="model shape (default: small, the cpu recipe's)")
    parser.add_argument("--pool", default=None, choices=("cls", "mean"), help="override the preset's pool")
    parser.add_argument("--batch_size", type=int, default=128, help="images per batch (default: 128)")
    parser.add_argument("--steps", type=int, default=4, help="steps per timed window (default: 4)")
    parser.add_argument("--rounds", type=int, default=10,
                        help="interleaved windows per model; figures are medians (default: 10)")
    parser.add_argument("--device", default="cpu", help="where to time: cpu, cuda or cuda:<index> (default: cpu)")
    parser.add_argument(
        "--dtype",
        default=None,
        help="comma list of fp32, bf16 (autocast); one table each (default: both, or fp32 alone on a CPU without "
        "bf16 instructions, where bf16 is emulated)",
    )
    parser.add_argument("--attn", default="sdpa,eager",
                        help="attention kernels for hf_vit and transformers' ViT (default: sdpa,eager)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own count)")
    parser.add_argument("--models", default="hf_vit,transformers,lesson",
                        help="which models to time, comma-separated (default: hf_vit,transformers,lesson)")
    parser.add_argument("--compile", action="store_true", help="also time hf_vit under torch.compile (slow to start)")
    parser.add_argument(
        "--no_control", action="store_true", help="skip the second copy of hf_vit that measures the noise floor"
    )
    parser.add_argument(
        "--no_memory", action="store_true", help="skip peak memory (one fresh process per model; the slow part of a short run)"
    )
    parser.add_argument("--dataset", default=None, help="for the end-to-end run (default: the CIFAR-10 copy if present)")
    parser.add_argument("--e2e_steps", type=int, default=40,
                        help="Trainer steps of the end-to-end run (default: 40; 0 = skip)")
    args = parser.parse_args(argv)
    # Every flag is checked here, before the first timing: a bad one is one `error:` line, not a traceback
    # (or a dataset error after minutes of timing).
    try:
        args.device = str(timed_device(args.device))
    except ValueError as err:
        parser.error(str(err))
    for flag, value in (("--batch_size", args.batch_size), ("--threads", args.threads)):
        if value is not None and value < 1:
            parser.error(f"{flag} {value}: must be at least 1")
    if args.threads is not None and args.threads > usable_cpus():
        parser.error(
            f"--threads {args.threads}: more than the {usable_cpus()} CPU(s) this process may use; the threads would "
            f"contend for them, and the figures would time that. Pass at most {usable_cpus()}, or leave --threads out."
        )
    if args.e2e_steps < 0:
        parser.error(f"--e2e_steps {args.e2e_steps}: must be at least 1, or 0 to skip the end-to-end run")
    if args.dtype is None:
        args.dtype = "fp32,bf16"
        if torch.device(args.device).type == "cpu" and not cpu_has_native_bf16():
            args.dtype = "fp32"
            print("note: this CPU has no bf16 instructions (AVX512-BF16 or AMX); emulated bf16 trains about 13x slower, "
                  "so only fp32 is timed (--dtype fp32,bf16 times both)")
    dtypes = _split(args.dtype, ("fp32", "bf16"), "--dtype", parser)
    attns = _split(args.attn, ("sdpa", "eager"), "--attn", parser)
    kinds = _split(args.models, ("hf_vit", "transformers", "lesson"), "--models", parser)
    if "lesson" in kinds and not lesson_module_found():
        parser.error(LESSON_MISSING)
    if args.rounds < 1 or args.steps < 1:
        parser.error(f"--rounds {args.rounds} / --steps {args.steps}: both must be at least 1")
    if args.dataset is not None and (args.e2e_steps == 0 or "hf_vit" not in kinds):  # it would be ignored
        skipped = "--e2e_steps 0 skips" if args.e2e_steps == 0 else f"--models {args.models} (no hf_vit) leaves out"
        parser.error(f"--dataset is read by the end-to-end run only, which {skipped}: leave --dataset out, or run "
                     "it (hf_vit in --models, --e2e_steps N).")
    dataset = None
    if args.e2e_steps > 0 and "hf_vit" in kinds:
        dataset = _check_e2e_dataset(args.dataset or _default_dataset(), args.batch_size, parser)

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    shape = dict(PRESETS[args.preset])
    if args.pool:
        shape["pool"] = args.pool
    config = HfViTConfig(**shape)
    print(
        f"config {args.preset}: {shape}; batch {args.batch_size}; {threads} threads; device {args.device}; "
        f"forward {forward_flops(config, 1) / 1e6:.1f} MFLOP/image"
    )
    if "transformers" in kinds and (config.pool != "cls" or config.heads * config.dim_head != config.dim):
        # transformers' ViT has CLS pooling and heads * head_dim == hidden_size; time hf_vit like-for-like.
        config = HfViTConfig(**{**shape, "pool": "cls"})
        print("note: transformers' ViT pools [CLS]; all models are timed with pool='cls'")
    fastest = None
    for dtype in dtypes:
        peak = matmul_peak_gflops(args.device, dtype=torch.bfloat16 if dtype == "bf16" else torch.float32)
        rows = compare_models(
            config, kinds, args.batch_size, args.steps, args.rounds, args.device, threads, dtype, attns,
            memory=not args.no_memory, compiled=args.compile, control=not args.no_control,
        )
        _print_table(rows, peak, dtype, args.rounds, args.steps)
        _print_ratios(rows, peak)
        for r in rows:
            uncompiled = r["kind"] == "hf_vit" and not r["compiled"] and not r["copy"]  # e2e below does not compile
            if uncompiled and (fastest is None or r["train_img_s"] > fastest["train_img_s"]):
                fastest = r

    if args.e2e_steps > 0 and fastest:
        if dataset is None:
            print("end-to-end: skipped (no dataset: pass --dataset or put the CIFAR-10 copy at ../shared/data/cifar10)")
            return 0
        dtype, attn = fastest["dtype"], fastest["attn"]
        # The bare step of exactly the model the Trainer trains (its own pool, the fastest dtype and kernel).
        trained = HfViTConfig(**shape)
        bare = compare_models(
            trained, ["hf_vit"], args.batch_size, args.steps, args.rounds, args.device, threads, dtype, [attn],
            memory=False,
        )[0]
        with tempfile.TemporaryDirectory() as tmp:
            e2e = end_to_end_on(
                args.device, args.preset, dataset, args.batch_size, args.e2e_steps, dtype, tmp,
                # the bare step's kernel, threads and pool (--pool overrides the preset's, which train.py would take)
                ["--attn_implementation", attn, "--num_threads", str(threads), "--pool", trained.pool],
            )
        print(
            f"\nend-to-end Trainer run ({args.e2e_steps} steps, {dtype}, {attn} attention, {dataset}): "
            f"{e2e['train_img_s']:.1f} img/s vs bare model step {bare['train_img_s']:.1f} img/s -> "
            f"{100 * e2e['train_img_s'] / bare['train_img_s']:.0f}% (input pipeline + Trainer overhead is the rest)"
        )
        # The two figures above come from different minutes of a shared machine; this split does not.
        print(
            f"the same run, split by StepTimer: {100 * (1 - e2e['outside_share']):.1f}% of its wall time inside the "
            f"training steps ({e2e['in_step_img_s']:.1f} img/s there), {100 * e2e['outside_share']:.1f}% between them "
            "(fetching and augmenting batches, logging)"
        )
    return 0


def _check_e2e_dataset(dataset, batch, parser):
    """The end-to-end run's dataset, opened now: a wrong one stops the benchmark before any timing."""
    from .data import DatasetError, flags_in_messages, load_dataset

    if dataset is None:
        return None
    try:
        with flags_in_messages():
            splits = load_dataset(str(dataset), argument="dataset")
    except DatasetError as err:
        parser.error(str(err))
    missing = [s for s in ("train", "test") if s not in splits]
    if missing:
        parser.error(
            f"--dataset {dataset}: the end-to-end run trains on its 'train' split and tests on 'test', but its splits "
            f"are {sorted(splits)}. Pass a dataset with both, or --e2e_steps 0 to skip the run."
        )
    if len(splits["train"]) < batch:  # no full batch to train on: the run's img/s would count images it never saw
        parser.error(
            f"--dataset {dataset}: its 'train' split has {len(splits['train'])} images, fewer than one batch of "
            f"{batch} (--batch_size). Pass a larger dataset, a smaller --batch_size, or --e2e_steps 0 to skip the run."
        )
    return dataset


def _default_dataset():
    """The CIFAR-10 copy: $HF_VIT_CIFAR10, else ../shared/data/cifar10 beside the checkout."""
    import os

    candidate = Path(os.environ.get("HF_VIT_CIFAR10") or Path(__file__).resolve().parents[2] / "shared/data/cifar10")
    return candidate if candidate.is_dir() else None
