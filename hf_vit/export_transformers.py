"""Export an hf_vit model to transformers' built-in `ViTForImageClassification`.

The lesson's ViT and transformers' ViT are the same network when the model
pools the [CLS] token and `heads * dim_head == dim`; only the parameter layout
differs:

    hf_vit                                          transformers ViT
    embeddings.to_patch_embedding.1 (Linear over    embeddings.patch_embeddings.projection
      a patch flattened as (p1 p2 c))                 (Conv2d, weight (dim, c, p1, p2))
    embeddings.cls_token / pos_embedding            embeddings.cls_token / position_embeddings
    transformer.layers.i.attn_norm                  layers.i.layernorm_before
    transformer.layers.i.attn.to_qkv (one matrix)   layers.i.attention.{q,k,v}_proj (qkv_bias=False)
    transformer.layers.i.attn.to_out.0              layers.i.attention.o_proj (identity if to_out is Identity)
    transformer.layers.i.ff_norm                    layers.i.layernorm_after
    transformer.layers.i.ff.net.0 / net.3           layers.i.mlp.fc1 / fc2
    mlp_head.0 (LayerNorm on the [CLS] vector)      vit.layernorm (LayerNorm on every token)
    mlp_head.1                                      classifier

The head's LayerNorm moves in front of the token selection: LayerNorm acts on
each token alone, so LN(x)[:, 0] == LN(x[:, 0]). A mean-pooled model has no such
equivalent (the mean of normalised tokens is not the normalised mean), and
transformers' ViT always classifies the [CLS] token.

A 1-channel (grey) model becomes a 3-channel ViT: pipeline() hands every image to
the processor as RGB, and a grey processor of transformers' own fails on it. The
grey conversion is linear, L = wR*R + wG*G + wB*B (PIL's "L" weights, which sum to
1), and so is the patch projection, so it folds into the projection's weight,
W_rgb[:, c] = w_c * W_grey; with mean [m]*3 and std [s]*3 the weighted normalised
channels are (L - m) / s, the grey model's input, up to PIL's rounding of L to 8 bits.

The exported folder loads with `AutoModelForImageClassification` and
`pipeline("image-classification")` without `trust_remote_code`.
"""

import json
import re
import shutil
from pathlib import Path

import torch
from transformers import ViTConfig, ViTForImageClassification

from .configuration_hf_vit import HfViTConfig, _pair
from .convert_lesson import non_finite_summary
from .data import setting
from .hub import BadRepoId, check_repo_id, check_weights, processor_against_config
from .image_processing import is_grey_processor
from .links import refuse_links_outside
from .modeling_hf_vit import HfViTForImageClassification
from .output_folder import check_output_folder, hold_folders, share_folder, staged_folder


# PIL's convert("L"), which training and hf_vit's grey processor use: L = (R*19595 + G*38470 + B*7471 + 2**15) >> 16
# (Pillow's Convert.c). Exactly PIL's weights, summing to exactly 1, so the folded mean and std stay the grey ones.
GREY_WEIGHTS = (19595 / 65536, 38470 / 65536, 7471 / 65536)


class NotExportable(ValueError):
    """The hf_vit model has no exact equivalent in transformers' ViT."""


def check_exportable(config: HfViTConfig) -> None:
    """Raise `NotExportable` saying why, when transformers' ViT cannot hold this model exactly."""
    if config.pool != "cls":
        raise NotExportable(
            f"Cannot export a model with pool={config.pool!r} to transformers' ViT: it averages all tokens before "
            "the head, while ViTForImageClassification always classifies the [CLS] token (and normalises every "
            "token first), so no ViT gives the same logits. Keep this model with its remote code "
            "(trust_remote_code=True), or train with pool='cls' to export."
        )
    inner = config.heads * config.dim_head
    if inner != config.dim:
        raise NotExportable(
            f"Cannot export: heads * dim_head = {config.heads} * {config.dim_head} = {inner} differs from dim = "
            f"{config.dim}. transformers' ViT gives each head hidden_size / num_attention_heads = "
            f"{config.dim // config.heads if config.dim % config.heads == 0 else config.dim / config.heads} "
            "features, so its q/k/v projections are dim x dim and this model's attention does not fit. "
            f"Keep this model with its remote code, or train with dim_head = dim / heads."
        )


def _plain_size(value):
    """A square size as one int (what every transformers version's ViTConfig takes), else [height, width]."""
    height, width = _pair(value)
    return height if height == width else [height, width]


def vit_config_from(config: HfViTConfig) -> ViTConfig:
    """The `ViTConfig` of the same network (call `check_exportable` first); a 1-channel model's takes RGB, the grey
    conversion folded into its patch projection (see `convert_state_dict`)."""
    id2label = {int(k): v for k, v in config.id2label.items()}
    return ViTConfig(
        hidden_size=config.dim,
        num_hidden_layers=config.depth,
        num_attention_heads=config.heads,
        intermediate_size=config.mlp_dim,
        hidden_act="gelu",  # ACT2FN["gelu"] is the exact erf GELU, as torch's nn.GELU()
        # ViT has one dropout rate for embeddings, sub-layer outputs and the MLP; emb_dropout folds into it.
        hidden_dropout_prob=config.dropout,
        attention_probs_dropout_prob=config.dropout,
        initializer_range=config.initializer_range,
        layer_norm_eps=config.layer_norm_eps,
        image_size=_plain_size(config.image_size),
        patch_size=_plain_size(config.patch_size),
        num_channels=3 if config.num_channels == 1 else config.num_channels,
        qkv_bias=False,  # to_qkv has no bias
        id2label=id2label,
        label2id={name: i for i, name in id2label.items()},
        # A multi-label or regression head: pipeline() picks sigmoid / none / softmax by it, and the loss with it.
        problem_type=config.problem_type,
        # said in config.json (the card reads it): the model sees its RGB input in grey
        **({"grey_conversion_in_patch_projection": True} if config.num_channels == 1 else {}),
    )


def convert_state_dict(model: HfViTForImageClassification) -> dict:
    """hf_vit parameters renamed and reshaped to `ViTForImageClassification` keys; a 1-channel model's patch
    projection takes RGB, weighted by PIL's grey conversion (`GREY_WEIGHTS`)."""
    config = model.config
    sd = model.state_dict()
    ph, pw = _pair(config.patch_size)
    dim, channels, inner = config.dim, config.num_channels, config.heads * config.dim_head
    out = {}

    # A patch enters the Linear flattened as (p1 p2 c) (einops "b c (h p1) (w p2) -> b (h w) (p1 p2 c)");
    # the Conv2d kernel is indexed [out, c, p1, p2].
    linear = sd["vit.embeddings.to_patch_embedding.1.weight"]  # (dim, p1*p2*c)
    out["vit.embeddings.patch_embeddings.projection.weight"] = (
        linear.reshape(dim, ph, pw, channels).permute(0, 3, 1, 2).contiguous()
    )  # (dim, c, p1, p2)
    if channels == 1:  # grey -> RGB: the projection of L = sum w_c * channel_c is sum w_c * (W_grey . channel_c)
        weights = torch.tensor(GREY_WEIGHTS, dtype=torch.float64).view(1, 3, 1, 1)
        grey = out["vit.embeddings.patch_embeddings.projection.weight"]
        out["vit.embeddings.patch_embeddings.projection.weight"] = (grey.double() * weights).to(grey.dtype)
    out["vit.embeddings.patch_embeddings.projection.bias"] = sd["vit.embeddings.to_patch_embedding.1.bias"]
    out["vit.embeddings.cls_token"] = sd["vit.embeddings.cls_token"]  # (1, 1, dim)
    out["vit.embeddings.position_embeddings"] = sd["vit.embeddings.pos_embedding"]  # (1, N+1, dim)

    for i in range(config.depth):
        src, dst = f"vit.transformer.layers.{i}.", f"vit.layers.{i}."
        q, k, v = sd[src + "attn.to_qkv.weight"].split(inner, dim=0)  # 3 x (heads*dim_head, dim), heads as (h d)
        out[dst + "attention.q_proj.weight"] = q
        out[dst + "attention.k_proj.weight"] = k
        out[dst + "attention.v_proj.weight"] = v
        if src + "attn.to_out.0.weight" in sd:
            out[dst + "attention.o_proj.weight"] = sd[src + "attn.to_out.0.weight"]
            out[dst + "attention.o_proj.bias"] = sd[src + "attn.to_out.0.bias"]
        else:  # one head as wide as dim: the lesson skips the output projection; ViT gets an identity one
            out[dst + "attention.o_proj.weight"] = torch.eye(dim, dtype=q.dtype)
            out[dst + "attention.o_proj.bias"] = torch.zeros(dim, dtype=q.dtype)
        for ours, theirs in (("attn_norm", "layernorm_before"), ("ff_norm", "layernorm_after"),
                             ("ff.net.0", "mlp.fc1"), ("ff.net.3", "mlp.fc2")):
            out[dst + theirs + ".weight"] = sd[src + ours + ".weight"]
            out[dst + theirs + ".bias"] = sd[src + ours + ".bias"]

    out["vit.layernorm.weight"] = sd["mlp_head.0.weight"]
    out["vit.layernorm.bias"] = sd["mlp_head.0.bias"]
    out["classifier.weight"] = sd["mlp_head.1.weight"]
    out["classifier.bias"] = sd["mlp_head.1.bias"]
    return out


# transformers' ViT before its 5.x renaming (and the names its save_pretrained still writes to disk):
# new name fragment -> old one. Used when the installed ViT has the old parameter names.
_LEGACY_NAMES = (
    (re.compile(r"^vit\.layers\.(\d+)\."), r"vit.encoder.layer.\1."),
    (re.compile(r"\.attention\.([qkv])_proj\."), None),
    (re.compile(r"\.attention\.o_proj\."), ".attention.output.dense."),
    (re.compile(r"\.mlp\.fc1\."), ".intermediate.dense."),
    (re.compile(r"\.mlp\.fc2\."), ".output.dense."),
)
_QKV_OLD = {"q": "query", "k": "key", "v": "value"}


def to_legacy_names(state_dict: dict) -> dict:
    """Rename transformers 5.x ViT keys to the 4.x layout (`encoder.layer.i.attention.attention.query`, ...)."""
    renamed = {}
    for key, value in state_dict.items():
        for pattern, replacement in _LEGACY_NAMES:
            if replacement is None:
                key = pattern.sub(lambda m: f".attention.attention.{_QKV_OLD[m.group(1)]}.", key)
            else:
                key = pattern.sub(replacement, key)
        renamed[key] = value
    return renamed


def convert_to_vit(model: HfViTForImageClassification) -> ViTForImageClassification:
    """A `ViTForImageClassification` computing the same logits as `model`."""
    check_exportable(model.config)
    vit = ViTForImageClassification(vit_config_from(model.config))
    converted = convert_state_dict(model)
    expected = vit.state_dict()
    if set(expected) != set(converted) and set(expected) == set(to_legacy_names(converted)):
        converted = to_legacy_names(converted)  # an older transformers: its ViT uses the 4.x names
    missing, unexpected = sorted(set(expected) - set(converted)), sorted(set(converted) - set(expected))
    if missing or unexpected:  # the installed transformers names its ViT parameters differently
        raise RuntimeError(
            "transformers' ViTForImageClassification has other parameter names than this exporter expects "
            f"(transformers version mismatch?). Missing: {missing}. Unexpected: {unexpected}."
        )
    vit.load_state_dict(converted, strict=True)
    return vit.to(next(model.parameters()).dtype).eval()


@torch.no_grad()
def max_logit_difference(model, vit, batch_size: int = 4, seed: int = 0) -> float:
    """Largest |logit difference| of the two models on random normalised images (for a grey model exported as RGB:
    the ViT's RGB images against the model's grey conversion of them)."""
    height, width = _pair(model.config.image_size)
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(batch_size, vit.config.num_channels, height, width, generator=generator)
    source = pixels
    if model.config.num_channels == 1 and vit.config.num_channels == 3:
        source = (pixels * torch.tensor(GREY_WEIGHTS).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return (model.eval()(pixel_values=source).logits - vit(pixel_values=pixels).logits).abs().max().item()


def _saved_dtype(config) -> torch.dtype:
    """The dtype the weights were saved in (config.json's `dtype`; float32 when it names none)."""
    name = str(getattr(config, "dtype", None) or "float32").removeprefix("torch.")
    dtype = getattr(torch, name, None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


# Files of the source folder that describe these same weights, copied beside the export.
_CARRIED_FILES = ("preprocessor_config.json", "metrics.json", "training_recipe.json", "evaluation/metrics.json")


def _copied_files(model_dir: Path) -> list[str]:
    """The files of `model_dir` the export copies as they are: the carried files and the evaluation's pictures."""
    carried = [name for name in _CARRIED_FILES if (model_dir / name).is_file()]
    pictures = sorted(p for p in (model_dir / "evaluation").glob("*.png") if p.is_file())
    return carried + [p.relative_to(model_dir).as_posix() for p in pictures]


def _rgb_processor(path: Path, config) -> None:
    """A 1-channel model's processor is hf_vit's grey one, remote code (auto_map) whose .py the export leaves
    behind: the export's is transformers' own ViTImageProcessor for RGB (pipeline()'s images), the grey mean and
    std for each channel, which the folded patch projection turns into the grey model's input."""
    if config.num_channels != 1:  # a 3-channel model's processor is transformers' own already, copied as it is
        return
    settings = json.loads(path.read_text(encoding="utf-8"))
    if is_grey_processor(settings):
        del settings["auto_map"]["AutoImageProcessor"]
        if not settings["auto_map"]:
            del settings["auto_map"]
    settings["image_processor_type"] = "ViTImageProcessor"
    for key in ("image_mean", "image_std"):  # one value (a list, or a number in an older file) for each of R, G, B
        value = settings.get(key)
        if isinstance(value, list) and len(value) == 1 or isinstance(value, (int, float)):
            settings[key] = (value if isinstance(value, list) else [value]) * 3
    settings["do_convert_rgb"] = True
    path.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n", encoding="utf-8")


_HOLDER = "an export to transformers' ViT"  # how a run refused meanwhile names it


def export_to_transformers_vit(model_dir, output_dir, *, repo_id=None, overwrite=False, atol=1e-4) -> Path:
    """Convert the hf_vit folder `model_dir` into a transformers ViT folder `output_dir`; returns it.

    Writes config.json + model.safetensors (transformers' ViT, no .py files),
    preprocessor_config.json, the source's metrics and evaluation pictures, and
    README.md (the card, marked as exported). The logits are compared before
    anything is written; a difference above `atol` is an error. The folder is
    written whole or not at all, and `overwrite` never deletes `model_dir`.
    """

    model_dir, output_dir = Path(model_dir).expanduser(), Path(output_dir).expanduser()  # "~" as a shell would
    if repo_id is not None:  # the card's usage example loads it: a web address or a typo would not load
        try:
            check_repo_id(repo_id)
        except BadRepoId as err:
            raise ValueError(f"{setting('repo_id', repo_id)} is not a repo id: {err.reason}") from None
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} has no config.json: pass an hf_vit model folder (what training wrote).")
    for name in ("config.json", "preprocessor_config.json"):  # named with the file, before anything is written
        if (model_dir / name).is_file():
            try:
                json.loads((model_dir / name).read_text(encoding="utf-8"))
            except ValueError as err:
                raise ValueError(f"{model_dir / name} is not valid JSON ({err}): save the model folder again.") from None
    weights_problem = check_weights(model_dir)
    if weights_problem:
        raise ValueError(f"{model_dir}: {weights_problem}")
    model_type = json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("model_type")
    if model_type != HfViTConfig.model_type:
        raise ValueError(f"{model_dir} holds a {model_type!r} model, not hf_vit: nothing to export.")
    config = HfViTConfig.from_pretrained(model_dir)
    check_exportable(config)  # before anything else: fail fast with the reason
    if not (model_dir / "preprocessor_config.json").is_file():
        raise FileNotFoundError(
            f"{model_dir} has no preprocessor_config.json, which the exported model needs for pipeline(). Save one "
            "with `hf_vit.make_image_processor(config).save_pretrained(model_dir)` and export again."
        )
    # The processor is copied as it is: one of another size would make every pipeline() call of the export fail.
    processor_problems = processor_against_config(model_dir / "preprocessor_config.json", config.to_dict())
    if processor_problems:
        raise ValueError(f"{model_dir}: {processor_problems[0]}")
    if output_dir.resolve() == model_dir.resolve():
        raise ValueError("output_dir must differ from model_dir: the export is a separate model folder.")
    refuse_links_outside(model_dir, _copied_files(model_dir), "the export would copy the file it points to")
    check_output_folder(output_dir, overwrite=overwrite, inputs=[model_dir], flag=setting("overwrite", True))
    # From the weights' read to the folder's swap: no training writes either folder meanwhile.
    with hold_folders(output_dir, _HOLDER, reads=[model_dir], flag="output_dir") as held:
        evaluation = model_dir / "evaluation"
        if evaluation.is_dir():  # its pictures and metrics are copied: an evaluation writing them deletes them first
            share_folder(held, evaluation, _HOLDER, lambda writer: (
                f"{str(evaluation)!r} is being written by {writer}: the export copies its pictures and metrics. Wait "
                "for it to finish, then export again."
            ))
        return _convert_and_write(model_dir, output_dir, config, repo_id=repo_id, overwrite=overwrite, atol=atol)


def _convert_and_write(model_dir: Path, output_dir: Path, config, *, repo_id, overwrite, atol) -> Path:
    """The export proper, once the inputs are checked: convert, compare the logits, write the folder."""
    from .card import write_model_card

    # Compared in float32 whatever the saved dtype: the conversion only moves weights, but two bf16 models with
    # different kernels differ by ~1e-2 in the logits, which would hide a real mistake or refuse a right export.
    saved_dtype = _saved_dtype(config)
    model, info = HfViTForImageClassification.from_pretrained(
        model_dir, output_loading_info=True, dtype=torch.float32
    )
    model.eval()
    if info["missing_keys"]:
        # A folder saved from HfViTModel (no head) would get a random head that the logit check cannot see.
        raise ValueError(
            f"{model_dir} lacks weights the classifier needs ({', '.join(sorted(info['missing_keys']))}): it is not a "
            "trained HfViTForImageClassification. Export the folder that training wrote."
        )
    bad = non_finite_summary(model.state_dict())
    if bad:
        raise ValueError(
            f"{model_dir}: the weights hold NaN or infinite values ({bad}): the model scores every image NaN, and no "
            "export can be checked against it. The training that wrote them diverged (e.g. an overflow in fp16): "
            "export a checkpoint saved before it did."
        )
    vit = convert_to_vit(model)
    diff = max_logit_difference(model, vit)
    if not diff <= atol:  # NaN too
        raise RuntimeError(f"The exported ViT differs from the hf_vit model by {diff:.2e} in the logits (> {atol}); not writing it.")

    with staged_folder(output_dir, overwrite=overwrite, inputs=[model_dir], flag=setting("overwrite", True)) as staged:
        vit.to(saved_dtype).save_pretrained(staged)  # float32 -> the saved dtype again: the same numbers
        for name in _copied_files(model_dir):
            (staged / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(model_dir / name, staged / name)
        _rgb_processor(staged / "preprocessor_config.json", config)
        write_model_card(staged, repo_id=repo_id)
    return output_dir


__all__ = [
    "GREY_WEIGHTS",
    "NotExportable",
    "check_exportable",
    "vit_config_from",
    "convert_state_dict",
    "convert_to_vit",
    "to_legacy_names",
    "max_logit_difference",
    "export_to_transformers_vit",
]
