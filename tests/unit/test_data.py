import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cnnlab.config import load_config
from cnnlab.data import load_data
from cnnlab.data.arrays import stratified_split
from cnnlab.data.augment import cutout, random_crop, random_flip
from cnnlab.errors import DataError


def data_cfg(**data):
    return load_config({"data": data}).data


def test_synthetic_data_is_deterministic_and_balanced():
    cfg = data_cfg(dataset="synthetic", val_split=0)
    a, b = load_data(cfg), load_data(cfg)
    assert torch.equal(a.train.images, b.train.images)
    assert a.train.images.dtype == torch.uint8
    counts = torch.bincount(a.train.labels)
    assert counts.max() - counts.min() <= 1


def test_digits_split_sizes_and_statistics():
    bundle = load_data(data_cfg(dataset="digits", val_split=0.1))
    assert bundle.in_channels == 1 and bundle.image_size == (8, 8) and bundle.num_classes == 10
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 1797
    assert len(bundle.test) == pytest.approx(0.2 * 1797, abs=10)
    pixels = bundle.train.images.float() / 255
    assert bundle.mean[0] == pytest.approx(float(pixels.mean()), abs=1e-5)
    assert bundle.std[0] == pytest.approx(float(pixels.std()), rel=1e-3)


def test_validation_split_is_stratified_and_seeded():
    labels = torch.arange(1000) % 10
    kept, held = stratified_split(labels, 0.1, seed=1, purpose="val")
    assert len(held) == 100
    assert torch.equal(torch.bincount(labels[held]), torch.full((10,), 10))
    again, _ = stratified_split(labels, 0.1, seed=1, purpose="val")
    other, _ = stratified_split(labels, 0.1, seed=2, purpose="val")
    assert torch.equal(kept, again) and not torch.equal(kept, other)
    assert len(set(kept.tolist()) & set(held.tolist())) == 0


@pytest.mark.parametrize("layout", ["nhwc", "nchw", "nhw"])
def test_npz_in_keras_layout(tmp_path, layout):
    rng = np.random.default_rng(0)
    shape = {"nhwc": (40, 6, 6, 3), "nchw": (40, 3, 6, 6), "nhw": (40, 6, 6)}[layout]
    x = rng.integers(0, 256, size=shape, dtype=np.uint8)
    y = np.arange(40) % 4
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:8], y_test=y[:8])
    bundle = load_data(data_cfg(dataset="npz", root=str(tmp_path / "d.npz"), val_split=0))
    channels = 1 if layout == "nhw" else 3
    assert bundle.train.shape == (channels, 6, 6)
    expected = torch.from_numpy(x if layout != "nhwc" else x.transpose(0, 3, 1, 2))
    if layout == "nhw":
        expected = expected[:, None]
    assert torch.equal(bundle.train.images, expected)


def test_npz_float_pixels_in_unit_range_become_uint8(tmp_path):
    x = np.full((10, 4, 4), 0.5, dtype=np.float32)
    np.savez(tmp_path / "f.npz", x_train=x, y_train=np.arange(10) % 2)
    bundle = load_data(data_cfg(dataset="npz", root=str(tmp_path / "f.npz"), val_split=0,
                                test_split=0.2))
    assert int(bundle.train.images.max()) == 128


def test_npz_labels_outside_the_class_range_are_rejected(tmp_path):
    x = np.zeros((10, 4, 4), dtype=np.uint8)
    np.savez(tmp_path / "l.npz", x_train=x, y_train=np.array([0, 1, 2, -1, 0, 1, 2, 0, 1, 2]))
    with pytest.raises(DataError, match="label -1, outside"):
        load_data(data_cfg(dataset="npz", root=str(tmp_path / "l.npz")))
    np.savez(tmp_path / "m.npz", x_train=x, y_train=np.arange(10) % 5)
    with pytest.raises(DataError, match="label 4, outside \\[0, 3\\)"):
        load_data(data_cfg(dataset="npz", root=str(tmp_path / "m.npz"), num_classes=3))


def make_folder(root: Path, classes=("cat", "dog"), per_class=6, size=(10, 10), mode="RGB"):
    for split in ("train", "test"):
        for index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                colour = (40 * index + k, 100, 200) if mode == "RGB" else 40 * index + k
                Image.new(mode, size, colour).save(folder / f"{k}.png")
    return root


def test_imagefolder_is_decoded_once_then_read_from_the_cache(tmp_path):
    root = make_folder(tmp_path / "imgs")
    cfg = data_cfg(dataset="imagefolder", root=str(root), val_split=0,
                   cache_dir=str(tmp_path / "cache"))
    first = load_data(cfg)
    second = load_data(cfg)
    assert not first.cache_hit and second.cache_hit
    assert first.classes == ["cat", "dog"]
    assert first.train.shape == (3, 10, 10)
    assert torch.equal(first.train.images, second.train.images)
    # Touching a file changes its mtime and so the cache key.
    image = root / "train" / "cat" / "0.png"
    Image.new("RGB", (10, 10), (1, 2, 3)).save(image)
    assert not load_data(cfg).cache_hit


def test_an_image_folder_without_a_test_folder_is_split_by_test_split(tmp_path):
    root = make_folder(tmp_path / "imgs", per_class=10)
    flat = tmp_path / "flat"
    (root / "train").rename(flat)
    bundle = load_data(data_cfg(dataset="imagefolder", root=str(flat), val_split=0,
                                test_split=0.2))
    assert (len(bundle.train), len(bundle.test)) == (16, 4)
    assert sorted(bundle.test.labels.tolist()) == [0, 0, 1, 1]  # stratified


def test_given_normalization_statistics_are_used_as_given():
    bundle = load_data(data_cfg(dataset="digits", normalize={"mean": [0.5], "std": [0.25]}))
    assert list(bundle.mean) == [0.5] and list(bundle.std) == [0.25]
    computed = load_data(data_cfg(dataset="digits"))
    assert list(computed.mean) != [0.5]


def test_grey_image_folders_get_one_channel(tmp_path):
    root = make_folder(tmp_path / "grey", mode="L")
    bundle = load_data(data_cfg(dataset="imagefolder", root=str(root), val_split=0))
    assert bundle.in_channels == 1


def test_imagefolder_streams_from_files_when_not_in_memory(tmp_path):
    root = make_folder(tmp_path / "imgs")
    bundle = load_data(data_cfg(dataset="imagefolder", root=str(root), val_split=0,
                                in_memory=False))
    assert not bundle.train.in_memory and len(bundle.train) == 12


def test_imagefolder_errors_name_the_problem(tmp_path):
    root = make_folder(tmp_path / "mixed")
    Image.new("RGB", (12, 12)).save(root / "train" / "cat" / "big.png")
    with pytest.raises(DataError, match="different sizes.*set data.image_size"):
        load_data(data_cfg(dataset="imagefolder", root=str(root)))
    resized = load_data(data_cfg(dataset="imagefolder", root=str(root), image_size=8,
                                 val_split=0))
    assert resized.train.shape == (3, 8, 8)

    root = make_folder(tmp_path / "corrupt")
    (root / "train" / "dog" / "3.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot decode image .*dog/3.png"):
        load_data(data_cfg(dataset="imagefolder", root=str(root)))

    root = make_folder(tmp_path / "empty_class")
    (root / "train" / "bird").mkdir()
    with pytest.raises(DataError, match="class folder .*bird holds no images"):
        load_data(data_cfg(dataset="imagefolder", root=str(root)))

    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match="has no class sub-folders"):
        load_data(data_cfg(dataset="imagefolder", root=str(tmp_path / "nothing")))
    with pytest.raises(DataError, match="does not exist"):
        load_data(data_cfg(dataset="imagefolder", root=str(tmp_path / "missing")))


def test_imagefolder_reads_a_tar_archive_and_refuses_unsafe_members(tmp_path):
    root = make_folder(tmp_path / "src")
    archive = tmp_path / "set.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root / "train", arcname="set/train")
        tar.add(root / "test", arcname="set/test")
    bundle = load_data(data_cfg(dataset="imagefolder", root=str(archive), val_split=0))
    assert bundle.classes == ["cat", "dog"] and len(bundle.train) == 12

    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        payload = b"x"
        info = tarfile.TarInfo("../escaped.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(DataError, match="unsafe member '../escaped.txt'"):
        load_data(data_cfg(dataset="imagefolder", root=str(evil)))
    assert not (tmp_path / "escaped.txt").exists()


def write_idx(path: Path, array: np.ndarray) -> None:
    # The MNIST file format: magic (dtype code 8 = uint8, number of dims), sizes, raw bytes.
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big")
                                                     for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("dataset, folder", [("mnist", "MNIST"),
                                             ("fashion_mnist", "FashionMNIST"),
                                             ("kmnist", "KMNIST")])
def test_torchvision_mnist_reads_local_files_without_downloading(tmp_path, dataset, folder):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 30), ("t10k", 10)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (count, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(count) % 10)
    bundle = load_data(data_cfg(dataset=dataset, root=str(tmp_path), val_split=0))
    assert bundle.train.shape == (1, 28, 28) and len(bundle.train) == 30
    assert len(bundle.test) == 10


def test_missing_torchvision_data_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match="no cifar10 files under .*set data.download=true"):
        load_data(data_cfg(dataset="cifar10", root=str(tmp_path)))


def reference_crop(image, padding, dy, dx):
    padded = torch.nn.functional.pad(image, (padding,) * 4)
    return padded[:, dy:dy + image.shape[1], dx:dx + image.shape[2]]


def test_batched_crop_equals_cropping_each_image_alone():
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(0)
    out = random_crop(images, 2, gen)
    gen = torch.Generator().manual_seed(0)
    dy = torch.randint(0, 5, (16,), generator=gen)
    dx = torch.randint(0, 5, (16,), generator=gen)
    for i in range(16):
        assert torch.equal(out[i], reference_crop(images[i], 2, int(dy[i]), int(dx[i])))


def test_flip_mirrors_about_half_and_cutout_zeroes_a_square():
    images = torch.arange(2 * 1000 * 4, dtype=torch.float32).reshape(1000, 1, 2, 4)
    flipped = random_flip(images, torch.Generator().manual_seed(1))
    mirrored = (flipped == images.flip(3)).all(dim=(1, 2, 3))
    assert 400 < int(mirrored.sum()) < 600
    assert torch.equal(flipped[~mirrored], images[~mirrored])
    x = torch.ones(200, 1, 16, 16)
    masked = cutout(x, 4, torch.Generator().manual_seed(2))
    zeros = (masked == 0).sum(dim=(1, 2, 3))
    assert int(zeros.max()) == 16  # a full 4x4 square when it does not overhang
    assert int(zeros.min()) >= 4   # at least a 2x2 corner remains when it does


@pytest.mark.parametrize("in_memory", [True, False])
def test_each_process_reads_and_augments_only_its_share_of_the_global_batch(tmp_path, monkeypatch,
                                                                            in_memory):
    from cnnlab.data import loaders
    from cnnlab.data.augment import Augmenter, Normalizer
    from cnnlab.data.loaders import TrainBatches

    root = make_folder(tmp_path / "imgs", per_class=8)
    cfg = load_config({"data": {"dataset": "imagefolder", "root": str(root), "val_split": 0,
                                "in_memory": in_memory,
                                "augment": {"crop_padding": 2, "flip": True, "cutout": 3}}})
    bundle = load_data(cfg.data)
    normalizer = Normalizer(bundle.mean, bundle.std, torch.device("cpu"), channels_last=False)

    decoded = []
    original = loaders.decode
    monkeypatch.setattr(loaders, "decode", lambda path, *a: decoded.append(path) or
                        original(path, *a))

    def epoch(shard):
        batches = TrainBatches(bundle.train, 8, seed=3, device=torch.device("cpu"),
                               augmenter=Augmenter(cfg.data.augment, normalizer), shard=shard)
        decoded.clear()
        out = list(batches.epoch(1))
        return out, list(decoded)

    whole, read_whole = epoch((0, 1))
    first, read_first = epoch((0, 2))
    second, read_second = epoch((1, 2))
    assert len(whole) == len(first) == len(second) == 2
    for (x, y), (x0, y0), (x1, y1) in zip(whole, first, second):
        assert x0.shape[0] == x1.shape[0] == 4
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
    if not in_memory:
        # DistributedSampler's division of the work: each file is decoded by one process.
        assert len(read_first) == len(read_second) == 8 and len(read_whole) == 16
        assert sorted(read_first + read_second) == sorted(read_whole)


def test_a_folder_with_one_class_is_refused_in_one_sentence(tmp_path):
    # One class would train to accuracy 1.0 and teach nothing.
    root = make_folder(tmp_path / "one", classes=("cat",))
    with pytest.raises(DataError, match="has 1 class \\(cat\\) in its training images; a "
                                        "classifier needs at least two"):
        load_data(data_cfg(dataset="imagefolder", root=str(root), val_split=0))
    # Forcing num_classes does not help when every training label is the same.
    with pytest.raises(DataError, match="a classifier needs at least two"):
        load_data(data_cfg(dataset="imagefolder", root=str(root), val_split=0, num_classes=2))


def test_reflect_translation_is_a_shift_of_the_reflect_padded_image_by_up_to_padding():
    """airbench's `translate: 2`: each image moved by a uniform offset in [-2, 2] per axis, the
    uncovered edge filled by reflection."""
    images = torch.arange(64 * 3 * 8 * 8, dtype=torch.uint8).reshape(64, 3, 8, 8) % 251
    gen = torch.Generator().manual_seed(0)
    moved = random_crop(images, 2, gen, mode="reflect")
    padded = F.pad(images.float(), (2, 2, 2, 2), mode="reflect").to(torch.uint8)
    seen = set()
    for k in range(len(images)):
        offsets = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(moved[k], padded[k, :, dy:dy + 8, dx:dx + 8])]
        assert offsets, f"image {k} is not a window of its reflect-padded copy"
        seen.update(offsets)
    # 64 images spread over the 25 offsets: most of them occur.
    assert len(seen) >= 15
