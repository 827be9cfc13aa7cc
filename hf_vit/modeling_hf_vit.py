"""The lesson's Vision Transformer as a transformers model.

Read top to bottom, it is the lesson's network:

    image (B, C, H, W)
      -> patch embedding: Rearrange into N patches + Linear       (B, N, dim)
      -> prepend [CLS], add learned positions, dropout            (B, N+1, dim)
      -> depth x Pre-LN block:  x = x + MHSA(LN(x))
                                x = x + FFN(LN(x))                (B, N+1, dim)
      -> pool: the [CLS] token or the mean of all tokens          (B, dim)
      -> head: LayerNorm + Linear                                 (B, num_labels)

Module names inside a block follow the lesson (`to_qkv`, `to_out`, `net`),
so its weights map one to one (see `hf_vit.convert_lesson`).

This file is copied next to saved weights as remote code: it imports only
installed libraries and its sibling `configuration_hf_vit` (relative import).
"""

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from einops import rearrange, repeat
from einops.layers.torch import Rearrange
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .configuration_hf_vit import HfViTConfig, _pair, _type_name


# ---------------------------------------------------------------------------
# 1. Patch embedding, [CLS] token and positions
# ---------------------------------------------------------------------------
class HfViTEmbeddings(nn.Module):
    """Image -> patch tokens -> [CLS] + tokens + positions."""

    def __init__(self, config: HfViTConfig):
        super().__init__()
        (image_height, image_width), (patch_height, patch_width) = _pair(config.image_size), _pair(config.patch_size)
        self.image_size = (image_height, image_width)
        self.patch_size = (patch_height, patch_width)
        self.num_channels = config.num_channels
        num_patches = (image_height // patch_height) * (image_width // patch_width)
        patch_dim = config.num_channels * patch_height * patch_width

        # Cut the image into a grid of p1 x p2 patches, flatten each patch, project it to `dim`.
        self.to_patch_embedding = nn.Sequential(
            Rearrange("b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=patch_height, p2=patch_width),
            nn.Linear(patch_dim, config.dim),
        )
        # [CLS]: one learned token whose final state summarises the image.
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.dim))
        # Attention is order-blind: a learned vector per position tells tokens where they are.
        self.pos_embedding = nn.Parameter(torch.zeros(1, num_patches + 1, config.dim))
        self.dropout = nn.Dropout(config.emb_dropout)

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        _check_image_batch(pixel_values, self.num_channels)  # (B, C, H, W), else an error that says how to fix it
        pos_embedding = self.positions_for(*pixel_values.shape[-2:], interpolate_pos_encoding)  # (1, N+1, dim)

        x = self.to_patch_embedding(pixel_values)  # (B, N, dim)
        b, n, _ = x.shape
        cls_tokens = repeat(self.cls_token, "1 1 d -> b 1 d", b=b)  # (B, 1, dim)
        x = torch.cat((cls_tokens, x), dim=1)  # (B, N+1, dim)
        x = x + pos_embedding[:, : n + 1]  # (B, N+1, dim) + (1, N+1, dim), broadcast over B
        return self.dropout(x)

    def positions_for(self, height: int, width: int, interpolate_pos_encoding: bool) -> torch.Tensor:
        """The position embedding for a (height, width) image: the learned one, or resized to its patch grid."""
        if interpolate_pos_encoding:
            if height % self.patch_size[0] or width % self.patch_size[1]:
                raise ValueError(
                    f"Input image size {height}x{width} is not a multiple of the patch size {self.patch_size}; "
                    "resize the image so that the patches tile it."
                )
            return self.interpolate_pos_encoding(height, width)
        if (height, width) != self.image_size:
            raise ValueError(
                f"Input image size {height}x{width} does not match the model's {self.image_size[0]}x"
                f"{self.image_size[1]} (config.image_size). Resize the images (the image processor does), "
                "or pass interpolate_pos_encoding=True to interpolate the positional embedding."
            )
        return self.pos_embedding

    def interpolate_pos_encoding(self, height: int, width: int) -> torch.Tensor:
        """Resize the patch positions bicubically to a (height, width) image's grid."""
        grid_h, grid_w = self.image_size[0] // self.patch_size[0], self.image_size[1] // self.patch_size[1]
        new_h, new_w = height // self.patch_size[0], width // self.patch_size[1]
        # Eager only, asked first: in a trace, torch.export or torch.compile, comparing sizes ties the graph to them.
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()) and (new_h, new_w) == (grid_h, grid_w):
            return self.pos_embedding  # what resizing to the same grid gives, without the work
        patch_pos = rearrange(self.pos_embedding[:, 1:], "1 (h w) d -> 1 d h w", h=grid_h, w=grid_w)
        patch_pos = nn.functional.interpolate(patch_pos, size=(new_h, new_w), mode="bicubic", align_corners=False)
        patch_pos = rearrange(patch_pos, "1 d h w -> 1 (h w) d")
        return torch.cat((self.pos_embedding[:, :1], patch_pos), dim=1)  # [CLS]'s position stays as it is


# ---------------------------------------------------------------------------
# 2. Multi-head self-attention
# ---------------------------------------------------------------------------
def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
):
    """softmax(q k^T * scale) v, written out; returns the weights too."""
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling  # (B, heads, N+1, N+1)
    if attention_mask is not None:
        scores = scores + attention_mask
    # No fp32 upcast: bf16/fp16 softmax kernels accumulate in fp32. `.to`: CUDA autocast's softmax returns fp32.
    attn = scores.softmax(dim=-1).to(query.dtype)  # (B, heads, N+1, N+1), each row sums to 1
    attn = nn.functional.dropout(attn, p=dropout, training=module.training)
    out = torch.matmul(attn, value)  # (B, heads, N+1, dim_head)
    return out.transpose(1, 2).contiguous(), attn  # (B, N+1, heads, dim_head)


class HfViTAttention(nn.Module):
    """`heads` heads of width `dim_head`; one fused projection for q, k and v (no bias)."""

    def __init__(self, config: HfViTConfig):
        super().__init__()
        self.config = config
        self.heads = config.heads
        self.dim_head = config.dim_head
        self.scaling = config.dim_head**-0.5
        self.dropout = config.dropout
        self.is_causal = False  # every token sees every token
        inner_dim = config.heads * config.dim_head
        self.to_qkv = nn.Linear(config.dim, inner_dim * 3, bias=False)
        # As in the lesson: a single head as wide as `dim` needs no output projection.
        project_out = not (config.heads == 1 and config.dim_head == config.dim)
        self.to_out = (
            nn.Sequential(nn.Linear(inner_dim, config.dim), nn.Dropout(config.dropout))
            if project_out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor, output_attentions: bool = False):
        qkv = self.to_qkv(x).chunk(3, dim=-1)  # 3 x (B, N+1, heads*dim_head)
        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=self.heads) for t in qkv)  # (B, heads, N+1, dim_head)

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        if output_attentions or not x.shape[0]:
            # SDPA and flash kernels never materialise the weights, and transformers' SDPA fails on an empty batch.
            attention_interface = eager_attention_forward
        out, attn = _attend(
            attention_interface, self, q, k, v, scaling=self.scaling, dropout=self.dropout if self.training else 0.0
        )
        out = rearrange(out, "b n h d -> b n (h d)")  # (B, N+1, heads*dim_head)
        return self.to_out(out), (attn if output_attentions else None)  # weights die here unless asked for


# ---------------------------------------------------------------------------
# 3. Feed-forward network
# ---------------------------------------------------------------------------
class HfViTFeedForward(nn.Module):
    """Linear -> GELU -> Dropout -> Linear -> Dropout, applied to each token alone."""

    def __init__(self, config: HfViTConfig):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(config.dim, config.mlp_dim),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.mlp_dim, config.dim),
            nn.Dropout(config.dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, N+1, dim)


# ---------------------------------------------------------------------------
# 4. One Pre-LN encoder block
# ---------------------------------------------------------------------------
class HfViTLayer(GradientCheckpointingLayer):
    """x = x + MHSA(LN(x)); x = x + FFN(LN(x))  (the lesson's PreNorm + residual)."""

    def __init__(self, config: HfViTConfig):
        super().__init__()
        self.attn_norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        self.attn = HfViTAttention(config)
        self.ff_norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        self.ff = HfViTFeedForward(config)

    def forward(self, x: torch.Tensor, output_attentions: bool = False):
        attn_out, attn = self.attn(self.attn_norm(x), output_attentions=output_attentions)
        x = attn_out + x  # residual around attention     (B, N+1, dim)
        x = self.ff(self.ff_norm(x)) + x  # residual around the FFN  (B, N+1, dim)
        return x, attn


class HfViTEncoder(nn.Module):
    """`depth` blocks in a row (the lesson's `Transformer`)."""

    def __init__(self, config: HfViTConfig):
        super().__init__()
        # Checkpointing is switched on each HfViTLayer (a GradientCheckpointingLayer): no flag is needed here.
        self.layers = nn.ModuleList([HfViTLayer(config) for _ in range(config.depth)])

    def forward(self, x: torch.Tensor, output_attentions: bool = False, output_hidden_states: bool = False):
        all_hidden_states = (x,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layers:
            x, attn = layer(x, output_attentions=output_attentions)
            if output_hidden_states:
                all_hidden_states += (x,)
            if output_attentions:
                all_attentions += (attn,)
        return x, all_hidden_states, all_attentions


# ---------------------------------------------------------------------------
# 5. transformers plumbing: weight init, base model, classifier
# ---------------------------------------------------------------------------
# Written into every saved config, so that a folder saved from the classifier
# also loads with AutoModel (transformers only records the saved class's own).
AUTO_MAP = {
    "AutoConfig": "configuration_hf_vit.HfViTConfig",
    "AutoModel": "modeling_hf_vit.HfViTModel",
    "AutoModelForImageClassification": "modeling_hf_vit.HfViTForImageClassification",
}


class HfViTPreTrainedModel(PreTrainedModel):
    """What both models share: the config check, weight init, and what transformers reads off the class."""

    config_class = HfViTConfig
    config: HfViTConfig
    base_model_prefix = "vit"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["HfViTEmbeddings", "HfViTLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # get/set_input_embeddings find `embeddings.to_patch_embedding` (pixels -> patch tokens) by this name.
    _input_embed_layer = "to_patch_embedding"

    def __init__(self, config: HfViTConfig, *inputs, **kwargs):
        _check_config(self, config)  # again: a field may have been edited since the config was built
        super().__init__(config, *inputs, **kwargs)
        # Entries already present (e.g. "repo--module.Class" from the Hub) win.
        self.config.auto_map = {**AUTO_MAP, **(getattr(self.config, "auto_map", None) or {})}

    def save_pretrained(self, save_directory, *args, **kwargs):
        # Checked first: transformers copies the remote-code files into the folder before its own checks refuse the
        # config, so a refused save would leave a half-written folder (or spoil an earlier save there).
        self.config.check_before_save()
        if hasattr(self, "mlp_head"):  # a model with a head
            _check_head_fits_config(self, self.mlp_head[-1].out_features)
        before = _weights_files(save_directory)
        saved = super().save_pretrained(save_directory, *args, **kwargs)
        # safetensors 0.8 writes the weights 0600 whatever the umask: the files this save wrote get the umask's bits
        give_umask_modes(*(path for path, stamp in _weights_files(save_directory).items() if before.get(path) != stamp))
        return saved

    def resize_token_embeddings(self, *args, **kwargs):
        # transformers' method for a text model's vocabulary: here it would fail inside, on the patch embedding.
        raise NotImplementedError(
            f"{type(self).__name__} has no token embeddings to resize: a ViT reads image patches, not tokens of a "
            "vocabulary. For another number of classes, load with `from_pretrained(folder, num_labels=N, "
            "ignore_mismatched_sizes=True)`."
        )

    def _init_weights(self, module):
        # Linear and LayerNorm get transformers' defaults (normal(0, initializer_range), zero bias, unit scale).
        super()._init_weights(module)
        # Our own parameters need their init spelled out (transformers does not know them).
        if isinstance(module, HfViTEmbeddings):
            init.trunc_normal_(module.cls_token, mean=0.0, std=self.config.initializer_range)
            init.trunc_normal_(module.pos_embedding, mean=0.0, std=self.config.initializer_range)


class HfViTModel(HfViTPreTrainedModel):
    """The ViT without a head: token states and the pooled image vector."""

    def __init__(self, config: HfViTConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.add_pooling_layer = add_pooling_layer  # ViTModel's flag: False, no pooler_output (the pool has no weights)
        self.embeddings = HfViTEmbeddings(config)
        self.transformer = HfViTEncoder(config)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        interpolate_pos_encoding: bool = False,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling | tuple:
        _check_pixel_values(pixel_values)  # a float tensor, else an error that says how to prepare the images
        _refuse_masked_patches(kwargs)
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict

        # The [CLS] token gives the model's dtype: a plain parameter, whatever quantisation did to the layers.
        expected_dtype = self.embeddings.cls_token.dtype
        x = self.embeddings(pixel_values.to(expected_dtype), interpolate_pos_encoding)  # (B, N+1, dim)
        x, hidden_states, attentions = self.transformer(
            x, output_attentions=output_attentions, output_hidden_states=output_hidden_states
        )  # (B, N+1, dim)
        # Read at each call: config.pool has no weights, so an edit takes effect as it would after save and reload.
        if self.config.pool not in ("cls", "mean"):  # an edit to another value: refused as a save would refuse it
            self.config.validate_hf_vit()
        pooled = x[:, 0] if self.config.pool == "cls" else x.mean(dim=1)  # (B, dim)
        pooled = pooled if self.add_pooling_layer else None  # as ViTModel(config, add_pooling_layer=False) gives

        if not return_dict:
            return tuple(v for v in (x, pooled, hidden_states, attentions) if v is not None)
        return BaseModelOutputWithPooling(
            last_hidden_state=x, pooler_output=pooled, hidden_states=hidden_states, attentions=attentions
        )


class HfViTForImageClassification(HfViTPreTrainedModel):
    """HfViTModel + the lesson's `mlp_head` (LayerNorm + Linear) on the pooled vector."""

    def __init__(self, config: HfViTConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.vit = HfViTModel(config)
        self.mlp_head = nn.Sequential(
            nn.LayerNorm(config.dim, eps=config.layer_norm_eps),
            nn.Linear(config.dim, config.num_labels),
        )
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        interpolate_pos_encoding: bool = False,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ImageClassifierOutput | tuple:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        _refuse_hf_vit_trainer_batches(pixel_values, kwargs)  # before any compute
        _refuse_masked_patches(kwargs)
        _check_head_fits_config(self, self.mlp_head[-1].out_features)  # classes edited on the config: no new head
        outputs = self.vit(
            pixel_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            interpolate_pos_encoding=interpolate_pos_encoding,
            return_dict=True,
        )
        logits = self.mlp_head(outputs.pooler_output)  # (B, num_labels)

        loss = None
        if labels is not None:
            if torch.compiler.is_compiling() and _are_class_ids(labels, self.config):  # the eager check below
                labels = _labels_checked_in_the_graph(labels, self.config.num_labels)  # reads ids in Python: a break
            try:
                loss = self.loss_function(labels, logits, self.config, **kwargs)
            except IndexError as err:  # a class id outside the head (cross-entropy on a CPU; a GPU asserts)
                error = _labels_outside_the_head_error(labels, self.config.num_labels)
                if error is None:  # every id fits the head: the IndexError is not the labels', keep its own words
                    raise
                raise error from err

        if not return_dict:
            output = tuple(v for v in (logits, outputs.hidden_states, outputs.attentions) if v is not None)
            return ((loss,) + output) if loss is not None else output
        return ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


# ---------------------------------------------------------------------------
# 6. Checks and errors: each refusal names the problem and the fix, kept here out of the model's way
# ---------------------------------------------------------------------------
def _attend(attention_interface, module, query, key, value, **kwargs):
    """The attention kernel's call. PyTorch refuses flex attention's CPU backward with "set the input requires_grad
    to False", which a model user cannot follow (the inputs are the projected q, k, v): said in their terms."""
    try:
        return attention_interface(module, query, key, value, None, **kwargs)
    except NotImplementedError as err:
        if module.config._attn_implementation != "flex_attention" or query.device.type != "cpu":
            raise
        raise NotImplementedError(
            "attn_implementation='flex_attention' has no backward pass on a CPU (PyTorch's flex attention only runs "
            "inference there), and this call tracks gradients. For inference, call the model under torch.no_grad() "
            "(or torch.inference_mode()); to train or take gradients on a CPU, switch the kernel: "
            "model.set_attn_implementation('sdpa')."
        ) from err


def _refuse_hf_vit_trainer_batches(pixel_values, kwargs) -> None:
    """Batches of hf_vit's collator that only HfViTTrainer reads right: mixed, or left raw for the device."""
    _refuse_mixed_batches(kwargs)
    _refuse_on_device_batches(pixel_values, kwargs)


def _refuse_mixed_batches(kwargs) -> None:
    """A Mixup/CutMix batch (hf_vit's collator) in a Trainer that is not hf_vit's: the loss would silently drop the
    partner labels and train on mixed images as if each were its first label alone."""
    if "labels_b" in kwargs or "mix_lam" in kwargs:
        raise ValueError(
            "the batch is mixed (Mixup/CutMix: labels_b and mix_lam, made by hf_vit's BatchCollator), but the model's loss "
            "takes one label per image and would ignore the second. Train with hf_vit.training.HfViTTrainer, which "
            "mixes the loss, or turn mixing off (AugmentConfig(mixup_alpha=0, cutmix_alpha=0))."
        )


def _refuse_on_device_batches(pixel_values, kwargs) -> None:
    """hf_vit's collator with augment_on_device=True passes raw uint8 images and an aug_seed for HfViTTrainer to
    augment on the device: in another Trainer the image processor's advice (the raw-pixels error) does not apply."""
    if "aug_seed" in kwargs and isinstance(pixel_values, torch.Tensor) and not pixel_values.is_floating_point():
        raise ValueError(
            f"pixel_values are raw {pixel_values.dtype} images with an aug_seed: a training batch of hf_vit's "
            "collator made by prepare_data(augment_on_device=True), which leaves augmenting and normalising to the "
            "training step. Train with hf_vit.training.HfViTTrainer, which does that on the device, or prepare the "
            "data with augment_on_device=False (the collator then augments on the CPU)."
        )


def _refuse_masked_patches(kwargs) -> None:
    """ViT's bool_masked_pos (masked image modeling) puts a learned mask token in place of the chosen patches; hf_vit
    has no mask token, and the argument was taken silently with every patch left as it was."""
    if kwargs.get("bool_masked_pos") is not None:
        raise ValueError(
            "bool_masked_pos (ViT's patch masking for masked image modeling) is not supported: hf_vit's model has no "
            "mask token to put in place of a patch. Mask the images themselves, or use transformers' "
            "ViTForMaskedImageModeling for masked image modeling."
        )


def _labels_outside_the_head_error(labels, num_labels: int) -> Exception | None:
    """The usual cause: a dataset of other classes trained with the default config (CIFAR-10's 10 classes). None
    when every id fits the head (e.g. all are -100), so the caller keeps the original error."""
    found = labels[labels != -100]  # -100: the loss's "skip this image"
    if found.numel() == 0 or (int(found.min()) >= 0 and int(found.max()) < num_labels):
        return None
    if int(found.min()) < 0:  # e.g. -1, how datasets mark an unlabelled (test) split: no class config fits it
        return ValueError(
            f"labels hold {int((found < 0).sum())} negative class ids (e.g. {int(found.min())}), but a negative id is "
            f"not a class (the model's are 0..{num_labels - 1}) and only -100 skips an image; -1 usually marks an "
            "unlabelled split. Drop those rows (e.g. `ds.filter(lambda row: row['label'] >= 0)`) or set their label "
            "to -100."
        )
    return ValueError(
        f"labels hold class ids from {int(found.min())} to {int(found.max())}, but the model has {num_labels} classes "
        f"(ids 0..{num_labels - 1}; -100 skips an image). {_CLASSES_FIX}."
    )


def _check_head_fits_config(model, outputs: int) -> None:
    """Refuse a head whose `outputs` are not the config's classes: `model.config.id2label = {...}` (or num_labels)
    with another count after the model was built keeps the old head, and the loss then failed on a reshape ("shape
    '[-1, 3]' is invalid"), pipeline() with a KeyError, and a save wrote a folder that from_pretrained refuses."""
    if outputs == model.config.num_labels:
        return
    raise ValueError(
        f"config.num_labels is {model.config.num_labels} (config.id2label), but the classification head (mlp_head) has "
        f"{outputs} outputs: the config's classes were changed after the model was built, which gives it no new "
        f"head. For {model.config.num_labels} classes, load the model with from_pretrained(folder, "
        "id2label=..., label2id=..., ignore_mismatched_sizes=True) (a new head), or build it with "
        f"HfViTConfig(..., id2label=...); to rename the {outputs} classes, give id2label {outputs} names."
    )


def _check_pixel_values(pixel_values) -> None:
    """Refuse pixel_values that are missing, not a tensor, or raw integer pixels, saying how to prepare them."""
    if not isinstance(pixel_values, torch.Tensor):  # None, or a processor's lists (no return_tensors="pt")
        raise _not_a_tensor_error(pixel_values)
    if not pixel_values.is_floating_point():  # raw 0..255 pixels would pass through unnormalised
        raise ValueError(
            f"pixel_values are {pixel_values.dtype} (raw pixels?); the model takes normalised floats. Prepare "
            "the images with the image processor: `hf_vit.make_image_processor(config)` or AutoImageProcessor."
        )


_CLASSES_FIX = (
    "Build the config with the dataset's classes, e.g. HfViTConfig(..., id2label=dataset.features['label'].names), "
    "or load a trained model with from_pretrained(folder, num_labels=N, ignore_mismatched_sizes=True)"
)


def _are_class_ids(labels: torch.Tensor, config) -> bool:
    """Whether the loss reads `labels` as class ids (cross-entropy), as transformers' loss picks it: a regression's or
    multi-label head's float targets (2.5, or 1.0 for a one-class head) are no class ids and are left as they are."""
    if config.problem_type is not None:
        return config.problem_type == "single_label_classification"
    return config.num_labels > 1 and labels.dtype in (torch.long, torch.int)


def _labels_checked_in_the_graph(labels: torch.Tensor, num_labels: int) -> torch.Tensor:
    """The labels check under torch.compile or torch.export, where the compiled cross-entropy failed first with
    "index out of bounds" (IndexError "Target 10 is out of bounds" under aot_eager): an assert inside the graph (no
    graph break under fullgraph=True) says it in the model's words, though without the ids (a graph cannot put
    tensor values into a message). The ids it refuses are masked, so that no kernel indexes with them before it."""
    inside = ((labels >= 0) & (labels < num_labels)) | (labels == -100)
    torch._assert_async(inside.all(), (
        f"labels hold a class id outside the model's {num_labels} classes (ids 0..{num_labels - 1}; -100 skips an "
        f"image; -1 usually marks an unlabelled split: drop those rows). {_CLASSES_FIX}. A compiled model cannot name "
        "the ids: call the model uncompiled to see them."))  # fmt: skip
    return torch.where(inside, labels, -100)


def _not_a_tensor_error(pixel_values) -> Exception:
    """The error for pixel_values that are missing or not a tensor, raised before any tensor attribute is read."""
    if pixel_values is None:
        return ValueError("You have to specify pixel_values (a float tensor of shape (batch, channels, H, W)).")
    kind = type(pixel_values)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
    if isinstance(pixel_values, Mapping) and "pixel_values" in pixel_values:  # model(processor(...)), not model(**...)
        return TypeError(
            f"pixel_values must be a torch.Tensor, got the image processor's whole output (a {name}). Pass its "
            "fields as keyword arguments: `model(**inputs)`, or `model(pixel_values=inputs['pixel_values'])`."
        )
    return TypeError(
        f"pixel_values must be a torch.Tensor of shape (batch, channels, height, width), got a {name}. Ask the "
        "image processor for tensors: `processor(images, return_tensors='pt')`, or convert the array with "
        "`torch.as_tensor(...)`."
    )


def _check_config(model, config) -> None:
    """Refuse what is not an HfViTConfig (the lesson's cfg dataclass, as its `ViT(cfg)` takes one; transformers'
    ViTConfig), saying how to build one, then check the fields. By its method, not isinstance: remote code may load
    the config class from another copy of its module."""
    if not hasattr(config, "validate_hf_vit"):
        raise TypeError(
            f"{type(model).__name__} takes an HfViTConfig, got a {_type_name(config)}. Build one from the lesson's "
            f"fields: {type(model).__name__}(HfViTConfig(**dataclasses.asdict(cfg))) for the lesson's cfg dataclass, or "
            "HfViTConfig(dim=..., depth=..., heads=..., dim_head=..., mlp_dim=...)."
        )
    config.validate_hf_vit()


def _check_image_batch(pixel_values: torch.Tensor, num_channels: int) -> None:
    """Refuse what is not a (batch, channels, height, width) batch of the model's channels, saying how to fix it."""
    if pixel_values.ndim != 4:
        raise ValueError(
            f"pixel_values must have shape (batch, channels, height, width), got {tuple(pixel_values.shape)}. "
            + _missing_dimension_hint(tuple(pixel_values.shape), num_channels)
        )
    _, channels, _, width = pixel_values.shape
    if channels != num_channels and width == num_channels:  # (B, H, W, C), as np.array(image) gives
        raise ValueError(
            f"pixel_values of shape {tuple(pixel_values.shape)} look channels-last (batch, height, width, "
            "channels); the model takes (batch, channels, height, width). Use `pixel_values.permute(0, 3, 1, 2)`, "
            "or let the image processor prepare the images."
        )
    if channels != num_channels:
        raise ValueError(
            f"pixel_values has {channels} channels but the model was built for {num_channels} "
            f"(config.num_channels). Convert the images (e.g. {_convert_hint(num_channels)}) or build "
            f"the model with num_channels={channels}."
        )


def _missing_dimension_hint(shape, num_channels) -> str:
    """How to add the missing dimension of a 3-d input. A 1-channel model's single image has 1 channel, so
    (8, 32, 32) is a batch of grey images without their channel dimension, not an image to batch."""
    if len(shape) == 3 and num_channels == 1 and shape[0] != 1:
        return "For a batch of single-channel images, add the channel dimension with `pixel_values.unsqueeze(1)`."
    return "Add a batch dimension with `pixel_values.unsqueeze(0)` for a single image."


def _convert_hint(num_channels) -> str:
    """The PIL conversion that gives images the model's channels (a 1-channel model takes grey images)."""
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}.get(num_channels)
    return f"`image.convert('{mode}')`" if mode else f"to {num_channels} channels"


# ---------------------------------------------------------------------------
# 7. Saved files' permission bits (here because save_pretrained needs them in remote code, where hf_vit may be absent)
# ---------------------------------------------------------------------------
def _weights_files(folder) -> dict:
    """The .safetensors files in `folder`, each with its inode and time, which a save that writes it anew changes."""
    try:
        entries = list(os.scandir(folder))
    except OSError:  # not there yet (save_pretrained makes it), or a file
        return {}
    found = (e for e in entries if e.name.endswith(".safetensors") and e.is_file(follow_symlinks=False))
    return {Path(e.path): (stat.st_ino, stat.st_mtime_ns) for e in found for stat in (e.stat(follow_symlinks=False),)}


def current_umask() -> int:
    """The process's umask, left as it is: read from /proc (Linux 4.7+). Elsewhere it can only be read by setting
    it and back, and a file another thread creates in between would get the stand-in (0o022, the usual one)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def give_umask_modes(*paths) -> None:
    """Give each of `paths` (a folder with all it holds) the permission bits the umask gives a new file (0o666 & ~umask)
    or folder (0o777 & ~umask): a lab-mate, or a container's other user, reads the model where the umask lets them, and
    a umask of 077 keeps it private. safetensors 0.8 writes every weights file 0600 whatever the umask: it renames a
    temporary file into place (safetensors issue #782, PR #789 open; sentence-transformers #4010). No-op on Windows."""
    if os.name == "nt":
        return
    umask = current_umask()
    for top in map(Path, paths):
        for path in [top, *top.rglob("*")] if top.is_dir() and not top.is_symlink() else [top]:
            if path.is_symlink() or not path.exists():  # a link's own bits mean nothing; chmod would change its target
                continue
            try:
                os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)
            except OSError:  # another user's file (a shared folder): only its owner may change its bits
                pass


__all__ = ["HfViTPreTrainedModel", "HfViTModel", "HfViTForImageClassification"]
