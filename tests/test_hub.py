"""Model card and Hub push.

The network is the only thing mocked: `HfApi.create_repo`, `HfApi.create_commit` and
`HfApi.list_repo_files` (the calls that would reach huggingface.co) are replaced by recorders
that keep each repository's files. The files of the recorded commit are then copied into a
fresh folder and loaded in a fresh Python process that cannot import hf_vit, as a Hub user
would after download.
"""

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from PIL import Image
from stalled import signal_and_wait, start_stalled

from hf_vit import CIFAR10_LABELS, HfViTConfig, HfViTForImageClassification, make_image_processor
from hf_vit.card import find_template, write_model_card
from hf_vit.hub import IncompleteModelFolder, check_model_folder, push_model_folder, upload_plan
from hf_vit.metrics import classification_metrics

REPO_ROOT = Path(__file__).resolve().parents[1]

# What a Hub user runs after download, in a fresh process. hf_vit is made unimportable
# (an editable install would otherwise find it), so only the folder's own code can load the model.
USER_SCRIPT = r"""
import json, sys
sys.modules["hf_vit"] = None  # `import hf_vit` now raises ImportError
import torch
from PIL import Image
from transformers import AutoModelForImageClassification, pipeline

folder, remote = sys.argv[1], sys.argv[2] == "1"
kwargs = {"trust_remote_code": True} if remote else {}
model = AutoModelForImageClassification.from_pretrained(folder, **kwargs).eval()
x = torch.linspace(-2, 2, 3 * 32 * 32).reshape(1, 3, 32, 32)
with torch.no_grad():
    logits = model(pixel_values=x).logits[0].tolist()
classifier = pipeline("image-classification", model=folder, **kwargs)
preds = classifier(Image.new("RGB", (40, 28), (200, 30, 60)), top_k=3)
print("RESULT " + json.dumps({"class": type(model).__name__, "module": type(model).__module__,
                               "logits": logits, "preds": preds}))
"""


def run_as_hub_user(folder: Path, tmp_path: Path, remote: bool) -> dict:
    """Load `folder` in a fresh process: fresh HF_HOME, offline, no PYTHONPATH, cwd elsewhere."""
    env = hub_user_env(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-c", USER_SCRIPT, str(folder), "1" if remote else "0"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return user_script_result(proc.stdout.splitlines())


def hub_user_env(root: Path) -> dict:
    """A Hub user's environment: this one without PYTHONPATH or a token, a fresh HF_HOME under `root`, offline."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_TOKEN")}
    env.update(HF_HOME=str(root / "user_hf_home"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def user_script_result(printed: list[str]) -> dict:
    """What USER_SCRIPT found: the JSON of its RESULT line among the lines it printed."""
    line = next(l for l in printed if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def make_model_folder(folder: Path, seed=0, recipe_dataset="/work/shared/data/cifar10", extras=True) -> Path:
    """A trained-model folder as training + evaluation leave it (tiny model, real metrics)."""
    torch.manual_seed(seed)
    config = HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64)
    model = HfViTForImageClassification(config)
    with torch.no_grad():  # non-trivial logits
        for p in model.parameters():
            p.normal_(0, 0.3)
    model.save_pretrained(folder)
    make_image_processor(config).save_pretrained(folder)

    rng = np.random.RandomState(seed)
    labels = rng.randint(0, 10, 60)
    scores = rng.randn(60, 10)
    scores[np.arange(60), labels] += 1.5  # about half right
    scores[labels == 3, 5] += 3.0  # cats mostly called dogs: the top confused pair
    test = classification_metrics(scores, labels, label_names=list(CIFAR10_LABELS))
    train_side = classification_metrics(rng.randn(60, 10), labels, label_names=list(CIFAR10_LABELS))
    (folder / "evaluation").mkdir()
    (folder / "evaluation" / "metrics.json").write_text(
        # num_examples as for the whole test split: the card calls a local folder CIFAR-10 only on that evidence
        json.dumps({**test, "num_examples": 10_000, "dataset": recipe_dataset, "image_format": "JPEG", "split": "test",
                    "model": str(folder)})
    )
    (folder / "metrics.json").write_text(json.dumps({
        **train_side, "num_examples": 10_000, "dataset": recipe_dataset, "image_format": "JPEG", "split": "test",
        "validation": {"accuracy": 0.61},
        "train": {"runtime_s": 600.0, "steps": 1000, "epochs": 3, "train_samples_per_second": 250.0},
    }))
    (folder / "training_recipe.json").write_text(json.dumps({
        "model": {"dim": 32, "depth": 1, "heads": 2, "dim_head": 16, "mlp_dim": 64, "pool": "cls"},
        "data": {"dataset_name": recipe_dataset, "validation_size": 5000},
        "training": {"learning_rate": 0.001, "num_train_epochs": 3, "per_device_train_batch_size": 128},
    }))
    for name in ("gallery.png", "confusion_matrix.png"):
        Image.new("RGB", (64, 64), (10, 120, 200)).save(folder / "evaluation" / name)
    if extras:  # the evaluation's report with its thumbnails, then what must NOT be uploaded
        (folder / "evaluation" / "misclassified.csv").write_text("index,true,pred\n1,cat,dog\n")
        (folder / "evaluation" / "report.html").write_text("<html><body>report</body></html>")
        (folder / "evaluation" / "misclassified").mkdir()
        for i in range(3):
            Image.new("RGB", (32, 32)).save(folder / "evaluation" / "misclassified" / f"{i:05d}.png")
        (folder / "evaluation" / "misclassified" / "notes.txt").write_text("not a thumbnail")
        ckpt = folder / "checkpoint-1000"
        ckpt.mkdir()
        (ckpt / "optimizer.pt").write_bytes(b"not uploaded")
        (ckpt / "model.safetensors").write_bytes(b"not uploaded")
        (folder / "training_args.bin").write_bytes(b"pickle")
        (folder / "runs").mkdir()
        (folder / "runs" / "events.out").write_text("tb")
    return folder


# ---------------------------------------------------------------------------
# Card
# ---------------------------------------------------------------------------
def test_template_found_from_checkout():
    assert find_template() == REPO_ROOT / "model_card.md"


def test_packaged_template_is_the_top_level_one():
    """hf_vit/model_card.md (what a wheel ships) must stay a byte-for-byte copy of model_card.md."""
    assert (REPO_ROOT / "hf_vit" / "model_card.md").read_bytes() == (REPO_ROOT / "model_card.md").read_bytes()


def test_card_parses_back_with_the_evaluation_accuracy(tmp_path):
    folder = make_model_folder(tmp_path / "run", extras=False)
    path = write_model_card(folder, repo_id="someone/vit-cifar10")
    assert path == folder / "README.md"

    card = ModelCard.load(path)
    eval_acc = json.loads((folder / "evaluation" / "metrics.json").read_text())["accuracy"]
    train_acc = json.loads((folder / "metrics.json").read_text())["accuracy"]
    assert eval_acc != train_acc  # so the check below proves the evaluation's file is the one used
    (result,) = card.data.eval_results
    assert result.metric_type == "accuracy" and result.metric_value == eval_acc
    assert (result.task_type, result.dataset_type, result.dataset_config, result.dataset_split) == (
        "image-classification", "uoft-cs/cifar10", "plain_text", "test",
    )
    assert card.data.pipeline_tag == "image-classification"
    assert card.data.library_name == "transformers"
    assert card.data.license == "apache-2.0"
    assert card.data.datasets == ["uoft-cs/cifar10"]
    assert card.data.model_name == "vit-cifar10"

    text = card.text
    assert f"{100 * eval_acc:.2f}%" in text
    evaluation = json.loads((folder / "evaluation" / "metrics.json").read_text())
    for key, name in (("top3_accuracy", "Top-3 accuracy"), ("top5_accuracy", "Top-5 accuracy"), ("macro_f1", "Macro F1")):
        row = next(line for line in text.splitlines() if line.startswith(f"| {name}"))  # every figure has its row
        assert row.endswith(f"| {100 * evaluation[key]:.2f}% |"), row
    assert "CIFAR-10 (JPEG copy)" in text  # the recipe trained on a local folder
    assert "| cat | dog |" in text  # most confused pair from the confusion matrix
    assert "| `depth` | 1 |" in text and "| `heads` | 2 |" in text
    n_params = sum(p.numel() for p in HfViTForImageClassification.from_pretrained(folder).parameters())
    assert f"{n_params:,}" in text
    assert "![The most confident mistakes (test split)](evaluation/gallery.png)" in text
    assert "per_class_accuracy.png" not in text  # absent picture, not linked
    assert 'trust_remote_code=True, revision=REVISION' in text and "someone/vit-cifar10" in text
    assert "resizes to 32x32, scales to [0, 1] and normalises with the CIFAR-10 mean and standard deviation" in text
    assert "| `learning_rate` | 0.001 |" in text and "| Best validation accuracy | 61.00% |" in text
    # the per-class table: the evaluation's figures for each class, in its columns (recall, precision, F1, images);
    # recall and precision differ in most rows here, so a swap shows
    rows = [line for line in text.splitlines()
            if line.startswith("| ") and line.split(" | ")[0][2:] in CIFAR10_LABELS and line.count("|") == 6]
    assert rows == [f"| {name} | {100 * c['recall']:.2f}% | {100 * c['precision']:.2f}% | {100 * c['f1']:.2f}% | "
                    f"{c['support']} |" for name, c in evaluation["per_class"].items()]  # fmt: skip
    assert list(evaluation["per_class"]) == list(CIFAR10_LABELS)
    # the hardware the training time and speed were measured on: an older metrics.json has none, and no row shows
    assert "| Training images per second | 250 |\n" in text and "Measured on" not in text
    metrics = json.loads((folder / "metrics.json").read_text())
    for hardware, said in (
        ({"device": "cuda", "name": "NVIDIA H100 80GB HBM3", "processes": 1, "threads_per_process": None,
          "precision": "bf16"}, "1 x NVIDIA H100 80GB HBM3, bf16"),
        # one process driving 2 GPUs (DataParallel), and 2 processes of one GPU each
        ({"device": "cuda", "name": "NVIDIA H100 80GB HBM3", "processes": 1, "gpus_per_process": 2,
          "threads_per_process": None, "precision": "bf16"}, "2 x NVIDIA H100 80GB HBM3, bf16"),
        ({"device": "cuda", "name": "NVIDIA H100 80GB HBM3", "processes": 2, "gpus_per_process": 1,
          "threads_per_process": None, "precision": "fp32"}, "2 x NVIDIA H100 80GB HBM3, fp32"),
        ({"device": "cpu", "name": "Intel(R) Xeon(R) Processor", "processes": 1, "threads_per_process": 2,
          "precision": "fp32"}, "2 CPU threads (Intel(R) Xeon(R) Processor), fp32"),
        ({"device": "cpu", "name": None, "processes": 2, "threads_per_process": 1, "precision": "fp32"},
         "2 processes x 1 CPU thread, fp32"),
    ):  # fmt: skip
        (folder / "metrics.json").write_text(json.dumps({**metrics, "hardware": hardware}))
        text = ModelCard.load(write_model_card(folder, repo_id="someone/vit-cifar10")).text  # still parses
        assert f"| Training images per second | 250 |\n| Measured on | {said} |\n" in text, text


def test_the_card_gives_the_train_split_size_training_recorded(tmp_path):
    """A local folder in the Hub layout with CIFAR-10's classes and whole 10,000-image test split, but a train split
    of 40 images: the card called it "a local copy of uoft-cs/cifar10 ..., with the Hub's splits: 50,000 training
    and 10,000 test images", whatever the run trained on. Now it gives the train split's size as training recorded
    it (metrics.json's train_split_size); another dataset's card says it too. A file without it (older) reads as
    before."""
    folder = make_model_folder(tmp_path / "run", extras=False)

    def data_section(folder=folder):
        return ModelCard.load(write_model_card(folder)).text.split("## Data")[1].split("Classes (")[0]

    assert "with the Hub's splits: 50,000 training and 10,000 test images" in data_section()  # unrecorded: as before
    metrics = json.loads((folder / "metrics.json").read_text())
    for size, said in ((50_000, "with the Hub's splits: 50,000 training and 10,000 test images of 32x32"),
                       (40, "with 40 training images (the Hub's train split holds 50,000) and 10,000 test images")):
        (folder / "metrics.json").write_text(json.dumps({**metrics, "train_split_size": size}))
        assert said in data_section() and ("50,000 training" in data_section()) == (size == 50_000)
    (folder / "metrics.json").write_text(json.dumps({**metrics, "num_examples": 60, "train_split_size": 40}))
    (folder / "evaluation" / "metrics.json").unlink()  # no file counted a whole CIFAR-10 split: another dataset
    assert "a local dataset folder, not on the Hugging Face Hub. Its train split holds 40 images." in data_section()
    hub = make_model_folder(tmp_path / "hub", recipe_dataset="uoft-cs/cifar10", extras=False)
    (hub / "metrics.json").write_text(json.dumps({**metrics, "dataset": "uoft-cs/cifar10", "train_split_size": 40}))
    assert "`uoft-cs/cifar10`: 40 training (of the Hub's 50,000) and 10,000 test colour images" in data_section(hub)


def test_the_card_shows_only_pictures_the_push_uploads(tmp_path):
    """An evaluation stopped before its metrics.json leaves pictures the push keeps home (row 37): the card still
    showed them, three broken images on the Hub page (and another run's pictures, maybe)."""
    folder = make_model_folder(tmp_path / "run", extras=False)
    image_links = lambda: re.findall(r"!\[[^\]]*\]\(([^)]+)\)", ModelCard.load(write_model_card(folder)).text)  # noqa: E731
    assert image_links() == ["evaluation/gallery.png", "evaluation/confusion_matrix.png"]
    assert set(image_links()) <= set(upload_plan(folder))
    (folder / "evaluation" / "metrics.json").unlink()
    assert upload_plan(folder) == sorted(["config.json", "configuration_hf_vit.py", "metrics.json", "model.safetensors",
                                          "modeling_hf_vit.py", "preprocessor_config.json", "README.md",
                                          "training_recipe.json"])
    assert image_links() == []


def test_the_card_says_how_many_training_images_were_held_out_to_choose_checkpoints(tmp_path):
    """Every run with --validation_size N (5,000 by default) trains on the train split less N images, which choose
    its checkpoints; the card said "50,000 training and 10,000 test images ... Checkpoints were chosen on a
    validation set (see the recipe)", read as training on all 50,000. It now says how many were held out (and how
    many of them chose, under --max_eval_samples); a validation split of its own reads as before."""
    folder = make_model_folder(tmp_path / "run", extras=False)
    recipe = json.loads((folder / "training_recipe.json").read_text())

    def data_section():
        return " ".join(ModelCard.load(write_model_card(folder)).text.split("## Data")[1].split("Classes (")[0].split())

    assert ("Checkpoints were chosen on 5,000 images held out from the train split (not trained on); the results "
            "below are on the test split.") in data_section()
    recipe["data"]["max_eval_samples"] = 500
    (folder / "training_recipe.json").write_text(json.dumps(recipe))
    assert "chosen on 500 of 5,000 images held out from the train split (not trained on)" in data_section()
    recipe["data"].update(validation_split="valid", max_eval_samples=None)
    (folder / "training_recipe.json").write_text(json.dumps(recipe))
    assert "held out" not in data_section() and "Checkpoints were chosen on a validation set" in data_section()


@pytest.mark.parametrize("image_format", ["PNG", None])
def test_a_local_copy_of_cifar10_is_called_the_jpeg_copy_only_when_its_images_were_jpeg(tmp_path, image_format):
    """A whole CIFAR-10 folder saved with `hf download` holds the Hub's PNGs: its card said "JPEG copy" and that
    the images had been re-encoded as JPEG, whatever they were. Now only metrics that recorded JPEG say so."""
    folder = make_model_folder(tmp_path / "run", extras=False)
    for path in (folder / "metrics.json", folder / "evaluation" / "metrics.json"):
        metrics = {k: v for k, v in json.loads(path.read_text()).items() if k != "image_format"}
        path.write_text(json.dumps({**metrics, **({"image_format": image_format} if image_format else {})}))
    card = ModelCard.load(write_model_card(folder, repo_id="me/tiny"))
    assert "JPEG" not in card.text
    how = " (PNG images)" if image_format else ""
    assert "**CIFAR-10 (local copy)**: a local copy of [`uoft-cs/cifar10`]" in card.text
    assert f"(folder *cifar10*){how}, with the Hub's splits" in card.text
    assert "On the test split of CIFAR-10 (local copy) (from `evaluation/metrics.json`)." in card.text
    assert card.data.eval_results[0].dataset_name == "CIFAR-10 (local copy)"


def test_the_jpeg_note_names_only_the_images_that_were_jpeg(tmp_path):
    """A model trained on the JPEG copy and evaluated on the Hub's CIFAR-10 got "The training and test images were a
    JPEG re-encoding of CIFAR-10" under results it says are on CIFAR-10's own images; one trained on the Hub's images
    and evaluated on the JPEG copy got no note at all. The note now names the images that were JPEG."""
    folder = make_model_folder(tmp_path / "run", extras=False)
    evaluation = folder / "evaluation" / "metrics.json"
    copy_results = json.loads(evaluation.read_text())
    both = "The training and test images were a JPEG re-encoding of CIFAR-10"

    def limitations():
        return ModelCard.load(write_model_card(folder)).text.split("## Limitations")[1]

    assert both in limitations()  # trained and evaluated on the JPEG copy
    evaluation.write_text(json.dumps({**copy_results, "dataset": "uoft-cs/cifar10", "image_format": "PNG"}))
    assert both not in limitations() and "On the test split of CIFAR-10 (from" in write_model_card(folder).read_text()
    assert "- The training images were a JPEG re-encoding of CIFAR-10, not the original PNG-like pixels." in limitations()
    for name in ("metrics.json", "training_recipe.json"):  # trained on the Hub's images
        path = folder / name
        path.write_text(path.read_text().replace('"/work/shared/data/cifar10"', '"uoft-cs/cifar10"').replace(
            '"JPEG"', '"PNG"'))  # fmt: skip
    evaluation.write_text(json.dumps(copy_results))  # evaluated on the JPEG copy
    assert both not in limitations() and "training images were a JPEG" not in limitations()
    assert "- The results above are on a JPEG re-encoding of CIFAR-10's images" in limitations()


@pytest.mark.parametrize("exported", [False, True])
def test_the_card_says_each_sentence_once(tmp_path, exported):
    """The template said its note on importing AutoImageProcessor on transformers 5.17 twice in a row, on every
    card of a model with custom code. No sentence of the card's prose now comes twice."""
    folder = make_model_folder(tmp_path / "run", extras=False)
    if exported:
        from hf_vit.export_transformers import export_to_transformers_vit

        folder = export_to_transformers_vit(folder, tmp_path / "plain")
    text = ModelCard.load(write_model_card(folder, repo_id="someone/x")).text
    sentences = [s for s in re.split(r"(?<=[.:!?])\s+", " ".join(outside_code(text).split())) if len(s) > 40]
    assert sorted({s for s in sentences if sentences.count(s) > 1}) == []
    assert text.count("AutoImageProcessor` instead.") == 1  # an export's code imports it too


def test_card_with_only_a_config(tmp_path):
    config = HfViTConfig(dim=32, depth=2, heads=2, dim_head=16, mlp_dim=64, pool="mean")
    config.save_pretrained(tmp_path)
    card = ModelCard.load(write_model_card(tmp_path))
    assert card.data.eval_results is None  # no metrics, no model-index
    assert "No metrics were found" in card.text
    assert "No `training_recipe.json`" in card.text
    # nothing names the data it was trained on: no CIFAR-10 is assumed (before: "`uoft-cs/cifar10` (assumed: ...)")
    assert "JPEG copy" not in card.text and "uoft-cs/cifar10" not in card.text
    n_params = sum(p.numel() for p in HfViTForImageClassification(config).parameters())
    assert f"{n_params:,}" in card.text  # counted by building the model when there are no weights


def test_the_card_of_a_model_without_training_records_invents_no_training_data(tmp_path):
    """A model trained in a learner's own loop and saved with save_pretrained + make_image_processor (CIFAR-10's class
    names, no training_recipe.json, no metrics.json), then evaluated: its card said it was trained on "**CIFAR-10**
    from the Hugging Face Hub, `uoft-cs/cifar10` (assumed ...): 50,000 training and 10,000 test colour images",
    listed uoft-cs/cifar10 as its training dataset in the metadata, with a cifar10 tag, and "Trained on CIFAR-10
    only". Nothing recorded that. Now the card says the training data is not recorded; an evaluation on CIFAR-10
    still gives its results and model-index, which name the dataset evaluated on."""
    from hf_vit.analysis import evaluate_model
    from tiny_data import make_tiny_cifar

    data = make_tiny_cifar(tmp_path / "tiny", n_train=10, n_test=20)
    folder = tmp_path / "own"
    config = HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64, id2label=dict(enumerate(CIFAR10_LABELS)))
    HfViTForImageClassification(config).save_pretrained(folder)
    make_image_processor(config).save_pretrained(folder)
    evaluated = evaluate_model(str(folder), dataset=str(data), device="cpu", num_threads=1, progress=False,
                               report=False, max_attention_maps=0)  # fmt: skip
    unrecorded = "No `training_recipe.json` or `metrics.json` names the dataset the model was trained on."
    for evaluated_on in ("tiny", "uoft-cs/cifar10"):
        if evaluated_on != "tiny":  # the Hub's whole test split (no network here: its metrics file as written)
            path = folder / "evaluation" / "metrics.json"
            path.write_text(json.dumps({**json.loads(path.read_text()), "dataset": "uoft-cs/cifar10",
                                        "num_examples": 10_000, "split_size": 10_000}))  # fmt: skip
        card = ModelCard.load(write_model_card(folder, repo_id="me/own"))
        data_section = card.text.split("## Data")[1].split("## Training recipe")[0]
        assert unrecorded in data_section and "CIFAR-10" not in data_section, data_section
        assert card.data.datasets is None and "cifar10" not in card.data.tags
        assert "Trained on CIFAR-10" not in card.text and "50,000" not in card.text
        assert "No `training_recipe.json` was found next to the weights" in card.text
        if evaluated_on == "tiny":
            assert card.data.eval_results is None and "uoft-cs/cifar10" not in card.text
            assert f"; test accuracy on the local dataset *tiny* **{100 * evaluated['accuracy']:.2f}%**." in card.text
        else:
            (result,) = card.data.eval_results
            assert (result.dataset_type, result.dataset_split, result.metric_value) == (
                "uoft-cs/cifar10", "test", evaluated["accuracy"])
            assert f"; test accuracy on CIFAR-10 **{100 * evaluated['accuracy']:.2f}%**." in card.text


def test_a_one_channel_models_card_says_it_reads_grey_images_and_names_all_its_code(tmp_path):
    """A 1-channel model's card opened with "This model uses **custom code** (`configuration_hf_vit.py`,
    `modeling_hf_vit.py`, ...)", leaving out the grey image processor's `image_processing_hf_vit.py`, which
    trust_remote_code also runs; it said the model "classifies 32x32 images" and called its one channel an "input
    colour channel". Now the notice names every file of code that runs, and the summary and table say grey."""
    from hf_vit.export_transformers import export_to_transformers_vit

    folder = tmp_path / "grey"
    config = HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64, num_channels=1,
                         id2label={0: "dark", 1: "light"})  # fmt: skip
    HfViTForImageClassification(config).save_pretrained(folder)
    make_image_processor(config, image_mean=(0.5,), image_std=(0.25,)).save_pretrained(folder)
    code_files = lambda text: re.search(r"> This model uses \*\*custom code\*\* \(([^)]*)\)", text).group(1)  # noqa: E731
    text = ModelCard.load(write_model_card(folder)).text
    assert code_files(text) == "`configuration_hf_vit.py`, `modeling_hf_vit.py`, `image_processing_hf_vit.py`, " \
                               "shipped in this repository"  # fmt: skip
    assert (folder / "image_processing_hf_vit.py").is_file()
    assert "that classifies 32x32 greyscale images into 2 classes." in text
    assert "| `num_channels` | 1 | input channels: 1 (greyscale) |" in text
    exported = ModelCard.load(write_model_card(export_to_transformers_vit(folder, tmp_path / "plain"))).text
    assert "that classifies 32x32 greyscale images into 2 classes." in exported
    # the export is an RGB ViT that turns its input grey itself: no conversion to grey left to the user
    assert "| `num_channels` | 3 | input channels: 3 (RGB), made grey by the patch projection" in exported
    assert '.convert("L")' not in exported and 'pipeline("image-classification"' in exported
    colour = ModelCard.load(write_model_card(make_model_folder(tmp_path / "run", extras=False))).text
    assert code_files(colour) == "`configuration_hf_vit.py`, `modeling_hf_vit.py`, shipped in this repository"
    assert "that classifies 32x32 images into the 10 CIFAR-10 classes" in colour
    assert "| `num_channels` | 3 | input channels: 3 (RGB colour) |" in colour


def test_the_limitations_and_the_processor_of_a_model_without_training_records_claim_no_training(tmp_path):
    """Beside "No `training_recipe.json` or `metrics.json` names the dataset", the card of a model saved from one's
    own loop still said "Trained on one dataset only" and that its processor normalises "..., as in training": both
    unrecorded. Now the limitation says the training data is not recorded, and the processor's steps are only
    described; a trained folder keeps both sentences."""
    folder = tmp_path / "own"
    config = HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64, id2label={0: "apple", 1: "pear"})
    HfViTForImageClassification(config).save_pretrained(folder)
    make_image_processor(config).save_pretrained(folder)
    text = ModelCard.load(write_model_card(folder)).text
    assert "one dataset" not in text and "as in training" not in text
    grey = HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64, num_channels=1, id2label={0: "a", 1: "b"})
    HfViTForImageClassification(grey).save_pretrained(tmp_path / "grey")
    make_image_processor(grey, image_mean=(0.5,), image_std=(0.25,)).save_pretrained(tmp_path / "grey")
    grey_text = ModelCard.load(write_model_card(tmp_path / "grey")).text
    assert "as training\ndid" not in grey_text and "any image grey first, as hf_vit's\ntraining does" in grey_text
    assert "- Its training data is not recorded; it knows 2 classes of 32x32 images only. Any other image" in text
    assert "normalises with the CIFAR-10 mean and standard deviation.\n" in text
    trained = ModelCard.load(write_model_card(make_model_folder(tmp_path / "run", extras=False))).text
    assert "- Trained on CIFAR-10 only: 10 classes of 32x32 images." in trained
    assert "normalises with the CIFAR-10 mean and standard deviation, as in training." in trained


def test_card_hub_dataset_and_broken_json(tmp_path):
    folder = make_model_folder(tmp_path / "run", recipe_dataset="uoft-cs/cifar10", extras=False)
    text = ModelCard.load(write_model_card(folder)).text
    assert "JPEG" not in text
    (folder / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match="metrics.json is not valid JSON"):
        write_model_card(folder)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        write_model_card(tmp_path / "empty")


def test_card_reports_the_split_the_metrics_came_from(tmp_path):
    """Train-split results are not published as test accuracy, in the text or in the model-index. Nor do they lead
    the summary: it led with "train accuracy **X**", the figure on images the model trained on, though the run's own
    metrics.json held its test accuracy on images it never saw. That now leads; the train figure follows, caveated.
    With no held-out figure at all, the train split's leads as before."""
    folder = make_model_folder(tmp_path / "run", extras=False)
    path = folder / "evaluation" / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "split": "train", "num_examples": 50_000}))
    card = ModelCard.load(write_model_card(folder, repo_id="me/tiny"))
    # images the model trained on: in the text only (test_results_on_images_training_used_stay_out_of_the_model_index)
    assert card.data.eval_results is None
    assert "On the train split of CIFAR-10 (JPEG copy)" in card.text and "(test split)" not in card.text
    pct = {name: f"{100 * json.loads(p.read_text())['accuracy']:.2f}%" for name, p in
           (("train", path), ("test", folder / "metrics.json"))}
    assert pct["train"] != pct["test"]
    assert (f"into the 10 CIFAR-10 classes; test accuracy **{pct['test']}** (held out, `metrics.json`). Its train "
            f"accuracy, {pct['train']}, is on images the model trained on (all but the 5,000 held out from it for "
            "validation), so it overstates how the model does on new ones.\n") in card.text
    assert f"test accuracy **{pct['train']}" not in card.text and "; train accuracy **" not in card.text
    metrics = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if k != "accuracy"}))
    text = ModelCard.load(write_model_card(folder, repo_id="me/tiny")).text
    assert f"into the 10 CIFAR-10 classes; train accuracy **{pct['train']}**.\n" in text
    assert "test accuracy" not in text.lower()


def test_train_split_results_do_not_say_the_images_held_out_for_validation_were_trained_on(tmp_path):
    """A run with --validation_size N (5,000 by default) trains on its train split less N images, which the card's
    Data section says were not trained on; an evaluation of that split was then said, in the summary and the
    results, to be "on images the model trained on", all of them. Now the held-out part is named."""
    folder = make_model_folder(tmp_path / "run", extras=False)
    path = folder / "evaluation" / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "split": "train", "num_examples": 50_000}))
    text = ModelCard.load(write_model_card(folder, repo_id="me/tiny")).text
    words = "on images the model trained on (all but the 5,000 held out from it for validation), so"
    assert "These are images the model trained on (all but the 5,000 held out from it for validation)" in text
    assert f"is {words} it overstates" in text and "not trained on" in text  # the Data section agrees
    # a recipe without a held-out part (its own --validation_split): all of the train split was trained on
    recipe = json.loads((folder / "training_recipe.json").read_text())
    recipe["data"].update(validation_split="valid")
    (folder / "training_recipe.json").write_text(json.dumps(recipe))
    text = ModelCard.load(write_model_card(folder, repo_id="me/tiny")).text
    assert "is on images the model trained on, so it overstates" in text and "held out from it" not in text
    # a train accuracy no higher than the held-out one (a model that learned little) overstates nothing; a null one
    # (hand-edited) is no figure to caveat: the summary said "Its train accuracy, n/a, ..., so it overstates ..."
    held = json.loads((folder / "metrics.json").read_text())["accuracy"]
    for accuracy, said in ((held, f"Its train accuracy, {100 * held:.2f}%, is on images the model trained on, so it "
                                  "is no measure of how the model does on new ones."),
                           (None, f"test accuracy **{100 * held:.2f}%** (held out, `metrics.json`).\n")):
        path.write_text(json.dumps({**json.loads(path.read_text()), "accuracy": accuracy}))
        text = ModelCard.load(write_model_card(folder, repo_id="me/tiny")).text
        assert said in text and "overstates how the model" not in text and "n/a" not in text, accuracy


def test_results_on_a_split_that_training_used_say_so(tmp_path):
    """`evaluate_model.py --split valid` of a model that chose its checkpoints on `valid` (or --split train): the card
    reported those numbers labelled by the split only, with nothing saying training had used those very images."""
    folder = make_model_folder(tmp_path / "run", recipe_dataset="/data/fruit", extras=False)
    held_out = f"{100 * json.loads((folder / 'metrics.json').read_text())['accuracy']:.2f}%"
    recipe = json.loads((folder / "training_recipe.json").read_text())
    recipe["data"].update(train_split="train", validation_split="valid")
    (folder / "training_recipe.json").write_text(json.dumps(recipe))
    path = folder / "evaluation" / "metrics.json"
    evaluation = json.loads(path.read_text())
    for split, dataset, words in [
        ("valid", "/data/fruit", "chose its checkpoints on"), ("train", "/data/../data/fruit", "trained on"),
        ("test", "/data/fruit", None), ("train", "/data/other", None),
    ]:
        path.write_text(json.dumps({**evaluation, "split": split, "dataset": dataset}))
        text = ModelCard.load(write_model_card(folder)).text
        said = (f"result. These are images the model {words}, so the numbers overstate how it does on new ones; on "
                f"its held-out test split training measured {held_out} (`metrics.json`).")
        assert (said in text) == (words is not None), (split, dataset)
        assert words is not None or "overstate" not in text
        # the summary leads with the held-out figure (test_card_reports_the_split_the_metrics_came_from)
        lead = f"; test accuracy **{held_out}** (held out, `metrics.json`). Its "
        assert (lead in text and f"is on images the model {words}, so it overstates" in text) == (words is not None)


def test_results_on_images_training_used_stay_out_of_the_model_index(tmp_path):
    """`evaluate_model.py --split train` of a model trained on uoft-cs/cifar10: the card's text said the numbers
    overstate how it does on new images, but its model-index published them ("Train accuracy", 60%) as the model's
    result on CIFAR-10, shown on the model page without that sentence. They now stay in the text, as results on part
    of a split do; an evaluation of the test split is published as before."""
    folder = make_model_folder(tmp_path / "run", recipe_dataset="uoft-cs/cifar10", extras=False)
    path = folder / "evaluation" / "metrics.json"
    evaluation = {**json.loads(path.read_text()), "image_format": "PNG"}
    for split, images, published in (("test", 10_000, True), ("train", 50_000, False)):
        path.write_text(json.dumps({**evaluation, "split": split, "num_examples": images}))
        card = ModelCard.load(write_model_card(folder))
        assert (card.data.eval_results is not None) == published, split
        assert ("images the model trained on" in card.text) == (not published)
        assert ("The card's metadata (model-index) reports no result for them." in card.text) == (not published)
    assert card.data.datasets == ["uoft-cs/cifar10"]  # the training data is still named


def test_results_on_another_configuration_of_the_training_dataset_are_not_said_to_be_seen(tmp_path):
    """The train split of another configuration of the training dataset (trained on 'coarse', evaluated on 'fine'):
    other images, but the card said 'These are images the model trained on, so the numbers overstate ...', as it
    compared the dataset names alone. Now a configuration both files record must agree too."""
    folder = make_model_folder(tmp_path / "run", recipe_dataset="/data/fruit", extras=False)
    metrics = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps({**metrics, "dataset_config": "coarse"}))
    recipe = json.loads((folder / "training_recipe.json").read_text())
    recipe["data"].update(train_split="train", dataset_config="coarse")
    (folder / "training_recipe.json").write_text(json.dumps(recipe))
    path = folder / "evaluation" / "metrics.json"
    evaluation = json.loads(path.read_text())
    for config, seen in [("fine", False), ("coarse", True), (None, True)]:  # None: an older file, as before
        path.write_text(json.dumps({**evaluation, "split": "train", "dataset": "/data/fruit"}
                                   | ({"dataset_config": config} if config else {})))
        text = ModelCard.load(write_model_card(folder)).text
        assert ("These are images the model trained on" in text) == seen, config


def test_card_of_a_model_that_is_not_cifar10(tmp_path):
    """3 classes, a local dataset, its own normalisation: no CIFAR-10 claim anywhere it would be false."""
    folder = tmp_path / "fruit-model"
    config = HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64, id2label={0: "apple", 1: "pear", 2: "plum"})
    HfViTForImageClassification(config).save_pretrained(folder)
    make_image_processor(config, image_mean=(0.5, 0.5, 0.5), image_std=(0.25, 0.25, 0.25)).save_pretrained(folder)
    rng = np.random.RandomState(0)
    labels = rng.randint(0, 2, 40)  # no plum, and plum never predicted: left out of the macro means
    scores = rng.randn(40, 3) + 2 * np.eye(3)[labels]
    scores[:, 2] = -10
    metrics = classification_metrics(scores, labels, label_names=["apple", "pear", "plum"])
    (folder / "evaluation").mkdir()
    (folder / "evaluation" / "metrics.json").write_text(json.dumps({**metrics, "dataset": "/data/fruit", "split": "test"}))
    (folder / "training_recipe.json").write_text(json.dumps({"data": {"dataset_name": "/data/fruit"}}))

    card = ModelCard.load(write_model_card(folder, repo_id="me/fruit"))
    assert card.data.eval_results is None  # a local folder has no Hub dataset for the model-index to name
    assert card.data.datasets is None and "cifar10" not in card.data.tags
    text = card.text
    for claim in ("CIFAR-10 classes", "JPEG copy", "50,000", "uoft-cs/cifar10", "for CIFAR-10", "on CIFAR-10",
                  "CIFAR-10 mean"):
        assert claim not in text, claim
    assert "into 3 classes; test accuracy **" in text and "On the test split of the local dataset *fruit*" in text
    assert "normalises with mean (0.5, 0.5, 0.5) and standard deviation (0.25, 0.25, 0.25), as in training" in text
    assert "| plum | no images | never predicted | n/a | 0 |" in text and "| Macro F1 (over 2 of 3 classes) |" in text

    # Evaluated on a Hub dataset instead: the model-index names it, and the split the file gives.
    path = folder / "evaluation" / "metrics.json"
    path.write_text(json.dumps({**metrics, "dataset": "someone/fruit", "split": "validation"}))
    (result,) = ModelCard.load(write_model_card(folder)).data.eval_results
    assert (result.dataset_type, result.dataset_config, result.dataset_split, result.metric_name) == (
        "someone/fruit", None, "validation", "Validation accuracy",
    )


def test_an_older_metrics_file_s_0_for_0_over_0_reads_as_no_images_or_never_predicted(tmp_path):
    """metrics.json written before the metric recorded a 0/0 score as null held 0.0 there: the card of such a
    model folder (and report.html rebuilt from such an evaluation) showed pear, never predicted, at precision
    0.00% and plum, without images, at recall 0.00%, "always wrong", where a new file's card says "never
    predicted" / "no images". Now both read an older file as a new one: the same tables and note."""
    from hf_vit.analysis import CSV_FIELDS
    from hf_vit.report import write_report

    names = ["apple", "pear", "plum", "fig"]  # pear: never predicted; plum: no images; fig: neither
    folder = tmp_path / "fruit-model"
    config = HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64, id2label=dict(enumerate(names)))
    HfViTForImageClassification(config).save_pretrained(folder)
    make_image_processor(config, image_mean=(0.5,) * 3, image_std=(0.25,) * 3).save_pretrained(folder)
    (folder / "training_recipe.json").write_text(json.dumps({"data": {"dataset_name": "/data/fruit"}}))
    new = classification_metrics(np.eye(4)[[0, 2, 0, 0, 0]], np.array([0, 0, 1, 1, 0]), label_names=names)
    assert (new["per_class"]["pear"]["precision"], new["per_class"]["plum"]["recall"]) == (None, None)
    old = json.loads(json.dumps(new))
    old["per_class"]["pear"]["precision"] = old["per_class"]["plum"]["recall"] = 0.0  # as the metric wrote them
    evaluation = folder / "evaluation"
    evaluation.mkdir()
    with open(evaluation / "misclassified.csv", "w", newline="") as f:
        f.write(",".join(CSV_FIELDS) + "\n")  # the report needs one; the mistakes are not what is checked here

    def tables(metrics):
        (evaluation / "metrics.json").write_text(json.dumps({**metrics, "dataset": "/data/fruit", "split": "test"}))
        text = ModelCard.load(write_model_card(folder, repo_id="me/fruit")).text
        page = write_report(evaluation).read_text()
        return [line for line in text.splitlines() if line.startswith(tuple(f"| {n} |" for n in names))], \
            page[page.index('<table id="per-class">') : page.index("</table>", page.index('<table id="per-class">'))]

    card_rows, report_table = tables(old)
    assert card_rows[1:3] == ["| pear | 0.00% | never predicted | 0.00% | 2 |", "| plum | no images | 0.00% | 0.00% | 0 |"]
    assert "<td>never predicted</td>" in report_table and "<td>no images</td>" in report_table
    assert tables(old) == tables(new)


def test_the_model_index_names_the_configuration_of_a_hub_dataset(tmp_path):
    """A model trained with --dataset_config on a Hub dataset other than CIFAR-10 got a model-index without the
    dataset's config (the Hub then points at the default one). The configuration the metrics file records (the
    one loaded) is named now; an older training metrics.json falls back on the recipe's --dataset_config, an
    older evaluation's on none (it loaded the default, unnamed)."""
    folder = tmp_path / "fruit"
    card_of(folder, ["apple", "pear"], "someone/fruit", {"data": {"dataset_name": "someone/fruit", "dataset_config": "ripe"}})
    evaluation = folder / "evaluation" / "metrics.json"
    metrics = json.loads(evaluation.read_text())

    def model_index():
        card = ModelCard.load(write_model_card(folder))
        (result,) = card.data.eval_results
        return (result.dataset_type, result.dataset_config, result.dataset_split), card.text

    shutil.move(evaluation, folder / "metrics.json")  # training's results
    (got, text) = model_index()
    assert got == ("someone/fruit", "ripe", "test")  # from the recipe: an older metrics.json records none
    assert "**someone/fruit** from the Hugging Face Hub ([`someone/fruit`](https://huggingface.co/datasets/someone/fruit)), configuration `ripe`." in text
    (folder / "metrics.json").write_text(json.dumps({**metrics, "dataset_config": "en-2.0"}))
    assert model_index()[0] == ("someone/fruit", "en-2.0", "test")
    evaluation.write_text(json.dumps({**metrics, "dataset_config": "default"}))  # evaluated later, on the default
    assert model_index()[0] == ("someone/fruit", "default", "test")
    evaluation.write_text(json.dumps(metrics))
    assert model_index()[0] == ("someone/fruit", None, "test")


def test_the_card_and_the_model_index_name_the_dataset_revision(tmp_path):
    """A run on a pinned Hub dataset (train.py --dataset_revision, recorded in metrics.json) is named with its
    revision in the card's dataset line and the model-index (an evaluation's own revision, for its results); the
    push uploads a revision as it is (refs/pr/1 is no folder pr/1 of this machine)."""
    from hf_vit.public import public_copies

    folder = make_model_folder(tmp_path / "run", recipe_dataset="uoft-cs/cifar10", extras=False)
    for name in ("metrics.json", "evaluation/metrics.json"):
        path = folder / name
        path.write_text(json.dumps({**json.loads(path.read_text()), "dataset_revision": "refs/pr/1"}))
    card = ModelCard.load(write_model_card(folder))
    assert "**CIFAR-10** from the Hugging Face Hub, `uoft-cs/cifar10` at revision `refs/pr/1`: 50,000" in card.text
    (result,) = card.data.eval_results
    assert (result.dataset_type, result.dataset_revision) == ("uoft-cs/cifar10", "refs/pr/1")
    copies = public_copies(folder, ["metrics.json", "evaluation/metrics.json"])
    assert "metrics.json" not in copies  # nothing of this machine in it: uploaded as it is
    assert json.loads(copies["evaluation/metrics.json"])["dataset_revision"] == "refs/pr/1"  # its model path went
    path = folder / "evaluation" / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "dataset_revision": None}))  # evaluated on main
    assert ModelCard.load(write_model_card(folder)).data.eval_results[0].dataset_revision is None


def test_the_card_says_what_a_cropping_or_older_processor_does(tmp_path):
    """A processor that resizes to 40x40 and crops the centre 32x32 (which the push accepts) was described as
    resizing to 40x40; an older feature extractor's `"size": 32` as not resizing at all."""
    folder = make_model_folder(tmp_path / "run", extras=False)
    path = folder / "preprocessor_config.json"
    processor = json.loads(path.read_text())
    path.write_text(json.dumps({**processor, "size": {"height": 40, "width": 40}, "do_center_crop": True,
                                "crop_size": {"height": 32, "width": 32}}))  # fmt: skip
    assert check_model_folder(folder) == []
    assert "resizes to 40x40, crops the centre 32x32, scales to [0, 1] and" in ModelCard.load(write_model_card(folder)).text
    path.write_text(json.dumps({**processor, "size": 32}))
    assert "resizes to 32x32, scales to [0, 1] and" in ModelCard.load(write_model_card(folder)).text


def test_class_names_with_a_pipe_or_markup_keep_the_card_tables_whole(tmp_path):
    """Names come from a dataset's card: `q|p` split a table row into an extra column, `<b>x</b>` rendered bold."""
    folder = tmp_path / "odd-model"
    names = ["q|p", "<b>x</b>&y", "plain"]
    config = HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64, id2label=dict(enumerate(names)))
    HfViTForImageClassification(config).save_pretrained(folder)
    make_image_processor(config).save_pretrained(folder)
    labels = np.array([0, 0, 1, 1, 2, 2])
    scores = np.eye(3)[[1, 1, 0, 1, 2, 2]] * 5.0  # q|p called <b>x</b>&y twice: the most confused pair
    metrics = classification_metrics(scores, labels, label_names=names)
    (folder / "evaluation").mkdir()
    (folder / "evaluation" / "metrics.json").write_text(json.dumps({**metrics, "dataset": "/data/odd", "split": "test"}))
    text = ModelCard.load(write_model_card(folder)).text
    assert "| q\\|p | 0.00% | 0.00% | 0.00% | 2 |" in text  # per class: five cells, the name's | escaped
    assert "| q\\|p | &lt;b&gt;x&lt;/b&gt;&amp;y | 2 | 100.00% |" in text  # the most confused pair
    assert "<b>" not in text and "Classes (3): q\\|p, &lt;b&gt;x&lt;/b&gt;&amp;y, plain." in text


def card_of(folder, names, dataset, recipe):
    """The card text of a tiny model with classes `names`, evaluated on `dataset`, trained by `recipe`."""
    config = HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64, id2label=dict(enumerate(names)))
    HfViTForImageClassification(config).save_pretrained(folder)
    make_image_processor(config).save_pretrained(folder)
    labels = np.arange(len(names)).repeat(2)
    metrics = classification_metrics(np.eye(len(names))[np.roll(labels, 1)] * 5.0, labels, label_names=names)
    (folder / "evaluation").mkdir()
    (folder / "evaluation" / "metrics.json").write_text(json.dumps({**metrics, "dataset": dataset, "split": "test"}))
    (folder / "training_recipe.json").write_text(json.dumps(recipe))
    return ModelCard.load(write_model_card(folder)).text


def outside_code(text: str) -> str:
    """The card's text without its code blocks and inline code spans, where no renderer makes a link."""
    return re.sub(r"(`+).+?\1", "", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M))


def test_links_images_and_html_in_class_and_dataset_names_stay_text_on_the_card(tmp_path):
    """Class names and dataset names come from a dataset's card: `[click](http://evil)` became a live link and
    `![x](http://tracker/p.png)` an image loaded by every reader of the card; the recipe table printed HTML raw."""
    names = ["[click](http://evil)", "![x](http://tracker/p.png)", "<img src=x onerror=alert(1)>", "plain"]
    dataset = "<b>d</b>[d](javascript:x)"  # not a Hub id: no link to it either
    recipe = {"model": {"config": {"id2label": dict(enumerate(names))}}, "data": {"dataset_name": dataset}}
    text = card_of(tmp_path / "model", names, dataset, recipe)
    assert re.findall(r"(?<!\\)\]\((?:http|javascript)", outside_code(text)) == []  # no `](` that is not escaped
    assert "<img" not in text and "<b>" not in text and "huggingface.co/datasets/&lt;" not in text
    # a name holding a URL is code, which no renderer links (an escaped `\](http://evil)` still auto-linked)
    assert "Classes (4): `[click](http://evil)`, `![x](http://tracker/p.png)`, &lt;img src=x onerror=alert(1)&gt;, plain." in text
    assert "| `[click](http://evil)` | 50.00% |" in text  # the per-class table, each name as its characters
    assert "**&lt;b&gt;d&lt;/b&gt;\\[d\\](javascript:x)** from the Hugging Face Hub." in text
    assert '"2": "&lt;img src=x onerror=alert(1)&gt;"' in text  # the recipe's config, escaped like the rest


def test_class_names_that_are_bare_urls_show_as_text_not_links(tmp_path):
    """A class named www.x.com or http://x reached the card as it was, which GitHub and the Hub turn into a link
    with no markup at all (escaping only covered [x](url)). Such a word is now inline code, which none links; the
    rest of a name is escaped as before, and a `|` in it still keeps the table rows whole."""
    names = ["www.x.com", "http://x/a_b*c", "see ftp://y|z <b>", "mail me@x.org", "plain"]
    text = card_of(tmp_path / "model", names, "/data/urls", {"data": {"dataset_name": "/data/urls"}})
    assert "Classes (5): `www.x.com`, `http://x/a_b*c`, see `ftp://y\\|z` &lt;b&gt;, mail `me@x.org`, plain." in text
    assert "| `www.x.com` | 50.00% |" in text and "| see `ftp://y\\|z` &lt;b&gt; | 50.00% |" in text
    shown = outside_code(text)
    assert not any(url in shown for url in ("www.x.com", "http://x", "ftp://y", "me@x.org")), shown


def test_a_short_run_is_timed_in_seconds_and_the_example_output_names_the_models_own_class(tmp_path):
    """A run under 3 s showed "Training time | 0.0 min", and every card's pipeline example printed
    [{'label': 'cat', ...}], a class a fruit model does not have. Below a minute the time is in seconds; the
    example names the model's first class as Python prints it."""
    folder = tmp_path / "model"
    card_of(folder, ["it's <ripe>", "pear"], "someone/fruit", {"data": {"dataset_name": "someone/fruit"}})
    for runtime, shown in ((2.4, "2.4 s"), (59.9, "59.9 s"), (59.96, "1.0 min"), (600.0, "10.0 min")):
        (folder / "metrics.json").write_text(json.dumps({"train": {"runtime_s": runtime, "steps": 3}}))
        text = ModelCard.load(write_model_card(folder)).text
        assert f"| Training time | {shown} |" in text
    assert """print(classifier("my_image.png"))  # [{'label': "it's <ripe>", 'score': ...}, ...]""" in text
    assert "'cat'" not in text


def test_a_top_k_accuracy_that_every_prediction_reaches_is_not_shown(tmp_path):
    """A 3-class model's card showed "Top-3 accuracy | 100.00%" (its three guesses are all the classes): a figure
    that no model can miss, read as a result. A top-k row is shown only for k below the number of classes."""
    text = card_of(tmp_path / "model", ["apple", "pear", "plum"], "someone/fruit", {"data": {"dataset_name": "someone/fruit"}})
    assert "| Top-1 accuracy | 50.00% |" in text and "Top-3" not in text
    text = card_of(tmp_path / "model4", ["a", "b", "c", "d"], "someone/fruit", {"data": {"dataset_name": "someone/fruit"}})
    assert "| Top-3 accuracy | 87.50% |" in text and "Top-5" not in text  # 3 guesses of 4 classes can miss


def test_an_edited_split_name_or_base_model_makes_no_link_on_the_card(tmp_path):
    """The split of metrics.json and the recipe's model_name_or_path reached the card as they were: a split
    `[x](http://evil)` became a link in every results sentence, a base model `[x](http://evil)` a link to it, and a
    local base folder named with a backtick broke out of its code span."""
    folder = tmp_path / "model"
    recipe = {"model": {"model_name_or_path": "[x](http://evil)"}}
    card_of(folder, ["cat", "dog"], "uoft-cs/cifar10", recipe)
    metrics_file = folder / "evaluation" / "metrics.json"
    metrics_file.write_text(json.dumps({**json.loads(metrics_file.read_text()), "split": "[x](http://evil)"}))
    card = ModelCard.load(write_model_card(folder))
    assert "](http" not in outside_code(card.text).replace("\\](http", ""), card.text
    assert "On the test split of" in card.text and card.data.base_model is None
    (folder / "training_recipe.json").write_text(json.dumps({"model": {"model_name_or_path": "./my`model"}}))
    metrics_file.write_text(json.dumps({**json.loads(metrics_file.read_text()), "split": "validation"}))
    text = ModelCard.load(write_model_card(folder)).text
    assert "Fine-tuned from a local model (*my\\`model*)." in text and "On the validation split of" in text


def test_the_limitations_of_a_fine_tuned_model_do_not_say_it_met_only_this_runs_data(tmp_path):
    """A model fine-tuned from another (--model_name_or_path) got "Fine-tuned from someone/vit-base" in its summary
    and "Trained on CIFAR-10 only" in its limitations, with its accuracy "far below large pretrained models
    fine-tuned on CIFAR-10", which it may be one of, and "License: Apache-2.0" alone. The limitations now say it was
    fine-tuned on that data, and the licence line that the base model's own licence may apply too."""
    folder = make_model_folder(tmp_path / "run", extras=False)

    def limitations():
        return ModelCard.load(write_model_card(folder)).text.split("## Limitations")[1].split("## About")[0]

    def about():
        return " ".join(ModelCard.load(write_model_card(folder)).text.split("## About")[1].split())

    assert "- Trained on CIFAR-10 only: 10 classes" in limitations() and "far below" in limitations()
    assert about().endswith("License: Apache-2.0.")
    recipe = json.loads((folder / "training_recipe.json").read_text())
    for base in ("someone/vit-base", "/home/alice/models/start"):
        recipe["model"]["model_name_or_path"] = base
        (folder / "training_recipe.json").write_text(json.dumps(recipe))
        said = " ".join(limitations().split())
        assert "Trained on" not in said and "far below" not in said
        assert ("- Fine-tuned on CIFAR-10 from the model named above, whose own training data this card "
                "does not describe: 10 classes of 32x32 images.") in said
        # the metadata's apache-2.0 is hf_vit's choice for the weights trained here, not the base model's license
        assert about().endswith("License: Apache-2.0. The model it was fine-tuned from (see the summary) has a "
                                "license of its own, which may also bind these weights: check it.")


def test_a_recipe_written_by_hand_that_names_its_model_in_words_makes_a_card(tmp_path, fake_hub, monkeypatch):
    """The card reads a training_recipe.json written by hand (its dataset is searched anywhere in it), but one whose
    "model" was a name, not training's section, stopped the card with AttributeError: 'str' object has no attribute
    'get', which push_to_hub.py reported as a failed push ("Check the connection ..."). It is a recipe row now."""
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run", extras=False)
    (folder / "training_recipe.json").write_text(json.dumps(
        {"model": "ViT-tiny of the lesson", "dataset": "/work/shared/data/cifar10", "epochs": 30}))
    load_script("push_to_hub").main([str(folder), "me/x", "--dry_run"])
    card = ModelCard.load(folder / "README.md")
    assert "| `model` | ViT-tiny of the lesson |" in card.text and "| `dataset` | cifar10 (local) |" in card.text
    assert card.data.base_model is None and "Fine-tuned" not in card.text


def test_the_card_publishes_no_local_path_from_the_recipe(tmp_path):
    """The recipe table printed training_recipe.json as it is: /home/alice/... of the dataset, the output folder and
    a recipe file went to the Hub on the card. A local path now shows by its last part; a Hub id stays."""
    recipe = {
        "recipe_files": ["/home/alice/recipes/mine.yaml", "hf_vit/recipes/cpu.yaml"],
        "model": {"model_name_or_path": "someone/vit-base", "config": {"_name_or_path": "/home/alice/models/start"}},
        "data": {"dataset_name": "/home/alice/secret/fruit"},
        "training": {"output_dir": "/home/alice/runs/fruit-vit", "logging_dir": "C:\\Users\\alice\\logs"},
    }
    text = card_of(tmp_path / "model", ["apple", "pear"], "/home/alice/secret/fruit", recipe)
    assert "alice" not in text and "/home" not in text
    assert "| `dataset_name` | fruit (local) |" in text and "| `output_dir` | fruit-vit (local) |" in text
    assert "| `logging_dir` | logs (local) |" in text and "| `recipe_files` | mine.yaml (local), hf\\_vit/recipes/cpu.yaml |" in text
    assert "| `model_name_or_path` | someone/vit-base |" in text and "start (local)" in text


def test_what_the_card_calls_local_is_what_the_push_rewrites(tmp_path, fake_hub, monkeypatch):
    """The card and the push had two rules for "a local path": `a/b/c` was local to the card but went up as it
    was, `C:/x` the other way round, and a relative path of this machine (an output_dir `runs/vit`, the
    evaluation's model `runs/vit`) went up as it was, showing the folder layout. One rule (`hf_vit.public`) now
    serves the card, the push and the dataset loader: every value the card calls local goes up as ./<last part>;
    Hub ids (a hub_model_id too) and the package's own recipe names stay."""
    import hf_vit.data
    import hf_vit.public

    assert hf_vit.data.looks_local is hf_vit.public.looks_local
    monkeypatch.chdir(tmp_path)  # where training ran: runs/vit is a folder here
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "runs" / "vit", recipe_dataset="uoft-cs/cifar10", extras=False)
    recipe = json.loads((folder / "training_recipe.json").read_text())
    recipe["recipe_files"] = ["hf_vit/recipes/cpu.yaml", "my/recipe.yaml"]
    recipe["model"]["model_name_or_path"] = "someone/vit-base"
    recipe["training"].update(output_dir="runs/vit", logging_dir="a/b/c", deepspeed="C:/Users/alice/ds.json",
                              resume_from_checkpoint="vit/checkpoint-8", hub_model_id="me/vit",
                              lr_scheduler_type="cosine", report_to=["trackio"])  # fmt: skip
    (folder / "training_recipe.json").write_text(json.dumps(recipe))
    path = folder / "evaluation" / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "model": "runs/vit"}))
    path = folder / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "validation": {"accuracy": 0.61, "model": "best"}}))
    (folder / "trainer_state.json").write_text(json.dumps({"best_model_checkpoint": "vit/checkpoint-8"}))
    (tmp_path / "best").mkdir()  # a folder named as metrics.json's validation "model": "best" is no path
    (tmp_path / "me" / "vit").mkdir(parents=True)  # nor is the hub_model_id me/vit a path, whatever lies here

    push_model_folder(folder, "someone/x")
    (commit,) = fake_hub["create_commit"]
    uploaded = {op.path_in_repo: uploaded_bytes(op) for op in commit["operations"]}
    pushed = json.loads(uploaded["training_recipe.json"])
    assert pushed["recipe_files"] == ["hf_vit/recipes/cpu.yaml", "./recipe.yaml"]
    assert (pushed["model"]["model_name_or_path"], pushed["data"]["dataset_name"]) == ("someone/vit-base",
                                                                                       "uoft-cs/cifar10")
    training = {k: pushed["training"][k] for k in ("output_dir", "logging_dir", "deepspeed", "resume_from_checkpoint",
                                                   "hub_model_id", "lr_scheduler_type", "report_to")}
    assert training == {"output_dir": "./vit", "logging_dir": "./c", "deepspeed": "./ds.json",
                        "resume_from_checkpoint": "./checkpoint-8", "hub_model_id": "me/vit",
                        "lr_scheduler_type": "cosine", "report_to": ["trackio"]}  # fmt: skip
    assert json.loads(uploaded["evaluation/metrics.json"])["model"] == "./vit"
    assert json.loads(uploaded["metrics.json"])["validation"] == {"accuracy": 0.61, "model": "best"}
    assert json.loads(uploaded["trainer_state.json"]) == {"best_model_checkpoint": "./checkpoint-8"}
    leaks = [(name, part) for name, content in uploaded.items() for part in (b"runs/vit", b"a/b", b"alice", b"vit/c")
             if part in content]
    assert leaks == []
    card = uploaded["README.md"].decode()
    for row in ("| `output_dir` | vit (local) |", "| `logging_dir` | c (local) |", "| `deepspeed` | ds.json (local) |",
                "| `resume_from_checkpoint` | checkpoint-8 (local) |", "| `hub_model_id` | me/vit |",
                "| `recipe_files` | hf\\_vit/recipes/cpu.yaml, recipe.yaml (local) |"):
        assert row in card, row
    # A Windows path as the dataset: the card said "the local dataset *C:\\Users\\alice\\fruit*" on Linux.
    recipe = {"data": {"dataset_name": "C:/x/fruit"}}
    text = card_of(tmp_path / "win", ["apple", "pear"], "C:\\Users\\alice\\fruit", recipe)
    assert "alice" not in text and "C:" not in text and "the local dataset *fruit*" in text


def test_cifar10_names_alone_or_part_of_a_split_make_no_cifar10_claim(tmp_path):
    """A local folder with CIFAR-10's class names but 60 test images (a toy set, CINIC-10) is not "CIFAR-10";
    a run on part of uoft-cs/cifar10 says so and publishes no model-index result."""
    folder = make_model_folder(tmp_path / "toy", recipe_dataset="/data/toy10", extras=False)
    for path in (folder / "metrics.json", folder / "evaluation" / "metrics.json"):
        path.write_text(json.dumps({**json.loads(path.read_text()), "num_examples": 60}))
    card = ModelCard.load(write_model_card(folder))
    assert card.data.eval_results is None and "cifar10" not in card.data.tags
    for claim in ("JPEG copy", "50,000", "CIFAR-10 classes"):
        assert claim not in card.text, claim
    assert "the local dataset *toy10*" in card.text

    folder = make_model_folder(tmp_path / "part", recipe_dataset="uoft-cs/cifar10", extras=False)
    shutil.rmtree(folder / "evaluation")  # the results come from training's metrics.json
    recipe = json.loads((folder / "training_recipe.json").read_text())
    recipe["data"].update(max_train_samples=5000, max_test_samples=60)
    (folder / "training_recipe.json").write_text(json.dumps(recipe))
    path = folder / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "num_examples": 60}))
    card = ModelCard.load(write_model_card(folder))
    assert card.data.eval_results is None and card.data.datasets == ["uoft-cs/cifar10"]
    assert "This run used only part of it: `--max_train_samples 5000`, `--max_test_samples 60`." in card.text
    assert "On 60 images of the test split of CIFAR-10, not the whole split" in card.text


def test_an_older_recipes_test_cap_above_the_images_tested_is_no_sample_on_the_card(tmp_path):
    """A folder trained before train.py recorded a --max_test_samples not below the test split as no limit keeps
    `max_test_samples: 20000` in its recipe, beside metrics.json's 10,000 images: the whole split was tested, yet
    its card (written again by a push) said "This run used only part of it: `--max_test_samples 20000`" and "On
    10,000 images of the test split of CIFAR-10, not the whole split", and published no model-index. A cap above
    the images tested took them all; one equal to them may have been a sample, and is still said to be."""
    folder = make_model_folder(tmp_path / "run", recipe_dataset="uoft-cs/cifar10", extras=False)
    shutil.rmtree(folder / "evaluation")  # the results come from training's metrics.json
    recipe = json.loads((folder / "training_recipe.json").read_text())
    accuracy = json.loads((folder / "metrics.json").read_text())["accuracy"]
    for cap, whole in ((20_000, True), (10_000, False)):
        recipe["data"].update(max_test_samples=cap)
        (folder / "training_recipe.json").write_text(json.dumps(recipe))
        card = ModelCard.load(write_model_card(folder))
        assert ("This run used only part of it" not in card.text) == whole, cap
        assert ("not the whole split" not in card.text) == whole, cap
        if whole:
            (result,) = card.data.eval_results
            assert (result.dataset_type, result.dataset_split, result.metric_value) == (
                "uoft-cs/cifar10", "test", accuracy)
            assert "On the test split of CIFAR-10 (from `metrics.json`)." in card.text
        else:
            assert card.data.eval_results is None


@pytest.mark.parametrize("trained_on", ["uoft-cs/cifar10", "/data/cifar10"])
def test_a_small_folder_evaluated_after_training_on_cifar10_is_not_called_cifar10(tmp_path, trained_on):
    """Training counted CIFAR-10's whole test split; the evaluation then ran on a 60-image folder with the same
    class names. The card called that folder "CIFAR-10 (JPEG copy)", taking training's count as the folder's.
    Each dataset is now judged by the metrics file of that dataset."""
    folder = make_model_folder(tmp_path / "run", recipe_dataset=trained_on, extras=False)
    path = folder / "evaluation" / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "dataset": "/data/toy10", "num_examples": 60}))
    card = ModelCard.load(write_model_card(folder))
    assert card.data.eval_results is None  # a local folder that is not CIFAR-10: no Hub dataset to name
    assert "On the test split of the local dataset *toy10* (from `evaluation/metrics.json`)." in card.text
    assert "; test accuracy on the local dataset *toy10* **" in card.text
    trained = "**CIFAR-10** from the Hugging Face Hub" if trained_on.startswith("uoft") else "**CIFAR-10 (JPEG copy)**"
    assert card.text.count("CIFAR-10 (") == (0 if trained_on.startswith("uoft") else 1) and trained in card.text


def test_a_relative_local_dataset_stays_local_on_the_card(tmp_path, monkeypatch):
    """`data/fruit` (a folder under the training cwd) reads like a Hub id: it is recorded as ./data/fruit,
    so a card rendered later from another folder neither calls it a Hub dataset nor links it."""
    from hf_vit.data import dataset_reference

    (tmp_path / "data" / "fruit").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert dataset_reference("data/fruit") == "./data/fruit"
    assert dataset_reference("uoft-cs/cifar10") == "uoft-cs/cifar10"  # no such folder here: a Hub id
    assert dataset_reference("/data/fruit") == "/data/fruit"

    folder = tmp_path / "model"
    config = HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64, id2label={0: "apple", 1: "pear"})
    HfViTForImageClassification(config).save_pretrained(folder)
    metrics = classification_metrics(np.eye(2)[[0, 1, 1]], np.array([0, 1, 0]), label_names=["apple", "pear"])
    (folder / "metrics.json").write_text(json.dumps({**metrics, "dataset": dataset_reference("data/fruit")}))
    monkeypatch.chdir(tmp_path / "model")  # the card is rendered where data/fruit does not exist
    card = ModelCard.load(write_model_card(folder, repo_id="me/fruit"))
    assert card.data.eval_results is None and card.data.datasets is None
    assert "huggingface.co/datasets/data" not in card.text and "local dataset *fruit*" in card.text


# ---------------------------------------------------------------------------
# Push
# ---------------------------------------------------------------------------
class FakeHub(dict):
    """The recorded calls; `.repos[repo_id]` holds each repository's files (name -> bytes) as the commits left them
    on main, `.branches[(repo_id, branch)]` those of its other branches."""

    repos: dict
    branches: dict


@pytest.fixture
def fake_hub(monkeypatch):
    """Replace the network calls of HfApi with recorders that keep each repository's files (the only mock in these
    tests): create_repo, create_commit (adds and deletes, as the Hub applies them, on main or a branch),
    create_branch, list_repo_files and repo_info (its visibility)."""
    return install_fake_hub(monkeypatch)


def install_fake_hub(monkeypatch) -> "FakeHub":
    """fake_hub's recorders, set with `monkeypatch` (a module-scoped fixture passes its own MonkeyPatch)."""
    import httpx2
    from huggingface_hub import CommitOperationDelete
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    calls = FakeHub(create_repo=[], create_commit=[])
    calls.repos, calls.branches, calls.private = {}, {}, {}

    def branch_files(repo_id, revision):
        if repo_id not in calls.repos:  # as the Hub answers (404)
            request = httpx2.Request("GET", f"https://huggingface.co/api/models/{repo_id}/tree/main")
            raise RepositoryNotFoundError(f"404: {repo_id}", response=httpx2.Response(404, request=request))
        if revision in (None, "main"):
            return calls.repos[repo_id]
        if (repo_id, revision) not in calls.branches:
            request = httpx2.Request("GET", f"https://huggingface.co/api/models/{repo_id}/tree/{revision}")
            raise RevisionNotFoundError(f"404: {revision}", response=httpx2.Response(404, request=request))
        return calls.branches[(repo_id, revision)]

    def create_branch(self, repo_id, *, branch, exist_ok=False, **kwargs):  # made from main, with its files
        calls.branches.setdefault((repo_id, branch), dict(calls.repos[repo_id]))

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"].append({"repo_id": repo_id, **kwargs})
        calls.repos.setdefault(repo_id, {})
        calls.private.setdefault(repo_id, bool(kwargs.get("private")))  # None: the default, public here
        return f"https://huggingface.co/{repo_id}"

    def repo_info(self, repo_id, **kwargs):
        branch_files(repo_id, None)  # 404 for a repository that does not exist
        return type("ModelInfo", (), {"id": repo_id, "private": calls.private[repo_id]})()

    def create_commit(self, repo_id, operations, revision=None, **kwargs):
        calls["create_commit"].append({"repo_id": repo_id, "operations": list(operations), "revision": revision,
                                       **kwargs})  # fmt: skip
        files = branch_files(repo_id, revision)
        for op in operations:  # deleting a file the repository does not hold fails on the Hub too
            files.pop(op.path_in_repo) if isinstance(op, CommitOperationDelete) else files.update(
                {op.path_in_repo: uploaded_bytes(op)})
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()

    def list_repo_files(self, repo_id, revision=None, **kwargs):
        return sorted(branch_files(repo_id, revision))

    def upload_folder(self, *args, **kwargs):  # must not be used: the plan is explicit
        raise AssertionError("upload_folder called")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    monkeypatch.setattr(HfApi, "list_repo_files", list_repo_files)
    monkeypatch.setattr(HfApi, "create_branch", create_branch)
    monkeypatch.setattr(HfApi, "repo_info", repo_info)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr("hf_vit.data._hub_reachable", lambda timeout=3.0: True)  # the dry run's probe: the mock answers
    return calls


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXPECTED_FILES = {
    "README.md", "config.json", "model.safetensors", "configuration_hf_vit.py", "modeling_hf_vit.py",
    "preprocessor_config.json", "metrics.json", "training_recipe.json", "evaluation/metrics.json",
    "evaluation/gallery.png", "evaluation/confusion_matrix.png", "evaluation/misclassified.csv",
    "evaluation/report.html", *(f"evaluation/misclassified/{i:05d}.png" for i in range(3)),  # the report's thumbnails
}


def uploaded_bytes(operation) -> bytes:
    """What one operation of the recorded commit uploads (the card and cleaned files go up from memory)."""
    content = operation.path_or_fileobj
    return content if isinstance(content, bytes) else Path(content).read_bytes()


def download_commit(commit, folder: Path) -> Path:
    """Exactly the committed files in `folder`, as `snapshot_download` would lay them out."""
    for op in commit["operations"]:
        (folder / op.path_in_repo).parent.mkdir(parents=True, exist_ok=True)
        (folder / op.path_in_repo).write_bytes(uploaded_bytes(op))
    return folder


def push_and_download(folder: Path, root: Path, monkeypatch) -> tuple[dict, Path]:
    """The push test's push of `folder` (with --private) to a fake Hub of its own; returns the fake Hub's record and
    the committed files downloaded into `root`/download."""
    hub = install_fake_hub(monkeypatch)
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token_for_the_mock")
    load_script("push_to_hub").main([str(folder), "someone/vit-cifar10", "--private"])
    (commit,) = hub["create_commit"]
    return hub, download_commit(commit, root / "download")


def card_code(download: Path, repo_id: str) -> str:
    """The Python of the card in `download` (the pushed files), `repo_id` pointing at the folder, as a Hub user
    runs it."""
    (code,) = re.findall(r"```python\n(.*?)```", (download / "README.md").read_text(), re.S)
    code = code.replace(f'"{repo_id}"', repr(str(download)))
    import transformers

    if getattr(transformers.AutoImageProcessor, "_backends", None):  # 5.17 without torchvision: a placeholder
        assert "from transformers.models.auto.image_processing_auto import\nAutoImageProcessor" in (
            download / "README.md").read_text()  # the card's way round it, run here in its place  # fmt: skip
        code = "from transformers.models.auto.image_processing_auto import AutoImageProcessor\n" + code.replace(
            "import AutoImageProcessor, ", "import ")  # fmt: skip
    return code


def card_case(case: str, root: Path, monkeypatch) -> tuple[Path, Path]:
    """A model folder of `case` pushed to a fake Hub of its own; returns the folder and the pushed files (downloaded).
    "pushed 3": a CIFAR-10 model; "pushed 1": a 1-channel one with hf_vit's grey processor; "pushed 1, plain
    processor": one saved with a plain ViTImageProcessor (before hf_vit had the grey one); "exported 3/1": those
    models exported to transformers' ViT and pushed."""
    hub = install_fake_hub(monkeypatch)
    kind, channels = case.split(" ", 1)
    if channels == "3":
        source = make_model_folder(root / "run", extras=False)
    else:
        source = root / "grey"
        config = HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64, num_channels=1,
                             id2label={0: "dark", 1: "light"})  # fmt: skip
        HfViTForImageClassification(config).save_pretrained(source)
        processor = make_image_processor(config, image_mean=(0.5,), image_std=(0.25,))
        if channels != "1":  # what make_image_processor saved for a 1-channel model before
            from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

            processor = ViTImageProcessorPil(**{k: v for k, v in processor.to_dict().items()
                                                if k not in ("image_processor_type", "auto_map")})  # fmt: skip
        processor.save_pretrained(source)
    if kind == "exported":
        from hf_vit.export_transformers import export_to_transformers_vit

        folder = export_to_transformers_vit(source, root / "plain")
    else:
        folder = source
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    push_model_folder(folder, "someone/plain" if kind == "exported" else "someone/vit-cifar10")
    (commit,) = hub["create_commit"]
    # each download its own folder name: transformers names a folder's remote code after it (and its files' hash)
    return folder, download_commit(commit, root / f"download_{kind}_{channels.replace(', ', '_').replace(' ', '_')}")


CARD_CASES = ("pushed 3", "pushed 1", "pushed 1, plain processor", "exported 3", "exported 1")

# Several Hub users' runs in ONE fresh process (its start, torch and transformers, is most of each run's cost): each
# job a script run as __main__ by runpy, in its own namespace (a name one job's code made is not seen by the next),
# its output between marks; a job that fails is said and the next one runs. A module a job hid (sys.modules[name] =
# None, as a transformers without it) is back for the next job.
ONE_PROCESS_JOBS = r"""
import json, runpy, sys, traceback
sys.modules["hf_vit"] = None  # `import hf_vit` now raises ImportError, in every job
mark, jobs = sys.argv[1], json.loads(open(sys.argv[2]).read())
for job in jobs:
    print(f"{mark} BEGIN {job['name']}", flush=True)
    hidden = {name for name, module in sys.modules.items() if module is None}
    sys.argv = [job["script"], *job["args"]]
    try:
        runpy.run_path(job["script"], run_name="__main__")
        status = "OK"
    except BaseException:  # SystemExit too: the test of that job fails, saying why; the others still run
        traceback.print_exc(file=sys.stdout)
        status = "FAILED"
    for name in [name for name, module in sys.modules.items() if module is None and name not in hidden]:
        del sys.modules[name]
    sys.stdout.flush()
    print(f"\n{mark} END {status}", flush=True)
"""


def run_jobs_in_one_process(jobs: dict, root: Path, env: dict, python_flags=(), **run_kwargs) -> dict:
    """Run each job {name: (script text, args)} in one fresh process (ONE_PROCESS_JOBS), its scripts written under
    `root`/scripts, with `env` (the whole environment) and subprocess.run's `run_kwargs` (cwd, umask). Returns
    {name: (status "OK" or "FAILED", lines printed)}."""
    scripts = root / "scripts"  # not the cwd, so not on the child's sys.path
    scripts.mkdir(exist_ok=True)
    listed = []
    for i, (name, (text, args)) in enumerate(jobs.items()):
        (scripts / f"job_{i}.py").write_text(text)
        listed.append({"name": name, "script": str(scripts / f"job_{i}.py"), "args": [str(a) for a in args]})
    (root / "jobs.json").write_text(json.dumps(listed))
    mark = "@@ONE_PROCESS_JOB@@"
    proc = subprocess.run([sys.executable, *python_flags, "-c", ONE_PROCESS_JOBS, mark, str(root / "jobs.json")],
                          env=env, capture_output=True, text=True, timeout=600, **run_kwargs)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = {}
    for name, chunk in zip(jobs, proc.stdout.split(f"{mark} BEGIN ")[1:]):
        assert chunk.startswith(f"{name}\n"), chunk[:200]
        body, status = chunk[len(name) + 1:].rsplit(f"{mark} END ", 1)
        results[name] = (status.strip(), body.strip().splitlines())
    assert list(results) == list(jobs), proc.stdout[-3000:] + proc.stderr[-3000:]
    return results


def run_as_hub_users(jobs: dict, root: Path) -> dict:
    """Run each job {name: (script text, args)} as a Hub user would, all in one fresh process
    (run_jobs_in_one_process; run_as_hub_user runs one): a fresh HF_HOME, offline, no PYTHONPATH, hf_vit
    unimportable, cwd `root`/user (an RGB my_image.png in it). Returns {name: (status, lines printed)}."""
    user = root / "user"
    user.mkdir(exist_ok=True)
    Image.new("RGB", (40, 28), (200, 30, 60)).save(user / "my_image.png")
    return run_jobs_in_one_process(jobs, root, hub_user_env(root), cwd=user)


@pytest.fixture(scope="module")
def hub_user_runs(tmp_path_factory):
    """What this file's tests run as a Hub user, prepared here and run in one fresh process (run_as_hub_users): the
    push test's pushed files loaded by USER_SCRIPT with remote code, and the card code of each of CARD_CASES.
    Returns {name: dict(folder, download, status, printed, ...)}. The tests assert on their own case."""
    root = tmp_path_factory.mktemp("hub_users")
    cases, jobs = {}, {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        folder = make_model_folder(root / "push" / "run")
        (folder / "my_scratch.py").write_text("print('not remote code')\n")  # .py files go up only as remote code
        hub, download = push_and_download(folder, root / "push", monkeypatch)
    cases["push"] = {"folder": folder, "hub": hub, "download": download}
    jobs["push"] = (USER_SCRIPT, [download, "1"])
    for case in CARD_CASES:
        with pytest.MonkeyPatch.context() as monkeypatch:
            folder, download = card_case(case, root / case.replace(", ", "_").replace(" ", "_"), monkeypatch)
        code = card_code(download, "someone/plain" if case.startswith("exported") else "someone/vit-cifar10")
        cases[case] = {"folder": folder, "download": download, "code": code}
        jobs[case] = ('import sys; sys.modules["hf_vit"] = None\n' + code, [])
    for name, (status, printed) in run_as_hub_users(jobs, root).items():
        cases[name].update(status=status, printed=printed, image=root / "user" / "my_image.png")
    return cases


def test_push_one_commit_exact_files_then_load_as_hub_user(hub_user_runs):
    run = hub_user_runs["push"]  # pushed with --private, then loaded with remote code in a fresh process
    folder, fake_hub, download = run["folder"], run["hub"], run["download"]

    (repo_call,) = fake_hub["create_repo"]
    assert repo_call["repo_id"] == "someone/vit-cifar10"
    assert repo_call["private"] is True and repo_call["exist_ok"] is True
    (commit,) = fake_hub["create_commit"]  # ONE commit
    assert commit["repo_id"] == "someone/vit-cifar10"
    pushed = {op.path_in_repo for op in commit["operations"]}
    assert pushed == EXPECTED_FILES
    assert pushed == set(upload_plan(folder))
    # The card was rewritten for this repo id before the upload.
    assert ModelCard.load(folder / "README.md").data.model_name == "vit-cifar10"

    assert (download / "README.md").read_bytes() == (folder / "README.md").read_bytes()  # and lands in the folder
    assert run["status"] == "OK", "\n".join(run["printed"])[-3000:]
    got = user_script_result(run["printed"])

    assert got["class"] == "HfViTForImageClassification"
    assert got["module"].startswith("transformers_modules"), got["module"]  # the folder's code, not hf_vit
    model = HfViTForImageClassification.from_pretrained(folder).eval()
    x = torch.linspace(-2, 2, 3 * 32 * 32).reshape(1, 3, 32, 32)
    with torch.no_grad():
        expected = model(pixel_values=x).logits[0]
    assert (torch.tensor(got["logits"]) - expected).abs().max().item() <= 1e-5
    # The pipeline's top label is the model's prediction on the processed image.
    image = Image.new("RGB", (40, 28), (200, 30, 60))
    pixels = make_image_processor(model.config)(images=image, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        top = model(pixel_values=pixels).logits[0].argmax().item()
    assert len(got["preds"]) == 3
    assert got["preds"][0]["label"] == CIFAR10_LABELS[top]


def models_own_class(folder: Path, image_path: Path) -> str:
    """The class the model of `folder` gives the image, run here: its top class through the folder's processor, on
    the image grey for a 1-channel model (as training decodes it). What the card's code must print."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from hf_vit.data import as_mode

    model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
    with Image.open(image_path) as image:
        shown = as_mode(image.copy(), "L" if model.config.num_channels == 1 else "RGB")
    inputs = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)(images=shown, return_tensors="pt")
    with torch.no_grad():
        return model.config.id2label[int(model(**inputs).logits.argmax(-1))]


def card_run(hub_user_runs, case) -> tuple[dict, str, list[str]]:
    """The run of `case`'s card code (hub_user_runs), checked to have ended without an error."""
    run = hub_user_runs[case]
    assert run["status"] == "OK", "\n".join(run["printed"])[-2000:]
    return run, run["code"], run["printed"]


@pytest.mark.parametrize("channels", [3, 1, "1, plain processor"])
def test_the_cards_code_runs_against_the_pushed_files(hub_user_runs, channels):
    """The card's "How to use" code, run as a Hub user would (the pushed files only, a fresh process without
    hf_vit, offline), the repo id pointing at their folder: its step-by-step half used an `image` it never made
    (NameError), and a one-channel model's card began with pipeline(), which converts images to RGB and fails.
    Both halves now run and name the same class: a one-channel model's grey processor (remote code, pushed)
    takes the RGB image through pipeline() too; one saved with a plain ViTImageProcessor (before hf_vit had the
    grey one) gets a card that reads a greyscale image without pipeline(). (Built by card_case; each card's code
    runs as its own __main__ in the one Hub user process of hub_user_runs.)"""
    import ast

    run, code, printed = card_run(hub_user_runs, f"pushed {channels}")
    assert printed[-1] == models_own_class(run["folder"], run["image"])
    if channels in (3, 1):
        assert ast.literal_eval(printed[-2])[0]["label"] == printed[-1]
    else:
        assert "pipeline(" not in code
    assert (run["download"] / "image_processing_hf_vit.py").is_file() == (channels == 1)  # the push took it


@pytest.mark.parametrize("channels", [3, 1])
def test_an_exported_models_card_code_runs_step_by_step_to_a_class(hub_user_runs, channels):
    """The card of a model exported to transformers' ViT: after "# Or step by step:" its code loaded the processor
    and the model and stopped there (no image read, nothing predicted), while an hf_vit model's card goes on to a
    class. Both now end on the predicted class, the pipeline's top label printed before (a 1-channel model's export
    takes RGB images, so its card uses pipeline() too). (Built by card_case, run in hub_user_runs' process.)"""
    import ast

    run, code, printed = card_run(hub_user_runs, f"exported {channels}")
    assert "model(**inputs)" in code and printed[-1] == models_own_class(run["folder"], run["image"])
    # a 1-channel model's export is an RGB ViT (the grey conversion folded in): its card's pipeline() runs too
    assert ast.literal_eval(printed[-2])[0]["label"] == printed[-1]


def test_a_second_push_leaves_no_file_of_the_earlier_model_in_the_repository(tmp_path, fake_hub, monkeypatch):
    """A push only added files: a retrained model pushed without its evaluation sat beside the earlier model's
    evaluation/ (metrics, report, pictures), and weights saved in shards beside the earlier model.safetensors,
    which transformers loads first: a Hub user got the old model. Those files now go in the same commit; the
    user's own files (.gitattributes, a handler.py, notes) and the card stay."""
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run")
    push_model_folder(folder, "someone/x")
    repo = fake_hub.repos["someone/x"]
    repo.update({".gitattributes": b"*.safetensors filter=lfs", "handler.py": b"# the user's", "notes.md": b"mine"})

    shutil.rmtree(folder / "evaluation")  # retrained: training removes the earlier evaluation
    model = make_model_folder(tmp_path / "new", seed=1, extras=False)
    (folder / "model.safetensors").unlink()
    HfViTForImageClassification.from_pretrained(model).save_pretrained(folder, max_shard_size="20KB")
    assert (folder / "model.safetensors.index.json").exists()
    files, _ = push_model_folder(folder, "someone/x", write_card=False)

    assert sorted(repo) == sorted({*files, ".gitattributes", "handler.py", "notes.md", "README.md"})
    assert not any(name.startswith("evaluation/") or name == "model.safetensors" for name in repo)
    download = tmp_path / "download"
    for name, content in repo.items():
        (download / name).parent.mkdir(parents=True, exist_ok=True)
        (download / name).write_bytes(content)
    pushed, expected = (HfViTForImageClassification.from_pretrained(f).state_dict() for f in (download, model))
    assert all(torch.equal(pushed[k], expected[k]) for k in expected)  # the new weights, not the earlier ones


def test_the_dry_run_names_the_files_a_push_would_delete(tmp_path, fake_hub, monkeypatch, capsys):
    """--dry_run listed what would go up, but not the earlier push's files that the commit would delete (a retrained
    model pushed again loses the earlier evaluation): the user learnt it from the repository afterwards. The dry run
    now reads the repository's file list (the one read the push makes; nothing is created or committed) and names
    them, as the push then names those it deleted; offline or for a new repository it says so."""
    import huggingface_hub.constants

    push = load_script("push_to_hub").main
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run")
    push([str(folder), "someone/x"])
    assert "deleted: nothing." in capsys.readouterr().out
    shutil.rmtree(folder / "evaluation")  # retrained: training removes the earlier evaluation
    repo = dict(fake_hub.repos["someone/x"])
    gone = sorted(name for name in repo if name.startswith("evaluation/"))

    push([str(folder), "someone/x", "--dry_run"])
    out = capsys.readouterr().out
    assert f"would delete {len(gone)} files of an earlier push:\n  " + "\n  ".join(gone) + "\n" in out
    assert out.startswith("would upload 8 files:\n  README.md\n")
    assert fake_hub.repos["someone/x"] == repo and len(fake_hub["create_commit"]) == 1  # nothing changed
    push([str(folder), "someone/new", "--dry_run"])
    assert "would delete: nothing ('someone/new' does not exist yet)." in capsys.readouterr().out
    push([str(folder), "x", "--dry_run"])
    assert ("would delete: unknown, 'x' names no owner: the push makes it under the token's account. Pass "
            "'your-username/x' to see the files of that repository it would delete.") in capsys.readouterr().out
    with monkeypatch.context() as offline:
        offline.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        push([str(folder), "someone/x", "--dry_run"])
    assert ("would delete: unknown, the files 'someone/x' holds could not be listed (HF_HUB_OFFLINE is set)."
            in capsys.readouterr().out)  # fmt: skip
    assert fake_hub["create_repo"] == [fake_hub["create_repo"][0]]  # a dry run never creates one

    push([str(folder), "someone/x"])
    assert f"deleted {len(gone)} files of an earlier push:\n  " + "\n  ".join(gone) in capsys.readouterr().out
    assert not any(name.startswith("evaluation/") for name in fake_hub.repos["someone/x"])


def test_a_push_deletes_only_the_evaluation_files_hf_vit_wrote(tmp_path, fake_hub, monkeypatch, capsys):
    """A second push deleted every repository file under evaluation/ of the kinds it uploads that the folder lacked:
    a loss curve or a sample grid the user had uploaded by hand (evaluation/loss_curve.png) went with the earlier
    model's pictures. The push now deletes only the files the evaluation writes, by their names (metrics, CSV,
    report, its three pictures, misclassified/ and attention/), and the dry run lists exactly those."""
    push = load_script("push_to_hub").main
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run")
    (folder / "evaluation" / "attention").mkdir()
    Image.new("RGB", (8, 8)).save(folder / "evaluation" / "attention" / "000001_cat_as_dog.png")
    push([str(folder), "someone/x"])
    repo = fake_hub.repos["someone/x"]
    own = {"evaluation/loss_curve.png": b"png", "evaluation/samples/grid.png": b"png", "evaluation/notes.md": b"x"}
    repo.update(own)
    earlier = sorted(name for name in repo if name.startswith("evaluation/") and name not in own)
    shutil.rmtree(folder / "evaluation")  # retrained: training removes the earlier evaluation
    capsys.readouterr()

    push([str(folder), "someone/x", "--dry_run"])
    assert f"would delete {len(earlier)} files of an earlier push:\n  " + "\n  ".join(earlier) + "\n" in (
        capsys.readouterr().out)  # fmt: skip
    push([str(folder), "someone/x"])
    assert sorted(name for name in repo if name.startswith("evaluation/")) == sorted(own)
    assert "evaluation/attention/000001_cat_as_dog.png" in earlier and "evaluation/gallery.png" in earlier


def test_a_push_to_a_branch_leaves_main_and_its_card_loads_that_branch(tmp_path, fake_hub, monkeypatch, capsys):
    """train.py --push_to_hub --hub_revision dev pushed to main all the same, replacing the model there, and
    push_to_hub.py had no way to push to a branch. Both now commit to the branch (made from main if absent), the
    card's code loads that branch, main keeps its files, and a commit hash or a name git refuses is an error before
    any network call."""
    from transformers import TrainingArguments

    from hf_vit.training import SetupError, push_finished_folder, take_over_push

    push = load_script("push_to_hub").main
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run")
    push([str(folder), "someone/x"])
    main = dict(fake_hub.repos["someone/x"])
    shutil.rmtree(folder / "evaluation")  # retrained, to try out on a branch
    earlier = sorted(name for name in main if name.startswith("evaluation/"))
    capsys.readouterr()

    push([str(folder), "someone/x", "--revision", "dev", "--dry_run"])
    assert (f"would delete {len(earlier)} files of an earlier push (the branch 'dev' would be made from main):\n  "
            + "\n  ".join(earlier)) in capsys.readouterr().out  # fmt: skip
    args = TrainingArguments(output_dir=str(folder), report_to="none", hub_revision="dev")
    push_finished_folder(folder, "someone/x", args)
    assert fake_hub["create_commit"][-1]["revision"] == "dev" and fake_hub.repos["someone/x"] == main
    branch = fake_hub.branches[("someone/x", "dev")]
    assert not any(name.startswith("evaluation/") for name in branch) and branch["config.json"] == main["config.json"]
    card = branch["README.md"].decode()
    assert 'REVISION = "dev"  # better: a commit hash' in card and card != main["README.md"].decode()
    from hf_vit.card import render_model_card
    from hf_vit.export_transformers import export_to_transformers_vit

    plain = export_to_transformers_vit(make_model_folder(tmp_path / "cls", extras=False), tmp_path / "plain")
    code = re.findall(r"```python\n(.*?)```", str(render_model_card(plain, "someone/x", revision="dev")), re.S)[0]
    assert code.count('"someone/x", revision="dev")') == 3  # an exported model's card: pipeline and both loads

    commits = len(fake_hub["create_commit"])
    for revision, problem in (("0123456789abcdef0123456789abcdef01234567", "is a commit hash: a push adds a commit "
                                                                           "to a branch"),
                              ("my branch", "is not a branch name")):  # fmt: skip
        message = str(pytest.raises(SystemExit, push, [str(folder), "someone/x", "--revision", revision]).value.code)
        assert message.startswith(f"error: the revision {revision!r} {problem}"), message
        args = TrainingArguments(output_dir=str(folder), report_to="none", push_to_hub=True, hub_model_id="someone/x",
                                 hub_revision=revision)  # fmt: skip
        with pytest.raises(SetupError, match=f"^--hub_revision: the revision {revision!r} {problem}"):
            take_over_push(args)
    assert len(fake_hub["create_commit"]) == commits and len(fake_hub["create_repo"]) == 2


def test_a_single_weights_file_beside_a_sharded_save_is_refused_by_push_card_and_evaluation(tmp_path, fake_hub,
                                                                                          monkeypatch):
    """save_pretrained(folder, max_shard_size=...) into a folder holding model.safetensors left that file beside the
    new shards and index: the push uploaded both, and transformers, the evaluation and the card's parameter count
    read the single file, the earlier weights. Each now refuses the folder, naming the older file to delete."""
    from hf_vit.analysis import load_classifier

    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run", extras=False)
    new = HfViTForImageClassification.from_pretrained(make_model_folder(tmp_path / "new", seed=1, extras=False))
    new.save_pretrained(folder, max_shard_size="20KB")
    assert (folder / "model.safetensors").is_file() and (folder / "model.safetensors.index.json").is_file()
    message = str(pytest.raises(SystemExit, load_script("push_to_hub").main, [str(folder), "someone/x"]).value.code)
    problem = ("the folder holds both model.safetensors and model.safetensors.index.json (with its "
               "model-*-of-*.safetensors shards), the weights of two saves: transformers would load model.safetensors "
               "whichever is current. Delete the earlier save's files (the older one by modification time is "
               "model.safetensors; the index goes with its shards), or save the model again into an empty folder.")
    assert message == f"error: Not pushing {folder}: the folder is incomplete.\n- {problem}"
    assert fake_hub == {"create_repo": [], "create_commit": []}
    for read in (load_classifier, write_model_card):  # the evaluation's model, the card's parameter count
        with pytest.raises(ValueError) as err:
            read(folder)
        assert str(err.value) == f"{folder}: {problem}"

    (folder / "model.safetensors").unlink()  # the fix the message names: the new shards alone go up
    files, _ = push_model_folder(folder, "someone/x")
    assert "model.safetensors" not in files and "model.safetensors.index.json" in files


def test_a_push_without_private_leaves_the_visibility_to_the_organizations_default(tmp_path, fake_hub, monkeypatch):
    """push_to_hub.py without --private asked create_repo for private=False, which huggingface_hub sends as
    visibility "public": in an organization whose repositories are private by default, the model went up public.
    Now it asks for nothing (None: the account's or organization's default); --private still asks for private."""
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run", extras=False)
    load_script("push_to_hub").main([str(folder), "some-org/x"])
    push_model_folder(folder, "some-org/y")
    load_script("push_to_hub").main([str(folder), "some-org/z", "--private"])
    assert [call["private"] for call in fake_hub["create_repo"]] == [None, None, True]


@pytest.mark.parametrize("revision", ["a//b", "dev/.hidden", "v1.lock", "a/b.lock/c"])
def test_a_branch_name_git_refuses_is_refused_before_the_repository_is_made(tmp_path, fake_hub, monkeypatch, revision):
    """push_branch took any run of letters, digits, '.', '_', '-' and '/' without '..', but git (and so the Hub)
    also refuses '//', a part that starts with '.' and a part that ends in '.lock': the push then made the
    repository and failed at create_branch, leaving an empty repository on the Hub. Each is now refused with the
    other bad names, before any network call."""
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run", extras=False)
    message = str(pytest.raises(SystemExit, load_script("push_to_hub").main,
                                [str(folder), "someone/new", "--revision", revision]).value.code)  # fmt: skip
    assert message.startswith(f"error: the revision {revision!r} is not a branch name"), message
    assert fake_hub == {"create_repo": [], "create_commit": []}


def test_a_dry_run_to_a_pull_request_that_does_not_exist_says_the_push_would_fail(tmp_path, fake_hub, monkeypatch,
                                                                                   capsys):  # fmt: skip
    """--revision refs/pr/5 --dry_run on a repository without that pull request said "(the branch 'refs/pr/5' would
    be made from main)" and listed main's files to delete, but the push makes branches only, never a pull request's
    ref: the push itself fails there. The dry run now says so; an open pull request's ref is listed as a branch."""
    push = load_script("push_to_hub").main
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run")
    push([str(folder), "someone/x"])
    capsys.readouterr()
    push([str(folder), "someone/x", "--revision", "refs/pr/5", "--dry_run"])
    out = capsys.readouterr().out
    assert ("would delete: unknown, 'someone/x' has no pull request 'refs/pr/5': the push would fail (a pull request "
            "is opened on the Hub, a push adds commits to it).") in out, out  # fmt: skip
    fake_hub.branches[("someone/x", "refs/pr/5")] = dict(fake_hub.repos["someone/x"])  # opened meanwhile
    push([str(folder), "someone/x", "--revision", "refs/pr/5", "--dry_run"])
    assert "would delete: nothing." in capsys.readouterr().out


def test_private_into_an_existing_public_repository_is_refused(tmp_path, fake_hub, monkeypatch):
    """--private applies when the repository is created: into an existing public one the push went ahead, and the
    model a user meant to keep private was published. The push (and its dry run) now refuses before uploading,
    saying how to make the repository private; a repository it creates private takes the push."""
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run", extras=False)
    push = load_script("push_to_hub").main
    push([str(folder), "someone/x"])  # created with the default visibility: public here
    (folder / "README.md").write_text("# my card\n")
    before = dict(fake_hub.repos["someone/x"])
    for dry_run in ([], ["--dry_run"]):
        code = pytest.raises(SystemExit, push, [str(folder), "someone/x", "--private", *dry_run]).value.code
        assert code == (
            "error: 'someone/x' exists and is public, and --private applies only when a repository is created: the "
            "push would publish the model. Make it private first (its Settings on the Hub, or "
            "`HfApi().update_repo_settings('someone/x', private=True)`), or push without --private."
        )
    assert fake_hub.repos["someone/x"] == before and len(fake_hub["create_commit"]) == 1
    assert (folder / "README.md").read_text() == "# my card\n"  # neither wrote the card: nothing happened
    push([str(folder), "someone/y", "--private"])
    assert fake_hub.private["someone/y"] and "config.json" in fake_hub.repos["someone/y"]


def test_train_py_push_failure_names_its_own_flags_and_a_retry_to_the_same_branch(tmp_path, fake_hub, monkeypatch):
    """train.py --push_to_hub --hub_revision dev --hub_private_repo: when its push failed, the retry it printed
    (`push_to_hub.py folder repo`) pushed to main, and public (a new repository), and the public-repository refusal
    told the user to drop --private, a flag train.py does not have. The retry now carries --revision and
    --private, and the refusal names --hub_private_repo."""
    from transformers import TrainingArguments

    from hf_vit.training import SetupError, push_finished_folder

    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run", extras=False)
    push_model_folder(folder, "someone/x")  # public
    args = TrainingArguments(output_dir=str(folder), report_to="none", hub_revision="dev", hub_private_repo=True)
    message = str(pytest.raises(SetupError, push_finished_folder, folder, "someone/x", args).value)
    assert "--hub_private_repo applies only when a repository is created" in message, message
    assert "push without --hub_private_repo" in message and " --private" not in message.split("Push it with")[0]
    assert message.endswith(
        f"Push it with `python scripts/push_to_hub.py {folder} someone/x --revision dev --private`."
    ), message

    def offline(self, *a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(HfApi, "create_commit", offline)
    args = TrainingArguments(output_dir=str(folder), report_to="none", hub_revision="dev")
    message = str(pytest.raises(SetupError, push_finished_folder, folder, "someone/x", args).value)
    assert message.endswith(f"Push it with `python scripts/push_to_hub.py {folder} someone/x --revision dev`."), message
    assert len(fake_hub["create_commit"]) == 1  # only the first push landed


def test_push_to_hub_help_says_private_into_a_public_repository_is_refused(capsys):
    """--private's help said "an existing one keeps its visibility", as if --private into a public repository were
    harmless; the push now refuses it (test_private_into_an_existing_public_repository_is_refused), and the help
    says so."""
    assert pytest.raises(SystemExit, load_script("push_to_hub").main, ["--help"]).value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "an existing public one is refused" in help_text and "keeps its visibility" not in help_text


def test_push_refuses_incomplete_folder_before_any_network_call(tmp_path, fake_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run", extras=False)
    (folder / "modeling_hf_vit.py").unlink()
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(IncompleteModelFolder) as err:
        push_model_folder(folder, "someone/x")
    assert "modeling_hf_vit.py is missing" in str(err.value)
    assert "preprocessor_config.json is missing" in str(err.value)

    (folder / "model.safetensors").unlink()
    with pytest.raises(SystemExit) as exit_info:
        load_script("push_to_hub").main([str(folder), "someone/x"])
    assert "model.safetensors is missing" in str(exit_info.value.code)
    with pytest.raises(ValueError, match="Bad repo id"):
        push_model_folder(folder, "not a repo id!")
    assert fake_hub == {"create_repo": [], "create_commit": []}


@pytest.mark.parametrize("edit", ["no auto_map", "no AutoModelForImageClassification"])
def test_an_hf_vit_config_without_its_auto_map_is_refused_by_the_push(tmp_path, fake_hub, monkeypatch, edit):
    """An hf_vit config.json without auto_map (or without the classifier's entry) passed the push's checks: it went
    up without remote code, and every Hub user's from_pretrained(..., trust_remote_code=True) and pipeline() failed
    with "model type `hf_vit` but Transformers does not recognize this architecture" (it loads here only because
    `import hf_vit` registers the classes). Refused before any network call, saying how to save it again."""
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run", extras=False)
    config = json.loads((folder / "config.json").read_text())
    if edit == "no auto_map":
        del config["auto_map"]
    else:
        del config["auto_map"]["AutoModelForImageClassification"]
    (folder / "config.json").write_text(json.dumps(config))
    message = str(pytest.raises(SystemExit, load_script("push_to_hub").main, [str(folder), "someone/x"]).value.code)
    lacks = "AutoModelForImageClassification"
    lacks = f"AutoConfig, {lacks}" if edit == "no auto_map" else lacks
    assert message == (
        f"error: Not pushing {folder}: the folder is incomplete.\n- config.json's auto_map lacks {lacks}: a Hub user's "
        "load with trust_remote_code=True (and pipeline()) would fail with 'model type `hf_vit` but Transformers does "
        "not recognize this architecture', and the remote code would not go up. Save the model again with "
        "`model.save_pretrained(folder)` after `import hf_vit` (it registers the classes, so the save writes auto_map "
        "and copies their files)."
    )
    assert fake_hub == {"create_repo": [], "create_commit": []}
    HfViTForImageClassification.from_pretrained(folder).save_pretrained(folder)  # the fix the message names
    assert check_model_folder(folder) == []


def test_a_repository_web_address_is_refused_naming_its_id(tmp_path, fake_hub, monkeypatch):
    """A repository's address pasted from the browser got huggingface_hub's "Use `repo_type` argument if needed",
    which push_to_hub.py has no way to take. The error now names the id to pass (or says that a dataset's or a
    Space's address is no model repository), before any network call."""
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run", extras=False)
    push = load_script("push_to_hub").main
    for repo_id, message in (
        ("https://huggingface.co/me/vit", "that is the repository's web address. Pass its id: 'me/vit'."),
        ("hf.co/me/vit/tree/main", "that is the repository's web address. Pass its id: 'me/vit'."),
        ("https://huggingface.co/datasets/me/x", "that is the address of a dataset; a model goes to a model "
                                                 "repository. Pass its id, e.g. 'your-username/model-name'."),
        ("me/x/y", "Repo id must be in the form 'repo_name' or 'namespace/repo_name': 'me/x/y'. Use "
                   "'your-username/model-name'."),
    ):  # fmt: skip
        code = pytest.raises(SystemExit, push, [str(folder), repo_id, "--dry_run"]).value.code
        assert code == f"error: Bad repo id {repo_id!r}: {message}"
    assert fake_hub == {"create_repo": [], "create_commit": []} and not (folder / "README.md").exists()


def test_a_web_address_with_a_query_or_a_fragment_names_the_id_without_them(tmp_path, fake_hub, monkeypatch):
    """An address copied from the browser often ends in ?library=... or #section: the refusal named
    'me/vit?library=transformers' as the id to pass, which the push refuses in turn; an address of a user's page
    (huggingface.co/me) named 'me', a bare name the push would make under the token's account. The id named now
    stops before ? and #, and a page that is no repository asks for 'owner/model-name'."""
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run", extras=False)
    push = load_script("push_to_hub").main
    for repo_id in ("https://huggingface.co/me/vit?library=transformers", "huggingface.co/me/vit#model-card",
                    "https://hf.co/me/vit/?x=1"):  # fmt: skip
        code = pytest.raises(SystemExit, push, [str(folder), repo_id, "--dry_run"]).value.code
        assert code == f"error: Bad repo id {repo_id!r}: that is the repository's web address. Pass its id: 'me/vit'."
    for repo_id in ("https://huggingface.co/me", "https://huggingface.co/me?tab=models"):
        code = pytest.raises(SystemExit, push, [str(folder), repo_id, "--dry_run"]).value.code
        assert code == (f"error: Bad repo id {repo_id!r}: that is a web address on the Hub, not a model repository's. "
                        "Pass the repository's id, 'owner/model-name' (its address is "
                        "huggingface.co/owner/model-name).")  # fmt: skip
    assert fake_hub == {"create_repo": [], "create_commit": []} and not (folder / "README.md").exists()


def test_train_py_refuses_a_web_address_as_hub_model_id_naming_the_id(tmp_path):
    """push_to_hub.py names the id in a repository's web address, but train.py --hub_model_id checked the id with
    huggingface_hub's rule only: 'https://huggingface.co/me/vit' was refused without naming 'me/vit', and
    'huggingface.co/me' (a user's page) passed as the repository 'me' of an owner 'huggingface.co', so the run
    trained to the end and its push failed. Both are now refused before training, as push_to_hub.py refuses them."""
    from transformers import TrainingArguments

    from hf_vit.training import SetupError, take_over_push

    for repo_id, reason in (
        ("https://huggingface.co/me/vit", "that is the repository's web address. Pass its id: 'me/vit'."),
        ("huggingface.co/me", "that is a web address on the Hub, not a model repository's."),
    ):  # fmt: skip
        args = TrainingArguments(output_dir=str(tmp_path / "run"), report_to="none", push_to_hub=True,
                                 hub_model_id=repo_id)  # fmt: skip
        message = str(pytest.raises(SetupError, take_over_push, args).value)
        assert message.startswith(f"--push_to_hub needs a repo id, and {repo_id!r} is not one: {reason}"), message
        assert message.endswith("Pass it with --hub_model_id."), message


def test_train_py_refuses_hub_private_repo_into_a_public_repository_before_training(tmp_path, fake_hub,
                                                                                    monkeypatch):  # fmt: skip
    """train.py --push_to_hub --hub_private_repo into an existing public repository trained to the end and only
    then had its push refused (the push would have published the model): hours spent before a refusal that one
    look at the repository gives at once. take_over_push now asks the Hub, as it already does whether the Hub can
    be reached; a repository that does not exist yet (made private by the push) and a private one pass."""
    from transformers import TrainingArguments

    from hf_vit.training import SetupError, take_over_push

    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    push_model_folder(make_model_folder(tmp_path / "run", extras=False), "someone/public")
    push_model_folder(tmp_path / "run", "someone/secret", private=True)

    def args(repo_id, private=True):
        return TrainingArguments(output_dir=str(tmp_path / "out"), report_to="none", push_to_hub=True,
                                 hub_model_id=repo_id, hub_private_repo=private)  # fmt: skip

    message = str(pytest.raises(SetupError, take_over_push, args("someone/public")).value)
    assert message == (
        "--push_to_hub: 'someone/public' exists and is public, and --hub_private_repo applies only when a repository "
        "is created: the push would publish the model. Make it private first (its Settings on the Hub, or "
        "`HfApi().update_repo_settings('someone/public', private=True)`), or push without --hub_private_repo."
    )
    assert [take_over_push(args(r, p)) for r, p in (("someone/new", True), ("someone/secret", True),
                                                     ("someone/public", None))] == [
        "someone/new", "someone/secret", "someone/public"]  # fmt: skip
    assert len(fake_hub["create_commit"]) == 2 and "someone/new" not in fake_hub.repos  # nothing made or pushed


def test_a_card_that_cannot_be_filled_stops_the_push_before_the_repository_is_made(tmp_path, fake_hub, monkeypatch):
    """A training_recipe.json holding a list: the card failed only after create_repo, leaving an empty repository
    on the Hub. The card is now filled before any network call."""
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run", extras=False)
    (folder / "training_recipe.json").write_text("[1, 2]")
    message = str(pytest.raises(SystemExit, load_script("push_to_hub").main, [str(folder), "someone/x"]).value.code)
    assert message == (f"error: {folder}/training_recipe.json holds a JSON list, not an object. Re-create it (or "
                       "delete it) and write the card again.")  # fmt: skip
    assert fake_hub == {"create_repo": [], "create_commit": []}


@pytest.mark.parametrize("name, key, value, kind", [
    ("evaluation/metrics.json", "num_examples", "10000", "a count of images"),
    ("evaluation/metrics.json", "confusion_matrix", 7, "a list of rows of image counts"),
    ("evaluation/metrics.json", "labels", {"0": "cat"}, "a list of class names"),
    ("evaluation/metrics.json", "accuracy", "0.6", "a score between 0 and 1"),
    ("metrics.json", "accuracy", True, "a score between 0 and 1"),
])
def test_an_edited_metrics_value_of_another_kind_is_named_before_the_push(tmp_path, fake_hub, monkeypatch, name,
                                                                          key, value, kind):
    """A metrics file edited by hand (num_examples "10000", a confusion matrix 7, labels as a dict) stopped the card
    with a TypeError or KeyError, which push_to_hub.py reported as a failed push ("Check the connection ..."); an
    accuracy "0.6" went into the model-index as a text, one `true` showed as 100.00%. The push now names the file,
    the key and the fix, before any network call."""
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run", extras=False)
    if name == "metrics.json":  # training's results are the card's only ones
        shutil.rmtree(folder / "evaluation")
    data = json.loads((folder / name).read_text())
    (folder / name).write_text(json.dumps({**data, key: value}))
    message = str(pytest.raises(SystemExit, load_script("push_to_hub").main, [str(folder), "someone/x"]).value.code)
    assert message == (f"error: {folder / name}: {key} is {json.dumps(value)}, not {kind}. Re-create the file (or "
                       "delete it) and write the card again.")  # fmt: skip
    assert fake_hub == {"create_repo": [], "create_commit": []}


def test_push_without_token_says_how_to_log_in(tmp_path, fake_hub, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    folder = make_model_folder(tmp_path / "run", extras=False)
    (folder / "README.md").write_text("# my hand-written card\n")
    with pytest.raises(PermissionError, match="hf auth login"):
        push_model_folder(folder, "someone/x")
    assert fake_hub == {"create_repo": [], "create_commit": []}
    assert (folder / "README.md").read_text() == "# my hand-written card\n"  # a push that failed changed nothing


def test_a_dry_run_without_a_token_says_the_push_would_stop(tmp_path, fake_hub, monkeypatch, capsys):
    """--dry_run without a token listed the files as if all were well; the push then stopped for the token. The dry
    run now says so (and still lists what it can see of a public repository)."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    folder = make_model_folder(tmp_path / "run", extras=False)
    load_script("push_to_hub").main([str(folder), "someone/x", "--dry_run"])
    out = capsys.readouterr().out
    assert out.endswith("would delete: nothing ('someone/x' does not exist yet, or it is private and no token was "
                        "found to see it).\nnote: no Hugging Face token found, so the push itself would stop. Log in "
                        "with `hf auth login`, set HF_TOKEN or pass --token (write access).\n")  # fmt: skip
    assert fake_hub == {"create_repo": [], "create_commit": []} and (folder / "README.md").is_file()
    load_script("push_to_hub").main([str(folder), "someone/x", "--dry_run", "--token", "hf_given"])
    assert "note:" not in capsys.readouterr().out


@pytest.mark.parametrize("writing", ["", "evaluation"])
def test_a_folder_a_training_or_an_evaluation_is_writing_is_not_pushed(tmp_path, fake_hub, monkeypatch, writing):
    """A push of a folder that a training (or an evaluation, in evaluation/) was writing read it all the same: it
    could upload weights half replaced, or an evaluation's new pictures beside the earlier metrics. The push now
    shares the folder and its evaluation/ as an evaluation reads a model folder: a writer there refuses it, before
    any network call, and a push leaves the folder free again (a training may start after it)."""
    from hf_vit.output_folder import folder_lock

    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run", extras=False)
    held = folder / writing
    with folder_lock(held, "a training run" if not writing else "an evaluation"):
        code = pytest.raises(SystemExit, load_script("push_to_hub").main, [str(folder), "someone/x"]).value.code
    writer = "a training run" if not writing else "an evaluation"
    assert code.startswith(f"error: {held} is in use by {writer} (pid {os.getpid()} on "), code
    assert code.endswith("), which writes it: the push would upload files it is replacing. Wait for it to finish, "
                         "then push again.")  # fmt: skip
    assert fake_hub == {"create_repo": [], "create_commit": []} and not (folder / "README.md").exists()
    push_model_folder(folder, "someone/x")
    assert not list(folder.rglob(".hf_vit.lock"))  # the push let go of both, leaving no lock file
    with folder_lock(folder, "a training run"):  # and a training may take the folder now
        pass


def test_a_plain_kill_of_a_push_leaves_no_lock_file_in_the_folders_it_read(tmp_path):
    """`kill` (SIGTERM) of a real `push_to_hub.py --dry_run` (offline: no network at all) while it writes the card:
    it exits through the clean-up (status 143) and leaves the folder as it was (before: Python's default ended it
    there, and .hf_vit.lock stayed in the model folder and in its evaluation/, as row 119 said of the export)."""
    folder = make_model_folder(tmp_path / "run")
    card = write_model_card(folder).read_bytes()
    proc = start_stalled(tmp_path, [sys.executable, str(REPO_ROOT / "scripts" / "push_to_hub.py"), str(folder),
                                    "someone/x", "--dry_run"], "hf_vit.card.write_card_text", REPO_ROOT, HF_HUB_OFFLINE="1")
    output = signal_and_wait(proc, signal.SIGTERM)
    assert proc.returncode == 143, output[-3000:]
    assert re.findall(r"push_to_hub\.py: [^\n]*", output) == [  # one line, as train.py's (before: nothing said)
        "push_to_hub.py: stopped by SIGTERM (kill); a push lands as one commit or not at all, and this one may not "
        "have landed (a --dry_run uploads nothing): see the repository's history on the Hub, and rerun the same "
        "command."
    ]
    assert not list(folder.rglob(".hf_vit.lock"))
    assert (folder / "README.md").read_bytes() == card


def test_a_push_from_inside_the_folder_names_it_in_the_commit(tmp_path, fake_hub, monkeypatch):
    """`push_to_hub.py . me/x` from inside the model folder made the commit "Upload  (hf_vit model, ...)": the name of
    "." is empty. The commit names the folder itself."""
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run", extras=False)
    monkeypatch.chdir(folder)
    load_script("push_to_hub").main([".", "someone/x"])
    (commit,) = fake_hub["create_commit"]
    assert commit["commit_message"] == "Upload run (hf_vit model, card, evaluation)"
    assert {op.path_in_repo for op in commit["operations"]} >= {"config.json", "README.md", "evaluation/metrics.json"}


def test_the_commit_message_names_only_what_the_push_uploads(tmp_path, fake_hub, monkeypatch):
    """The default commit message was "Upload run (hf_vit model, card, evaluation)" whatever went up: a folder never
    evaluated and a model exported to transformers' ViT said so too. It now names what the plan uploads."""
    from hf_vit.export_transformers import export_to_transformers_vit

    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run", extras=False)
    plain = export_to_transformers_vit(folder, tmp_path / "plain")
    shutil.rmtree(folder / "evaluation")
    push_model_folder(folder, "me/a")
    push_model_folder(plain, "me/b")
    (bare, exported) = fake_hub["create_commit"]
    assert not any(op.path_in_repo.startswith("evaluation/") for op in bare["operations"])
    assert bare["commit_message"] == "Upload run (hf_vit model, card)"
    assert "evaluation/metrics.json" in {op.path_in_repo for op in exported["operations"]}
    assert exported["commit_message"] == "Upload plain (ViT model exported from hf_vit, card, evaluation)"


def test_a_push_that_cannot_reach_the_hub_is_one_line_and_leaves_the_card(tmp_path, monkeypatch, capsys):
    """The network is refused here the way an offline machine refuses it (HfApi.create_repo raises, as its
    HTTP client would): one error line, and the hand-written card is not rewritten for nothing."""
    from huggingface_hub import HfApi

    def offline(self, *args, **kwargs):
        raise ConnectionError("[Errno -2] Name or service not known")

    monkeypatch.setattr(HfApi, "create_repo", offline)
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run", extras=False)
    (folder / "README.md").write_text("# my hand-written card\n")
    with pytest.raises(SystemExit) as exit_info:
        load_script("push_to_hub").main([str(folder), "someone/x"])
    assert str(exit_info.value.code) == (
        "error: the push to 'someone/x' failed, nothing was uploaded: [Errno -2] Name or service not known. Check the "
        "connection and that the token may write to that repository, then run this again."
    )
    assert (folder / "README.md").read_text() == "# my hand-written card\n"


def test_a_commit_the_hub_refuses_leaves_the_card_and_a_later_push_sends_the_new_one(tmp_path, fake_hub, monkeypatch,
                                                                                   capsys):
    """The repository exists but the commit is refused (a read-only token, a quota): the folder's card stays as
    the user left it; a push that lands writes the card it uploaded. Only HfApi's network calls are replaced."""
    from huggingface_hub import HfApi

    def refused(self, *args, **kwargs):
        raise PermissionError("403 Forbidden: You don't have the rights to create a commit in someone/x")

    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run", extras=False)
    (folder / "README.md").write_text("# my hand-written card\n")
    with monkeypatch.context() as patch:
        patch.setattr(HfApi, "create_commit", refused)
        with pytest.raises(PermissionError, match="403"):
            push_model_folder(folder, "someone/x")
    assert (folder / "README.md").read_text() == "# my hand-written card\n"
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []  # no temporary card left

    (folder / "README.md").unlink()  # without a card of its own the push still sends one
    files, _ = push_model_folder(folder, "someone/x")
    (commit,) = fake_hub["create_commit"]
    (card_op,) = [op for op in commit["operations"] if op.path_in_repo == "README.md"]
    assert "README.md" in files
    assert card_op.path_or_fileobj == (folder / "README.md").read_bytes()
    assert ModelCard.load(folder / "README.md").data.model_name == "x"


def test_the_push_publishes_no_local_path_from_the_folders_files(tmp_path, fake_hub, monkeypatch):
    """metrics.json, training_recipe.json, evaluation/metrics.json, trainer_state.json and report.html record the
    folders as given (/home/<user>/...): the card hid them, but the files went up as they were. They now go up
    with ./<last part> in their place; the folder keeps its own files, and the model files go up as saved."""
    from hf_vit.analysis import evaluate_model
    from tiny_data import make_tiny_cifar

    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    data = make_tiny_cifar(tmp_path / "data" / "tiny", n_train=10, n_test=10)
    folder = make_model_folder(tmp_path / "run", recipe_dataset=str(data), extras=False)
    shutil.rmtree(folder / "evaluation")  # a real one, with its report
    evaluate_model(str(folder), dataset=str(data), device="cpu", num_threads=1, progress=False)
    (folder / "trainer_state.json").write_text(json.dumps({"best_model_checkpoint": f"{folder}/checkpoint-8"}))
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != "README.md"}

    files, _ = push_model_folder(folder, "someone/x")
    (commit,) = fake_hub["create_commit"]
    uploaded = {op.path_in_repo: uploaded_bytes(op) for op in commit["operations"]}
    assert {"evaluation/report.html", "trainer_state.json", "training_recipe.json"} <= set(uploaded)
    leaks = [name for name, content in uploaded.items() if str(tmp_path).encode() in content]
    assert leaks == [], leaks  # tmp_path holds this machine's user name (pytest-of-<user>)
    evaluation = json.loads(uploaded["evaluation/metrics.json"])
    assert (evaluation["model"], evaluation["dataset"], evaluation["labels"]) == ("./run", "./tiny", list(CIFAR10_LABELS))
    assert json.loads(uploaded["training_recipe.json"])["data"]["dataset_name"] == "./tiny"
    assert json.loads(uploaded["trainer_state.json"]) == {"best_model_checkpoint": "./checkpoint-8"}
    assert b"dataset <b>./tiny</b>, split <b>test</b>,\nmodel <b>./run</b>" in uploaded["evaluation/report.html"]
    assert uploaded["config.json"] == (folder / "config.json").read_bytes()
    assert {p: p.read_bytes() for p in before} == before  # the local files keep their paths
    (folder / "trainer_state.json").write_text("{cut short")
    with pytest.raises(ValueError, match=r"trainer_state.json is not valid JSON \(.*\): the push would publish it as it"):
        push_model_folder(folder, "someone/x")
    assert len(fake_hub["create_commit"]) == 1 and fake_hub["create_repo"][1:] == []  # refused before the network


def as_cache_snapshot(folder: Path, tmp_path: Path, subfolder: str = "") -> Path:
    """`folder` laid out as the Hugging Face cache holds a download: snapshots/<rev>/ of links into ../../blobs/
    (with `subfolder`, a model in a folder of its repo: snapshots/<rev>/<subfolder>/, links into ../../../blobs/)."""
    repo = tmp_path / "hub" / "models--someone--vit"
    snapshot, blobs = repo / "snapshots" / "0123abcd" / subfolder, repo / "blobs"
    blobs.mkdir(parents=True)
    for number, path in enumerate(sorted(p for p in folder.rglob("*") if p.is_file())):
        blob = blobs / f"{number:040x}"  # named by a hash in the real cache
        shutil.copyfile(path, blob)
        link = snapshot / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot


@pytest.mark.parametrize("layout", ["folder", "cache snapshot", "cache snapshot subfolder"])
def test_a_link_out_of_the_model_folder_is_refused_before_any_upload(tmp_path, fake_hub, monkeypatch, layout):
    """trainer_state.json -> a token elsewhere: the push uploaded the token. Links that stay inside go up as the
    files they lead to, and a cache snapshot's links into its blobs/ are inside (also for a model kept in a
    folder of its repo, which was refused)."""
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run", extras=False)
    if layout.startswith("cache snapshot"):
        folder = as_cache_snapshot(folder, tmp_path, "models/small" if layout.endswith("subfolder") else "")
    secret = tmp_path / "token"
    secret.write_text("hf_secret")
    (folder / "trainer_state.json").symlink_to(secret)
    message = str(pytest.raises(SystemExit, load_script("push_to_hub").main, [str(folder), "someone/x"]).value.code)
    assert message == (
        f"error: {folder}: trainer_state.json is a symbolic link to {str(secret)!r}, outside the model folder: the "
        "push would upload the file it points to. Put a copy of the file in place of the link if it belongs to the "
        "model, or remove the link."
    )
    assert fake_hub == {"create_repo": [], "create_commit": []}
    assert not (folder / "README.md").exists()  # the card is not written either

    (folder / "trainer_state.json").unlink()
    (folder / "trainer_state.json").symlink_to("metrics.json")  # inside: fine
    (folder / ".README.md.tmp").symlink_to(secret)  # the card's staging file is replaced, not written through
    files, _ = push_model_folder(folder, "someone/x")
    (commit,) = fake_hub["create_commit"]
    uploaded = {op.path_in_repo: uploaded_bytes(op) for op in commit["operations"]}
    assert uploaded["trainer_state.json"] == uploaded["metrics.json"]  # the file the link leads to, as it goes up
    assert {"config.json", "model.safetensors", "evaluation/metrics.json", "evaluation/gallery.png"} <= set(files)
    assert secret.read_text() == "hf_secret"


def test_a_linked_evaluation_folder_out_of_the_model_folder_is_refused(tmp_path, fake_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run", extras=False)
    elsewhere = tmp_path / "someone-elses-evaluation"
    (folder / "evaluation").rename(elsewhere)
    (folder / "evaluation").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ValueError, match=re.escape(f"{folder}: evaluation is a symbolic link to '{elsewhere}', outside ")):
        push_model_folder(folder, "someone/x", dry_run=True)
    assert fake_hub == {"create_repo": [], "create_commit": []}


def test_an_auto_map_naming_a_path_is_refused_and_its_file_never_uploaded(tmp_path, fake_hub, monkeypatch):
    """auto_map "/home/me/secret.HfViTModel" named a file outside the folder: it was listed for upload (the link
    check then refused it as "/ is a symbolic link to '/'", which it is not). It is named for what it is."""
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run", extras=False)
    secret = tmp_path / "secret.py"
    secret.write_text("TOKEN = 'hf_secret'\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"]["AutoModel"] = f"{tmp_path}/secret.HfViTModel"
    (folder / "config.json").write_text(json.dumps(config))
    assert not any("secret" in name for name in upload_plan(folder))
    (problem,) = check_model_folder(folder)
    assert problem.startswith(f"config.json's auto_map names the module '{tmp_path}/secret', which is not a file of "
                              "the folder")  # fmt: skip
    with pytest.raises(IncompleteModelFolder):
        push_model_folder(folder, "someone/x", dry_run=True)
    assert fake_hub == {"create_repo": [], "create_commit": []}


def test_a_processor_of_another_size_than_the_model_is_refused_by_the_push(tmp_path, fake_hub, monkeypatch):
    """A preprocessor_config.json of 224x224 beside a 32x32 model (the processor of another model copied in):
    the push uploaded it and every pipeline() call of a Hub user then failed. Refused, naming both sizes; a
    centre crop to the model's size is fine."""
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run", extras=False)
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    (folder / "preprocessor_config.json").write_text(json.dumps({**processor, "size": {"height": 224, "width": 224}}))
    assert check_model_folder(folder) == [
        "preprocessor_config.json makes images of 224x224 but config.json's image_size is 32x32: "
        "pipeline('image-classification') would hand the model images it refuses. Save the model's own processor: "
        "`hf_vit.make_image_processor(model.config).save_pretrained(folder)`."
    ]
    with pytest.raises(IncompleteModelFolder):
        push_model_folder(folder, "someone/x", dry_run=True)
    assert fake_hub == {"create_repo": [], "create_commit": []}
    cropped = {**processor, "size": {"height": 40, "width": 40}, "do_center_crop": True,
               "crop_size": {"height": 32, "width": 32}}  # fmt: skip
    (folder / "preprocessor_config.json").write_text(json.dumps(cropped))
    assert check_model_folder(folder) == []
    # an older feature extractor's one-number size, and a crop without a resize: the sizes they make
    for other in ({**processor, "size": 224}, {**processor, "do_resize": False, "do_center_crop": True, "crop_size": 24}):
        (folder / "preprocessor_config.json").write_text(json.dumps(other))
        (problem,) = check_model_folder(folder)
        made = 224 if other.get("size") == 224 else 24
        assert problem.startswith(f"preprocessor_config.json makes images of {made}x{made} but config.json's image_size")
    (folder / "preprocessor_config.json").write_text(json.dumps({**processor, "size": {"shortest_edge": 32}}))
    assert check_model_folder(folder) == []  # the image's own aspect decides: the model names a wrong size


@pytest.mark.parametrize("edit", [{"depth": 2}, {"dim": 64}])
def test_a_config_that_does_not_describe_the_weights_is_refused_by_push_and_evaluation(tmp_path, edit):
    """An edited config.json (another depth or width than the weights): transformers would fill the gaps with
    random layers and warn in a log; the push and the evaluation refuse it instead."""
    from hf_vit.analysis import load_classifier

    folder = make_model_folder(tmp_path / "run", extras=False)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **edit}))
    (problem,) = check_model_folder(folder)
    assert problem.startswith("config.json does not describe the weights in the safetensors (")
    assert ("missing: vit.transformer.layers.1." in problem) if "depth" in edit else ("is [" in problem)
    with pytest.raises(ValueError) as err:
        load_classifier(folder)
    # the same diagnosis, naming the weight (and, called from Python, the argument rather than a flag)
    assert str(err.value) == f"{str(folder)!r} (model_name_or_path): {problem}"


def test_a_folder_without_a_head_is_named_as_such_by_the_evaluation(tmp_path):
    from hf_vit import HfViTModel
    from hf_vit.analysis import load_classifier

    HfViTModel(HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64)).save_pretrained(tmp_path / "body")
    with pytest.raises(ValueError, match=r"holds a model without a classification head \(saved from HfViTModel\)"):
        load_classifier(tmp_path / "body")


def test_a_folder_without_a_head_is_refused_by_the_push(tmp_path, fake_hub, monkeypatch):
    """A folder saved from HfViTModel (no classification head) went up with a card that claims image
    classification and code that loads AutoModelForImageClassification: every Hub user's prediction came from a
    random head (the evaluation already refused such a folder). The push refuses it too, before the network."""
    from hf_vit import HfViTModel

    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    config = HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64)
    HfViTModel(config).save_pretrained(tmp_path / "body")
    make_image_processor(config).save_pretrained(tmp_path / "body")
    code = pytest.raises(SystemExit, load_script("push_to_hub").main, [str(tmp_path / "body"), "someone/x"]).value.code
    assert code == (f"error: Not pushing {tmp_path / 'body'}: the folder is incomplete.\n- the folder holds a model "
                    "without a classification head (saved from HfViTModel): pipeline('image-classification') and the "
                    "card's code would load it with a random head. Push the folder training wrote "
                    "(HfViTForImageClassification).")  # fmt: skip
    assert fake_hub == {"create_repo": [], "create_commit": []}


def test_a_kept_card_that_loads_another_revision_is_refused(tmp_path, fake_hub, monkeypatch):
    """A push to a branch writes its card into the folder (REVISION = "dev"); a later push of the folder to main with
    --keep_card uploaded that card as it was, so main's card told its readers to load the dev branch. A kept card
    whose code loads another revision than the push's is now refused (its dry run too), before anything is
    uploaded; pinned to the push's branch or to a commit hash, it goes up as it is."""
    from hf_vit.card import render_model_card
    from hf_vit.export_transformers import export_to_transformers_vit

    push = load_script("push_to_hub").main
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run", extras=False)
    push([str(folder), "someone/x"])
    push([str(folder), "someone/x", "--revision", "dev"])
    card = (folder / "README.md").read_text()
    assert 'REVISION = "dev"' in card  # the branch's card, left in the folder
    main, commits = dict(fake_hub.repos["someone/x"]), len(fake_hub["create_commit"])
    for dry_run in ([], ["--dry_run"]):
        code = pytest.raises(SystemExit, push, [str(folder), "someone/x", "--keep_card", *dry_run]).value.code
        assert code == (
            "error: README.md's code loads the model from 'dev', but this push goes to main: kept as it is "
            "(--keep_card), the card would send its readers to another revision's model. Push without --keep_card "
            "to write the card for main, or change the card's revision to 'main' (or a commit hash of the "
            "repository) and push again."
        )
    assert fake_hub.repos["someone/x"] == main and len(fake_hub["create_commit"]) == commits
    assert (folder / "README.md").read_text() == card
    push([str(folder), "someone/x", "--revision", "dev", "--keep_card"])  # its own branch: goes up as it is
    assert fake_hub.branches[("someone/x", "dev")]["README.md"].decode() == card
    pinned = card.replace('REVISION = "dev"', 'REVISION = "0123456789abcdef0123456789abcdef01234567"')
    (folder / "README.md").write_text(pinned)  # a commit hash the user read: kept wherever it goes
    push([str(folder), "someone/x", "--keep_card"])
    assert fake_hub.repos["someone/x"]["README.md"].decode() == pinned

    # An exported model's card for main names no revision: it loads main, which a branch's readers must not get.
    plain = export_to_transformers_vit(make_model_folder(tmp_path / "cls", extras=False), tmp_path / "plain")
    (plain / "README.md").write_text(str(render_model_card(plain, "someone/x")))
    code = pytest.raises(SystemExit, push, [str(plain), "someone/x", "--revision", "dev", "--keep_card"]).value.code
    assert code.startswith("error: README.md's code loads the model from 'main', but this push goes to the branch "
                           "'dev': kept as it is"), code  # fmt: skip
    assert "write the card for the branch 'dev', or change the card's revision to 'dev'" in code


def test_keep_card_without_a_card_in_the_folder_is_refused(tmp_path, fake_hub, monkeypatch):
    """--keep_card on a folder without README.md uploaded the new weights and results and left the repository's
    card as an earlier push wrote it: the model page showed another model's accuracy. Refused now (the dry run
    too), before anything goes up."""
    push = load_script("push_to_hub").main
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run", extras=False)
    push([str(folder), "someone/x"])
    (folder / "README.md").unlink()
    before, commits = dict(fake_hub.repos["someone/x"]), len(fake_hub["create_commit"])
    for dry_run in ([], ["--dry_run"]):
        code = pytest.raises(SystemExit, push, [str(folder), "someone/x", "--keep_card", *dry_run]).value.code
        assert code == (
            f"error: --keep_card uploads the folder's README.md as it is, but {folder} has none: the repository would "
            "keep the card an earlier push wrote, with another model's results, or have no card at all. Push without "
            f"--keep_card to write the card, or put your card in {folder / 'README.md'}."
        )
    assert fake_hub.repos["someone/x"] == before and len(fake_hub["create_commit"]) == commits
    assert not (folder / "README.md").exists()


def test_a_kept_card_that_loads_another_repository_is_refused(tmp_path, fake_hub, monkeypatch):
    """push_to_hub.py --keep_card uploaded the folder's card as it was: the card an earlier push (or dry run) wrote
    for another repository, or training's card with its placeholder 'your-username/run', so the model page told its
    readers to load another model, or one that does not exist. Refused now, before anything goes up; a card for
    this repository (or, for an id without an owner, this name) goes up as it is."""
    from hf_vit.card import write_model_card

    push = load_script("push_to_hub").main
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run", extras=False)
    push([str(folder), "someone/x", "--dry_run"])  # writes the card for someone/x into the folder
    commits = len(fake_hub["create_commit"])
    code = pytest.raises(SystemExit, push, [str(folder), "someone/y", "--keep_card"]).value.code
    assert code == (
        "error: README.md's code loads the model 'someone/x', but this push goes to 'someone/y': kept as it is "
        "(--keep_card), the card would send its readers to another repository. Push without --keep_card to write the "
        "card for 'someone/y', or change the card's model id to 'someone/y' and push again."
    )
    write_model_card(folder)  # as training writes it: no repository named yet
    assert "'your-username/run'" in pytest.raises(SystemExit, push, [str(folder), "run", "--keep_card"]).value.code
    assert len(fake_hub["create_commit"]) == commits and "someone/y" not in fake_hub.repos
    push([str(folder), "someone/x", "--dry_run"])
    push([str(folder), "SomeOne/X", "--keep_card"])  # the same repository, spelled otherwise
    push([str(folder), "x", "--keep_card"])  # under the token's account: the name matches
    assert fake_hub.repos["SomeOne/X"]["README.md"] == (folder / "README.md").read_bytes()


def test_a_push_to_an_id_without_an_owner_keeps_no_card_that_loads_another_id(tmp_path, fake_hub, monkeypatch):
    """A push to 'my-vit' lands as '<account>/my-vit'. With --keep_card, a card a dry run wrote for 'my-vit'
    (from_pretrained("my-vit"), which loads nothing on the Hub) or one for 'other/my-vit' went up as it was: only
    the names were compared. The first is refused before the network, the second once create_repo has named the
    repository, before the commit; a card for the full id goes up, and a card written by the push loads it."""
    from huggingface_hub import RepoUrl

    account_repo = HfApi.create_repo  # the fake: the Hub answers with the full id, under the token's account

    def create_repo(self, repo_id, **kwargs):
        full = repo_id if "/" in repo_id else f"someone/{repo_id}"
        account_repo(self, full, **kwargs)
        return RepoUrl(f"https://huggingface.co/{full}")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    push = load_script("push_to_hub").main
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    folder = make_model_folder(tmp_path / "run", extras=False)
    push([str(folder), "my-vit"])
    assert fake_hub["create_commit"][-1]["repo_id"] == "someone/my-vit"
    assert 'from_pretrained("someone/my-vit"' in (folder / "README.md").read_text()
    push([str(folder), "my-vit", "--dry_run"])  # writes the card for 'my-vit'
    assert 'from_pretrained("my-vit"' in (folder / "README.md").read_text()
    calls = len(fake_hub["create_repo"]), len(fake_hub["create_commit"])
    code = pytest.raises(SystemExit, push, [str(folder), "my-vit", "--keep_card"]).value.code
    assert code.startswith("error: README.md's code loads the model 'my-vit', an id without an owner")
    assert (len(fake_hub["create_repo"]), len(fake_hub["create_commit"])) == calls  # before the network
    write_model_card(folder, repo_id="other/my-vit")
    code = pytest.raises(SystemExit, push, [str(folder), "my-vit", "--keep_card"]).value.code
    assert "loads the model 'other/my-vit', but this push goes to 'someone/my-vit'" in code
    assert len(fake_hub["create_commit"]) == calls[1]
    write_model_card(folder, repo_id="someone/my-vit")
    push([str(folder), "my-vit", "--keep_card"])
    assert fake_hub.repos["someone/my-vit"]["README.md"] == (folder / "README.md").read_bytes()
    # another id without an owner is another repository, named as such (before: "an id without an owner ... put
    # under an account ('your-username/.')" for a hand-written card that loads its folder)
    card = (folder / "README.md").read_text()
    for loads, pushed_to in ((".", "my-vit"), ("my-vit", "someone/my-vit")):
        (folder / "README.md").write_text(card.replace('"someone/my-vit"', f'"{loads}"'))
        code = pytest.raises(SystemExit, push, [str(folder), pushed_to, "--keep_card"]).value.code
        assert f"loads the model {loads!r}, but this push goes to {pushed_to!r}" in code, code


def test_the_image_processors_remote_code_goes_up_and_is_checked_like_the_models(tmp_path):
    """The push took as remote code only the modules config.json's auto_map names: a processor whose
    preprocessor_config.json names its own module in auto_map (a 1-channel model's grey processor) went up
    without its .py, so a Hub user's AutoImageProcessor and pipeline() failed. Its module (and the siblings it
    imports) now go up, and one that is missing or imports hf_vit is refused, as config.json's are."""
    folder = make_model_folder(tmp_path / "run", extras=False)
    settings = json.loads((folder / "preprocessor_config.json").read_text())
    settings["auto_map"] = {"AutoImageProcessor": "processing_mine.MyProcessor"}
    (folder / "preprocessor_config.json").write_text(json.dumps(settings))
    (folder / "processing_mine.py").write_text("from .helpers_mine import grey\n")
    (folder / "helpers_mine.py").write_text("def grey(image):\n    return image\n")
    (folder / "script.py").write_text("print('not remote code')\n")
    assert check_model_folder(folder) == []
    plan = upload_plan(folder)
    assert "processing_mine.py" in plan and "helpers_mine.py" in plan and "script.py" not in plan

    (folder / "processing_mine.py").write_text("import hf_vit\n")
    assert check_model_folder(folder) == ["processing_mine.py imports hf_vit absolutely; remote code must only use "
                                          "`from .sibling import X` (hf_vit is not installed where the model is "
                                          "downloaded)."]  # fmt: skip
    (folder / "processing_mine.py").unlink()
    assert check_model_folder(folder) == [
        "processing_mine.py is missing: preprocessor_config.json's auto_map loads it as remote code. Save the model "
        "(and its processor) with `import hf_vit` done first (it registers the classes so save_pretrained copies "
        "their files)."
    ]
