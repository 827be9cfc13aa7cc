"""The model matches the lesson's maths; SDPA == eager; attentions, hidden states, checkpointing."""

import os
import stat

import numpy as np
import pytest
import torch
from datasets_cache import own_datasets_cache  # noqa: F401 (autouse: local loads list this module's cache only)
from lesson_vit import ViT, ViTConfig

from hf_vit import HfViTConfig, HfViTForImageClassification, HfViTModel
from hf_vit.convert_lesson import load_lesson_state_dict

# (image, patch, dim, depth, heads, dim_head, mlp_dim): heads * dim_head != dim in most rows.
SHAPES = [
    (32, 4, 64, 2, 4, 16, 128),  # heads*dim_head == dim
    (32, 8, 48, 3, 3, 24, 96),  # 72 != 48
    (24, 4, 32, 2, 2, 40, 64),  # 80 != 32, non-CIFAR image size
    (16, 4, 32, 1, 1, 32, 64),  # one head as wide as dim: no output projection (lesson's Identity)
]


def make_pair(shape, pool, seed=0):
    image, patch, dim, depth, heads, dim_head, mlp_dim = shape
    torch.manual_seed(seed)
    ref = ViT(
        ViTConfig(
            image_size=image, patch_size=patch, dim=dim, depth=depth, heads=heads,
            dim_head=dim_head, mlp_dim=mlp_dim, pool=pool, num_classes=10,
        )
    ).eval()
    config = HfViTConfig(
        image_size=image, patch_size=patch, dim=dim, depth=depth, heads=heads,
        dim_head=dim_head, mlp_dim=mlp_dim, pool=pool,
    )
    model = HfViTForImageClassification(config).eval()
    load_lesson_state_dict(model, ref.state_dict())
    return ref, model


@pytest.mark.parametrize("pool", ["cls", "mean"])
@pytest.mark.parametrize("shape", SHAPES)
def test_same_logits_as_lesson(shape, pool):
    ref, model = make_pair(shape, pool)
    x = torch.randn(5, 3, shape[0], shape[0])
    with torch.no_grad():
        expected = ref(x)
        got = model(pixel_values=x).logits
    assert got.shape == (5, 10)
    assert (got - expected).abs().max().item() <= 1e-5
    # The pools really differ: the comparison above would catch a swapped pool.
    if pool == "mean":
        ref.pool = "cls"
        assert (ref(x) - got).abs().max().item() > 1e-4


@pytest.mark.parametrize("shape", SHAPES[:3])
def test_sdpa_equals_eager(shape):
    _, sdpa = make_pair(shape, "cls")
    assert sdpa.config._attn_implementation == "sdpa"
    eager_model = HfViTForImageClassification(sdpa.config).eval()
    eager_model.load_state_dict(sdpa.state_dict())
    eager_model.set_attn_implementation("eager")
    assert eager_model.config._attn_implementation == "eager"
    x = torch.randn(4, 3, shape[0], shape[0])
    with torch.no_grad():
        diff = (sdpa(pixel_values=x).logits - eager_model(pixel_values=x).logits).abs().max().item()
    assert diff <= 1e-5


def test_flex_attention_equals_eager_and_on_a_cpu_with_gradients_says_to_use_no_grad_or_sdpa():
    _, model = make_pair(SHAPES[1], "cls")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(pixel_values=x).logits
        model.set_attn_implementation("flex_attention")
        assert (model(pixel_values=x).logits - expected).abs().max().item() <= 1e-5
    # PyTorch's flex attention has no backward pass on a CPU: a plain call (gradients on) failed with PyTorch's
    # "set the input requires_grad to False", advice a model user cannot follow (the input is the projected q/k/v).
    with pytest.raises(NotImplementedError) as err:
        model(pixel_values=x)
    assert "attn_implementation='flex_attention' has no backward pass on a CPU" in str(err.value)
    assert "torch.no_grad()" in str(err.value) and "model.set_attn_implementation('sdpa')" in str(err.value)


def test_output_attentions_and_hidden_states():
    shape = SHAPES[1]
    _, model = make_pair(shape, "cls")
    image, patch, dim, depth, heads = shape[:5]
    n = (image // patch) ** 2
    x = torch.randn(2, 3, image, image)
    with torch.no_grad():
        out = model(pixel_values=x, output_attentions=True, output_hidden_states=True)
        plain = model(pixel_values=x).logits
    assert len(out.attentions) == depth
    for attn in out.attentions:
        assert attn.shape == (2, heads, n + 1, n + 1)
        assert torch.allclose(attn.sum(-1), torch.ones(2, heads, n + 1), atol=1e-5)
        assert (attn >= 0).all()
    assert len(out.hidden_states) == depth + 1
    assert all(h.shape == (2, n + 1, dim) for h in out.hidden_states)
    # Asking for weights switches to the eager path but not the result.
    assert (out.logits - plain).abs().max().item() <= 1e-5
    # The model default (SDPA) returns no weights unless asked.
    assert model(pixel_values=x).attentions is None
    # Nor does the eager path: a block that kept its (B, heads, N+1, N+1) weights alive until the next
    # block ran cost ~7% of fp32 inference on CPU (the allocator could not reuse their memory).
    model.set_attn_implementation("eager")
    block = model.vit.transformer.layers[0]
    with torch.no_grad():
        tokens, weights = block(torch.randn(2, n + 1, dim))
        assert weights is None and tokens.shape == (2, n + 1, dim)
        assert block(torch.randn(2, n + 1, dim), output_attentions=True)[1].shape == (2, heads, n + 1, n + 1)
        assert model(pixel_values=x).attentions is None


def test_output_attentions_in_the_config_saves_and_loads_beside_sdpa(tmp_path):
    """An SDPA model serves attentions through its eager path, so a config that asks for them on every call saves
    and loads (before: save_pretrained raised transformers' StrictDataclassClassValidationError, so a Trainer's first
    save failed, and `model.config.output_attentions = True` was refused at once)."""
    tiny = dict(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64)
    model = HfViTForImageClassification(HfViTConfig(**tiny, output_attentions=True)).eval()
    assert model.config._attn_implementation == "sdpa"
    x = torch.randn(2, 3, 32, 32)
    model.save_pretrained(tmp_path / "a")
    with torch.no_grad():
        for kwargs in ({}, {"attn_implementation": "sdpa"}):
            reloaded = HfViTForImageClassification.from_pretrained(tmp_path / "a", **kwargs).eval()
            assert reloaded.config._attn_implementation == "sdpa" and reloaded.config.output_attentions
            out = reloaded(pixel_values=x)
            assert out.attentions[0].shape == (2, 2, 65, 65)
            assert torch.allclose(out.logits, model(pixel_values=x).logits, atol=1e-6)
        plain = HfViTForImageClassification(HfViTConfig(**tiny)).eval()
        plain.config.output_attentions = True
        assert plain.config._attn_implementation == "sdpa"
        assert plain(pixel_values=x).attentions[0].shape == (2, 2, 65, 65)
    plain.save_pretrained(tmp_path / "b")
    assert HfViTForImageClassification.from_pretrained(tmp_path / "b").config.output_attentions


def test_an_empty_batch_gives_empty_outputs():
    """A batch of no images gives the usual outputs with batch size 0, as a torch module does (before: RuntimeError:
    cannot reshape tensor of 0 elements ..., from inside transformers' SDPA)."""
    model = HfViTForImageClassification(HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64)).eval()
    assert model.config._attn_implementation == "sdpa"
    empty = torch.zeros(0, 3, 32, 32)
    with torch.no_grad():
        out = model(pixel_values=empty, output_hidden_states=True)
        assert out.logits.shape == (0, 10) and [h.shape for h in out.hidden_states] == [(0, 65, 32)] * 2
        assert model(pixel_values=empty, output_attentions=True).attentions[0].shape == (0, 2, 65, 65)
        base = model.vit(pixel_values=empty)
        assert base.last_hidden_state.shape == (0, 65, 32) and base.pooler_output.shape == (0, 32)


def test_return_dict_false_gives_the_outputs_fields_as_a_tuple():
    """transformers' convention: `return_dict=False` (or config.return_dict = False) returns the ModelOutput's fields
    that are not None, in its order (loss first, with labels), for the classifier and the base model."""
    model = HfViTForImageClassification(HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64)).eval()
    x, every = torch.randn(2, 3, 32, 32), {"output_attentions": True, "output_hidden_states": True}
    with torch.no_grad():
        for module, kwargs in ((model, {}), (model, {"labels": torch.tensor([0, 1]), **every}), (model.vit, every)):
            got, expected = module(pixel_values=x, return_dict=False, **kwargs), module(pixel_values=x, **kwargs)
            assert type(got) is tuple and len(got) == len(expected.to_tuple()) == len(expected.keys())
            torch.testing.assert_close(got, expected.to_tuple(), rtol=0, atol=0)
        model.config.return_dict = False  # as from_pretrained(folder, return_dict=False) sets it
        assert type(model(pixel_values=x)) is tuple and type(model.vit(pixel_values=x)) is tuple


def test_base_model_outputs():
    config = HfViTConfig(dim=32, depth=2, heads=2, dim_head=16, mlp_dim=64, pool="mean")
    model = HfViTModel(config).eval()
    x = torch.randn(3, 3, 32, 32)
    out = model(pixel_values=x)
    assert out.last_hidden_state.shape == (3, 65, 32)
    assert torch.allclose(out.pooler_output, out.last_hidden_state.mean(dim=1), atol=1e-6)


def test_add_pooling_layer_false_as_vit_model_takes_it_leaves_no_pooler_output(tmp_path):
    """`AutoModel.from_pretrained(folder, add_pooling_layer=False)`, ViTModel's flag for token features alone, failed
    with "HfViTModel.__init__() got an unexpected keyword argument 'add_pooling_layer'". Now taken as ViTModel takes
    it: no pooler_output (None, and left out of the tuple), the same token states; True is the default."""
    from transformers import AutoModel

    import hf_vit  # noqa: F401  (registers the Auto classes)

    HfViTForImageClassification(HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64)).save_pretrained(tmp_path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        pooled = AutoModel.from_pretrained(tmp_path, add_pooling_layer=True).eval()(pixel_values=x)
        bare = AutoModel.from_pretrained(tmp_path, add_pooling_layer=False).eval()
        out = bare(pixel_values=x)
        assert out.pooler_output is None and torch.equal(out.last_hidden_state, pooled.last_hidden_state)
        assert len(bare(pixel_values=x, return_dict=False)) == 1
    assert pooled.pooler_output.shape == (2, 32)


def test_vits_patch_mask_is_refused_not_ignored():
    """bool_masked_pos (ViT's masked image modeling input) was taken silently by both models, every patch kept: hf_vit
    has no mask token, so it is refused, naming what to use instead; None (not given) is fine."""
    model = HfViTForImageClassification(HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64))
    x, mask = torch.randn(2, 3, 32, 32), torch.zeros(2, 64, dtype=torch.bool)
    for module in (model, model.vit):
        with pytest.raises(ValueError, match=r"^bool_masked_pos .* is not supported: hf_vit's model has no mask token"):
            module(pixel_values=x, bool_masked_pos=mask)
        module(pixel_values=x, bool_masked_pos=None)


def test_a_new_model_starts_from_transformers_init_with_its_own_tokens_drawn_too():
    """Linear weights ~ N(0, initializer_range) with zero bias, LayerNorm at (1, 0), and the [CLS] token and
    positions drawn at the same scale: zero positions would leave the patches unordered until trained."""
    torch.manual_seed(0)
    config = HfViTConfig(dim=64, depth=2, heads=2, dim_head=32, mlp_dim=128, initializer_range=0.05)
    model = HfViTForImageClassification(config)
    embeddings = model.vit.embeddings
    for name, tensor in (("pos_embedding", embeddings.pos_embedding), ("cls_token", embeddings.cls_token)):
        # trunc_normal_ cuts at +-2 in absolute terms, as transformers' ViT uses it: at this std, a plain normal
        assert abs(float(tensor.std()) - 0.05) < 0.01 and abs(float(tensor.mean())) < 0.01, name
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert all(abs(float(m.weight.std()) - 0.05) < 0.01 for m in linears if m.weight.numel() >= 4096)
    assert all(float(m.bias.abs().max()) == 0 for m in linears if m.bias is not None)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(bool((m.weight == 1).all() and (m.bias == 0).all()) for m in norms)


def test_loss_is_cross_entropy():
    _, model = make_pair(SHAPES[0], "cls")
    x = torch.randn(4, 3, 32, 32)
    labels = torch.tensor([0, 3, 9, 1])
    out = model(pixel_values=x, labels=labels)
    assert torch.allclose(out.loss, torch.nn.functional.cross_entropy(out.logits, labels), atol=1e-6)


def test_labels_outside_the_head_name_the_class_count_and_how_to_set_the_classes():
    """A 12-class dataset trained with the default config (CIFAR-10's 10 classes), e.g. by a vanilla Trainer: the
    loss names the class ids and the config's classes (before: IndexError: Target 11 is out of bounds.)."""
    model = HfViTForImageClassification(HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64))
    pixels = torch.randn(3, 3, 32, 32)
    with pytest.raises(ValueError, match=r"labels hold class ids from 0 to 11, but the model has 10 classes .*"
                                         r"id2label=dataset.features\['label'\].names"):
        model(pixel_values=pixels, labels=torch.tensor([0, 11, -100]))
    assert torch.isfinite(model(pixel_values=pixels, labels=torch.tensor([0, 9, -100])).loss)  # -100 still skips


@pytest.mark.parametrize("labels", [[-1, -1, -1], [-1, 2, 11]])
def test_negative_labels_say_they_are_not_classes_and_to_drop_them_or_use_minus_100(labels):
    """A split whose labels are -1 (how datasets mark an unlabelled test split) was told to rebuild the config with
    the dataset's classes ("class ids from -1 to -1"), which cannot help: now the error says negative ids are not
    classes, only -100 skips an image, and to drop those rows or set their label to -100."""
    model = HfViTForImageClassification(HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64))
    with pytest.raises(ValueError, match=r"labels hold \d negative class ids \(e\.g\. -1\), but a negative id is not "
                                         r"a class \(the model's are 0\.\.9\) and only -100 skips an image.*Drop those "
                                         r"rows .* or set their label to -100\.$") as caught:
        model(pixel_values=torch.randn(3, 3, 32, 32), labels=torch.tensor(labels))
    assert "id2label" not in str(caught.value)


def test_an_index_error_with_every_label_in_the_head_keeps_its_own_words():
    """Labels that all fit the head, or are all -100 (skipped), are not to blame for an IndexError: no label error
    is made (before: all -100 left nothing to take the min of, and the helper itself failed)."""
    from hf_vit.modeling_hf_vit import _labels_outside_the_head_error

    for labels in ([-100, -100], [0, 9, -100]):
        assert _labels_outside_the_head_error(torch.tensor(labels), 10) is None


def test_a_mixed_batch_in_a_plain_trainer_is_refused_not_trained_on_its_first_labels(tmp_path):
    """hf_vit's collator with Mixup/CutMix in a vanilla transformers Trainer: the model's loss dropped labels_b and
    mix_lam without a word and trained on mixed images as if each were its first label. Now a ValueError names
    HfViTTrainer and how to turn mixing off; an unmixed batch still trains."""
    from transformers import Trainer, TrainingArguments

    from hf_vit import CIFAR10_MEAN, CIFAR10_STD
    from hf_vit.augment import AugmentConfig, BatchAugment
    from hf_vit.data import BatchCollator, ImageTensorDataset

    images, labels = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), torch.arange(8) % 10
    model = HfViTForImageClassification(HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64))

    def train(augment):
        args = TrainingArguments(str(tmp_path), max_steps=1, per_device_train_batch_size=8, use_cpu=True,
                                 report_to="none", save_strategy="no", remove_unused_columns=False)  # fmt: skip
        collator = BatchCollator(BatchAugment(CIFAR10_MEAN, CIFAR10_STD, augment))
        return Trainer(model=model, args=args, train_dataset=ImageTensorDataset(images, labels, augment=True),
                       data_collator=collator).train()  # fmt: skip

    with pytest.raises(ValueError, match=r"the batch is mixed .* Train with hf_vit.training.HfViTTrainer"):
        train(AugmentConfig(mixup_alpha=0.8))
    assert train(AugmentConfig()).global_step == 1


def test_an_on_device_batch_in_a_plain_trainer_names_hf_vit_trainer(tmp_path):
    """prepare_data(augment_on_device=True) leaves its training batches raw (uint8 + aug_seed) for HfViTTrainer to
    augment on the device. In a vanilla Trainer the error now names HfViTTrainer and augment_on_device=False
    (before: 'raw pixels? ... use the image processor', a fix that does not apply to hf_vit's own collator); the
    same data with augment_on_device=False trains there."""
    from tiny_data import make_tiny_cifar
    from transformers import Trainer, TrainingArguments

    from hf_vit import CIFAR10_MEAN, CIFAR10_STD
    from hf_vit.data import prepare_data

    tiny = make_tiny_cifar(tmp_path / "tiny", n_train=16, n_test=4)
    model = HfViTForImageClassification(HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64))

    def train(on_device):
        data = prepare_data(str(tiny), 32, 3, CIFAR10_MEAN, CIFAR10_STD, validation_size=0, augment_on_device=on_device)
        args = TrainingArguments(str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=8, use_cpu=True,
                                 report_to="none", save_strategy="no", remove_unused_columns=False)  # fmt: skip
        return Trainer(model=model, args=args, train_dataset=data.train, data_collator=data.collator).train()

    with pytest.raises(ValueError, match=r"augment_on_device=True.* Train with hf_vit.training.HfViTTrainer.*"
                                         r"augment_on_device=False"):  # fmt: skip
        train(True)
    assert train(False).global_step == 1
    # Raw pixels without the collator's mark keep the image processor's advice.
    with pytest.raises(ValueError, match=r"pixel_values are torch.uint8 \(raw pixels\?\).*make_image_processor"):
        model(pixel_values=torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_gradient_checkpointing_gives_same_gradients():
    _, model = make_pair(SHAPES[1], "cls")
    model.train()
    x = torch.randn(4, 3, 32, 32)
    labels = torch.tensor([0, 1, 2, 3])

    def grads():
        model.zero_grad()
        model(pixel_values=x, labels=labels).loss.backward()
        return {k: p.grad.clone() for k, p in model.named_parameters()}

    plain = grads()
    # transformers 5.24 renamed it activation checkpointing (the old names warn); 5.17 has only the old names
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable()
        assert model.is_activation_checkpointing
    else:
        model.gradient_checkpointing_enable()
        assert model.is_gradient_checkpointing
    assert all(layer.gradient_checkpointing for layer in model.vit.transformer.layers)
    checkpointed = grads()
    for k in plain:
        assert torch.allclose(plain[k], checkpointed[k], atol=1e-6), k


def test_wrong_input_shapes_are_explained():
    model = HfViTForImageClassification(HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64)).eval()
    with pytest.raises(ValueError, match="4 channels but the model was built for 3"):
        model(pixel_values=torch.randn(1, 4, 32, 32))
    with pytest.raises(ValueError, match="interpolate_pos_encoding=True"):
        model(pixel_values=torch.randn(1, 3, 64, 64))
    out = model(pixel_values=torch.randn(1, 3, 64, 64), interpolate_pos_encoding=True)
    assert out.logits.shape == (1, 10)


def test_a_one_channel_model_advises_grey_images_and_a_channel_dimension():
    """A batch of grey images without its channel dimension, (8, 32, 32), was told to add a batch dimension
    (unsqueeze(0)), which led to `8 channels ... Convert the images (e.g. image.convert('RGB'))` for a grey model."""
    model = HfViTForImageClassification(HfViTConfig(num_channels=1, dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64))
    with pytest.raises(ValueError, match=r"got \(8, 32, 32\)\. For a batch of single-channel images, add the channel "
                       r"dimension with `pixel_values.unsqueeze\(1\)`\."):  # fmt: skip
        model(pixel_values=torch.randn(8, 32, 32))
    with pytest.raises(ValueError, match=r"\(1, 32, 32\)\. Add a batch dimension with `pixel_values.unsqueeze\(0\)`"):
        model(pixel_values=torch.randn(1, 32, 32))  # one grey image: either fix gives (1, 1, 32, 32)
    with pytest.raises(ValueError, match=r"3 channels but the model was built for 1 .*`image\.convert\('L'\)`"):
        model(pixel_values=torch.randn(2, 3, 32, 32))
    assert model(pixel_values=torch.randn(8, 32, 32).unsqueeze(1)).logits.shape == (8, 10)


def test_pixel_values_that_are_not_a_tensor_say_to_ask_the_processor_for_tensors():
    """A processor called without return_tensors="pt" gives a list of arrays; `model(**inputs)` said
    `'list' object has no attribute 'is_floating_point'` (and `model(inputs)` the same of the BatchFeature)."""
    from hf_vit import make_image_processor

    model = HfViTForImageClassification(HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64)).eval()
    processor = make_image_processor(model.config)
    image = np.zeros((40, 40, 3), dtype=np.uint8)
    hint = r"Ask the image processor for tensors: `processor\(images, return_tensors='pt'\)`"
    with pytest.raises(TypeError, match=r"pixel_values must be a torch.Tensor .*, got a list. " + hint):
        model(**processor(image))
    with pytest.raises(TypeError, match=r"got a numpy.ndarray. " + hint):
        model.vit(**processor(image, return_tensors="np"))
    with pytest.raises(ValueError, match="You have to specify pixel_values"):
        model()
    inputs = processor(image, return_tensors="pt")
    with pytest.raises(TypeError, match=r"got the image processor's whole output .* `model\(\*\*inputs\)`"):
        model(inputs)  # positionally, where `model(**inputs)` was meant
    assert model(**inputs).logits.shape == (1, 10)


def test_a_model_traced_at_its_own_size_with_interpolation_runs_at_other_sizes():
    """torch.jit.trace records the branches taken; at the native size the position resize was skipped, so
    the traced graph could not take a 48x48 image (145 tokens against 65 positions)."""
    torch.manual_seed(0)
    model = HfViTForImageClassification(HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64)).eval()

    class Logits(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            return self.model(pixel_values=pixel_values, interpolate_pos_encoding=True).logits

    wrapper = Logits(model)
    with torch.no_grad():
        traced = torch.jit.trace(wrapper, torch.randn(2, 3, 32, 32), check_trace=False)
    for size in (32, 48):
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            assert torch.allclose(traced(x), wrapper(x), atol=1e-5), size


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("model_class", [HfViTForImageClassification, HfViTModel])
def test_torch_export_with_a_dynamic_batch_gives_the_eager_outputs(model_class, attn):
    """`torch.export.export(model, (pixel_values,), dynamic_shapes=...)`: the size checks are Python branches on the
    input's shape, which must not break the export; the program takes other batch sizes, 1 included."""
    torch.manual_seed(0)
    config = HfViTConfig(dim=32, depth=2, heads=2, dim_head=16, mlp_dim=64, attn_implementation=attn)
    model = model_class(config).eval()
    assert model.config._attn_implementation == attn
    batches = {0: torch.export.Dim("batch", min=1)}  # as the README advises: an SDPA program fails on an empty batch
    program = torch.export.export(model, (torch.randn(2, 3, 32, 32),), dynamic_shapes=(batches,)).module()
    for batch in (1, 2, 5):
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            got, expected = program(x), model(pixel_values=x)
        assert type(got) is type(expected) and got.keys() == expected.keys()
        for name in expected.keys():
            assert torch.allclose(got[name], expected[name], atol=1e-5), (batch, name)


def test_a_model_exported_at_its_own_size_with_interpolation_runs_at_other_sizes():
    """torch.export records the branch taken, as torch.jit.trace does: exported at 32x32 with a dynamic height and
    width, the position resize was skipped and the program refused every other size (`Guard failed:
    pixel_values.size()[2] // 4 == 8`; exported at 48x48, it refused 32x32)."""
    torch.manual_seed(0)
    model = HfViTForImageClassification(HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64)).eval()
    sides = {0: torch.export.Dim("batch", min=1), 2: 4 * torch.export.Dim("h", max=32),
             3: 4 * torch.export.Dim("w", max=32)}
    program = torch.export.export(model, (torch.randn(2, 3, 32, 32),), {"interpolate_pos_encoding": True},
                                  dynamic_shapes=(sides, None)).module()  # fmt: skip
    for height, width in ((32, 32), (48, 48), (64, 32)):
        x = torch.randn(3, 3, height, width)
        with torch.no_grad():
            got = program(x, interpolate_pos_encoding=True).logits
            expected = model(pixel_values=x, interpolate_pos_encoding=True).logits
        assert torch.allclose(got, expected, atol=1e-5), (height, width)


def test_torch_compile_with_fullgraph_gives_the_eager_outputs_and_gradients():
    """torch.compile(model, fullgraph=True) captures the forward pass whole (a graph break, e.g. an `.item()` or a
    branch on a tensor's value, fails here): the logits at 48x48 with interpolate_pos_encoding, and a training step's
    loss and gradients at the native size, equal the eager model's; a label outside the head is refused in the model's
    words, from inside the graph. The aot_eager backend traces the forward and
    backward graphs as inductor would, without its C++ build (~15 s more on 2 CPUs)."""
    torch.manual_seed(0)
    config = HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64, dropout=0.0, emb_dropout=0.0)
    model = HfViTForImageClassification(config).eval()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager", dynamic=False)
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        expected = model(pixel_values=x, interpolate_pos_encoding=True).logits
        assert torch.allclose(compiled(pixel_values=x, interpolate_pos_encoding=True).logits, expected, atol=1e-5)
    model.train()
    x, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])

    def step(forward):
        model.zero_grad()
        loss = forward(pixel_values=x, labels=labels).loss
        loss.backward()
        return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}

    (loss, grads), (compiled_loss, compiled_grads) = step(model), step(compiled)
    assert torch.allclose(compiled_loss, loss, atol=1e-6)
    assert all(torch.allclose(compiled_grads[name], grads[name], atol=1e-6) for name in grads)
    # A class id outside the head: the eager model's check reads the ids in Python, which a graph cannot; the compiled
    # model said only "Target 10 is out of bounds" (IndexError; inductor's kernel: "index out of bounds").
    with pytest.raises(RuntimeError, match=r"labels hold a class id outside the model's 10 classes \(ids 0..9; -100 "):
        compiled(pixel_values=x, labels=torch.tensor([0, 1, 2, 10]))


def test_a_compiled_regression_model_takes_its_float_targets_as_the_eager_one():
    """The compiled check of class ids is for a classifier's ids alone (the loss transformers picks: cross-entropy):
    a regression's targets (2.5, -1.0), like a multi-label head's floats, are no class ids, and the compiled loss
    equals the eager one (they were refused as "a class id outside the model's 1 classes", else masked to -100)."""
    torch.manual_seed(0)
    config = HfViTConfig(image_size=8, patch_size=4, dim=16, depth=1, heads=2, dim_head=8, mlp_dim=32, num_labels=1)
    model = HfViTForImageClassification(config).eval()  # one output and no problem_type: transformers' regression
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager", dynamic=False)
    x, targets = torch.randn(2, 3, 8, 8), torch.tensor([2.5, -1.0])
    with torch.no_grad():
        expected = model(pixel_values=x, labels=targets).loss
        assert torch.allclose(compiled(pixel_values=x, labels=targets).loss, expected, atol=1e-6)


def test_a_config_edited_into_an_invalid_one_is_refused_when_the_model_is_built():
    config = HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64)
    config.pool = "max"  # would otherwise mean-pool without a word
    with pytest.raises(ValueError, match="unknown `pool` 'max'"):
        HfViTForImageClassification(config)
    config.pool, config.patch_size = "cls", 5
    with pytest.raises(ValueError, match="`patch_size` 5 does not divide `image_size` 32"):
        HfViTModel(config)


def test_fine_tuning_a_saved_model_on_new_classes(tmp_path):
    # The usual transformers call for a new head: the body's weights load, the head is new.
    from transformers import AutoModelForImageClassification

    import hf_vit  # noqa: F401  (registers the Auto classes)

    torch.manual_seed(0)
    source = HfViTForImageClassification(HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64))
    source.save_pretrained(tmp_path)
    model = AutoModelForImageClassification.from_pretrained(tmp_path, num_labels=3, ignore_mismatched_sizes=True)
    assert model.config.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    assert model.mlp_head[1].weight.shape == (3, 32)
    assert torch.equal(model.vit.embeddings.cls_token, source.vit.embeddings.cls_token)
    # the lesson's name for it works in from_pretrained too (transformers would set the read-only alias)
    model = AutoModelForImageClassification.from_pretrained(tmp_path, num_classes=4, ignore_mismatched_sizes=True)
    assert model.config.num_labels == 4 and model.mlp_head[1].weight.shape == (4, 32)


@pytest.mark.skipif(os.name == "nt", reason="Windows has no umask or permission bits")
@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["umask022", "umask077"])
def test_save_pretrained_gives_the_weights_it_writes_the_modes_the_umask_gives(tmp_path, umask):
    """One's own model.save_pretrained(folder) wrote model.safetensors 0600 whatever the umask (safetensors 0.8
    writes a temporary file and renames it: safetensors issue #782), so a lab-mate could not read the weights beside
    a 0644 config.json. Now every weights file the save writes, each shard of a sharded save too, gets the bits the
    umask gives a new file; a .safetensors file of one's own in the folder, which the save did not write, keeps its."""
    model = HfViTForImageClassification(HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64))
    (tmp_path / "sharded").mkdir()
    own = tmp_path / "sharded" / "own.safetensors"
    own.write_bytes(b"")
    own.chmod(0o640)
    old = os.umask(umask)
    try:
        model.save_pretrained(tmp_path / "whole")
        model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    finally:
        os.umask(old)
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in tmp_path.rglob("*.*")}
    assert len([name for name in modes if name.startswith("sharded/model-")]) > 1  # the save was sharded
    off = {name: f"{mode:o}" for name, mode in modes.items() if mode != 0o666 & ~umask}
    assert off == {"sharded/own.safetensors": "640"}


def test_fine_tuning_with_new_class_names_as_in_transformers_tutorial(tmp_path):
    """num_labels + id2label + label2id together (the image-classification tutorial's call): the given names
    replace the saved ten, both maps agree, and the head has two outputs. An id2label alone does the same."""
    from transformers import AutoConfig, AutoModelForImageClassification

    import hf_vit  # noqa: F401  (registers the Auto classes)

    HfViTForImageClassification(HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64)).save_pretrained(tmp_path)
    model = AutoModelForImageClassification.from_pretrained(
        tmp_path, num_labels=2, id2label={0: "a", 1: "b"}, label2id={"a": 0, "b": 1}, ignore_mismatched_sizes=True
    )
    assert (model.config.id2label, model.config.label2id) == ({0: "a", 1: "b"}, {"a": 0, "b": 1})
    assert model.mlp_head[1].weight.shape == (2, 32)
    config = AutoConfig.from_pretrained(tmp_path, id2label={0: "a", 1: "b"})
    assert (config.num_labels, config.label2id) == (2, {"a": 0, "b": 1})
    assert AutoConfig.from_pretrained(tmp_path, num_labels=10).id2label[0] == "airplane"  # the saved count: kept
    with pytest.raises(ValueError, match="`num_labels=3` disagrees with `id2label`"):
        AutoConfig.from_pretrained(tmp_path, num_labels=3, id2label={0: "a"})


def test_classes_set_on_the_config_of_a_built_model_are_refused_not_left_to_the_old_head(tmp_path):
    """`model.config.id2label = {...}` with 3 classes on a 10-class model (instead of from_pretrained's id2label)
    keeps the 10-output head: the loss failed with "shape '[-1, 3]' is invalid for input of size 20", pipeline() with
    KeyError: 3, and save_pretrained wrote a folder from_pretrained refuses. Now forward and save say what happened and
    how to get a new head, and a save writes nothing; renaming the 10 classes stays fine."""
    model = HfViTForImageClassification(HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64))
    model.config.id2label = {0: "a", 1: "b", 2: "c"}
    pattern = (r"^config.num_labels is 3 \(config.id2label\), but the classification head \(mlp_head\) has 10 outputs"
               r".*ignore_mismatched_sizes=True.*give id2label 10 names\.$")
    pixels = torch.randn(2, 3, 32, 32)
    for call in (lambda: model(pixel_values=pixels, labels=torch.tensor([0, 2])), lambda: model(pixel_values=pixels),
                 lambda: model.save_pretrained(tmp_path / "m")):  # fmt: skip
        with pytest.raises(ValueError, match=pattern):
            call()
    assert not (tmp_path / "m").exists()
    model.config.id2label = [f"c{i}" for i in range(10)]  # a rename: same count
    assert model(pixel_values=pixels).logits.shape == (2, 10)
    model.save_pretrained(tmp_path / "m")


def test_loading_options_keep_the_float32_logits_and_flash_attention_on_a_cpu_is_refused(tmp_path):
    """from_pretrained's usual options on a float32 folder: dtype="auto", device_map="cpu" and eager attention give
    float32's logits (flex attention has its own test: it compiles, ~8 s); dtype=bfloat16/float16 (or model.half()
    after loading) take float32 pixel values and give logits within bf16's/fp16's rounding of float32's;
    flash_attention_2 without a GPU is refused when loading."""
    from transformers import AutoModelForImageClassification

    import hf_vit  # noqa: F401  (registers the Auto classes)

    torch.manual_seed(0)
    config = HfViTConfig(dim=32, depth=2, heads=2, dim_head=16, mlp_dim=64, initializer_range=0.2)  # logits ~3
    HfViTForImageClassification(config).save_pretrained(tmp_path)
    x = torch.randn(16, 3, 32, 32)

    def logits(model):
        with torch.no_grad():
            return model.eval()(pixel_values=x).logits

    expected = logits(HfViTForImageClassification.from_pretrained(tmp_path))
    scale = float(expected.abs().max())
    for kwargs, dtype, rtol in (
        ({"dtype": "auto"}, torch.float32, 1e-6),
        ({"device_map": "cpu"}, torch.float32, 1e-6),
        ({"attn_implementation": "eager"}, torch.float32, 1e-6),
        ({"dtype": torch.bfloat16}, torch.bfloat16, 0.03),  # measured: at most 0.009 of the largest logit
        ({"dtype": torch.float16}, torch.float16, 0.005),  # measured: at most 0.0009
    ):
        model = AutoModelForImageClassification.from_pretrained(tmp_path, **kwargs)
        got = logits(model)
        assert model.dtype == got.dtype == dtype, kwargs
        assert float((got.float() - expected).abs().max()) <= rtol * scale, kwargs
    assert torch.equal(logits(HfViTForImageClassification.from_pretrained(tmp_path).half()), got)  # the float16 row's
    if not torch.cuda.is_available():
        with pytest.raises(ImportError, match="FlashAttention2 has been toggled on, but it cannot be used"):
            AutoModelForImageClassification.from_pretrained(tmp_path, attn_implementation="flash_attention_2")


def test_label2id_alone_names_the_classes_and_the_maps_always_agree():
    config = HfViTConfig(label2id={"cat": 0, "dog": 1})
    assert (config.num_labels, config.id2label) == (2, {0: "cat", 1: "dog"})
    config = HfViTConfig(id2label={"0": "a", "1": "b"}, label2id={"a": "0", "b": 1})  # JSON-style string ids
    assert (config.id2label, config.label2id) == ({0: "a", 1: "b"}, {"a": 0, "b": 1})
    with pytest.raises(ValueError, match="`label2id` .* is not the inverse of `id2label`"):
        HfViTConfig(id2label={0: "a", 1: "b"}, label2id={"a": 1, "b": 0})
    with pytest.raises(ValueError, match="class ids in `id2label` must be whole numbers"):
        HfViTConfig(id2label={"x": "a"})


def test_an_edited_pool_acts_now_as_it_will_after_save_and_reload(tmp_path):
    torch.manual_seed(0)
    model = HfViTForImageClassification(HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(pixel_values=x).logits
        model.config.pool = "mean"
        after = model(pixel_values=x).logits
        model.save_pretrained(tmp_path)
        reloaded = HfViTForImageClassification.from_pretrained(tmp_path).eval()(pixel_values=x).logits
    assert not torch.allclose(before, after)
    assert torch.allclose(after, reloaded, atol=1e-6)
    model.config.pool = "max"  # a save refuses it; the forward pass must too (before: it mean-pooled without a word)
    with pytest.raises(ValueError, match="unknown `pool` 'max'"):
        model(pixel_values=x)


def test_input_embeddings_get_and_set():
    model = HfViTForImageClassification(HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64))
    assert model.get_input_embeddings() is model.vit.embeddings.to_patch_embedding
    replacement = torch.nn.Sequential(*model.get_input_embeddings())
    model.set_input_embeddings(replacement)
    assert model.vit.embeddings.to_patch_embedding is replacement and model.get_input_embeddings() is replacement


def test_resizing_token_embeddings_says_a_vit_has_none_and_how_to_change_the_classes(tmp_path):
    """transformers' resize_token_embeddings (for a text model's vocabulary) failed with `AttributeError: 'Sequential'
    object has no attribute 'weight'`. It says why now, and how to get another class count (which works)."""
    model = HfViTForImageClassification(HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64))
    pattern = r"^HfViTForImageClassification has no token embeddings to resize: a ViT reads image patches, .*"
    with pytest.raises(NotImplementedError, match=pattern + r"`from_pretrained\(folder, num_labels=N, ignore_mis"):
        model.resize_token_embeddings(12)
    with pytest.raises(NotImplementedError, match="^HfViTModel has no token embeddings to resize"):
        model.vit.resize_token_embeddings(12)
    model.save_pretrained(tmp_path)
    resized = HfViTForImageClassification.from_pretrained(tmp_path, num_labels=12, ignore_mismatched_sizes=True)
    assert resized(pixel_values=torch.randn(1, 3, 32, 32)).logits.shape == (1, 12)


class _PatchEmbedding(torch.nn.Module):
    """A patch embedding that is not a Sequential: a strided convolution, as transformers' ViT has."""

    def __init__(self, dim, patch):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, dim, patch, stride=patch)

    def forward(self, pixel_values):
        return self.conv(pixel_values).flatten(2).transpose(1, 2)  # (B, N, dim)


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor")  # torch's notice that quantize_dynamic will go
def test_forward_after_a_new_patch_embedding_or_dynamic_quantization():
    """The forward pass reads the input dtype from the [CLS] token (before: from the Sequential's Linear weight,
    a TypeError after set_input_embeddings(conv) and an AttributeError after quantize_dynamic)."""
    torch.manual_seed(0)
    config = HfViTConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64)
    x = torch.randn(2, 3, 32, 32)
    model = HfViTForImageClassification(config).eval()
    with torch.no_grad():
        before = model(pixel_values=x).logits
        quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        assert torch.allclose(quantized(pixel_values=x).logits, before, atol=0.1)
        model.set_input_embeddings(_PatchEmbedding(32, 4))
        assert model(pixel_values=x).logits.shape == (2, 10)


def test_attention_rollout_matches_hand_computation():
    from hf_vit.attention_maps import attention_rollout, cls_attention

    torch.manual_seed(0)
    # Two layers, two heads, three tokens: random row-stochastic matrices.
    attns = tuple(torch.rand(1, 2, 3, 3).softmax(-1) for _ in range(2))
    by_hand = None
    for a in attns:
        m = a[0].mean(0)
        m = (m + torch.eye(3)) / 2
        m = m / m.sum(-1, keepdim=True)
        by_hand = m if by_hand is None else m @ by_hand
    got = attention_rollout(attns)[0]
    assert torch.allclose(got, by_hand, atol=1e-6)
    assert torch.allclose(got.sum(-1), torch.ones(3), atol=1e-6)
    assert torch.allclose(cls_attention(attns, layer=-1)[0], attns[-1][0].mean(0)[0, 1:])
