"""Evaluation: metrics, the misclassification export, the pictures and the HTML report.

The model is a real HfViTForImageClassification saved to a folder, with
weights set by hand so that its predictions are a known function of the
image: the encoder's residual branches are zeroed, so the pooled vector is
the mean patch embedding, which is set to the image's mean colour; the head
is a nearest-class-mean classifier on that colour, with two classes' rows
swapped (cat <-> dog) and truck never predicted. The expected predictions
are then recomputed here through the official image processor and a direct
forward pass, independently of the evaluation's own (batched) path.
"""

import collections
import csv
import fcntl
import importlib.util
import json
import re
import os
import select
import shutil
import subprocess
import sys
import time
from html import escape as html_escape
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import load_dataset as datasets_load_dataset
from PIL import Image
from datasets_cache import own_datasets_cache  # noqa: F401 (autouse: local loads list this module's cache only)
from file_limits import file_size_limit
from tiny_data import CIFAR10_NAMES, make_tiny_cifar

import hf_vit
from hf_vit.analysis import BatchPreprocessor, evaluate_model, format_metrics_table, match_labels, mistake_file_name
from hf_vit.dataset_cache import local_cache_dir
from hf_vit.eval_pictures import BAR_BLUE, per_class_accuracy_image
from hf_vit.hub import upload_plan
from hf_vit.metrics import classification_metrics
from hf_vit.report import write_report


def load_dataset(path, **kwargs):
    """As the package reads a local folder: through a cache of its own (see hf_vit.dataset_cache)."""
    return datasets_load_dataset(path, cache_dir=local_cache_dir(path), **kwargs)


REPO = Path(__file__).resolve().parents[1]
CAT, DOG, TRUCK = 3, 5, 9


def processor_pixels(processor, images) -> torch.Tensor:
    """The reference preprocessing: the saved image processor, as `pipeline` would call it."""
    return processor(images=list(images), return_tensors="pt")["pixel_values"]


def make_controlled_model(folder: Path, data_dir: Path, confuse: bool = True):
    """Save a model that classifies by mean colour (see the module docstring); returns (model, processor).

    With `confuse=False` it is a plain nearest-class-mean classifier, right on every tiny test image."""
    config = hf_vit.HfViTConfig(
        image_size=32, patch_size=8, dim=32, depth=1, heads=2, dim_head=16, mlp_dim=32, pool="mean"
    )
    torch.manual_seed(0)
    model = hf_vit.HfViTForImageClassification(config).eval()
    processor = hf_vit.make_image_processor(config)
    with torch.no_grad():
        # Residual branches add nothing: each token stays its patch embedding (+ zero position).
        for layer in model.vit.transformer.layers:
            layer.attn.to_out[0].weight.zero_()
            layer.attn.to_out[0].bias.zero_()
            layer.ff.net[3].weight.zero_()
            layer.ff.net[3].bias.zero_()
        model.vit.embeddings.cls_token.zero_()
        model.vit.embeddings.pos_embedding.zero_()
        # Patch embedding: dims 0-2 = the patch's mean R, G, B (patch layout (p1 p2 c)), dim 3 = 1, dims 4-7
        # their negatives, so the vector's mean is 0 and the head's LayerNorm only rescales it.
        lin = model.vit.embeddings.to_patch_embedding[1]
        lin.weight.zero_()
        lin.bias.zero_()
        for c in range(3):
            lin.weight[c, c::3] = 1 / 64
            lin.weight[4 + c, c::3] = -1 / 64
        lin.bias[3], lin.bias[7] = 1.0, -1.0
        # Head: nearest class mean of the normalised features, fitted on the train split.
        train = load_dataset(str(data_dir), split="train")
        pixels = processor_pixels(processor, train["img"])
        feats = model.mlp_head[0](model.vit(pixel_values=pixels).pooler_output)  # (n, dim)
        labels = torch.tensor(list(train["label"]))
        centres = torch.stack([feats[labels == c].mean(0) for c in range(10)])  # (10, dim)
        weight, bias = centres, -0.5 * (centres**2).sum(-1)  # logit_c = -|x - centre_c|^2 / 2 + const
        if confuse:
            weight[[CAT, DOG]], bias[[CAT, DOG]] = weight[[DOG, CAT]].clone(), bias[[DOG, CAT]].clone()
            bias[TRUCK] = -1e4  # truck is never predicted: a class with precision 0
        model.mlp_head[1].weight.copy_(weight)
        model.mlp_head[1].bias.copy_(bias)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return model, processor


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data_dir = make_tiny_cifar(root / "data", n_train=100, n_test=60, seed=1)
    model_dir = root / "model"
    model, processor = make_controlled_model(model_dir, data_dir)

    test = load_dataset(str(data_dir), split="test")
    with torch.no_grad():
        logits = model(pixel_values=processor_pixels(processor, test["img"])).logits.numpy()  # (60, 10)
    labels = np.array(list(test["label"]))
    preds = logits.argmax(1)
    # The fixture is only useful if it makes the mistakes it was built for.
    assert (preds[np.isin(labels, [CAT])] == DOG).all() and (preds[np.isin(labels, [DOG])] == CAT).all()
    assert (preds != TRUCK).all() and (labels == TRUCK).any()
    assert (preds == labels).sum() >= 30

    metrics = evaluate_model(
        str(model_dir), dataset=str(data_dir), split="test", batch_size=16, device="cpu", progress=False,
        max_attention_maps=-1, gallery_size=12,
    )
    return {
        "out": model_dir / "evaluation", "metrics": metrics, "logits": logits, "labels": labels, "preds": preds,
        "test": test, "model_dir": model_dir, "data_dir": data_dir,
    }


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_holds_exactly_the_wrong_predictions(evaluated):
    out, labels, preds, logits = evaluated["out"], evaluated["labels"], evaluated["preds"], evaluated["logits"]
    rows = read_csv(out / "misclassified.csv")
    wrong = np.flatnonzero(preds != labels)
    assert len(rows) == len(wrong)
    assert sorted(int(r["index"]) for r in rows) == wrong.tolist()

    probs = torch.from_numpy(logits).softmax(-1).numpy()
    for r in rows:
        i = int(r["index"])
        assert r["true_label"] == CIFAR10_NAMES[labels[i]]
        assert r["predicted_label"] == CIFAR10_NAMES[preds[i]] != r["true_label"]
        assert float(r["confidence"]) == pytest.approx(probs[i].max(), abs=1e-4)
        assert float(r["true_class_probability"]) == pytest.approx(probs[i, labels[i]], abs=1e-4)
        assert r["top1_label"] == r["predicted_label"]
        # The three most probable classes, in order (compared by probability: near-ties may swap names).
        listed = [float(r[f"top{k}_probability"]) for k in (1, 2, 3)]
        assert listed == pytest.approx(np.sort(probs[i])[::-1][:3], abs=1e-4)
        for k in (1, 2, 3):
            assert probs[i, CIFAR10_NAMES.index(r[f"top{k}_label"])] == pytest.approx(listed[k - 1], abs=1e-4)
        assert r["image"] == "misclassified/" + mistake_file_name(i, r["true_label"], r["predicted_label"])
        assert r["image"].endswith(f"{i:06d}_{r['true_label']}_as_{r['predicted_label']}.png")


def test_csv_ranks_classes_by_logits_as_the_metrics_do(evaluated, tmp_path):
    """Logits 1000x apart: every probability after the first is exactly 0 in float32, so ranking by probability
    would list classes in id order; the CSV's top 3 are the logits' top 3, which top-3 accuracy counts."""
    model, _ = make_controlled_model(tmp_path / "hot", evaluated["data_dir"])
    with torch.no_grad():
        model.mlp_head[1].weight.mul_(1000)
        model.mlp_head[1].bias.mul_(1000)
    model.save_pretrained(tmp_path / "hot")
    evaluate_model(str(tmp_path / "hot"), dataset=str(evaluated["data_dir"]), output_dir=tmp_path / "out",
                   device="cpu", progress=False, max_attention_maps=0, gallery_size=0)  # fmt: skip
    logits = evaluated["logits"] * 1000
    rows = read_csv(tmp_path / "out" / "misclassified.csv")
    assert rows and all(float(r["top2_probability"]) == 0.0 for r in rows)  # the ties the ranking must not use
    for r in rows:
        expected = [CIFAR10_NAMES[c] for c in np.argsort(-logits[int(r["index"])], kind="stable")[:3]]
        assert [r["top1_label"], r["top2_label"], r["top3_label"]] == expected


def test_a_gallery_is_never_narrower_than_its_title():
    from hf_vit.eval_pictures import _measure, font, gallery_image

    title = "The 0 most confident mistakes"
    for n in (0, 1, 2):
        picture = gallery_image([Image.new("RGB", (32, 32))] * n, [[("cat", (0, 0, 0))]] * n, title=title)
        heading = title if n else f"{title}: none"
        assert picture.width >= _measure([heading], font(16)) + 16, (n, picture.width)


def test_every_png_named_in_the_csv_exists_and_decodes(evaluated):
    out, test = evaluated["out"], evaluated["test"]
    # The fixture's model pools by mean: the maps (drawn all the same) say that its head does not read [CLS] alone.
    assert evaluated["metrics"]["evaluation"]["attention_note"].startswith("This model pools by mean")
    assert "This model pools by mean" in (out / "report.html").read_text()
    rows = read_csv(out / "misclassified.csv")
    for r in rows:
        for column in ("image", "attention"):
            assert r[column], f"row {r['index']} has no {column}"
            with Image.open(out / r[column]) as im:
                im.load()
        # The exported image is the dataset's image itself, not the normalised tensor.
        with Image.open(out / r["image"]) as im:
            original = test[int(r["index"])]["img"].convert("RGB")
            assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(original))
    # Nothing else in the folders: a PNG per row.
    assert {p.name for p in (out / "misclassified").iterdir()} == {Path(r["image"]).name for r in rows}
    assert {p.name for p in (out / "attention").iterdir()} == {Path(r["attention"]).name for r in rows}
    for name in ("gallery.png", "confusion_matrix.png", "per_class_accuracy.png"):
        with Image.open(out / name) as im:
            im.load()
            assert im.width > 100 and im.height > 100


def test_metrics_equal_a_hand_computation(evaluated):
    out, labels, preds, logits = evaluated["out"], evaluated["labels"], evaluated["preds"], evaluated["logits"]
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["dataset"] == str(evaluated["data_dir"]) and saved["split"] == "test"
    assert saved["model"] == str(evaluated["model_dir"]) and saved["image_format"] == "PNG"

    assert saved["num_examples"] == len(labels)
    assert saved["accuracy"] == pytest.approx((preds == labels).mean())
    top3 = np.argsort(-logits, axis=1, kind="stable")[:, :3]  # ties to the lower class id, as argmax
    assert saved["top3_accuracy"] == pytest.approx((top3 == labels[:, None]).any(1).mean())
    confusion = np.zeros((10, 10), dtype=int)
    for t, p in zip(labels, preds):
        confusion[t, p] += 1
    assert saved["confusion_matrix"] == confusion.tolist()
    f1s = []
    for c, name in enumerate(CIFAR10_NAMES):
        tp = ((preds == c) & (labels == c)).sum()
        precision = tp / (preds == c).sum() if (preds == c).any() else None  # never predicted: 0/0, no precision
        recall = tp / (labels == c).sum()
        f1 = 2 * precision * recall / (precision + recall) if precision and recall else 0.0
        f1s.append(f1)
        row = saved["per_class"][name]
        assert row["precision"] == pytest.approx(precision) and row["recall"] == pytest.approx(recall)
        assert row["f1"] == pytest.approx(f1) and row["support"] == (labels == c).sum()
    assert saved["per_class"]["truck"]["precision"] is None and saved["per_class"]["cat"]["recall"] == 0.0
    assert saved["macro_f1"] == pytest.approx(np.mean(f1s))
    assert saved["evaluation"]["num_misclassified"] == (preds != labels).sum()


def test_top_k_breaks_ties_as_argmax_does_and_refuses_nan_scores():
    from hf_vit.metrics import classification_metrics

    # All scores equal (a collapsed model): top-1 picks class 0, top-3 classes 0-2; the true class 4 is in neither.
    flat = classification_metrics(np.zeros((4, 5)), [4, 4, 4, 4], top_k=(3,))
    assert (flat["accuracy"], flat["top3_accuracy"]) == (0.0, 0.0)
    # A four-way tie for first: the top 3 are classes 0, 1, 2, so class 3 misses and class 2 hits.
    tied = [[2, 2, 2, 2, 1, 0, 0, 0, 0, 0]] * 2
    assert classification_metrics(tied, [3, 2], top_k=(3,))["top3_accuracy"] == 0.5
    with pytest.raises(ValueError, match="2 of 4 rows of scores hold NaN or infinite values"):
        classification_metrics(np.array([[0, 1], [np.nan, 0], [0, np.inf], [1, 0]], dtype=np.float32), [0, 1, 0, 1])


def test_compute_metrics_in_a_plain_trainer_that_keeps_batches_apart(tmp_path):
    """hf_vit.metrics.compute_metrics in a vanilla transformers Trainer with eval_do_concat_batches=False, which
    hands it one logits array (or (logits, hidden states) tuple) per batch: the same numbers as the whole array
    (before: ValueError 'setting an array element with a sequence ... inhomogeneous shape')."""
    from transformers import DefaultDataCollator, Trainer, TrainingArguments

    from hf_vit.metrics import compute_metrics

    torch.manual_seed(0)
    config = hf_vit.HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64)
    images, labels = torch.randn(26, 3, 32, 32), torch.arange(26) % 10  # batches of 8, 8, 8 and 2
    rows = [{"pixel_values": images[i], "labels": labels[i]} for i in range(26)]

    model = hf_vit.HfViTForImageClassification(config)

    def scores(**options):
        args = TrainingArguments(str(tmp_path), per_device_eval_batch_size=8, use_cpu=True, report_to="none", **options)
        result = Trainer(model=model, args=args, eval_dataset=rows, data_collator=DefaultDataCollator(),
                         compute_metrics=compute_metrics).evaluate()  # fmt: skip
        return {k: result[k] for k in ("eval_accuracy", "eval_top3_accuracy", "eval_macro_f1")}

    whole = scores()
    for options in ({}, {"include_for_metrics": ["inputs"]}):
        for hidden in (False, True):
            model.config.output_hidden_states = hidden  # predictions become (logits, hidden states) per batch
            assert scores(eval_do_concat_batches=False, **options) == whole


def test_compute_metrics_batch_by_batch_with_batch_eval_metrics(tmp_path):
    """TrainingArguments(batch_eval_metrics=True): a vanilla Trainer (and HfViTTrainer) takes
    hf_vit.metrics.compute_metrics, which keeps each batch and scores them all at the last one: the same accuracy,
    top-3 and macro F1 as the whole set at once, evaluation after evaluation (before: the Trainer refused it,
    'your `compute_metrics` function must take a `compute_result` boolean argument')."""
    from transformers import Trainer, TrainingArguments

    from hf_vit.data import prepare_data
    from hf_vit.metrics import compute_metrics
    from hf_vit.training import HfViTTrainer

    tiny = make_tiny_cifar(tmp_path / "tiny", n_train=20, n_test=50)
    data = prepare_data(str(tiny), 32, 3, hf_vit.CIFAR10_MEAN, hf_vit.CIFAR10_STD, validation_size=0)
    torch.manual_seed(0)
    model = hf_vit.HfViTForImageClassification(hf_vit.HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64))

    def scores(trainer_class, **options):
        args = TrainingArguments(str(tmp_path / "out"), per_device_eval_batch_size=8, use_cpu=True, report_to="none",
                                 remove_unused_columns=False, **options)  # fmt: skip
        trainer = trainer_class(model=model, args=args, eval_dataset=data.test, data_collator=data.collator,
                                compute_metrics=compute_metrics)  # fmt: skip
        return [{k: r[k] for k in ("eval_accuracy", "eval_top3_accuracy", "eval_macro_f1")}
                for r in (trainer.evaluate(), trainer.evaluate())]  # fmt: skip

    whole = scores(Trainer)[0]
    assert 0 < whole["eval_macro_f1"] < 1  # batches of 8, 8, ..., 2: a mean of per-batch scores would differ
    for trainer_class in (Trainer, HfViTTrainer):
        assert scores(trainer_class, batch_eval_metrics=True) == [whole, whole], trainer_class.__name__


def test_an_evaluation_stopped_part_way_leaves_nothing_to_the_next_with_batch_eval_metrics(tmp_path):
    """batch_eval_metrics keeps the batches seen so far: an evaluation stopped part-way (here a forward that fails
    on the third batch) left its batches, and the next evaluation counted them too. HfViTTrainer forgets them
    around each evaluation; a plain Trainer's user calls hf_vit.metrics.forget_batches()."""
    from transformers import Trainer, TrainingArguments

    from hf_vit.data import prepare_data
    from hf_vit.metrics import compute_metrics, forget_batches
    from hf_vit.training import HfViTTrainer

    class FailsOnceForImageClassification(hf_vit.HfViTForImageClassification):  # the third forward fails, once
        calls = 0

        def forward(self, pixel_values=None, labels=None, **kwargs):  # `labels` named: the Trainer looks for it
            FailsOnceForImageClassification.calls += 1
            if FailsOnceForImageClassification.calls == 3:
                raise RuntimeError("stopped part-way")
            return super().forward(pixel_values, labels=labels, **kwargs)

    tiny = make_tiny_cifar(tmp_path / "tiny", n_train=20, n_test=40)
    data = prepare_data(str(tiny), 32, 3, hf_vit.CIFAR10_MEAN, hf_vit.CIFAR10_STD, validation_size=0)
    torch.manual_seed(0)
    model = FailsOnceForImageClassification(hf_vit.HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64))

    def trainer(trainer_class, **options):
        args = TrainingArguments(str(tmp_path / "out"), per_device_eval_batch_size=8, use_cpu=True, report_to="none",
                                 remove_unused_columns=False, **options)  # fmt: skip
        return trainer_class(model=model, args=args, eval_dataset=data.test, data_collator=data.collator,
                             compute_metrics=compute_metrics)  # fmt: skip

    FailsOnceForImageClassification.calls = 3  # no failure: the whole set's figures
    whole = trainer(Trainer).evaluate()["eval_macro_f1"]
    for trainer_class in (HfViTTrainer, Trainer):
        FailsOnceForImageClassification.calls = 0
        evaluating = trainer(trainer_class, batch_eval_metrics=True)
        with pytest.raises(RuntimeError, match="stopped part-way"):
            evaluating.evaluate()
        if trainer_class is Trainer:
            forget_batches()
        assert evaluating.evaluate()["eval_macro_f1"] == whole, trainer_class.__name__


def test_classification_metrics_take_the_models_logits_as_torch_tensors():
    """classification_metrics(outputs.logits, labels) straight from a model: bf16 logits (autocast) and logits that
    need grad score as float32 numpy does (before: TypeError: Got unsupported ScalarType BFloat16; RuntimeError:
    Can't call numpy() on Tensor that requires grad)."""
    logits, labels = torch.randn(12, 5), torch.arange(12) % 5
    expected = classification_metrics(logits.bfloat16().float().numpy(), labels.numpy())
    for scores in (logits.bfloat16(), logits.bfloat16().float().requires_grad_()):
        assert classification_metrics(scores, labels) == expected


def test_classification_metrics_write_nothing_to_disk():
    """evaluate keeps a metric's inputs in an Arrow file under HF_HOME by default: with that disk full, training
    stopped at its first evaluation with 'OSError: [Errno 28] No space left on device' from evaluate's writer
    (checked: a run whose data fit a full 300 kB tmpfs). The metric now keeps them in memory. Here a file-size
    limit (RLIMIT_FSIZE, what `ulimit -f` sets) refuses every write as a full disk does."""
    logits, labels = torch.randn(64, 10), torch.arange(64) % 10
    expected = classification_metrics(logits, labels)  # the metric's module is copied under HF_HOME once, here
    with file_size_limit(0):
        scored = classification_metrics(logits, labels)
    assert scored == expected


def test_classification_metrics_name_the_classes_from_a_models_id2label():
    """label_names=model.config.id2label, the model's own names, is a dict {id: name}: taken in id order (config.json's
    string keys too). Before, its keys became the names: per_class {0: ..., 1: ...}, and the table failed on
    `len(0)`."""
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    expected = classification_metrics(logits, labels, label_names=["cat", "dog", "bird"])
    for id2label in ({0: "cat", 1: "dog", 2: "bird"}, {"2": "bird", "0": "cat", "1": "dog"},
                     hf_vit.HfViTConfig(id2label=["cat", "dog", "bird"]).id2label):
        metrics = classification_metrics(logits, labels, label_names=id2label)
        assert metrics == expected and list(metrics["per_class"]) == ["cat", "dog", "bird"]
        assert "bird" in format_metrics_table(metrics)
    with pytest.raises(ValueError, match="class ids 0..2"):
        classification_metrics(logits, labels, label_names={0: "cat", 1: "dog", 3: "bird"})


def test_macro_averages_leave_out_classes_absent_from_labels_and_predictions(tmp_path):
    """scikit-learn's rule: a class in neither the references nor the predictions is not a 0 in the means."""
    metrics = classification_metrics([[5, 0, 0], [0, 5, 0], [5, 0, 0], [0, 5, 0]], [0, 1, 0, 1], label_names=["a", "b", "c"])
    assert metrics["accuracy"] == 1.0
    assert metrics["macro_precision"] == metrics["macro_recall"] == metrics["macro_f1"] == 1.0
    assert metrics["per_class"]["c"] == {"precision": None, "recall": None, "f1": None, "support": 0}
    # Present in the predictions only (c) or in the references only (b): both still count, as 0.
    partial = classification_metrics([[5, 0, 0], [0, 0, 5]], [0, 1], label_names=["a", "b", "c"])
    assert partial["macro_f1"] == pytest.approx(1 / 3) and partial["per_class"]["c"]["precision"] == 0.0

    # Every place that shows the table says so instead of printing 0 or failing on None.
    table = format_metrics_table(metrics)
    assert "macro precision / recall / F1 (over 2 of 3 classes): 1.0000" in table
    assert [line.split() for line in table.splitlines() if line.startswith("c ")] == [
        ["c", "never", "predicted", "no", "images", "n/a", "0"]
    ]
    # Every header ends where its column's values end (right-aligned numbers under right-aligned names).
    header, row = [line for line in table.splitlines() if line.startswith(("class", "a "))]
    ends = lambda line: [m.end() for m in re.finditer(r"\S+", line)]  # noqa: E731
    assert ends(header)[1:] == ends(row)[1:], (header, row)
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "misclassified.csv").write_text("index\n")
    page = write_report(tmp_path).read_text()
    assert ('<tr><th scope="row">c</th><td>never predicted</td><td>no images</td><td>n/a</td><td>0</td></tr>' in page
            and "macro F1 (over 2 of 3 classes)" in page)
    bars = np.asarray(per_class_accuracy_image([None, 1.0], ["c", "a"]))
    row_has_bar = [(bars[top : top + 18] == BAR_BLUE).all(-1).any() for top in (40, 64)]  # rows at top + k * 24
    assert row_has_bar == [False, True]


def test_a_class_without_images_or_never_predicted_shows_why_it_has_no_score_not_a_0(evaluated, tmp_path, capsys,
                                                                                     monkeypatch):
    """A sample of 8 images (--max_eval_samples 8, seed 42) holds no cat, which the model still predicts (for a dog),
    and the model never predicts truck: the recall of a class without images and the precision of a class never
    predicted are 0/0. metrics.json recorded 0.0 for them, and the printed table, report.html and the model card
    0.0000 / 0.00%, which reads as "always wrong". Now metrics.json holds null there, each table says "no images" /
    "never predicted" with a note that the macro means count such a score as 0 (scikit-learn's convention: the
    means are unchanged) and leave out a class with neither (F1 n/a); the per-class chart draws "no images"."""
    from huggingface_hub import ModelCard

    import hf_vit.analysis
    from hf_vit.card import write_model_card

    bars = []
    monkeypatch.setattr(hf_vit.analysis, "per_class_accuracy_image",
                        lambda accuracies, names, **kwargs: bars.append(dict(zip(names, accuracies)))
                        or per_class_accuracy_image(accuracies, names, **kwargs))  # fmt: skip
    model = tmp_path / "model"
    shutil.copytree(evaluated["model_dir"], model, ignore=shutil.ignore_patterns("evaluation"))
    code, stdout = run_evaluate_script(["--model", str(model), "--dataset", str(evaluated["data_dir"]), "--device",
                                        "cpu", "--max_eval_samples", "8", "--max_attention_maps", "0"], capsys)  # fmt: skip
    assert code is None
    out = model / "evaluation"
    metrics = json.loads((out / "metrics.json").read_text())
    cm, names = np.array(metrics["confusion_matrix"]), metrics["labels"]
    images, predicted = dict(zip(names, cm.sum(1))), dict(zip(names, cm.sum(0)))
    # what this sample was drawn for: cat predicted without images; truck with images, never predicted
    assert (images["cat"], images["truck"]) == (0, 1) and predicted["cat"] > 0 and predicted["truck"] == 0
    present = [n for n in names if images[n] or predicted[n]]
    assert len(present) < len(names)  # and classes with neither
    for name, row in metrics["per_class"].items():
        assert (row["recall"] is None) == (images[name] == 0), name
        assert (row["precision"] is None) == (predicted[name] == 0), name
        assert (row["f1"] is None) == (name not in present), name
        assert (bars[0][name] is None) == (images[name] == 0), name  # the chart's "no images", not a 0% bar
    # the macro means as before: a 0/0 counts as 0, a class with neither is left out
    for key in ("precision", "recall"):
        mean = np.mean([metrics["per_class"][n][key] or 0.0 for n in present])
        assert metrics[f"macro_{key}"] == pytest.approx(mean)
    note = ("never predicted: no precision (0/0: no image was predicted to be the class); no images: no recall (0/0: "
            "none of the images scored is of the class); the macro means count such a precision or recall as 0 "
            "(scikit-learn's convention) and leave out a class with neither (F1 n/a).")

    # The printed table, report.html's and the card's: the word in place of the number, and the note.
    rows = {line.split()[0]: line.split(None, 1)[1] for line in stdout.splitlines()
            if line.split() and line.split()[0] in names}  # fmt: skip
    assert re.fullmatch(r"0\.0000 +no images +0\.0000 +0", rows["cat"]), rows["cat"]
    assert re.fullmatch(r"never predicted +0\.0000 +0\.0000 +1", rows["truck"]), rows["truck"]
    assert re.fullmatch(r"never predicted +no images +n/a +0", rows[next(n for n in names if n not in present)])
    assert note in stdout
    table = find_all(parse_page((out / "report.html").read_text()), "table", id="per-class")[0]
    cells = {row[0][2]: [text for _, _, text in row[1:]] for row in table_rows(table)[1:]}
    assert cells["cat"] == ["0.0000", "no images", "0.0000", "0"] and cells["truck"] == ["never predicted", "0.0000",
                                                                                          "0.0000", "1"]
    assert find_all(table, "caption")[0]["text"] == f"Per class ({note})"
    card = ModelCard.load(write_model_card(model)).text
    assert "| cat | no images | 0.00% | 0.00% | 0 |" in card  # recall first in the card
    assert "| truck | 0.00% | never predicted | 0.00% | 1 |" in card
    assert "\n\nN" + note[1:] in card  # after the table, not a row of it


def test_no_mistakes_still_writes_everything(evaluated, tmp_path):
    make_controlled_model(tmp_path / "model", evaluated["data_dir"], confuse=False)
    out = tmp_path / "out"
    metrics = evaluate_model(
        str(tmp_path / "model"), dataset=str(evaluated["data_dir"]), output_dir=out, device="cpu", progress=False
    )
    assert metrics["accuracy"] == 1.0
    assert read_csv(out / "misclassified.csv") == []
    assert not any((out / "misclassified").iterdir()) and not any((out / "attention").iterdir())
    for name in ("gallery.png", "confusion_matrix.png", "per_class_accuracy.png"):
        with Image.open(out / name) as im:
            im.load()
    page = (out / "report.html").read_text()
    assert 'id="cards"' in page
    # Not "No mistakes match these filters.", and shown without the script (it was hidden until a filter ran).
    message = find_all(parse_page(page), id="no-match")[0]
    assert "hidden" not in message["attrs"] and message["text"].strip() == "The model made no mistakes on this split."


def test_an_evaluation_of_part_of_the_split_says_so_in_metrics_report_table_and_card(evaluated, tmp_path, capsys):
    """evaluate_model.py had no way to score part of a split. --max_eval_samples N scores a seeded random sample (the
    test images train.py's --max_test_samples N --seed S scores); metrics.json, the printed table, report.html and
    the model card say how many of how many images, and the card publishes no model-index result for a sample."""
    from huggingface_hub import ModelCard

    from hf_vit.card import write_model_card
    from hf_vit.data import prepare_data
    from hf_vit.configuration_hf_vit import CIFAR10_MEAN, CIFAR10_STD

    model = tmp_path / "model"
    shutil.copytree(evaluated["model_dir"], model, ignore=shutil.ignore_patterns("evaluation"))
    code, stdout = run_evaluate_script(["--model", str(model), "--dataset", str(evaluated["data_dir"]), "--device",
                                        "cpu", "--max_eval_samples", "20", "--seed", "3"], capsys)  # fmt: skip
    assert code is None
    assert "examples: 20 of 60 images (a random sample, seed 3): not the whole split" in stdout
    out = model / "evaluation"
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["num_examples"], metrics["split_size"]) == (20, 60)
    assert metrics["sample"] == {"max_eval_samples": 20, "seed": 3}
    # the same images as training's --max_test_samples 20 --seed 3, scored as the fixture's own forward pass does
    test = prepare_data(str(evaluated["data_dir"]), 32, 3, CIFAR10_MEAN, CIFAR10_STD, validation_size=10, seed=3,
                        max_test_samples=20).test
    scored = np.asarray(test.indices)
    assert len(scored) == 20
    preds, labels = evaluated["preds"][scored], evaluated["labels"][scored]
    assert metrics["accuracy"] == pytest.approx((preds == labels).mean())
    assert sorted(int(r["index"]) for r in read_csv(out / "misclassified.csv")) == scored[preds != labels].tolist()
    page = (out / "report.html").read_text()
    assert ("<strong>Part of the split:</strong> these results score 20 of 60 images (a random sample, seed 3) of "
            "the test split") in page
    assert '<td class="metric">20 of 60 images (a random sample, seed 3)</td>' in page
    # a Hub dataset's name: a whole split would be published in the model-index; a sample is not
    (out / "metrics.json").write_text(json.dumps({**metrics, "dataset": "someone/tiny"}))
    card = ModelCard.load(write_model_card(model))
    assert card.data.eval_results is None
    assert "On 20 of 60 images (a random sample, seed 3) of the test split of" in card.text
    assert "| Images (test split) | 20 of 60 images (a random sample, seed 3) |" in card.text
    assert "; accuracy on 20 of 60 images (a random sample, seed 3) of the test split" in card.text
    assert "test accuracy" not in card.text.lower()

    # as many as the split holds, or more: the whole split, said as such
    metrics = evaluate_model(str(model), dataset=str(evaluated["data_dir"]), device="cpu", progress=False,
                             max_eval_samples=60)  # fmt: skip
    assert (metrics["num_examples"], metrics["split_size"], "sample" in metrics) == (60, 60, False)
    assert "Part of the split" not in (out / "report.html").read_text()


def test_a_sample_as_large_as_the_split_is_said_to_be_the_whole_split(evaluated, tmp_path, capsys):
    """--max_eval_samples 1000 on a 60-image split scored the whole split without a word: the user, who asked for
    a sample, learns that every image was evaluated (metrics.json, as before, records no sample)."""
    for cap, whole in (("1000", True), ("59", False)):  # below the split's size: a sample, and no such note
        code, stdout = run_evaluate_script(["--model", str(evaluated["model_dir"]), "--dataset",
                                            str(evaluated["data_dir"]), "--device", "cpu", "--max_eval_samples", cap,
                                            "--max_attention_maps", "0", "--output_dir", str(tmp_path / cap)], capsys)  # fmt: skip
        assert code is None
        note = f"note: --max_eval_samples {cap} is not below the 60 images of the 'test' split: the whole split was "
        assert (note + "evaluated, not a sample." in stdout, "examples: 60\n" in stdout) == (whole, whole), stdout
        metrics = json.loads((tmp_path / cap / "metrics.json").read_text())
        assert (metrics["num_examples"], "sample" in metrics) == ((60, False) if whole else (59, True))


def test_a_card_keeps_trainings_whole_test_split_over_an_evaluation_of_a_sample(evaluated, tmp_path):
    """An evaluation of 500 images (--max_eval_samples) made after training replaced training's results on the
    whole test split in the card (and dropped its model-index): a quick look at some mistakes cost the model its
    published accuracy. Training's whole split is shown now, and the card says the pictures are of a sample."""
    from huggingface_hub import ModelCard

    from hf_vit.card import write_model_card

    model = tmp_path / "model"
    shutil.copytree(evaluated["model_dir"], model, ignore=shutil.ignore_patterns("evaluation"))
    labels, preds = evaluated["labels"], evaluated["preds"]
    whole = classification_metrics(np.eye(10)[preds], labels, label_names=CIFAR10_NAMES)
    (model / "metrics.json").write_text(json.dumps({**whole, "dataset": "someone/tiny", "split": "test"}))
    sample = classification_metrics(np.eye(10)[preds[:20]], labels[:20], label_names=CIFAR10_NAMES)
    (model / "evaluation").mkdir()
    (model / "evaluation" / "metrics.json").write_text(json.dumps({
        **sample, "dataset": "someone/tiny", "split": "test", "split_size": 60, "sample": {"max_eval_samples": 20,
                                                                                          "seed": 42}}))  # fmt: skip
    for name in ("gallery.png", "confusion_matrix.png"):
        shutil.copy(evaluated["out"] / name, model / "evaluation" / name)
    card = ModelCard.load(write_model_card(model))
    (result,) = card.data.eval_results
    assert result.metric_value == whole["accuracy"] != sample["accuracy"]
    assert "On the test split of" in card.text and "(from `metrics.json`)" in card.text
    assert ("The evaluation in `evaluation/` scored only 20 of 60 images (a random sample, seed 42) of the test "
            "split: its pictures below are of that sample.") in card.text
    assert "**Confusion matrix (test split, a sample of 20 images)**" in card.text
    assert "| Images (test split) | 60 |" in card.text


def test_the_card_calls_no_other_revisions_images_the_same_as_trainings(evaluated, tmp_path):
    """The card's sentence "Training scored the same images under bf16 autocast ... Any difference ... comes from
    the precision" compared the dataset, configuration, split and sample, not the revision: training on revision v1
    and an evaluation of revision v2 (a relabelled split of as many images) were called the same images, and their
    gap put down to the precision. Another recorded revision is now other images; the same one still is."""
    from hf_vit.card import write_model_card

    model = tmp_path / "model"
    shutil.copytree(evaluated["model_dir"], model, ignore=shutil.ignore_patterns("evaluation"))
    labels, preds = evaluated["labels"], evaluated["preds"]
    whole = classification_metrics(np.eye(10)[preds], labels, label_names=CIFAR10_NAMES)
    (model / "evaluation").mkdir()
    same = "Training scored the same images under bf16 autocast"

    def card(train_revision, eval_revision):
        (model / "metrics.json").write_text(json.dumps({
            **whole, "dataset": "someone/tiny", "split": "test", "dataset_revision": train_revision,
            "numeric_precision": "bf16 autocast"}))  # fmt: skip
        (model / "evaluation" / "metrics.json").write_text(json.dumps({
            **whole, "dataset": "someone/tiny", "split": "test", "split_size": 60, "dataset_revision": eval_revision,
            "numeric_precision": "float32"}))  # fmt: skip
        return " ".join(Path(write_model_card(model)).read_text().split())

    assert same in card("v1", "v1") and same in card(None, None)
    assert same not in card("v1", "v2")
    assert same not in card(None, "v2")  # training read the main branch as it was then


def test_the_card_words_a_cast_model_under_autocast_once(evaluated, tmp_path):
    """train.py records "float16 under bf16 autocast" for a model cast by --fp16_full_eval whose forward accelerate
    still wraps in bf16 autocast (training.prediction_precision); the card made it "Training scored these images
    under float16 under bf16 autocast". Now "in float16 under bf16 autocast"; autocast alone stays "under"."""
    from hf_vit.card import precision_words, write_model_card

    model = tmp_path / "model"
    shutil.copytree(evaluated["model_dir"], model, ignore=shutil.ignore_patterns("evaluation"))
    whole = classification_metrics(np.eye(10)[evaluated["preds"]], evaluated["labels"], label_names=CIFAR10_NAMES)
    (model / "metrics.json").write_text(json.dumps({**whole, "dataset": "someone/tiny", "split": "test",
                                                    "numeric_precision": "float16 under bf16 autocast"}))  # fmt: skip
    card = " ".join(Path(write_model_card(model)).read_text().split())
    assert "Training scored these images in float16 under bf16 autocast; `scripts/evaluate_model.py`" in card
    assert "under float16 under" not in card
    assert (precision_words("bf16 autocast"), precision_words("float32")) == ("under bf16 autocast", "in float32")


def test_the_pictures_of_a_sample_say_so_in_their_titles(evaluated, tmp_path):
    """confusion_matrix.png, per_class_accuracy.png and gallery.png of an evaluation of 20 of 60 images were titled
    as a whole split's ("Confusion matrix", "Accuracy per class"): the card and the Hub page show them on their own.
    Their titles now give the count, and a matrix or chart of few classes is widened to hold its title."""
    from hf_vit.eval_pictures import confusion_matrix_image, font, gallery_image, text_size
    from PIL import ImageDraw

    out = tmp_path / "out"
    metrics = evaluate_model(str(evaluated["model_dir"]), dataset=str(evaluated["data_dir"]), output_dir=out,
                             device="cpu", progress=False, max_eval_samples=20, max_attention_maps=0)  # fmt: skip
    names = list(metrics["per_class"])
    drawn = confusion_matrix_image(metrics["confusion_matrix"], names, title="Confusion matrix (20 of 60 images)")
    assert (np.asarray(Image.open(out / "confusion_matrix.png")) == np.asarray(drawn)).all()
    recalls = [row["recall"] if row["support"] else None for row in metrics["per_class"].values()]
    drawn = per_class_accuracy_image(recalls, names, overall=metrics["accuracy"],
                                     title="Accuracy per class (20 of 60 images)")  # fmt: skip
    assert (np.asarray(Image.open(out / "per_class_accuracy.png")) == np.asarray(drawn)).all()
    with Image.open(out / "gallery.png") as gallery:
        wrong = metrics["evaluation"]["num_misclassified"]
        title = f"The {min(wrong, 32)} most confident mistakes (of {wrong} in 20 of 60 images)"
        assert gallery.size == gallery_image([Image.new("RGB", (32, 32))] * min(wrong, 32),
                                             [[("", BAR_BLUE)] * 3] * min(wrong, 32), title=title).size
    # two classes: the long title fits
    def width(title):
        return text_size(ImageDraw.Draw(Image.new("RGB", (1, 1))), title, font(16))[0]

    title = "Confusion matrix (500 of 10,000 images)"
    assert confusion_matrix_image([[1, 0], [0, 1]], ["a", "b"], title=title).width >= width(title) + 20
    title = "Accuracy per class (500 of 10,000 images of the validation split)"
    assert per_class_accuracy_image([1.0], ["a"], title=title).width >= width(title) + 20


def test_no_mistakes_on_a_sample_is_not_called_none_on_the_split(evaluated, tmp_path):
    """A report of 10 of 60 images without a mistake said "The model made no mistakes on this split."."""
    make_controlled_model(tmp_path / "model", evaluated["data_dir"], confuse=False)
    out = tmp_path / "out"
    evaluate_model(str(tmp_path / "model"), dataset=str(evaluated["data_dir"]), output_dir=out, device="cpu",
                   progress=False, max_eval_samples=10)  # fmt: skip
    message = find_all(parse_page((out / "report.html").read_text()), id="no-match")[0]
    assert message["text"].strip() == "The model made no mistakes on these images (part of the split: see above)."


def test_confusion_matrix_cells_are_shaded_by_their_share_of_the_true_class():
    """Colour is the row share (a big class and a small one read alike), from white (0) to dark blue (1)."""
    from hf_vit.eval_pictures import DARK_BLUE, confusion_matrix_image

    counts = np.array([[90, 10, 0], [1, 3, 0], [0, 0, 0]])  # row shares .9 .1 / .25 .75; an empty row stays white
    pixels = np.asarray(confusion_matrix_image(counts, ["a", "b", "c"])).reshape(-1, 3)
    cell_area = 48 * 48  # three classes: the largest cells

    def area(share):
        colour = (255 + share * (DARK_BLUE - 255)).astype(int)
        return int((pixels == colour).all(axis=1).sum())

    for share in (0.9, 0.1, 0.25, 0.75):
        assert 0.6 * cell_area < area(share) <= cell_area, share  # one cell each, less its outline and digits
    assert area(1.0) == 0  # neither by column (90/91, 3/13 ...) nor by the largest count


def test_a_confusion_matrix_of_many_classes_stays_within_the_picture_limit():
    """300 classes drew a 4,300 px confusion matrix, 1000 classes a 14,099 x 14,127 px one (1.2 GB and a minute),
    which report.html then embedded. Over what named rows of 14 px allow, the cells shrink to fit MAX_PICTURE_SIDE and
    the names are left out (the axis says the classes are in the order of labels); fewer classes are drawn as before."""
    from hf_vit.eval_pictures import DARK_BLUE, confusion_matrix_image
    from hf_vit.teaching import MAX_PICTURE_SIDE

    for n in (300, 1000):
        counts = np.eye(n, dtype=np.int64) * 5
        counts[1, 1], counts[1, 0] = 0, 5  # class 1 always taken for class 0
        picture = confusion_matrix_image(counts, [f"class {k}" for k in range(n)])
        assert max(picture.size) <= MAX_PICTURE_SIDE, (n, picture.size)
        cell = (MAX_PICTURE_SIDE - 62) // n
        assert picture.size == (24 + n * cell + 10, 52 + n * cell + 10)
        pixels = np.asarray(picture)
        dark = tuple(DARK_BLUE.astype(np.uint8))
        centre = lambda i, j: tuple(pixels[52 + i * cell + cell // 2, 24 + j * cell + cell // 2])  # noqa: E731
        assert centre(0, 0) == centre(n - 1, n - 1) == centre(1, 0) == dark and centre(1, 1) == (255, 255, 255)


def test_a_per_class_chart_of_many_classes_stays_within_the_picture_limit():
    """per_class_accuracy.png of 1000 classes was 24,070 px tall. Past what rows of 24 px allow, the bars get thinner
    (4 px here: 3 of bar, 1 of gap), without names or numbers; each still draws its class's accuracy."""
    from hf_vit.teaching import MAX_PICTURE_SIDE

    accuracies = [k / 999 for k in range(1000)]
    pixels = np.asarray(per_class_accuracy_image(accuracies, [f"class {k}" for k in range(1000)]))
    assert max(pixels.shape[:2]) <= MAX_PICTURE_SIDE, pixels.shape
    row, left, top = (MAX_PICTURE_SIDE - 86) // 1000, 10, 40
    for k in (1, 500, 999):  # the blue run of bar k, on its middle line
        line = pixels[top + k * row + 1, left:left + 321]
        blue = np.flatnonzero((line == BAR_BLUE).all(axis=1))
        assert blue.max() == round(320 * accuracies[k]) and blue.min() == 0, k


def test_confusion_matrix_counts_contrast_with_their_cells():
    """Every count is drawn in black or white, whichever stands out more from its cell: at least 4.5:1 (WCAG AA).
    Before, white was chosen above a share of 0.5: 2.98:1 on the cell of share 0.5001."""
    from hf_vit.eval_pictures import confusion_matrix_image

    shares = [0.5001, 0.55, 0.6, 0.65, 0.66, 0.7, 0.9, 1.0]  # around the black/white crossover (0.656) and beyond
    counts = np.zeros((len(shares), len(shares)), dtype=np.int64)
    for i, share in enumerate(shares):
        counts[i, i], counts[i, (i + 1) % len(shares)] = round(10000 * share), 10000 - round(10000 * share)
    pixels = np.asarray(confusion_matrix_image(counts, [f"c{k}" for k in range(len(shares))])).astype(int)
    # The grid: the columns and rows that the cells' light grey outlines run all along.
    outline = (pixels == (220, 220, 220)).all(axis=2)
    xs = np.flatnonzero(outline.sum(axis=0) > 0.9 * outline.sum(axis=0).max())
    ys = np.flatnonzero(outline.sum(axis=1) > 0.9 * outline.sum(axis=1).max())
    cell = (xs.max() - xs.min() + 1) // len(shares)
    assert cell >= 20 and (ys.max() - ys.min() + 1) == cell * len(shares)  # large enough to hold numbers
    for i in range(len(shares)):
        for j in range(len(shares)):
            x0, y0 = xs.min() + j * cell, ys.min() + i * cell
            inside = pixels[y0 + 1 : y0 + cell - 1, x0 + 1 : x0 + cell - 1].reshape(-1, 3)
            colours, n = np.unique(inside, axis=0, return_counts=True)
            background = colours[n.argmax()]
            ink = colours[np.abs(relative_luminance(colours) - relative_luminance(background)).argmax()]
            assert (ink != background).any(), (i, j)  # a number is drawn
            assert contrast_ratio(ink, background) >= 4.5, (i, j, ink, background)


def test_an_attention_strip_of_a_tall_narrow_image_has_room_for_its_titles_and_caption():
    """A 7x300 image scales to a panel narrower than its title: the titles overlapped and the caption was cut
    (a 25 px wide strip)."""
    from hf_vit.eval_pictures import _measure, attention_strip, font

    caption = "#3 true: cat, predicted: dog (97.0%)"
    strip = attention_strip(Image.new("RGB", (7, 300), (0, 128, 0)), np.ones((4, 4)), np.ones((4, 4)), caption)
    pixels = np.asarray(strip)
    titles = _measure(["image", "attention rollout", "last layer [CLS]"], font(12))
    assert strip.width >= 3 * titles and strip.width >= _measure([caption], font(12))
    green = np.flatnonzero(((pixels == (0, 128, 0)).all(axis=2)).any(axis=0))  # the image panel's columns
    assert 0 < green.min() and green.max() < titles  # inside the first column, the other two are overlays


def relative_luminance(rgb) -> np.ndarray:
    """WCAG 2.1 relative luminance of sRGB colours (..., 3) in 0..255."""
    c = np.asarray(rgb, dtype=np.float64) / 255
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return linear @ np.array([0.2126, 0.7152, 0.0722])


def contrast_ratio(a, b) -> float:
    """WCAG contrast ratio of two colours, 1 to 21 (AA asks 4.5 for normal text)."""
    la, lb = sorted((float(relative_luminance(a)), float(relative_luminance(b))), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_the_attention_colour_scale_gets_brighter_all_the_way():
    """The overlay's colours from the least to the most attended patch get brighter at every step, from near
    black to near white: the blue -> yellow -> red ramp made the top (red, luminance 0.21) as dark as mid-grey,
    so in greyscale or to protanopes the highest attention looked medium."""
    from hf_vit.attention_maps import heat_map_image

    ramp = np.linspace(0, 1, 32).reshape(1, 32)  # one patch per pixel: no resize mixes them
    colours = np.asarray(heat_map_image(ramp, (32, 1)))[0]  # the scale
    luminance = relative_luminance(colours)
    assert (np.diff(luminance) > 0).all(), luminance.round(3)
    assert luminance[0] < 0.01 and luminance[-1] > 0.8


def test_attention_colours_take_nan_and_inf():
    """A NaN in an attention map (e.g. from fp16 overflow) crashed heat_colours with an IndexError (NaN cast to an
    index); now NaN is drawn as the lowest colour, inf as the highest, and the rest of the map keeps its scale."""
    from hf_vit.attention_maps import HEAT_SCALE, heat_colours, heat_map_image

    colours = heat_colours(np.array([np.nan, np.inf, -np.inf, 0.5]))
    assert colours[:3].tolist() == [HEAT_SCALE[0].tolist(), HEAT_SCALE[-1].tolist(), HEAT_SCALE[0].tolist()]
    assert colours[3].tolist() == heat_colours(0.5).tolist()
    heat = np.array([[0.0, np.nan, 0.5, 1.0, np.inf]])  # inf: as high as the map's largest finite value
    panel = np.asarray(heat_map_image(heat, (5, 1)))[0]
    assert panel.tolist() == heat_colours([0, 0, 0.5, 1, 1]).tolist()


def test_the_colour_key_has_room_for_the_descender_of_high():
    """The key was sized by "attention: low" alone: the g of "high" reaches one row lower and lost it."""
    from PIL import ImageDraw

    from hf_vit.eval_pictures import _colour_key, font

    fnt = font(12)
    key = np.asarray(_colour_key(200, fnt))
    ink = (key != 255).any(axis=2)
    assert not ink[0].any() and not ink[-1].any()  # a white row above and below: nothing touches the edges
    alone = Image.new("RGB", (60, 40), (255, 255, 255))
    ImageDraw.Draw(alone).text((5, 5), "high", font=fnt, fill=(0, 0, 0))
    rows_of_high = int((np.asarray(alone) != 255).any(axis=2).any(axis=1).sum())
    assert int(ink[:, -30:].any(axis=1).sum()) == rows_of_high  # every row of the word, the g's tail too


def test_an_attention_strip_carries_a_low_to_high_colour_key():
    """The strip shows its own key: a bar from dark (low) to bright (high), brighter at every step."""
    from hf_vit.eval_pictures import attention_strip

    # Flat maps on a flat image: the panels hold no ramp of their own, so a ramp found is the key.
    strip = attention_strip(Image.new("RGB", (32, 32), (90, 140, 60)), np.ones((4, 4)), np.ones((4, 4)), "#3")
    pixels = np.asarray(strip)
    keys = []
    for y, row in enumerate(pixels):
        luminance, white = relative_luminance(row), (row == 255).all(axis=1)
        start = 0
        for x in range(1, len(row) + 1):  # runs of non-white pixels whose luminance never falls
            if x == len(row) or white[x] or white[x - 1] or luminance[x] < luminance[x - 1]:
                run = luminance[start:x]
                if x - start >= 64 and run[0] < 0.02 and run[-1] > 0.8 and not white[start]:
                    keys.append((y, start, x))
                start = x
    assert keys, "no dark-to-bright colour bar in the attention strip"
    assert min(y for y, _, _ in keys) > 18 + 128  # under the panels (titles 18 px, panels 128 px)


def test_grey_text_in_the_pictures_has_aa_contrast():
    """Grey text (the chart's "no images" and axis ticks, the gallery's "97% sure, #57") is at least 4.5:1 on its
    background; (120, 120, 120) was 4.4:1 on white and 3.9:1 on the bars' light grey track."""
    from hf_vit.eval_pictures import GREY, WHITE

    assert contrast_ratio(GREY, WHITE) >= 4.5  # as the gallery's captions use it
    pixels = np.asarray(per_class_accuracy_image([None], ["cat"])).astype(int)
    track_colour = np.array([240, 240, 240])
    on_track = (pixels == track_colour).all(axis=2)  # (a few antialiased text pixels share the colour)
    track_rows = np.flatnonzero(on_track.sum(axis=1) > on_track.sum(axis=1).max() / 2)
    track_cols = np.flatnonzero(on_track.sum(axis=0) > on_track.sum(axis=0).max() / 2)
    track = pixels[track_rows.min() : track_rows.max() + 1, track_cols.min() : track_cols.max() + 1].reshape(-1, 3)
    text = track[relative_luminance(track).argmin()]  # "no images", written on the empty track
    assert contrast_ratio(text, track_colour) >= 4.5, text
    below = pixels[track_rows.max() + 1 :].reshape(-1, 3)  # the axis: ticks and 0% 50% 100%, on white
    ticks = below[relative_luminance(below).argmin()]
    assert contrast_ratio(ticks, WHITE) >= 4.5, ticks


def test_the_overall_line_is_outlined_in_white_where_it_crosses_the_bars():
    """The red overall line on a blue bar (1.3:1) has a white pixel on either side, all along the bar."""
    from hf_vit.eval_pictures import RED

    pixels = np.asarray(per_class_accuracy_image([1.0, 0.25], ["cat", "dog"], overall=0.5)).astype(int)
    blue_rows = np.flatnonzero((pixels == BAR_BLUE).all(axis=2).sum(axis=1) > 100)  # the rows of the full bar
    assert len(blue_rows) >= 10
    for y in blue_rows:
        red = np.flatnonzero((pixels[y] == RED).all(axis=1))
        assert len(red) == 2 and red[1] - red[0] == 1, (y, red)  # the 2 px line crosses this row
        assert (pixels[y, red[0] - 1] == 255).all() and (pixels[y, red[1] + 1] == 255).all(), y
        assert (pixels[y, red[0] - 2] == BAR_BLUE).all() and (pixels[y, red[1] + 2] == BAR_BLUE).all(), y


def test_the_per_class_chart_draws_each_class_recall(evaluated, tmp_path, monkeypatch):
    """The chart's bars are the share of each class's images called right (recall), not precision: the two differ
    here (truck is never predicted, so whichever class takes its images loses precision but not recall)."""
    import hf_vit.analysis

    drawn = []

    def recording(accuracies, names, **kwargs):
        drawn.append((list(accuracies), list(names), kwargs))
        return per_class_accuracy_image(accuracies, names, **kwargs)

    monkeypatch.setattr(hf_vit.analysis, "per_class_accuracy_image", recording)
    metrics = evaluate_model(
        str(evaluated["model_dir"]), dataset=str(evaluated["data_dir"]), output_dir=tmp_path / "out", device="cpu",
        progress=False, max_attention_maps=0, report=False,
    )
    ((bars, names, kwargs),) = drawn
    labels, preds = evaluated["labels"], evaluated["preds"]
    recalls = [float((preds[labels == c] == c).mean()) if (labels == c).any() else None for c in range(10)]
    assert names == CIFAR10_NAMES and kwargs["overall"] == metrics["accuracy"]
    assert bars == pytest.approx(recalls)
    precisions = [metrics["per_class"][n]["precision"] for n in names]  # None: never predicted (truck)
    assert any(abs(p - r) > 0.1 for p, r in zip(precisions, recalls) if None not in (p, r))


def test_batched_preprocessing_matches_the_image_processor(tmp_path):
    """The fast path must feed the model what `pipeline(...)` would, also when images need resizing."""
    config = hf_vit.HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=32)
    processor = hf_vit.make_image_processor(config)
    fast = BatchPreprocessor(processor)
    assert fast.fast
    for size in (32, 40):
        images = list(load_dataset(str(make_tiny_cifar(tmp_path / f"d{size}", 4, 8, size=size)), split="test")["img"])
        images[0] = images[0].convert("L")  # a grayscale image is converted to RGB as the processor does
        got, want = fast(images), processor_pixels(processor, images)
        assert got.shape == want.shape == (8, 3, 32, 32)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_label_names_must_match_the_model():
    assert match_labels(CIFAR10_NAMES, CIFAR10_NAMES) is None
    # Same names in another order: re-mapped by name.
    shuffled = CIFAR10_NAMES[::-1]
    assert match_labels(shuffled, CIFAR10_NAMES).tolist() == list(range(9, -1, -1))
    with pytest.raises(ValueError) as err:
        match_labels(["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"], CIFAR10_NAMES)
    message = str(err.value)
    # called from Python: the argument (dataset=...), not evaluate_model.py's flag
    assert "'airplane'" in message and "'0'" in message and "dataset='../shared/data/cifar10'" in message
    # names YAML read as booleans (yes/no) compare as text, not a TypeError from sorting bools with strings
    assert match_labels([True, False], ["False", "True"]).tolist() == [1, 0]


def test_mismatched_dataset_is_refused(evaluated, tmp_path):
    data_dir = make_tiny_cifar(tmp_path / "fruit", 4, 6, names=["apple", "pear", "plum"])
    with pytest.raises(ValueError, match=r"dataset \(3\): \['apple', 'pear', 'plum'\]"):
        evaluate_model(str(evaluated["model_dir"]), dataset=str(data_dir), output_dir=tmp_path / "o", progress=False)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        evaluate_model(str(tmp_path), dataset=str(data_dir), progress=False)


def run_evaluate_script(argv, capsys):
    """scripts/evaluate_model.py's main(argv) in this process: (exit message or None, stdout)."""
    spec = importlib.util.spec_from_file_location("_evaluate_script", REPO / "scripts/evaluate_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        module.main([*argv, "--no_progress"])
        code = None
    except SystemExit as exit_info:
        code = str(exit_info.code)
    return code, capsys.readouterr().out


def launch_two_processes(script, *args):
    """`torchrun --nproc_per_node 2 scripts/<script> args` with this checkout's hf_vit, one thread per process."""
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(REPO / "scripts" / script), *map(str, args)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_an_evaluation_launched_as_several_processes_is_refused(evaluated, tmp_path):
    """`torchrun --nproc_per_node 2 scripts/evaluate_model.py` started two whole evaluations into one folder: one
    wrote it, the other was refused by the folder's lock naming its sibling as "an evaluation (pid N)", and the
    launcher then killed the first, finished or not. Now each says to run it as one process; nothing is written."""
    out = tmp_path / "eval"
    proc = launch_two_processes("evaluate_model.py", "--model", evaluated["model_dir"], "--dataset",
                                evaluated["data_dir"], "--output_dir", out, "--device", "cpu", "--no_progress")
    assert proc.returncode != 0
    assert ("error: evaluate_model.py runs as one process, but it was launched as 2 (WORLD_SIZE=2, set by torchrun "
            "or accelerate launch): each would evaluate the whole split into the same --output_dir. Run it with "
            "`python scripts/evaluate_model.py ...`; --device picks the GPU.") in proc.stderr, proc.stderr[-3000:]
    assert "in use by an evaluation" not in proc.stderr
    assert not out.exists()


def test_rerun_with_no_report_removes_the_previous_report(evaluated, tmp_path, capsys):
    out = tmp_path / "out"
    common = ["--model", str(evaluated["model_dir"]), "--dataset", str(evaluated["data_dir"]), "--output_dir", str(out),
              "--device", "cpu"]
    assert run_evaluate_script(common, capsys)[0] is None and (out / "report.html").is_file()
    code, stdout = run_evaluate_script([*common, "--no_report"], capsys)
    assert code is None
    assert not (out / "report.html").exists()  # its thumbnails were just replaced: no stale page left behind
    assert "report.html" not in stdout and "metrics.json" in stdout


def test_an_output_dir_of_the_users_own_files_is_refused_not_cleared(evaluated, tmp_path):
    """A rerun clears the earlier evaluation's pictures: only in a folder an evaluation wrote."""
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.png").write_bytes(b"mine")
    kwargs = dict(dataset=str(evaluated["data_dir"]), progress=False, max_attention_maps=0)
    with pytest.raises(ValueError, match=r"holds other files \('holiday.png', ...\) and no earlier evaluation") as err:
        evaluate_model(str(evaluated["model_dir"]), output_dir=mine, **kwargs)
    # It names what the evaluation writes (the list a rerun clears), not "the .png files": a rerun keeps the others.
    assert "the evaluation would write its own among them (metrics.json, misclassified.csv, report.html, " in str(
        err.value)
    assert ".png files" not in str(err.value)
    assert (mine / "holiday.png").read_bytes() == b"mine"
    with pytest.raises(ValueError, match="which is a file. Pass a folder"):
        evaluate_model(str(evaluated["model_dir"]), output_dir=mine / "holiday.png" / "sub", **kwargs)
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / ".DS_Store").write_bytes(b"")  # a hidden file is no one's photos
    evaluate_model(str(evaluated["model_dir"]), output_dir=tmp_path / "new", **kwargs)
    evaluate_model(str(evaluated["model_dir"]), output_dir=tmp_path / "new", **kwargs)  # its own earlier run: fine


def test_a_rerun_clears_only_the_files_the_push_takes_for_the_evaluations(evaluated, tmp_path):
    """A rerun deleted every .png at the top of the evaluation folder while the push took only three of them for the
    evaluation's (the others are the user's, kept in the repository): a loss curve the user had put there was lost
    to the rerun. One list (analysis.EVALUATION_FILES, read by the push) now says what the evaluation writes: the
    rerun deletes only those, and every file it writes is one the push uploads and knows as the evaluation's."""
    from hf_vit.hub import pushed_kind, upload_plan

    model = Path(shutil.copytree(evaluated["model_dir"], tmp_path / "model"))
    (model / "evaluation" / "loss_curve.png").write_bytes(b"mine")
    evaluate_model(str(model), dataset=str(evaluated["data_dir"]), progress=False, max_attention_maps=2)
    assert (model / "evaluation" / "loss_curve.png").read_bytes() == b"mine"
    written = sorted(p.relative_to(model).as_posix() for p in (model / "evaluation").rglob("*") if p.is_file())
    written.remove("evaluation/loss_curve.png")
    assert {"evaluation/per_class_accuracy.png", "evaluation/report.html"} <= set(written)
    assert any(name.startswith("evaluation/attention/") for name in written)
    assert [name for name in written if not pushed_kind(name)] == []  # an earlier push's, when the folder drops it
    assert sorted(set(written) - set(upload_plan(model))) == []
    assert not pushed_kind("evaluation/loss_curve.png") and "evaluation/loss_curve.png" in upload_plan(model)


def test_output_dir_that_is_a_model_folder_is_refused_before_writing(evaluated, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(evaluated["model_dir"], model, ignore=shutil.ignore_patterns("evaluation"))
    training_metrics = json.dumps({"accuracy": 0.5, "validation": {"accuracy": 0.6}})
    (model / "metrics.json").write_text(training_metrics)
    before = sorted(p.name for p in model.iterdir())
    for output_dir in (model, tmp_path / "." / "model"):  # also when spelled differently
        with pytest.raises(ValueError, match=r"is a model folder: the evaluation's metrics.json would overwrite training's"):
            evaluate_model(str(model), dataset=str(evaluated["data_dir"]), output_dir=output_dir, progress=False)
    assert sorted(p.name for p in model.iterdir()) == before
    assert (model / "metrics.json").read_text() == training_metrics


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--device", "gpu"], "error: --device 'gpu' is not a device torch knows. Use auto, cpu, cuda, cuda:<index> or mps."),
        (["--num_threads", "-1"], "error: --num_threads must be a whole number of at least 1, got -1."),
        (["--gallery_size", "-1"], "error: --gallery_size must be a whole number of at least 0, got -1."),
        (["--batch_size", "0"], "error: --batch_size must be a whole number of at least 1, got 0."),
        (["--max_eval_samples", "0"], "error: --max_eval_samples must be a whole number of at least 1, got 0; leave it "
                                      "out to evaluate every image of the split."),
        (["--max_eval_samples", "-500"], "error: --max_eval_samples must be a whole number of at least 1, got -500; "
                                         "leave it out to evaluate every image of the split."),
        (["--gallery_size", "209"], "error: --gallery_size must be at most 208, got 209: gallery.png holds that many "
                                    "mistakes within 4096 px a side (misclassified/ and report.html hold them all)."),
        (["--seed", "7"], "error: --seed only applies with --max_eval_samples N (it draws which images are scored); "
                          "pass both, or leave --seed out to evaluate every image of the split."),
        (["--max_attention_maps", "-5"],
         "error: --max_attention_maps must be a whole number of at least 0, or -1 for all, got -5."),
    ],
)
def test_bad_evaluation_flags_are_one_error_line_before_anything_loads(flags, message, tmp_path, capsys):
    # The model path does not exist: the flag must be refused before the model is even looked for.
    code, _ = run_evaluate_script(["--model", "./no-model-here", "--output_dir", str(tmp_path / "o"), *flags], capsys)
    assert code == message
    assert not (tmp_path / "o").exists()


def test_an_output_dir_that_cannot_be_written_is_refused_before_the_model_loads(evaluated, tmp_path, capsys, monkeypatch):
    # /proc takes no new folders, even from root: before, the whole split was scored and then the write failed.
    # The dataset does not exist: the output folder is refused before the data is looked for.
    code, _ = run_evaluate_script(["--model", str(evaluated["model_dir"]), "--dataset", str(tmp_path / "none"),
                                   "--output_dir", "/proc/hf_vit-evaluation"], capsys)  # fmt: skip
    assert code == (
        "error: cannot write --output_dir '/proc/hf_vit-evaluation' (/proc: No such file or directory). Pass a "
        "writable --output_dir (default: <model folder>/evaluation, which a read-only model folder cannot hold)."
    )
    # ... but a mistyped --model is named first, wherever the default output would go
    monkeypatch.chdir("/proc")  # where the default output of a Hub id would go
    code, _ = run_evaluate_script(["--model", str(tmp_path / "rnu_typo")], capsys)
    assert code.startswith(f"error: no model folder at '{tmp_path / 'rnu_typo'}' (from --model "), code


def test_evaluation_library_messages_name_its_arguments_and_the_script_its_flags(tmp_path, monkeypatch):
    """evaluate_model called from Python named evaluate_model.py's flags (`--max_attention_maps must ...`, `(from
    --model ...)`); now it names its arguments, as hf_vit.data does, and the script (within flags_in_messages) its
    flags, --model among them for model_name_or_path. Nothing here loads a model: each is refused up front."""
    from hf_vit import HfViTConfig, HfViTForImageClassification
    from hf_vit.data import flags_in_messages

    monkeypatch.chdir(tmp_path)
    model = tmp_path / "model"
    HfViTForImageClassification(HfViTConfig(image_size=8, patch_size=4, dim=8, depth=1, heads=1, dim_head=8,
                                             mlp_dim=8)).save_pretrained(model)  # fmt: skip
    (tmp_path / "a_file").write_text("")
    cases = [  # (arguments, the library's words, the script's words)
        (dict(max_attention_maps=-5), "max_attention_maps must be a whole number of at least 0",
         "--max_attention_maps must be a whole number of at least 0"),
        (dict(batch_size=0), "batch_size must be a whole number of at least 1", "--batch_size must be"),
        (dict(device="gpu"), "device='gpu' is not a device torch knows", "--device 'gpu' is not a device"),
        (dict(model_name_or_path="./runs/nothere"), "(from model_name_or_path='./runs/nothere')",
         "(from --model './runs/nothere')"),
        (dict(model_name_or_path=str(model), output_dir="a_file"), "output_dir='a_file' is a file.",
         "--output_dir 'a_file' is a file."),
        (dict(model_name_or_path=str(model), output_dir=str(model)),
         f"output_dir={str(model)!r} is a model folder: the evaluation's metrics.json would overwrite training's "
         "(its validation accuracy and training curve, which the model card reads). Leave out output_dir ",
         "training curve, which the model card reads). Leave out --output_dir "),
    ]
    for arguments, library, script in cases:
        arguments = {"model_name_or_path": "./no-model-here", **arguments}
        with pytest.raises((ValueError, OSError)) as err:
            evaluate_model(**arguments, progress=False)
        assert library in str(err.value) and "--" not in str(err.value), str(err.value)
        with flags_in_messages(), pytest.raises((ValueError, OSError)) as err:
            evaluate_model(**arguments, progress=False)
        assert script in str(err.value), str(err.value)
    assert not (model / "evaluation").exists()


def test_missing_model_paths_are_not_sent_to_the_hub(tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.chdir(tmp_path)
    code, _ = run_evaluate_script(["--model", "./runs/nothere"], capsys)
    assert code == (
        f"error: no model folder at '{tmp_path}/runs/nothere' (from --model './runs/nothere'). Check the path: pass "
        "the folder training wrote (config.json, model.safetensors, preprocessor_config.json), e.g. runs/<name>."
    )
    # owner/name could be a Hub id: the Hub is asked (offline here: only its cache), and the message says both.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    code, _ = run_evaluate_script(["--model", "runs/cpuu"], capsys)
    assert code.startswith(
        f"error: Could not load the model 'runs/cpuu' (--model): there is no local folder '{tmp_path}/runs/cpuu', and "
        "with HF_HUB_OFFLINE=1 only the local Hugging Face cache was searched"
    ), code


def test_the_pushed_report_finds_every_file_it_links_to(evaluated):
    """push_to_hub uploads report.html with every picture it shows (the mistakes' thumbnails included)."""
    import re

    page = (evaluated["out"] / "report.html").read_text()
    linked = {f"evaluation/{src}" for src in re.findall(r'src="(?!data:)([^"]+)"', page)}
    assert any(src.startswith("evaluation/misclassified/") for src in linked)
    assert linked <= set(upload_plan(evaluated["model_dir"]))


def report_cards(page):
    """The report's mistake cards as dicts: the card's data-* attributes and its images' src by class."""
    from html.parser import HTMLParser

    cards = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "li" and attrs.get("class") == "card":
                cards.append({k.removeprefix("data-"): v for k, v in attrs.items() if k.startswith("data-")})
            elif tag == "img" and cards and attrs.get("class") in ("thumb", "att"):
                cards[-1][attrs["class"]] = attrs["src"]

    Parser().feed(page)
    return cards


def test_each_card_shows_its_own_image_and_attention_most_confident_first(evaluated):
    rows = {r["index"]: r for r in read_csv(evaluated["out"] / "misclassified.csv")}
    cards = report_cards((evaluated["out"] / "report.html").read_text())
    assert sorted(c["index"] for c in cards) == sorted(rows)
    for card in cards:
        row = rows[card["index"]]
        assert (card["true"], card["pred"], card["thumb"]) == (row["true_label"], row["predicted_label"], row["image"])
        assert card.get("att") == (row["attention"] or None)  # max_attention_maps=-1: every mistake has one
    confidences = [float(c["confidence"]) for c in cards]
    assert confidences == sorted(confidences, reverse=True) and len(set(confidences)) > 1


@pytest.mark.parametrize("sharpen", [2, 4])
def test_the_cards_csv_and_attention_maps_rank_confident_mistakes_alike(evaluated, tmp_path, sharpen):
    """Confident mistakes tie in float32 (probability exactly 1.0: head x4) or in the CSV's six decimals (0.999995
    and 0.999996 both '0.999996': head x2). The attention maps went to the first of the exact float32 ranking (ties
    in index order), the report re-sorted the CSV's rounded numbers (ties in index order again): a card without a
    map came before one with a map, and the gallery's order was not the cards'. Now mistakes are ranked by the
    predicted class's log-probability in float64, and the CSV lists them in that order, which the report keeps."""
    model, _ = make_controlled_model(tmp_path / "model", evaluated["data_dir"])
    with torch.no_grad():  # a power of 2: the logits are exactly `sharpen` times the fixture's
        model.mlp_head[1].weight.mul_(sharpen)
        model.mlp_head[1].bias.mul_(sharpen)
    model.save_pretrained(tmp_path / "model")
    out = tmp_path / "out"
    evaluate_model(str(tmp_path / "model"), dataset=str(evaluated["data_dir"]), output_dir=out, device="cpu",
                   progress=False, max_attention_maps=4, gallery_size=0)  # fmt: skip
    logits, labels = evaluated["logits"].astype(np.float64) * sharpen, evaluated["labels"]
    log_probs = torch.from_numpy(logits).log_softmax(-1).numpy()
    wrong = np.flatnonzero(logits.argmax(1) != labels)
    expected = wrong[np.argsort(-log_probs[wrong].max(1), kind="stable")]
    rows = read_csv(out / "misclassified.csv")
    assert len({r["confidence"] for r in rows}) < len(rows)  # the ties this test is about
    cards = report_cards((out / "report.html").read_text())
    assert [int(c["index"]) for c in cards] == [int(r["index"]) for r in rows] == expected.tolist()
    assert [bool(c.get("att")) for c in cards] == [True] * 4 + [False] * (len(cards) - 4)


def test_a_mistake_short_of_certain_is_never_called_100_percent_sure(evaluated, tmp_path, monkeypatch):
    """The fixture's dog -> cat mistakes are made at 99.8%: the gallery said "100% sure" and each attention map's
    caption "(100%)", a certainty the model never had (its card said 99.8%); a card of a mistake at 99.97% said
    "(100.0%)", and a true class at 0.002% "p(true class): 0.0%". Now such shares read ">99%" (">99.9%") and
    "<0.1%"; 0 and 1 themselves stay 0% and 100%."""
    import hf_vit.analysis
    from hf_vit.eval_pictures import attention_strip, gallery_image

    drawn = {"strips": []}
    monkeypatch.setattr(hf_vit.analysis, "gallery_image", lambda images, captions, **kwargs: drawn.setdefault(
        "gallery", [line for line, _ in captions[0]]) and gallery_image(images, captions, **kwargs))
    monkeypatch.setattr(hf_vit.analysis, "attention_strip", lambda *args, caption, **kwargs: drawn["strips"].append(
        caption) or attention_strip(*args, caption=caption, **kwargs))
    out = tmp_path / "evaluation"
    evaluate_model(str(evaluated["model_dir"]), dataset=str(evaluated["data_dir"]), output_dir=out, device="cpu",
                   progress=False, max_attention_maps=1, gallery_size=1)  # fmt: skip
    rows = read_csv(out / "misclassified.csv")  # most confident first
    assert 0.995 <= float(rows[0]["confidence"]) < 1  # a share that rounds to 100% at whole percents
    assert drawn["gallery"][2] == f">99% sure, #{rows[0]['index']}"
    assert drawn["strips"] == [f"#{rows[0]['index']} true: dog | pred: cat (>99%)"]

    first = {**rows[0], "confidence": "0.999700", "top1_probability": "0.999700", "true_class_probability": "0.000020",
             "top2_probability": "0.000000", "top3_probability": "0.000100"}
    with open(out / "misclassified.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(first))
        writer.writeheader()
        writer.writerows([first, *rows[1:]])
    card = parse_page(write_report(out).read_text())
    card = find_all(card, "li", **{"class": "card"})[0]
    assert find_all(card, "h3")[0]["text"] == f"#{first['index']}: dog, predicted cat (>99.9%)"
    assert [p["text"] for p in find_all(card, "p")][:2] == [
        "p(true class): <0.1%", f"top 3: cat >99.9%, {first['top2_label']} 0.0%, {first['top3_label']} <0.1%"]


def copy_with_a_class_renamed(source, folder, new_name):
    """Copy the evaluation folder `source` to `folder` with the first mistake's true class renamed `new_name` in
    misclassified.csv; returns its rows and the metrics with the class renamed (metrics.json is left as it was)."""
    shutil.copytree(source, folder)
    rows = read_csv(folder / "misclassified.csv")
    named = rows[0]["true_label"]
    for row in rows:
        row.update({k: new_name for k in ("true_label", "predicted_label", "top1_label") if row[k] == named})
    with open(folder / "misclassified.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["labels"] = [new_name if n == named else n for n in metrics["labels"]]
    metrics["per_class"] = {new_name if n == named else n: v for n, v in metrics["per_class"].items()}
    return rows, metrics


def test_a_class_name_with_markup_is_shown_as_text(evaluated, tmp_path):
    """Class names come from a dataset's card: `<b>&"x` must read as those characters, not as a tag."""
    from hf_vit.report import write_report

    folder, odd = tmp_path / "evaluation", '<b>&"x'
    _, metrics = copy_with_a_class_renamed(evaluated["out"], folder, odd)
    page = write_report(folder, metrics=metrics).read_text()
    assert odd not in page and "&lt;b&gt;&amp;&quot;x" in page
    assert any(c["true"] == odd for c in report_cards(page))  # the attribute reads back as the name
    assert f'<option value="{html_escape(odd)}">' in page and f'<th scope="row">{html_escape(odd)}</th>' in page


VOID_TAGS = {"img", "meta", "br", "hr", "input", "link", "source", "col", "wbr"}


def parse_page(page):
    """The page as a tree of {"tag", "attrs", "children", "text"} (text: all the text inside), stdlib only."""
    from html.parser import HTMLParser

    root = {"tag": "root", "attrs": {}, "children": [], "text": ""}
    stack = [root]

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            node = {"tag": tag, "attrs": dict(attrs), "children": [], "text": ""}
            stack[-1]["children"].append(node)
            if tag not in VOID_TAGS:
                stack.append(node)

        def handle_endtag(self, tag):
            while len(stack) > 1 and stack.pop()["tag"] != tag:
                pass

        def handle_data(self, data):
            for node in stack:
                node["text"] += data

    Parser().feed(page)
    return root


def find_all(node, tag=None, **attrs):
    """Every element under `node` (depth first, in page order) with this tag and these attribute values."""
    found = []
    for child in node["children"]:
        if (tag is None or child["tag"] == tag) and all(child["attrs"].get(k.replace("_", "-")) == v
                                                        for k, v in attrs.items()):
            found.append(child)
        found += find_all(child, tag, **attrs)
    return found


def table_rows(table):
    """[(tag, scope, text) of each cell] per row, from <thead> and <tbody>."""
    return [[(c["tag"], c["attrs"].get("scope"), c["text"].strip()) for c in row["children"]]
            for row in find_all(table, "tr")]


def test_report_tables_have_headers_captions_and_scroll_boxes_and_the_confusion_counts_as_text(evaluated):
    """Screen readers announce a cell with its row and column headers; a wide table scrolls in its own box; the
    confusion matrix's counts are text (the picture draws none in small cells), equal to metrics.json's."""
    page = (evaluated["out"] / "report.html").read_text()
    root, metrics = parse_page(page), json.loads((evaluated["out"] / "metrics.json").read_text())
    names = metrics["labels"]
    boxes = {b["attrs"]["aria-label"]: b for b in find_all(root, "div", **{"class": "scroll"})}
    assert set(boxes) == {"Metrics", "Per class", "Confusion matrix"}
    for box in boxes.values():  # focusable, so that the keyboard can scroll it
        assert (box["attrs"]["tabindex"], box["attrs"]["role"], len(find_all(box, "table"))) == ("0", "region", 1)

    confusion = find_all(boxes["Confusion matrix"], "table")[0]
    assert find_all(confusion, "caption")[0]["text"] == "Confusion matrix (rows: true class, columns: predicted class)"
    head, *body = table_rows(confusion)
    assert head == [("th", "col", "true class")] + [("th", "col", n) for n in names]
    assert [row[0] for row in body] == [("th", "row", n) for n in names]
    assert [[int(text) for tag, _, text in row[1:] if tag == "td"] for row in body] == metrics["confusion_matrix"]
    details = find_all(root, "details")[0]
    assert details["children"][0]["tag"] == "summary" and find_all(details, "table", id="confusion-table")

    head, *body = table_rows(find_all(boxes["Per class"], "table")[0])
    assert head == [("th", "col", c) for c in ("class", "precision", "recall (accuracy)", "F1", "support")]
    assert [row[0] for row in body] == [("th", "row", n) for n in metrics["per_class"]]
    assert [float(row[2][2]) for row in body] == [metrics["per_class"][n]["recall"] for n in names]
    head, *body = table_rows(find_all(boxes["Metrics"], "table")[0])
    assert body[0] == [("th", "row", "accuracy"), ("td", None, f"{100 * metrics['accuracy']:.2f}%")]
    assert all(row[0][:2] == ("th", "row") for row in body)

    # Each summary picture's alt describes it (not its caption again); the confusion matrix's points at the table.
    figures = {f["children"][0]["attrs"]["id"]: f for f in find_all(root, "figure")}
    assert set(figures) == {"confusion-matrix", "per-class-accuracy", "gallery"}
    for figure in figures.values():
        assert len(figure["children"][0]["attrs"]["alt"]) > 2 * len(find_all(figure, "figcaption")[0]["text"])
    assert "counts in the table below" in figures["confusion-matrix"]["children"][0]["attrs"]["alt"]
    # Small text reaches 4.5:1 on white (#777 was 4.48:1); on a small or zoomed screen the filter bar scrolls away.
    assert ".muted { color: #666; }" in page and "#777" not in page
    assert "@media (max-width: 600px), (max-height: 500px) { .filters { position: static; } }" in page


def metrics_of_classes(n, confusions=()):
    """metrics.json for n classes c0..c{n-1}, 10 images each, all right but for `confusions`: (true, pred, count)."""
    cm = np.diag(np.full(n, 10))
    for i, j, count in confusions:
        cm[i, i] -= count
        cm[i, j] += count
    names = [f"c{k}" for k in range(n)]
    row = {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 10}
    return {
        "accuracy": float(np.trace(cm) / cm.sum()), "macro_precision": 1.0, "macro_recall": 1.0, "macro_f1": 1.0,
        "num_examples": int(cm.sum()), "labels": names, "per_class": {name: row for name in names},
        "confusion_matrix": cm.tolist(),
    }


def test_a_report_of_many_classes_lists_the_most_frequent_confusions_instead_of_the_whole_matrix(tmp_path):
    """The confusion table had classes² cells: 1000 classes made a 10 MB page. Up to 100 classes the table is
    whole; above, it lists the 20 largest off-diagonal counts (largest first) and says metrics.json holds the
    matrix."""
    (tmp_path / "misclassified.csv").write_text("index\n")
    (tmp_path / "confusion_matrix.png").write_bytes(b"")  # an empty picture: only its alt is looked at
    confusions = [(k, (k * 7 + 1) % 1000, 1 + k % 9) for k in range(0, 1000, 13)]  # 77, counts 1..9 with ties
    page = write_report(tmp_path, metrics=metrics_of_classes(1000, confusions)).read_text()
    assert len(page) < 500_000, len(page)
    root = parse_page(page)
    box = find_all(root, "div", **{"class": "scroll"}, **{"aria-label": "Most frequent confusions"})[0]
    table = find_all(box, "table", id="confusion-table")[0]
    head, *body = table_rows(table)
    assert head == [("th", "col", "true class"), ("th", "col", "predicted class"), ("th", "col", "count")]
    expected = sorted(confusions, key=lambda c: (-c[2], c[0]))[:20]
    assert [[text for _, _, text in row] for row in body] == [[f"c{i}", f"c{j}", str(n)] for i, j, n in expected]
    assert all(row[0][:2] == ("th", "row") for row in body)
    assert find_all(table, "caption")[0]["text"] == "The 20 most frequent confusions (true class taken for another)"
    details = find_all(root, "details")[0]
    assert "metrics.json holds the full matrix" in details["text"] and "1,000,000 cells" in details["text"]
    alt = find_all(root, "img", id="confusion-matrix")[0]["attrs"]["alt"]
    assert "the most frequent confusions in the table below, every count in metrics.json" in alt

    # 100 classes: the whole matrix; none confused: the short table says so.
    whole = parse_page(write_report(tmp_path, metrics=metrics_of_classes(100)).read_text())
    assert len(table_rows(find_all(whole, "table", id="confusion-table")[0])) == 101
    page = write_report(tmp_path, metrics=metrics_of_classes(101)).read_text()
    assert "No confusions: every image was classified as its true class." in page


def test_a_report_names_the_most_frequent_confusions_each_a_link_that_filters_the_cards_to_it(tmp_path):
    """The lesson's last goal is to study the failures: which classes does the model mix up? The report answered
    only in a classes x classes table folded away. Now a line under the pictures names the five largest confusions,
    largest first, each linking to report.html#true=...&pred=..., which the page's filters read (names escaped)."""
    from urllib.parse import parse_qs

    (tmp_path / "misclassified.csv").write_text("index\n")
    confusions = [(3, 5, 4), (5, 3, 2), (9, 1, 3), (2, 0, 1), (4, 7, 1), (6, 8, 1)]
    metrics = metrics_of_classes(10, confusions)
    names = metrics["labels"] = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "t-shirt & top", "ship", "truck"]
    metrics["per_class"] = dict(zip(names, metrics["per_class"].values()))
    root = parse_page(write_report(tmp_path, metrics=metrics).read_text())
    line = find_all(root, "p", id="top-confusions")[0]
    links = find_all(line, "a")
    assert [a["text"] for a in links] == [
        "cat taken for dog", "truck taken for car", "dog taken for cat", "bird taken for plane",
        "deer taken for t-shirt & top",
    ]
    assert [parse_qs(a["attrs"]["href"].removeprefix("#")) for a in links][-1] == {"true": ["deer"],
                                                                                    "pred": ["t-shirt & top"]}
    assert "cat taken for dog (4, 40.0% of cat)" in line["text"]
    options = {o["attrs"]["value"] for o in find_all(root, "select", id="filter-pred")[0]["children"]}
    assert {parse_qs(a["attrs"]["href"][1:])["pred"][0] for a in links} <= options  # the filter can take each
    # none confused: no line
    page = write_report(tmp_path, metrics=metrics_of_classes(10)).read_text()
    assert 'id="top-confusions"' not in page


def png_size(path):
    with Image.open(path) as im:
        return im.size


def test_report_cards_are_a_list_with_headings_alts_and_image_sizes_and_the_count_is_announced(evaluated):
    """Each card is a list item that starts with a heading; its images' alts name the image's labels and the
    attention panels; every <img> carries its PNG's real size (no layout shift); the filter count is a live region."""
    out = evaluated["out"]
    page = (out / "report.html").read_text()
    root = parse_page(page)
    rows = sorted(read_csv(out / "misclassified.csv"), key=lambda r: -float(r["confidence"]))
    main = find_all(root, "main")[0]
    assert main["children"][0]["tag"] == "h1" and find_all(main, "ul", id="cards")

    cards = find_all(root, "ul", id="cards")[0]
    assert cards["attrs"]["aria-label"] == "Misclassified images"
    assert [c["tag"] for c in cards["children"]] == ["li"] * len(rows) and not find_all(root, "template")
    for card, row in zip(cards["children"], rows):
        i, true, pred = row["index"], row["true_label"], row["predicted_label"]
        heading = card["children"][0]
        assert (heading["tag"], heading["text"]) == ("h3", f"#{i}: {true}, predicted {pred} "
                                                            f"({100 * float(row['confidence']):.1f}%)")
        thumb, att = find_all(card, "img", **{"class": "thumb"})[0], find_all(card, "img", **{"class": "att"})[0]
        assert thumb["attrs"]["alt"] == f"test image #{i}, labelled {true}"
        assert att["attrs"]["alt"].startswith(f"attention maps of #{i}: the image, the attention rollout")
        assert att["attrs"]["alt"].endswith(hf_vit.report.ATTENTION_KEY)  # the colour key, as the page's text says
    images = find_all(root, "img")
    assert len(images) == 2 * len(rows) + 3
    for img in images:
        src = img["attrs"]["src"]
        size = png_size(out / f"{img['attrs']['id'].replace('-', '_')}.png" if src.startswith("data:") else out / src)
        assert (int(img["attrs"]["width"]), int(img["attrs"]["height"])) == size, src[:40]

    status = find_all(root, role="status")[0]
    assert (status["attrs"]["aria-live"], status["attrs"]["aria-atomic"]) == ("polite", "true")
    assert " ".join(status["text"].split()).startswith(f"showing {len(rows)} of {len(rows)} mistakes")
    assert find_all(status, id="shown-count")[0]["text"] == f"{len(rows)} of {len(rows)}"
    no_match = find_all(status, id="no-match")[0]
    assert "hidden" in no_match["attrs"] and no_match["text"].strip() == "No mistakes match these filters."
    # The page reflows down to 320 CSS px: no fixed card width; the attention strip shows at its natural size
    # (scaled down only to fit), not squeezed to 300 px; only the tiny thumbnail is drawn with hard pixels.
    assert [w for w in re.findall(r"(?<![-\w])width: (\d+)px", page) if int(w) > 100] == []  # was 430px, 300px
    assert ".card .att { max-width: 100%; height: auto; }" in page
    style = page.split("<style>", 1)[1].split("</style>", 1)[0]  # the rules alone: over the whole page the
    assert re.findall(r"([^{}]*)\{[^}]*pixelated", style) == ["\n.card .thumb "]  # pattern took 90 s (quadratic)
    assert page.count("pixelated") == 1  # and nowhere outside that rule


def test_a_report_with_pictures_cut_short_is_written_without_their_sizes(evaluated, tmp_path):
    """A PNG cut off inside its header's size field (bytes 17-23) crashed write_report with struct.error; now it
    gets no width/height, like a picture that cannot be read, and the other pictures keep theirs."""
    folder = tmp_path / "evaluation"
    shutil.copytree(evaluated["out"], folder)
    rows = sorted(read_csv(folder / "misclassified.csv"), key=lambda r: -float(r["confidence"]))
    cut = ((folder / rows[0]["image"], 20), (folder / rows[1]["attention"], 23), (folder / "gallery.png", 17))
    for path, length in cut:
        path.write_bytes(path.read_bytes()[:length])
    root = parse_page(write_report(folder).read_text())
    cards = find_all(root, "ul", id="cards")[0]["children"]
    thumb, other_thumb = (find_all(card, "img", **{"class": "thumb"})[0] for card in cards[:2])
    att, other_att = (find_all(card, "img", **{"class": "att"})[0] for card in (cards[1], cards[0]))
    gallery = find_all(root, "img", id="gallery")[0]
    assert [("width" in img["attrs"]) for img in (thumb, att, gallery, other_thumb, other_att)] == [
        False, False, False, True, True]


def _without_record(evaluated, tmp_path, key: str, value) -> Path:
    """A copy of the evaluation folder as an older evaluation wrote it: metrics.json without evaluation.`key`
    (which a new one records as `value`)."""
    saved = json.loads((evaluated["out"] / "metrics.json").read_text())
    assert saved["evaluation"][key] == value
    folder = tmp_path / "evaluation"
    shutil.copytree(evaluated["out"], folder)
    del saved["evaluation"][key]
    (folder / "metrics.json").write_text(json.dumps(saved))
    return folder


def test_a_report_rebuilt_from_an_older_evaluation_does_not_claim_the_new_colour_key(evaluated, tmp_path):
    """The evaluation records its attention colour scale; a report rebuilt from a folder without that record
    (pictures perhaps on the older blue -> red scale) stated the inferno key (black = least, pale yellow = most)."""
    folder = _without_record(evaluated, tmp_path, "attention_colours", "inferno")
    for metrics, key in ((None, hf_vit.report.UNRECORDED_KEY), (evaluated["metrics"], hf_vit.report.ATTENTION_KEY)):
        page = write_report(folder, metrics=metrics).read_text()
        root = parse_page(page)
        alts = [img["attrs"]["alt"] for img in find_all(root, "img", **{"class": "att"})]
        assert alts and all(alt.endswith(key) for alt in alts)
        # the fixture pools by mean: its maps follow the mean (test_the_report_says_what_the_attention_maps_follow)
        assert f"(all tokens' rows averaged); {key})." in " ".join(find_all(root, "main")[0]["text"].split())
        assert ("pale yellow" in page) == (key == hf_vit.report.ATTENTION_KEY)


def test_a_report_rebuilt_from_an_older_evaluation_does_not_claim_one_block_per_patch(evaluated, tmp_path):
    """Attention strips are now drawn as one flat block per patch beside the image, and the report's alt text said
    so for every folder: a report rebuilt (write_report) from an evaluation made before, whose strips blend the map
    over the image, described pictures it does not hold. The evaluation records how it drew them, and the page
    says "one block per patch" only where that record says so."""
    folder = _without_record(evaluated, tmp_path, "attention_layout", "blocks")
    for metrics, blocks in ((None, False), (evaluated["metrics"], True)):
        root = parse_page(write_report(folder, metrics=metrics).read_text())
        alts = [img["attrs"]["alt"] for img in find_all(root, "img", **{"class": "att"})]
        assert alts and all(("side by side, one block per patch;" in alt) == blocks for alt in alts), alts[0]
        assert all("side by side" in alt for alt in alts)


def test_a_report_of_many_mistakes_writes_200_cards_and_keeps_the_rest_for_show_more(evaluated, tmp_path):
    """9,000 mistakes made a 4.7 MB page of 108k elements: now the first 200 cards are on the page, the others in
    a <template> that the "Show 200 more" button (or a filter) brings in, in the same order."""
    folder = tmp_path / "evaluation"
    shutil.copytree(evaluated["out"], folder)
    rows = many_mistakes(folder, 450)
    root = parse_page((folder / "report.html").read_text())
    cards = find_all(root, "ul", id="cards")[0]["children"]
    later = find_all(root, "template", id="more-cards")[0]["children"]
    assert [c["attrs"]["data-index"] for c in cards + later] == [r["index"] for r in rows]  # most confident first
    assert len(cards) == 200 and all(c["tag"] == "li" and c["attrs"]["class"] == "card" for c in later)
    button = find_all(root, "button", id="show-more")[0]
    assert (button["attrs"]["type"], button["text"]) == ("button", "Show 200 more")
    assert "misclassified.csv" in find_all(root, "p")[-1]["text"]
    assert find_all(root, id="shown-count")[0]["text"] == "200 of 450"


def many_mistakes(folder, n):
    """Rewrite the evaluation's misclassified.csv as n mistakes (its rows repeated, with new indices and falling
    confidences) and write the report; returns the rows, most confident first."""
    base = read_csv(folder / "misclassified.csv")
    rows = [{**base[i % len(base)], "index": str(i), "confidence": f"{0.99 - i / (2 * n):.6f}"} for i in range(n)]
    with open(folder / "misclassified.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(base[0]))
        writer.writeheader()
        writer.writerows(rows[::-1])  # any order in the file: the report sorts
    write_report(folder)
    return rows


def test_script_offline_hub_dataset_names_the_local_copy(evaluated, tmp_path, capsys, monkeypatch):
    """The default dataset is a Hub id; offline (forced here with HF_HUB_OFFLINE, an empty Hugging Face cache: the
    only thing mocked is the network to the Hub), the script says to pass a local copy. The real script runs as
    __main__ in this process (a fresh one cost a start of torch): the libraries read HF_HUB_OFFLINE and the cache
    folders when they were imported, so their values are set where they read them."""
    import runpy

    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf" / "datasets")
    script = REPO / "scripts/evaluate_model.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--model", str(evaluated["model_dir"]), "--output_dir",
                                      str(tmp_path / "o"), "--no_progress"])  # fmt: skip
    with pytest.raises(SystemExit) as end:  # any other exception (a traceback in a run) fails the test here
        runpy.run_path(str(script), run_name="__main__")
    assert end.value.code not in (None, 0)
    stderr = capsys.readouterr().err + str(end.value.code)  # what Python prints of a sys.exit("...") on stderr
    assert "uoft-cs/cifar10" in stderr and "--dataset ../shared/data/cifar10" in stderr, stderr[-2000:]
    assert "Traceback" not in stderr


# ---------------------------------------------------------------------------
# The report in a real headless Chromium, driven over the DevTools protocol
# (--remote-debugging-pipe: JSON messages on fds 3/4, Python's stdlib only).
# ---------------------------------------------------------------------------
CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


class Chromium:
    def __init__(self, user_data_dir: Path):
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()
        # Chromium's ends move above 9 first, so that placing them on 3 and 4 cannot clobber one another.
        to_chrome_r, from_chrome_w = (self._above_9(fd) for fd in (to_chrome_r, from_chrome_w))
        args = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--remote-debugging-pipe", f"--user-data-dir={user_data_dir}", "about:blank",
        ]
        # Chromium reads commands on fd 3 and writes on fd 4; bash moves the pipe ends there (dash only knows fds 0-9).
        script = f'exec "$0" "$@" 3<&{to_chrome_r} 4>&{from_chrome_w} {to_chrome_r}<&- {from_chrome_w}>&-'
        self.proc = subprocess.Popen(
            ["bash", "-c", script, CHROMIUM, *args], pass_fds=(to_chrome_r, from_chrome_w),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buffer, self.next_id, self.session = b"", 0, None

    @staticmethod
    def _above_9(fd):
        high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
        os.close(fd)
        return high

    def send(self, method, params=None, session=True, timeout=30):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self.next_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply["result"]
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.from_chrome], [], [], left)[0]:
                raise TimeoutError(f"Chromium did not answer {method} in {timeout} s")
            chunk = os.read(self.from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self.buffer += chunk

    def open(self, url):
        """A new tab (its own page, session and emulated screen) at `url`."""
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.target = target
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)[
            "sessionId"
        ]
        self.send("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete' && !!document.getElementById('cards')")

    def eval(self, expression):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression, timeout=20):
        deadline = time.monotonic() + timeout
        while not self.eval(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"page never satisfied: {expression}")
            time.sleep(0.1)

    def close_tab(self):
        """Close the tab `open` made: the next test's tab starts afresh in the same browser."""
        if self.session:
            self.send("Target.closeTarget", {"targetId": self.target}, session=False)
            self.session = None

    def close(self):
        try:
            self.send("Browser.close", session=False, timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self.to_chrome)
        os.close(self.from_chrome)


VISIBLE_CARDS = "Array.from(document.querySelectorAll('#cards .card')).filter(c => c.offsetParent !== null)"


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    """One headless Chromium for the report tests below (a start and close each cost ~1 s); each opens its own tab
    and closes it when done."""
    browser = Chromium(tmp_path_factory.mktemp("chromium") / "profile")
    yield browser
    browser.close()


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian: apt-get install chromium); .ci/run installs it")
def test_report_in_headless_chromium(evaluated, chromium):
    out = evaluated["out"]
    report = write_report(out)  # rewriting it from the folder's files alone works too
    rows = read_csv(out / "misclassified.csv")
    metrics = json.loads((out / "metrics.json").read_text())
    browser = chromium
    try:
        browser.open(report.as_uri())
        # The metrics are rendered.
        table = browser.eval("document.getElementById('metrics').innerText")
        assert f"{100 * metrics['accuracy']:.2f}%" in table and str(metrics["num_examples"]) in table
        assert "truck" in browser.eval("document.getElementById('per-class').innerText")
        # The gallery is shown: decoded, at its real size, and laid out on the page.
        browser.wait_for("document.getElementById('gallery').complete")
        with Image.open(out / "gallery.png") as g:
            assert browser.eval("document.getElementById('gallery').naturalWidth") == g.width
        assert browser.eval("document.getElementById('gallery').getBoundingClientRect().height") > 50
        # A card per mistake, most confident first; a card's image (a relative path) loads from disk.
        assert browser.eval(f"{VISIBLE_CARDS}.length") == len(rows)
        shown = browser.eval(f"{VISIBLE_CARDS}.map(c => parseFloat(c.dataset.confidence))")
        assert shown == sorted(shown, reverse=True)
        browser.eval("document.querySelector('#cards .card img.thumb').scrollIntoView()")
        browser.wait_for("(i => i.complete && i.naturalWidth === 32)(document.querySelector('#cards .card img.thumb'))")

        # Filter by true class: only that class's mistakes remain.
        def choose(select_id, value):
            browser.eval(
                f"(s => {{ s.value = {json.dumps(value)}; s.dispatchEvent(new Event('change')); }})"
                f"(document.getElementById({json.dumps(select_id)}))"
            )

        choose("filter-true", "cat")
        cats = [r for r in rows if r["true_label"] == "cat"]
        assert 0 < len(cats) < len(rows)
        assert browser.eval(f"{VISIBLE_CARDS}.map(c => c.dataset.index)") == [
            r["index"] for r in sorted(cats, key=lambda r: -float(r["confidence"]))
        ]
        # The count is of the cards that match (it said "4 of 21": of every mistake).
        assert browser.eval("document.getElementById('shown-count').textContent") == f"{len(cats)} of {len(cats)}"
        # Both filters: a combination with no mistakes shows nothing.
        choose("filter-pred", "truck")
        assert browser.eval(f"{VISIBLE_CARDS}.length") == 0
        choose("filter-true", "")
        choose("filter-pred", "")
        assert browser.eval(f"{VISIBLE_CARDS}.length") == len(rows)

        # A filter in the URL (a link to "all dogs") is applied on load.
        browser.send("Page.navigate", {"url": report.as_uri() + "#true=dog"})
        browser.wait_for("document.getElementById('filter-true').value === 'dog'")
        dogs = [r for r in rows if r["true_label"] == "dog"]
        assert browser.eval(f"{VISIBLE_CARDS}.length") == len(dogs) > 0
    finally:
        browser.close_tab()


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian: apt-get install chromium); .ci/run installs it")
def test_report_show_more_filters_and_narrow_screens_in_headless_chromium(evaluated, tmp_path, chromium):
    """650 mistakes: 200 cards shown, "Show 200 more" adds the next ones in order and moves the focus to the first
    of them (the last click hides the button: focus was lost), a filter looks at every card (also those not on the
    page yet) and counts those that match, and a 320 px wide screen needs no sideways scrolling."""
    folder = tmp_path / "evaluation"
    shutil.copytree(evaluated["out"], folder)
    rows = many_mistakes(folder, 650)
    report = folder / "report.html"
    browser = chromium
    shown = f"{VISIBLE_CARDS}.map(c => c.dataset.index)"
    text = lambda element_id: browser.eval(f"document.getElementById('{element_id}').textContent")  # noqa: E731
    button_shown = "document.getElementById('show-more').offsetParent !== null"
    # The focused element: a card (by index) that took focus from the script (tabIndex -1), or else its tag.
    focused = "(a => a.matches('#cards .card') && a.tabIndex === -1 ? a.dataset.index : a.tagName)" \
        "(document.activeElement)"
    try:
        browser.open(report.as_uri())
        assert browser.eval(shown) == [r["index"] for r in rows[:200]]
        assert (text("shown-count"), text("show-more")) == ("200 of 650", "Show 200 more")
        assert browser.eval(button_shown)
        for on_page, button in ((400, "Show 200 more"), (600, "Show 50 more")):
            browser.eval("document.getElementById('show-more').focus(); document.getElementById('show-more').click()")
            assert browser.eval(shown) == [r["index"] for r in rows[:on_page]]
            assert (text("shown-count"), text("show-more")) == (f"{on_page} of 650", button)
            assert browser.eval(focused) == rows[on_page - 200]["index"]
        browser.eval("document.getElementById('show-more').focus(); document.getElementById('show-more').click()")
        assert browser.eval(shown) == [r["index"] for r in rows] and not browser.eval(button_shown)
        assert browser.eval(focused) == rows[600]["index"]  # not the hidden button, nor the page (BODY)

        # A filter counts every card, those still in the template too, and shows the first 200 that match.
        label = collections.Counter(r["true_label"] for r in rows).most_common(1)[0][0]
        browser.send("Page.navigate", {"url": report.as_uri() + "#true=" + label})
        browser.wait_for(f"document.getElementById('filter-true').value === {json.dumps(label)}")
        matching = [r["index"] for r in rows if r["true_label"] == label]
        assert len(matching) > 200 and int(matching[199]) >= 200  # some of the first 200 were in the template
        assert browser.eval(shown) == matching[:200] and text("shown-count") == f"200 of {len(matching)}"
        browser.eval("document.getElementById('show-more').click()")
        assert browser.eval(shown) == matching[:400]
        choose = "(s => {{ s.value = '{}'; s.dispatchEvent(new Event('change')); }})(document.getElementById('{}'))"
        browser.eval(choose.format("truck", "filter-pred"))
        assert browser.eval(shown) == [] and text("shown-count") == "0 of 0"
        assert browser.eval("document.getElementById('no-match').offsetParent !== null")
        browser.eval(choose.format("", "filter-pred"))
        browser.eval(choose.format("", "filter-true"))
        assert browser.eval(shown) == [r["index"] for r in rows[:200]]  # the cards brought in keep their places
        assert not browser.eval("document.getElementById('no-match').offsetParent !== null")

        # The attention strip at its natural size on a wide screen; nothing wider than a 320 px screen.
        first_att = "document.querySelector('#cards .card img.att')"
        browser.eval(f"{first_att}.scrollIntoView()")
        browser.wait_for(f"{first_att}.complete && {first_att}.naturalWidth > 0")
        assert browser.eval(f"{first_att}.getBoundingClientRect().width") == browser.eval(f"{first_att}.naturalWidth")
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": 320, "height": 640, "deviceScaleFactor": 1, "mobile": False})
        assert browser.eval("document.documentElement.scrollWidth") <= 320
        assert browser.eval("getComputedStyle(document.querySelector('.filters')).position") == "static"
    finally:
        browser.close_tab()


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian: apt-get install chromium); .ci/run installs it")
def test_a_cards_thumbnail_keeps_the_images_proportions_in_headless_chromium(evaluated, tmp_path, chromium):
    """The thumbnail box is 64 x 64 px: a mistake of a dataset whose images are not square (here 64 x 32, all red)
    was stretched to fill it, so the card showed another picture than misclassified/ holds. Now it is fitted into
    the box whole (object-fit: contain): the box's top and bottom quarters show the card's white background."""
    import base64
    import io

    folder = tmp_path / "evaluation"
    shutil.copytree(evaluated["out"], folder)
    first = sorted(read_csv(folder / "misclassified.csv"), key=lambda r: -float(r["confidence"]))[0]
    Image.new("RGB", (64, 32), (255, 0, 0)).save(folder / first["image"])
    thumb = "document.querySelector('#cards .card img.thumb')"
    try:
        chromium.open(write_report(folder).as_uri())
        chromium.eval(f"{thumb}.scrollIntoView()")
        chromium.wait_for(f"{thumb}.complete && {thumb}.naturalWidth === 64")
        # the clip is in page coordinates: the box's place in the viewport plus the scroll
        box = chromium.eval(f"(r => ({{x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height}}))"
                            f"({thumb}.getBoundingClientRect())")  # fmt: skip
        assert (box["width"], box["height"]) == (64, 64)
        shot = chromium.send("Page.captureScreenshot", {"format": "png", "clip": {**box, "scale": 1}})["data"]
        pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(shot))).convert("RGB")).astype(int)
        red = (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)
        assert red[20:44].all(), "the image's rows"
        assert not red[:12].any() and not red[-12:].any(), "stretched to the box's full height"
    finally:
        chromium.close_tab()


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian: apt-get install chromium); .ci/run installs it")
def test_report_long_class_names_fit_a_narrow_screen_and_no_mistakes_say_so_in_headless_chromium(evaluated, tmp_path, chromium):
    """A class name of 90 characters without a space widened the page past a 320 px screen (its <select> and the
    cards' headings), as did a long model path in the title and meta line (even pytest's own
    /tmp/pytest-of-root/pytest-1075/eval0/model did); a split without mistakes said "No mistakes match these
    filters."."""
    folder, long = tmp_path / "evaluation", "Felis_silvestris_catus_" * 4
    rows, metrics = copy_with_a_class_renamed(evaluated["out"], folder, long)
    # The title and meta line name the model: a long folder path as unbroken as the class name.
    metrics["model"] = "/home/learner/experiments/" + "vit_cifar10_small_patch4_mean_pool_" * 3 + "run/model"
    long_page = write_report(folder, metrics=metrics)
    none_folder = tmp_path / "none"
    none_folder.mkdir()
    (none_folder / "misclassified.csv").write_text(",".join(rows[0]) + "\n")
    (none_folder / "metrics.json").write_text(json.dumps(metrics))
    none_page = write_report(none_folder)
    browser = chromium
    try:
        browser.open(long_page.as_uri())
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": 320, "height": 640, "deviceScaleFactor": 1, "mobile": False})
        assert browser.eval(f"{VISIBLE_CARDS}.filter(c => c.dataset.true === {json.dumps(long)}).length") > 0
        assert browser.eval("document.documentElement.scrollWidth") <= 320
        wider = "Array.from(document.querySelectorAll('.filters *, .card *'))" \
            ".filter(e => e.getBoundingClientRect().right > 320).map(e => e.tagName)"
        assert browser.eval(wider) == []

        browser.send("Page.navigate", {"url": none_page.as_uri()})
        browser.wait_for("location.pathname.endsWith('/none/report.html') && document.readyState === 'complete'")
        message = "(b => b.offsetParent !== null ? b.textContent.trim() : null)(document.getElementById('no-match'))"
        assert browser.eval(message) == "The model made no mistakes on this split."
        assert browser.eval("document.getElementById('shown-count').textContent") == "0 of 0"
    finally:
        browser.close_tab()


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian: apt-get install chromium); .ci/run installs it")
def test_a_confusion_link_brings_its_mistakes_into_view_in_headless_chromium(evaluated, chromium):
    """The links of the most frequent confusions (#true=cat&pred=dog) filtered the cards a screen or more below
    them without scrolling: the reader, still at the link, saw nothing change. Clicked (a real mouse click), a link
    now brings the filtered cards into view, first card focused; clicked again after scrolling away, it brings them
    back; the back button clears the filter and returns to the link. On a 320 px screen too."""
    rows = sorted(read_csv(evaluated["out"] / "misclassified.csv"), key=lambda r: -float(r["confidence"]))
    cat_as_dog = [r["index"] for r in rows if (r["true_label"], r["predicted_label"]) == ("cat", "dog")]
    link = "document.querySelector('#top-confusions a')"
    # where an element is: 'in' the upper half of the viewport (where a reader looks after a click), or not
    where = "(r => r.top >= 0 && r.top < innerHeight / 2 ? 'in' : 'not in view')({}.getBoundingClientRect())"
    first_card = f"{VISIBLE_CARDS}[0]"
    browser = chromium

    def click(element):
        box = browser.eval(f"(r => [r.x + r.width / 2, r.y + r.height / 2])({element}.getBoundingClientRect())")
        for kind in ("mousePressed", "mouseReleased"):
            browser.send("Input.dispatchMouseEvent",
                         {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1})

    try:
        browser.open((evaluated["out"] / "report.html").as_uri())
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": 1200, "height": 800, "deviceScaleFactor": 1, "mobile": False})
        assert browser.eval(f"{link}.textContent") == "cat taken for dog" and len(cat_as_dog) > 0
        # The reader reaches the line under the pictures: the link at the foot of the screen, the cards below.
        browser.eval(f"{link}.scrollIntoView({{block: 'end'}})")
        assert browser.eval(f"{first_card}.getBoundingClientRect().top") > browser.eval("innerHeight")
        click(link)
        browser.wait_for("document.getElementById('filter-pred').value === 'dog'")  # after the hashchange
        assert browser.eval(f"{VISIBLE_CARDS}.map(c => c.dataset.index)") == cat_as_dog
        assert browser.eval(where.format(first_card)) == "in"
        assert browser.eval(where.format("document.querySelector('.filters')")) == "in"  # what is filtered, and how
        assert browser.eval("document.activeElement.dataset.index") == cat_as_dog[0]
        # The same link again, once scrolled away: no hash changes, the cards come back all the same.
        browser.eval(f"{link}.scrollIntoView({{block: 'end'}})")
        click(link)
        assert browser.eval(where.format(first_card)) == "in" and browser.eval("location.hash") == "#true=cat&pred=dog"
        # Back: every mistake again, and the page where the reader clicked.
        browser.eval("history.back()")
        browser.wait_for("document.getElementById('filter-pred').value === ''")
        assert browser.eval(f"{VISIBLE_CARDS}.length") == len(rows)
        assert browser.eval(f"(r => r.top >= 0 && r.bottom <= innerHeight)({link}.getBoundingClientRect())")
        # A phone's screen: the filters do not stick there, the cards still come into view.
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": 320, "height": 640, "deviceScaleFactor": 1, "mobile": False})
        browser.eval(f"{link}.scrollIntoView({{block: 'end'}})")
        click(link)
        browser.wait_for("document.getElementById('filter-pred').value === 'dog'")  # after the hashchange
        assert browser.eval(where.format(first_card)) == "in"
    finally:
        browser.close_tab()


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian: apt-get install chromium); .ci/run installs it")
def test_a_class_the_evaluation_lacks_in_the_address_is_said_in_headless_chromium(evaluated, chromium):
    """report.html#true=nonesuch (a typo, a link made for another evaluation) showed every card without a word: the
    reader took them for that class's mistakes. Now the line under the filters names the class and says its filter
    is off, and the page opens there, as for a known class; a known class beside it still filters; the reader's own choice in a <select> clears the line."""
    rows = read_csv(evaluated["out"] / "misclassified.csv")
    report = (evaluated["out"] / "report.html").as_uri()
    said = "(b => b.offsetParent !== null ? b.textContent.trim() : null)(document.getElementById('unknown-class'))"
    browser = chromium
    try:
        browser.open(report + "#true=nonesuch")
        assert browser.eval(f"{VISIBLE_CARDS}.length") == len(rows)
        # the line is in view (a filter from the address scrolls to the filters: this one too)
        assert browser.eval("(r => r.top >= 0 && r.bottom <= innerHeight)"
                            "(document.getElementById('unknown-class').getBoundingClientRect())")
        assert browser.eval(said) == ('The address asks for true class "nonesuch", which this evaluation has no class '
                                      "called: that filter is off.")
        browser.eval("location.hash = 'true=cat&pred=Dog'")  # a hashchange; class names are case-sensitive
        browser.wait_for("document.getElementById('filter-true').value === 'cat'")
        assert browser.eval(f"{VISIBLE_CARDS}.length") == sum(r["true_label"] == "cat" for r in rows) > 0
        assert browser.eval(said) == ('The address asks for predicted class "Dog", which this evaluation has no '
                                      "class called: that filter is off.")
        browser.eval("(s => { s.value = 'dog'; s.dispatchEvent(new Event('change')); })"
                     "(document.getElementById('filter-pred'))")
        assert browser.eval(said) is None and browser.eval("location.hash") == "#true=cat&pred=dog"
        browser.eval("location.hash = 'true=cat'")  # a known class alone: nothing to say
        browser.wait_for("document.getElementById('filter-pred').value === ''")
        assert browser.eval(said) is None
    finally:
        browser.close_tab()


def test_attention_maps_with_nan_weights_are_named_in_the_note(evaluated, tmp_path):
    """A model whose attention weights overflow (NaN, e.g. in fp16) got flat one-colour maps and no word on why:
    the evaluation's attention note now counts them. The model is real; a forward hook puts NaN into the last
    block's returned attention weights, as an overflow would, and leaves its output alone."""
    from hf_vit.analysis import BatchPreprocessor, _attention_maps

    model, processor = make_controlled_model(tmp_path / "model", evaluated["data_dir"])
    test = evaluated["test"]
    out = tmp_path / "out"
    (out / "attention").mkdir(parents=True)
    rows = []
    for i in (0, 1, 2):
        test[i]["img"].convert("RGB").save(out / f"{i}.png")
        rows.append({"index": i, "image": f"{i}.png", "true_label": "cat", "predicted_label": "dog", "confidence": 0.5})
    args = (test, rows, "img", BatchPreprocessor(processor, 3), 2, "cpu", out, False)
    model.eval()
    with torch.no_grad():
        clean = _attention_maps(model, *args)
        hook = model.vit.transformer.layers[-1].attn.register_forward_hook(
            lambda module, inputs, output: (output[0], None if output[1] is None else torch.full_like(output[1], float("nan")))
        )
        poisoned = _attention_maps(model, *args)
        hook.remove()
    assert "NaN" not in clean
    assert poisoned.endswith(
        "3 of 3 attention maps hold NaN or infinite weights (an overflow in the model, e.g. in fp16): they are drawn, "
        "but their colours say nothing about attention."
    )
    assert sorted(p.name for p in (out / "attention").iterdir()) == ["0.png", "1.png", "2.png"]


def test_the_evaluations_attention_strips_follow_what_the_head_reads_by_its_pool(evaluated, tmp_path):
    """The strips drew the [CLS] row for every model, and a mean-pooled one (the cpu recipe's) got only a note
    that its head does not read [CLS]. Now they follow config.pool: for "mean" the rollout panel is the mean of
    all N+1 rows of the rollout, the last-layer panel the mean of all rows of the last attention (heads averaged);
    for "cls" [CLS]'s rows. Computed here by hand from output_attentions of the same (real) model."""
    from hf_vit.analysis import _attention_maps
    from hf_vit.attention_maps import heat_map_image

    model, processor = make_controlled_model(tmp_path / "model", evaluated["data_dir"])
    with torch.no_grad():  # sharper attention: [CLS]'s row and the mean row differ (the output stays: to_out is 0)
        model.vit.transformer.layers[0].attn.to_qkv.weight.mul_(25)
    test = evaluated["test"]
    image = test[0]["img"].convert("RGB")
    with torch.no_grad():
        pixels = processor(images=image, return_tensors="pt")["pixel_values"]
        a = model(pixel_values=pixels, output_attentions=True).attentions[0][0].double().mean(dim=0).numpy()
    flow = (a + np.eye(17)) / 2  # one block: the rollout is its (A + I) / 2, rows renormalised
    flow /= flow.sum(axis=1, keepdims=True)
    drawn = {}
    for pool in ("mean", "cls"):
        model.config.pool = pool  # read at each call, as after save and reload
        out = tmp_path / pool
        (out / "attention").mkdir(parents=True)
        image.save(out / "0.png")
        rows = [{"index": 0, "image": "0.png", "true_label": "cat", "predicted_label": "dog", "confidence": 0.5}]
        note = _attention_maps(model, test, rows, "img", BatchPreprocessor(processor, 3), 1, "cpu", out, False)
        assert ("pools by mean" in note) == (pool == "mean"), note
        read = (lambda m: m[0]) if pool == "cls" else (lambda m: m.mean(axis=0))  # the row(s) the head reads
        strip = np.asarray(Image.open(out / rows[0]["attention"]).convert("RGB")).astype(int)
        drawn[pool] = strip
        for k, heat in ((1, read(flow)), (2, read(a))):  # rollout, last layer: 32 px images drawn at 128 px
            x0 = 4 + k * (128 + 4)
            want = np.asarray(heat_map_image(heat[1:].reshape(4, 4), (128, 128))).astype(int)
            assert np.abs(strip[18 : 18 + 128, x0 : x0 + 128] - want).max() <= 1, (pool, k)
    assert np.abs(drawn["mean"][18:146, 136:] - drawn["cls"][18:146, 136:]).max() > 50  # the two tell apart


def test_the_report_says_what_the_attention_maps_follow(evaluated, tmp_path):
    """The cards' alts and the paragraph above them called every map "the last layer's [CLS] attention"; the
    evaluation now records what its maps follow (evaluation.attention_follows, from config.pool) and the report
    says it: the fixture's model pools by mean. A folder from before the record drew [CLS] maps: said so."""
    mean = ("the attention rollout through all layers into the mean-pooled vector the head reads (the mean of all "
            "tokens' rollout rows), and the last layer's attention into it (all tokens' rows averaged)")
    cls = "the attention rollout through all layers into [CLS], and the last layer's [CLS] attention"
    saved = json.loads((evaluated["out"] / "metrics.json").read_text())
    assert saved["evaluation"].get("attention_follows") == "mean"
    folder = tmp_path / "evaluation"
    shutil.copytree(evaluated["out"], folder)
    for follows, maps in (("mean", mean), (None, cls)):
        if follows is None:
            del saved["evaluation"]["attention_follows"]
            (folder / "metrics.json").write_text(json.dumps(saved))
        root = parse_page(write_report(folder).read_text())
        alts = [img["attrs"]["alt"] for img in find_all(root, "img", **{"class": "att"})]
        assert alts and all(f"the image, {maps}, side by side" in alt for alt in alts), alts[0]
        assert f"({maps}; " in " ".join(find_all(root, "main")[0]["text"].split())
        assert ("[CLS]" in alts[0]) == (follows is None) and ("mean-pooled" in alts[0]) == (follows == "mean")


def test_a_card_without_an_attention_map_says_why(evaluated, tmp_path):
    """Every card of a model whose maps the evaluation skipped altogether (a config that does not say which tokens
    its head reads, a model that returns no attention weights) said "(no attention map: see --max_attention_maps)",
    a limit that had nothing to do with it. Now those cards give the reason the evaluation recorded
    (evaluation.attention_note, with 0 maps drawn); the --max_attention_maps hint stays for mistakes past the
    limit, including a limit of 0 (0 maps, no note), where the line above the cards says so too (it said "and
    where it looked (...)" of cards that all have no map)."""
    folder = tmp_path / "evaluation"
    shutil.copytree(evaluated["out"], folder)
    saved = json.loads((folder / "metrics.json").read_text())
    with open(folder / "misclassified.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) > 2 and all(r["attention"] for r in rows)  # the fixture drew every mistake's maps
    maps = {r["index"]: r["attention"] for r in rows}

    def cards_say(evaluation, drawn):
        for k, row in enumerate(sorted(rows, key=lambda r: -float(r["confidence"]))):
            row["attention"] = maps[row["index"]] if k < drawn else ""  # the most confident first, as the evaluation
        with open(folder / "misclassified.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        metrics = {**saved, "evaluation": {**saved["evaluation"], "attention_maps": drawn, **evaluation}}
        (folder / "metrics.json").write_text(json.dumps(metrics))
        root = parse_page(write_report(folder).read_text())
        cards = find_all(root, "li", **{"class": "card"})
        assert len(cards) == len(rows)
        said = [next((" ".join(p["text"].split()) for p in find_all(c, "p") if "no attention map" in p["text"]), None)
                for c in cards]
        return said, " ".join(find_all(root, "main")[0]["text"].split())

    beit = ("BeitForImageClassification's config does not say which tokens its head reads (no `pool` as hf_vit's, "
            "and not transformers' ViT, which reads [CLS]); no attention maps were drawn.")
    said, page = cards_say({"attention_note": beit, "attention_follows": None}, 0)
    assert said == [f"(no attention map: {beit.removesuffix('; no attention maps were drawn.')})"] * len(rows)
    assert "--max_attention_maps" not in page and "where it looked" not in page and beit in page
    said, page = cards_say({"attention_note": "ViTForImageClassification returned no attention weights; no attention "
                                              "maps were drawn."}, 0)  # fmt: skip
    assert said == ["(no attention map: ViTForImageClassification returned no attention weights)"] * len(rows)
    said, page = cards_say({"attention_note": "", "attention_follows": "mean"}, 2)  # --max_attention_maps 2
    assert said == [None, None] + ["(no attention map: see --max_attention_maps)"] * (len(rows) - 2)
    assert "where it looked (the attention rollout through all layers into the mean-pooled vector" in page
    said, page = cards_say({"attention_note": "", "attention_follows": "mean"}, 0)  # --max_attention_maps 0
    assert said == ["(no attention map: see --max_attention_maps)"] * len(rows)
    # the line above the cards said "and where it looked (...)" of cards that all say they have no map
    assert "where it looked" not in page
    assert "what the model said and how sure it was, (no attention maps: see --max_attention_maps)." in page


def test_what_the_attention_maps_follow_comes_from_the_config(evaluated, tmp_path):
    """hf_vit: config.pool; transformers' ViT (export_to_transformers_vit.py's) has no pool and reads [CLS];
    a config that does not say (BEiT pools by its own use_mean_pooling) gets None: the evaluation draws no maps
    for it rather than guess which token its head reads (before: [CLS]'s maps, as if its head read [CLS])."""
    from transformers import BeitConfig, BeitForImageClassification, ViTConfig

    from hf_vit.analysis import _attention_maps
    from hf_vit.attention_maps import head_reads

    assert [head_reads(hf_vit.HfViTConfig(pool=p)) for p in ("cls", "mean")] == ["cls", "mean"]
    assert head_reads(ViTConfig()) == "cls" and head_reads(BeitConfig()) is None
    torch.manual_seed(0)
    beit = BeitForImageClassification(BeitConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        num_labels=10, attn_implementation="eager")).eval()  # fmt: skip
    out = tmp_path / "out"
    (out / "attention").mkdir(parents=True)
    evaluated["test"][0]["img"].convert("RGB").save(out / "0.png")
    rows = [{"index": 0, "image": "0.png", "true_label": "cat", "predicted_label": "dog", "confidence": 0.5}]
    preprocess = BatchPreprocessor(hf_vit.make_image_processor(hf_vit.HfViTConfig(image_size=32)), 3)
    with torch.no_grad():
        note = _attention_maps(beit, evaluated["test"], rows, "img", preprocess, 1, "cpu", out, False)
    assert note == (
        "BeitForImageClassification's config does not say which tokens its head reads (no `pool` as hf_vit's, and "
        "not transformers' ViT, which reads [CLS]); no attention maps were drawn."
    )
    assert not any((out / "attention").iterdir()) and "attention" not in rows[0]


def test_a_non_square_transformers_vit_has_its_attention_maps_drawn_on_its_own_patch_grid(tmp_path, monkeypatch):
    """transformers' ViTConfig has no grid_size: the evaluation took the patch grid as the square root of the
    patch count, so a 16x64 export (2 x 8 patches = 16) had its maps drawn on a 4 x 4 grid, scrambled, and a 16x48
    one (2 x 6) got none ("Cannot place 12 attention weights"). Now the grid comes from image_size and patch_size;
    the maps are checked against a rollout recomputed here in NumPy."""
    import datasets

    from hf_vit import analysis
    from hf_vit.export_transformers import convert_to_vit

    drawn = []
    strip = analysis.attention_strip
    monkeypatch.setattr(analysis, "attention_strip", lambda image, rollout, last, **kw: drawn.append(
        (rollout, last)) or strip(image, rollout, last, **kw))  # fmt: skip
    for width, grid in [(64, (2, 8)), (48, (2, 6))]:
        config = hf_vit.HfViTConfig(image_size=(16, width), patch_size=8, dim=32, depth=2, heads=2, dim_head=16,
                                    mlp_dim=32)  # fmt: skip
        torch.manual_seed(0)
        model = hf_vit.HfViTForImageClassification(config).eval()
        with torch.no_grad():
            for layer in model.vit.transformer.layers:  # sharper attention than at init: the maps differ by patch
                layer.attn.to_qkv.weight.mul_(20)
        vit = convert_to_vit(model).eval()
        vit.set_attn_implementation("eager")
        out = tmp_path / str(width)
        (out / "attention").mkdir(parents=True)
        image = Image.fromarray(np.random.default_rng(width).integers(0, 256, (16, width, 3), dtype=np.uint8))
        image.save(out / "0.png")
        ds = datasets.Dataset.from_dict({"img": [image]}).cast_column("img", datasets.Image())
        rows = [{"index": 0, "image": "0.png", "true_label": "a", "predicted_label": "b", "confidence": 0.5}]
        preprocess = BatchPreprocessor(hf_vit.make_image_processor(config), 3)
        drawn.clear()
        with torch.no_grad():
            note = analysis._attention_maps(vit, ds, rows, "img", preprocess, 1, "cpu", out, False)
            attentions = vit(pixel_values=preprocess([image]), output_attentions=True).attentions
        assert note == "" and rows[0]["attention"] == "attention/0.png" and len(drawn) == 1
        # By hand: heads averaged; rollout = (A2+I)/2 @ (A1+I)/2 (rows sum to 1 already); [CLS]'s row, patches
        # placed row by row on the (2, width/8) grid as the patch embedding's Conv2d + flatten orders them.
        a = [att[0].double().mean(0).numpy() for att in attentions]
        n = a[0].shape[0]
        rollout = ((a[1] + np.eye(n)) / 2) @ ((a[0] + np.eye(n)) / 2)
        np.testing.assert_allclose(drawn[0][0], rollout[0, 1:].reshape(grid), atol=1e-6)
        np.testing.assert_allclose(drawn[0][1], a[1][0, 1:].reshape(grid), atol=1e-6)


def test_palette_transparent_and_two_band_images_read_as_training_decodes_them_on_every_path():
    """Palette (P), 1-bit, LA, RGBA, CMYK and 16-bit images, stored in a dataset: training's decode and the
    evaluation read each as its grey values for a 1-channel model (transparency on white) and as RGB for a
    3-channel one. A processor the fast path does not take (a centre crop) was called on the images as they are:
    for one channel it read a palette image's indices (and a 1-bit image as 0/1), and failed on LA, RGBA and CMYK
    with `mean must have 2 elements`."""
    import datasets

    from hf_vit.data import decode_images

    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    alpha = np.where(np.arange(64).reshape(8, 8) % 3 == 0, 0, 255).astype(np.uint8)  # every third pixel transparent
    rgba = Image.fromarray(np.dstack([np.asarray(rgb), alpha]), "RGBA")
    sixteen = Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16))  # 16 bits, values within 0..255
    images = [rgb.quantize(16), rgb.convert("1"), rgba.convert("LA"), rgba, rgb.convert("CMYK"), sixteen]
    ds = datasets.Dataset.from_dict({"img": images}, features=datasets.Features({"img": datasets.Image()}))
    stored = ds["img"]
    assert [im.mode for im in stored] == ["P", "1", "LA", "RGBA", "CMYK", "I;16"]

    def seen(image, mode):  # what a reader expects: transparent pixels on white, then PIL's own conversion
        if image.mode == "I;16":  # its values, as 8 bits
            return np.asarray(Image.fromarray(np.asarray(image).astype(np.uint8)).convert(mode))
        white = Image.alpha_composite(Image.new("RGBA", image.size, (255,) * 4), image.convert("RGBA"))
        return np.asarray(white.convert(mode) if "A" in image.getbands() else image.convert(mode))

    for channels, mode in ((1, "L"), (3, "RGB")):
        want = np.stack([seen(im, mode).reshape(8, 8, channels) for im in stored]).transpose(0, 3, 1, 2)  # (6, C, 8, 8)
        assert np.array_equal(decode_images(ds, "img", 8, channels, cache=False).numpy(), want), mode  # training
        config = hf_vit.HfViTConfig(image_size=8, patch_size=4, num_channels=channels)
        processor = hf_vit.make_image_processor(config, [0.0] * channels, [1.0] * channels)
        cropping = hf_vit.make_image_processor(config, [0.0] * channels, [1.0] * channels)
        cropping.do_center_crop, cropping.crop_size = True, {"height": 8, "width": 8}
        for preprocess in (BatchPreprocessor(processor, channels), BatchPreprocessor(cropping, channels)):
            got = preprocess(stored).numpy() * 255  # the evaluation's path, fast and through the processor
            np.testing.assert_allclose(got, want, atol=1e-3, err_msg=f"{mode}, fast={preprocess.fast}")


def test_a_hub_models_default_evaluation_folder_keeps_revisions_apart():
    """evaluate_model.py --model me/vit --revision v2 wrote to evaluation-me--vit, the folder of the unpinned model's
    evaluation (and of any other revision's), replacing it. A pinned revision now has a folder of its own."""
    from hf_vit.analysis import default_output_dir

    assert default_output_dir("me/vit") == Path("evaluation-me--vit")
    assert default_output_dir("me/vit", "v2") == Path("evaluation-me--vit@v2")
    assert default_output_dir("me/vit", "refs/pr/1") == Path("evaluation-me--vit@refs--pr--1")  # one folder, not three


def test_the_table_and_the_report_show_no_top_k_that_covers_every_class():
    """A 3-class model's evaluation printed 'top3 accuracy: 100.00%' and report.html a 'top3 accuracy 100.00%' row:
    three guesses of three classes are always right, a figure any model reaches, read as a result (the card already
    left it out). Shown only for k below the class count, as the card does."""
    from hf_vit.analysis import format_metrics_table
    from hf_vit.report import _metrics_table

    def metrics(classes):
        row = {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
        return {"accuracy": 0.5, "top3_accuracy": 1.0 if classes == 3 else 0.75, "macro_precision": 0.5,
                "macro_recall": 0.5, "macro_f1": 0.5, "num_examples": 2 * classes,
                "per_class": {f"c{i}": dict(row) for i in range(classes)}}

    assert "top3 accuracy" not in format_metrics_table(metrics(3))
    assert "top3 accuracy" not in _metrics_table(metrics(3))
    assert "top3 accuracy: 75.00%" in format_metrics_table(metrics(4))
    assert "top3 accuracy" in _metrics_table(metrics(4)) and "75.00%" in _metrics_table(metrics(4))


def test_evaluating_a_model_still_in_memory_says_how_to_save_it(tmp_path):
    """evaluate_model(model) on a model trained in one's own loop, not saved: it takes a folder, so the error says how
    to write one (before: OSError 'File name too long' quoting the model's whole repr)."""
    model = hf_vit.HfViTForImageClassification(hf_vit.HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64))
    with pytest.raises(TypeError) as err:
        evaluate_model(model, dataset=str(tmp_path / "data"), output_dir=tmp_path / "evaluation", progress=False)
    message = str(err.value)
    assert "got a HfViTForImageClassification object" in message and "model_name_or_path" in message
    assert "model.save_pretrained('my-vit')" in message
    assert "hf_vit.make_image_processor(model.config).save_pretrained('my-vit')" in message
    assert len(message) < 600 and not (tmp_path / "evaluation").exists()


def test_evaluate_help_gives_each_default_the_readme_states(capsys):
    """`evaluate_model.py --help` gave no default for --max_attention_maps, --gallery_size, --batch_size or --split,
    so a reader of --help could not tell that 500 maps and 32 gallery images are drawn unless told otherwise (the
    README says so). Each now names its default."""
    code, out = run_evaluate_script(["--help"], capsys)
    text = " ".join(out.split())
    assert code == "0"
    assert "--split SPLIT the split to score (default: test)" in text
    assert "--batch_size BATCH_SIZE images per inference batch (default: 256)" in text
    assert "most confident first (default: 500; -1: all)" in text
    assert "--gallery_size GALLERY_SIZE mistakes shown in gallery.png (default: 32; 0 to 208" in text


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_the_attention_pass_holds_a_bounded_chunk_and_draws_the_same_maps(pool, monkeypatch):
    """The attention pass kept every layer's (B, heads, N+1, N+1) weights for a whole batch on the CPU (5.7 GB for a
    ViT-B/16 at 224 px and 256 images). Now the batch goes through in chunks whose weights fit in ATTENTION_BYTES
    (the first image alone measures them), each reduced to its (B, N) maps as it comes out. The maps equal the
    rollout and last-layer rows computed by hand in float64 from one whole-batch forward of a real (tiny) model."""
    from hf_vit import analysis

    config = hf_vit.HfViTConfig(image_size=32, patch_size=8, dim=32, depth=3, heads=4, dim_head=8, mlp_dim=32, pool=pool)
    torch.manual_seed(0)
    model = hf_vit.HfViTForImageClassification(config).eval()
    pixels = torch.randn(7, 3, 32, 32)
    with torch.no_grad():
        attentions = [a.double().mean(dim=1) for a in model(pixel_values=pixels, output_attentions=True).attentions]
    rows = (lambda m: m[:, 0]) if pool == "cls" else (lambda m: m.mean(dim=1))
    eye = torch.eye(17, dtype=torch.float64)
    flow = eye.expand(7, 17, 17)
    for a in attentions:  # (A + I) / 2, rows renormalised, multiplied from the first layer on the right
        a = (a + eye) / 2
        flow = (a / a.sum(dim=-1, keepdim=True)) @ flow
    want_rollout, want_last = rows(flow)[:, 1:], rows(attentions[-1])[:, 1:]

    per_image = 3 * 4 * 17 * 17 * 4  # depth x heads x (N+1)^2 float32
    held, sizes = [], []

    def count(module, inputs, output):  # weights of one forward, all layers (held until its maps are drawn)
        sizes.append(len(output.attentions[0]))
        held.append(sum(a.numel() * a.element_size() for a in output.attentions))

    model.register_forward_hook(count)
    monkeypatch.setattr(analysis, "ATTENTION_BYTES", 2 * per_image + 1)
    chunk = [1]
    with torch.no_grad():
        first = analysis._pooled_maps(model, pixels, "cpu", pool, chunk)
        second = analysis._pooled_maps(model, pixels, "cpu", pool, chunk)  # a later batch: chunks of 2 from the start
    assert sizes == [1, 2, 2, 2] + [2, 2, 2, 1]
    assert max(held) <= analysis.ATTENTION_BYTES
    for rollout, last in (first, second):
        assert rollout.dtype == last.dtype == torch.float32 and rollout.shape == last.shape == (7, 16)
        torch.testing.assert_close(rollout.double(), want_rollout, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(last.double(), want_last, atol=1e-6, rtol=1e-5)
    monkeypatch.undo()  # the shipped budget: a small model's batch is one forward after the first image
    sizes.clear()
    with torch.no_grad():
        analysis._pooled_maps(model, pixels, "cpu", pool, [1])
    assert sizes == [1, 6]
