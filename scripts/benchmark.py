"""Side-by-side speed figures, all from ONE run on the same config, threads, batch and inputs.

    python scripts/benchmark.py                       # cpu recipe's model shape, this machine's threads
    python scripts/benchmark.py --dtype bf16 --attn eager --compile   # + hf_vit under torch.compile
    python scripts/benchmark.py --device cuda --dtype bf16 --attn sdpa --batch_size 512 --preset base

Prints, for (a) hf_vit, (b) transformers' ViTForImageClassification of the same shape and
(c) the lesson's reference module: training-step img/s (forward + backward + AdamW), inference
img/s, peak memory and achieved GFLOP/s next to a measured matmul peak, one table per dtype
(fp32, bf16 autocast), with hf_vit and transformers' ViT each timed with SDPA and with the eager
attention. All models of a table are timed in one process, in interleaved windows whose order
rotates each round: figures are median windows, ratios are medians of paired windows (the two
models' windows of one round), so a slow spell of a shared machine hits every model alike. A
second, identical hf_vit in the same windows gives the run's noise floor (`--no_control` skips
it). Peak memory comes from a fresh process per model. Then the end-to-end img/s of a real short `Trainer` run (real input pipeline,
the CIFAR-10 copy when present) with the fastest hf_vit setting, next to its bare model step,
and that run's own split into time inside the training steps and between them. The work is in
`hf_vit.benchmarking`.
"""

import sys

try:  # the libraries take seconds to load, before the script's own answer to Ctrl-C is in place
    from hf_vit.benchmarking import main
    from hf_vit.interrupted import NOTHING_LEFT, run_script
except KeyboardInterrupt:  # nothing was done yet: one line and Ctrl-C's status, not a traceback
    print("benchmark.py: interrupted while loading its libraries; nothing was done.", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(run_script("benchmark.py", lambda: main(sys.argv[1:]), NOTHING_LEFT))
