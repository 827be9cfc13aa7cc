"""Evaluate a trained model on a labelled split and write its mistakes, pictures and an HTML report.

    python scripts/evaluate_model.py --model runs/vit-cifar10 --dataset ../shared/data/cifar10

Named evaluate_model.py, not evaluate.py: a script called evaluate.py would shadow
the `evaluate` library for everything it imports. The work is in hf_vit.analysis.
"""

import argparse
import sys

try:  # the libraries take seconds to load, before the script's own answer to Ctrl-C is in place
    from hf_vit.analysis import DEFAULT_DATASET, default_output_dir, evaluate_model, format_metrics_table
    from hf_vit.data import flags_in_messages, whole_not_sampled
    from hf_vit.eval_pictures import MAX_PICTURE_SIDE, gallery_capacity
    from hf_vit.interrupted import results_left, run_script
    from hf_vit.output_folder import refuse_several_processes
except KeyboardInterrupt:  # nothing was done yet: one line and Ctrl-C's status, not a traceback
    print("evaluate_model.py: interrupted while loading its libraries; nothing was done.", file=sys.stderr)
    sys.exit(130)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model folder (config.json, model.safetensors, ...) or Hub id")
    p.add_argument("--dataset", default=DEFAULT_DATASET, help="dataset folder in the Hub layout or Hub id "
                   f"(default {DEFAULT_DATASET}; offline, pass a local copy such as ../shared/data/cifar10)")
    p.add_argument("--revision", default=None,
                   help="a branch, tag or commit of the --model Hub model (default: its main branch; not for a folder)")
    p.add_argument("--dataset_revision", default=None,
                   help="a branch, tag or commit of the --dataset Hub dataset (default: its main branch; not for a "
                   "folder); recorded in metrics.json")
    p.add_argument("--split", default="test", help="the split to score (default: test)")
    p.add_argument("--max_eval_samples", type=int, default=None,
                   help="evaluate only this many images of the split: a random sample drawn with --seed, kept in row "
                   "order (of the test split, the images train.py --max_test_samples N --seed S tests). metrics.json, "
                   "report.html and the model card then say how many of how many images were scored. Default: all")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the --max_eval_samples sample (default 42, as training)")
    p.add_argument("--output_dir", default=None, help="default: <model folder>/evaluation, or "
                   "evaluation-<owner>--<name>[@<revision>] here for a Hub id (never the model folder itself)")
    p.add_argument("--batch_size", type=int, default=256, help="images per inference batch (default: 256)")
    p.add_argument("--device", default="auto", help="auto (cuda, mps, cpu, the first there is), cpu, cuda, cuda:1, ... (default: auto)")
    p.add_argument("--num_workers", type=int, default=0,
                   help="DataLoader processes decoding images (default: 0, decoded in this process)")
    p.add_argument("--num_threads", type=int, default=None, help="torch CPU threads, at least 1 (default: torch's choice)")
    p.add_argument("--image_column", default=None, help="default: img, else image (as training)")
    p.add_argument("--label_column", default=None, help="default: label, else labels (as training)")
    p.add_argument("--max_attention_maps", type=int, default=500,
                   help="attention maps for at most this many mistakes, most confident first (default: 500; -1: all)")
    p.add_argument("--gallery_size", type=int, default=32,
                   help=f"mistakes shown in gallery.png (default: 32; 0 to {gallery_capacity()}: what fits {MAX_PICTURE_SIDE} px)")
    p.add_argument("--trust_remote_code", action="store_true",
                   help="let a --model whose architecture hf_vit and transformers do not know run its own .py files "
                   "(only for a model you trust; hf_vit models never need it)")
    p.add_argument("--no_report", action="store_true", help="skip report.html (a previous run's is removed)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.seed is not None and args.max_eval_samples is None:  # the whole split is scored: nothing to seed
        sys.exit("error: --seed only applies with --max_eval_samples N (it draws which images are scored); pass both, "
                 "or leave --seed out to evaluate every image of the split.")
    try:
        # the evaluation does not share out its images: each process would score the whole split
        refuse_several_processes("evaluate_model.py", "each would evaluate the whole split into the same --output_dir",
                                 "; --device picks the GPU")
        with flags_in_messages():  # the dataset's problems named by this script's flags (--dataset, --label_column)
            metrics = evaluate_model(
                args.model,
                dataset=args.dataset,
                split=args.split,
                output_dir=args.output_dir,
                batch_size=args.batch_size,
                device=args.device,
                num_workers=args.num_workers,
                num_threads=args.num_threads,
                image_column=args.image_column,
                label_column=args.label_column,
                max_attention_maps=args.max_attention_maps,
                gallery_size=args.gallery_size,
                progress=not args.no_progress,
                report=not args.no_report,
                trust_remote_code=args.trust_remote_code,
                revision=args.revision,
                dataset_revision=args.dataset_revision,
                max_eval_samples=args.max_eval_samples,
                seed=42 if args.seed is None else args.seed,
            )
    except (ValueError, OSError, ConnectionError) as err:
        sys.exit(f"error: {err}")
    print(format_metrics_table(metrics))
    if args.max_eval_samples is not None and "sample" not in metrics:  # asked for a sample, scored every image
        print("note: " + whole_not_sampled(f"--max_eval_samples {args.max_eval_samples}", metrics["split_size"],
                                           f"images of the {metrics['split']!r} split", "the whole split was evaluated"))
    ev = metrics["evaluation"]
    print(f"{ev['num_misclassified']} mistakes; {ev['inference_s']:.1f} s inference, {ev['total_s']:.1f} s in all")
    written = ["metrics.json", "misclassified.csv", "misclassified/", "attention/", "gallery.png",
               "confusion_matrix.png", "per_class_accuracy.png"] + ([] if args.no_report else ["report.html"])
    print(f"wrote {ev['output_dir']}/ ({', '.join(written)})")


def left() -> str:
    """What a Ctrl-C left: metrics.json, written last, marks a whole evaluation; it goes first when one is replaced."""
    args = parse_args()
    return results_left(args.output_dir or default_output_dir(args.model, args.revision), "metrics.json", "evaluation")


if __name__ == "__main__":
    sys.stdout.reconfigure(errors="backslashreplace")  # class names an ASCII terminal cannot show: escaped, not fatal
    sys.exit(run_script("evaluate_model.py", main, left))
