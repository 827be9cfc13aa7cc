"""An `evaluate` metric module for image classification from class scores.

Loaded from this folder with `evaluate.load(<path>)`, so it needs no Hub
(`evaluate.load("accuracy")` downloads its script and fails offline). It
takes the model's scores (logits or probabilities) for each example, so that
top-k accuracy comes out of the same pass as accuracy, per-class precision,
recall, F1 and the confusion matrix. Only numpy: no scikit-learn needed.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """Accuracy, top-k accuracy, per-class precision/recall/F1 and the confusion
matrix of a single-label classifier, computed from per-class scores."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): per-class scores (logits or probabilities), one row per example.
    references (`list` of `int`): the true class of each example.
    top_k (`list` of `int`, defaults to [1, 3, 5]): the k of the top-k accuracies (k above the class count are skipped).
    label_names (`list` of `str`, or a model's `id2label` dict, optional): class names, for the `per_class`
        table; defaults to "0", "1", ...
Returns:
    accuracy, top{k}_accuracy for each k, macro_precision, macro_recall, macro_f1 (means over the classes
    present in the references or the predictions; a precision or recall of 0/0 counts as 0 there, as in
    scikit-learn), per_class {name: {precision, recall, f1, support}} (precision None for a class never
    predicted, recall None for a class without references: 0/0 is no score, and a 0 would read as "always
    wrong"; all three None for a class absent from both), confusion_matrix (rows: true, columns: predicted),
    labels (the names), num_examples.
Examples:
    >>> metric = evaluate.load("hf_vit/metric_scripts/vit_classification")
    >>> metric.compute(predictions=[[0.1, 0.9], [0.8, 0.2]], references=[1, 1])["accuracy"]
    0.5
"""


def _names_in_id_order(id2label: dict) -> list:
    """The names of an id2label dict by class id, 0, 1, ... (keys 3 or "3")."""
    try:
        by_id = {int(i): name for i, name in id2label.items()}
    except (TypeError, ValueError):
        by_id = {}
    if sorted(by_id) != list(range(len(id2label))):
        raise ValueError(
            f"label_names as a dict must map the class ids 0..{len(id2label) - 1} to names, as a model's "
            f"config.id2label does; got the keys {list(id2label)}."
        )
    return [by_id[i] for i in range(len(by_id))]


class VitClassification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float32")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, top_k=(1, 3, 5), label_names=None):
        scores = np.asarray(predictions, dtype=np.float64)
        refs = np.asarray(references, dtype=np.int64)
        if scores.ndim != 2 or len(scores) != len(refs):
            raise ValueError(
                f"predictions must be one row of class scores per example: got shape {scores.shape} "
                f"for {len(refs)} references."
            )
        if len(refs) == 0:
            raise ValueError("No examples to score: the split is empty.")
        num_classes = scores.shape[1]
        if refs.min() < 0 or refs.max() >= num_classes:
            raise ValueError(
                f"references must be class ids in 0..{num_classes - 1}, got values from {refs.min()} to {refs.max()}."
            )
        bad = ~np.isfinite(scores).all(axis=1)
        if bad.any():
            raise ValueError(
                f"{int(bad.sum())} of {len(scores)} rows of scores hold NaN or infinite values (the model diverged, or "
                "its weights are damaged): there is no ranking to score. Fix the model, then evaluate again."
            )
        if isinstance(label_names, dict):  # a model's config.id2label, {id: name} (config.json's ids are text)
            names = _names_in_id_order(label_names)
        else:
            names = list(label_names) if label_names is not None else [str(i) for i in range(num_classes)]
        if len(names) != num_classes:
            raise ValueError(f"label_names has {len(names)} names for {num_classes} classes of scores.")

        preds = scores.argmax(axis=1)
        confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
        np.add.at(confusion, (refs, preds), 1)
        true_pos = np.diag(confusion).astype(np.float64)
        predicted = confusion.sum(axis=0).astype(np.float64)  # column sums
        support = confusion.sum(axis=1).astype(np.float64)  # row sums
        # 0/0 (a class never predicted: its precision; a class without images: its recall) is 0 in the macro
        # means, scikit-learn's zero_division=0 convention; per class it is None below.
        precision = np.divide(true_pos, predicted, out=np.zeros(num_classes), where=predicted > 0)
        recall = np.divide(true_pos, support, out=np.zeros(num_classes), where=support > 0)
        # F1: 2PR / (P + R), 0 where both are 0; equal to 2 TP / (2 TP + FP + FN), so defined for every class present
        denom = precision + recall
        f1 = np.divide(2 * precision * recall, denom, out=np.zeros(num_classes), where=denom > 0)

        result = {"accuracy": float((preds == refs).mean()), "num_examples": int(len(refs))}
        # The k best classes as argmax picks the best: a stable sort, so a tie goes to the lower class id (a tie
        # with the true class is not a hit for free, and misclassified.csv lists the same top k).
        order = np.argsort(-scores, axis=1, kind="stable")  # (N, C)
        for k in top_k:
            if 1 < k <= num_classes:
                result[f"top{k}_accuracy"] = float((order[:, :k] == refs[:, None]).any(axis=1).mean())
        # Macro averages over the classes that occur, in the references or the predictions (scikit-learn's
        # default): a class absent from both has no precision or recall at all, not a score of 0.
        present = (support > 0) | (predicted > 0)

        def score(values, i, defined=present):
            return float(values[i]) if defined[i] else None

        result.update(
            macro_precision=float(precision[present].mean()),
            macro_recall=float(recall[present].mean()),
            macro_f1=float(f1[present].mean()),
            per_class={
                name: {
                    "precision": score(precision, i, predicted > 0),
                    "recall": score(recall, i, support > 0),
                    "f1": score(f1, i),
                    "support": int(support[i]),
                }
                for i, name in enumerate(names)
            },
            confusion_matrix=confusion.tolist(),
            labels=names,
        )
        return result
