"""Import weights saved from the lesson's `ViT` module (its `state_dict()`).

The lesson's keys (vit-pytorch helpers of its era) and ours differ only in
where the Pre-LN and the sub-layer sit inside a block:

    lesson                                   hf_vit
    to_patch_embedding.1.*                   vit.embeddings.to_patch_embedding.1.*
    cls_token / pos_embedding                vit.embeddings.cls_token / pos_embedding
    transformer.layers.i.0.norm.*            vit.transformer.layers.i.attn_norm.*
    transformer.layers.i.0.fn.<rest>         vit.transformer.layers.i.attn.<rest>   (to_qkv, to_out.0)
    transformer.layers.i.1.norm.*            vit.transformer.layers.i.ff_norm.*
    transformer.layers.i.1.fn.<rest>         vit.transformer.layers.i.ff.<rest>     (net.0, net.3)
    mlp_head.*                               mlp_head.*
"""

import logging
import re

import torch

logger = logging.getLogger(__name__)

# The lesson's block part (PreNorm i.0 around Attention, i.1 around FeedForward) and hf_vit's module for it.
_BLOCK_PARTS = (("0.norm", "attn_norm"), ("0.fn", "attn"), ("1.norm", "ff_norm"), ("1.fn", "ff"))
_RULES = [
    (re.compile(r"^to_patch_embedding\.(.*)$"), r"vit.embeddings.to_patch_embedding.\1"),
    (re.compile(r"^(cls_token|pos_embedding)$"), r"vit.embeddings.\1"),
    *((re.compile(rf"^transformer\.layers\.(\d+)\.{re.escape(ours)}\.(.*)$"), rf"vit.transformer.layers.\1.{hf}.\2")
      for ours, hf in _BLOCK_PARTS),
    (re.compile(r"^(mlp_head\..*)$"), r"\1"),
]
# hf_vit's names back to the lesson's: a refusal names the keys as the lesson's file has them (beside its
# unexpected keys, which match no rule), not as hf_vit does.
_LESSON_NAMES = [
    (re.compile(r"^vit\.embeddings\.(to_patch_embedding\..*|cls_token|pos_embedding)$"), r"\1"),
    *((re.compile(rf"^vit\.transformer\.layers\.(\d+)\.{hf}\.(.*)$"), rf"transformer.layers.\1.{ours}.\2")
      for ours, hf in _BLOCK_PARTS),
]

def lesson_name(key: str) -> str:
    """The lesson's name of an hf_vit parameter (`vit.transformer.layers.0.attn.to_qkv.weight` ->
    `transformer.layers.0.0.fn.to_qkv.weight`); a key of neither naming as it is."""
    for pattern, replacement in _LESSON_NAMES:
        if pattern.match(key):
            return pattern.sub(replacement, key)
    return key


# Wrappers that prefix every key, in either order: DDP / DataParallel / AveragedModel ("module.") and torch.compile
# ("_orig_mod.").
_WRAPPER_PREFIX = re.compile(r"^(?:module\.|_orig_mod\.)+")


# A name for an averaged copy of the model: model_ema, ema, state_dict_ema, swa_model, averaged.
AVERAGED = re.compile(r"(?:^|[^a-z])(?:ema|swa|averaged|avg)(?:$|[^a-z])", re.IGNORECASE)


def _holder_prefixes(keys: set) -> list:
    """['net.'] when the lesson's ViT is an attribute of one's own module (`self.net = ViT(cfg)`; a Lightning module's
    `model.`): its own top-level names, cls_token beside pos_embedding and mlp_head, follow one prefix. hf_vit's keys
    (vit.embeddings.cls_token, mlp_head at the top) have none. Several where the module holds several ViTs (the model
    and its EMA copy), sorted; '' among them for a lesson ViT holding a copy of itself (`self.ema = ...`)."""
    return sorted(
        prefix for key in keys
        if (prefix := key.removesuffix("cls_token")) != key and (prefix == "" or prefix.endswith("."))
        and {prefix + "pos_embedding", prefix + "mlp_head.1.weight"} <= keys
    )


def one_model(state_dict: dict) -> tuple[dict, str | None]:
    """(the state dict, None), or where it holds several lesson models under their own prefixes (a module holding the
    model and its EMA copy: `model.` and `ema.module.`), the model's own alone (the one not named as an averaged copy)
    and a note naming what was left. Where none is plainly the model's own, a `ValueError` names them."""
    refuse_a_model(state_dict)
    names = {key: _WRAPPER_PREFIX.sub("", key) for key in state_dict}
    holders = _holder_prefixes(set(names.values()))
    if len(holders) < 2:
        return state_dict, None
    # The top-level one too: each holder's keys, stripped of its prefix, would fall on the same hf_vit names, the
    # last one read winning without a word.
    listed = " and ".join(repr(prefix) if prefix else "the top level" for prefix in holders)
    own = [prefix for prefix in holders if not AVERAGED.search(prefix)]
    if len(own) != 1:  # e.g. a student and a teacher
        raise ValueError(
            f"The state dict holds {len(holders)} lesson models, under {listed}: which one to import is not clear. "
            f"Save the one to import alone, e.g. {{k.removeprefix({holders[-1]!r}): v for k, v in sd.items() if "
            f"k.startswith({holders[-1]!r})}}, and import that."
        )
    left = [prefix for prefix in holders if prefix != own[0]]
    kept = {key: value for key, value in state_dict.items() if not names[key].startswith(tuple(left))}
    return kept, (f"The state dict holds {len(holders)} lesson models, under {listed}: imported the one "
                  f"{f'under {own[0]!r}' if own[0] else 'at the top level'}, the model's own, and left "
                  f"{' and '.join(map(repr, left))}.")


def refuse_a_model(weights) -> None:
    """The lesson's model object where its weights belong (its attributes are no name -> tensor pairs)."""
    if isinstance(weights, torch.nn.Module):
        raise TypeError(
            f"expected a state dict (name -> tensor), got the {type(weights).__name__} model itself: pass its weights, "
            "model.state_dict()."
        )


def convert_lesson_state_dict(state_dict: dict) -> dict:
    """Rename a lesson `ViT.state_dict()` to `HfViTForImageClassification` keys.

    Keys that match no rule are kept as they are, so that loading reports them
    as unexpected instead of dropping them silently.
    """
    return {key: state_dict[original] for key, (original, _) in _renamed(state_dict).items()}


def _renamed(state_dict: dict) -> dict:
    """hf_vit key -> (the state dict's key, the lesson's name: that key without its wrapper or holder prefix)."""
    refuse_a_model(state_dict)
    state_dict, _ = one_model(state_dict)  # the model's own of several (the import says which, once)
    # AveragedModel's step count (an EMA / SWA copy) is no weight.
    names = {key: _WRAPPER_PREFIX.sub("", key) for key in state_dict if key != "n_averaged"}
    holders = _holder_prefixes(set(names.values()))
    holder = holders[0] if holders else ""
    renamed = {}
    for original, name in names.items():
        key = name = name.removeprefix(holder)
        for pattern, replacement in _RULES:
            if pattern.match(key):
                key = pattern.sub(replacement, key)
                break
        if key in renamed:  # e.g. 'module.cls_token' beside 'cls_token': one would replace the other without a word
            raise ValueError(
                f"The state dict holds {renamed[key][0]!r} and {original!r}, two weights for the one parameter "
                f"{name!r}: it holds the weights of two models (or of one saved twice, wrapped and not). Pass the "
                "state dict of one model."
            )
        renamed[key] = (original, name)
    return renamed


def load_lesson_state_dict(model, state_dict: dict) -> None:
    """Load a lesson state dict into an `HfViTForImageClassification`, strictly.

    Raises `ValueError` listing the missing and unexpected keys (in the
    lesson's naming) and any shape mismatch, naming the config
    field to change.
    """
    state_dict, left = one_model(state_dict)
    if left:  # the import says it once, before it gets here with the one model
        logger.warning(left)
    renamed = _renamed(state_dict)
    converted = {key: state_dict[original] for key, (original, _) in renamed.items()}
    expected = model.state_dict()
    # Named as the lesson names them (its wrapper prefixes aside), as a file's key that matches no rule is: beside
    # it, a missing key in hf_vit's naming hid a difference of one `.fn.`.
    missing = sorted(map(lesson_name, set(expected) - set(converted)))
    unexpected = sorted(renamed[k][1] for k in set(converted) - set(expected))
    mismatched = [
        f"{lesson_name(k)}: checkpoint {tuple(converted[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(converted), key=lesson_name)
        if tuple(converted[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        if 2 * len(missing) > len(expected):  # most weights have no counterpart: another model's state dict
            lines = [
                f"The state dict does not fit this HfViT model: {len(missing)} of its {len(expected)} weights are "
                "missing, so it was probably not saved from the lesson's ViT (whose keys look like "
                f"'transformer.layers.0.0.fn.to_qkv.weight'; this one's: {', '.join(map(repr, list(state_dict)[:3]))}, "
                "...). Pass the file written by `torch.save(model.state_dict(), path)` of the lesson's model."
            ]
        else:
            lines = ["The state dict does not fit this HfViT model (is it the lesson's ViT with the same config?)."]
        if missing:
            lines.append(f"Missing keys ({len(missing)}): " + _listed(missing))
        if unexpected:
            lines.append(f"Unexpected keys ({len(unexpected)}): " + _listed(unexpected))
        if mismatched:
            lines.append(
                "Shape mismatches (set dim/depth/heads/dim_head/mlp_dim/patch_size/image_size/channels/num_classes "
                "to the lesson's values): " + "; ".join(mismatched)
            )
        raise ValueError("\n".join(lines))
    with torch.no_grad():
        model.load_state_dict(converted, strict=True)


def _listed(keys: list, limit: int = 12) -> str:
    """At most `limit` keys: a whole model's 100 names on one line hide the message's point."""
    return ", ".join(keys[:limit]) + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def non_finite_summary(state_dict: dict) -> str:
    """'' when every weight is finite, else the tensors holding NaN or an infinity, named (a training that diverged:
    the model scores every image NaN, and a check of its logits compares NaN with NaN, which no tolerance refuses)."""
    bad = sorted(k for k, v in state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all())
    if not bad:
        return ""
    return f"{len(bad)} tensor{'s' if len(bad) > 1 else ''}: {', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''}"
