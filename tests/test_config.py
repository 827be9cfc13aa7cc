"""Config fields, aliases and validation messages."""

import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassFieldValidationError

from hf_vit import CIFAR10_LABELS, HfViTConfig, HfViTForImageClassification


def test_defaults_and_standard_names():
    c = HfViTConfig()
    assert c.id2label == dict(enumerate(CIFAR10_LABELS))
    assert c.label2id["truck"] == 9
    # The defaults the docstring and README state (32x32 images, 4x4 patches, dim 192, 6 blocks, 3 heads, ...).
    assert (c.image_size, c.patch_size, c.num_channels) == (32, 4, 3)
    assert (c.dim, c.depth, c.heads, c.dim_head, c.mlp_dim, c.pool) == (192, 6, 3, 64, 768, "cls")
    assert (c.dropout, c.emb_dropout, c.layer_norm_eps, c.initializer_range) == (0.0, 0.0, 1e-5, 0.02)
    assert c.num_patches == 64 and c.grid_size == (8, 8)
    # Every field its own value, so a standard name read through the wrong field (hidden_dropout_prob -> emb_dropout,
    # equal at the defaults) shows.
    c = HfViTConfig(num_channels=2, dim=40, depth=5, heads=7, dim_head=12, mlp_dim=80, dropout=0.1, emb_dropout=0.2)
    other_names = ("channels", "hidden_size", "num_hidden_layers", "num_attention_heads", "head_dim",
                   "intermediate_size", "hidden_dropout_prob", "attention_probs_dropout_prob")  # fmt: skip
    assert [getattr(c, name) for name in other_names] == [2, 40, 5, 7, 12, 80, 0.1, 0.1]
    # Setting through the other name writes the lesson's field.
    for name, field, value in (("hidden_size", "dim", 96), ("num_hidden_layers", "depth", 3),
                               ("num_attention_heads", "heads", 2), ("head_dim", "dim_head", 24),
                               ("intermediate_size", "mlp_dim", 48), ("channels", "num_channels", 1),
                               ("hidden_dropout_prob", "dropout", 0.3),
                               ("attention_probs_dropout_prob", "dropout", 0.4)):  # fmt: skip
        setattr(c, name, value)
        assert getattr(c, field) == value, name
    assert c.emb_dropout == 0.2


def test_lesson_aliases():
    c = HfViTConfig(channels=1, num_classes=4)
    assert c.num_channels == 1 and c.num_labels == 4 and c.num_classes == 4
    with pytest.raises(ValueError, match="num_classes=4 and num_labels=3 disagree"):
        HfViTConfig(num_classes=4, num_labels=3)


def test_transformers_two_dropout_names_set_the_one_rate_and_must_agree(tmp_path):
    """ViT has hidden and attention dropout; the lesson one rate for both. Both names set it, so two different
    values are refused (before: whichever came last won, silently), at construction and at load."""
    assert HfViTConfig(attention_probs_dropout_prob=0.3).dropout == 0.3
    assert HfViTConfig(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, dropout=0.1).dropout == 0.1
    message = "attention_probs_dropout_prob=0.0, hidden_dropout_prob=0.1 each set `dropout`"
    for order in ({"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.0},
                  {"attention_probs_dropout_prob": 0.0, "hidden_dropout_prob": 0.1}):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            HfViTConfig(**order)
    with pytest.raises(ValueError, match=r"dropout=0.2, hidden_dropout_prob=0.1 each set `dropout`.*Pass one value"):
        HfViTConfig(dropout=0.2, hidden_dropout_prob=0.1)
    HfViTConfig(dropout=0.3).save_pretrained(tmp_path)
    assert HfViTConfig.from_pretrained(tmp_path, hidden_dropout_prob=0.1).dropout == 0.1  # a load-time override
    with pytest.raises(ValueError, match=message):
        HfViTConfig.from_pretrained(tmp_path, attention_probs_dropout_prob=0.0, hidden_dropout_prob=0.1)


def test_update_and_update_from_string_keep_the_one_dropout_rate_and_num_classes():
    """config.update / update_from_string set keys one by one; two different dropout names are refused there too
    (before: the last one won, silently), and the lesson's num_classes can be set (before: AttributeError)."""
    c = HfViTConfig()
    with pytest.raises(ValueError, match=r"attention_probs_dropout_prob=0.2, hidden_dropout_prob=0.1 each set"):
        c.update({"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.2})
    with pytest.raises(ValueError, match=r"dropout=0.3, hidden_dropout_prob=0.1 each set `dropout`"):
        c.update_from_string("dropout=0.3,hidden_dropout_prob=0.1")
    assert c.dropout == 0.0  # nothing half-set by the refused updates
    c.update({"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "num_classes": 4})
    assert c.dropout == 0.1 and c.num_labels == 4 and c.num_classes == 4
    c.update_from_string("attention_probs_dropout_prob=0.25,num_classes=3")
    assert c.dropout == 0.25 and c.num_labels == 3
    c.num_classes = 5
    assert c.num_labels == 5 and len(c.id2label) == 5
    with pytest.raises(ValueError, match="num_classes=2 and num_labels=3 disagree"):
        c.update({"num_classes": 2, "num_labels": 3})


def test_classes_renamed_after_construction_save_and_load_again(tmp_path):
    """`config.id2label = {...}` (or update() with num_classes and id2label) left label2id naming the old classes:
    save_pretrained wrote the folder and from_pretrained refused it. label2id now follows id2label; two maps set
    apart that disagree are refused at save, before anything is written; num_classes takes whole numbers only."""
    c = HfViTConfig()
    c.update({"num_classes": 3, "id2label": {0: "apple", 1: "pear", 2: "plum"}})
    assert c.label2id == {"apple": 0, "pear": 1, "plum": 2}
    c.num_classes = 2
    c.id2label = {"0": "cat", "1": "dog"}  # string keys, as config.json has them
    assert (c.id2label, c.label2id) == ({0: "cat", 1: "dog"}, {"cat": 0, "dog": 1})
    c.save_pretrained(tmp_path / "ok")
    assert HfViTConfig.from_pretrained(tmp_path / "ok").label2id == {"cat": 0, "dog": 1}
    c.label2id = {"cat": 1, "dog": 0}
    with pytest.raises(ValueError, match=r"`label2id` \{'cat': 1, 'dog': 0\} is not the inverse of `id2label`"):
        c.save_pretrained(tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    for value in (0, True, "5", 2.0):
        with pytest.raises(ValueError, match=f"`num_classes` must be a whole number of classes >= 1, got {value!r}"):
            c.num_classes = value


def test_round_trip(tmp_path):
    c = HfViTConfig(image_size=(24, 32), patch_size=(4, 8), dim=48, heads=2, dim_head=40, pool="mean")
    c.save_pretrained(tmp_path)
    d = HfViTConfig.from_pretrained(tmp_path)
    assert d.to_dict() == c.to_dict()
    assert d.grid_size == (6, 4)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"image_size": 32, "patch_size": 5}, r"`patch_size` 5 does not divide `image_size` 32.*e\.g\. 2, 4, 8, 16"),
        # non-square: the message names both sides, and its advice divides both (2 alone, not 2, 4, 8, 16 of 32)
        ({"image_size": (32, 30), "patch_size": 4},
         r"`patch_size` 4 does not divide `image_size` \[32, 30\].*for 32x30: e\.g\. 2\)"),
        ({"pool": "max"}, r"unknown `pool` 'max'. Use pool='cls'.*pool='mean'"),
        ({"dim": 0}, r"`dim` must be a positive integer, got 0"),
        ({"depth": -1}, r"`depth` must be a positive integer, got -1"),
        ({"heads": 0}, r"`heads` must be a positive integer"),
        ({"dim_head": -8}, r"`dim_head` must be a positive integer"),
        ({"mlp_dim": 0}, r"`mlp_dim` must be a positive integer"),
        ({"patch_size": 0}, r"`patch_size` must be a positive integer"),
        ({"image_size": -32}, r"`image_size` must be a positive integer"),
        ({"num_channels": 0}, r"`num_channels` must be a positive integer"),
        ({"dim": 64.0}, r"`dim` must be a positive integer, got 64.0"),
        ({"dropout": 1.5}, r"`dropout` must be a probability in \[0, 1\)"),
        ({"emb_dropout": -0.1}, r"`emb_dropout` must be a probability"),
        ({"dropout": 1.0}, r"`dropout` must be a probability in \[0, 1\), got 1.0"),  # 1.0 zeroes every activation
        ({"emb_dropout": 1}, r"`emb_dropout` must be a probability in \[0, 1\), got 1\."),
        ({"layer_norm_eps": 0}, r"`layer_norm_eps` must be a positive finite number"),
        ({"layer_norm_eps": float("nan")}, r"`layer_norm_eps` must be a positive finite number, got nan"),
        ({"initializer_range": float("inf")}, r"`initializer_range` must be a positive finite number, got inf"),
        ({"num_labels": 3, "id2label": {0: "a", 1: "b"}}, r"`num_labels=3` disagrees with `id2label`, which has 2"),
        ({"num_labels": "3"}, r"`num_labels` must be a whole number of classes, got '3'"),
        ({"id2label": {0: "cat", 5: "dog"}}, r"`id2label` keys must be the class ids 0\.\.1, got \[0, 5\]"),
        ({"id2label": 5}, r"`id2label` must map class ids to names"),
        ({"image_size": 33}, r"for 33x33: e\.g\. 3, 11, 33\)"),
        ({"image_size": (31, 29), "patch_size": 4}, r"only 1 divides both sides; resize or pad the images"),
        ({"image_size": (32, 32, 3)}, r"`image_size` must be an int or a pair \(height, width\), got \[32, 32, 3\]\.$"),
        ({"patch_size": [4]}, r"`patch_size` must be an int or a pair \(height, width\), got \[4\]\.$"),
        ({"num_labels": 0}, r"the model needs at least one class: pass `id2label` or `num_labels`\.$"),
        ({"id2label": {}}, r"the model needs at least one class: pass `id2label` or `num_labels`\.$"),
    ],
)
def test_invalid_values_are_explained(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        HfViTConfig(**kwargs)


def test_a_label2id_that_is_no_map_is_refused_not_dropped():
    """label2id=['cat', 'dog'] (the names, as id2label takes them): transformers 5.24 dropped it without a word, and the
    config came out with CIFAR-10's 10 classes (from_pretrained too: a 3-class folder became 10 classes); 5.17 refused
    it in its own words. A label2id set on a config afterwards was saved as it was, a folder no load would take."""
    pattern = r"`label2id` must map class names to ids, e\.g\. \{'cat': 0, 'dog': 1\}, got \['cat', 'dog'\]\. Pass"
    with pytest.raises(ValueError, match=pattern):
        HfViTConfig(label2id=["cat", "dog"])
    with pytest.raises(ValueError, match=pattern):
        HfViTConfig.from_dict(HfViTConfig(id2label=["a", "b", "c"]).to_dict(), label2id=["cat", "dog"])
    config = HfViTConfig(id2label=["cat", "dog"])
    try:
        config.label2id = ["cat", "dog"]
    except StrictDataclassFieldValidationError:  # transformers 5.17 checks the type as it is set
        return
    with pytest.raises(ValueError, match=pattern):
        config.validate_hf_vit()


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"dim": "64"}, r"`dim` must be a positive integer, got '64'"),
        ({"hidden_size": "64"}, r"`dim` must be a positive integer, got '64'"),
        ({"patch_size": 5}, r"`patch_size` 5 does not divide `image_size` 32"),
        ({"pool": "max"}, r"unknown `pool` 'max'"),
        ({"dropout": 2}, r"`dropout` must be a probability in \[0, 1\), got 2"),
    ],
)
def test_from_pretrained_overrides_are_checked_as_the_constructor_checks_them(tmp_path, kwargs, pattern):
    """transformers sets from_pretrained's keyword overrides after the constructor: they went unchecked, and a config
    with dim='64' or a patch size that does not divide the image (a wrong grid_size) came back without a word."""
    HfViTConfig().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=pattern):
        HfViTConfig.from_pretrained(tmp_path, **kwargs)
    config, unused = HfViTConfig.from_pretrained(tmp_path, pool="mean", depth=2, return_unused_kwargs=True, foo=1)
    assert (config.pool, config.depth, unused) == ("mean", 2, {"foo": 1})


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"dim": np.int64(64)}, r"`dim` must be a plain Python int, got np\.int64\(64\), a NumPy or torch number"),
        ({"image_size": np.int64(32)}, r"`image_size` must be a plain Python int, got np\.int64\(32\)"),
        ({"depth": torch.tensor(2)}, r"`depth` must be a plain Python int, got tensor\(2\)"),
        ({"dropout": np.float32(0.1)}, r"`dropout` must be a plain Python float, got np\.float32\(0\.1\)"),
        ({"layer_norm_eps": np.float32(1e-5)}, r"`layer_norm_eps` must be a plain Python float"),
        ({"num_labels": np.int64(3)}, r"`num_labels` must be a plain Python int, got np\.int64\(3\)"),
    ],
)
def test_numpy_and_torch_numbers_are_refused_as_such_not_as_out_of_range(kwargs, pattern):
    """Sizes from a NumPy sweep (np.int64(64)) were refused with "must be a positive integer ... Set dim >= 1", which
    64 is: the message now says what the value is and how to pass it (config.json cannot store either kind)."""
    with pytest.raises(ValueError, match=pattern) as err:
        HfViTConfig(**kwargs)
    assert "config.json cannot store" in str(err.value) and "(value)" in str(err.value)


def test_invalid_config_file_is_explained(tmp_path):
    c = HfViTConfig()
    c.save_pretrained(tmp_path)
    text = (tmp_path / "config.json").read_text().replace('"pool": "cls"', '"pool": "avg"')
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ValueError, match="unknown `pool` 'avg'"):
        HfViTConfig.from_pretrained(tmp_path)


def test_a_list_of_names_numbers_the_classes():
    c = HfViTConfig(id2label=["cat", "dog"])
    assert c.id2label == {0: "cat", 1: "dog"} and c.label2id == {"cat": 0, "dog": 1}


def test_a_list_of_names_set_after_construction_numbers_the_classes_too(tmp_path):
    """`config.id2label = ["cat", "dog"]` (the constructor's list form) was kept as a list beside the old label2id; a
    model built from it said `the class ids in id2label must be whole numbers 0, 1, ..., got 'cat'`."""
    c = HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64)
    c.id2label = ["cat", "dog"]
    assert (c.id2label, c.label2id, c.num_labels) == ({0: "cat", 1: "dog"}, {"cat": 0, "dog": 1}, 2)
    c.update({"id2label": ("apple", "pear", "plum")})
    assert c.label2id == {"apple": 0, "pear": 1, "plum": 2}
    HfViTForImageClassification(c).save_pretrained(tmp_path)
    assert HfViTForImageClassification.from_pretrained(tmp_path).config.id2label == {0: "apple", 1: "pear", 2: "plum"}


@pytest.mark.parametrize("names, text", [([False, True], ["False", "True"]), ([10, 20], ["10", "20"])])
def test_class_names_that_yaml_read_as_booleans_or_numbers_are_saved_as_text(tmp_path, names, text):
    # A dataset card's unquoted `'0': no` reaches datasets' ClassLabel as False. Kept as a bool, config.json held
    # `false` as the name and `"false"` as its label2id key, and the saved folder could not be loaded again.
    from transformers import AutoModelForImageClassification

    from hf_vit import HfViTForImageClassification

    config = HfViTConfig(id2label=names, dim=16, depth=1, heads=1, dim_head=8, mlp_dim=16)
    assert config.id2label == dict(enumerate(text)) and config.label2id == {t: i for i, t in enumerate(text)}
    HfViTForImageClassification(config).save_pretrained(tmp_path)
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path).config
    assert (loaded.id2label, loaded.label2id) == (config.id2label, config.label2id)


@pytest.mark.parametrize("kwargs", [{"num_labels": 2}, {"id2label": {0: "LABEL_0", 1: "LABEL_1"}}])
def test_two_classes_survive_a_save(tmp_path, kwargs):
    # transformers leaves a 2-label id2label out of config.json; reloaded without it this config would
    # fall back to the 10 CIFAR-10 classes.
    HfViTConfig(**kwargs).save_pretrained(tmp_path)
    assert HfViTConfig.from_pretrained(tmp_path).num_labels == 2


def test_a_new_class_count_at_load_replaces_the_saved_names(tmp_path):
    # from_pretrained(folder, num_labels=3) is how a new head is asked for: the saved 10 names go, as with
    # transformers' own configs, instead of the two counts being called a conflict.
    HfViTConfig().save_pretrained(tmp_path)
    c = HfViTConfig.from_pretrained(tmp_path, num_labels=3)
    assert c.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    assert HfViTConfig.from_pretrained(tmp_path, num_labels=10).id2label[3] == "cat"  # same count: names kept


def test_a_field_edited_after_construction_is_checked_before_saving(tmp_path):
    c = HfViTConfig()
    c.pool = "max"
    with pytest.raises(ValueError, match="unknown `pool` 'max'"):
        c.save_pretrained(tmp_path / "c")
    assert not (tmp_path / "c").exists()  # no folder made either


def test_a_transformers_name_that_disagrees_with_the_lessons_is_refused(tmp_path):
    """`dim` and `hidden_size` (and each pair of attribute_map, and `channels`) are one setting: two different values
    are refused (before: whichever came last won, silently), at construction, at load and in update."""
    message = r"HfViTConfig: dim=64 and hidden_size=48 disagree: they are one setting \(hidden_size is transformers'"
    with pytest.raises(ValueError, match=message + r" name for dim\). Pass one of them."):
        HfViTConfig(dim=64, hidden_size=48)
    with pytest.raises(ValueError, match="depth=2 and num_hidden_layers=3 disagree"):
        HfViTConfig(depth=2, num_hidden_layers=3)
    with pytest.raises(ValueError, match=r"num_channels=4 and channels=1 disagree.*channels is the lesson's name"):
        HfViTConfig(channels=1, num_channels=4)
    assert HfViTConfig(dim=48, hidden_size=48).dim == 48 and HfViTConfig(intermediate_size=80).mlp_dim == 80
    HfViTConfig(dim=32).save_pretrained(tmp_path)
    for order in ({"dim": 64, "hidden_size": 48}, {"hidden_size": 48, "dim": 64}):
        with pytest.raises(ValueError, match=message):
            HfViTConfig.from_pretrained(tmp_path, **order)
    assert HfViTConfig.from_pretrained(tmp_path, hidden_size=48).dim == 48  # one name alone overrides the saved
    c = HfViTConfig(dim=32)
    with pytest.raises(ValueError, match="heads=4 and num_attention_heads=2 disagree"):
        c.update({"heads": 4, "num_attention_heads": 2})
    assert c.heads == 3  # nothing half-set


def test_an_unknown_problem_type_is_refused_when_the_config_is_built(tmp_path):
    """transformers 5 keeps any `problem_type`; the model then failed at its first loss with `RuntimeError: Invalid
    problem type: multilabel`, naming no fix (after a Trainer had set everything up)."""
    pattern = r"HfViTConfig: unknown `problem_type` 'multilabel'. Use 'single_label_classification' .*'regression'"
    with pytest.raises(ValueError, match=pattern):
        HfViTConfig(problem_type="multilabel")
    model = HfViTForImageClassification(HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64))
    model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=pattern):  # a load-time override is checked when the model is built
        HfViTForImageClassification.from_pretrained(tmp_path, problem_type="multilabel")
    for problem_type in (None, "single_label_classification", "multi_label_classification", "regression"):
        assert HfViTConfig(problem_type=problem_type).problem_type == problem_type
    with pytest.raises(ValueError, match=pattern):  # set on a built config: refused at once, not at the first loss
        model.config.problem_type = "multilabel"
    assert model.config.problem_type is None


def test_labels_passed_as_none_mean_not_given(tmp_path):
    """`from_pretrained(folder, num_labels=args.num_labels, id2label=None, ...)` with nothing to change keeps the
    saved classes (before: `TypeError: 'NoneType' object cannot be interpreted as an integer`, or, for
    id2label=None, `the model needs at least one class`); `HfViTConfig(num_labels=None)` is the default 10."""
    assert HfViTConfig(num_labels=None).id2label == dict(enumerate(CIFAR10_LABELS))
    assert HfViTConfig(num_labels=None, id2label=["cat", "dog"], label2id=None).label2id == {"cat": 0, "dog": 1}
    config = HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64, id2label=["cat", "dog", "bird"])
    HfViTForImageClassification(config).save_pretrained(tmp_path)
    for none in ({"num_labels": None}, {"id2label": None}, {"id2label": None, "label2id": None, "num_labels": None}):
        model = HfViTForImageClassification.from_pretrained(tmp_path, **none)
        assert model.config.id2label == {0: "cat", 1: "dog", 2: "bird"}, none
        assert model.config.label2id == {"cat": 0, "dog": 1, "bird": 2}


def test_a_class_name_given_to_two_classes_is_refused(tmp_path):
    """id2label {0: 'cat', 1: 'cat', 2: 'dog'} left label2id {'cat': 1, 'dog': 2}: class 0 could not be found by its
    name, and the two maps, said to always agree, did not. Refused wherever the config is checked."""
    pattern = (
        r"^HfViTConfig: `id2label` gives the name 'cat' to classes 0 and 1, but label2id can map a name to one class "
        r"only\. Give each class its own name\.$"
    )
    with pytest.raises(ValueError, match=pattern):
        HfViTConfig(id2label=["cat", "cat", "dog"])
    with pytest.raises(ValueError, match="gives the name 'False' to classes 0 and 2"):
        HfViTConfig(id2label=[False, True, "False"])  # one name once made text
    c = HfViTConfig(id2label=["cat", "dog", "bird"])
    c.id2label = {0: "cat", 1: "dog", 2: "cat"}
    with pytest.raises(ValueError, match="gives the name 'cat' to classes 0 and 2"):
        c.save_pretrained(tmp_path)
    assert not (tmp_path / "config.json").exists()


def test_update_with_a_class_count_and_names_that_disagree_is_refused():
    """config.update sets the keys one by one: {"id2label": 5 names, "num_labels": 3} left LABEL_0..LABEL_2 and the
    reverse order the 5 names, silently. Refused as the constructor refuses it, nothing half-set."""
    names = {0: "a", 1: "b", 2: "c", 3: "d", 4: "e"}
    for order in ({"id2label": names, "num_labels": 3}, {"num_labels": 3, "id2label": names}):
        c = HfViTConfig()
        with pytest.raises(ValueError, match=r"`num_labels=3` disagrees with `id2label`, which has 5 entries"):
            c.update(order)
        assert c.id2label == dict(enumerate(CIFAR10_LABELS))
    c.update({"num_labels": 2, "id2label": ["cat", "dog"]})
    assert c.label2id == {"cat": 0, "dog": 1}


def test_update_from_string_refuses_a_transformers_name_that_disagrees_with_the_lessons():
    """update_from_string sets the keys one by one: "dim=64,hidden_size=48" left dim=48, the last one, silently.
    Refused as the constructor and update() refuse it, nothing half-set."""
    c = HfViTConfig(dim=32)
    for text in ("dim=64,hidden_size=48", "hidden_size=48,dim=64"):
        with pytest.raises(ValueError, match=r"HfViTConfig: dim=64 and hidden_size=48 disagree: they are one setting"):
            c.update_from_string(text)
    with pytest.raises(ValueError, match=r"num_channels=4 and channels=1 disagree.*channels is the lesson's name"):
        c.update_from_string("channels=1,num_channels=4")
    assert (c.dim, c.num_channels) == (32, 3)
    c.update_from_string("dim=48,hidden_size=48,num_hidden_layers=2")
    assert (c.dim, c.depth) == (48, 2)


def test_a_refused_save_writes_nothing(tmp_path):
    """A model whose config was edited into an invalid one (pool='max') was refused by save_pretrained only after
    transformers had copied the two remote-code files: a new folder was left holding them, and an earlier save's
    files there were overwritten. The config is checked first now: nothing is made, written or changed."""
    model = HfViTForImageClassification(HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64))
    model.save_pretrained(tmp_path / "old")
    (tmp_path / "old" / "modeling_hf_vit.py").write_text("# an earlier save's remote code\n")
    before = {p.name: p.read_bytes() for p in (tmp_path / "old").iterdir()}
    model.config.pool = "max"
    for folder in ("new", "old"):
        with pytest.raises(ValueError, match="unknown `pool` 'max'"):
            model.save_pretrained(tmp_path / folder)
    assert not (tmp_path / "new").exists()
    assert {p.name: p.read_bytes() for p in (tmp_path / "old").iterdir()} == before
    with pytest.raises(ValueError, match="unknown `pool` 'max'"):
        model.config.save_pretrained(tmp_path / "config")
    assert not (tmp_path / "config").exists()


def test_vit_fields_the_model_has_no_part_for_are_refused(tmp_path):
    """hidden_act='relu' and qkv_bias=True (ViT's habits) were accepted and saved while the model kept its GELU and
    its q, k, v projection without bias. Refused when built, edited (at save and model build) and loaded, naming what
    the model does; the values that match it are taken."""
    pattern = r"^HfViTConfig: hidden_act='relu' has no effect: the FFN always uses GELU .*Leave hidden_act out \(or "
    with pytest.raises(ValueError, match=pattern + r"hidden_act='gelu'\)\.$"):
        HfViTConfig(hidden_act="relu")
    with pytest.raises(ValueError, match=r"qkv_bias=True has no effect: the q, k, v projection \(to_qkv\) has no bias"):
        HfViTConfig(qkv_bias=True)
    for name, value in (("pooler_act", "tanh"), ("pooler_output_size", 192), ("encoder_stride", 16)):
        with pytest.raises(ValueError, match=rf"{name}={value!r} has no effect: .* Leave {name} out\.$"):
            HfViTConfig(**{name: value})
    assert HfViTConfig(hidden_act="gelu", qkv_bias=False).qkv_bias is False
    c = HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64)
    c.hidden_act = "relu"
    with pytest.raises(ValueError, match="hidden_act='relu' has no effect"):
        c.save_pretrained(tmp_path / "c")
    with pytest.raises(ValueError, match="hidden_act='relu' has no effect"):
        HfViTForImageClassification(c)
    del c.hidden_act
    HfViTForImageClassification(c).save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="qkv_bias=True has no effect"):
        HfViTForImageClassification.from_pretrained(tmp_path / "m", qkv_bias=True)


def test_validate_raises_transformers_own_error_for_its_validators_and_a_plain_one_for_hf_vits():
    """A transformers validator that fails raises huggingface_hub's StrictDataclassClassValidationError naming it, as
    transformers' ViTConfig.validate does (before: the bare ValueError, which code catching transformers' error
    missed); hf_vit's own field checks stay a plain ValueError."""
    from huggingface_hub.errors import StrictDataclassClassValidationError
    from transformers import ViTConfig

    for config in (ViTConfig(), HfViTConfig()):
        config.layer_types = ["not_a_layer_type"] * config.num_hidden_layers
        with pytest.raises(StrictDataclassClassValidationError,
                           match=r"validator 'validate_layer_type':\n    ValueError: .*not_a_layer_type") as caught:
            config.validate()
        assert isinstance(caught.value.__cause__, ValueError)
    config = HfViTConfig()
    config.pool = "max"
    with pytest.raises(ValueError) as caught:
        config.check_before_save()
    assert type(caught.value) is ValueError
    assert str(caught.value).startswith("HfViTConfig: unknown `pool` 'max'. Use pool='cls'")


def test_the_lessons_cfg_object_passed_whole_says_how_to_pass_its_fields():
    """The lesson builds ViT(cfg) from its ViTConfig dataclass; a learner writes HfViTConfig(cfg) or
    HfViTForImageClassification(cfg). Before: "`image_size` must be a positive integer, got ViTConfig(...)" and
    AttributeError "'ViTConfig' object has no attribute 'validate_hf_vit'". Now both say to pass the fields."""
    import dataclasses
    from argparse import Namespace

    from lesson_vit import ViTConfig
    from transformers import ViTConfig as TransformersViTConfig

    cfg = ViTConfig(dim=64, depth=2, heads=4, dim_head=16, mlp_dim=128)
    fix = r"HfViTConfig\(\*\*dataclasses\.asdict\(cfg\)\)"
    with pytest.raises(TypeError, match=r"HfViTConfig takes the lesson's fields as keywords, got a ViTConfig .*" + fix):
        HfViTConfig(cfg)
    with pytest.raises(TypeError, match=r"HfViTConfig takes .* got a dict .*HfViTConfig\(\*\*cfg\)"):
        HfViTConfig({"dim": 64})
    with pytest.raises(TypeError, match=r"HfViTForImageClassification takes an HfViTConfig, got a ViTConfig.*" + fix):
        HfViTForImageClassification(cfg)
    with pytest.raises(TypeError, match=r"takes an HfViTConfig, got a transformers ViTConfig"):
        HfViTForImageClassification(TransformersViTConfig())
    config = HfViTConfig(**dataclasses.asdict(cfg))  # the advice works
    assert (config.dim, config.heads, config.num_labels) == (64, 4, 10)
    args = Namespace(dim=64, depth=2, heads=4)  # a learner's argparse settings: no dataclass, the lesson's names
    pattern = r"got a Namespace object as its first argument .*HfViTConfig\(\*\*vars\(cfg\)\)"
    with pytest.raises(TypeError, match=pattern):
        HfViTConfig(args)
    config = HfViTConfig(**vars(args))  # the advice works
    assert (config.dim, config.depth, config.heads) == (64, 2, 4)


def test_a_configuration_object_passed_as_hf_vit_configs_first_argument_gets_advice_that_works():
    """transformers' configs are dataclasses too: HfViTConfig(transformers.ViTConfig()) was told
    HfViTConfig(**dataclasses.asdict(cfg)), which fails ("qkv_bias=True has no effect"), and HfViTConfig(config) of
    an HfViTConfig was told the same of a config that needs nothing. Each now gets advice that builds a config."""
    from transformers import ViTConfig as TransformersViTConfig

    cfg = TransformersViTConfig(image_size=32, patch_size=4, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=128)  # fmt: skip
    with pytest.raises(TypeError) as caught:
        HfViTConfig(cfg)
    message = str(caught.value)
    assert "dataclasses.asdict" not in message
    assert ("got a transformers ViTConfig object as its first argument (image_size), another model's configuration. "
            "Give its shape as keywords: HfViTConfig(image_size=cfg.image_size, patch_size=cfg.patch_size, "
            "num_channels=cfg.num_channels, dim=cfg.hidden_size, depth=cfg.num_hidden_layers, "
            "heads=cfg.num_attention_heads, dim_head=cfg.hidden_size // cfg.num_attention_heads, "
            "mlp_dim=cfg.intermediate_size, id2label=cfg.id2label)") in message
    config = HfViTConfig(image_size=cfg.image_size, patch_size=cfg.patch_size, num_channels=cfg.num_channels,
                         dim=cfg.hidden_size, depth=cfg.num_hidden_layers, heads=cfg.num_attention_heads,
                         dim_head=cfg.hidden_size // cfg.num_attention_heads, mlp_dim=cfg.intermediate_size,
                         id2label=cfg.id2label)  # fmt: skip  # the advice works
    assert (config.dim, config.depth, config.heads, config.dim_head, config.mlp_dim) == (64, 2, 4, 16, 128)
    own = HfViTConfig(dim=64, heads=4, dim_head=16, mlp_dim=128)
    with pytest.raises(TypeError) as caught:
        HfViTConfig(own)
    assert "dataclasses.asdict" not in str(caught.value)
    assert "got an HfViTConfig object as its first argument (image_size): it is one already. Use it as it is" in str(
        caught.value)


def test_a_dataclass_or_dict_without_the_lessons_fields_as_first_argument_is_told_the_config_takes_keywords():
    """Any dataclass or dict passed as HfViTConfig's first argument was taken for the lesson's cfg: transformers'
    TrainingArguments was told HfViTConfig(**dataclasses.asdict(cfg)), which builds a default-sized model carrying
    the training arguments as junk fields. Only a cfg with the lesson's size fields gets that advice now; anything
    else is told what image_size takes and that the config takes keywords."""
    import dataclasses

    from transformers import TrainingArguments

    @dataclasses.dataclass
    class DataSettings:
        batch_size: int = 128
        image_size: int = 32

    expected = (r"HfViTConfig: image_size \(the first argument\) takes an int or \(height, width\), got a {} object, "
                r"which has none of the lesson's fields \(dim, depth, heads, dim_head, mlp_dim\)\. The config takes its "
                r"fields as keywords, e\.g\. HfViTConfig\(image_size=32, patch_size=4, dim=192")  # fmt: skip
    for first, name in ((TrainingArguments("unused"), "transformers TrainingArguments"),
                        (DataSettings(), "DataSettings"), ({"batch_size": 128}, "dict")):  # fmt: skip
        with pytest.raises(TypeError, match=expected.format(name)) as caught:
            HfViTConfig(first)
        assert "asdict" not in str(caught.value) and "**cfg" not in str(caught.value)

    @dataclasses.dataclass
    class LearnersCfg:  # the lesson's fields beside the learner's own: still the lesson's cfg
        dim: int = 64
        epochs: int = 3

    with pytest.raises(TypeError, match=r"Pass its fields: HfViTConfig\(\*\*dataclasses\.asdict\(cfg\)\)"):
        HfViTConfig(LearnersCfg())


def test_a_folder_of_transformers_vit_is_refused_as_another_model_not_for_a_field(tmp_path):
    """HfViTForImageClassification.from_pretrained on transformers' own ViT folder (google/vit-*, or hf_vit's export)
    blamed a ViT field (qkv_bias=True, or pooler_output_size=32 for an export's qkv_bias=False): the problem is the
    folder's kind, said now with the class that loads it, for the config and the model alike."""
    from transformers import ViTConfig

    for qkv_bias in (True, False):
        folder = tmp_path / f"vit-{qkv_bias}"
        ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32,
                  patch_size=8, qkv_bias=qkv_bias, layer_norm_eps=1e-5).save_pretrained(folder)  # fmt: skip
        pattern = r"^HfViTConfig: the config \(config.json\) is of model_type 'vit', not 'hf_vit'.*AutoModelForImage"
        for load in (HfViTConfig.from_pretrained, HfViTForImageClassification.from_pretrained):
            with pytest.raises(ValueError, match=pattern):
                load(folder)


def test_a_misspelt_setting_is_refused_naming_the_one_meant_while_other_keys_are_kept(tmp_path):
    """HfViTConfig(dimm=100) built dim=192 and kept an attribute `dimm` (saved into config.json): the typo was lost
    without a word, likewise in from_pretrained(folder, dimm=64), config.update() and a hand-edited config.json. A key
    a slip away from one of the config's own names (or another library's name for one: num_layers) is refused now,
    naming the name meant, everywhere a config takes keys; other unknown keys are kept, as transformers keeps them."""
    import json

    from transformers import AutoConfig

    tiny = dict(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64)
    pattern = r"^HfViTConfig: `{0}={1}` is not one of its settings: did you mean `{2}`\? .* Use {2}={1}\.$"
    for key, value, meant in (("dimm", 100, "dim"), ("Depth", 2, "depth"), ("num_class", 5, "num_classes"),
                              ("patchsize", 8, "patch_size"), ("image_szie", 64, "image_size"), ("pol", "'mean'", "pool"),
                              ("num_layers", 4, "depth"), ("hidden_sizes", 48, "hidden_size")):  # fmt: skip
        with pytest.raises(ValueError, match=pattern.format(key, value, meant)):
            HfViTConfig(**{key: value if key != "pol" else "mean"})
    # Not slips: a note of one's own, a training setting a letter from patch_size, another word as short as dim.
    kept = HfViTConfig(**tiny, notes="run 3", batch_size=128, dir="runs")
    assert (kept.dim, kept.notes, kept.batch_size, kept.dir) == (32, "run 3", 128, "runs")
    HfViTForImageClassification(kept).save_pretrained(tmp_path / "kept")
    assert HfViTConfig.from_pretrained(tmp_path / "kept").notes == "run 3"  # and the usual load keywords still work
    model = HfViTForImageClassification.from_pretrained(tmp_path / "kept", dtype=torch.float32, output_loading_info=True)
    assert model[0].config.dim == 32

    for load in (HfViTConfig.from_pretrained, AutoConfig.from_pretrained, HfViTForImageClassification.from_pretrained):
        with pytest.raises(ValueError, match=pattern.format("dimm", 64, "dim")):
            load(tmp_path / "kept", dimm=64)
    with pytest.raises(ValueError, match=pattern.format("dimm", 64, "dim")):
        kept.update({"dimm": 64})
    kept.dimm = 64  # set by hand: refused before it is saved, as its load would be
    with pytest.raises(ValueError, match=pattern.format("dimm", 64, "dim")):
        kept.save_pretrained(tmp_path / "typo")
    assert not (tmp_path / "typo").exists()

    edited = json.loads((tmp_path / "kept" / "config.json").read_text())
    (tmp_path / "kept" / "config.json").write_text(json.dumps({**edited, "mlp_dimm": 256}))
    loaded = r"^HfViTConfig: the loaded config \(config.json\) has `mlp_dimm=256`, which is not one of its settings: "
    with pytest.raises(ValueError, match=loaded + r"did you mean `mlp_dim`\? .* delete `mlp_dimm` \(to change mlp_dim, "
                       r"edit `mlp_dim` itself\)\.$"):
        HfViTConfig.from_pretrained(tmp_path / "kept")


def test_a_batch_size_in_any_spelling_is_not_taken_for_a_misspelt_patch_size():
    """A lesson's cfg (or a user's) carries its batch size beside the model's fields, often as a constant's name
    (BATCH_SIZE) or in camel case (batchSize). Only `batch_size` itself was spared the misspelling rule: the others
    were refused as a slip of patch_size, with the fix "Use patch_size=128", which would build a model of 128-px
    patches. They are kept now, as batch_size is; a slip of patch_size itself is still refused."""
    tiny = dict(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64)
    for key in ("BATCH_SIZE", "batchSize", "batchsize", "Batch_Size"):
        config = HfViTConfig(**tiny, **{key: 128})
        assert (getattr(config, key), config.patch_size) == (128, 4)
    with pytest.raises(ValueError, match=r"`PatchSize=8` is not one of its settings: did you mean `patch_size`\?"):
        HfViTConfig(**tiny, PatchSize=8)


def test_another_librarys_name_in_any_spelling_names_the_setting_it_means():
    """num_layers (timm's, transformers' other configs') is refused naming depth, though by spelling it is nearest
    num_labels. Written as a constant (NUM_LAYERS) or in camel case (numLayers) it fell to the spelling rule and was
    refused with "did you mean `num_labels`? ... Use num_labels=12": a 12-class head. IMG_SIZE, EMBED_DIM, numHeads
    were kept unused without a word while img_size, embed_dim, num_heads were refused. Each spelling now names the
    same setting."""
    pattern = r"^HfViTConfig: `{0}=12` is not one of its settings: did you mean `{1}`\? .* Use {1}=12\.$"
    for key, meant in (("NUM_LAYERS", "depth"), ("numLayers", "depth"), ("num_layers", "depth"),
                       ("IMG_SIZE", "image_size"), ("EMBED_DIM", "dim"), ("numHeads", "heads"),
                       ("IN_CHANS", "num_channels")):  # fmt: skip
        with pytest.raises(ValueError, match=pattern.format(key, meant)):
            HfViTConfig(**{key: 12})


def test_timms_pooling_names_name_pool_with_its_value_in_pools_words(tmp_path):
    """timm's VisionTransformer(global_pool="avg") (and the names pooling, pool_type) means pool="mean": it was kept
    unused without a word and the model built with pool="cls". Now refused naming pool, with timm's value in pool's
    words ("avg" is "mean", "token" is "cls"; pool="avg" itself would be refused), and a value pool has no match
    for ("max", timm's "" for no pooling) said to be neither."""
    import json

    for key, value, fix in (("global_pool", "avg", r"Use pool='mean' \('avg' is 'mean' here\)"),
                            ("GLOBAL_POOL", "token", r"Use pool='cls' \('token' is 'cls' here\)"),
                            ("pooling", "mean", r"Use pool='mean'"), ("pool_type", "cls", r"Use pool='cls'"),
                            ("global_pool", "max", r"pool is 'cls' \(the \[CLS\] token\) or 'mean' \(the mean of "
                                                   r"the tokens\); 'max' is neither")):  # fmt: skip
        with pytest.raises(ValueError, match=rf"^HfViTConfig: `{key}={value!r}` is not one of its settings: did you "
                                             rf"mean `pool`\? .* {fix}\.$"):
            HfViTConfig(**{key: value})
    assert HfViTConfig(pool="mean").pool == "mean"  # the fix given works
    folder = tmp_path / "hand_written"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "hf_vit", "global_pool": "avg"}))
    with pytest.raises(ValueError, match=r"has `global_pool='avg'`, .* Rename the key to pool and its value to "
                                         r"'mean' \('avg' is 'mean' here\)\.$"):
        HfViTConfig.from_pretrained(folder)


def test_a_misspelt_key_beside_the_setting_it_misspells_in_a_saved_config_says_to_delete_it(tmp_path):
    """save_pretrained writes every setting, so a saved config.json with a misspelt key holds the setting meant as
    well: an earlier release saved HfViTConfig(dim=32, dimm=100) as dim=32 plus dimm=100 (its weights fit 32). The
    refusal said "Rename the key to dim", which leaves two dim keys (JSON keeps the last: 100, and the weights no
    longer fit). It now names the value read and says to delete the misspelt key; a file without the setting meant
    (written by hand) is still told to rename it."""
    import json

    folder = tmp_path / "model"
    HfViTForImageClassification(HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64)).save_pretrained(folder)
    saved = json.loads((folder / "config.json").read_text())
    for key, value, kept, said in (("dimm", 100, "dim", "32"), ("hidden_sizes", 100, "dim", "32"),
                                   ("num_class", 5, "id2label", r"\.\.\.")):  # fmt: skip
        (folder / "config.json").write_text(json.dumps({**saved, key: value}))
        with pytest.raises(ValueError, match=rf"has `{key}={value}`, .* The file has `{kept}={said}` too, which the "
                                             rf"model is built with: delete `{key}` \(to change {kept}, edit `{kept}` "
                                             r"itself\)\.$"):
            HfViTForImageClassification.from_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({**saved}))  # the fix followed: it loads, as saved
    assert HfViTForImageClassification.from_pretrained(folder).config.dim == 32
    hand_written = {key: value for key, value in saved.items() if key != "dim"}
    (folder / "config.json").write_text(json.dumps({**hand_written, "dimm": 32}))
    with pytest.raises(ValueError, match=r"has `dimm=32`, .* Rename the key to dim\.$"):
        HfViTConfig.from_pretrained(folder)
