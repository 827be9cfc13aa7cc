"""Export to transformers' built-in ViTForImageClassification: same logits, no remote code."""

import json
from pathlib import Path

import pytest
import torch
from test_hub import load_script, make_model_folder, run_as_hub_user
from transformers import ViTForImageClassification

from hf_vit import HfViTConfig, HfViTForImageClassification
from hf_vit.export_transformers import NotExportable, convert_to_vit, export_to_transformers_vit

# (image, patch, dim, depth, heads, dim_head, mlp_dim); heads * dim_head == dim in each.
CONFIGS = [
    (32, 4, 32, 2, 4, 8, 64),
    (32, 8, 48, 1, 3, 16, 96),
    (24, (4, 6), 40, 2, 2, 20, 80),  # non-square patches: the Conv2d kernel order must be right
    (16, 4, 32, 1, 1, 32, 64),  # one head as wide as dim: to_out is Identity -> o_proj = identity
]


def random_model(shape, seed=0):
    image, patch, dim, depth, heads, dim_head, mlp_dim = shape
    config = HfViTConfig(image_size=image, patch_size=patch, dim=dim, depth=depth, heads=heads,
                         dim_head=dim_head, mlp_dim=mlp_dim, layer_norm_eps=1e-6)
    torch.manual_seed(seed)
    model = HfViTForImageClassification(config).eval()
    with torch.no_grad():  # every parameter random (LayerNorms included), so every mapping matters
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model


@pytest.mark.parametrize("shape", CONFIGS)
def test_same_logits(shape):
    model = random_model(shape)
    vit = convert_to_vit(model)
    assert type(vit) is ViTForImageClassification
    assert vit.config.layer_norm_eps == 1e-6 and vit.config.hidden_act == "gelu" and not vit.config.qkv_bias
    x = torch.randn(3, 3, shape[0], shape[0])
    with torch.no_grad():
        ours, theirs = model(pixel_values=x).logits, vit(pixel_values=x).logits
    assert ours.abs().max().item() > 0.1  # logits large enough for the comparison to mean something
    assert (ours - theirs).abs().max().item() <= 1e-4


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_model_exports_in_its_dtype(tmp_path, dtype):
    """The check runs in float32 (two bf16 models with different kernels differ by ~1e-2, which the tolerance
    would call a broken export); the export keeps the saved dtype and the very same weights."""
    from hf_vit import make_image_processor

    model = random_model((32, 4, 64, 4, 4, 16, 128)).to(dtype)
    model.save_pretrained(tmp_path / "half")
    make_image_processor(model.config).save_pretrained(tmp_path / "half")
    export_to_transformers_vit(tmp_path / "half", tmp_path / "vit")
    vit = ViTForImageClassification.from_pretrained(tmp_path / "vit")
    assert vit.dtype == dtype and json.loads((tmp_path / "vit" / "config.json").read_text())["dtype"] == str(dtype)[6:]
    assert torch.equal(vit.classifier.weight, model.mlp_head[1].weight)
    assert torch.equal(vit.vit.embeddings.cls_token, model.vit.embeddings.cls_token)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours = model.float()(pixel_values=x).logits
        theirs = vit.float()(pixel_values=x).logits
    assert (ours - theirs).abs().max().item() <= 1e-4


def test_exported_folder_runs_without_remote_code(tmp_path):
    source = make_model_folder(tmp_path / "run", extras=False)
    out = tmp_path / "vit"
    load_script("export_to_transformers_vit").main([str(source), str(out), "--repo_id", "someone/vit-plain"])

    assert not list(out.glob("*.py"))  # nothing to trust
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "vit" and config["architectures"] == ["ViTForImageClassification"]
    assert "auto_map" not in config
    assert (out / "preprocessor_config.json").is_file() and (out / "evaluation" / "gallery.png").is_file()
    card = (out / "README.md").read_text()
    assert "Exported to transformers' built-in ViT, no remote code" in card
    assert "trust_remote_code=True" not in card.split("## How to use")[1].split("## Limitations")[0]

    got = run_as_hub_user(out, tmp_path, remote=False)  # no trust_remote_code, hf_vit unimportable
    assert got["class"] == "ViTForImageClassification"
    assert got["module"] == "transformers.models.vit.modeling_vit"
    model = HfViTForImageClassification.from_pretrained(source).eval()
    x = torch.linspace(-2, 2, 3 * 32 * 32).reshape(1, 3, 32, 32)
    with torch.no_grad():
        expected = model(pixel_values=x).logits[0]
    assert (torch.tensor(got["logits"]) - expected).abs().max().item() <= 1e-4
    # The user's pipeline (the exported processor, config and weights) answers as the source model does through the
    # source's processor: USER_SCRIPT's picture, top 3 classes by name and softmax probability.
    from transformers import AutoImageProcessor
    from PIL import Image

    picture = Image.new("RGB", (40, 28), (200, 30, 60))
    with torch.no_grad():
        probs = model(**AutoImageProcessor.from_pretrained(source)(picture, return_tensors="pt")).logits.softmax(-1)[0]
    top = probs.topk(3)
    assert [p["label"] for p in got["preds"]] == [model.config.id2label[int(i)] for i in top.indices]
    assert [p["score"] for p in got["preds"]] == pytest.approx(top.values.tolist(), abs=1e-5)


def test_errors_say_why(tmp_path):
    mean_model = HfViTForImageClassification(HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64, pool="mean"))
    with pytest.raises(NotExportable, match="pool='mean'.*always classifies the \\[CLS\\] token"):
        convert_to_vit(mean_model)
    wide = HfViTForImageClassification(HfViTConfig(dim=32, depth=1, heads=3, dim_head=16, mlp_dim=64))
    with pytest.raises(NotExportable, match="heads \\* dim_head = 3 \\* 16 = 48 differs from dim = 32"):
        convert_to_vit(wide)

    # Through the script: a clear message, and nothing written.
    folder = tmp_path / "wide"
    wide.save_pretrained(folder)
    with pytest.raises(SystemExit) as exit_info:
        load_script("export_to_transformers_vit").main([str(folder), str(tmp_path / "out")])
    assert "differs from dim" in str(exit_info.value.code)
    assert not (tmp_path / "out").exists()


def test_overwrite_never_deletes_the_source_and_a_failed_export_writes_nothing(tmp_path):
    from hf_vit import HfViTModel, make_image_processor

    export = load_script("export_to_transformers_vit").main
    source = make_model_folder(tmp_path / "parent" / "src")
    before = sorted(p.name for p in source.iterdir())
    with pytest.raises(SystemExit) as exit_info:  # the output folder holds the source
        export([str(source), str(tmp_path / "parent"), "--overwrite"])
    assert "would delete" in str(exit_info.value.code) and "does not hold the inputs" in str(exit_info.value.code)
    assert sorted(p.name for p in source.iterdir()) == before

    # A folder saved from the bare HfViTModel has no head: exporting it would ship a random one.
    config = HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64)
    HfViTModel(config).save_pretrained(tmp_path / "headless")
    make_image_processor(config).save_pretrained(tmp_path / "headless")
    with pytest.raises(SystemExit) as exit_info:
        export([str(tmp_path / "headless"), str(tmp_path / "e1")])
    assert "lacks weights the classifier needs (mlp_head" in str(exit_info.value.code)
    assert not (tmp_path / "e1").exists()

    (tmp_path / "a_file").write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        export([str(source), str(tmp_path / "a_file")])
    assert "is a file, not a folder" in str(exit_info.value.code)

    # --overwrite replaces an earlier export whole: no stale file survives, no staging folder is left.
    (tmp_path / "e2").mkdir()
    (tmp_path / "e2" / "model-00001-of-00002.safetensors").write_text("an earlier sharded save")
    export([str(source), str(tmp_path / "e2"), "--overwrite"])
    assert sorted(p.name for p in (tmp_path / "e2").iterdir()) == [
        "README.md", "config.json", "evaluation", "metrics.json", "model.safetensors", "preprocessor_config.json",
        "training_recipe.json",
    ]  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "e2", "headless", "parent"]

    # ... but only a model folder: a training run (its checkpoints) or one's own files are not its to delete.
    for name, own in (("run", ["checkpoint-4", "config.json", "training_args.bin"]), ("mine", ["notes.txt"])):
        for entry in own:
            (tmp_path / name / entry).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name / entry).write_text("keep me")
        with pytest.raises(SystemExit) as exit_info:
            export([str(source), str(tmp_path / name), "--overwrite"])
        kept = ", ".join(repr(e) for e in own if e != "config.json")
        assert exit_info.value.code == (
            f"error: --overwrite replaces the whole folder {tmp_path / name}, which holds more than "
            f"a model folder ({kept}): they would be deleted. Choose another folder, or move them out first."
        )
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == own


def test_a_failed_export_leaves_none_of_the_folders_it_made(tmp_path):
    """An export into kept/a/b/vit that fails (here its logit check, made impossible) left the empty a/ and a/b/
    that its lock had made: the folders it made are removed, the one that was there stays."""
    (tmp_path / "kept").mkdir()
    source = make_model_folder(tmp_path / "src")
    with pytest.raises(RuntimeError, match="not writing it"):
        export_to_transformers_vit(source, tmp_path / "kept" / "a" / "b" / "vit", atol=-1)
    assert list((tmp_path / "kept").iterdir()) == []

def test_a_link_out_of_the_model_folder_is_refused_one_inside_is_copied(tmp_path):
    """evaluation/gallery.png -> a token elsewhere: the export copied the token into the exported folder, as a
    real file that a push would then publish. A link that stays inside is copied as the file it leads to."""
    export = load_script("export_to_transformers_vit").main
    folder = make_model_folder(tmp_path / "run", extras=False)
    secret = tmp_path / "token"
    secret.write_text("hf_secret")
    (folder / "evaluation" / "gallery.png").unlink()
    (folder / "evaluation" / "gallery.png").symlink_to(secret)
    with pytest.raises(SystemExit) as exit_info:
        export([str(folder), str(tmp_path / "vit")])
    assert exit_info.value.code == (
        f"error: {folder}: evaluation/gallery.png is a symbolic link to {str(secret)!r}, outside the model folder: "
        "the export would copy the file it points to. Put a copy of the file in place of the link if it belongs to "
        "the model, or remove the link."
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "token"]  # nothing written, no staging folder

    (folder / "evaluation" / "gallery.png").unlink()
    (folder / "evaluation" / "gallery.png").symlink_to("confusion_matrix.png")  # inside: fine
    export([str(folder), str(tmp_path / "vit")])
    copied = tmp_path / "vit" / "evaluation" / "gallery.png"
    assert not copied.is_symlink() and copied.read_bytes() == (folder / "evaluation" / "confusion_matrix.png").read_bytes()


def test_legacy_names_match_what_save_pretrained_writes(tmp_path):
    """transformers writes ViT weights under the 4.x names; the exporter's fallback for an older
    transformers (whose ViT has those names in memory too) must produce exactly them."""
    from safetensors import safe_open

    from hf_vit.export_transformers import convert_state_dict, to_legacy_names

    model = random_model(CONFIGS[0])
    convert_to_vit(model).save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        on_disk = set(f.keys())
    legacy = set(to_legacy_names(convert_state_dict(model)))
    assert "vit.encoder.layer.1.attention.attention.query.weight" in legacy
    if any(".encoder.layer." in k for k in on_disk):  # transformers 5.x up to at least 5.24 saves the old names
        assert on_disk == legacy
    else:  # a later transformers that saves its in-memory names
        assert on_disk == set(convert_state_dict(model))


def test_damaged_files_are_named_with_their_path(tmp_path):
    """A cut-short model.safetensors or a broken JSON file: the message names the file of the source folder
    (not a safetensors traceback, nor a staging folder that is gone) and writes nothing."""
    for name, damage in (
        ("model.safetensors", lambda f: f.write_bytes(f.read_bytes()[:100])),
        ("config.json", lambda f: f.write_text("{\n oops")),
        ("preprocessor_config.json", lambda f: f.write_text("{ nope")),
    ):
        source = make_model_folder(tmp_path / name / "run", extras=False)
        damage(source / name)
        with pytest.raises(ValueError) as err:
            export_to_transformers_vit(source, tmp_path / name / "vit")
        expected = f"{source}: model.safetensors is damaged" if name.endswith("safetensors") else f"{source / name} is not valid JSON"
        assert str(err.value).startswith(expected), str(err.value)
        assert not (tmp_path / name / "vit").exists()


def test_paths_with_a_tilde_are_read_as_a_shell_would(tmp_path, monkeypatch):
    from hf_vit.analysis import default_output_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    make_model_folder(tmp_path / "m")
    # `--model=~/m` reaches the script unexpanded: the output went to ./evaluation-~--m (export: "no config.json")
    assert default_output_dir("~/m") == tmp_path / "m" / "evaluation"
    export_to_transformers_vit("~/m", "~/exported")
    assert (tmp_path / "exported" / "model.safetensors").is_file()
    # The import script reads back the folder it wrote (it printed a traceback after writing it).
    from lesson_vit import ViT, ViTConfig

    torch.save(ViT(ViTConfig(image_size=32, patch_size=8, dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64)).state_dict(),
               tmp_path / "vit.pt")
    load_script("import_lesson_weights").main(["~/vit.pt", "~/imported", "--heads", "2"])
    assert (tmp_path / "imported" / "model.safetensors").is_file()


def only_output_folder():
    """The first lines of a child script that imports hf_vit.output_folder (the standard library only) without the
    package's __init__, which starts transformers and torch (~4 s) that the staging and lock code never touch."""
    import hf_vit.output_folder

    package = str(Path(hf_vit.output_folder.__file__).parent)
    return f"import sys, types\nsys.modules['hf_vit'] = types.ModuleType('hf_vit')\nsys.modules['hf_vit'].__path__ = [{package!r}]\n"


def test_a_plain_kill_while_staging_leaves_the_old_folder_and_no_hidden_one(tmp_path):
    """`kill` (SIGTERM) halfway through an export or import: Python's default would end the process without
    running the staging folder's clean-up, leaving a hidden `.NAME.staging-*` folder beside the output. After a
    `kill -9`, which nothing can catch, the next export or import into the same place removes it."""
    import subprocess
    import sys

    from hf_vit.output_folder import staged_folder

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "README.md").write_text("the earlier export")
    script = only_output_folder() + (
        "import sys, time\n"
        "from hf_vit.output_folder import staged_folder\n"
        "with staged_folder(sys.argv[1], overwrite=True) as folder:\n"
        "    (folder / 'half.txt').write_text('x')\n"
        "    print('writing', flush=True)\n"
        "    for _ in range(1200): time.sleep(0.1)  # short sleeps: a kill whose handler runs between them ends it\n"
    )
    for kill, status in (("terminate", 128 + 15), ("kill", -9)):  # 143: what a shell reports for SIGTERM
        proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "out")], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "writing\n"
        getattr(proc, kill)()
        assert proc.wait(timeout=60) == status
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["README.md"]
    (abandoned,) = tmp_path.glob(".out.staging-*")  # the kill -9's
    assert (abandoned / "out" / "half.txt").is_file()
    # One written from another machine or container, whose pid means nothing here, is not judged.
    (tmp_path / ".out.staging-elsewhere").mkdir()
    (tmp_path / ".out.staging-elsewhere" / "owner").write_text("another-host pid:[4026531836] 2")
    with staged_folder(tmp_path / "out", overwrite=True) as folder:
        (folder / "config.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.staging-elsewhere", "out"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json"]


def test_a_plain_kill_while_converting_leaves_no_output_folder_and_no_lock_file(tmp_path):
    """`kill` (SIGTERM) while an export converts (its folders held, nothing staged yet) ended Python without the
    locks' clean-up: the output folder was left holding only .hf_vit.lock, and the model folder its lock file.
    It exits through the clean-up as a kill while staging does (status 143)."""
    import subprocess
    import sys

    source = make_model_folder(tmp_path / "src")
    script = only_output_folder() + (
        "import sys, time\n"
        "from hf_vit.output_folder import hold_folders\n"
        "with hold_folders(sys.argv[1], 'an export', reads=[sys.argv[2]]):\n"
        "    print('converting', flush=True)\n"
        "    for _ in range(1200): time.sleep(0.1)  # short sleeps: a kill whose handler runs between them ends it\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "out"), str(source)], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stdout.readline() == "converting\n"
    proc.terminate()
    assert proc.wait(timeout=60) == 128 + 15
    assert not (tmp_path / "out").exists()
    assert not list(source.glob(".hf_vit.lock"))

def test_an_interrupt_or_failure_between_the_two_moves_of_overwrite_loses_no_folder(tmp_path, monkeypatch):
    """--overwrite moves the old folder aside, then the new one in. A Ctrl-C between the two moves waits until both
    are done; a second move that fails puts the old folder back (both were deleted). The second move is wrapped
    (os.replace) only to aim the real SIGINT, or the failure, at that one instant."""
    import os
    import signal

    from hf_vit import output_folder

    real_replace = os.replace

    def second_move(action):
        calls = []

        def replace(src, dst):
            calls.append(src)
            if len(calls) == 2:
                action()
            return real_replace(src, dst)

        return replace

    def failing():
        raise PermissionError("the move failed")

    out = tmp_path / "out"
    out.mkdir()
    for action, kept in ((lambda: os.kill(os.getpid(), signal.SIGINT), "the new export"), (failing, "the earlier export")):
        (out / "README.md").write_text("the earlier export")
        monkeypatch.setattr(output_folder.os, "replace", second_move(action))
        with pytest.raises((KeyboardInterrupt, PermissionError)):
            with output_folder.staged_folder(out, overwrite=True) as folder:
                (folder / "README.md").write_text("the new export")
        monkeypatch.setattr(output_folder.os, "replace", real_replace)
        assert (out / "README.md").read_text() == kept
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left either


def test_a_signal_while_the_swap_installs_its_handlers_leaves_ctrl_c_working():
    """A SIGTERM that lands after the swap took over SIGINT but before it took over SIGTERM ended the block
    without restoring SIGINT: in a process that lives on (a notebook), Ctrl-C then did nothing. signal.signal is
    wrapped only to send that SIGTERM at that instant."""
    import os
    import signal

    from hf_vit import output_folder

    real_signal = signal.signal
    installs = []

    def install(sig, handler):
        previous = real_signal(sig, handler)
        installs.append(sig)
        if len(installs) == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # handled by the SIGTERM handler still in place
        return previous

    def on_sigterm(signum, frame):
        raise SystemExit(128 + signum)

    before_int, before_term = signal.getsignal(signal.SIGINT), real_signal(signal.SIGTERM, on_sigterm)
    try:
        output_folder.signal.signal = install
        with pytest.raises(SystemExit):
            with output_folder.signals_held():
                pass
    finally:
        output_folder.signal.signal = real_signal
        real_signal(signal.SIGTERM, before_term)
    assert signal.getsignal(signal.SIGINT) is before_int


def test_a_model_with_nan_or_infinite_weights_is_not_exported(tmp_path):
    """A folder whose weights hold a NaN (a training that diverged): the logit check compared NaN with NaN, which
    `diff > atol` lets through, so the export wrote a ViT that scores every image NaN, "same logits, checked"."""
    source = make_model_folder(tmp_path / "src", extras=False)
    model = HfViTForImageClassification.from_pretrained(source)
    with torch.no_grad():
        model.vit.transformer.layers[0].ff.net[0].weight[0, 0] = float("nan")
        model.mlp_head[1].bias[3] = float("inf")
    model.save_pretrained(source)
    with pytest.raises(SystemExit) as refused:
        load_script("export_to_transformers_vit").main([str(source), str(tmp_path / "vit")])
    assert str(refused.value.code) == (
        f"error: {source}: the weights hold NaN or infinite values (2 tensors: mlp_head.1.bias, "
        "vit.transformer.layers.0.ff.net.0.weight): the model scores every image NaN, and no export can be checked "
        "against it. The training that wrote them diverged (e.g. an overflow in fp16): export a checkpoint saved "
        "before it did."
    )
    assert not (tmp_path / "vit").exists()


def test_an_embedding_dropout_that_transformers_vit_cannot_hold_is_said(tmp_path, capsys):
    """transformers' ViT has one dropout rate for the embeddings and the sub-layers: a model trained with
    emb_dropout 0.3 and dropout 0.1 exported as 0.1 everywhere without a word (the logits are the same; a further
    training of the export drops the embeddings at another rate)."""
    from hf_vit import make_image_processor

    model = random_model(CONFIGS[0])
    model.config.dropout, model.config.emb_dropout = 0.1, 0.3
    model.save_pretrained(tmp_path / "src")
    make_image_processor(model.config).save_pretrained(tmp_path / "src")
    load_script("export_to_transformers_vit").main([str(tmp_path / "src"), str(tmp_path / "vit")])
    assert ("note: emb_dropout 0.3 differs from dropout 0.1, and transformers' ViT has one rate for both "
            "(hidden_dropout_prob): the export has 0.1. The logits are the same; only a further training of the "
            "export drops the embeddings at another rate.") in capsys.readouterr().out
    assert json.loads((tmp_path / "vit" / "config.json").read_text())["hidden_dropout_prob"] == 0.1



def test_a_dropout_inside_the_mlp_that_transformers_vit_lacks_is_said(tmp_path, capsys):
    """hf_vit's (the lesson's) MLP drops after its GELU and after its second Linear; transformers' ViT drops after the
    MLP only. A model trained with dropout 0.1 exported without a word; a further training of the export drops less."""
    from hf_vit import make_image_processor

    model = random_model(CONFIGS[0])
    model.config.dropout = model.config.emb_dropout = 0.1
    model.save_pretrained(tmp_path / "src")
    make_image_processor(model.config).save_pretrained(tmp_path / "src")
    load_script("export_to_transformers_vit").main([str(tmp_path / "src"), str(tmp_path / "vit")])
    out = capsys.readouterr().out
    assert "note: emb_dropout" not in out
    assert ("note: dropout 0.1: transformers' ViT has no dropout inside its MLP, where hf_vit drops between the GELU "
            "and the second Linear too, so the export drops once where the model drops twice. The logits are the "
            "same; only a further training of the export drops less.") in out

def test_the_exports_refusals_name_overwrite_as_the_caller_gives_it(tmp_path):
    """A refused export said `overwrite=True (--overwrite)` to everyone: the script's user has no `overwrite=True`,
    a Python caller no `--overwrite`. Within the script (data.flags_in_messages) it is --overwrite, else
    overwrite=True."""
    source = make_model_folder(tmp_path / "src", extras=False)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError) as refused:
        export_to_transformers_vit(source, tmp_path / "out")
    assert str(refused.value) == (
        f"{tmp_path / 'out'} exists and is not empty. Choose another folder or pass overwrite=True."
    )
    with pytest.raises(FileExistsError, match=r"^overwrite=True replaces the whole folder .* \('notes.txt'\)"):
        export_to_transformers_vit(source, tmp_path / "out", overwrite=True)
    with pytest.raises(SystemExit) as refused:
        load_script("export_to_transformers_vit").main([str(source), str(tmp_path / "out")])
    assert refused.value.code == (
        f"error: {tmp_path / 'out'} exists and is not empty. Choose another folder or pass --overwrite."
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["notes.txt"]


def test_a_repo_id_that_is_no_repo_id_is_refused_before_the_card_shows_it(tmp_path):
    """--repo_id goes into the card's usage example (from_pretrained("<repo_id>")): a web address or a malformed id
    was written there as given, a snippet that does not load. It is checked as the push checks it, and named."""
    source = make_model_folder(tmp_path / "src", extras=False)
    with pytest.raises(ValueError) as refused:
        export_to_transformers_vit(source, tmp_path / "out", repo_id="https://huggingface.co/me/vit")
    assert str(refused.value) == (
        "repo_id='https://huggingface.co/me/vit' is not a repo id: that is the repository's web address. Pass its "
        "id: 'me/vit'."
    )
    with pytest.raises(SystemExit) as refused:
        load_script("export_to_transformers_vit").main([str(source), str(tmp_path / "out"), "--repo_id", "me/my vit"])
    assert str(refused.value.code).startswith("error: --repo_id 'me/my vit' is not a repo id: ")
    assert str(refused.value.code).endswith("Use 'your-username/model-name'.")
    assert not (tmp_path / "out").exists()


def test_a_processor_of_another_size_than_the_model_is_refused_not_copied(tmp_path):
    """The export copies preprocessor_config.json as it is: one that resized to 64x64 for a 32x32 model was
    written beside the ViT, and every pipeline() call of the export failed with `Input image size (64*64) doesn't
    match model (32*32)`. It is named before anything is written, as the push names it."""
    source = make_model_folder(tmp_path / "src", extras=False)
    settings = json.loads((source / "preprocessor_config.json").read_text())
    settings["size"] = {"height": 64, "width": 64}
    (source / "preprocessor_config.json").write_text(json.dumps(settings))
    with pytest.raises(ValueError) as refused:
        export_to_transformers_vit(source, tmp_path / "out")
    assert str(refused.value) == (
        f"{source}: preprocessor_config.json makes images of 64x64 but config.json's image_size is 32x32: "
        "pipeline('image-classification') would hand the model images it refuses. Save the model's own processor: "
        "`hf_vit.make_image_processor(model.config).save_pretrained(folder)`."
    )
    assert not (tmp_path / "out").exists()


def test_a_one_channel_export_carries_transformers_own_processor_not_hf_vits(tmp_path):
    """A 1-channel model's processor is hf_vit's grey one, remote code: copied as it was, the export's
    preprocessor_config.json named image_processing_hf_vit.py, which the export leaves behind, so the exported
    ViT's processor failed to load (and would have asked for trust_remote_code). The export writes transformers'
    ViTImageProcessor; and since pipeline() hands it RGB images, which a 1-channel one refuses ('mean must have 3
    elements'), it is an RGB one, the grey statistics for each channel, for an RGB ViT whose patch projection folds
    the grey conversion in: its card uses pipeline(), with no conversion to grey."""
    import numpy as np
    from PIL import Image
    from transformers.models.auto.image_processing_auto import AutoImageProcessor

    from hf_vit import make_image_processor

    source = tmp_path / "grey"
    config = HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64, num_channels=1)
    HfViTForImageClassification(config).save_pretrained(source)
    make_image_processor(config, image_mean=(0.5,), image_std=(0.25,)).save_pretrained(source)
    assert (source / "image_processing_hf_vit.py").is_file()
    out = export_to_transformers_vit(source, tmp_path / "vit")

    assert not list(out.glob("*.py"))
    settings = json.loads((out / "preprocessor_config.json").read_text())
    assert "auto_map" not in settings and settings["image_processor_type"] == "ViTImageProcessor"
    assert (settings["image_mean"], settings["image_std"], settings["do_convert_rgb"]) == ([0.5] * 3, [0.25] * 3, True)
    kept = json.loads((source / "preprocessor_config.json").read_text())
    changed = ("auto_map", "image_processor_type", "image_mean", "image_std", "do_convert_rgb")
    assert {k: v for k, v in settings.items() if k not in changed} == {
        k: v for k, v in kept.items() if k not in changed}  # fmt: skip
    assert json.loads((out / "config.json").read_text())["num_channels"] == 3
    processor = AutoImageProcessor.from_pretrained(out, trust_remote_code=False)
    assert type(processor).__module__.startswith("transformers.models.vit")
    grey = Image.fromarray(np.arange(32 * 32, dtype=np.uint8).reshape(32, 32) % 251)
    assert processor(images=grey, return_tensors="pt")["pixel_values"].shape == (1, 3, 32, 32)
    card = (out / "README.md").read_text()
    assert 'pipeline("image-classification"' in card and '.convert("L")' not in card


def test_a_one_channel_exports_pipeline_gives_the_grey_models_answer(tmp_path, capsys):
    """A 1-channel model was exported as a 1-channel ViT, and pipeline("image-classification"), which turns every
    image RGB, failed on it ('mean must have 3 elements if it is an iterable, got 1'). The export is an RGB ViT
    whose patch projection weighs R, G, B as PIL's conversion to grey does: its pipeline() gives the grey model's
    class and scores (within PIL's rounding of the grey values to 8 bits) on colour, resized and palette images, and
    its logits on grey ones, through transformers' ViT and processor too; the export script says so."""
    import numpy as np
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

    from hf_vit import make_image_processor

    config = HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64, num_channels=1, num_labels=5)
    model = HfViTForImageClassification(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3, generator=torch.Generator().manual_seed(p.numel()))
    model.save_pretrained(tmp_path / "src")
    grey_processor = make_image_processor(config, image_mean=(0.48,), image_std=(0.24,))
    grey_processor.save_pretrained(tmp_path / "src")
    load_script("export_to_transformers_vit").main([str(tmp_path / "src"), str(tmp_path / "vit")])
    assert ("note: the grey (1-channel) model was exported as an RGB ViT with the grey conversion (PIL's \"L\" "
            "weights) folded into its patch projection, so pipeline() takes colour images as they are.\n"
            ) in capsys.readouterr().out  # fmt: skip
    classify = pipeline("image-classification", model=str(tmp_path / "vit"), top_k=None)

    rng = np.random.default_rng(0)
    colour = [Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)) for size in ((32, 32), (48, 40))]
    grey = [Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)) for size in ((32, 32), (40, 48))]  # mode L
    for image in (*colour, colour[0].convert("P"), *grey):
        with torch.no_grad():
            expected = model(**grey_processor(images=image, return_tensors="pt")).logits[0].softmax(-1)
        got = {answer["label"]: answer["score"] for answer in classify(image)}
        assert max(got, key=got.get) == config.id2label[int(expected.argmax())]
        # measured: at most 1.4e-4 on these images, 5e-4 on CIFAR-10 test images (PIL rounds the grey values)
        assert max(abs(got[config.id2label[i]] - float(expected[i])) for i in range(5)) < 2e-3
    # A grey image is R = G = B = L, and PIL's weights sum to 1: transformers' ViT and its own processor give the grey
    # model's logits on it (measured: 2.7e-7), not only its scores (an export whose std were 1% off passes the scores'
    # check above and is 1.4e-3 off here).
    vit = AutoModelForImageClassification.from_pretrained(tmp_path / "vit").eval()
    vit_processor = AutoImageProcessor.from_pretrained(tmp_path / "vit")
    for image in grey:
        with torch.no_grad():
            ours = model(**grey_processor(images=image, return_tensors="pt")).logits
            theirs = vit(**vit_processor(images=image, return_tensors="pt")).logits
        torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)


@pytest.mark.parametrize("problem_type", ["multi_label_classification", "regression"])
def test_the_exports_problem_type_is_the_models_so_pipeline_scores_alike(tmp_path, problem_type):
    """The export left problem_type out: a multi-label model's exported pipeline() scored with softmax (the scores of
    all classes summing to 1) instead of its sigmoid, a regression head's with sigmoid instead of its raw value."""
    from PIL import Image
    from transformers import pipeline

    from hf_vit import make_image_processor

    config = HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64, problem_type=problem_type,
                         **({"num_labels": 1} if problem_type == "regression" else {}))
    model = HfViTForImageClassification(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    model.save_pretrained(tmp_path / "src")
    processor = make_image_processor(config)
    processor.save_pretrained(tmp_path / "src")
    vit_folder = export_to_transformers_vit(tmp_path / "src", tmp_path / "vit")

    assert ViTForImageClassification.from_pretrained(vit_folder).config.problem_type == problem_type
    picture = Image.new("RGB", (32, 32), (200, 30, 60))
    with torch.no_grad():
        logits = model(**processor(picture, return_tensors="pt")).logits[0]
    expected = logits.sigmoid() if problem_type == "multi_label_classification" else logits
    classify = pipeline("image-classification", model=str(vit_folder))
    scores = {p["label"]: p["score"] for p in classify(picture, top_k=len(logits))}
    assert [scores[model.config.id2label[i]] for i in range(len(logits))] == pytest.approx(expected.tolist(), abs=1e-5)
