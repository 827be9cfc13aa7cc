"""Configuration of the lesson's Vision Transformer.

The field names are the lesson's (`dim`, `depth`, `heads`, `dim_head`,
`mlp_dim`, `pool`); transformers' standard names (`hidden_size`,
`num_hidden_layers`, ...) resolve to them through `attribute_map`.

The class comes first; the checks it calls, each naming the bad value and
the fix, follow it.

This file is copied next to saved weights as remote code, so it imports
nothing from `hf_vit` (only `transformers` and its `huggingface_hub`).
"""

import dataclasses
import inspect
import math
from collections.abc import Mapping

from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import PretrainedConfig

# CIFAR-10 class names in the order of the Hub dataset `uoft-cs/cifar10`.
CIFAR10_LABELS = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

# CIFAR-10 per-channel statistics of the training images (RGB, in [0, 1]);
# the usual published figures, saved into the image processor.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class HfViTConfig(PretrainedConfig):
    r"""Configuration of [`HfViTModel`] and [`HfViTForImageClassification`].

    A name in parentheses is transformers' for the same field (`config.hidden_size` reads `config.dim`).

    Args:
        image_size (`int` or `(int, int)`, defaults to 32): input height/width.
        patch_size (`int` or `(int, int)`, defaults to 4): patch height/width; must divide `image_size`.
        num_channels (`int`, defaults to 3): input channels (the lesson's `channels`).
        dim (`int`, defaults to 192): token width (`hidden_size`).
        depth (`int`, defaults to 6): number of encoder blocks (`num_hidden_layers`).
        heads (`int`, defaults to 3): attention heads (`num_attention_heads`).
        dim_head (`int`, defaults to 64): width of one head (`head_dim`); `heads * dim_head` need not equal `dim`.
        mlp_dim (`int`, defaults to 768): hidden width of the feed-forward block (`intermediate_size`).
        pool (`str`, defaults to `"cls"`): `"cls"` takes the [CLS] token, `"mean"` averages all tokens.
        dropout (`float`, defaults to 0.0): dropout in attention weights, attention output and FFN
            (`hidden_dropout_prob` and `attention_probs_dropout_prob`: the lesson has one rate for both).
        emb_dropout (`float`, defaults to 0.0): dropout after adding positional embeddings.
        layer_norm_eps (`float`, defaults to 1e-5): LayerNorm epsilon (PyTorch's default, as in the lesson).
        initializer_range (`float`, defaults to 0.02): std of the weight init (normal for Linear layers,
            truncated normal for the [CLS] token and the positions).
        id2label (`dict` or `list`, defaults to the 10 CIFAR-10 classes): the class names by id; `num_labels`
            (the lesson's `num_classes`) alone names them LABEL_0, LABEL_1, ...

    Other keys are kept as transformers keeps them, except one a slip away from a name above (`dimm`) or another
    library's name for one (`num_layers`): refused, naming the one meant.
    """

    model_type = "hf_vit"
    # transformers' names (and the lesson's `channels`) for the lesson's fields: config.hidden_size reads config.dim.
    attribute_map = {
        "hidden_size": "dim",
        "num_hidden_layers": "depth",
        "num_attention_heads": "heads",
        "head_dim": "dim_head",
        "intermediate_size": "mlp_dim",
        "hidden_dropout_prob": "dropout",
        "attention_probs_dropout_prob": "dropout",
        "channels": "num_channels",
    }

    def __init__(
        self,
        image_size=32,
        patch_size=4,
        num_channels=3,
        dim=192,
        depth=6,
        heads=3,
        dim_head=64,
        mlp_dim=768,
        pool="cls",
        dropout=0.0,
        emb_dropout=0.0,
        layer_norm_eps=1e-5,
        initializer_range=0.02,
        **kwargs,
    ):
        _refuse_a_whole_cfg(image_size)
        # dim=64 beside hidden_size=48 is refused; a field at its default was not given (as dropout=0.0 below),
        # so HfViTConfig(hidden_size=48) alone stands.
        sizes = dict(num_channels=num_channels, dim=dim, depth=depth, heads=heads, dim_head=dim_head, mlp_dim=mlp_dim)
        _one_value_per_field(kwargs, {f: v for f, v in sizes.items() if v != FIELD_DEFAULTS[f]})
        if "channels" in kwargs:  # the lesson's name for num_channels
            num_channels = kwargs.pop("channels")
        dropout = _one_dropout(kwargs, dropout, explicit=dropout != 0.0)  # 0.0: the default, or said so
        _one_set_of_labels(kwargs)  # num_classes, num_labels, id2label, label2id: one set of classes

        self.image_size = list(image_size) if isinstance(image_size, (list, tuple)) else image_size
        self.patch_size = list(patch_size) if isinstance(patch_size, (list, tuple)) else patch_size
        self.num_channels = num_channels
        self.dim = dim
        self.depth = depth
        self.heads = heads
        self.dim_head = dim_head
        self.mlp_dim = mlp_dim
        self.pool = pool
        self.dropout = dropout
        self.emb_dropout = emb_dropout
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        # Set after transformers' __init__, whose check refuses it beside attn_implementation="sdpa"; hf_vit serves
        # the weights under every attention implementation (see the output_attentions setter).
        output_attentions = kwargs.pop("output_attentions", False)
        _check_problem_type(kwargs.get("problem_type"))  # before transformers 5.17's own check, which names no fix
        super().__init__(**kwargs)
        self._output_attentions = output_attentions
        self.validate_hf_vit()

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        # `from_pretrained(folder, num_labels=N, id2label=..., ignore_mismatched_sizes=True)`: a new head.
        # The labels given replace the saved ones as a whole, before the constructor checks them (transformers
        # would set a passed id2label only afterwards, leaving the saved label2id behind). `num_labels=N` alone
        # gives N fresh labels (LABEL_0, ...), as transformers' own configs do, unless N is the saved count.
        _refuse_another_model_type(config_dict.get("model_type"))  # before its fields are read as hf_vit's
        # from_pretrained(folder, dimm=64): transformers sets only the keywords the config has as attributes and drops
        # the others without a word (a model's from_pretrained passes them on to its __init__, a bare TypeError).
        _refuse_misspelt_keys(config_dict, loaded=True)  # else the constructor's refusal would say "Use dim=..."
        _refuse_misspelt_keys(kwargs)
        _num_classes_as_num_labels(kwargs)  # else transformers would set the read-only property and fail
        _check_problem_type(kwargs.get("problem_type"))  # set after loading: 5.17's own check would name no fix
        _one_value_per_field(kwargs, kwargs)  # dim=64, hidden_size=48: set one by one, the last would win
        if set(DROPOUT_ALIASES) & set(kwargs):  # set one by one after loading: two different values, the last would win
            kwargs["dropout"] = _one_dropout(kwargs, kwargs.get("dropout"), explicit="dropout" in kwargs)
        # hidden_act="relu" and its kin go to the constructor's check (else the model's "unexpected keyword argument").
        config_dict = {**config_dict, **{k: kwargs.pop(k) for k in VIT_FIELDS_WITHOUT_EFFECT if k in kwargs}}
        label_keys = ("id2label", "label2id", "num_labels")
        given = {k: kwargs.pop(k) for k in label_keys if k in kwargs}
        given = {k: v for k, v in given.items() if v is not None}  # num_labels=None: not given, the saved ones stay
        saved = config_dict.get("id2label")
        if set(given) == {"num_labels"} and saved is not None and len(saved) == given["num_labels"]:
            given = {}
        if given:
            config_dict = {**{k: v for k, v in config_dict.items() if k not in label_keys}, **given}
        loaded = super().from_dict(config_dict, **kwargs)
        # transformers sets the other keyword overrides (dim="64", pool="max") after the constructor's checks.
        (loaded[0] if isinstance(loaded, tuple) else loaded).validate_hf_vit()
        return loaded

    def to_diff_dict(self):
        # transformers leaves id2label out of config.json when it equals its own default (two labels, LABEL_0
        # and LABEL_1). Here a config without it means the 10 CIFAR-10 classes, so it is always written.
        diff = super().to_diff_dict()
        full = self.to_dict()
        for key in ("id2label", "label2id"):
            diff.setdefault(key, full[key])
        return diff

    def save_pretrained(self, save_directory, push_to_hub=False, **kwargs):
        # A field edited after construction (config.pool = "max") is checked before it is saved: a folder
        # that from_pretrained would refuse is never written.
        self.check_before_save()
        return super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)

    @property
    def output_attentions(self):
        return self._output_attentions

    @output_attentions.setter
    def output_attentions(self, value):
        # transformers refuses it beside an SDPA or flash model, whose kernels return no weights; hf_vit's attention
        # takes the eager path for each call that asks for them, so every implementation serves them. As in
        # transformers, asking before the model chose one picks eager.
        if value and self._attn_implementation is None:
            self._attn_implementation = "eager"
        self._output_attentions = value

    def validate_output_attentions(self):
        """Nothing to refuse: every attention implementation returns the weights here (see the setter above)."""

    def validate(self):
        """transformers' validators, looked up on this class so that the one above replaces its own (PretrainedConfig's
        `validate` calls its own functions): a config with output_attentions=True saves beside SDPA. A refusal is
        wrapped as transformers' own validate wraps it, so callers catch the same error from either config."""
        for validator in PretrainedConfig.__class_validators__:
            try:
                getattr(self, validator.__name__)()
            except (ValueError, TypeError) as err:
                raise StrictDataclassClassValidationError(validator=validator.__name__, cause=err) from err

    def check_before_save(self):
        """Every check a save makes, made before anything is written: the lesson's fields, then transformers' own
        validators (its save_pretrained runs them only after copying the remote-code files into the folder)."""
        self.validate_hf_vit()
        self.validate()

    def update(self, config_dict):
        # transformers sets the keys one by one: two values of one setting (two dropout names, dim and hidden_size,
        # num_labels and id2label) that disagree would leave whichever came last.
        config_dict = dict(config_dict)
        _refuse_misspelt_keys(config_dict)  # transformers would set config.dimm and keep dim as it was
        _num_classes_as_num_labels(config_dict)
        _one_value_per_field(config_dict, config_dict)
        _check_label_count(config_dict.get("num_labels"), config_dict.get("id2label"))
        if set(DROPOUT_ALIASES) & set(config_dict):
            explicit = "dropout" in config_dict
            config_dict["dropout"] = _one_dropout(config_dict, config_dict.get("dropout"), explicit=explicit)
        super().update(config_dict)

    def update_from_string(self, update_str):
        # "dropout=0.1,hidden_dropout_prob=0.2" and "dim=64,hidden_size=48" are refused as the constructor refuses
        # them; the parsing stays transformers' (the same split on "," and "=").
        given = dict(x.split("=") for x in update_str.split(","))
        rates = _numbers(given, ("dropout", *DROPOUT_ALIASES), float)
        if rates is not None and len(rates) > 1:
            _one_dropout(rates, rates.get("dropout"), explicit="dropout" in rates)
        sizes = _numbers(given, (*FIELD_ALIASES, *FIELD_ALIASES.values()), int)
        if sizes is not None:
            _one_value_per_field(sizes, sizes)
        super().update_from_string(update_str)

    # -- derived sizes -------------------------------------------------------
    @property
    def grid_size(self):
        """Patches along height and width: `(H // p1, W // p2)`."""
        (ih, iw), (ph, pw) = _pair(self.image_size), _pair(self.patch_size)
        return ih // ph, iw // pw

    @property
    def num_patches(self):
        """N, the number of patch tokens (the sequence has N + 1 with [CLS])."""
        gh, gw = self.grid_size
        return gh * gw

    @property
    def num_classes(self):
        """The lesson's name for `num_labels`."""
        return self.num_labels

    @num_classes.setter
    def num_classes(self, value):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"HfViTConfig: `num_classes` must be a whole number of classes >= 1, got {value!r}.")
        self.num_labels = value

    def __setattr__(self, key, value):
        if key == "problem_type":
            _check_problem_type(value)
        if key == "id2label":
            value = _as_id2label(value)
            if isinstance(value, dict):
                # `config.id2label = {...}` renames the classes: label2id follows (transformers' num_labels setter
                # rebuilds both the same way), or save_pretrained would write two maps that disagree and
                # from_pretrained refuses.
                super().__setattr__(key, value)
                super().__setattr__("label2id", {name: i for i, name in value.items()})
                return
        super().__setattr__(key, value)

    # -- validation ----------------------------------------------------------
    def validate_hf_vit(self):
        """Raise `ValueError` naming the bad field and the fix."""

        def positive_int(name, value):
            _refuse_array_scalar(name, value)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"HfViTConfig: `{name}` must be a positive integer, got {value!r}. Set {name} >= 1.")

        for name in ("image_size", "patch_size"):
            value = getattr(self, name)
            parts = _pair(value)
            if len(parts) != 2:
                raise ValueError(
                    f"HfViTConfig: `{name}` must be an int or a pair (height, width), got {value!r}."
                )
            for part in parts:
                positive_int(name, part)
        for name in ("num_channels", "dim", "depth", "heads", "dim_head", "mlp_dim"):
            positive_int(name, getattr(self, name))

        (ih, iw), (ph, pw) = _pair(self.image_size), _pair(self.patch_size)
        if ih % ph or iw % pw:
            raise ValueError(
                f"HfViTConfig: `patch_size` {self.patch_size!r} does not divide `image_size` {self.image_size!r}: "
                "the image must cut into a whole grid of patches. Choose a patch size that divides the image size "
                f"(for {ih}x{iw}: {_patch_sizes_for(ih, iw)})."
            )
        if self.pool not in ("cls", "mean"):
            raise ValueError(
                f"HfViTConfig: unknown `pool` {self.pool!r}. Use pool='cls' (the [CLS] token) or pool='mean' "
                "(the average of all tokens)."
            )
        _check_problem_type(self.problem_type)
        for name in ("dropout", "emb_dropout"):
            value = getattr(self, name)
            _refuse_array_scalar(name, value)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"HfViTConfig: `{name}` must be a probability in [0, 1), got {value!r}.")
        for name in ("layer_norm_eps", "initializer_range"):
            value = getattr(self, name)
            _refuse_array_scalar(name, value)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
                raise ValueError(f"HfViTConfig: `{name}` must be a positive finite number, got {value!r}.")
        _check_vit_fields_without_effect(self)
        _check_class_maps(self.num_labels, self.id2label, self.label2id)
        # A misspelt keyword (dimm=100) lands here as an attribute; one set afterwards (config.dimm = 100) is refused
        # before a save, as a later load of its config.json would refuse it.
        _refuse_misspelt_keys(vars(self))


# ---------------------------------------------------------------------------
# The checks HfViTConfig calls: each refusal names the bad value and the fix
# ---------------------------------------------------------------------------

# The losses transformers' `loss_function` knows for a classification head.
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")


def _check_problem_type(problem_type) -> None:
    if problem_type not in (None, *PROBLEM_TYPES):
        # transformers 5.24 accepts any text here and fails only at the first loss, as "Invalid problem type".
        raise ValueError(
            f"HfViTConfig: unknown `problem_type` {problem_type!r}. Use 'single_label_classification' (one "
            "class id per image), 'multi_label_classification' (float 0/1 labels, one per class) or "
            "'regression', or leave it out to infer it from the labels."
        )


# transformers' ViTConfig has two dropout rates; the lesson's one `dropout` takes either name.
DROPOUT_ALIASES = ("attention_probs_dropout_prob", "hidden_dropout_prob")


def _one_dropout(kwargs, dropout, explicit):
    """The dropout rate, with transformers' two names for it popped from `kwargs`. ViT keeps hidden and attention
    dropout apart; the lesson has one rate for both, so both names set `dropout`, and two different values would
    leave whichever came last."""
    given = {**({"dropout": dropout} if explicit else {}), **{n: kwargs.pop(n) for n in DROPOUT_ALIASES if n in kwargs}}
    if len(set(given.values())) > 1:
        named = ", ".join(f"{name}={value!r}" for name, value in given.items())
        raise ValueError(
            f"HfViTConfig: {named} each set `dropout`, the model's one dropout rate (on the attention weights, after "
            "the attention and in the FFN, as in the lesson); it has no separate hidden and attention dropout. "
            "Pass one value, e.g. dropout=0.1."
        )
    return next(iter(given.values())) if given else dropout


# transformers' ViTConfig fields with no part in the lesson's model: the values that match what it does, and what it
# does. Kept silently, another value would be saved and read back while the model went on as before.
VIT_FIELDS_WITHOUT_EFFECT = {
    "hidden_act": (("gelu",), "the FFN always uses GELU (torch's exact nn.GELU, transformers' 'gelu')"),
    "qkv_bias": ((False,), "the q, k, v projection (to_qkv) has no bias, as in the lesson"),
    "pooler_output_size": ((), "the pooled vector is the [CLS] token or the mean of the tokens (config.pool), with no "
                               "dense layer"),
    "pooler_act": ((), "the pooled vector goes to the head with no activation"),
    "encoder_stride": ((), "the model has no masked-image-modeling decoder"),
}


def _refuse_another_model_type(model_type) -> None:
    """A config.json of another model (transformers' own ViT: google/vit-*, or hf_vit's export) read as hf_vit's:
    transformers only warns, and the first ViT field hf_vit has no part for (qkv_bias, pooler_output_size) was
    blamed; with those gone, none of the weights' names would match and the model would be left at random init."""
    if model_type in (None, HfViTConfig.model_type):
        return
    raise ValueError(
        f"HfViTConfig: the config (config.json) is of model_type {model_type!r}, not {HfViTConfig.model_type!r}: "
        "another model's, whose weights are named for another architecture and would not load into hf_vit's layers. "
        "Load it with its own class: transformers.AutoModelForImageClassification.from_pretrained(folder) "
        "(transformers' ViT for model_type 'vit', e.g. a folder written by hf_vit's export)."
    )


def _check_vit_fields_without_effect(config):
    """Refuse a ViT field set to a value the model does not follow (hidden_act="relu"), naming what it does."""
    for name, (allowed, what) in VIT_FIELDS_WITHOUT_EFFECT.items():
        value = getattr(config, name, None)
        if value is not None and value not in allowed:
            keep = f" (or {name}={allowed[0]!r})" if allowed else ""
            raise ValueError(f"HfViTConfig: {name}={value!r} has no effect: {what}. Leave {name} out{keep}.")


def _one_value_per_field(kwargs, fields):
    """Refuse another name in `kwargs` (hidden_size=48) that disagrees with its field given too (dim=64 in
    `fields`): transformers would set one after the other, and whichever came last would win without a word."""
    for alias, field in FIELD_ALIASES.items():
        if alias in kwargs and field in fields and kwargs[alias] != fields[field]:
            whose = "the lesson's" if alias == "channels" else "transformers'"
            raise ValueError(
                f"HfViTConfig: {field}={fields[field]!r} and {alias}={kwargs[alias]!r} disagree: they are one "
                f"setting ({alias} is {whose} name for {field}). Pass one of them."
            )


# Other libraries' names for the lesson's settings (timm, torchvision, transformers' other configs), said by name: by
# spelling alone num_layers is nearest num_labels.
OTHER_NAMES = {
    "num_layers": "depth", "n_layers": "depth", "num_heads": "heads", "n_heads": "heads", "embed_dim": "dim",
    "hidden_dim": "dim", "in_chans": "num_channels", "in_channels": "num_channels", "img_size": "image_size",
    "drop_rate": "dropout", "layer_norm_epsilon": "layer_norm_eps",
    "global_pool": "pool", "pooling": "pool", "pool_type": "pool",
}  # fmt: skip
# timm's global_pool values for what pool calls "mean" and "cls": its "avg" given as pool="avg" would be refused.
OTHER_POOL_VALUES = {"avg": "mean", "token": "cls"}
# Names one slip from one of the config's that mean something else: a lesson's cfg may carry its batch_size beside the
# model's fields (one letter from patch_size), in any of its usual spellings (BATCH_SIZE, batchSize), as `_misspelt`
# compares them.
NOT_MISSPELT = frozenset({"batchsize"})
_OTHER_PLAIN = {name.replace("_", ""): meant for name, meant in OTHER_NAMES.items()}  # as `_misspelt` compares keys


def _edits(a: str, b: str) -> int:
    """Letters inserted, deleted, replaced or two swapped to turn `a` into `b` (optimal string alignment distance)."""
    previous, row = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        before, previous, row = previous, row, [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], before[j - 2] + 1)
    return row[-1]


def _misspelt(key: str):
    """The config's own name that `key` most likely misspells, or None.

    transformers' configs keep any key they do not know (config.json carries transformers_version, a user's notes), so
    an unknown key alone is no mistake. One a letter or two (case and underscores aside) from a name of the model's
    shape or classes is: dimm=100 would be kept beside dim=192, and the model built with 192. Edit distance, not
    difflib's ratio: at a ratio of 0.8, 86 of the 2,385 other field names of transformers' configs match one of these
    names (decoder_num_attention_heads for num_attention_heads); by the rule below (and OTHER_NAMES), 18, most of them
    another library's name for the same setting (depths, num_heads, in_channels).
    """
    plain = key.lower().replace("_", "")
    known = key in OWN_NAMES or plain in NOT_MISSPELT or key in _PRETRAINED_NAMES or hasattr(PretrainedConfig, key)
    if known or key.startswith("_"):  # _name_or_path, _commit_hash: transformers' own
        return None
    if plain in _OTHER_PLAIN:  # NUM_LAYERS, numLayers as num_layers: by spelling they too are nearest num_labels
        return _OTHER_PLAIN[plain]
    slips = {name: _slips(plain, name.replace("_", "")) for name in OWN_NAMES}
    near = {name: n for name, n in slips.items() if n is not None}
    return min(near, key=near.get) if near else None


def _slips(plain: str, own: str) -> int | None:
    """The edits from `plain` to `own` where they look like a slip of the keyboard, else None."""
    edits, shortest = _edits(plain, own), min(len(plain), len(own))
    if edits <= 1:
        # In a short name one letter replaced makes another word (dir for dim, bool for pool): there only a letter
        # added, dropped, or two swapped counts.
        return edits if shortest > 4 or len(plain) != len(own) or sorted(plain) == sorted(own) else None
    # Two slips only in a long name that begins alike (num_class): kv_channels is another setting than channels.
    return edits if edits == 2 and shortest >= 8 and plain[:3] == own[:3] else None


def _refuse_misspelt_keys(settings, loaded: bool = False) -> None:
    """Refuse a key of `settings` (keywords, attributes, or a `loaded` config.json's) that misspells one of the
    config's own names, naming both."""
    def shown(value):
        return f"{value!r}" if len(repr(value)) <= 40 else "..."

    for key, value in settings.items():
        meant = _misspelt(key) if isinstance(key, str) else None
        if meant:
            given, fix = (f"the loaded config (config.json) has `{key}={shown(value)}`, which is",
                          f"Rename the key to {meant}") if loaded else (f"`{key}={shown(value)}` is",
                                                                        f"Use {meant}={shown(value)}")  # fmt: skip
            if meant == "pool":  # timm's global_pool="avg" is pool="mean" here; its "", "max", "map" have no pool here
                pool = OTHER_POOL_VALUES.get(value, value) if isinstance(value, str) else value
                renamed = "" if pool == value else f" ({value!r} is {pool!r} here)"
                fix = (f"Rename the key to pool and its value to {pool!r}{renamed}" if loaded else
                       f"Use pool={pool!r}{renamed}") if pool in ("cls", "mean") else (
                    f"pool is 'cls' (the [CLS] token) or 'mean' (the mean of the tokens); {shown(value)} is neither")
            # save_pretrained writes every setting, so a saved file has the one meant too (an earlier release kept
            # HfViTConfig(dimm=100)'s key beside dim=192): renamed, the key would be there twice, and the weights fit
            # the value that was read.
            classes = meant in ("num_classes", "num_labels")  # saved as id2label
            kept = "id2label" if classes else HfViTConfig.attribute_map.get(meant, meant)
            if loaded and kept in settings:
                fix = (f"The file has `{kept}={shown(settings[kept])}` too, which the model is built with: delete "
                       f"`{key}` (to change {kept}, edit `{kept}` itself)")
            raise ValueError(
                f"HfViTConfig: {given} not one of its settings: did you mean `{meant}`? The config would keep `{key}` "
                f"unused and leave `{meant}` as it was. {fix}."
            )


def _numbers(given, names, kind):
    """The values of `names` in update_from_string's text pairs, as numbers of `kind`; None where one is not a number
    (transformers' own parsing then names the bad value)."""
    try:
        return {k: kind(v) for k, v in given.items() if k in names}
    except ValueError:
        return None


def _num_classes_as_num_labels(kwargs):
    """The lesson's `num_classes=N` means `num_labels=N` (in place); both given must agree."""
    num_classes = kwargs.pop("num_classes", None)
    if num_classes is None:
        return
    if kwargs.get("num_labels") not in (None, num_classes):
        raise ValueError(
            f"num_classes={num_classes} and num_labels={kwargs['num_labels']} disagree: they are one setting "
            "(num_classes is the lesson's name for num_labels). Pass one of them."
        )
    kwargs["num_labels"] = num_classes


def _check_label_count(num_labels, id2label):
    """`num_labels` and `id2label` given together must count the same classes."""
    if id2label is not None and num_labels is not None and len(id2label) != num_labels:
        raise ValueError(
            f"HfViTConfig: `num_labels={num_labels}` disagrees with `id2label`, which has {len(id2label)} "
            "entries. Pass only one of them, or make `id2label` list exactly `num_labels` classes."
        )


def _check_class_maps(num_labels, id2label, label2id):
    """Refuse classes the head cannot serve by name: none, ids other than 0..N-1, a name given to two classes, or a
    label2id that is not id2label's inverse."""
    if num_labels is None or num_labels < 1:
        raise ValueError("HfViTConfig: the model needs at least one class: pass `id2label` or `num_labels`.")
    ids = sorted(_class_id(i, "id2label") for i in id2label)
    if ids != list(range(len(ids))):
        # The head's output j is class j: a gap leaves an output without a name (pipeline() fails on it).
        raise ValueError(
            f"HfViTConfig: `id2label` keys must be the class ids 0..{len(ids) - 1}, got {ids}. Number the "
            "classes from 0 without gaps."
        )
    classes = {}
    for i, name in sorted(id2label.items(), key=lambda item: _class_id(item[0], "id2label")):
        classes.setdefault(name, []).append(_class_id(i, "id2label"))
    shared = next(((name, class_ids) for name, class_ids in classes.items() if len(class_ids) > 1), None)
    if shared:
        # label2id keeps one class per name: the others could not be found by their name (evaluation, pipelines).
        name, class_ids = shared
        listed = ", ".join(map(str, class_ids[:-1])) + f" and {class_ids[-1]}"
        raise ValueError(
            f"HfViTConfig: `id2label` gives the name {name!r} to classes {listed}, but label2id can map a name "
            "to one class only. Give each class its own name."
        )
    _check_label2id_is_a_map(label2id)  # one set on the config afterwards: saved, no load would take it
    inverse = {name: _class_id(i, "id2label") for i, name in id2label.items()}
    given = label2id if isinstance(label2id, dict) else inverse
    if inverse != {name: _class_id(i, "label2id") for name, i in given.items()}:
        raise ValueError(
            f"HfViTConfig: `label2id` {label2id!r} is not the inverse of `id2label` {id2label!r}. "
            "Set `id2label` alone (label2id follows it) or make the two maps agree."
        )


def _check_label2id_is_a_map(label2id):
    """Refuse a label2id that is not a map, e.g. the class names as a list (the form id2label takes)."""
    if label2id is not None and not isinstance(label2id, dict):
        raise ValueError(
            f"HfViTConfig: `label2id` must map class names to ids, e.g. {{'cat': 0, 'dog': 1}}, got {label2id!r}. "
            "Pass the names as id2label (a list: id2label=['cat', 'dog']); label2id follows it."
        )


def _one_set_of_labels(kwargs):
    """The constructor's class arguments in `kwargs`, settled in place before transformers reads them: the lesson's
    num_classes as num_labels, None as not given, id2label kept as _as_id2label keeps it (or label2id's inverse when
    only label2id is given, or the 10 CIFAR-10 classes when nothing is), and label2id the inverse of id2label. A
    num_labels that is not a whole number, an id2label that is not a map, and counts or maps that disagree are
    refused."""
    _num_classes_as_num_labels(kwargs)
    for key in ("id2label", "label2id", "num_labels"):  # None means not given, as the checks below read it
        if key in kwargs and kwargs[key] is None:
            del kwargs[key]  # else transformers would take num_labels=None and fail on range(None)
    if "id2label" in kwargs:
        kwargs["id2label"] = _as_id2label(kwargs["id2label"])
    if kwargs.get("id2label") is None and isinstance(kwargs.get("label2id"), dict):
        # label2id alone names the classes too: id2label is its inverse (transformers' ViTConfig would
        # drop it silently and keep two classes named LABEL_i; here the two maps always agree).
        kwargs["id2label"] = {_class_id(i, "label2id"): _class_name(name) for name, i in kwargs["label2id"].items()}
    id2label = kwargs.get("id2label")
    num_labels = kwargs.get("num_labels")
    _refuse_array_scalar("num_labels", num_labels)
    if num_labels is not None and (isinstance(num_labels, bool) or not isinstance(num_labels, int)):
        raise ValueError(f"HfViTConfig: `num_labels` must be a whole number of classes, got {num_labels!r}.")
    if id2label is not None and not isinstance(id2label, dict):
        raise ValueError(
            f"HfViTConfig: `id2label` must map class ids to names, e.g. {{0: 'cat', 1: 'dog'}}, got {id2label!r}."
        )
    _check_label2id_is_a_map(kwargs.get("label2id"))  # else transformers 5.24 would drop it without a word
    _check_label_count(num_labels, id2label)
    if id2label is None and num_labels is None:
        kwargs["id2label"] = dict(enumerate(CIFAR10_LABELS))
    if kwargs.get("id2label") is not None and kwargs.get("label2id") is None:
        kwargs["label2id"] = {name: int(i) for i, name in kwargs["id2label"].items()}
    elif isinstance(kwargs.get("id2label"), dict) and isinstance(kwargs.get("label2id"), dict):
        # Checked here, not left to validate_hf_vit: transformers sets id2label after label2id, and __setattr__ then
        # rebuilds label2id from it, so a label2id that disagreed would be dropped without a word.
        inverse = {name: i for i, name in kwargs["id2label"].items()}
        given = {_class_name(name): _class_id(i, "label2id") for name, i in kwargs["label2id"].items()}
        kwargs["label2id"] = given
        if inverse != given:
            raise ValueError(
                f"HfViTConfig: `label2id` {kwargs['label2id']!r} is not the inverse of `id2label` "
                f"{kwargs['id2label']!r}. Pass only `id2label` (label2id is then built from it)."
            )


def _pair(value):
    """`32` -> `(32, 32)`; `(32, 24)` stays as it is (the lesson's `pair`)."""
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value, value)


def _class_id(value, where: str) -> int:
    """A class id from id2label's keys or label2id's values: 3 or "3" (JSON keys are strings)."""
    try:
        if isinstance(value, bool) or int(value) != float(value):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"HfViTConfig: the class ids in `{where}` must be whole numbers 0, 1, ..., got {value!r}.") from None


def _as_id2label(value):
    """id2label as the config keeps it: a list ["cat", "dog"] numbered {0: "cat", 1: "dog"}, keys 0 or "0"
    (config.json's keys are strings) as ints, names as text; anything else as it is, for the checks to refuse."""
    if isinstance(value, (list, tuple)):
        value = dict(enumerate(value))
    if isinstance(value, dict):
        value = {_class_id(i, "id2label"): _class_name(name) for i, name in value.items()}
    return value


def _class_name(name):
    """A class name as text. A dataset card's unquoted YAML names `no`/`yes` or `10` arrive from datasets as
    False/True or 10; kept as such, config.json would write `false` for a name and `"false"` for its label2id key,
    and the folder could not be loaded again."""
    return str(name) if isinstance(name, (bool, int, float)) else name


def _patch_sizes_for(height, width):
    """The patch sizes that cut a height x width image into a whole grid, as advice in an error.

    The common divisors are found by trial up to a bound (with their cofactors), not over the whole side: an
    image_size of 10**12 made the error itself loop for hours."""
    common = math.gcd(height, width)
    small = [p for p in range(2, min(math.isqrt(common), 1024) + 1) if common % p == 0]
    sizes = sorted({*small, *(common // p for p in small), *([common] if common > 1 else [])})[:4]
    if sizes:
        return "e.g. " + ", ".join(map(str, sizes))
    return "only 1 divides both sides; resize or pad the images to a size such as 32"


def _refuse_array_scalar(name, value):
    """Refuse a NumPy or torch number (np.int64(64) from a sweep, a 0-d tensor) as such: the range check would say
    "must be a positive integer" of 64, and config.json cannot store either kind."""
    if isinstance(value, (bool, int, float, str)) or not hasattr(value, "item") or getattr(value, "ndim", None) != 0:
        return
    plain = type(value.item()).__name__
    raise ValueError(
        f"HfViTConfig: `{name}` must be a plain Python {plain}, got {value!r}, a NumPy or torch number "
        f"(config.json cannot store one). Pass {name}={plain}(value)."
    )


def _type_name(obj) -> str:
    """The class of `obj` as messages name it: `transformers ViTConfig` for one of transformers' own, else its name."""
    kind = type(obj)
    return f"transformers {kind.__name__}" if kind.__module__.startswith("transformers.") else kind.__name__


# The lesson's size fields, names transformers' configs do not use: what marks a cfg object (or dict) as the lesson's.
LESSON_SIZE_FIELDS = ("dim", "depth", "heads", "dim_head", "mlp_dim")


def _refuse_a_whole_cfg(first) -> None:
    """The lesson's cfg object (or a dict of its fields) passed whole, as the lesson's `ViT(cfg)` takes it: it would
    land in image_size, and the error would call it a bad image size."""
    if isinstance(first, PretrainedConfig):  # a dataclass too: asdict would hand over another model's fields
        if hasattr(first, "validate_hf_vit"):
            raise TypeError(
                "HfViTConfig got an HfViTConfig object as its first argument (image_size): it is one already. Use it "
                "as it is (copy.deepcopy(config) for a copy to edit)."
            )
        raise TypeError(
            f"HfViTConfig takes the lesson's fields as keywords, got a {_type_name(first)} object as "
            "its first argument (image_size), another model's configuration. Give its shape as keywords: "
            "HfViTConfig(image_size=cfg.image_size, patch_size=cfg.patch_size, num_channels=cfg.num_channels, "
            "dim=cfg.hidden_size, depth=cfg.num_hidden_layers, heads=cfg.num_attention_heads, "
            "dim_head=cfg.hidden_size // cfg.num_attention_heads, mlp_dim=cfg.intermediate_size, id2label=cfg.id2label)."
        )
    # Only a cfg carrying the lesson's own size names is the lesson's: another dataclass or dict (TrainingArguments,
    # a dataset's settings) passed through **asdict would build a default model with its fields stored as junk.
    if isinstance(first, Mapping):
        fix, names = "HfViTConfig(**cfg)", first.keys()
    elif dataclasses.is_dataclass(first) and not isinstance(first, type):
        fix, names = "HfViTConfig(**dataclasses.asdict(cfg))", [field.name for field in dataclasses.fields(first)]
    elif hasattr(first, "dim") and hasattr(first, "depth"):  # both: a tensor has .dim alone
        fix, names = "HfViTConfig(**vars(cfg))", LESSON_SIZE_FIELDS
    else:
        return
    if not set(LESSON_SIZE_FIELDS) & set(names):
        raise TypeError(
            f"HfViTConfig: image_size (the first argument) takes an int or (height, width), got a {_type_name(first)} "
            f"object, which has none of the lesson's fields ({', '.join(LESSON_SIZE_FIELDS)}). The config takes its "
            "fields as keywords, e.g. HfViTConfig(image_size=32, patch_size=4, dim=192, depth=6, heads=3, "
            "dim_head=64, mlp_dim=768)."
        )
    raise TypeError(
        f"HfViTConfig takes the lesson's fields as keywords, got a {type(first).__name__} object as its first argument "
        f"(image_size). Pass its fields: {fix}, adding id2label=<the dataset's class names> to name the classes "
        "(num_classes alone names them LABEL_0, LABEL_1, ...)."
    )


# The other names of the lesson's size fields: attribute_map's, less the two dropout names (`_one_dropout`'s).
FIELD_ALIASES = {alias: field for alias, field in HfViTConfig.attribute_map.items() if field != "dropout"}
# The constructor's defaults of the lesson's size fields (a value equal to one may have been left out).
_PARAMETERS = inspect.signature(HfViTConfig.__init__).parameters
FIELD_DEFAULTS = {name: _PARAMETERS[name].default for name in FIELD_ALIASES.values()}
# The names `_misspelt` measures a key against: the lesson's fields, their other names, and the classes' settings.
OWN_NAMES = (*(p for p in _PARAMETERS if p not in ("self", "kwargs")), *HfViTConfig.attribute_map, "num_classes",
             "num_labels", "id2label", "label2id", "problem_type")  # fmt: skip
# transformers' own config keys (never a misspelling, whatever their spelling): its dataclass fields in 5.x.
_PRETRAINED_NAMES = frozenset(getattr(PretrainedConfig, "__dataclass_fields__", ()))


__all__ = ["HfViTConfig", "CIFAR10_LABELS", "CIFAR10_MEAN", "CIFAR10_STD"]
