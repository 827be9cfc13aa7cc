"""Data loading, the validation carve, decoding and batched augmentation (hf_vit.data, hf_vit.augment)."""

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets_cache import own_datasets_cache  # noqa: F401 (autouse: local loads list this module's cache only)
from file_limits import file_size_limit
from tiny_data import CIFAR10_NAMES, make_tiny_cifar

from hf_vit import CIFAR10_MEAN, CIFAR10_STD, HfViTConfig, make_image_processor
from hf_vit.augment import (
    AugmentConfig,
    BatchAugment,
    mix_batch,
    rand_augment,
    random_crop,
    random_erasing,
    random_hflip,
    seed_for_batch,
)
from hf_vit.data import (
    BatchCollator,
    DatasetError,
    ImageTensorDataset,
    decode_images,
    find_columns,
    flags_in_messages,
    get_labels,
    load_dataset,
    prepare_data,
    stratified_split,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_cifar(tmp_path_factory.mktemp("tiny"), n_train=100, n_test=20)


def test_columns_found_by_name_or_given(tmp_path, tiny):
    assert find_columns(load_dataset(str(tiny))["train"]) == ("img", "label")
    other = load_dataset(str(make_tiny_cifar(tmp_path / "o", 20, 10, image_column="image", label_column="labels")))
    assert find_columns(other["train"]) == ("image", "labels")
    with pytest.raises(DatasetError, match=r"no image column 'pixels'.*columns are \['image', 'labels'\]"):
        find_columns(other["train"], image_column="pixels")
    renamed = other["train"].rename_column("image", "picture")
    with pytest.raises(DatasetError, match=r"found no image column.*'picture'.*Name it with image_column='picture' \('picture' holds images\)\.$"):
        find_columns(renamed)


def test_a_column_not_found_by_name_is_offered_by_its_type(tiny):
    """A dataset saved with `pixel_values` images and `target` class labels: the message said `Name it with
    --image_column <column>`, leaving the reader to find which column holds what; the column's type tells."""
    import datasets

    ds = load_dataset(str(tiny))["train"].select(range(4))
    renamed = ds.rename_columns({"img": "pixel_values", "label": "target"})
    with flags_in_messages(), pytest.raises(DatasetError) as err:
        find_columns(renamed)
    assert str(err.value).endswith("Name it with --image_column pixel_values ('pixel_values' holds images).")
    with flags_in_messages(), pytest.raises(DatasetError) as err:
        find_columns(renamed, image_column="pixel_values")
    assert str(err.value).endswith("Name it with --label_column target ('target' holds class labels).")
    features = renamed.features.copy()
    features["thumb"] = datasets.Image()
    two = renamed.map(lambda row: {"thumb": row["pixel_values"]}, features=features)
    with pytest.raises(DatasetError, match=r"Name it with image_column='<column>' \('pixel_values', 'thumb' hold images\)\.$"):
        find_columns(two)
    plain = renamed.cast_column("target", datasets.Value("int64"))  # plain integers: no type says "labels"
    with pytest.raises(DatasetError, match=r"Name it with label_column='<column>'\.$"):
        find_columns(plain, image_column="pixel_values")


def test_labels_out_of_range_and_empty_split(tmp_path, tiny):
    ds = load_dataset(str(tiny))["train"]
    with pytest.raises(DatasetError, match=r"outside 0\.\.4.*5 classes"):
        get_labels(ds, "label", 5, "train")
    empty = make_tiny_cifar(tmp_path / "e", n_train=20, n_test=0)
    with pytest.raises(DatasetError, match="'test' split .* is empty"):
        prepare_data(str(empty), 32, 3, CIFAR10_MEAN, CIFAR10_STD, validation_size=10)
    with pytest.raises(DatasetError, match="no split 'valid'.*'test', 'train'"):
        prepare_data(str(tiny), 32, 3, CIFAR10_MEAN, CIFAR10_STD, test_split="valid")


def test_each_image_column_has_its_own_decoded_cache(tiny):
    # Two image columns of one dataset: the second must not be served the first one's cached pixels.
    from datasets import Image

    ds = load_dataset(str(tiny))["train"]
    features = ds.features.copy()
    features["inverted"] = Image()
    ds = ds.map(lambda row: {"inverted": row["img"].point(lambda v: 255 - v)}, features=features)
    plain, inverted = decode_images(ds, "img", 32), decode_images(ds, "inverted", 32)
    assert torch.equal(inverted, 255 - plain)


def test_bad_sample_limits_and_label_columns_are_named(tmp_path, tiny):
    with pytest.raises(DatasetError, match=r"max_test_samples must be at least 1, got 0"):
        prepare_data(str(tiny), 32, 3, CIFAR10_MEAN, CIFAR10_STD, validation_size=10, max_test_samples=0)
    with pytest.raises(DatasetError, match=r"max_eval_samples must be at least 1, got -3.*validation_size=0 trains"):
        prepare_data(str(tiny), 32, 3, CIFAR10_MEAN, CIFAR10_STD, validation_size=10, max_eval_samples=-3)
    with pytest.raises(DatasetError, match=r"label column 'img' .* holds Image values, not class ids.*with label_column\."):
        prepare_data(str(tiny), 32, 3, CIFAR10_MEAN, CIFAR10_STD, validation_size=10, label_column="img")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"holds no dataset files.*README\.md and the splits' parquet files"):
        load_dataset(str(tmp_path / "empty"))
    with pytest.raises(DatasetError, match=r"'nope'.*Fix dataset_config,"):
        load_dataset(str(tiny), "nope")


def test_library_messages_name_the_arguments_and_the_scripts_their_flags(tmp_path):
    """prepare_data called from Python named flags it never saw (`Fix --label_column.`, `--max_test_samples must
    be ...`); now it names its arguments, and the scripts, within flags_in_messages, their flags."""
    tiny = make_tiny_cifar(tmp_path / "d", n_train=40, n_test=10)  # its own: the module's caches stay untouched
    kwargs = dict(image_size=32, num_channels=3, image_mean=CIFAR10_MEAN, image_std=CIFAR10_STD)
    cases = [  # (arguments, the library's words, the script's words)
        (dict(label_column="target"), "Fix label_column.", "Fix --label_column."),
        (dict(max_test_samples=0), "max_test_samples must be at least 1", "--max_test_samples must be at least 1"),
        (dict(validation_size=40), "validation_size=40 leaves no training images",
         "--validation_size 40 leaves no training images"),
        (dict(train_split="nope"), "Choose one with train_split / test_split.",
         "Choose one with --train_split / --test_split."),
        (dict(test_split="valid"), "Choose one of ['test'] with test_split,", "Choose one of ['test'] with --test_split,"),
        (dict(validation_split="test"), "validation_split='test' is also the test split",
         "--validation_split 'test' is also the test split"),
    ]
    for arguments, library, script in cases:
        with pytest.raises(DatasetError) as err:
            prepare_data(str(tiny), **kwargs, **arguments)
        assert library in str(err.value) and "--" not in str(err.value), str(err.value)
        with flags_in_messages(), pytest.raises(DatasetError) as err:
            prepare_data(str(tiny), **kwargs, **arguments)
        assert script in str(err.value), str(err.value)
    with pytest.raises(DatasetError, match=r"^dataset_name takes a dataset's Hub id or folder, got a dict"):
        prepare_data({}, **kwargs)
    with pytest.raises(DatasetError, match=r"^no dataset folder at .* \(from dataset_name '\./nope'\)"):
        prepare_data("./nope", **kwargs)


def test_missing_local_folder_is_named(tmp_path):
    with pytest.raises(DatasetError, match="no dataset folder at .*nope"):
        load_dataset(str(tmp_path / "nope"))


def test_stratified_split_is_exact_balanced_and_seeded():
    labels = np.repeat(np.arange(10), [600, 500, 500, 500, 500, 500, 500, 500, 500, 400])  # 5000
    train, val = stratified_split(labels, 500, seed=3)
    assert len(val) == 500 and len(train) == 4500 and not set(train) & set(val)
    counts = np.bincount(labels[val], minlength=10)
    assert counts[0] == 60 and counts[9] == 40 and (counts[1:9] == 50).all()
    assert np.array_equal(val, stratified_split(labels, 500, seed=3)[1])
    assert not np.array_equal(val, stratified_split(labels, 500, seed=4)[1])
    # uneven quotas still sum exactly
    assert len(stratified_split(labels, 333, seed=0)[1]) == 333
    with pytest.raises(DatasetError, match="leaves no training images"):
        stratified_split(labels, 5000)


def test_decode_once_matches_pil_and_is_cached(tiny):
    from hf_vit import data as data_module

    ds = load_dataset(str(tiny))["train"]
    pixels = decode_images(ds, "img", 32)
    assert pixels.dtype == torch.uint8 and pixels.shape == (100, 3, 32, 32)
    assert torch.equal(pixels[7], torch.from_numpy(np.array(ds[7]["img"].convert("RGB"))).permute(2, 0, 1))
    assert list(Path(ds.cache_files[0]["filename"]).parent.glob(f"hf_vit-pixels-v2-{ds._fingerprint}-img-RGB32x32.npy"))
    data_module._MEMORY_CACHE.clear()  # the second call reads the .npy file
    assert torch.equal(decode_images(ds, "img", 32), pixels)


def test_photos_decode_upright_as_datasets_shows_them(tmp_path):
    """A JPEG with EXIF orientation 6 (a phone photo held upright): datasets and transformers' load_image turn it
    upright, so pipeline() sees it so; training and the test score decoded it lying on its side (max difference
    255). They decode it upright too."""
    import io

    from datasets import ClassLabel, Dataset, Features, Image as ImageFeature
    from PIL import Image

    half = np.zeros((32, 32, 3), np.uint8)
    half[:, 16:] = 255  # left black, right white as stored; upright, the white half is at the top or bottom
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees to display
    buf = io.BytesIO()
    Image.fromarray(half).save(buf, "JPEG", exif=exif, quality=95)
    ds = Dataset.from_dict({"img": [{"bytes": buf.getvalue(), "path": None}], "label": [0]},
                           features=Features({"img": ImageFeature(), "label": ClassLabel(names=["a", "b"])}))  # fmt: skip
    ours = decode_images(ds, "img", 32, cache=False)[0].permute(1, 2, 0)
    upright = torch.from_numpy(np.asarray(ds[0]["img"].convert("RGB")))
    assert torch.equal(ours, upright)
    assert abs(ours[:16].float().mean() - ours[16:].float().mean()) > 200  # the halves lie top and bottom now


def test_decode_without_cache_reads_and_keeps_nothing(tiny):
    """cache=False decodes afresh: it returned the tensor an earlier call kept in memory, and kept its own."""
    from hf_vit import data as data_module

    ds = load_dataset(str(tiny))["train"]  # the test split's first decoding is another test's
    cached = decode_images(ds, "img", 32)
    fresh = decode_images(ds, "img", 32, cache=False)
    assert fresh is not cached and torch.equal(fresh, cached)
    data_module._MEMORY_CACHE.clear()
    decode_images(ds, "img", 32, cache=False)
    assert not data_module._MEMORY_CACHE


def test_a_stale_empty_or_oversized_decode_is_never_trusted(tiny, monkeypatch):
    """Three ways the decoded-pixel cache or the decoder failed: a cache written by older decoding rules (before
    the EXIF fix; RGBA before it was laid on white) was read as if current, the key not naming the rules; an empty
    cache file (a power loss after the rename) stopped every later run with a bare EOFError; an image over PIL's
    pixel limit raised a DecompressionBombError traceback naming no row."""
    from PIL import Image

    from hf_vit import data as data_module

    ds = load_dataset(str(tiny))["test"]
    folder = Path(ds.cache_files[0]["filename"]).parent
    right = decode_images(ds, "img", 32, cache=False)
    data_module._MEMORY_CACHE.clear()
    np.save(folder / f"hf_vit-pixels-{ds._fingerprint}-img-RGB32x32.npy", np.zeros(tuple(right.shape), np.uint8))
    assert torch.equal(decode_images(ds, "img", 32), right)  # the unversioned (older) cache is not read...
    assert not (folder / f"hf_vit-pixels-{ds._fingerprint}-img-RGB32x32.npy").exists()  # ...and is removed
    (current,) = folder.glob(f"hf_vit-pixels-v{data_module.DECODE_VERSION}-{ds._fingerprint}-img-RGB32x32.npy")
    current.write_bytes(b"")
    data_module._MEMORY_CACHE.clear()
    assert torch.equal(decode_images(ds, "img", 32), right)  # decoded again, and the file written whole
    assert current.stat().st_size > right.numel()
    data_module._MEMORY_CACHE.clear()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 32x32 is over twice this: PIL refuses to decode it
    with pytest.raises(DatasetError, match=r"^row 0 of the 'test' split is too large to decode safely \(.*\)\. "
                                           r"Downscale that image, or raise PIL.Image.MAX_IMAGE_PIXELS"):  # fmt: skip
        decode_images(ds, "img", 32, cache=False, split="test")


def test_a_decode_leaves_the_temporary_file_of_another_host_alone(tiny):
    """Two machines sharing the datasets cache (multi-node training, each node's first rank decodes) wrote the
    cache through `<key>.tmp<pid>.npy`: with equal pids (containers) both wrote into one file, the first moved it
    into place while the second still rewrote it there, and the second's rename failed. Each writer has its own."""
    import os

    from hf_vit import data as data_module

    ds = load_dataset(str(tiny))["train"]
    right = decode_images(ds, "img", 32, cache=False)
    folder = Path(ds.cache_files[0]["filename"]).parent
    name = f"hf_vit-pixels-v{data_module.DECODE_VERSION}-{ds._fingerprint}-img-RGB32x32"
    (folder / f"{name}.npy").unlink(missing_ok=True)  # an earlier test's decode: this one must write the file
    data_module._MEMORY_CACHE.clear()
    theirs = folder / f"{name}.tmp{os.getpid()}.npy"
    theirs.write_bytes(b"another host's half")  # a process with this pid on another machine, writing
    assert torch.equal(decode_images(ds, "img", 32), right)
    assert theirs.read_bytes() == b"another host's half"
    assert np.array_equal(np.load(folder / f"{name}.npy"), right.numpy())
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]  # nothing of ours left


def test_normalisation_equals_the_image_processor(tiny):
    """Training and inference see the same numbers: our batched normalise == the saved processor."""
    ds = load_dataset(str(tiny))["test"]
    processor = make_image_processor(HfViTConfig())
    pixels = decode_images(ds, "img", 32)[:8]
    ours = BatchAugment(processor.image_mean, processor.image_std).normalize(pixels)
    theirs = processor([ds[i]["img"] for i in range(8)], return_tensors="pt")["pixel_values"]
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_image_processor_statistics_computed_with_numpy_or_torch_save_and_others_are_refused(tmp_path):
    """make_image_processor with statistics a script computes (numpy float32, a torch tensor) saves and loads
    (before: TypeError 'Object of type float32 is not JSON serializable' at save_pretrained); statistics of 0..255
    pixels, NaN or one number are refused (before: every image normalised to about -1.9, or NaN, silently; or
    TypeError 'object of type float has no len()')."""
    from transformers.models.auto.image_processing_auto import AutoImageProcessor

    pixels = torch.randint(0, 256, (8, 3, 4, 4), dtype=torch.uint8).float() / 255
    mean, std = pixels.mean(dim=(0, 2, 3)), pixels.std(dim=(0, 2, 3))  # (3,) tensors, as a script computes them
    for image_mean, image_std in ((mean, std), (mean.numpy(), std.numpy())):
        make_image_processor(HfViTConfig(), image_mean, image_std).save_pretrained(tmp_path)
        loaded = AutoImageProcessor.from_pretrained(tmp_path)
        assert list(loaded.image_mean) == pytest.approx(mean.tolist()) and list(loaded.image_std) == pytest.approx(std.tolist())
    for image_mean, image_std, message in (
        ([125.3, 123.0, 113.9], [63.0, 62.1, 66.7], r"got mean \[125.3, 123.0, 113.9\] .* divide them by 255"),
        ([float("nan")] * 3, [0.2] * 3, r"image_mean must lie in \[0, 1\] .* got mean \[nan, nan, nan\]"),
        ([0.5] * 3, [float("inf")] * 3, r"image_std in \(0, 1\] .* std \[inf, inf, inf\]"),
        (0.5, 0.25, r"image_mean needs one number per channel, e.g. a list of 3 for RGB, got 0.5"),
    ):
        with pytest.raises(ValueError, match=message):
            make_image_processor(HfViTConfig(), image_mean, image_std)


def test_the_image_processor_resizes_other_sizes_bilinearly():
    """An image of another size is resized as PIL's bilinear filter does (the processor's resample=2), then
    normalised; a 32x32 image passes through unresized."""
    from PIL import Image

    processor = make_image_processor(HfViTConfig())
    rng = np.random.default_rng(0)
    mean, std = torch.tensor(CIFAR10_MEAN).view(3, 1, 1), torch.tensor(CIFAR10_STD).view(3, 1, 1)

    def normalised(image):
        return (torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255 - mean) / std

    for size in ((48, 40), (32, 32)):
        image = Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        got = processor(image, return_tensors="pt")["pixel_values"][0]
        assert torch.allclose(got, normalised(image.resize((32, 32), Image.Resampling.BILINEAR)), atol=1e-5), size
        if size != (32, 32):
            bicubic = normalised(image.resize((32, 32), Image.Resampling.BICUBIC))
            assert not torch.allclose(got, bicubic, atol=1e-2)  # the filter is told apart by this image


def test_crop_is_a_window_of_the_padded_image():
    """Each image is cut at an offset of its own, and every one of the (2 * pad + 1)^2 offsets is drawn: a crop that
    never moves, skips the far edge or moves the whole batch alike would pass a check of one image's window."""
    x = torch.arange(400 * 3 * 8 * 8, dtype=torch.float32).view(400, 3, 8, 8)  # every window of every image differs
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets = []
    for b in range(400):
        windows = {(i, j): padded[b, :, i : i + 8, j : j + 8] for i in range(5) for j in range(5)}
        (offset,) = [at for at, window in windows.items() if torch.equal(out[b], window)]
        offsets.append(offset)
    assert sorted(set(offsets)) == [(i, j) for i in range(5) for j in range(5)]  # 400 draws: each of 25 about 16 times
    assert max(offsets.count(o) for o in set(offsets)) < 40


def test_augment_is_seeded_and_strong_options_work():
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(16) % 10
    cfg = AugmentConfig(randaugment_ops=2, random_erasing=0.5, mixup_alpha=0.8, cutmix_alpha=1.0)
    aug = BatchAugment(CIFAR10_MEAN, CIFAR10_STD, cfg)
    a, b, c = aug(images, labels, 1), aug(images, labels, 1), aug(images, labels, 2)
    assert torch.equal(a["pixel_values"], b["pixel_values"])
    assert not torch.equal(a["pixel_values"], c["pixel_values"])
    assert a["pixel_values"].shape == (16, 3, 32, 32) and torch.isfinite(a["pixel_values"]).all()
    assert torch.equal(a["labels_b"], labels.flip(0)) and 0 <= float(a["mix_lam"][0]) <= 1
    # the seed of a batch depends on its indices, in order
    assert seed_for_batch(0, [1, 2, 3]) == seed_for_batch(0, [1, 2, 3]) != seed_for_batch(0, [3, 2, 1])


@pytest.mark.parametrize("images, labels, message", [
    (torch.rand(4, 3, 32, 32), torch.arange(4), r"uint8 images .* got torch.float32, which it would divide by 255"),
    (torch.zeros(4, 32, 32, 3, dtype=torch.uint8), torch.arange(4), r"got \(4, 32, 32, 3\)\. Move the channels first"),
    (torch.zeros(4, 1, 32, 32, dtype=torch.uint8), torch.arange(4), r"with C = 3 .* got \(4, 1, 32, 32\)"),
    (torch.zeros(3, 32, 32, dtype=torch.uint8), torch.arange(1), r"Add the batch dimension"),
    (torch.zeros(4, 3, 32, 32, dtype=torch.uint8), [0, 1, 2, 3], r"labels as a tensor of 4 class ids .* got list"),
])
def test_batch_augment_refuses_batches_it_would_misread(images, labels, message):
    """Used as a library: images in [0, 1] came out almost black, one grey channel was broadcast to three and
    channels-last batches failed inside torch; each is now a ValueError naming the fix."""
    aug = BatchAugment(CIFAR10_MEAN, CIFAR10_STD, AugmentConfig(mixup_alpha=1.0))
    with pytest.raises(ValueError, match=message):
        aug(images, labels, 0)
    if images.dtype == torch.uint8 and torch.is_tensor(labels):  # normalise alone reads shapes the same way
        with pytest.raises(ValueError, match=message):
            aug.normalize(images)


@pytest.mark.parametrize("num_labels, message", [
    (12, r"num_labels=12 disagrees with the 10 class names of the dataset's 'label' column"),  # was an IndexError
    (5, r"num_labels=5 disagrees with the 10 class names"),  # was: the labels blamed, as if the dataset were wrong
    (0, r"num_labels must be a whole number of classes >= 1, got 0"),
    (np.int64(12), r"num_labels=12 disagrees with the 10 class names"),  # a numpy count is checked like an int
    (10.0, r"num_labels must be a whole number of classes >= 1, got 10\.0"),
])
def test_prepare_data_refuses_a_class_count_that_does_not_fit_the_class_names(tiny, num_labels, message):
    with pytest.raises(DatasetError, match=message):
        prepare_data(str(tiny), 32, 3, CIFAR10_MEAN, CIFAR10_STD, num_labels=num_labels, validation_size=20)
    # A numpy integer (e.g. a count read off an array) was refused as not whole; it is kept as a plain int.
    for fits in (10, np.int64(10)):
        data = prepare_data(str(tiny), 32, 3, CIFAR10_MEAN, CIFAR10_STD, num_labels=fits, validation_size=20)
        assert type(data.num_labels) is int and data.num_labels == 10


def test_prepare_data_given_a_loaded_dataset_says_to_save_it_and_pass_the_folder(tiny, tmp_path):
    """A script's DatasetDict passed as the dataset (before: TypeError: expected str, bytes or os.PathLike object,
    not DatasetDict); the folder the message suggests loads with its classes."""
    loaded = load_dataset(str(tiny))
    with pytest.raises(DatasetError, match=r"got a DatasetDict object\. Save a loaded dataset first, e\.g\. "
                                           r"`dataset_dict\.save_to_disk\('my_data'\)`, and pass 'my_data'"):
        prepare_data(loaded, 32, 3, CIFAR10_MEAN, CIFAR10_STD, validation_size=20)
    loaded.save_to_disk(str(tmp_path / "my_data"))
    data = prepare_data(str(tmp_path / "my_data"), 32, 3, CIFAR10_MEAN, CIFAR10_STD, validation_size=20)
    assert (len(data.train), len(data.test), data.label_names) == (80, 20, loaded["train"].features["label"].names)


def test_the_collator_and_its_dataset_refuse_rows_they_would_misread():
    """BatchCollator and ImageTensorDataset reused as a library: another dataset's rows were a KeyError ('index'),
    and float pixels were divided by 255 never, normalised to values in the hundreds, without a word."""
    images, labels = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8), torch.arange(4)
    collator = BatchCollator(BatchAugment(CIFAR10_MEAN, CIFAR10_STD))
    rows = [{"pixel_values": images[i], "labels": labels[i]} for i in range(4)]  # DefaultDataCollator's kind
    for batch in (rows, {"pixel_values": images, "labels": labels}):
        with pytest.raises(ValueError, match=r"ImageTensorDataset hands out .* got \['labels', 'pixel_values'\]"):
            collator(batch)
    with pytest.raises(ValueError, match=r"uint8 pixels \(N, C, H, W\).* got torch.float32 \(4, 3, 32, 32\)"):
        ImageTensorDataset(images.float(), labels)
    with pytest.raises(ValueError, match=r"int64 labels \(N,\) = \(4,\).* got list"):
        ImageTensorDataset(images, [0, 1, 2, 3])
    dataset = ImageTensorDataset(images, labels, augment=True)  # the rows it hands out still collate
    assert collator([dataset[i] for i in range(4)])["pixel_values"].shape == (4, 3, 32, 32)


@pytest.mark.parametrize("options, message", [
    ({"hflip": "no"}, r"--hflip must be True or False, got 'no'"),
    ({"randaugment_magnitude": "5"}, r"--randaugment_magnitude must be a number, got '5'"),
    ({"random_erasing": None}, r"--random_erasing must be a number, got None"),
])
def test_augment_config_refuses_values_of_the_wrong_type(options, message):
    """AugmentConfig built in a script: hflip="no" was true (half the images flipped), "5" a TypeError."""
    with pytest.raises(ValueError, match=message):
        AugmentConfig(**options)
    assert AugmentConfig(hflip=np.bool_(False), randaugment_magnitude=np.float32(5), mix_prob=1).hflip == False  # noqa: E712


def test_flip_erasing_and_mixup_do_what_they_say():
    x = torch.randn(6, 3, 8, 10)  # random pixels: a flip on the wrong axis or a swapped blend gives other numbers
    g = torch.Generator().manual_seed(0)
    assert torch.equal(random_hflip(x, g, p=1.0), x.flip(-1))  # left-right: columns reversed
    assert torch.equal(random_hflip(x, g, p=0.0), x)
    assert torch.equal(random_erasing(x, 0.0, g), x)
    erased = random_erasing(x, 1.0, g)
    assert all(not torch.equal(erased[b], x[b]) for b in range(6))
    changed = (erased != x).any(1)  # (B, H, W): one rectangle per image, the same on every channel
    assert torch.equal((erased != x).all(1), changed)
    for mask in changed:  # a rectangle: the changed pixels are every pixel of the rows and columns they span ...
        assert torch.equal(mask, mask.any(1)[:, None] & mask.any(0)[None, :])
        # ... of at most the largest share drawn (scale 0.25 of the 80 pixels), give or take the rounding of its sides
        assert int(mask.sum()) <= 0.25 * 8 * 10 + (8 + 10) / 2 + 1
    # Mixup alone: image b blended with image B-1-b at the drawn lam, the labels paired the same way.
    out, labels_b, lam = mix_batch(x, torch.arange(6), 0.4, 0.0, 1.0, 0.5, np.random.default_rng(3))
    lam0 = float(lam[0])
    assert 0 < lam0 < 1 and torch.allclose(out, lam0 * x + (1 - lam0) * x.flip(0), atol=1e-6)
    assert torch.equal(labels_b, torch.arange(6).flip(0))


def test_cutmix_lambda_is_the_kept_area():
    x = torch.zeros(4, 1, 10, 10)
    x[1] = 1.0  # image 1 pairs with image 2 (B-1-b); image 2 pairs with image 1
    rng = np.random.default_rng(0)
    out, labels_b, lam = mix_batch(x, torch.arange(4), 0.0, 1.0, 1.0, 0.5, rng)
    pasted = float(out[2].mean())  # share of image 2's pixels taken from image 1
    assert abs((1 - float(lam[2])) - pasted) < 1e-6
    assert torch.equal(labels_b, torch.tensor([3, 2, 1, 0]))


def test_prepared_batches_come_whole_and_eval_is_not_augmented(tiny):
    data = prepare_data(str(tiny), 32, 3, CIFAR10_MEAN, CIFAR10_STD, AugmentConfig(), validation_size=20)
    assert len(data.train) == 80 and len(data.validation) == 20 and len(data.test) == 20
    assert data.num_labels == 10 and data.label_names[0] == "airplane"
    loader = torch.utils.data.DataLoader(data.validation, batch_size=8, collate_fn=data.collator)
    first = next(iter(loader))
    assert first["pixel_values"].dtype == torch.float32 and first["pixel_values"].shape == (8, 3, 32, 32)
    again = next(iter(loader))
    assert torch.equal(first["pixel_values"], again["pixel_values"])  # no augmentation on validation
    assert data.train.augment and not data.validation.augment and not data.test.augment
    # Evaluation batches are exactly what the saved image processor makes of the same images: the numbers the
    # checkpoints are chosen on and the test accuracy are those a pipeline user gets.
    processor = make_image_processor(HfViTConfig())
    splits = load_dataset(str(tiny))
    for subset, split in ((data.validation, "train"), (data.test, "test")):  # validation is carved from train
        rows = [int(i) for i in subset.indices[:8]]
        ours = data.collator(subset.__getitems__(list(range(8))))
        theirs = processor([splits[split][i]["img"] for i in rows], return_tensors="pt")["pixel_values"]
        assert torch.allclose(ours["pixel_values"], theirs, atol=1e-5), split
        assert ours["labels"].tolist() == [splits[split][i]["label"] for i in rows]
    train_batch = data.collator(data.train.__getitems__([0, 1, 2, 3]))
    assert not torch.equal(train_batch["pixel_values"], data.collator(data.train.__getitems__([1, 0, 2, 3]))["pixel_values"][[1, 0, 2, 3]])


def test_on_device_batches_augment_to_the_same_pixels(tiny):
    """--augment_on_device hands the Trainer uint8 + a seed; augmenting there gives the collator's pixels."""
    cfg = AugmentConfig(randaugment_ops=2, random_erasing=0.5, mixup_alpha=0.8, cutmix_alpha=1.0)
    on_cpu = prepare_data(str(tiny), 32, 3, CIFAR10_MEAN, CIFAR10_STD, cfg, validation_size=20)
    on_dev = prepare_data(str(tiny), 32, 3, CIFAR10_MEAN, CIFAR10_STD, cfg, validation_size=20, augment_on_device=True)
    raw = on_dev.collator(on_dev.train.__getitems__([5, 3, 9, 1]))
    assert raw["pixel_values"].dtype == torch.uint8 and "aug_seed" in raw
    later = on_dev.collator.augment(raw["pixel_values"], raw["labels"], int(raw["aug_seed"]))
    now = on_cpu.collator(on_cpu.train.__getitems__([5, 3, 9, 1]))
    assert torch.equal(later["pixel_values"], now["pixel_values"]) and torch.equal(later["labels"], now["labels"])


def test_randaugment_dense_path_equals_the_subset_path():
    """The accelerator path (every op on the whole batch + select) gives the CPU path's pixels."""
    x = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    subset = rand_augment(x, 2, 9, torch.Generator().manual_seed(5), dense=False)
    dense = rand_augment(x, 2, 9, torch.Generator().manual_seed(5), dense=True)
    assert torch.allclose(subset, dense, atol=1e-5)
    assert not torch.allclose(subset, x) and subset.min() >= 0 and subset.max() <= 1


def test_randaugment_dense_path_warps_once_per_round(monkeypatch):
    """On an accelerator every kernel counts: the five affine ops share one grid_sample per round."""
    import hf_vit.augment as augment

    calls = []
    real = augment.F.grid_sample
    monkeypatch.setattr(augment.F, "grid_sample", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = torch.rand(32, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    rand_augment(x, 2, 9, torch.Generator().manual_seed(5), dense=True)
    assert len(calls) == 2


class HostCopies(torch.overrides.TorchFunctionMode):
    """Records the calls that, on an accelerator, copy host numbers to the device: `torch.tensor` and friends,
    and `.to(...)`/`.cuda()` with a device. Such a copy is blocking: it waits until the device's queue is empty."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        to_device = name == "to" and ("device" in kwargs or any(isinstance(a, (torch.device, str)) for a in args[1:]))
        if name in ("tensor", "as_tensor", "from_numpy", "cuda") or to_device:
            self.calls.append(name)
        return func(*args, **kwargs)


def test_on_device_augmentation_copies_nothing_from_the_host_after_the_first_batch(monkeypatch):
    import hf_vit.augment as augment

    real = augment.rand_augment
    monkeypatch.setattr(augment, "rand_augment", lambda *a, **k: real(*a, **k, dense=True))  # the accelerator's path
    cfg = AugmentConfig(randaugment_ops=2, random_erasing=0.5, mixup_alpha=0.8, cutmix_alpha=1.0)
    aug = BatchAugment(CIFAR10_MEAN, CIFAR10_STD, cfg)
    images, labels = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8), torch.arange(16) % 10
    with HostCopies() as copies:
        for seed in range(8):  # 16 RandAugment rounds: the sharpness target (a blur) is built in every one
            aug(images, labels, seed)
    assert copies.calls == []
    # Images on another device: the mean and std are copied there with the first batch, and only then.
    with HostCopies() as copies:
        for _ in range(3):
            out = aug.normalize(torch.zeros(2, 3, 4, 4, device="meta"))
    assert copies.calls == ["to", "to"] and out.device.type == "meta"
    # The host copies stay: a data-loader worker (a forked or unpickled copy) normalises evaluation batches on
    # the CPU and must never touch an accelerator's tensors.
    assert aug.mean.device.type == "cpu" and pickle.loads(pickle.dumps(aug))._on_device == {}
    with HostCopies() as copies:
        host = aug.normalize(images)
    assert copies.calls == [] and torch.equal(host, BatchAugment(CIFAR10_MEAN, CIFAR10_STD).normalize(images))


def test_evaluation_batches_in_a_worker_process_after_the_trainer_used_the_device(tiny):
    """The Trainer augments on the device with the collator's own BatchAugment; evaluation batches are then
    collated in data-loader workers, on the CPU. A copy of the constants made for the device (here `meta`, which
    cannot be copied back) must not leak into them."""
    data = prepare_data(
        str(tiny), 32, 3, CIFAR10_MEAN, CIFAR10_STD, AugmentConfig(), validation_size=20, augment_on_device=True
    )
    data.collator.augment.normalize(torch.zeros(2, 3, 32, 32, dtype=torch.uint8, device="meta"))  # a training step
    loader = torch.utils.data.DataLoader(data.validation, batch_size=8, collate_fn=data.collator, num_workers=1)
    in_worker = torch.cat([b["pixel_values"] for b in loader])
    batches = [list(range(i, min(i + 8, 20))) for i in range(0, 20, 8)]
    here = torch.cat([data.collator(data.validation.__getitems__(b))["pixel_values"] for b in batches])
    assert in_worker.device.type == "cpu" and torch.equal(in_worker, here)


# ---------------------------------------------------------------------------
# Review fixes (session 28): each test fails on the code before it
# ---------------------------------------------------------------------------
def test_same_named_folders_never_share_decoded_pixels(tmp_path):
    """datasets fingerprints a local folder by its name: two folders called `tiny` in one process must still
    get their own pixels (and the row count must match on a memory hit)."""
    a = make_tiny_cifar(tmp_path / "a" / "tiny", n_train=30, n_test=10, seed=1)
    b = make_tiny_cifar(tmp_path / "b" / "tiny", n_train=50, n_test=10, seed=2)
    pixels = {}
    for folder in (a, b):
        ds = load_dataset(str(folder))["train"]
        pixels[folder] = decode_images(ds, "img", 32)
        first = np.asarray(ds[0]["img"].convert("RGB")).transpose(2, 0, 1)
        assert pixels[folder].shape[0] == len(ds) and np.array_equal(pixels[folder][0].numpy(), first)
    assert pixels[a].shape[0] == 30 and pixels[b].shape[0] == 50


def test_transparent_pixels_are_white_in_training_as_in_the_pipeline(tmp_path):
    """An RGBA image whose right half is transparent: training's decode, the evaluation's batch preprocessing
    and the saved image processor (what pipeline() uses) all see white there, not the hidden colour."""
    import datasets
    from PIL import Image

    from hf_vit.analysis import BatchPreprocessor

    rgba = np.zeros((32, 32, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:, :16, 3] = 255  # left half opaque red, right half transparent (its hidden colour red too)
    image = Image.fromarray(rgba, "RGBA")
    ds = datasets.Dataset.from_dict({"img": [image]}, features=datasets.Features({"img": datasets.Image()}))
    decoded = decode_images(ds, "img", 32, cache=False)[0].numpy()  # (3, 32, 32)
    assert (decoded[:, :, 16:] == 255).all() and (decoded[:, :, :16] == np.array([200, 0, 0])[:, None, None]).all()

    processor = make_image_processor(HfViTConfig())
    mean, std = torch.tensor(CIFAR10_MEAN).view(3, 1, 1), torch.tensor(CIFAR10_STD).view(3, 1, 1)
    trained = (torch.from_numpy(decoded).float() / 255 - mean) / std
    assert torch.allclose(BatchPreprocessor(processor)([image])[0], trained, atol=1e-5)  # the evaluation's path
    # transformers' own processor lays transparency on white since its convert_to_rgb composites (5.24 does;
    # 5.17 drops the alpha band and keeps the hidden colour, which the README notes).
    from transformers.image_transforms import convert_to_rgb

    if np.asarray(convert_to_rgb(image))[0, 20].tolist() == [255, 255, 255]:
        assert torch.allclose(processor(images=[image], return_tensors="pt")["pixel_values"][0], trained, atol=1e-5)


def test_validation_and_test_subsets_do_not_move_with_max_train_samples(tiny):
    kwargs = dict(image_size=32, num_channels=3, image_mean=CIFAR10_MEAN, image_std=CIFAR10_STD, seed=0,
                  validation_size=30, max_eval_samples=10, max_test_samples=8)  # fmt: skip
    runs = [prepare_data(str(tiny), max_train_samples=m, **kwargs) for m in (None, 50, 20)]
    for data in runs[1:]:
        assert torch.equal(data.validation.indices, runs[0].validation.indices)
        assert torch.equal(data.test.indices, runs[0].test.indices)
    assert [len(d.train) for d in runs] == [70, 50, 20]


def test_a_validation_split_is_used_when_named_and_mentioned_when_not(tmp_path, caplog):
    import datasets

    folder = make_tiny_cifar(tmp_path / "withval", n_train=40, n_test=10)
    train = datasets.Dataset.from_parquet(str(folder / "plain_text" / "train-00000-of-00001.parquet"))
    train.select(range(12)).to_parquet(str(folder / "plain_text" / "validation-00000-of-00001.parquet"))
    readme = (folder / "README.md").read_text()
    (folder / "README.md").write_text(readme.replace(
        "  - split: test\n", "  - split: validation\n    path: plain_text/validation-*\n  - split: test\n"))  # fmt: skip
    kwargs = dict(image_size=32, num_channels=3, image_mean=CIFAR10_MEAN, image_std=CIFAR10_STD, validation_size=10)
    with caplog.at_level("WARNING", logger="hf_vit.data"):
        carved = prepare_data(str(folder), **kwargs)
    assert (len(carved.train), len(carved.validation)) == (30, 10)
    assert "has a 'validation' split, which is not used" in caplog.text and "Pass validation_split='validation'" in caplog.text
    named = prepare_data(str(folder), validation_split="validation", **kwargs)
    assert (len(named.train), len(named.validation)) == (40, 12)
    assert torch.equal(named.validation.pixels, decode_images(load_dataset(str(folder))["validation"], "img", 32))
    with pytest.raises(DatasetError, match="validation_split='test' is also the test split"):
        prepare_data(str(folder), validation_split="test", **kwargs)


def test_an_unused_split_named_valid_is_mentioned_too(tmp_path, caplog):
    """A data/ folder of train/valid/test parquet files (datasets keeps the name 'valid'): only a split called
    'validation' was mentioned, so a 'valid', 'val' or 'dev' split went unused without a word."""
    import datasets

    folder = make_tiny_cifar(tmp_path / "withvalid", n_train=40, n_test=10)
    (folder / "README.md").unlink()  # the parquet files alone, in the Hub's data/ folder: their names are the splits
    (folder / "plain_text").rename(folder / "data")
    train = datasets.Dataset.from_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    train.select(range(12)).to_parquet(str(folder / "data" / "valid-00000-of-00001.parquet"))
    kwargs = dict(image_size=32, num_channels=3, image_mean=CIFAR10_MEAN, image_std=CIFAR10_STD, validation_size=10)
    with caplog.at_level("WARNING", logger="hf_vit.data"):
        prepare_data(str(folder), **kwargs)
    assert "the dataset has a 'valid' split, which is not used" in caplog.text
    assert "Pass validation_split='valid' to choose checkpoints on it instead" in caplog.text
    assert len(prepare_data(str(folder), validation_split="valid", **kwargs).validation) == 12
    caplog.clear()  # with no carve, training would run without any validation while that split sits unused
    with caplog.at_level("WARNING", logger="hf_vit.data"):
        prepare_data(str(folder), **{**kwargs, "validation_size": 0})
    assert ("the dataset has a 'valid' split, which is not used: training runs without validation (validation_size=0). "
            "Pass validation_split='valid' to choose checkpoints on it instead.") in caplog.text


def test_a_validation_size_that_does_not_fit_offers_one_that_does(tmp_path):
    """The default carve (5000, CIFAR-10's) is the first thing a smaller dataset meets: the message said only
    "Choose a smaller validation size"; it now offers one that fits, which then trains."""
    folder = make_tiny_cifar(tmp_path / "d", n_train=60, n_test=10)
    kwargs = dict(image_size=32, num_channels=3, image_mean=CIFAR10_MEAN, image_std=CIFAR10_STD)
    with flags_in_messages(), pytest.raises(DatasetError) as err:
        prepare_data(str(folder), validation_size=5000, **kwargs)
    assert str(err.value) == ("--validation_size 5000 leaves no training images (the train split has 60). Choose a "
                              "smaller validation size, e.g. --validation_size 6 (a tenth of the train split).")
    assert len(prepare_data(str(folder), validation_size=6, **kwargs).validation) == 6
    with pytest.raises(DatasetError, match=r"at most 4 can be carved .*e\.g\. validation_size=1\.$"):
        stratified_split(np.array([0] * 5 + [1]), 5)  # class 1's one image stays: 4 to spare, a tenth of 6 is 0
    with pytest.raises(DatasetError, match=r"e\.g\. validation_size=0 \(no validation\)\.$"):
        stratified_split(np.array([0, 1, 2]), 2)  # one image per class: none can be spared


def test_the_carve_leaves_every_class_a_training_image():
    labels = np.array([0] * 50 + [1])
    train, val = stratified_split(labels, 26, seed=0)
    assert len(val) == 26 and 1 in labels[train]  # the one image of class 1 stays in train
    labels = np.array([0] * 50 + [1] * 3)
    assert np.bincount(labels[stratified_split(labels, 50, seed=0)[0]], minlength=2).min() >= 1
    with pytest.raises(DatasetError, match="would leave some class without training images"):
        stratified_split(np.array([0] * 5 + [1]), 5)


def test_a_string_label_column_is_named_not_a_numpy_error(tmp_path):
    """A label column of class names ("cat", "dog"): first a numpy UFuncTypeError, then refused (`holds <U3 values
    ... cast it with ds.class_encode_column`); now the names are the classes, numbered as class_encode_column numbers
    them (sorted), and a test label that no training image has is named."""
    import datasets
    from PIL import Image

    image = Image.new("RGB", (32, 32))
    features = datasets.Features({"img": datasets.Image(), "label": datasets.Value("string")})
    folder = tmp_path / "strlab"
    (folder / "data").mkdir(parents=True)

    def write(split, labels):
        datasets.Dataset.from_dict({"img": [image] * len(labels), "label": labels}, features=features).to_parquet(
            str(folder / "data" / f"{split}-00000-of-00001.parquet"))  # fmt: skip

    kwargs = dict(image_size=32, num_channels=3, image_mean=CIFAR10_MEAN, image_std=CIFAR10_STD, validation_size=0)
    write("train", ["dog", "cat", "red fox", "cat"])
    write("test", ["cat", "cow", "wolf", "dog"])
    with pytest.raises(DatasetError, match=r"^2 class name\(s\) in the 'test' split are not among the 3 classes of the "
                                           r"train split \('cat', 'dog', 'red fox'\): 'cow', 'wolf'\. A model learns"):
        prepare_data(str(folder), **kwargs)
    write("test", ["red fox", "cat", "dog"])
    data = prepare_data(str(folder), **kwargs)
    assert data.label_names == ["cat", "dog", "red fox"] and data.num_labels == 3
    assert data.train.labels.tolist() == [1, 0, 2, 0] and data.test.labels.tolist() == [2, 0, 1]


def test_float_labels_are_refused_with_a_cast_that_works(tmp_path):
    """Whole-number labels stored as floats (a pandas round trip): the advice was `ds.class_encode_column`, which
    would make classes named '0.0' and '1.0'; the cast the message gives now keeps the ids, and then it trains."""
    import datasets
    from PIL import Image

    features = datasets.Features({"img": datasets.Image(), "label": datasets.Value("float64")})
    folder = tmp_path / "floats"
    (folder / "data").mkdir(parents=True)
    for split in ("train", "test"):
        datasets.Dataset.from_dict({"img": [Image.new("RGB", (32, 32))] * 4, "label": [0.0, 1.0, 2.0, 1.0]},
                                   features=features).to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    kwargs = dict(image_size=32, num_channels=3, image_mean=CIFAR10_MEAN, image_std=CIFAR10_STD, validation_size=0)
    with pytest.raises(DatasetError, match=r"holds float64 values; it must hold integer class ids 0\.\.num_labels-1 "
                                           r"or class names\. Cast it, e\.g\. `ds = ds\.cast_column") as err:
        prepare_data(str(folder), **kwargs)
    cast = re.search(r"`ds = (.*?)`", str(err.value))[1]
    for path in (folder / "data").glob("*.parquet"):
        ds = datasets.Dataset.from_parquet(str(path))
        ds = eval(cast)  # noqa: S307 (the message's own code)
        path.unlink()
        ds.to_parquet(str(path))
    data = prepare_data(str(folder), **kwargs)
    assert data.num_labels == 3 and data.train.labels.tolist() == [0, 1, 2, 1]


def test_rotate_and_shear_keep_their_angles_on_a_non_square_image():
    import math

    from hf_vit.augment import RANDAUGMENT_OPS

    for height, width in ((64, 64), (32, 128)):
        x = torch.zeros(1, 1, height, width)
        x[0, 0, height // 2 - 1 : height // 2 + 1, :] = 1  # a horizontal line through the centre
        y = RANDAUGMENT_OPS["rotate"](x, torch.ones(1))[0, 0]  # v=1: 30 degrees
        ys, xs = torch.nonzero(y > 0.5, as_tuple=True)
        slope = np.polyfit(xs.numpy(), ys.numpy(), 1)[0]
        assert math.degrees(math.atan(abs(slope))) == pytest.approx(30, abs=1.0), (height, width)
        x = torch.zeros(1, 1, height, width)
        x[0, 0, :, width // 2 - 1 : width // 2 + 1] = 1  # a vertical line, sheared along x by 0.3 per row
        y = RANDAUGMENT_OPS["shear_x"](x, torch.ones(1))[0, 0]
        ys, xs = torch.nonzero(y > 0.5, as_tuple=True)
        assert abs(np.polyfit(ys.numpy(), xs.numpy(), 1)[0]) == pytest.approx(0.3, abs=0.03), (height, width)


def test_a_one_class_train_split_is_refused_and_classes_without_training_images_are_named(tmp_path, caplog):
    # One class: transformers would train a one-label head as a regression (MSE on the class id), silently.
    one = make_tiny_cifar(tmp_path / "one", n_train=6, n_test=4, names=["cat"])
    with pytest.raises(DatasetError, match=r"'train' split holds only 'cat': a classifier needs .* two classes"):
        prepare_data(str(one), 32, 3, CIFAR10_MEAN, CIFAR10_STD, validation_size=0)
    # Ten named classes, four training images: six classes are never seen in training, and the log says which.
    few = make_tiny_cifar(tmp_path / "few", n_train=40, n_test=4)
    with caplog.at_level("WARNING", logger="hf_vit.data"):
        data = prepare_data(str(few), 32, 3, CIFAR10_MEAN, CIFAR10_STD, validation_size=0, max_train_samples=4)
    unseen = sorted(set(range(10)) - set(data.train.labels[data.train.indices].tolist()))
    assert len(unseen) >= 6
    warning = next(r.getMessage() for r in caplog.records if "no training images" in r.getMessage())
    assert warning.startswith(f"{len(unseen)} of the 10 classes have no training images")
    assert all(repr(data.label_names[i]) in warning for i in unseen)


def test_sharpness_solarize_and_equalize_match_pil_at_their_edges():
    """Three RandAugment ops that differed from PIL where it shows: sharpness blurred the 1-pixel border (12% of a
    32x32 image) that PIL's SMOOTH filter keeps; solarize at strength 0 turned pure white black (its comment said
    nothing is inverted); equalize turned a one-level channel (black, a pure colour's zero channels) mid-grey."""
    from PIL import Image, ImageFilter, ImageOps

    from hf_vit.augment import RANDAUGMENT_OPS, _blurred

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    pil = np.asarray(Image.fromarray(image).filter(ImageFilter.SMOOTH)).astype(np.float32) / 255
    ours = _blurred(x)[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - pil).max() <= 1 / 255 + 1e-6  # PIL rounds to whole levels
    assert np.array_equal(ours[0], image[0] / np.float32(255)) and np.array_equal(ours[:, -1], image[:, -1] / np.float32(255))

    levels = torch.tensor([0, 0.5, 0.9, 254 / 255, 1.0]).reshape(1, 1, 1, 5)
    assert torch.equal(RANDAUGMENT_OPS["solarize"](levels, torch.tensor([0.0])), levels)
    assert torch.allclose(RANDAUGMENT_OPS["solarize"](levels, torch.tensor([1.0])), 1 - levels)
    assert torch.allclose(RANDAUGMENT_OPS["solarize"](levels, torch.tensor([-0.5])), torch.where(levels >= 128 / 255, 1 - levels, levels))

    red_ramp = np.zeros((8, 8, 3), np.uint8)
    red_ramp[..., 0] = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    equalized = RANDAUGMENT_OPS["equalize"](torch.from_numpy(red_ramp).permute(2, 0, 1)[None].float() / 255, torch.tensor([0.0]))
    pil_equalized = np.asarray(ImageOps.equalize(Image.fromarray(red_ramp)))
    assert pil_equalized[..., 1:].max() == 0 and equalized[0, 1:].max() == 0  # green and blue stay black, as in PIL
    # the ramp is spread as the op's stand-in for equalisation does it: standardised to mean 0.5 and spread 0.25
    # (the ramp had 0.49 and 0.29), its levels kept in order
    ramp = equalized[0, 0].flatten()
    assert float(ramp.mean()) == pytest.approx(0.5, abs=1e-4) and float(ramp.std()) == pytest.approx(0.25, abs=1e-4)
    assert (ramp.diff() > 0).all()


def test_the_line_that_makes_a_test_split_runs_for_many_classes_and_few_images(tmp_path):
    """A dataset without a test split of 30 images in 5 classes: the line the message gives,
    `train_test_split(test_size=0.1, seed=0, stratify_by_column='label')`, stopped in datasets with 'The test_size = 3
    should be greater or equal to the number of classes = 5'; now it asks for one test image per class at least."""
    import re

    import datasets
    from PIL import Image

    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=list("abcde"))})
    folder = tmp_path / "few"
    folder.mkdir()
    datasets.Dataset.from_dict({"img": [Image.new("RGB", (32, 32))] * 30, "label": [i % 5 for i in range(30)]},
                               features=features).to_parquet(str(folder / "train-00000-of-00001.parquet"))  # fmt: skip
    with pytest.raises(DatasetError) as err:
        prepare_data(str(folder), image_size=32, num_channels=3, image_mean=CIFAR10_MEAN, image_std=CIFAR10_STD)
    line = re.search(r"`d = (.*?)`", str(err.value))[1]
    assert "test_size=5, seed=0, stratify_by_column='label'" in line, line
    d = eval(line)  # noqa: S307 (the message's own code)
    assert sorted(d["test"]["label"]) == [0, 1, 2, 3, 4]


LABELLED = dict(image_size=32, num_channels=3, image_mean=CIFAR10_MEAN, image_std=CIFAR10_STD, validation_size=0)


def write_labels(folder, split, labels):
    """One split of blank 32x32 images with these labels (class names as text, or integer ids) as parquet."""
    import datasets
    from PIL import Image

    dtype = "string" if isinstance(labels[0], str) else "int64"
    features = datasets.Features({"img": datasets.Image(), "label": datasets.Value(dtype)})
    (folder / "data").mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict({"img": [Image.new("RGB", (32, 32))] * len(labels), "label": labels},
                               features=features).to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))


def run_advice(folder, message, split="*", fill=None):
    """Run the `ds = ...` code a message gives on the split's parquet files (`fill` for its `[...]`) and save them."""
    import datasets

    code = re.search(r"`ds = (.*?)`", message)[1]
    code = code.replace("[...]", fill) if fill else code
    for path in (folder / "data").glob(f"{split}-*.parquet"):
        ds = eval(code, {"ds": datasets.Dataset.from_parquet(str(path)), "datasets": datasets})  # noqa: S307
        path.unlink()
        ds.to_parquet(str(path))


def refused_by_training_and_evaluation(folder, expected: str) -> str:
    """The message (matching `expected`) with which both training's and the evaluation's loading refuse `folder`."""
    from hf_vit.analysis import load_split

    with pytest.raises(DatasetError, match=rf"^dataset_name '{re.escape(str(folder))}': {expected}"):
        prepare_data(str(folder), **LABELLED)
    with pytest.raises(DatasetError, match=expected) as err:  # the evaluation's loading
        load_split(str(folder), "test")
    return str(err.value)


def test_class_names_differing_only_in_case_or_spaces_are_refused_and_numbers_sort_as_numbers(tmp_path, caplog):
    """Text class names were sorted as they came: 'cat' and 'Cat ' silently became two classes, and names that are
    numbers sorted as text ('10' before '2'). Now such near-duplicates are refused with the cleaning to do, a test
    name spelled another way is named as such, and whole-number names are numbered as numbers."""
    folder = tmp_path / "names"
    write_labels(folder, "train", ["cat", "Cat ", "dog", "Dog", "fox"])
    write_labels(folder, "test", ["cat", "dog"])
    with pytest.raises(DatasetError, match=r"^the label column 'label' of the 'train' split holds class names that "
                                           r"differ only in case or surrounding spaces \(or leading zeros\): "
                                           r"'Cat ' / 'cat'; 'Dog' / 'dog'\. Each would be a class of its own\. Clean "
                                           r"the column, e\.g\. `ds = ds\.map\(") as err:
        prepare_data(str(folder), **LABELLED)
    assert "datasets.ClassLabel(names=[...])" in str(err.value)
    run_advice(folder, str(err.value), "train")
    data = prepare_data(str(folder), **LABELLED)
    assert data.label_names == ["cat", "dog", "fox"] and data.train.labels.tolist() == [0, 0, 1, 1, 2]
    write_labels(folder, "test", ["cat", "Fox "])  # the test split spells a class another way
    with pytest.raises(DatasetError, match=r"'Fox ' is 'fox', but for case or spaces\): clean the column"):
        prepare_data(str(folder), **LABELLED)

    write_labels(folder, "train", ["10", "2", "1", "2", "10"])
    write_labels(folder, "test", ["2", "10", "1"])
    with caplog.at_level("INFO", logger="hf_vit.data"):
        data = prepare_data(str(folder), **LABELLED)
    assert data.label_names == ["1", "2", "10"] and data.train.labels.tolist() == [2, 1, 0, 1, 2]
    assert data.test.labels.tolist() == [1, 2, 0]
    assert "numbered in numeric order: '1' -> 0, '2' -> 1, '10' -> 2" in caplog.text
    write_labels(folder, "train", ["1", "01", "2"])
    with pytest.raises(DatasetError, match=r"\(or leading zeros\): '01' / '1'\."):
        prepare_data(str(folder), **LABELLED)


def test_whole_number_class_names_numbered_otherwise_than_text_order_are_warned_of(tmp_path, caplog):
    """Class names '1', '2', '10' are numbered as numbers ('10' -> 2), not as text sorts them (datasets'
    class_encode_column: '10' -> 1). The note saying so was logged at INFO, which train.py does not show, so the
    user never learnt which id each class got. A warning now, once, and only where the two orders differ."""
    folder = tmp_path / "numbers"
    write_labels(folder, "test", ["2", "1"])
    note = ("the class names of 'label' are whole numbers, numbered in numeric order: '1' -> 0, '2' -> 1, '10' -> 2 "
            "(in text order, as datasets' class_encode_column numbers them, '10' would come before '2')")
    for train, shown in ((["10", "2", "1", "2"], [note]), (["2", "0", "1"], [])):  # '0'..'2': one order either way
        write_labels(folder, "train", train)
        caplog.clear()
        with caplog.at_level("WARNING", logger="hf_vit.data"):
            prepare_data(str(folder), **LABELLED)
        assert [r.getMessage() for r in caplog.records if "whole numbers" in r.getMessage()] == shown


def test_a_label_column_of_names_in_one_split_and_ids_in_another_is_named(tmp_path):
    """Class names in the train split's file, class ids in the test split's: datasets read the ids as the names '0',
    '1', '2' (blamed as classes the model lacks), or, the other way round, failed with DatasetGenerationError ('An
    error occurred while generating the dataset'). Now both say which column and splits, and the cast that fixes it."""
    for names, ids in (("train", "test"), ("test", "train")):
        folder = tmp_path / f"names_in_{names}"
        write_labels(folder, names, ["dog", "cat", "fox", "cat"][: 4 if names == "train" else 2])
        write_labels(folder, ids, [1, 0, 2] + [0] * (ids == "train"))
        expected = (rf"the column 'label' holds text in the '{names}' split \({names}-00000-of-00001\.parquet\) but "
                    rf"numbers in the '{ids}' split \({ids}-00000-of-00001\.parquet\)\. datasets reads every split as "
                    r"one type, .* `ds = ds\.cast_column\('label', datasets\.ClassLabel\(names=\[\.\.\.\]\)\)`")
        message = refused_by_training_and_evaluation(folder, expected)
    # the message's cast, with the classes in id order, on every split: then it trains
    run_advice(folder, message, fill="['cat', 'dog', 'fox']")
    data = prepare_data(str(folder), **LABELLED)
    assert data.label_names == ["cat", "dog", "fox"] and data.train.labels.tolist() == [1, 0, 2, 0]
    assert data.test.labels.tolist() == [1, 0]


def test_a_blank_class_name_is_named_with_its_row(tmp_path):
    """A label column of names where some cells are '' or ' ' (a CSV's empty field read as text): they trained as a
    class named '' (in id2label, the card and the pipeline's answers). Now the rows are named with the filter."""
    folder = tmp_path / "blank"
    write_labels(folder, "train", ["cat", "", "dog", " ", "dog"])
    write_labels(folder, "test", ["cat", "dog"])
    with pytest.raises(DatasetError, match=r"^2 row\(s\) of the 'train' split have a blank 'label' cell \(first: row 1, "
                                           r"''\), which would be a class without a name\. Drop them, e\.g\. `ds = ") as err:
        prepare_data(str(folder), **LABELLED)
    run_advice(folder, str(err.value), "train")
    data = prepare_data(str(folder), **LABELLED)
    assert data.label_names == ["cat", "dog"] and data.train.labels.tolist() == [0, 1, 1]


def test_a_blank_class_name_in_the_test_split_is_named_as_blank_by_training_and_the_evaluation(tmp_path):
    """Blank names were named as such in the train split only: a test split's '' was "1 class name(s) in the 'test'
    split are not among the 2 classes of the train split ('cat', 'dog'): ''. ... add training images of them" (the
    evaluation: "... Evaluate on the dataset the model was trained on"), as if '' were a class to add. Now both say
    the row is blank, with the filter that drops it."""
    import hf_vit
    from hf_vit.analysis import evaluate_model

    folder = tmp_path / "blank"
    write_labels(folder, "train", ["cat", "dog", "dog"])
    write_labels(folder, "test", ["cat", "dog", " "])
    expected = (r"^1 row\(s\) of the 'test' split{} have a blank 'label' cell \(first: row 2, ' '\), which would be a "
                r"class without a name\. Drop them, e\.g\. `ds = ")
    with pytest.raises(DatasetError, match=expected.format("")):
        prepare_data(str(folder), **LABELLED)
    model = tmp_path / "model"
    config = hf_vit.HfViTConfig(image_size=32, patch_size=8, dim=32, depth=1, heads=2, dim_head=16, mlp_dim=32,
                                id2label={0: "cat", 1: "dog"})  # fmt: skip
    hf_vit.HfViTForImageClassification(config).save_pretrained(model)
    hf_vit.make_image_processor(config).save_pretrained(model)
    with pytest.raises(DatasetError, match=expected.format(f" of {re.escape(repr(str(folder)))}")) as err:
        evaluate_model(str(model), dataset=str(folder), device="cpu", progress=False)
    assert not (model / "evaluation").exists()
    run_advice(folder, str(err.value), "test")
    assert prepare_data(str(folder), **LABELLED).test.labels.tolist() == [0, 1]


def test_a_split_numbered_by_other_classes_is_named_not_scored_against_wrong_labels(tmp_path):
    """`class_encode_column` run on each split alone, the test split lacking a class: its file numbers 'cat' 0 and
    'dog' 1, but datasets read it with the train split's classes ('bird', 'cat', 'dog'), so each test image carried
    another class's label, silently, in training's test score and in the evaluation. Now the split is named with
    the renumbering that fixes it."""
    import datasets
    from PIL import Image

    folder = tmp_path / "encoded_apart"
    (folder / "data").mkdir(parents=True)
    for split, labels in (("train", ["bird", "cat", "dog", "cat"]), ("test", ["cat", "dog", "dog"])):
        ds = datasets.Dataset.from_dict({"img": [Image.new("RGB", (32, 32))] * len(labels), "label": labels})
        ds.class_encode_column("label").to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    expected = (r"the 'test' split's file test-00000-of-00001\.parquet numbers the column 'label' by its own classes "
                r"\('cat', 'dog'\), but datasets reads it with the classes \('bird', 'cat', 'dog'\), so its ids would "
                r"name other classes \(its id 0 is 'cat', read as 'bird'\) and it would be scored against wrong labels\. "
                r"Renumber that split by the others' classes: `ds = ds\.align_labels_with_mapping\(\{'bird': 0, "
                r"'cat': 1, 'dog': 2\}, 'label'\)`, and save it again\.$")
    run_advice(folder, refused_by_training_and_evaluation(folder, expected), "test")
    data = prepare_data(str(folder), **LABELLED)
    assert data.label_names == ["bird", "cat", "dog"] and data.test.labels.tolist() == [1, 2, 2]
    # a dataset card that names classes the files call '0'..'9' renames them: no class moves, nothing to refuse
    renamed = make_tiny_cifar(tmp_path / "renamed", n_train=20, n_test=10, names=[str(i) for i in range(10)])
    card = (renamed / "README.md").read_text()
    for i, name in enumerate(CIFAR10_NAMES):
        card = card.replace(f"'{i}': \"{i}\"", f"'{i}': \"{name}\"")
    (renamed / "README.md").write_text(card)
    assert prepare_data(str(renamed), **LABELLED).label_names == CIFAR10_NAMES


def test_images_shrunk_to_a_small_part_of_their_size_are_mentioned(tmp_path, caplog):
    """A dataset of 64x64 images trained at the default 32x32: each image was read at a quarter of its pixels
    without a word (the model's image_size sets the size). Now the log says so and which flags change it;
    images of about the model's size say nothing."""
    big = make_tiny_cifar(tmp_path / "big", n_train=20, n_test=10, size=64)
    with caplog.at_level("WARNING", logger="hf_vit.data"):
        prepare_data(str(big), 48, 3, CIFAR10_MEAN, CIFAR10_STD, validation_size=0)  # 2304 of 4096 pixels: kept
        assert "shrunk" not in caplog.text
        with flags_in_messages():
            prepare_data(str(big), 32, 3, CIFAR10_MEAN, CIFAR10_STD, validation_size=0)
    assert ("the 'train' split's images are 64x64 (its first one) and are shrunk to 32x32, the model's image size; "
            "pass --image_size (with a --patch_size that divides it) to train on more of their detail.") in caplog.text


def test_batch_augment_in_ones_own_loop_draws_from_torchs_seed():
    """`aug(images, labels)` in one's own loop, as a transform is called: without a seed each call draws its own
    from torch's global generator (so torch.manual_seed repeats a run), instead of a TypeError asking for a seed whose
    right value (a new one per batch) it did not say. A seed given still decides the batch alone."""
    aug = BatchAugment(CIFAR10_MEAN, CIFAR10_STD, AugmentConfig(pad=4, hflip=True))
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(8)
    torch.manual_seed(0)
    first, second = aug(images, labels), aug(images, labels)
    torch.manual_seed(0)
    again = aug(images, labels)
    assert torch.equal(first["pixel_values"], again["pixel_values"])
    assert not torch.equal(first["pixel_values"], second["pixel_values"])  # a new draw per batch
    assert first["pixel_values"].shape == (8, 3, 32, 32) and torch.equal(first["labels"], labels)
    assert torch.equal(aug(images, labels, 5)["pixel_values"], aug(images, labels, seed=5)["pixel_values"])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_dataloader_over_image_tensor_dataset_without_the_collator_names_it(num_workers):
    """ImageTensorDataset hands out whole uint8 batches for BatchCollator. A DataLoader left with torch's default
    collate failed inside torch with `KeyError: 0`; now the error names the collator to pass, in a worker too."""
    pixels = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    dataset = ImageTensorDataset(pixels, torch.arange(8) % 2, augment=True)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=num_workers)
    with pytest.raises(TypeError, match=r"collate_fn=BatchCollator\(BatchAugment\(mean, std, AugmentConfig\(\)\)\)"):
        next(iter(loader))
    collator = BatchCollator(BatchAugment(CIFAR10_MEAN, CIFAR10_STD, AugmentConfig()))
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=num_workers, collate_fn=collator)))
    assert batch["pixel_values"].shape == (4, 3, 32, 32) and batch["pixel_values"].dtype == torch.float32
    assert dataset.__getitems__([0, 1])["labels"].tolist() == [0, 1]


def test_one_split_loaded_or_saved_alone_says_how_to_save_it_as_a_split(tiny, tmp_path):
    """A learner's own `ds = load_dataset(...)["test"]`: passed as an object, the advice was DatasetDict's
    save_to_disk; followed with the split alone (`ds.save_to_disk`), datasets refused the folder with "Please use
    `load_from_disk` instead", which hf_vit's callers cannot do. Both now say to save it under a split name, and that
    folder loads."""
    import datasets

    split = datasets.load_dataset(str(tiny))["test"]
    with pytest.raises(DatasetError, match=r"got a Dataset object.*datasets\.DatasetDict\(\{'test': ds\}\)\.save_to_disk"):
        load_dataset(split)
    split.save_to_disk(str(tmp_path / "alone"))
    with pytest.raises(DatasetError, match=r"one split saved alone.*DatasetDict\(\{'test': datasets\.load_from_disk\(.*training needs 'train' and 'test'"):
        load_dataset(str(tmp_path / "alone"))
    datasets.DatasetDict({"test": datasets.load_from_disk(str(tmp_path / "alone"))}).save_to_disk(str(tmp_path / "my_data"))
    assert len(load_dataset(str(tmp_path / "my_data"))["test"]) == len(split)


def test_a_streamed_dataset_is_told_to_pass_the_id_or_folder_it_streams_from(tiny):
    """A dataset loaded with streaming=True was told to `save_to_disk`, which a stream lacks (AttributeError when
    followed); now the message says that training reads the dataset whole and to pass the folder or Hub id, which
    loads."""
    import datasets

    streamed = datasets.load_dataset(str(tiny), streaming=True)
    for given in (streamed, streamed["train"]):
        with pytest.raises(DatasetError) as refused:
            prepare_data(given, 32, 3, CIFAR10_MEAN, CIFAR10_STD, validation_size=20)
        message = str(refused.value)
        assert f"got an {type(given).__name__} object (a dataset loaded with streaming=True)" in message
        assert "save_to_disk" not in message and not hasattr(given, "save_to_disk")
        assert "pass the Hub id or folder it streams from, e.g. `dataset_name='uoft-cs/cifar10'`" in message
    assert len(prepare_data(str(tiny), 32, 3, CIFAR10_MEAN, CIFAR10_STD, validation_size=20).test) == 20


def test_no_room_for_the_datasets_cache_is_named_with_the_fix(tmp_path):
    """A full disk (or quota, or file-size limit) under the datasets cache stopped the load with datasets' traceback
    ending in "DatasetGenerationError: An error occurred while generating the dataset". Now one DatasetError names
    the cache, the OS's reason and the fix; nothing half-written is left: once there is room, the folder loads.
    The limit here is a file-size limit (RLIMIT_FSIZE, what `ulimit -f` sets), the same refusal a full disk gives."""
    folder = make_tiny_cifar(tmp_path / "roomless", n_train=100, n_test=10)  # ~300 kB of Arrow: over the limit
    with file_size_limit(64_000), pytest.raises(DatasetError) as refused:
        load_dataset(str(folder))
    message = str(refused.value)
    assert re.fullmatch(
        r"no room to write the datasets cache '.*hf_vit-local/\w+/\w+' \(File too large \(a file-size limit: "
        r"`ulimit -f`, or the file system's\)\): datasets keeps an Arrow copy of the dataset there, about as large as "
        r"the folder's files \(0\.\d MB\)\. Free space there, or point HF_DATASETS_CACHE \(or HF_HOME\) at a disk with "
        r"room, and run again\.", message), message
    assert len(load_dataset(str(folder))["train"]) == 100


def test_a_pad_as_large_as_the_image_is_refused_before_loading(tiny):
    """--pad 32 on 32x32 images: the crop's window (offset 0..2 * pad) could miss the image entirely, so a share of
    the training images were all padding (black) with a label, without a word. Refused now, before any loading; a
    pad one below the side still crops (every window holds a pixel of the image)."""
    for pad, size, expected in ((32, 32, "--pad 32 pads each side of the 32x32 images by 32 pixels"),
                                (12, (48, 12), "--pad 12 pads each side of the 48x12 images by 12 pixels")):
        with flags_in_messages(), pytest.raises(DatasetError) as refused:
            prepare_data("./no-such-folder", size, 3, CIFAR10_MEAN, CIFAR10_STD, augment=AugmentConfig(pad=pad))
        assert str(refused.value).startswith(
            f"{expected}, as much as their shorter side or more: a random crop could then hold only padding, a black "
            f"image trained with its label. Pad by less than the side, e.g. --pad {max(1, min(pad, 32) // 8)}")
    generator = torch.Generator().manual_seed(0)
    images = torch.full((2000, 1, 4, 4), 255, dtype=torch.uint8)
    assert (random_crop(images, 3, generator).amax(dim=(1, 2, 3)) == 255).all()  # pad 3 < 4: never all padding
    assert (random_crop(images, 4, generator).amax(dim=(1, 2, 3)) == 0).any()  # pad 4: some crops are all padding
    data = prepare_data(str(tiny), 32, 3, CIFAR10_MEAN, CIFAR10_STD, augment=AugmentConfig(pad=31), validation_size=20)
    assert len(data.train) == 80


def test_a_decode_cache_that_finds_no_room_says_which_limit_and_the_fix(tiny, caplog):
    """A cache write cut short (a full disk, or a file-size limit) warned 'could not cache decoded images at ...
    (172800 requested and 20000 written)': numpy's short write, naming no cause. Now the warning names the limit
    met and the fix; the images are still decoded, and no half file is left. RLIMIT_FSIZE (`ulimit -f`) stands in
    for the disk here."""
    ds = load_dataset(str(tiny))["train"]
    size = (24, 24)  # a size no other test decodes: nothing cached yet
    with file_size_limit(20_000):
        pixels = decode_images(ds, "img", size, cache=False)
        with caplog.at_level("WARNING", logger="hf_vit.data"):
            cached = decode_images(ds, "img", size)
    assert torch.equal(cached, pixels)
    assert re.search(r"could not cache decoded images at \S+\.npy \(.*: the file-size limit \(`ulimit -f`\) is 20,000 "
                     r"bytes and the decoded images take 172,800; raise it\); keeping them in memory only: each run "
                     r"decodes them again", caplog.text), caplog.text
    folder = Path(ds.cache_files[0]["filename"]).parent
    assert not [p.name for p in folder.iterdir() if "24x24" in p.name]  # no half-written cache or temporary file


def test_statistics_for_another_channel_count_are_refused_before_decoding(tiny):
    """prepare_data(num_channels=1) with CIFAR-10's 3-value mean and std prepared everything (decoding included) and
    failed at the first training batch, inside the Trainer ('BatchAugment takes images of shape (B, C, H, W) with
    C = 3'). Now refused at once, naming both counts; one value each trains."""
    with pytest.raises(DatasetError) as refused:
        prepare_data("./no-such-folder", 32, 1, CIFAR10_MEAN, CIFAR10_STD)
    assert str(refused.value) == (
        "image_mean and image_std need one value per channel (num_channels=1), got 3 and 3. Pass the statistics of "
        "1-channel images (the model's image processor's image_mean and image_std), or the num_channels they were "
        "computed for.")
    data = prepare_data(str(tiny), 32, 1, [0.5], [0.25], validation_size=20)
    assert data.collator(data.train.__getitems__([0, 1]))["pixel_values"].shape == (2, 1, 32, 32)
    # one value as a 0-d tensor or array is one value, as BatchAugment takes it (len() of it was a TypeError)
    for mean, std in ((torch.tensor(0.5), torch.tensor(0.25)), (np.array(0.5), np.float64(0.25))):
        data = prepare_data(str(tiny), 32, 1, mean, std, validation_size=20)
        assert data.collator(data.train.__getitems__([0]))["pixel_values"].shape == (1, 1, 32, 32)


def test_an_image_cell_without_bytes_or_path_is_named_with_its_row():
    """A parquet file written without datasets can hold an image cell whose bytes and path are both empty (not a null
    cell, which is named before decoding): the error was 'an image cell holds neither bytes nor a path.', naming
    neither the row, the split nor the fix."""
    import io

    import datasets
    import pyarrow as pa
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    cells = pa.array([{"bytes": png.getvalue(), "path": None}, {"bytes": None, "path": None}],
                     type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    ds = datasets.Dataset(pa.table({"img": cells, "label": [0, 1]})).cast_column("img", datasets.Image())
    with pytest.raises(DatasetError) as refused:
        decode_images(ds, "img", 8, cache=False, split="train")
    assert str(refused.value) == (
        "row 1 of the 'train' split cannot be decoded: its 'img' cell is not a readable image (the cell holds neither "
        "image bytes nor a file path). Re-encode or drop that row.")
