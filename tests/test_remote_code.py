"""Saving writes safetensors + remote code; a fresh process without hf_vit loads it all."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
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
    import json, sys
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
    print("RESULT" + json.dumps(out))
    """
)


def test_fresh_process_without_hf_vit_loads_folder(tmp_path):
    folder = tmp_path / "model"
    model = save_tiny(folder, pool="mean")
    x = torch.randn(3, 3, 32, 32)
    torch.save(x, tmp_path / "x.pt")
    image_path = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(image_path)
    (tmp_path / "load.py").write_text(FRESH_PROCESS)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_HOME")}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-I", str(tmp_path / "load.py"), str(folder), str(tmp_path / "x.pt"), str(image_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert out["class"] == "HfViTForImageClassification" and out["base_class"] == "HfViTModel"
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
