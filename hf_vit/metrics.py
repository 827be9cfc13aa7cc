"""Metrics through the `evaluate` library, offline.

`evaluate.load("accuracy")` fetches its script from the Hub; our metric
script ships inside the package (`metric_scripts/vit_classification`) and
loads from that path, so training and evaluation work without network.
"""

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
    metric = load_metric()
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


def compute_metrics(eval_pred) -> dict:
    """`Trainer(compute_metrics=...)`: accuracy, top-3 accuracy and macro F1 of the logits (logits alone or first
    in a tuple; gathered whole, or batch by batch with `eval_do_concat_batches=False`)."""
    logits, labels = _logits(eval_pred.predictions), eval_pred.label_ids
    if isinstance(labels, list):
        labels = np.concatenate(labels)
    result = classification_metrics(logits, labels, top_k=(3,))
    return {k: result[k] for k in ("accuracy", "top3_accuracy", "macro_f1") if k in result}


def macro_scope(per_class) -> str:
    """" (over 2 of 3 classes)" when some classes are in neither the labels nor the predictions (their
    precision is None and the macro means leave them out), else "". One wording for the evaluation table,
    the report and the card."""
    rows = [row for row in per_class.values() if isinstance(row, dict)] if isinstance(per_class, dict) else []
    present = sum(1 for row in rows if row.get("precision") is not None)
    return f" (over {present} of {len(rows)} classes)" if present < len(rows) else ""
