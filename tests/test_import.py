"""Import of the lesson's state dicts (tests/lesson_vit.py is the lesson's module) into hf_vit folders."""

import os
import re
from pathlib import Path

import pytest
import torch
from lesson_vit import ViT, ViTConfig
from safetensors.torch import save_file
from test_hub import load_script
from test_train import modes_off_the_umask

from hf_vit import HfViTForImageClassification
from hf_vit.convert_lesson import load_lesson_state_dict
from hf_vit.import_lesson import import_lesson_weights, lesson_config, read_state_dict


def said(caplog) -> list[str]:
    """hf_vit's own warnings: transformers' once-per-process ones (the processor's torchvision fallback, first
    heard by whichever test builds a processor first) would make an exact comparison depend on the test order."""
    return [record.getMessage() for record in caplog.records if record.name.startswith("hf_vit")]


def lesson_model(seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = ViTConfig(**{"image_size": 32, "patch_size": 4, "dim": 48, "depth": 2, "heads": 3, "dim_head": 24,
                       "mlp_dim": 96, **overrides})
    model = ViT(cfg).eval()
    with torch.no_grad():  # LayerNorms start at ones and zeros: an import that swapped two of them would pass
        for p in model.parameters():
            p.normal_(0, 0.3)
    return cfg, model


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_import_gives_equal_logits(tmp_path, fmt):
    cfg, ref = lesson_model()
    weights = tmp_path / f"vit.{fmt}"
    if fmt == "pt":
        torch.save(ref.state_dict(), weights)
    else:
        save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, weights)
    out = tmp_path / "imported"
    # heads is the one field the shapes cannot tell (inner width 72 = 3 x 24 or 6 x 12 ...).
    load_script("import_lesson_weights").main([str(weights), str(out), "--heads", "3"])

    for name in ("config.json", "model.safetensors", "modeling_hf_vit.py", "configuration_hf_vit.py",
                 "preprocessor_config.json", "README.md"):
        assert (out / name).is_file(), name
    model = HfViTForImageClassification.from_pretrained(out).eval()
    assert (model.config.dim, model.config.depth, model.config.heads, model.config.dim_head) == (48, 2, 3, 24)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert (model(pixel_values=x).logits - ref(x)).abs().max().item() <= 1e-5


def test_mean_pool_and_identity_out_from_config_file(tmp_path):
    cfg, ref = lesson_model(seed=1, dim=32, heads=1, dim_head=32, mlp_dim=64, pool="mean", patch_size=8)
    weights = tmp_path / "vit.pt"
    torch.save({"epoch": 3, "model_state_dict": ref.state_dict()}, weights)  # a training checkpoint dict
    config_file = tmp_path / "cfg.json"
    config_file.write_text('{"pool": "mean", "num_classes": 10}')
    out = import_lesson_weights(weights, tmp_path / "out", {"pool": "mean"})
    load_script("import_lesson_weights").main([str(weights), str(tmp_path / "out2"), "--config", str(config_file)])
    x = torch.randn(2, 3, 32, 32)
    for folder in (out, tmp_path / "out2"):
        model = HfViTForImageClassification.from_pretrained(folder).eval()
        assert model.config.pool == "mean" and model.config.patch_size == 8 and model.config.heads == 1
        with torch.no_grad():
            assert (model(pixel_values=x).logits - ref(x)).abs().max().item() <= 1e-5


def test_heads_follow_from_dim_head_as_dim_head_follows_from_heads():
    _, ref = lesson_model()  # inner width 72 = 3 heads x 24
    assert lesson_config(ref.state_dict(), {"dim_head": 24}).heads == 3
    assert lesson_config(ref.state_dict(), {"dim_head": 12}).heads == 6
    assert lesson_config(ref.state_dict(), {"heads": 6}).dim_head == 12


def test_non_square_sizes_are_given_as_pairs_and_a_square_guess_is_said(tmp_path, capsys):
    """A (2, 8) patch has the weights of a (4, 4) one: the import takes squares that fit, and says so."""
    _, ref = lesson_model(patch_size=(2, 8), dim_head=16)
    weights = tmp_path / "vit.pt"
    torch.save(ref.state_dict(), weights)
    script = load_script("import_lesson_weights")
    script.main([str(weights), str(tmp_path / "guess"), "--heads", "3"])
    out = capsys.readouterr().out
    assert "image 32x32, patch 4x4, dim 48, depth 2, 3 heads of 16" in out
    assert ("note: --image_size, --patch_size and --channels not given: the model takes 32x32 images of 3 channels in "
            "4x4 patches, the squares that fit the weight shapes") in out
    assert "--image_size H W --patch_size H W --overwrite" in out
    script.main([str(weights), str(tmp_path / "pair"), "--heads", "3", "--image_size", "32", "--patch_size", "2", "8"])
    out = capsys.readouterr().out
    assert "image 32x32, patch 2x8," in out and "not given: the model takes" not in out
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = ref(x)
        pair = HfViTForImageClassification.from_pretrained(tmp_path / "pair").eval()(pixel_values=x).logits
        guess = HfViTForImageClassification.from_pretrained(tmp_path / "guess").eval()(pixel_values=x).logits
    assert (pair - expected).abs().max().item() <= 1e-5
    assert (guess - expected).abs().max().item() > 1e-2  # what the note warns of
    with pytest.raises(SystemExit):
        script.main([str(weights), str(tmp_path / "o"), "--heads", "3", "--patch_size", "2", "8", "1"])
    assert "--patch_size takes one number (a square) or two (height width), got 3." in capsys.readouterr().err


def test_wrong_or_partial_state_dict_lists_missing_and_unexpected_keys(tmp_path):
    _, ref = lesson_model()
    sd = ref.state_dict()
    del sd["transformer.layers.1.1.fn.net.3.weight"]
    sd["transformer.layers.0.0.fn.to_q.weight"] = torch.zeros(3)
    with pytest.raises(ValueError) as err:
        import_lesson_weights_from(sd, tmp_path, heads=3)
    message = str(err.value)
    assert "Missing keys (1): transformer.layers.1.1.fn.net.3.weight" in message  # the lesson's names, as saved
    assert "Unexpected keys (1): transformer.layers.0.0.fn.to_q.weight" in message
    assert not (tmp_path / "out").exists()  # nothing half-written

    # Through the script, with a wrong config: shape mismatches named, exit with a message.
    weights = tmp_path / "vit.pt"
    torch.save(ref.state_dict(), weights)
    with pytest.raises(SystemExit) as exit_info:
        load_script("import_lesson_weights").main([str(weights), str(tmp_path / "o"), "--heads", "3", "--mlp_dim", "64"])
    assert str(exit_info.value.code) == (
        "error: The cfg field `mlp_dim` is 64 but the weights' feed-forward width (transformer.layers.0.1.fn.net.0) is "
        "96. Leave `mlp_dim` out (the weights give it) or give the value the weights were trained with.")

    # Partial: the script reports the missing keys too.
    torch.save({k: v for k, v in ref.state_dict().items() if not k.startswith("mlp_head")}, weights)
    with pytest.raises(SystemExit) as exit_info:
        load_script("import_lesson_weights").main([str(weights), str(tmp_path / "o"), "--heads", "3"])
    assert "Missing keys (4): mlp_head.0.bias, mlp_head.0.weight, mlp_head.1.bias, mlp_head.1.weight" in str(exit_info.value.code)


def import_lesson_weights_from(sd, tmp_path, **cfg):
    weights = tmp_path / "bad.pt"
    torch.save(sd, weights)
    return import_lesson_weights(weights, tmp_path / "out", cfg)


def test_heads_required_and_pickles_refused(tmp_path):
    _, ref = lesson_model()
    with pytest.raises(ValueError, match="heads \\* dim_head = 72 .* Pass the lesson's `heads`"):
        lesson_config(ref.state_dict())
    pickled = tmp_path / "model.pt"
    torch.save(ref, pickled)  # the whole module: unpickling it could run code
    with pytest.raises(ValueError, match="weights_only=True"):
        read_state_dict(pickled)


def test_one_channel_weights_need_their_statistics_and_a_failure_writes_nothing(tmp_path):
    _, ref = lesson_model(channels=1)
    weights = tmp_path / "gray.pt"
    torch.save(ref.state_dict(), weights)
    main = load_script("import_lesson_weights").main
    with pytest.raises(SystemExit) as exit_info:  # CIFAR-10's 3-channel statistics cannot fit
        main([str(weights), str(tmp_path / "out"), "--heads", "3", "--channels", "1"])
    assert "one value per channel (1), got 3 and 3" in str(exit_info.value.code)
    assert "Pass --image_mean and --image_std with 1 value(s) each" in str(exit_info.value.code)
    assert not (tmp_path / "out").exists()

    main([str(weights), str(tmp_path / "out"), "--heads", "3", "--channels", "1", "--image_mean", "0.5", "--image_std", "0.25"])
    # From its module: transformers 5.17 without torchvision turns the top-level name into a placeholder that
    # raises (5.24 does not); the module's class loads the PIL processor on both.
    from transformers.models.auto.image_processing_auto import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(tmp_path / "out")
    assert (list(processor.image_mean), list(processor.image_std)) == ([0.5], [0.25])


def test_overwrite_never_deletes_the_weights_being_imported(tmp_path):
    _, ref = lesson_model()
    folder = tmp_path / "lesson"
    folder.mkdir()
    torch.save(ref.state_dict(), folder / "vit.pt")
    with pytest.raises(SystemExit) as exit_info:
        load_script("import_lesson_weights").main([str(folder / "vit.pt"), str(folder), "--heads", "3", "--overwrite"])
    assert "--overwrite would delete" in str(exit_info.value.code)
    assert (folder / "vit.pt").is_file()


def test_an_output_dir_that_links_to_a_folder_not_made_yet_is_written_there(tmp_path):
    """out -> scratch/out, not made yet (a link into a scratch disk): the lock's mkdir met the link and failed with
    a bare FileExistsError. The folder is made at the link's target and the model written there."""
    _, ref = lesson_model()
    torch.save(ref.state_dict(), tmp_path / "vit.pt")
    (tmp_path / "scratch").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "scratch" / "out")
    import_lesson_weights(tmp_path / "vit.pt", tmp_path / "out", {"heads": 3})
    assert (tmp_path / "out").is_symlink()
    assert {"config.json", "model.safetensors"} <= {p.name for p in (tmp_path / "scratch" / "out").iterdir()}

@pytest.mark.parametrize("cfg, message", [({"heads": "3"}, "`heads` must be a whole number, got '3'"),
                                          ({"heads": None}, "`heads` must be a whole number, got None"),
                                          ({"pool": "max"}, "`pool` must be 'cls' or 'mean'")])
def test_cfg_values_of_the_wrong_type_are_named(cfg, message):
    _, ref = lesson_model()
    with pytest.raises(ValueError, match=re.escape(message)):
        lesson_config(ref.state_dict(), cfg)


def test_a_damaged_or_misplaced_weights_file_is_named(tmp_path):
    _, ref = lesson_model()
    weights = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, weights)
    weights.write_bytes(weights.read_bytes()[:100])  # an interrupted copy
    with pytest.raises(ValueError, match=r"vit.safetensors is damaged \(.*\): it was probably cut short"):
        read_state_dict(weights)
    with pytest.raises(ValueError, match="is a folder. Pass the weights file in it"):
        read_state_dict(tmp_path)


def test_the_imported_classes_are_named(tmp_path, capsys):
    """The weights carry no class names: a 10-class import was LABEL_0..LABEL_9 in its card, pipeline() and
    evaluation. A 10-class head now gets CIFAR-10's names (the lesson's dataset), --labels names any head, and a
    count that does not match the head is refused before anything is written."""
    from hf_vit import CIFAR10_LABELS

    _, ten = lesson_model()
    torch.save(ten.state_dict(), tmp_path / "ten.pt")
    _, three = lesson_model(num_classes=3)
    torch.save(three.state_dict(), tmp_path / "three.pt")
    script = load_script("import_lesson_weights")

    script.main([str(tmp_path / "ten.pt"), str(tmp_path / "a"), "--heads", "3"])
    assert HfViTForImageClassification.from_pretrained(tmp_path / "a").config.id2label == dict(enumerate(CIFAR10_LABELS))
    assert "note: --labels not given: the class names above are CIFAR-10's (the lesson's dataset)" in capsys.readouterr().out
    assert "LABEL_" not in (tmp_path / "a" / "README.md").read_text()

    script.main([str(tmp_path / "three.pt"), str(tmp_path / "b"), "--heads", "3", "--labels", "apple", "pear", "plum"])
    config = HfViTForImageClassification.from_pretrained(tmp_path / "b").config
    assert config.id2label == {0: "apple", 1: "pear", 2: "plum"} and config.label2id["plum"] == 2
    assert "3 classes (apple, pear, plum)" in capsys.readouterr().out

    with pytest.raises(SystemExit) as refused:
        script.main([str(tmp_path / "three.pt"), str(tmp_path / "c"), "--heads", "3", "--labels", "apple", "pear"])
    assert str(refused.value.code) == (
        "error: 2 class names given (--labels) but the model has 3 classes (its head's outputs). Name every class "
        "once, in the order of the head's outputs."
    )
    assert not (tmp_path / "c").exists()
    for names, problem in ((["apple", "apple", "plum"], "names 'apple' more than once"), (["", "pear", "plum"],
                                                                                          "holds an empty name")):  # fmt: skip
        with pytest.raises(SystemExit) as refused:
            script.main([str(tmp_path / "three.pt"), str(tmp_path / "c"), "--heads", "3", "--labels", *names])
        assert str(refused.value.code) == (
            f"error: --labels {problem}: each class needs its own name (label2id maps names back to classes). Name "
            "every class once, in the order of the head's outputs."
        )
    assert not (tmp_path / "c").exists()
    script.main([str(tmp_path / "three.pt"), str(tmp_path / "d"), "--heads", "3"])
    assert HfViTForImageClassification.from_pretrained(tmp_path / "d").config.id2label[2] == "LABEL_2"
    assert "the class names above are placeholders" in capsys.readouterr().out


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod.", "_orig_mod.module."])
def test_a_compiled_or_wrapped_lessons_state_dict_imports(tmp_path, prefix):
    """torch.compile(model).state_dict() names every key `_orig_mod.…` (`module._orig_mod.…` under DDP too): only
    DDP's `module.` was removed, and the import stopped with 30 missing and 30 unexpected keys."""
    _, ref = lesson_model()
    torch.save({prefix + k: v for k, v in ref.state_dict().items()}, tmp_path / "vit.pt")
    out = import_lesson_weights(tmp_path / "vit.pt", tmp_path / "out", {"heads": 3})
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        got = HfViTForImageClassification.from_pretrained(out).eval()(pixel_values=x).logits
        assert (got - ref(x)).abs().max().item() <= 1e-5


def test_a_checkpoint_dict_holding_the_weights_under_any_key_imports_and_several_are_named(tmp_path):
    """{'net': state_dict, 'epoch': 3}: only the keys state_dict, model_state_dict and model were looked in, and the
    import said `does not hold a state dict (a dict of name -> tensor); got dict`. The one state dict in a checkpoint
    is found under any key; two (e.g. a student and a teacher) are named, with how to save the one to import."""
    _, ref = lesson_model()
    torch.save({"net": ref.state_dict(), "epoch": 3, "best_acc": 0.7}, tmp_path / "ckpt.pt")
    out = import_lesson_weights(tmp_path / "ckpt.pt", tmp_path / "out", {"heads": 3})
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        got = HfViTForImageClassification.from_pretrained(out).eval()(pixel_values=x).logits
        assert (got - ref(x)).abs().max().item() <= 1e-5
    # A training loop's EMA copy beside the model: the model's own key still wins, as before.
    _, other = lesson_model(seed=1)
    torch.save({"model": ref.state_dict(), "model_ema": other.state_dict()}, tmp_path / "ema.pt")
    assert torch.equal(read_state_dict(tmp_path / "ema.pt")["cls_token"], ref.state_dict()["cls_token"])

    torch.save({"student": ref.state_dict(), "teacher": other.state_dict()}, tmp_path / "two.pt")
    with pytest.raises(ValueError) as err:
        read_state_dict(tmp_path / "two.pt")
    assert str(err.value) == (
        f"{tmp_path / 'two.pt'} holds 2 state dicts, under 'student' and 'teacher': which one to import is not clear. "
        "Pass the one to import with key='student'."
    )
    torch.save({"epoch": 3, "weights": [ref.state_dict()["cls_token"]]}, tmp_path / "none.pt")
    with pytest.raises(ValueError) as err:
        read_state_dict(tmp_path / "none.pt")
    assert str(err.value) == (
        f"{tmp_path / 'none.pt'} holds a dict of 'epoch', 'weights' with no state dict (a dict of name -> tensor) in "
        "it or under any of its keys. Pass the file written by `torch.save(model.state_dict(), path)`."
    )


def test_of_several_state_dicts_the_models_own_is_imported_and_said_or_key_picks_one(tmp_path, caplog, capsys):
    """{'model': sd, 'ema': ema_sd} imported 'model' without a word, while {'net': sd, 'ema': ema_sd} was refused as
    holding two state dicts. One rule now: the model's own (under a name training loops give it, else the one entry
    not named as an averaged copy) is imported and the others named, with --key (key=) to take another; where none
    is plainly the model's (a student and a teacher), the import stops naming --key."""
    _, ref = lesson_model()
    _, ema = lesson_model(seed=1)
    x = torch.randn(2, 3, 32, 32)

    def logits(folder):
        with torch.no_grad():
            return HfViTForImageClassification.from_pretrained(folder).eval()(pixel_values=x).logits

    torch.save({"model": ref.state_dict(), "ema": ema.state_dict(), "epoch": 3}, tmp_path / "model.pt")
    with caplog.at_level("WARNING", logger="hf_vit.import_lesson"):
        import_lesson_weights(tmp_path / "model.pt", tmp_path / "a", {"heads": 3, "image_size": 32, "patch_size": 4})
    assert said(caplog) == [
        f"{tmp_path / 'model.pt'} holds 2 state dicts: imported the one under 'model', the model's own, and left "
        "'ema'. To import 'ema' instead, pass key='ema'."
    ]
    assert (logits(tmp_path / "a") - ref(x)).abs().max().item() <= 1e-5

    torch.save({"net": ref.state_dict(), "ema": ema.state_dict(), "epoch": 3}, tmp_path / "net.pt")
    script = load_script("import_lesson_weights")
    script.main([str(tmp_path / "net.pt"), str(tmp_path / "b"), "--heads", "3"])
    assert (f"note: {tmp_path / 'net.pt'} holds 2 state dicts: imported the one under 'net', the model's own, and "
            "left 'ema'. To import 'ema' instead, pass --key ema.") in capsys.readouterr().out
    assert (logits(tmp_path / "b") - ref(x)).abs().max().item() <= 1e-5
    script.main([str(tmp_path / "net.pt"), str(tmp_path / "c"), "--heads", "3", "--key", "ema"])
    assert "holds 2 state dicts" not in capsys.readouterr().out
    assert (logits(tmp_path / "c") - ema(x)).abs().max().item() <= 1e-5

    torch.save({"student": ref.state_dict(), "teacher": ema.state_dict()}, tmp_path / "two.pt")
    torch.save(ref.state_dict(), tmp_path / "plain.pt")
    for argv, message in (
        (["two.pt"], f"{tmp_path / 'two.pt'} holds 2 state dicts, under 'student' and 'teacher': which one to import "
                     "is not clear. Pass the one to import with --key student."),
        (["net.pt", "--key", "epoch"], f"{tmp_path / 'net.pt'} holds a value of type int under 'epoch', not a state "
                                       "dict (--key epoch): its state dicts are under 'net' and 'ema'. Pass --key "
                                       "naming one of them."),
        (["plain.pt", "--key", "model"], f"{tmp_path / 'plain.pt'} holds one state dict, not a checkpoint dict of "
                                         "several: --key model has nothing to choose. Leave --key out."),
    ):
        with pytest.raises(SystemExit) as refused:
            script.main([str(tmp_path / argv[0]), str(tmp_path / "d"), "--heads", "3", *argv[1:]])
        assert str(refused.value.code) == f"error: {message}"
    assert not (tmp_path / "d").exists()



def test_a_module_holding_the_model_and_its_ema_copy_imports_the_models_own_and_says_so(tmp_path, caplog):
    """A Lightning module holding the lesson's ViT and its EMA copy (`model.` and `ema.module.` in one state dict):
    the prefix taken was the first of a set's order, which changes with the hash seed, and the other model's 30 keys
    were refused as unexpected under `is it the lesson's ViT with the same config?`. The model's own is imported and
    the other named, as for a checkpoint's entries; a student and a teacher are refused, naming both. A lesson ViT
    holding its own EMA copy (`cls_token` beside `ema.cls_token`) imported the copy without a word, and so did two
    models' weights, one under a wrapper's prefix (`module.cls_token` beside `cls_token`): that one is refused."""
    _, ref = lesson_model()
    _, ema = lesson_model(seed=1)
    both = {"state_dict": {**{"model." + k: v for k, v in ref.state_dict().items()},
                           **{"ema.module." + k: v for k, v in ema.state_dict().items()}}, "epoch": 1}
    torch.save(both, tmp_path / "last.ckpt")
    with caplog.at_level("WARNING", logger="hf_vit.import_lesson"):
        import_lesson_weights(tmp_path / "last.ckpt", tmp_path / "a", {"heads": 3, "image_size": 32, "patch_size": 4})
    assert said(caplog) == ["The state dict holds 2 lesson models, under 'ema.module.' and 'model.': imported the "
                            "one under 'model.', the model's own, and left 'ema.module.'."]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        got = HfViTForImageClassification.from_pretrained(tmp_path / "a").eval()(pixel_values=x).logits
        assert (got - ref(x)).abs().max().item() <= 1e-5

    caplog.clear()  # from Python, without a folder: said too
    sizes = {"heads": 3, "image_size": 32, "patch_size": 4}
    model = HfViTForImageClassification(lesson_config(both["state_dict"], sizes))
    with caplog.at_level("WARNING", logger="hf_vit"):
        load_lesson_state_dict(model.eval(), both["state_dict"])
    assert said(caplog) == ["The state dict holds 2 lesson models, under 'ema.module.' and 'model.': imported the "
                            "one under 'model.', the model's own, and left 'ema.module.'."]
    with torch.no_grad():
        assert (model(pixel_values=x).logits - ref(x)).abs().max().item() <= 1e-5

    itself = {**ref.state_dict(), **{"ema." + k: v for k, v in ema.state_dict().items()}}  # self.ema = a copy
    with caplog.at_level("WARNING", logger="hf_vit.import_lesson"):
        import_lesson_weights(itself, tmp_path / "c", {"heads": 3, "image_size": 32, "patch_size": 4})
    assert said(caplog)[-1] == ("The state dict holds 2 lesson models, under the top level and 'ema.': imported the "
                                "one at the top level, the model's own, and left 'ema.'.")
    with torch.no_grad():  # before: the EMA copy's, without a word (its keys fell on the same names, read last)
        got = HfViTForImageClassification.from_pretrained(tmp_path / "c").eval()(pixel_values=x).logits
        assert (got - ref(x)).abs().max().item() <= 1e-5

    twice = {**ref.state_dict(), **{"module." + k: v for k, v in ema.state_dict().items()}}  # wrapped and not
    with pytest.raises(ValueError, match=r"^The state dict holds 'cls_token' and 'module\.cls_token', two weights for "
                                         r"the one parameter 'cls_token': it holds the weights of two models"):
        import_lesson_weights(twice, tmp_path / "b", {"heads": 3})

    pair = {**{"student." + k: v for k, v in ref.state_dict().items()},
            **{"teacher." + k: v for k, v in ema.state_dict().items()}}
    with pytest.raises(ValueError, match=r"^The state dict holds 2 lesson models, under 'student\.' and 'teacher\.': "
                                         r"which one to import is not clear\. Save the one to import alone"):
        import_lesson_weights(pair, tmp_path / "b", {"heads": 3})
    assert not (tmp_path / "b").exists()

def test_a_pickled_whole_model_or_a_cut_short_file_is_named_with_the_way_out(tmp_path):
    """torch.save(model) (the whole module) was refused with torch's own text: terminal colour codes, `re-run
    torch.load with weights_only set to False` and `torch.serialization.add_safe_globals`, which no import flag does. It
    names the pickled class and how to save the weights alone; a cut-short .pt is called damaged (before: the same
    advice to save the weights alone)."""
    _, ref = lesson_model()
    torch.save(ref, tmp_path / "whole.pt")
    script = load_script("import_lesson_weights")
    with pytest.raises(SystemExit) as refused:
        script.main([str(tmp_path / "whole.pt"), str(tmp_path / "out"), "--heads", "3"])
    assert str(refused.value.code) == (
        f"error: {tmp_path / 'whole.pt'} holds a pickled Python object (lesson_vit.ViT), not tensors alone: "
        "torch.save(model) saves a whole model so, and a checkpoint may hold such objects beside the weights. The "
        "import reads tensors only (torch.load(weights_only=True)), as unpickling can run any code the file carries. "
        "If you trust the file, load it where the lesson's classes are defined (its notebook) with weights_only set to "
        "False, save its state_dict() alone with torch.save (for a checkpoint dict: the entry holding it, e.g. "
        "obj['model']), and import that file."
    )
    import numpy as np

    torch.save({"model": ref.state_dict(), "best_acc": np.float64(0.7)}, tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match=r"holds a pickled Python object \(numpy\.[\w.]+\), not tensors alone"):
        read_state_dict(tmp_path / "ckpt.pt")
    torch.save(ref.state_dict(), tmp_path / "whole_sd.pt")
    whole = (tmp_path / "whole_sd.pt").read_bytes()
    for size in (5000, len(whole) // 2):  # torch says `[Errno 22] Invalid argument`, `failed finding central directory`
        (tmp_path / "cut.pt").write_bytes(whole[:size])
        with pytest.raises(ValueError) as err:
            read_state_dict(tmp_path / "cut.pt")
        assert str(err.value).startswith(f"{tmp_path / 'cut.pt'} is damaged (")
        assert str(err.value).endswith("): it was probably cut short by an interrupted copy or save. Copy or save it "
                                       "again.")
    assert not (tmp_path / "out").exists()


def test_shapes_no_square_or_head_count_fits_name_the_flag_to_pass(tmp_path):
    """Weights of a grey (1-channel) lesson model, of non-square images, or --heads that do not divide the attention
    width: no size was read off the weights, the model was built with the defaults (3 channels, 32x32) and the import
    stopped with a shape mismatch and `set dim/depth/heads/dim_head/mlp_dim/patch_size/image_size/channels/
    num_classes to the lesson's values`. Now it names the one field to pass, before building anything; a non-square
    patch with no image size was built as 32x32, which fits the weights by chance at the wrong geometry."""
    cases = [
        ({"channels": 1}, {"heads": 3},
         "The weights take 16 values per patch (channels x patch height x patch width), not 3 channels x a square "
         "patch. Pass the lesson's channels (3 unless given: 1 for grey images) and, for a non-square patch, "
         "cfg={'patch_size': (H, W)}. The weights fit square patches with cfg={'channels': 1} (4x4) or "
         "cfg={'channels': 4} (2x2)."),
        ({"image_size": (32, 64)}, {"heads": 3},
         "The weights hold 128 patch positions, not a square grid: the lesson's images (or patches) are not square. "
         "Pass the lesson's cfg={'image_size': (H, W)} (and cfg={'patch_size': (H, W)} for a non-square patch). With "
         "4x4 patches the weights fit images of 2048 pixels: cfg={'image_size': (32, 64)}, cfg={'image_size': (64, "
         "32)} or cfg={'image_size': (16, 128)}."),
        ({"image_size": (16, 64), "patch_size": (2, 8)}, {"heads": 3, "patch_size": [2, 8]},
         "The image size cannot be read off the weights for a non-square patch (2, 8): 64 patch positions fit several "
         "grids. Pass the lesson's cfg={'image_size': (H, W)}. With 2x8 patches the weights fit images of 1024 pixels: "
         "cfg={'image_size': 32}, cfg={'image_size': (16, 64)} or cfg={'image_size': (64, 16)}."),
        ({}, {"heads": 5},
         "heads = 5 does not divide the attention width heads * dim_head = 72 that the weights hold. Pass the "
         "lesson's own heads (a divisor of 72), or its dim_head instead."),
    ]
    for overrides, cfg, message in cases:
        _, ref = lesson_model(**overrides)
        with pytest.raises(ValueError) as err:
            lesson_config(ref.state_dict(), cfg)
        assert str(err.value) == message


def test_messages_name_the_scripts_flags_there_and_the_arguments_in_python(tmp_path):
    """The import's messages named the script's flags (--channels, --image_size H W, --labels, --overwrite, ...)
    to a Python caller too, who passes a cfg dict and keyword arguments; one said `pass heads=1` to the script's user.
    Within the script (data.flags_in_messages) they name the flags, from Python the cfg entries and arguments."""
    from hf_vit.data import flags_in_messages

    _, grey = lesson_model(channels=1)
    _, wide = lesson_model(image_size=(32, 64))
    _, one_head = lesson_model(dim=32, heads=1, dim_head=32, mlp_dim=64)
    _, ref = lesson_model()
    cases = [  # (state dict, cfg, labels, as the script says it, as Python says it)
        (grey.state_dict(), {"heads": 3}, None, "Pass the lesson's --channels (3 unless given: 1 for grey images) "
         "and, for a non-square patch, --patch_size H W.", "Pass the lesson's channels (3 unless given: 1 for grey "
         "images) and, for a non-square patch, cfg={'patch_size': (H, W)}."),
        (wide.state_dict(), {"heads": 3}, None, "Pass the lesson's --image_size H W (and --patch_size H W for a "
         "non-square patch).", "Pass the lesson's cfg={'image_size': (H, W)} (and cfg={'patch_size': (H, W)} for a "
         "non-square patch)."),
        (ref.state_dict(), {}, None, "Pass the lesson's `heads` (e.g. --heads 8, or \"heads\" in the --config JSON).",
         "Pass the lesson's `heads` (e.g. cfg={'heads': 8})."),
        (one_head.state_dict(), {"heads": 8}, None, "or pass --heads 1.", "or pass cfg={'heads': 1}."),
        (ref.state_dict(), {"heads": 3}, ["a", "a"], "--labels names 'a' more than once", "labels names 'a' more "
         "than once"),
        (ref.state_dict(), {"heads": 3}, ["a"], "1 class names given (--labels)", "1 class names given (labels)"),
    ]
    for state_dict, cfg, labels, flagged, named in cases:
        with pytest.raises(ValueError) as err:
            lesson_config(state_dict, cfg, labels=labels)
        assert named in str(err.value) and "--" not in str(err.value)
        with flags_in_messages(), pytest.raises(ValueError) as err:
            lesson_config(state_dict, cfg, labels=labels)
        assert flagged in str(err.value)

    torch.save(ref.state_dict(), tmp_path / "vit.pt")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="Choose another folder or pass overwrite=True.$"):
        import_lesson_weights(tmp_path / "vit.pt", tmp_path / "out", {"heads": 3})
    with pytest.raises(ValueError, match="Pass image_mean and image_std with 3 value"):
        import_lesson_weights(tmp_path / "vit.pt", tmp_path / "new", {"heads": 3}, image_mean=[0.5], image_std=[0.2])
    with pytest.raises(SystemExit, match="Choose another folder or pass --overwrite.$"):
        load_script("import_lesson_weights").main([str(tmp_path / "vit.pt"), str(tmp_path / "out"), "--heads", "3"])
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("flag", ["--heads", "--dim_head", "--channels"])
def test_a_size_of_zero_is_named_not_divided_by(tmp_path, flag):
    """`--heads 0` (or --dim_head 0, --channels 0) ended in a ZeroDivisionError traceback while the shapes were read."""
    _, ref = lesson_model()
    torch.save(ref.state_dict(), tmp_path / "vit.pt")
    with pytest.raises(SystemExit) as refused:
        load_script("import_lesson_weights").main([str(tmp_path / "vit.pt"), str(tmp_path / "out"), flag, "0"])
    assert str(refused.value.code) == (
        f"error: The cfg field `{flag[2:]}` must be a whole number of at least 1, got 0. Give the lesson's own value."
    )
    assert not (tmp_path / "out").exists()


def test_an_averaged_models_state_dict_imports_its_averaged_weights(tmp_path):
    """torch.optim.swa_utils.AveragedModel (an EMA or SWA copy of the lesson's model) saves `module.…` keys and a
    step count `n_averaged`: the import stopped with `Unexpected keys (1): n_averaged`."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    _, ref = lesson_model()
    ema = AveragedModel(ref, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    ema.update_parameters(ref)  # the first update copies
    _, later = lesson_model(seed=1)
    ref.load_state_dict(later.state_dict())
    ema.update_parameters(ref)  # then the average moves: its weights are neither model's
    assert not torch.equal(ema.module.cls_token, ref.cls_token)
    torch.save(ema.state_dict(), tmp_path / "ema.pt")
    out = import_lesson_weights(tmp_path / "ema.pt", tmp_path / "out", {"heads": 3})
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        got = HfViTForImageClassification.from_pretrained(out).eval()(pixel_values=x).logits
        assert (got - ema.module(x)).abs().max().item() <= 1e-5


def test_lesson_weights_with_nan_or_infinite_values_are_refused(tmp_path):
    """An fp16 lesson run that overflowed saves NaN weights: the import wrote a model folder that scores every image
    NaN (pipeline() labels all of them 'airplane', score nan) without a word."""
    _, ref = lesson_model()
    sd = {k: v.half() for k, v in ref.state_dict().items()}
    sd["transformer.layers.1.0.fn.to_qkv.weight"][0, 0] = float("nan")
    torch.save(sd, tmp_path / "vit.pt")
    with pytest.raises(SystemExit) as refused:
        load_script("import_lesson_weights").main([str(tmp_path / "vit.pt"), str(tmp_path / "out"), "--heads", "3"])
    assert str(refused.value.code) == (
        f"error: {tmp_path / 'vit.pt'}: the weights hold NaN or infinite values (1 tensor: "
        "transformer.layers.1.0.fn.to_qkv.weight): the imported model would score every image NaN. The lesson's "
        "training diverged before they were saved (e.g. an overflow in fp16): import a checkpoint saved before it did."
    )
    assert not (tmp_path / "out").exists()


def test_the_lesson_model_held_by_a_wrapper_imports(tmp_path):
    """The lesson's ViT as an attribute of one's own module (`self.net = ViT(cfg)`), or of a PyTorch Lightning
    module, whose checkpoint holds {'state_dict': {'model.cls_token': ...}, 'epoch': ...}: every key was missing and
    unexpected. The prefix before the lesson's own names is removed; a key of the wrapper's own is still named."""
    _, ref = lesson_model()

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = ref

    torch.save(Wrapper().state_dict(), tmp_path / "wrapped.pt")
    torch.save({"state_dict": {f"model.{k}": v for k, v in ref.state_dict().items()}, "epoch": 9,
                "global_step": 900}, tmp_path / "lightning.ckpt")
    x = torch.randn(2, 3, 32, 32)
    for name in ("wrapped.pt", "lightning.ckpt"):
        out = import_lesson_weights(tmp_path / name, tmp_path / name.split(".")[0], {"heads": 3})
        with torch.no_grad():
            got = HfViTForImageClassification.from_pretrained(out).eval()(pixel_values=x).logits
            assert (got - ref(x)).abs().max().item() <= 1e-5
    own = {f"model.{k}": v for k, v in ref.state_dict().items()} | {"loss_fn.weight": torch.ones(10)}
    with pytest.raises(ValueError, match=r"Unexpected keys \(1\): loss_fn\.weight$"):
        import_lesson_weights_from(own, tmp_path, heads=3)
    # hf_vit's own key names load as before (nothing is taken for a wrapper's prefix).
    model = HfViTForImageClassification(lesson_config(ref.state_dict(), {"heads": 3}))
    torch.save(model.state_dict(), tmp_path / "hf_vit.pt")
    import_lesson_weights(tmp_path / "hf_vit.pt", tmp_path / "hf", {"heads": 3})


def test_a_pool_left_to_its_default_is_said(tmp_path, capsys):
    """pool leaves no trace in the weights: a mean-pooled lesson model imported without --pool became a [CLS]-pooled
    one with other logits, and the import said nothing (it says so for the sizes it guesses and the class names)."""
    _, ref = lesson_model(pool="mean")
    torch.save(ref.state_dict(), tmp_path / "vit.pt")
    script = load_script("import_lesson_weights")
    script.main([str(tmp_path / "vit.pt"), str(tmp_path / "a"), "--heads", "3"])
    assert ("note: --pool not given: the model pools the [CLS] token, as the lesson's cfg does by default. If the "
            "lesson's cfg said pool='mean', import again with --pool mean --overwrite: the weights fit either way, but "
            "the logits differ.") in capsys.readouterr().out
    script.main([str(tmp_path / "vit.pt"), str(tmp_path / "b"), "--heads", "3", "--pool", "mean"])
    assert "--pool not given" not in capsys.readouterr().out


def test_safetensors_weights_under_another_suffix_import(tmp_path):
    """safetensors' save_file(state_dict, "vit.pt"): the file was handed to torch.load, which failed with
    `WeightsUnpickler error: Unsupported operand 56`. It is read by its content, as safetensors."""
    _, ref = lesson_model()
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, tmp_path / "vit.pt")
    assert torch.equal(read_state_dict(tmp_path / "vit.pt")["cls_token"], ref.state_dict()["cls_token"])



def test_the_keys_of_another_lesson_variant_are_named_as_the_lesson_names_them(tmp_path):
    """A later vit-pytorch's blocks hold Attention and FeedForward without PreNorm's `.fn.`: the refusal listed the
    file's keys (`transformer.layers.0.0.to_qkv.weight`) as unexpected beside missing keys in hf_vit's naming
    (`vit.transformer.layers.0.attn.to_qkv.weight`), which hid that the two differ by one `.fn.`. Both are named as
    the lesson names them, its wrapper prefix aside, and so are shape mismatches."""
    _, ref = lesson_model()
    variant = {"module." + k.replace(".0.fn.", ".0.").replace(".1.fn.", ".1."): v for k, v in ref.state_dict().items()}
    with pytest.raises(ValueError) as err:
        import_lesson_weights(variant, tmp_path / "out", {"heads": 3})
    lines = str(err.value).splitlines()
    assert lines[1].startswith("Missing keys (14): transformer.layers.0.0.fn.to_out.0.bias, "
                               "transformer.layers.0.0.fn.to_out.0.weight, transformer.layers.0.0.fn.to_qkv.weight, ")
    assert lines[2].startswith("Unexpected keys (14): transformer.layers.0.0.to_out.0.bias, "
                               "transformer.layers.0.0.to_out.0.weight, transformer.layers.0.0.to_qkv.weight, ")
    narrower = ref.state_dict()  # block 1's feed-forward narrower than block 0's, which gives mlp_dim
    narrower["transformer.layers.1.1.fn.net.0.bias"] = narrower["transformer.layers.1.1.fn.net.0.bias"][:32]
    with pytest.raises(ValueError, match=r"mlp_dim.*: transformer\.layers\.1\.1\.fn\.net\.0\.bias: checkpoint"):
        import_lesson_weights(narrower, tmp_path / "out", {"heads": 3})
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("cfg, message", [
    ({"heads": 3, "dim": 32}, "The cfg field `dim` is 32 but the weights' embedding width (of cls_token, pos_embedding "
                              "and every block) is 48. Leave `dim` out (the weights give it) or give the value the "
                              "weights were trained with."),
    ({"heads": 3, "num_classes": 5}, "The cfg field `num_classes` is 5 but the weights' head (mlp_head.1) has 10 "
                                     "classes. Leave `num_classes` out"),
    ({"heads": 4, "dim_head": 16}, "The cfg fields `heads` = 4 and `dim_head` = 16 make an attention width heads * "
                                   "dim_head = 64, but the weights' attention is 72 wide (to_qkv). Give `heads` alone "
                                   "(dim_head follows) or the values the weights were trained with."),
])
def test_widths_given_that_the_weights_do_not_hold_are_named_with_their_field(tmp_path, cfg, message):
    """A dim, mlp_dim, class count or heads x dim_head given that the weights do not hold was built into the model,
    and the strict load listed every mismatched tensor under `set dim/depth/heads/dim_head/mlp_dim/... to the lesson's
    values`, naming no field (a depth was already named). Each is named with the width the weights hold."""
    _, ref = lesson_model()  # dim 48, 3 heads of 24 (attention width 72), mlp_dim 96, 10 classes
    with pytest.raises(ValueError) as refused:
        import_lesson_weights(ref.state_dict(), tmp_path / "out", cfg)
    assert str(refused.value).startswith(message)
    assert not (tmp_path / "out").exists()

def test_a_state_dict_of_another_model_is_named_as_such_in_a_short_message(tmp_path):
    """transformers' own ViT (an export_to_transformers_vit.py folder's weights, say) given to the import: the message
    listed all 73 missing and 39 unexpected keys, one line of 3,000 characters each, under `is it the lesson's ViT
    with the same config?`. It says most weights have no counterpart, shows the file's own key names, and lists at
    most 12 keys a kind."""
    from transformers import ViTConfig as TransformersViTConfig
    from transformers import ViTForImageClassification

    vit = ViTForImageClassification(TransformersViTConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                                                          intermediate_size=96, image_size=32, patch_size=4))
    torch.save(vit.state_dict(), tmp_path / "vit.pt")
    with pytest.raises(SystemExit) as refused:
        load_script("import_lesson_weights").main([str(tmp_path / "vit.pt"), str(tmp_path / "out"), "--heads", "3"])
    lines = str(refused.value.code).splitlines()
    first = ", ".join(repr(k) for k in list(vit.state_dict())[:3])
    assert lines[0] == (
        "error: The state dict does not fit this HfViT model: 73 of its 74 weights are missing, so it was probably "
        f"not saved from the lesson's ViT (whose keys look like 'transformer.layers.0.0.fn.to_qkv.weight'; this "
        f"one's: {first}, ...). Pass the file written by `torch.save(model.state_dict(), path)` of the lesson's model."
    )
    assert lines[1].startswith("Missing keys (73): mlp_head.0.bias, ") and lines[1].endswith(", ... (61 more)")
    assert lines[2].startswith("Unexpected keys (39): ") and lines[2].endswith(", ... (27 more)")
    assert not (tmp_path / "out").exists()


def test_heads_given_for_weights_of_one_head_as_wide_as_dim_are_named(tmp_path):
    """The lesson leaves the attention's output projection out for one head as wide as dim; `--heads 8` (the README's
    example) given for such weights stopped with missing to_out keys and a to_qkv shape mismatch."""
    _, ref = lesson_model(dim=32, heads=1, dim_head=32, mlp_dim=64)
    with pytest.raises(ValueError) as err:
        lesson_config(ref.state_dict(), {"heads": 8})
    assert str(err.value) == (
        "The weights' attention has no output projection (to_out), which the lesson's ViT leaves out only for one head "
        "as wide as dim (heads=1, dim_head=32), so heads=8 cannot hold them. Leave heads and dim_head out (the weights "
        "give them), or pass cfg={'heads': 1}."
    )
    assert lesson_config(ref.state_dict(), {"heads": 1}).dim_head == 32


def test_a_torch_save_file_under_the_safetensors_suffix_imports(tmp_path):
    """torch.save(state_dict, "vit.safetensors"): the suffix sent it to safetensors, which could not read it, and the
    import called the file damaged ('cut short by an interrupted copy or save. Copy or save it again.'), which no copy
    mends. 328f612 reads safetensors under another suffix by its content; a torch file under the .safetensors suffix
    is read by its content too. A file that is neither is still called damaged."""
    _, ref = lesson_model()
    torch.save(ref.state_dict(), tmp_path / "vit.safetensors")
    assert torch.equal(read_state_dict(tmp_path / "vit.safetensors")["cls_token"], ref.state_dict()["cls_token"])
    (tmp_path / "cut.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": ")
    with pytest.raises(ValueError, match=r"is damaged"):
        read_state_dict(tmp_path / "cut.safetensors")


def test_half_precision_weights_import_as_float32_said_or_in_their_own_dtype_with_dtype_auto(tmp_path, caplog, capsys):
    """fp16/bf16 lesson weights were imported as float32 without a word (while the export keeps the saved dtype).
    float32 stays the default (what training from the folder needs) and is said; --dtype auto (dtype='auto', as
    transformers' from_pretrained) keeps the weights' own, and --dtype float16/bfloat16 saves in that one."""
    from hf_vit.data import flags_in_messages

    _, ref = lesson_model()
    half = {k: v.half() for k, v in ref.state_dict().items()}
    torch.save(half, tmp_path / "half.pt")
    script = load_script("import_lesson_weights")

    script.main([str(tmp_path / "half.pt"), str(tmp_path / "a"), "--heads", "3"])
    out = capsys.readouterr().out
    assert ("note: The weights are float16: the model folder holds them as float32 (the default, what training from "
            "it needs). To keep float16, pass --dtype auto.") in out and "float32 weights" in out
    model = HfViTForImageClassification.from_pretrained(tmp_path / "a")
    assert model.dtype == torch.float32 and torch.equal(model.vit.embeddings.cls_token, half["cls_token"].float())

    for flag, dtype in (("auto", torch.float16), ("bfloat16", torch.bfloat16)):
        script.main([str(tmp_path / "half.pt"), str(tmp_path / flag), "--heads", "3", "--dtype", flag])
        out = capsys.readouterr().out
        assert "note: The weights are" not in out and f"{str(dtype)[6:]} weights" in out
        model = HfViTForImageClassification.from_pretrained(tmp_path / flag)  # dtype="auto": config.json's
        assert model.dtype == dtype and torch.equal(model.vit.embeddings.cls_token, half["cls_token"].to(dtype))

    with caplog.at_level("WARNING", logger="hf_vit.import_lesson"):  # the same from Python, in its terms
        import_lesson_weights(tmp_path / "half.pt", tmp_path / "b", {"heads": 3})
    assert said(caplog)[-1].endswith("To keep float16, pass dtype='auto'.")
    import_lesson_weights(tmp_path / "half.pt", tmp_path / "c", {"heads": 3}, dtype="auto")
    assert HfViTForImageClassification.from_pretrained(tmp_path / "c").dtype == torch.float16

    # Mixed dtypes have no one to keep; float32 values beyond float16's range would be saved as infinities.
    torch.save({**half, "cls_token": ref.state_dict()["cls_token"]}, tmp_path / "mixed.pt")
    big = ref.state_dict()
    big["cls_token"] = big["cls_token"] * 1e6
    torch.save(big, tmp_path / "big.pt")
    for name, dtype, message in (
        ("mixed.pt", "auto", "The weights mix float16 and float32 tensors: --dtype auto cannot keep one dtype for "
                             "them. Pass the one to save in, e.g. --dtype float32."),
        ("big.pt", "float16", f"{tmp_path / 'big.pt'}: the weights hold values beyond float16's range (1 tensor: "
                              "vit.embeddings.cls_token): saved so the model would score every image NaN. Import them "
                              "with --dtype float32 or --dtype bfloat16."),
    ):
        with pytest.raises(SystemExit) as refused:
            script.main([str(tmp_path / name), str(tmp_path / "d"), "--heads", "3", "--dtype", dtype])
        assert str(refused.value.code) == f"error: {message}"
    assert not (tmp_path / "d").exists()
    with flags_in_messages(), pytest.raises(ValueError, match=r"^--dtype 'half' is not a dtype the import saves in"):
        import_lesson_weights(tmp_path / "half.pt", tmp_path / "d", {"heads": 3}, dtype="half")


def test_the_lessons_own_cfg_object_is_taken_as_cfg_and_anything_else_named(tmp_path):
    """The lesson's notebook holds its cfg as a ViTConfig dataclass; passing it as `cfg` ended in `TypeError:
    'ViTConfig' object is not iterable`, and a JSON file's path in `ValueError: dictionary update sequence element #0
    has length 1; 2 is required`. The cfg object's fields are read (a namespace's too); anything else is named."""
    from types import SimpleNamespace

    cfg, ref = lesson_model(pool="mean", heads=6, dim_head=12)  # no shape tells pool or the 6 x 12 split
    torch.save(ref.state_dict(), tmp_path / "vit.pt")
    out = import_lesson_weights(tmp_path / "vit.pt", tmp_path / "out", cfg)
    model = HfViTForImageClassification.from_pretrained(out).eval()
    assert (model.config.pool, model.config.heads, model.config.dim_head) == ("mean", 6, 12)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (model(pixel_values=x).logits - ref(x)).abs().max().item() <= 1e-5
    assert lesson_config(ref.state_dict(), SimpleNamespace(heads=6)).dim_head == 12

    with pytest.raises(ValueError) as err:
        import_lesson_weights(tmp_path / "vit.pt", tmp_path / "other", "cfg.json")
    assert str(err.value) == (
        "cfg must be a dict of the lesson's cfg fields (or the lesson's cfg object itself), got a str: 'cfg.json'. "
        "Pass e.g. {'heads': 8}, or the JSON file read with json.load."
    )
    assert not (tmp_path / "other").exists()


def test_labels_given_as_one_string_are_refused_not_spelled_out(tmp_path):
    """labels='pearl' (one string, from Python) was taken letter by letter: a 5-class head got the names 'p', 'e',
    'a', 'r', 'l' without a word (another head a refusal counting the letters as names)."""
    _, ref = lesson_model(num_classes=5)
    torch.save(ref.state_dict(), tmp_path / "vit.pt")
    with pytest.raises(ValueError) as refused:
        import_lesson_weights(tmp_path / "vit.pt", tmp_path / "out", {"heads": 3}, labels="pearl")
    assert str(refused.value) == (
        "labels takes one name per class, in the order of the head's outputs, not one string: got 'pearl'. Pass a "
        "list, e.g. ['pearl']."
    )
    assert not (tmp_path / "out").exists()
    import_lesson_weights(tmp_path / "vit.pt", tmp_path / "out", {"heads": 3}, labels=("a", "b", "c", "d", "e"))
    assert HfViTForImageClassification.from_pretrained(tmp_path / "out").config.id2label[4] == "e"


def test_an_imported_models_card_points_to_no_results_it_does_not_have(tmp_path):
    """An imported model has no metrics: its card said "the accuracy above is far below large pretrained models"
    and "less accurately than the results above suggest" under "No metrics were found". The limitations now
    speak of results only where the card shows some."""
    _, model = lesson_model()
    torch.save(model.state_dict(), tmp_path / "vit.pt")
    load_script("import_lesson_weights").main([str(tmp_path / "vit.pt"), str(tmp_path / "out"), "--heads", "3"])
    text = (tmp_path / "out" / "README.md").read_text()
    assert "No metrics were found" in text
    assert "above" not in text.split("## Limitations")[1]
    assert "will be classified\n  less accurately than the training images." in text


def test_import_takes_the_lesson_models_state_dict_in_memory(tmp_path):
    """The lesson's model still in a notebook: import_lesson_weights(net.state_dict(), folder, cfg) writes the folder
    as from a file (before: TypeError 'expected str, bytes or os.PathLike object, not OrderedDict'); a checkpoint dict
    in memory picks its model entry as a file's does. The model object itself, or handed to lesson_config or
    load_lesson_state_dict, is refused saying to pass its state_dict() (before: "'ViT' object is not iterable")."""
    from hf_vit.convert_lesson import load_lesson_state_dict

    cfg, ref = lesson_model()
    x = torch.randn(2, 3, 32, 32)
    for weights, out in ((ref.state_dict(), tmp_path / "a"), ({"model": ref.state_dict(), "epoch": 3}, tmp_path / "b")):
        assert import_lesson_weights(weights, out, cfg) == out
        model = HfViTForImageClassification.from_pretrained(out).eval()
        with torch.no_grad():
            assert (model(pixel_values=x).logits - ref(x)).abs().max().item() <= 1e-5
        assert model.config.id2label[3] == "cat"
    with pytest.raises(ValueError, match=r"the state dict holds one state dict, not a checkpoint dict"):
        import_lesson_weights(ref.state_dict(), tmp_path / "c", cfg, key="model")
    bad = {k: v.clone() for k, v in ref.state_dict().items()}
    bad["cls_token"][0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^the state dict: the weights hold NaN"):
        import_lesson_weights(bad, tmp_path / "c", cfg)
    for call in (lambda: import_lesson_weights(ref, tmp_path / "c", cfg), lambda: lesson_config(ref, cfg),
                 lambda: load_lesson_state_dict(model, ref)):
        with pytest.raises(TypeError, match=r"got the ViT model itself: pass its weights, model\.state_dict\(\)"):
            call()
    assert not (tmp_path / "c").exists()


def test_sizes_given_that_the_weights_cannot_hold_are_named_before_building(tmp_path):
    """A channel count, patch or image size given that the weights do not hold was built into the model and the strict
    load stopped with `Shape mismatches (set dim/depth/heads/dim_head/mlp_dim/patch_size/image_size/channels/
    num_classes to the lesson's values): vit.embeddings.pos_embedding: checkpoint (1, 65, 48) vs model (1, 257, 48)`.
    Now each given size is checked against the weights (values per patch, patch positions) first, and the message
    names the sizes that would fit."""
    _, ref = lesson_model()  # 32x32 RGB images in 4x4 patches: 48 values per patch, 64 patch positions
    _, grey = lesson_model(channels=1, image_size=(48, 144), patch_size=(4, 12))  # 48 values, 144 positions
    cases = [  # (weights, cfg, message from Python, the same from the script)
        (ref, {"image_size": 64},
         "cfg={'image_size': 64} cut into 4x4 patches (patch_size not given: read off the weights) makes a 16x16 grid "
         "of 256 patch positions, but the weights hold 64. With 4x4 patches the weights fit images of 1024 pixels: "
         "cfg={'image_size': 32}, cfg={'image_size': (16, 64)} or cfg={'image_size': (64, 16)}. Pass the lesson's own "
         "image_size (and patch_size).",
         "--image_size 64 cut into 4x4 patches (--patch_size not given: read off the weights) makes a 16x16 grid of "
         "256 patch positions, but the weights hold 64. With 4x4 patches the weights fit images of 1024 pixels: "
         "--image_size 32, --image_size 16 64 or --image_size 64 16. Pass the lesson's own --image_size (and "
         "--patch_size)."),
        (ref, {"image_size": (16, 64), "patch_size": 8},
         "cfg={'patch_size': 8} with 3 channels (channels not given: the lesson's default) makes 192 values per patch "
         "(channels x patch height x patch width), but the weights take 48. With 3 channels the weights fit patches of "
         "16 pixels: cfg={'patch_size': 4}, cfg={'patch_size': (2, 8)} or cfg={'patch_size': (8, 2)}. Pass the "
         "lesson's own patch_size and channels.",
         "--patch_size 8 with 3 channels (--channels not given: the lesson's default) makes 192 values per patch "
         "(channels x patch height x patch width), but the weights take 48. With 3 channels the weights fit patches of "
         "16 pixels: --patch_size 4, --patch_size 2 8 or --patch_size 8 2. Pass the lesson's own --patch_size and "
         "--channels."),
        (ref, {"patch_size": 4, "channels": 1},
         "cfg={'patch_size': 4} with 1 channel makes 16 values per patch (channels x patch height x patch width), but "
         "the weights take 48. With 4x4 patches the weights fit 3 channels: cfg={'channels': 3}. With 1 channel the "
         "weights fit patches of 48 pixels: cfg={'patch_size': (6, 8)}, cfg={'patch_size': (8, 6)} or "
         "cfg={'patch_size': (4, 12)}. Pass the lesson's own patch_size and channels.",
         "--patch_size 4 with 1 channel makes 16 values per patch (channels x patch height x patch width), but the "
         "weights take 48. With 4x4 patches the weights fit 3 channels: --channels 3. With 1 channel the weights fit "
         "patches of 48 pixels: --patch_size 6 8, --patch_size 8 6 or --patch_size 4 12. Pass the lesson's own "
         "--patch_size and --channels."),
        (grey, {"patch_size": (4, 12), "image_size": (48, 144)},
         "cfg={'patch_size': (4, 12)} with 3 channels (channels not given: the lesson's default) makes 144 values per "
         "patch (channels x patch height x patch width), but the weights take 48. With 4x12 patches the weights fit 1 "
         "channel: cfg={'channels': 1}. With 3 channels the weights fit patches of 16 pixels: cfg={'patch_size': 4}, "
         "cfg={'patch_size': (2, 8)} or cfg={'patch_size': (8, 2)}. Pass the lesson's own patch_size and channels.",
         "--patch_size 4 12 with 3 channels (--channels not given: the lesson's default) makes 144 values per patch "
         "(channels x patch height x patch width), but the weights take 48. With 4x12 patches the weights fit 1 "
         "channel: --channels 1. With 3 channels the weights fit patches of 16 pixels: --patch_size 4, --patch_size 2 "
         "8 or --patch_size 8 2. Pass the lesson's own --patch_size and --channels."),
        (grey, {"patch_size": (4, 12), "channels": 1, "image_size": 48},
         "cfg={'image_size': 48} cut into 4x12 patches makes a 12x4 grid of 48 patch positions, but the weights hold "
         "144. With 4x12 patches the weights fit images of 6912 pixels: cfg={'image_size': (72, 96)}, "
         "cfg={'image_size': (96, 72)} or cfg={'image_size': (64, 108)}. Pass the lesson's own image_size.",
         "--image_size 48 cut into 4x12 patches makes a 12x4 grid of 48 patch positions, but the weights hold 144. "
         "With 4x12 patches the weights fit images of 6912 pixels: --image_size 72 96, --image_size 96 72 or "
         "--image_size 64 108. Pass the lesson's own --image_size."),
    ]
    script = load_script("import_lesson_weights")
    for model, cfg, named, flagged in cases:
        with pytest.raises(ValueError) as refused:
            lesson_config(model.state_dict(), {"heads": 3, **cfg})
        assert str(refused.value) == named
        torch.save(model.state_dict(), tmp_path / "vit.pt")
        argv = [a for k, v in cfg.items() for a in (f"--{k}", *map(str, v if isinstance(v, tuple) else (v,)))]
        with pytest.raises(SystemExit) as refused:
            script.main([str(tmp_path / "vit.pt"), str(tmp_path / "out"), "--heads", "3", *argv])
        assert str(refused.value.code) == f"error: {flagged}"
        assert not (tmp_path / "out").exists()

    # The sizes that fit are taken, and give the lesson's logits on its own (non-square) images.
    script.main([str(tmp_path / "vit.pt"), str(tmp_path / "out"), "--heads", "3", "--channels", "1", "--patch_size",
                 "4", "12", "--image_size", "48", "144", "--image_mean", "0.5", "--image_std", "0.25"])
    x = torch.randn(2, 1, 48, 144)
    with torch.no_grad():
        logits = HfViTForImageClassification.from_pretrained(tmp_path / "out").eval()(pixel_values=x).logits
        assert (logits - grey(x)).abs().max().item() <= 1e-5


def test_sizes_read_off_the_weights_are_said_from_python_too_and_the_channels_with_them(tmp_path, caplog, capsys):
    """Lesson weights of 16x64 images in 8-px patches (a 2x8 grid: 16 positions, as a 4x4 one) imported as 32x32 from
    Python without a word, and the script's note left out the channels: grey weights of 4x12 patches (48 values per
    patch, as 3 channels x 4x4) imported as an RGB model, the pipeline turning grey images into RGB ones. Now the
    import says each size it read off the weights, the channels among them, from Python (a warning of its logger,
    naming the cfg fields) as from the script (a note naming the flags); given the lesson's sizes, it says nothing and
    gives the lesson's logits on its own non-square images."""
    _, wide = lesson_model(image_size=(16, 64), patch_size=8)
    with caplog.at_level("WARNING", logger="hf_vit.import_lesson"):
        assert lesson_config(wide.state_dict(), {"heads": 3, "patch_size": 8}).image_size == 32
    assert said(caplog) == [
        "image_size not given: the model takes 32x32 images, the square that fits the weight shapes. If the lesson's "
        "cfg gave a (height, width) pair, import again with cfg={'image_size': (H, W)} and overwrite=True: the "
        "weights fit either way, but the model would place the patches at the wrong positions."
    ]
    caplog.clear()
    with caplog.at_level("WARNING", logger="hf_vit.import_lesson"):
        import_lesson_weights(wide.state_dict(), tmp_path / "wide", {"heads": 3, "image_size": (16, 64)})
    assert said(caplog) == [
        "patch_size and channels not given: the model takes images of 3 channels in 8x8 patches, the square that fits "
        "the weight shapes and the lesson's default of 3 channels. If the lesson's cfg gave a (height, width) pair or "
        "another channel count (1 for grey images), import again with cfg={'channels': C, 'patch_size': (H, W)} and "
        "overwrite=True: the weights fit either way, but the model would cut the images into the wrong patches."
    ]
    x = torch.randn(2, 3, 16, 64)
    with torch.no_grad():
        logits = HfViTForImageClassification.from_pretrained(tmp_path / "wide").eval()(pixel_values=x).logits
        assert (logits - wide(x)).abs().max().item() <= 1e-5

    _, grey = lesson_model(channels=1, image_size=(48, 144), patch_size=(4, 12))  # 144 positions, as a 12x12 grid
    torch.save(grey.state_dict(), tmp_path / "grey.pt")
    script = load_script("import_lesson_weights")
    script.main([str(tmp_path / "grey.pt"), str(tmp_path / "guess"), "--heads", "3"])
    assert (
        "note: --image_size, --patch_size and --channels not given: the model takes 48x48 images of 3 channels in 4x4 "
        "patches, the squares that fit the weight shapes and the lesson's default of 3 channels. If the lesson's cfg "
        "gave a (height, width) pair or another channel count (1 for grey images), import again with --channels C "
        "--image_size H W --patch_size H W --overwrite: the weights fit either way, but the model would cut the "
        "images into the wrong patches."
    ) in capsys.readouterr().out
    script.main([str(tmp_path / "grey.pt"), str(tmp_path / "given"), "--heads", "3", "--image_size", "48", "144",
                 "--patch_size", "4", "12", "--channels", "1", "--image_mean", "0.5", "--image_std", "0.25"])
    assert "not given: the model takes" not in capsys.readouterr().out
    x = torch.randn(2, 1, 48, 144)
    with torch.no_grad():
        logits = HfViTForImageClassification.from_pretrained(tmp_path / "given").eval()(pixel_values=x).logits
        assert (logits - grey(x)).abs().max().item() <= 1e-5


def test_a_refusal_to_read_a_size_off_the_weights_names_the_sizes_that_fit(tmp_path):
    """Weights that no square reading fits (4-channel 4x4 patches: 64 values, as 1 channel x 8x8; 1-channel 4x12
    patches; 32x64 images: 128 positions; a (2, 8) patch with no image size) were refused with `Pass the lesson's
    --channels` / `--image_size H W` alone, leaving the user to work out which sizes the weights could hold. Each
    refusal now names them."""
    _, rgba = lesson_model(channels=4)
    _, wide = lesson_model(image_size=(32, 64))
    _, flat = lesson_model(image_size=(16, 64), patch_size=(2, 8))
    _, grey = lesson_model(channels=1, image_size=(48, 144), patch_size=(4, 12))
    cases = [
        (rgba, {}, "The weights take 64 values per patch (channels x patch height x patch width), not 3 channels x a "
         "square patch. Pass the lesson's --channels (3 unless given: 1 for grey images) and, for a non-square patch, "
         "--patch_size H W. The weights fit square patches with --channels 1 (8x8) or --channels 4 (4x4)."),
        (grey, {"channels": 1},
         "The weights take 48 values per patch (channels x patch height x patch width), not 1 channel x a square "
         "patch. Pass the lesson's --channels (3 unless given: 1 for grey images) and, for a non-square patch, "
         "--patch_size H W. The weights fit square patches with --channels 3 (4x4). With 1 channel the weights fit "
         "patches of 48 pixels: --patch_size 6 8, --patch_size 8 6 or --patch_size 4 12."),
        (wide, {}, "The weights hold 128 patch positions, not a square grid: the lesson's images (or patches) are not "
         "square. Pass the lesson's --image_size H W (and --patch_size H W for a non-square patch). With 4x4 patches "
         "the weights fit images of 2048 pixels: --image_size 32 64, --image_size 64 32 or --image_size 16 128."),
        (flat, {"patch_size": (2, 8)},
         "The image size cannot be read off the weights for a non-square patch (2, 8): 64 patch positions fit several "
         "grids. Pass the lesson's --image_size H W. With 2x8 patches the weights fit images of 1024 pixels: "
         "--image_size 32, --image_size 16 64 or --image_size 64 16."),
    ]
    script = load_script("import_lesson_weights")
    for model, cfg, message in cases:
        torch.save(model.state_dict(), tmp_path / "vit.pt")
        argv = [a for k, v in cfg.items() for a in (f"--{k}", *map(str, v if isinstance(v, tuple) else (v,)))]
        with pytest.raises(SystemExit) as refused:
            script.main([str(tmp_path / "vit.pt"), str(tmp_path / "out"), "--heads", "3", *argv])
        assert str(refused.value.code) == f"error: {message}"
    with pytest.raises(ValueError, match=re.escape(
            "With 4x4 patches the weights fit images of 2048 pixels: cfg={'image_size': (32, 64)}, cfg={'image_size': "
            "(64, 32)} or cfg={'image_size': (16, 128)}.")):
        lesson_config(wide.state_dict(), {"heads": 3})
    with pytest.raises(ValueError, match=re.escape("The weights fit square patches with cfg={'channels': 1} (8x8) or "
                                                   "cfg={'channels': 4} (4x4).")):
        lesson_config(rgba.state_dict(), {"heads": 3})


def test_an_image_size_the_patch_read_off_the_weights_does_not_cut_whole_names_the_patches_that_do(tmp_path):
    """--image_size 18 64 alone for weights of (2, 8) patches: the 4x4 patch read off the weights (48 values, 3 x 4x4)
    does not cut 18 rows whole, and HfViTConfig refused a `patch_size` 4 that was never given, advising a patch size of
    2 (12 values per patch, which the weights do not hold). Now the refusal says the patch was read off the weights and
    names the patches of as many pixels that cut the image whole."""
    _, ref = lesson_model(image_size=(18, 64), patch_size=(2, 8))
    torch.save(ref.state_dict(), tmp_path / "vit.pt")
    script = load_script("import_lesson_weights")
    with pytest.raises(SystemExit) as refused:
        script.main([str(tmp_path / "vit.pt"), str(tmp_path / "out"), "--heads", "3", "--image_size", "18", "64"])
    assert str(refused.value.code) == (
        "error: --image_size 18 64 is not cut whole by 4x4 patches (--patch_size not given: read off the weights). Of "
        "the patches of 16 pixels that the weights fit, --patch_size 2 8 or --patch_size 1 16 cut it whole. Pass the "
        "lesson's own --patch_size."
    )
    with pytest.raises(ValueError) as refused:
        lesson_config(ref.state_dict(), {"heads": 3, "image_size": (18, 60)})  # 1080 pixels, not 72 x 16
    assert str(refused.value) == (
        "cfg={'image_size': (18, 60)} is not cut whole by 4x4 patches (patch_size not given: read off the weights), "
        "and holds 1080 pixels where the weights' 72 patch positions hold 1152. With 4x4 patches the weights fit "
        "images of 1152 pixels: cfg={'image_size': (32, 36)}, cfg={'image_size': (36, 32)} or cfg={'image_size': (24, "
        "48)}. Pass the lesson's own image_size (and patch_size)."
    )
    script.main([str(tmp_path / "vit.pt"), str(tmp_path / "out"), "--heads", "3", "--image_size", "18", "64",
                 "--patch_size", "2", "8"])
    x = torch.randn(2, 3, 18, 64)
    with torch.no_grad():
        logits = HfViTForImageClassification.from_pretrained(tmp_path / "out").eval()(pixel_values=x).logits
        assert (logits - ref(x)).abs().max().item() <= 1e-5


def test_a_refused_import_from_python_warns_of_no_size_it_never_imported(tmp_path, caplog):
    """From Python the import warned of the sizes it read off the weights ('import again with cfg=... and
    overwrite=True') before its own later checks refused the call: a dtype it does not save in, a state dict the
    strict load refuses, float16 values beyond its range. Nothing was imported, yet the warning told the user to import
    again. Now its warnings come once the folder is written, the sizes before the dtype, as the script prints them."""
    _, ref = lesson_model()
    partial = {k: v for k, v in ref.state_dict().items() if k != "mlp_head.1.bias"}
    big = {k: v * 1e6 if k == "cls_token" else v for k, v in ref.state_dict().items()}
    for weights, dtype in ((ref.state_dict(), "float64"), (partial, None), (big, "float16")):
        with caplog.at_level("WARNING", logger="hf_vit.import_lesson"), pytest.raises(ValueError):
            import_lesson_weights(weights, tmp_path / "out", {"heads": 3}, dtype=dtype)
        assert said(caplog) == [] and not (tmp_path / "out").exists(), dtype
    half = {k: v.half() for k, v in ref.state_dict().items()}
    with caplog.at_level("WARNING", logger="hf_vit.import_lesson"):
        import_lesson_weights(half, tmp_path / "out", {"heads": 3})
    assert [m.split(":")[0] for m in said(caplog)] == [
        "image_size, patch_size and channels not given", "The weights are float16"]


@pytest.mark.skipif(os.name == "nt", reason="Windows has no umask or permission bits")
@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["umask022", "umask077"])
def test_an_imported_folder_gets_the_modes_the_umask_gives(tmp_path, umask):
    """The staged folder is moved into place with the umask's modes: safetensors 0.8 wrote model.safetensors 0600
    (a lab-mate could not read it), and the staging folder's parent is a mkdtemp folder (0700)."""
    _, model = lesson_model()
    torch.save(model.state_dict(), tmp_path / "vit.pt")
    # The script's main in this process under the umask (a fresh process cost a start of torch); put back after.
    old = os.umask(umask)
    try:
        load_script("import_lesson_weights").main([str(tmp_path / "vit.pt"), str(tmp_path / "out"), "--heads", "3"])
    finally:
        os.umask(old)
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert modes_off_the_umask(tmp_path / "out", umask) == []
