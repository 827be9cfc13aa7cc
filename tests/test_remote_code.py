"""Saving writes safetensors + remote code; a fresh process without hf_vit loads it all."""

import json
import os
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoConfig, AutoModel, AutoModelForImageClassification, pipeline

from hf_vit import HfViTConfig, HfViTForImageClassification, HfViTModel, make_image_processor


def save_tiny(folder, pool="cls"):
    torch.manual_seed(0)
    config = HfViTConfig(dim=32, depth=2, heads=2, dim_head=24, mlp_dim=64, pool=pool)
    model = HfViTForImageClassification(config).eval()
    model.save_pretrained(folder)
    make_image_processor(config).save_pretrained(folder)
    return model


def test_save_writes_safetensors_and_remote_code(tmp_path):
    save_tiny(tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [
        "config.json",
        "configuration_hf_vit.py",
        "model.safetensors",
        "modeling_hf_vit.py",
        "preprocessor_config.json",
    ]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "hf_vit"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_hf_vit.HfViTConfig",
        "AutoModel": "modeling_hf_vit.HfViTModel",
        "AutoModelForImageClassification": "modeling_hf_vit.HfViTForImageClassification",
    }
    # The copied files are self-contained: no absolute import of the package.
    for name in ("configuration_hf_vit.py", "modeling_hf_vit.py"):
        text = (tmp_path / name).read_text()
        assert "import hf_vit" not in text and "from hf_vit" not in text


def test_auto_classes_with_package_installed(tmp_path):
    model = save_tiny(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is HfViTConfig
    clf = AutoModelForImageClassification.from_pretrained(tmp_path)
    base = AutoModel.from_pretrained(tmp_path)
    assert type(clf) is HfViTForImageClassification and type(base) is HfViTModel
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (clf(pixel_values=x).logits - model(pixel_values=x).logits).abs().max() == 0
        assert torch.equal(base(pixel_values=x).pooler_output, model.vit(pixel_values=x).pooler_output)


def test_pipeline_with_package_installed(tmp_path):
    save_tiny(tmp_path)
    classify = pipeline("image-classification", model=str(tmp_path), trust_remote_code=True)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    result = classify(image, top_k=10)
    assert sorted(r["label"] for r in result) == sorted(HfViTConfig().id2label.values())
    assert abs(sum(r["score"] for r in result) - 1) < 1e-4


FRESH_PROCESS = textwrap.dedent(
    """
    import json, os, sys
    sys.modules["hf_vit"] = None  # make `import hf_vit` fail even where the package is installed
    try:
        import hf_vit  # noqa: F401
        raise SystemExit("hf_vit was importable")
    except ImportError:
        pass
    import numpy as np, torch
    from PIL import Image
    from transformers import AutoModel, AutoModelForImageClassification, pipeline

    folder = sys.argv[1]
    x = torch.load(sys.argv[2], weights_only=True)
    model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
    base = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    image = Image.open(sys.argv[3])
    classify = pipeline("image-classification", model=folder, trust_remote_code=True)
    with torch.no_grad():
        out = {
            "class": type(model).__name__,
            "module": type(model).__module__,
            "base_class": type(base).__name__,
            "logits": model(pixel_values=x).logits.tolist(),
            "pipeline": classify(image, top_k=3),
        }
    # The remote code saves too (a Hub user's fine-tune): its weights get the umask's bits, with no hf_vit to import.
    model.save_pretrained(sys.argv[4])
    out["weights_mode"] = oct(os.stat(os.path.join(sys.argv[4], "model.safetensors")).st_mode & 0o777)
    print("RESULT" + json.dumps(out))
    """
)


def test_fresh_process_without_hf_vit_loads_folder(fresh_process_runs):
    run = fresh_process_runs["load"]  # FRESH_PROCESS on a pool="mean" model, in fresh_process_runs' process
    model, x, image_path = run["model"], run["x"], run["image_path"]
    assert run["status"] == "OK", run["output"][-3000:]
    out = json.loads(run["output"].split("RESULT", 1)[1])
    assert out["class"] == "HfViTForImageClassification" and out["base_class"] == "HfViTModel"
    assert os.name == "nt" or out["weights_mode"] == "0o644"  # safetensors alone writes 0o600 (Windows: no bits)
    assert out["module"].startswith("transformers_modules"), out["module"]  # really the copied remote code
    with torch.no_grad():
        expected = model(pixel_values=x).logits
    assert (torch.tensor(out["logits"]) - expected).abs().max().item() <= 1e-6

    # The pipeline in the fresh process agrees with the processor + model here.
    processor = make_image_processor(model.config)
    pixel_values = processor(Image.open(image_path), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        probs = model(pixel_values=pixel_values).logits.softmax(-1)[0]
    top = probs.topk(3)
    assert [r["label"] for r in out["pipeline"]] == [model.config.id2label[int(i)] for i in top.indices]
    assert np.allclose([r["score"] for r in out["pipeline"]], top.values.numpy(), atol=1e-5)


def save_grey(folder, image_size=16):
    """A tiny 1-channel model (grey images) with its processor, as training saves them."""
    torch.manual_seed(0)
    config = HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64, num_channels=1, image_size=image_size,
                         patch_size=4, id2label={0: "dark", 1: "mid", 2: "light"})  # fmt: skip
    model = HfViTForImageClassification(config).eval()
    model.save_pretrained(folder)
    make_image_processor(config, image_mean=(0.5,), image_std=(0.25,)).save_pretrained(folder)
    return model


def colour_images(size=(20, 24)):
    """One picture in the modes a user's files come in; transparent pixels in the transparent ones."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    alpha = np.where(np.arange(size[0] * size[1]).reshape(size) % 3 == 0, 0, 255).astype(np.uint8)
    rgba = Image.fromarray(np.dstack([np.asarray(rgb), alpha]), "RGBA")
    sixteen = Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16))  # 16 bits, values within 0..255
    return {"RGB": rgb, "P": rgb.quantize(16), "L": rgb.convert("L"), "1": rgb.convert("1"),
            "CMYK": rgb.convert("CMYK"), "I;16": sixteen, "RGBA": rgba, "LA": rgba.convert("LA")}  # fmt: skip


def training_pixels(images, image_size, mean=0.5, std=0.25):
    """The pixel values training feeds the model for these images (hf_vit.data.decode_images, then normalised)."""
    import datasets

    from hf_vit.data import decode_images

    ds = datasets.Dataset.from_dict({"img": images}, features=datasets.Features({"img": datasets.Image()}))
    return (decode_images(ds, "img", image_size, 1, cache=False).float() / 255 - mean) / std


def test_a_one_channel_models_processor_reads_any_image_as_training_decodes_it(tmp_path):
    """A 1-channel model's saved processor was a plain ViTImageProcessor: called on a palette image it read the
    palette indices as grey values, on a 1-bit image 0/1, and on RGB, RGBA, LA or CMYK it failed (`mean must have
    3 elements`). It now makes any image grey as training decodes it (transparency on white), arrays too."""
    from transformers.models.auto.image_processing_auto import AutoImageProcessor

    save_grey(tmp_path)
    processor = AutoImageProcessor.from_pretrained(tmp_path)  # hf_vit imported: its own class, no remote code
    images = colour_images()
    want = training_pixels(list(images.values()), 16)
    for (mode, image), expected in zip(images.items(), want):
        got = processor(images=image, return_tensors="pt")["pixel_values"]
        assert got.shape == (1, 1, 16, 16), mode
        assert torch.allclose(got[0], expected, atol=1e-5), mode
    rgb = np.array(images["RGB"])
    for array in (rgb, torch.from_numpy(rgb).permute(2, 0, 1)):  # (H, W, C) and (C, H, W)
        assert torch.allclose(processor(images=array, return_tensors="pt")["pixel_values"][0], want[0], atol=1e-5)
    batch = processor(images=[images["P"], images["RGBA"]], return_tensors="pt")["pixel_values"]
    assert torch.allclose(batch, want[[1, 6]], atol=1e-5)
    with pytest.raises(ValueError, match="pass a PIL image, a uint8 array, or the grey image itself"):
        processor(images=rgb.astype(np.float32) / 255)


def test_pipeline_of_a_one_channel_model_with_hf_vit_imported_asks_nothing(tmp_path, monkeypatch):
    """With hf_vit imported, pipeline("image-classification") on a 1-channel folder (no trust_remote_code: the model
    and its grey processor are local code) asked in a terminal "Do you wish to run the custom code? [y/N]" and
    waited 15 s: its search for a video processor read the grey processor's auto_map as remote code. It now asks
    nothing, as for a 3-channel model, and classifies a grey image as the model does."""
    import builtins

    model = save_grey(tmp_path)
    asked = []
    monkeypatch.setattr(builtins, "input", lambda prompt="": asked.append(prompt) or "")  # a terminal's prompt
    classify = pipeline("image-classification", model=str(tmp_path), device="cpu")
    assert asked == []
    grey = Image.fromarray(np.arange(16 * 16, dtype=np.uint8).reshape(16, 16), "L")
    with torch.no_grad():
        probs = model(pixel_values=training_pixels([grey], 16)).logits.softmax(-1)[0]
    assert np.allclose([r["score"] for r in classify(grey, top_k=3)], probs.sort(descending=True).values, atol=1e-5)


GREY_PIPELINE = textwrap.dedent(
    """
    import json, sys
    sys.modules["hf_vit"] = None  # make `import hf_vit` fail even where the package is installed
    from transformers import pipeline

    classify = pipeline("image-classification", model=sys.argv[1], trust_remote_code=True)
    print("RESULT" + json.dumps({"module": type(classify.image_processor).__module__,
                                 "results": [classify(path, top_k=3) for path in sys.argv[2:]]}))
    """
)


def test_pipeline_serves_a_one_channel_model_as_training_reads_its_images(fresh_process_runs):
    """pipeline("image-classification") failed on a 1-channel model: it converts every image to RGB, which the
    model's plain ViTImageProcessor could not normalise with one channel's statistics. The folder now carries
    the grey processor as remote code: in a fresh process without hf_vit, the pipeline's scores for files of
    several modes equal the model's on the pixels training decodes (hf_vit.data) and on the evaluation's."""
    from hf_vit.analysis import BatchPreprocessor, load_model_and_processor

    run = fresh_process_runs["grey pipeline"]  # GREY_PIPELINE in fresh_process_runs' process
    folder, model, images, paths = run["folder"], run["model"], run["images"], run["paths"]
    assert (folder / "image_processing_hf_vit.py").is_file()
    text = (folder / "image_processing_hf_vit.py").read_text()
    assert "import hf_vit" not in text and "from hf_vit" not in text and "from ." not in text
    assert run["status"] == "OK", run["output"][-3000:]
    out = json.loads(run["output"].split("RESULT", 1)[1])
    assert out["module"].startswith("transformers_modules"), out["module"]  # the folder's copy, not hf_vit's

    files = [Image.open(path) for path in paths]
    _, processor = load_model_and_processor(str(folder))  # as evaluate_model.py loads it: no trust_remote_code
    evaluation = BatchPreprocessor(processor, 1)(files)
    training = training_pixels(files, 16)
    assert torch.allclose(evaluation, training, atol=1e-5)
    with torch.no_grad():
        probs = model(pixel_values=training).logits.softmax(-1)
    for mode, result, p in zip(images, out["results"], probs):
        top = p.topk(3)
        assert [r["label"] for r in result] == [model.config.id2label[int(i)] for i in top.indices], mode
        assert np.allclose([r["score"] for r in result], top.values.numpy(), atol=1e-5), mode


OLD_TRANSFORMERS = textwrap.dedent(
    """
    import sys
    sys.modules["hf_vit"] = None  # make `import hf_vit` fail even where the package is installed
    sys.modules["transformers.models.vit.image_processing_pil_vit"] = None  # as in transformers 5.0-5.3
    from transformers.models.auto.image_processing_auto import AutoImageProcessor

    try:
        AutoImageProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)
    except ImportError as err:
        print("REFUSED " + str(err))
    """
)


def test_the_grey_processor_on_a_transformers_without_its_base_says_which_version_it_needs(fresh_process_runs):
    """transformers 5.0-5.3 have no PIL ViT processor (transformers.models.vit.image_processing_pil_vit), which
    the grey processor builds on: a Hub user there got a bare ModuleNotFoundError naming that module. It now
    says which transformers the processor needs and how to get it (the module is hidden in a fresh process, as
    a version without it would lack it)."""
    output = fresh_process_runs["old transformers"]["output"]  # OLD_TRANSFORMERS, first in that fresh process
    assert "REFUSED" in output, output[-3000:]
    message = output.split("REFUSED", 1)[1]
    assert "needs transformers 5.4 or later" in message and "pip install -U 'transformers>=5.4,<6'" in message


@pytest.fixture(scope="module")
def fresh_process_runs(tmp_path_factory):
    """The fresh processes without hf_vit of three tests, as ONE process (a fresh Python + torch + transformers start
    is most of each one's cost; test_hub.run_jobs_in_one_process): each script runs as __main__ in its own
    namespace, with what each had alone: `python -I`, no PYTHONPATH, a fresh HF_HOME, offline, umask 022, hf_vit
    unimportable. OLD_TRANSFORMERS runs first, so the module it hides has never been imported, as in a
    transformers without it; its folder has a name of its own, so its remote code is a module of its own.
    Returns {job: dict(status, output, and what the test needs)}."""
    from test_hub import run_jobs_in_one_process

    root = tmp_path_factory.mktemp("fresh_process")
    runs, jobs = {}, {}
    save_grey(root / "grey_old_transformers")
    jobs["old transformers"] = (OLD_TRANSFORMERS, [root / "grey_old_transformers"])
    runs["old transformers"] = {}

    folder = root / "model"
    model = save_tiny(folder, pool="mean")
    x = torch.randn(3, 3, 32, 32)
    torch.save(x, root / "x.pt")
    image_path = root / "img.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(image_path)
    jobs["load"] = (FRESH_PROCESS, [folder, root / "x.pt", image_path, root / "saved"])
    runs["load"] = {"model": model, "x": x, "image_path": image_path}

    folder = root / "grey"
    model = save_grey(folder)
    # Files as a user has them; transparent ones are left out: pipeline's load_image drops alpha itself.
    images = {mode: im for mode, im in colour_images().items() if mode not in ("RGBA", "LA", "I;16")}
    paths = []
    for mode, image in images.items():
        paths.append(str(root / f"{mode}.{'jpg' if mode == 'CMYK' else 'png'}"))
        image.save(paths[-1])
    jobs["grey pipeline"] = (GREY_PIPELINE, [folder, *paths])
    runs["grey pipeline"] = {"folder": folder, "model": model, "images": images, "paths": paths}

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_HOME")}
    env.update(HF_HOME=str(root / "hf_home"), HF_HUB_OFFLINE="1")
    umask = {} if os.name == "nt" else {"umask": 0o022}
    results = run_jobs_in_one_process(jobs, root, env, ["-I"], cwd=root, **umask)
    for name, (status, printed) in results.items():
        runs[name].update(status=status, output="\n".join(printed))
    return runs


def test_a_float_colour_arrays_refusal_names_a_grey_array_the_processor_takes(tmp_path):
    """A 3-channel float array is refused by a 1-channel model's processor: the message told the user to pass
    'the grey image itself (H, W)', which transformers refuses ('Could not make a flat list of images'). It now
    names the one-channel shapes it takes, and the grey array so given reads as training reads that image."""
    from transformers.models.auto.image_processing_auto import AutoImageProcessor

    save_grey(tmp_path)
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    rgb = colour_images()["RGB"]
    with pytest.raises(ValueError, match=r"\(H, W, 1\) or \(1, H, W\)") as refused:
        processor(images=np.asarray(rgb, dtype=np.float32))
    assert "(H, W)." not in str(refused.value)
    grey = np.asarray(rgb.convert("L"), dtype=np.float32)  # what the user makes of it
    want = training_pixels([rgb], 16)
    for array in (grey[..., None], grey[None]):
        assert torch.allclose(processor(images=array, return_tensors="pt")["pixel_values"], want, atol=1e-5)


def test_a_bare_grey_array_is_read_as_the_grey_image_it_is(tmp_path):
    """A grey image as numpy or torch holds it, (H, W), given to a 1-channel model's processor, was refused by
    transformers with 'Could not make a flat list of images from [[...]]' and the whole array printed. It is the
    image such a model reads: it now reads as training reads that image, alone or in a list, uint8 or float."""
    from transformers.models.auto.image_processing_auto import AutoImageProcessor

    save_grey(tmp_path)
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    rgb = colour_images()["RGB"]
    want = training_pixels([rgb, rgb], 16)
    grey = np.asarray(rgb.convert("L"))
    for array in (grey, grey.astype(np.float32), torch.from_numpy(grey.copy())):
        assert torch.allclose(processor(images=array, return_tensors="pt")["pixel_values"], want[:1], atol=1e-5)
        assert torch.allclose(processor(images=[array, array], return_tensors="pt")["pixel_values"], want, atol=1e-5)
    channels_first = processor(images=grey, input_data_format="channels_first", return_tensors="pt")["pixel_values"]
    assert torch.allclose(channels_first, want[:1], atol=1e-5)
