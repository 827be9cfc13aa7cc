"""Metrics through the `evaluate` library, offline.

`evaluate.load("accuracy")` fetches its script from the Hub; our metric
script ships inside the package (`metric_scripts/vit_classification`) and
loads from that path, so training and evaluation work without network.
"""

import re
from pathlib import Path

import evaluate
import numpy as np

METRIC_PATH = str(Path(__file__).parent / "metric_scripts" / "vit_classification")


def load_metric(**kwargs) -> evaluate.EvaluationModule:
    """The package's classification metric as an `evaluate` module (supports add_batch / compute)."""
    return evaluate.load(METRIC_PATH, **kwargs)


def _as_numpy(values):
    """A torch tensor as numpy: bf16 (logits under autocast) has no numpy type, and a tensor that needs grad or lies
    on an accelerator refuses .numpy()."""
    if hasattr(values, "detach"):
        values = values.detach().cpu()
        return (values.float() if values.is_floating_point() else values).numpy()
    return values


def classification_metrics(scores, references, label_names=None, top_k=(1, 3, 5)) -> dict:
    """Accuracy, top-k, per-class precision/recall/F1 and confusion matrix of (N, C) scores (numpy or torch)."""
    metric = load_metric(keep_in_memory=True)  # not evaluate's Arrow file in HF_HOME: a full disk stopped training
    scores = np.asarray(_as_numpy(scores), dtype=np.float32)
    references = np.asarray(_as_numpy(references))
    return metric.compute(predictions=scores, references=references, top_k=list(top_k), label_names=label_names)


def _logits(predictions):
    """The (N, C) logits of what the Trainer gathered."""
    if isinstance(predictions, list):  # eval_do_concat_batches=False: one entry per batch
        return np.concatenate([_logits(batch) for batch in predictions])
    if isinstance(predictions, tuple):  # hidden states or attentions may ride along
        return predictions[0]
    return predictions


def gathered_logits(predictions) -> np.ndarray:
    """The (N, C) logits, as numpy, of what a Trainer hands compute_metrics: the whole set, a list of batches, or
    one batch's (device) tensor with batch_eval_metrics; logits alone or first in a tuple."""
    return _as_numpy(_logits(predictions))


def gathered_labels(label_ids):
    """The (N,) labels of what the Trainer gathered (whole, per batch, or one batch's tensor)."""
    if isinstance(label_ids, list):  # eval_do_concat_batches=False
        return np.concatenate([_as_numpy(batch) for batch in label_ids])
    return _as_numpy(label_ids)


# batch_eval_metrics=True: the scores and labels of the batches seen so far in the evaluation under way. Only
# (N, C) float32 scores: the summary needs the whole ranking (top-3) and every class's counts (macro F1).
_batches = []


def forget_batches() -> None:
    """Drop the batches kept so far: an evaluation stopped part-way (an error, Ctrl-C) leaves its batches, which
    the next evaluation would count. HfViTTrainer calls it around each evaluation; with a plain Trainer, call it
    before evaluating again after such a stop."""
    _batches.clear()


def compute_metrics(eval_pred, compute_result: bool | None = None) -> dict | None:
    """`Trainer(compute_metrics=...)`: accuracy, top-3 accuracy and macro F1 of the logits (logits alone or first
    in a tuple; gathered whole, or batch by batch with `eval_do_concat_batches=False`).

    With `TrainingArguments(batch_eval_metrics=True)` the Trainer calls it once per batch: each batch is kept
    (compute_result=False, returns None) and the last call (compute_result=True) scores them all together, the
    same numbers as the whole set at once.
    """
    logits, labels = gathered_logits(eval_pred.predictions), gathered_labels(eval_pred.label_ids)
    if compute_result is None:  # the Trainer gathered the whole set
        return _summary(logits, labels)
    _batches.append((np.asarray(logits, dtype=np.float32), np.asarray(labels)))
    if not compute_result:
        return None
    batches = _batches[:]
    _batches.clear()  # before scoring: an error there must not leave this evaluation's batches to the next one
    return _summary(np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))


def _summary(logits, labels) -> dict:
    """The three numbers a Trainer logs, from the package's metric module."""
    result = classification_metrics(logits, labels, top_k=(3,))
    return {k: result[k] for k in ("accuracy", "top3_accuracy", "macro_f1") if k in result}


def part_of_split(metrics: dict) -> str | None:
    """"500 of 10,000 images (a random sample, seed 42)" when the metrics score only part of their split
    (evaluate_model.py --max_eval_samples), else None. One wording for the evaluation table, the report and the
    card: none may pass a sample's accuracy off as the split's."""
    scored, total = metrics.get("num_examples"), metrics.get("split_size")
    if not (isinstance(scored, int) and isinstance(total, int) and scored < total):
        return None
    sample = metrics.get("sample") if isinstance(metrics.get("sample"), dict) else {}
    seed = f", seed {sample['seed']}" if isinstance(sample.get("seed"), int) else ""
    return f"{scored:,} of {total:,} images (a random sample{seed})"


def percent(share: float, decimals: int = 1) -> str:
    """A probability as a percentage to `decimals` places that never rounds a share short of 1 up to 100% or one
    above 0 down to 0%: a mistake made at 0.998 was "100% sure" in the gallery, a certainty the model never had.
    Such shares read ">99%" / ">99.9%" and "<1%" / "<0.1%". One wording for the gallery, the attention maps'
    captions, report.html's cards and visualize's rollout.png."""
    share = float(share)
    text, step = f"{100 * share:.{decimals}f}", 10.0**-decimals
    if share < 1 and float(text) >= 100:
        return f">{100 - step:.{decimals}f}%"
    if share > 0 and float(text) == 0:
        return f"<{step:.{decimals}f}%"
    return f"{text}%"


def shown_top_k(metrics: dict, num_classes: int | None = None) -> list[str]:
    """The top-k accuracy keys of `metrics` worth showing, by k: those with k below the class count, since k guesses
    that cover every class score 100% for any model (scikit-learn's top_k_accuracy_score warns so). `num_classes`:
    default, the rows of the per-class table (every class of the model)."""
    if num_classes is None and isinstance(metrics.get("per_class"), dict) and metrics["per_class"]:
        num_classes = len(metrics["per_class"])
    ks = sorted(int(m.group(1)) for key in metrics if (m := re.fullmatch(r"top(\d+)_accuracy", key)))
    return [f"top{k}_accuracy" for k in ks if num_classes is None or k < num_classes]


def _rows(per_class) -> list:
    return [row for row in per_class.values() if isinstance(row, dict)] if isinstance(per_class, dict) else []


def macro_scope(per_class) -> str:
    """" (over 2 of 3 classes)" when some classes are in neither the labels nor the predictions (their F1 is
    None and the macro means leave them out), else "". One wording for the evaluation table, the report and
    the card."""
    rows = _rows(per_class)
    present = sum(1 for row in rows if row.get("f1") is not None)
    return f" (over {present} of {len(rows)} classes)" if present < len(rows) else ""


# A per-class score that is 0/0 is None in metrics.json; the tables say why instead of a 0 that reads as "always
# wrong" (a class without images in a sample, a class the model never predicts). F1 is None only with both.
NO_SCORE = {"precision": "never predicted", "recall": "no images", "f1": "n/a"}


def per_class_scores(metrics: dict) -> dict:
    """metrics["per_class"] with every 0/0 score None, as the metric has recorded it since it says why there is
    none, for a file written before too (metrics.json of an older model folder or evaluation, where it is 0.0): a
    recall where the class has no images (support 0), a precision where the confusion matrix's column of the
    class is 0 (never predicted). A class with neither is None throughout in both. {} without a per_class."""
    per_class = metrics.get("per_class")
    if not isinstance(per_class, dict):
        return {}
    labels = metrics.get("labels")
    order = labels if isinstance(labels, list) and sorted(map(str, labels)) == sorted(per_class) else list(per_class)
    try:
        matrix = np.asarray(metrics.get("confusion_matrix"), dtype=np.float64)
    except (TypeError, ValueError):  # a file edited by hand: the precisions stay as they are
        matrix = None
    shaped = matrix is not None and matrix.shape == (len(order), len(order))
    predicted = dict(zip(map(str, order), matrix.sum(axis=0))) if shaped else {}
    scores = {}
    for name, row in per_class.items():
        if isinstance(row, dict) and row.get("f1") is not None:  # a class present: 0/0 could be one of its scores
            row = {**row}
            if row.get("support") == 0:
                row["recall"] = None
            if predicted.get(name) == 0:
                row["precision"] = None
        scores[name] = row
    return scores


def class_score(row: dict, key: str, number) -> str:
    """`row[key]` (precision, recall or f1 of a per_class row) as `number` writes it, or NO_SCORE's word for
    None. One wording for the evaluation table, the report and the card."""
    value = row.get(key)
    return NO_SCORE[key] if value is None else number(value)


def no_score_note(per_class) -> str:
    """What NO_SCORE's words in a per-class table mean and how the macro means take them; "" when the table has
    none (every class has images and predictions)."""
    rows = _rows(per_class)
    said = []
    if any(row.get("precision") is None for row in rows):
        said.append(f"{NO_SCORE['precision']}: no precision (0/0: no image was predicted to be the class)")
    if any(row.get("recall") is None for row in rows):
        said.append(f"{NO_SCORE['recall']}: no recall (0/0: none of the images scored is of the class)")
    if not said:
        return ""
    macro = []
    if any(row.get("f1") is not None and None in (row.get("precision"), row.get("recall")) for row in rows):
        macro.append("count such a precision or recall as 0 (scikit-learn's convention)")
    if any(row.get("f1") is None for row in rows):
        macro.append(f"leave out a class with neither (F1 {NO_SCORE['f1']})")
    return "; ".join(said) + "; the macro means " + " and ".join(macro) + "."
