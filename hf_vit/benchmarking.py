"""Side-by-side speed measurements (used by `scripts/benchmark.py`).

Every model is timed on the same config, threads, batch and inputs, each in
its own fresh process so that peak memory (RSS on CPU, allocator peak on
CUDA) belongs to that model alone.
"""

import gc
import json
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

import torch

from .configuration_hf_vit import HfViTConfig, _pair


def forward_flops(config: HfViTConfig, batch: int) -> float:
    """Multiply-adds x 2 of one forward pass (matmuls only; norms and softmax are noise)."""
    (ih, iw), (ph, pw) = _pair(config.image_size), _pair(config.patch_size)
    n = (ih // ph) * (iw // pw)
    t = n + 1  # tokens with [CLS]
    inner = config.heads * config.dim_head
    patch = 2 * n * (config.num_channels * ph * pw) * config.dim
    per_layer = (
        2 * t * config.dim * 3 * inner  # to_qkv
        + 2 * 2 * t * t * inner  # q k^T and attn v
        + 2 * t * inner * config.dim  # to_out
        + 2 * 2 * t * config.dim * config.mlp_dim  # FFN
    )
    head = 2 * config.dim * config.num_labels
    return float(batch * (patch + config.depth * per_layer + head))


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
        torch.cuda.synchronize()


def build_model(kind: str, config: HfViTConfig, attn: str = "sdpa"):
    """'hf_vit', 'transformers' (built-in ViTForImageClassification) or 'lesson' (the reference).

    `attn` picks transformers' attention kernel ('sdpa' or 'eager') for hf_vit and transformers'
    ViT alike; the lesson's module has one way only (matmul + softmax, what 'eager' also does).
    """
    if kind == "hf_vit":
        from .modeling_hf_vit import HfViTForImageClassification

        model = HfViTForImageClassification(config)
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
        root = Path(__file__).resolve().parents[1]
        sys.path.insert(0, str(root / "tests"))
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


def time_model(kind, config_dict, batch, steps, device, threads, dtype_name, attn, result_queue):
    """Child process: train-step and inference img/s and peak memory of one model."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = HfViTConfig(**config_dict)
    device = torch.device(device)
    autocast = dtype_name == "bf16"
    model = build_model(kind, config, attn).to(device)
    x = torch.randn(batch, config.num_channels, *_pair(config.image_size), device=device)
    y = torch.randint(0, config.num_labels, (batch,), device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def train_step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = loss_fn(_logits(model, x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def infer_step():
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            _logits(model, x)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    results = {"model": _name(kind, attn), "kind": kind, "attn": attn, "dtype": dtype_name}
    for name, step in (("train", train_step), ("infer", infer_step)):
        model.train(name == "train")
        for _ in range(max(3, steps // 4)):  # warm-up
            step()
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        results[f"{name}_img_s"] = batch * steps / (time.perf_counter() - start)
    if device.type == "cuda":
        results["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        results["peak_mem_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fwd = forward_flops(config, 1)
    results["train_gflops"] = results["train_img_s"] * 3 * fwd / 1e9  # backward ~ 2x forward
    results["infer_gflops"] = results["infer_img_s"] * fwd / 1e9
    del model, optimizer
    gc.collect()
    result_queue.put(json.dumps(results))


def compare_models(config: HfViTConfig, kinds, batch=128, steps=10, device="cpu", threads=None, dtype="fp32", attn="sdpa"):
    """Time each model kind in a fresh process; returns a list of result dicts (same order as `kinds`)."""
    threads = threads or torch.get_num_threads()
    ctx = mp.get_context("spawn")
    results = []
    config_dict = {k: v for k, v in config.to_dict().items() if k in HfViTConfig().to_dict()}
    for kind in kinds:
        queue = ctx.Queue()
        proc = ctx.Process(target=time_model, args=(kind, config_dict, batch, steps, device, threads, dtype, attn, queue))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"timing {kind!r} failed (exit code {proc.exitcode}); see the output above.")
        results.append(json.loads(queue.get()))
    return results


# ---------------------------------------------------------------------------
# End to end: a real short Trainer run
# ---------------------------------------------------------------------------
def end_to_end_img_s(preset, dataset, batch, steps, device, dtype, output_dir, extra_args=()) -> dict:
    """img/s of `steps` Trainer steps with the real input pipeline (decode cached, batched augmentation)."""
    from .training import parse_args, train

    argv = [
        "--preset", preset, "--dataset_name", str(dataset), "--output_dir", str(output_dir),
        "--max_steps", str(steps), "--per_device_train_batch_size", str(batch),
        "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
        "--validation_size", "0", "--max_test_samples", "200", "--logging_steps", str(max(1, steps // 2)),
        "--warmup_steps", "0", "--report_to", "none",
    ]
    if device == "cpu":
        argv += ["--use_cpu", "true"]
    if dtype == "bf16":
        argv += ["--bf16", "true"]
    metrics = train(*parse_args(argv + list(extra_args)))
    return {"train_img_s": metrics["train"]["train_samples_per_second"], "runtime_s": metrics["train"]["runtime_s"]}


def _print_table(rows, peak, dtype, rounds=1):
    print(f"\n{dtype}" + (f" (best of {rounds} rounds):" if rounds > 1 else ":"))
    print(f"{'model':<20}{'train img/s':>13}{'infer img/s':>13}{'peak MB':>10}{'train GFLOP/s':>15}{'% of peak':>11}")
    for r in rows:
        print(
            f"{r['model']:<20}{r['train_img_s']:>13.1f}{r['infer_img_s']:>13.1f}{r['peak_mem_mb']:>10.0f}"
            f"{r['train_gflops']:>15.1f}{100 * r['train_gflops'] / peak:>10.0f}%"
        )
    print(f"matmul peak ({dtype}, 2048^3): {peak:.1f} GFLOP/s")


def _name(kind, attn):
    return kind if kind == "lesson" else f"{kind}/{attn}"


def _best(old, new):
    """Best of rounds: the least disturbed measurement of each figure (fastest img/s, largest memory seen)."""
    if old is None:
        return dict(new)
    merged = dict(old)
    for key in ("train_img_s", "infer_img_s", "train_gflops", "infer_gflops", "peak_mem_mb"):
        merged[key] = max(old[key], new[key])
    return merged


def _print_ratios(rows, peak):
    """hf_vit against each peer: transformers' ViT with the same attention kernel, and the lesson."""
    for base in (r for r in rows if r["kind"] == "hf_vit"):
        for other in rows:
            if other["kind"] == "hf_vit" or (other["kind"] == "transformers" and other["attn"] != base["attn"]):
                continue
            print(
                f"{base['model']} / {other['model']}: train {base['train_img_s'] / other['train_img_s']:.2f}x, "
                f"inference {base['infer_img_s'] / other['infer_img_s']:.2f}x"
            )
        print(f"{base['model']} achieved {100 * base['train_gflops'] / peak:.0f}% of the matmul peak in training")


def _split(value, allowed, flag, parser):
    items = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in items if v not in allowed]
    if unknown or not items:
        parser.error(f"{flag} {value!r}: use a comma list of {', '.join(allowed)}")
    return items


def main(argv=None) -> int:
    import argparse
    import tempfile

    from .training import PRESETS

    parser = argparse.ArgumentParser(description="hf_vit speed, side by side")
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS), help="model shape (cpu recipe: small)")
    parser.add_argument("--pool", default=None, help="override the preset's pool")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all models; each figure is the best round")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32,bf16", help="comma list of fp32, bf16 (autocast); one table each")
    parser.add_argument("--attn", default="sdpa,eager", help="attention kernels for hf_vit and transformers' ViT")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--models", default="hf_vit,transformers,lesson")
    parser.add_argument("--dataset", default=None, help="for the end-to-end run (default: the CIFAR-10 copy if present)")
    parser.add_argument("--e2e_steps", type=int, default=40, help="Trainer steps of the end-to-end run (0 = skip)")
    args = parser.parse_args(argv)
    dtypes = _split(args.dtype, ("fp32", "bf16"), "--dtype", parser)
    attns = _split(args.attn, ("sdpa", "eager"), "--attn", parser)
    kinds = _split(args.models, ("hf_vit", "transformers", "lesson"), "--models", parser)
    if args.rounds < 1 or args.steps < 1:
        parser.error(f"--rounds {args.rounds} / --steps {args.steps}: both must be at least 1")

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
        jobs = [(k, a) for a in attns for k in kinds if k != "lesson"] + [("lesson", "sdpa")] * ("lesson" in kinds)
        best = {}
        for round_ in range(args.rounds):
            shift = round_ % len(jobs)  # rotate the order: no model is always first (or last) on a warming machine
            for kind, attn in jobs[shift:] + jobs[:shift]:
                r = compare_models(config, [kind], args.batch_size, args.steps, args.device, threads, dtype, attn)[0]
                best[r["model"]] = _best(best.get(r["model"]), r)
        rows = [best[m] for m in dict.fromkeys(_name(k, a) for k, a in jobs)]
        _print_table(rows, peak, dtype, args.rounds)
        _print_ratios(rows, peak)
        for r in rows:
            if r["kind"] == "hf_vit" and (fastest is None or r["train_img_s"] > fastest["train_img_s"]):
                fastest = r

    if args.e2e_steps > 0 and fastest:
        dataset = args.dataset or _default_dataset()
        if dataset is None:
            print("end-to-end: skipped (no dataset: pass --dataset or put the CIFAR-10 copy at ../shared/data/cifar10)")
            return 0
        dtype, attn = fastest["dtype"], fastest["attn"]
        # The bare step of exactly the model the Trainer trains (its own pool, the fastest dtype and kernel).
        bare = compare_models(HfViTConfig(**shape), ["hf_vit"], args.batch_size, args.steps, args.device, threads, dtype, attn)[0]
        with tempfile.TemporaryDirectory() as tmp:
            e2e = end_to_end_img_s(
                args.preset, dataset, args.batch_size, args.e2e_steps, args.device, dtype, tmp,
                ["--attn_implementation", attn],
            )
        print(
            f"\nend-to-end Trainer run ({args.e2e_steps} steps, {dtype}, {attn} attention, {dataset}): "
            f"{e2e['train_img_s']:.1f} img/s vs bare model step {bare['train_img_s']:.1f} img/s -> "
            f"{100 * e2e['train_img_s'] / bare['train_img_s']:.0f}% (input pipeline + Trainer overhead is the rest)"
        )
    return 0


def _default_dataset():
    """The CIFAR-10 copy: $HF_VIT_CIFAR10, else ../shared/data/cifar10 beside the checkout."""
    import os

    candidate = Path(os.environ.get("HF_VIT_CIFAR10") or Path(__file__).resolve().parents[2] / "shared/data/cifar10")
    return candidate if candidate.is_dir() else None
