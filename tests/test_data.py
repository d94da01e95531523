"""Tests for tfkd.data: every source, every conversion, every error message."""

import gzip
import os
import sys
import time
import warnings

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from tfkd import data, image_folder, tfds_source

DEBIAN = "/usr/share/datasets/fashion-mnist"
needs_debian = pytest.mark.skipif(
    not os.path.isfile(os.path.join(DEBIAN, "t10k-images-idx3-ubyte.gz")),
    reason="needs Debian's dataset-fashion-mnist")


@pytest.fixture(autouse=True)
def no_outside_sources(monkeypatch, tmp_path):
    """No test reads the user's $TFKD_DATA_DIR or ~/.keras, or touches the network."""
    monkeypatch.delenv("TFKD_DATA_DIR", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))

    def offline():
        raise OSError("no network in tests")
    monkeypatch.setattr(data, "_keras_download", offline)


def write_idx(path, array, magic):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_fake_fashion_mnist(folder, n=6, fill=7):
    """Writes a tiny valid idx set whose images are all `fill` and labels are 0..n-1."""
    for split, count in (("train", n), ("t10k", n // 2)):
        write_idx(f"{folder}/{split}-images-idx3-ubyte.gz",
                  np.full((count, 28, 28), fill), 2051)
        write_idx(f"{folder}/{split}-labels-idx1-ubyte.gz", np.arange(count) % 10, 2049)


def collect(ds):
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(images), np.concatenate(labels)


# ---- Fashion-MNIST sources ---------------------------------------------------------------

@needs_debian
def test_fashion_mnist_from_debian_path():
    ds = data.load("fashion_mnist", "train", image_size=32, batch_size=64, limit=200)
    assert ds.element_spec[0].shape.as_list() == [None, 32, 32, 3]
    assert ds.element_spec[0].dtype == tf.uint8 and ds.element_spec[1].dtype == tf.int32
    x, y = collect(ds)
    assert x.shape == (200, 32, 32, 3) and y.shape == (200,)
    assert x.max() > 200 and x.min() == 0  # real pixels, full uint8 range
    assert set(y) <= set(range(10)) and len(set(y)) == 10
    assert np.array_equal(x[..., 0], x[..., 2])  # grey repeated into RGB


@needs_debian
def test_fashion_mnist_array_sizes_and_memory_cache():
    x_train, y_train = data.fashion_mnist_arrays("train")
    x_test, y_test = data.fashion_mnist_arrays("test")
    assert x_train.shape == (60000, 28, 28) and y_train.shape == (60000,)
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    assert x_train.dtype == np.uint8 and y_test.max() == 9
    assert data.fashion_mnist_arrays("train")[0] is x_train  # parsed once per process


@needs_debian
def test_fashion_mnist_num_classes_too_small_names_the_label():
    with pytest.raises(ValueError, match=r"label \d at index \d+ .*num_classes=10"):
        data.load("fashion_mnist", "test", image_size=28, batch_size=8, num_classes=5)


@pytest.mark.parametrize("subfolder", ["", "fashion-mnist"])
def test_tfkd_data_dir_takes_precedence(monkeypatch, tmp_path, subfolder):
    write_fake_fashion_mnist(tmp_path / "mine" / subfolder, fill=7)
    monkeypatch.setenv("TFKD_DATA_DIR", str(tmp_path / "mine"))
    x, y = collect(data.load("fashion_mnist", "train", image_size=28, batch_size=4))
    assert x.shape == (6, 28, 28, 3) and (x == 7).all()
    assert sorted(y) == list(range(6))


def test_keras_cache_is_used(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "DEBIAN_DIR", str(tmp_path / "no_debian"))
    write_fake_fashion_mnist(tmp_path / "keras_home" / "datasets" / "fashion-mnist", fill=9)
    x, y = collect(data.load("fashion_mnist", "test", image_size=28, batch_size=2))
    assert x.shape == (3, 28, 28, 3) and (x == 9).all()
    assert list(y) == [0, 1, 2]


def test_keras_download_is_the_last_resort(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "DEBIAN_DIR", str(tmp_path / "no_debian"))
    monkeypatch.setattr(data, "_CACHE", {})
    fake = np.full((4, 28, 28), 3, np.uint8), np.array([1, 2, 3, 4], np.uint8)
    monkeypatch.setattr(data, "_keras_download", lambda: (fake, fake))
    x, y = collect(data.load("fashion_mnist", "test", image_size=28, batch_size=2))
    assert (x == 3).all() and list(y) == [1, 2, 3, 4]


def test_all_sources_missing_lists_each_with_its_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("TFKD_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(data, "DEBIAN_DIR", str(tmp_path / "no_debian"))
    with pytest.raises(FileNotFoundError) as e:
        data.load("fashion_mnist", "train", image_size=28, batch_size=8)
    message = str(e.value)
    for fix in ["export TFKD_DATA_DIR=", str(tmp_path / "empty"),
                "sudo apt-get install dataset-fashion-mnist", str(tmp_path / "no_debian"),
                f"mkdir -p {tmp_path}/keras_home/datasets/fashion-mnist", "cp train-images",
                "connect to the network", "no network in tests"]:
        assert fix in message


@pytest.mark.parametrize("payload, match", [
    (b"\x00\x00\x08\x01" + bytes(12), "magic number 2049, expected 2051"),
    (b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(99),
     r"header says \[5, 28, 28\]"),
])
def test_corrupt_idx_file_error_names_the_file(monkeypatch, tmp_path, payload, match):
    write_fake_fashion_mnist(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(bad, "wb") as f:
        f.write(payload)
    monkeypatch.setenv("TFKD_DATA_DIR", str(tmp_path))
    with pytest.raises(ValueError, match=match) as e:
        data.load("fashion_mnist", "train", image_size=28, batch_size=8)
    assert str(bad) in str(e.value) and "re-download" in str(e.value)


def test_idx_file_that_is_not_gzip_error_names_the_file(monkeypatch, tmp_path):
    write_fake_fashion_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"<html>not found</html>")
    monkeypatch.setenv("TFKD_DATA_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="corrupt idx file .*t10k-labels-idx1-ubyte.gz"):
        data.load("fashion_mnist", "test", image_size=28, batch_size=8)


# ---- image folders -----------------------------------------------------------------------

def make_image_folder(root):
    """Two classes; per split an RGB PNG, a grey PNG, an RGBA PNG, a JPEG and a corrupt file."""
    for split in ("train", "test"):
        for cls, value in (("cat", 40), ("dog", 200)):
            d = root / split / cls
            d.mkdir(parents=True)
            Image.new("RGB", (20, 10), (value, 0, 255)).save(d / "rgb.png")
            Image.new("L", (8, 8), value).save(d / "grey.png")
            Image.new("RGBA", (8, 8), (value, 10, 20, 0)).save(d / "rgba.png")
            Image.new("RGB", (8, 8), (value, value, value)).save(d / "photo.JPG", quality=100)
            (d / "notes.txt").write_text("not an image")
        (root / split / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return root


def test_image_folder_converts_and_skips_corrupt_files_with_one_warning(tmp_path):
    root = make_image_folder(tmp_path / "pets")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image file\(s\) of 9 .*broken"):
        ds = data.load(f"image_folder:{root}", "test", image_size=(6, 12), batch_size=3)
    x, y = collect(ds)
    assert x.shape == (8, 6, 12, 3) and x.dtype == np.uint8 and y.dtype == np.int32
    assert list(y) == [0, 0, 0, 0, 1, 1, 1, 1]  # cat=0, dog=1; sorted files; no shuffle
    cat = dict(zip(["grey", "photo", "rgb", "rgba"], x[:4]))
    assert (cat["grey"] == 40).all()  # grey repeated into RGB
    assert (cat["rgba"] == [40, 10, 20]).all()  # alpha dropped, colour kept
    assert (cat["rgb"] == [40, 0, 255]).all()  # resize of a flat image stays flat
    assert abs(cat["photo"].astype(int) - 40).max() <= 2  # JPEG is lossy
    assert data.dataset_info(f"image_folder:{root}") == {"num_classes": 2,
                                                          "class_names": ["cat", "dog"]}


def test_image_folder_limit_decodes_only_the_first_files(tmp_path):
    root = make_image_folder(tmp_path / "pets")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, y = collect(data.load(f"image_folder:{root}", "train", image_size=8, batch_size=4,
                                 limit=3, shuffle=False))
    assert x.shape == (3, 8, 8, 3) and list(y) == [0, 0, 0]
    # dog/broken.png comes after the limit: never decoded, so never reported as unreadable.
    assert not [w for w in caught if "broken" in str(w.message)]


def test_image_folder_without_splits_holds_out_a_stable_fifth(tmp_path):
    for cls in ("a", "b", "c"):
        (tmp_path / cls).mkdir()
        for i in range(40):
            Image.new("L", (4, 4), i).save(tmp_path / cls / f"{i}.png")
    name = f"image_folder:{tmp_path}"
    train = collect(data.load(name, "train", image_size=4, batch_size=64, shuffle=False))
    test = collect(data.load(name, "test", image_size=4, batch_size=64))
    assert len(train[0]) + len(test[0]) == 120
    assert 10 <= len(test[0]) <= 40 and set(test[1]) == {0, 1, 2}
    train_keys = {(lb, im[0, 0, 0]) for im, lb in zip(*train)}
    assert not train_keys & {(lb, im[0, 0, 0]) for im, lb in zip(*test)}  # disjoint
    again = collect(data.load(name, "test", image_size=4, batch_size=64))
    assert np.array_equal(again[0], test[0])


@pytest.mark.parametrize("layout, match", [
    ([], "no class subfolders"),
    (["cat/readme.txt"], "no train images"),
    (["train/cat/readme.txt"], "only one of train/ and test/"),
])
def test_image_folder_without_images_is_a_clear_error(tmp_path, layout, match):
    for f in layout:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("x")
    with pytest.raises(ValueError, match=match):
        data.load(f"image_folder:{tmp_path}", "train", image_size=8, batch_size=2)


def _png(path, value, size=(8, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)


def test_image_folder_images_in_nested_folders_belong_to_their_class(tmp_path):
    _png(tmp_path / "train" / "cat" / "a.png", 10)
    _png(tmp_path / "train" / "cat" / "2024" / "indoor" / "b.png", 20)
    _png(tmp_path / "train" / "dog" / "shelter" / "c.png", 30)
    for cls in ("cat", "dog"):
        _png(tmp_path / "test" / cls / "t.png", 40)
    x, y = collect(data.load(f"image_folder:{tmp_path}", "train", image_size=8, batch_size=8,
                             shuffle=False))
    assert [int(im[0, 0, 0]) for im in x] == [20, 10, 30] and list(y) == [0, 0, 1]


def test_image_folder_problems_are_named_in_one_warning(tmp_path):
    _png(tmp_path / "train" / "cat" / "a.png", 10)
    (tmp_path / "train" / "cat" / "labels.csv").write_text("a.png,cat")
    (tmp_path / "train" / "cat" / "fake.jpg").write_text("<html>404</html>")
    (tmp_path / "train" / "empty").mkdir()
    for cls in ("cat", "empty"):
        _png(tmp_path / "test" / cls / "t.png", 40)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, y = collect(data.load(f"image_folder:{tmp_path}", "train", image_size=8,
                                 batch_size=8))
    assert len(x) == 1 and list(y) == [0]
    (warning,) = [str(w.message) for w in caught]
    assert f"class folder(s) with no train images: {tmp_path}/train/empty" in warning
    assert f"skipped 1 unreadable image file(s) (not the format their name says): " \
           f"{tmp_path}/train/cat/fake.jpg" in warning
    assert f"ignored 1 file(s) that are not images (.jpg, .jpeg, .png, .bmp, .gif): " \
           f"{tmp_path}/train/cat/labels.csv" in warning
    assert caught[0].filename == __file__  # points at the caller's line


def test_image_folder_with_a_single_class_warns(tmp_path):
    for i in range(3):
        _png(tmp_path / "only" / f"{i}.png", i)
    with pytest.warns(UserWarning, match=r"only one class \(only\): a classifier needs at "
                                         "least two class folders"):
        data.load(f"image_folder:{tmp_path}", "train", image_size=8, batch_size=2)


def _big_folder(root, per_class=30):
    for cls, base in (("a", 0), ("b", 100)):
        for i in range(per_class):
            _png(root / "train" / cls / f"{i:03d}.png", base + i, size=(12, 10))
            _png(root / "test" / cls / f"{i:03d}.png", base + i, size=(12, 10))
    return root


def test_a_large_image_folder_streams_with_the_same_images_and_a_known_length(
        tmp_path, monkeypatch):
    root = _big_folder(tmp_path / "big")
    name = f"image_folder:{root}"
    in_memory = collect(data.load(name, "test", image_size=8, batch_size=16))
    monkeypatch.setattr(image_folder, "IN_MEMORY_MAX_FILES", 10)  # 60 files: stream them
    streamed = data.load(name, "test", image_size=8, batch_size=16)
    assert int(streamed.cardinality()) == 4  # known, like the in-memory pipeline's
    x, y = collect(streamed)
    np.testing.assert_array_equal(x, in_memory[0])
    np.testing.assert_array_equal(y, in_memory[1])
    train = data.load(name, "train", image_size=8, batch_size=64, seed=3)
    first, second = collect(train)[1], collect(train)[1]
    assert sorted(first) == sorted(in_memory[1]) and list(first) != list(second)  # reshuffled


def test_a_streamed_folder_skips_an_undecodable_file_without_ending_the_epoch(
        tmp_path, monkeypatch):
    root = _big_folder(tmp_path / "big", per_class=10)
    (root / "train" / "a" / "005.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    monkeypatch.setattr(image_folder, "IN_MEMORY_MAX_FILES", 5)
    ds = data.load(f"image_folder:{root}", "train", image_size=8, batch_size=8, shuffle=False)
    for _ in range(2):  # every epoch has its 20 images, one of them from the next pass
        x, y = collect(ds)
        assert len(x) == 20 and 5 not in {int(im[0, 0, 0]) for im, lb in zip(x, y) if lb == 0}


def test_a_streamed_folder_caches_resized_images_on_disk(tmp_path, monkeypatch):
    root = _big_folder(tmp_path / "big", per_class=10)
    monkeypatch.setattr(image_folder, "IN_MEMORY_MAX_FILES", 5)
    cache = tmp_path / "cache"
    ds = data.load(f"image_folder:{root}", "test", image_size=8, batch_size=8,
                   cache_dir=str(cache))
    first = collect(ds)
    assert any(name.startswith("image_folder-") for name in os.listdir(cache))
    for png in (root / "test" / "a").glob("*.png"):  # later epochs read the cache, not these
        png.unlink()
    np.testing.assert_array_equal(collect(ds)[0], first[0])


def test_image_folder_with_more_classes_than_the_model(tmp_path):
    _big_folder(tmp_path / "big", per_class=2)
    with pytest.raises(ValueError, match="has 2 classes but num_classes=1; build the model "
                                         "with num_classes=2"):
        data.load(f"image_folder:{tmp_path / 'big'}", "train", image_size=8, batch_size=2,
                  num_classes=1)


def test_image_folder_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        data.load(f"image_folder:{tmp_path}/nope", "train", image_size=8, batch_size=2)


# ---- TFDS and names ----------------------------------------------------------------------

def test_tfds_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import now fails
    with pytest.raises(ImportError, match=r"pip install 'tfkd\[tfds\]'"):
        data.load("tfds:cifar10", "train", image_size=32, batch_size=8)


class TfkdTinyShades(tfds.core.GeneratorBasedBuilder):
    """A real TFDS dataset, prepared from memory: 6 train and 4 test images of one grey each."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(10, 7, 1)),
                "label": tfds.features.ClassLabel(names=["a", "b", "c"])}),
            supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(6), "test": self._generate_examples(4)}

    def _generate_examples(self, count):
        for i in range(count):
            yield i, {"image": np.full((10, 7, 1), i * 50, np.uint8), "label": i % 3}


@pytest.fixture
def tfds_dir(tmp_path, monkeypatch):
    """A TFDS data folder holding the prepared tiny dataset, as $TFDS_DATA_DIR."""
    TfkdTinyShades(data_dir=str(tmp_path)).download_and_prepare()
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    return tmp_path


def test_tfds_images_are_mapped_to_the_common_format(tfds_dir):
    x, y = collect(data.load("tfds:tfkd_tiny_shades", "test", image_size=4, batch_size=2,
                             limit=4))
    assert x.shape == (4, 4, 4, 3) and x.dtype == np.uint8 and y.dtype == np.int32
    # TFDS stores examples in an order of its own: compare (grey, label) pairs.
    assert sorted(zip(x[:, 0, 0, 0].tolist(), y.tolist())) == [(0, 0), (50, 1), (100, 2),
                                                               (150, 0)]
    assert data.dataset_info("tfds:tfkd_tiny_shades") == {"num_classes": 3,
                                                           "class_names": ["a", "b", "c"]}
    with pytest.raises(ValueError, match="3 classes .*num_classes=3"):
        data.load("tfds:tfkd_tiny_shades", "test", image_size=4, batch_size=2, num_classes=2)


def test_tfds_offline_without_a_local_copy_fails_in_seconds_saying_what_to_do(
        tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "empty"))
    # Port 9 on this machine refuses at once: the same path as a machine with no network.
    monkeypatch.setattr(tfds_source, "DOWNLOAD_SERVER", ("127.0.0.1", 9))
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError) as error:
        data.load("tfds:tfkd_tiny_shades", "train", image_size=8, batch_size=2)
    assert time.perf_counter() - start < 30  # not TFDS's minutes of retries
    message = str(error.value)
    assert message.startswith(f"tfds:tfkd_tiny_shades is not in TFDS's data folder "
                              f"({tmp_path}/empty/tfkd_tiny_shades/1.0.0 does not exist)")
    assert "127.0.0.1 is unreachable" in message
    assert "tfds.builder('tfkd_tiny_shades').download_and_prepare()" in message
    assert f"into {tmp_path}/empty here (or set TFDS_DATA_DIR" in message


def test_tfds_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match="tfds:no_such_set: .*tfds.list_builders"):
        data.load("tfds:no_such_set", "train", image_size=8, batch_size=2)


@pytest.mark.parametrize("name", ["mnist", "image_folder:", "tfds", "cifar10"])
def test_unknown_name_lists_valid_forms(name):
    with pytest.raises(ValueError, match="'fashion_mnist', 'image_folder:PATH', 'tfds:NAME'"):
        data.load(name, "train", image_size=8, batch_size=2)


@pytest.mark.parametrize("kwargs, match", [
    ({"split": "val"}, "split must be 'train' or 'test', got 'val'"),
    ({"limit": 0}, "limit must be a positive int, got 0"),
    ({"batch_size": 2.5}, "batch_size must be a positive int, got 2.5"),
    ({"image_size": (8, 8, 3)}, r"image_size must be an int or \(height, width\)"),
])
def test_bad_arguments(monkeypatch, tmp_path, kwargs, match):
    write_fake_fashion_mnist(tmp_path)
    monkeypatch.setenv("TFKD_DATA_DIR", str(tmp_path))
    args = {"split": "train", "image_size": 8, "batch_size": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        data.load("fashion_mnist", args.pop("split"), **args)


# ---- from_numpy --------------------------------------------------------------------------

@pytest.mark.parametrize("shape, dtype", [
    ((5, 6, 6), np.uint8), ((5, 6, 6, 1), np.float32), ((5, 6, 6, 3), np.int64),
    ((5, 6, 6, 4), np.float64)])
def test_from_numpy_any_channels_and_dtype_becomes_uint8_rgb(shape, dtype):
    x = np.arange(np.prod(shape)).reshape(shape) % 256
    x = x.astype(dtype)
    images, labels = collect(data.from_numpy(x, np.arange(5), image_size=6, batch_size=2))
    assert images.shape == (5, 6, 6, 3) and images.dtype == np.uint8
    want = x if shape[-1] in (3, 4) else np.repeat(x.reshape(5, 6, 6, 1), 3, axis=-1)
    np.testing.assert_array_equal(images, want[..., :3])  # same size: pixels untouched
    assert list(labels) == [0, 1, 2, 3, 4]


def test_resize_keeps_a_constant_image_constant_and_matches_bilinear():
    x = np.full((2, 28, 28), 131, np.uint8)
    images, _ = collect(data.from_numpy(x, [0, 1], image_size=(32, 17), batch_size=2))
    assert images.shape == (2, 32, 17, 3) and (images == 131).all()
    ramp = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (4, 16, 1))[..., None]
    images, _ = collect(data.from_numpy(ramp, np.zeros(4), image_size=9, batch_size=4))
    want = tf.image.resize(ramp.astype(np.float32), (9, 9), method="bilinear").numpy()
    np.testing.assert_array_equal(images[..., :1], np.rint(want).astype(np.uint8))


def test_from_numpy_one_hot_labels_say_use_argmax():
    with pytest.raises(ValueError, match=r"one-hot.*np.argmax\(y, axis=1\)"):
        data.from_numpy(np.zeros((3, 4, 4)), np.eye(3), image_size=4, batch_size=2)


def test_from_numpy_label_out_of_range_names_label_and_index():
    y = np.array([0, 1, 12, 3])
    with pytest.raises(ValueError, match=r"label 12 at index 2 .*\[0, 10\).*num_classes=13"):
        data.from_numpy(np.zeros((4, 4, 4)), y, image_size=4, batch_size=2, num_classes=10)
    with pytest.raises(ValueError, match="label -1 at index 1 is below 0"):
        data.from_numpy(np.zeros((2, 4, 4)), [0, -1], image_size=4, batch_size=2)


@pytest.mark.parametrize("x, y, match", [
    (np.zeros((3, 4, 4)), np.zeros(2), "x has 3 images but y has 2 labels"),
    (np.zeros((3, 4, 4, 2)), np.zeros(3), r"shape \(N, H, W\) or \(N, H, W, 1\|3\|4\)"),
    (np.full((3, 4, 4), 0.5), np.zeros(3), r"scaled to \[0, 1\].*x \* 255"),
    (np.full((3, 4, 4), -3.0), np.zeros(3), "pixel values 0..255"),
    (np.full((3, 4, 4), np.nan), np.zeros(3), "pixel values 0..255"),
    (np.zeros((3, 4, 4)), np.array([0.0, 1.5, 2.0]), "integer class ids"),
    (np.zeros((0, 4, 4)), np.zeros(0), "empty"),
])
def test_from_numpy_bad_inputs(x, y, match):
    with pytest.raises(ValueError, match=match):
        data.from_numpy(x, y, image_size=4, batch_size=2)


# ---- shuffling and limit -----------------------------------------------------------------

def order(ds):
    return collect(ds)[1].tolist()


def test_shuffle_is_reproducible_with_a_seed():
    x, y = np.zeros((64, 4, 4), np.uint8), np.arange(64)
    make = lambda seed: data.from_numpy(x, y, image_size=4, batch_size=16, shuffle=True,
                                        seed=seed)
    assert order(make(1)) == order(make(1))
    assert order(make(1)) != order(make(2))
    assert sorted(order(make(1))) == list(range(64))
    ds = make(1)
    assert order(ds) != order(ds)  # a fresh order each epoch


def test_shuffle_default_is_train_only_and_limit_takes_the_first(monkeypatch, tmp_path):
    monkeypatch.setenv("TFKD_DATA_DIR", str(tmp_path))
    for split, n in (("train", 60), ("t10k", 30)):
        write_idx(f"{tmp_path}/{split}-images-idx3-ubyte.gz", np.zeros((n, 28, 28)), 2051)
        write_idx(f"{tmp_path}/{split}-labels-idx1-ubyte.gz", np.arange(n) % 10, 2049)
    load = lambda split, **kw: order(data.load("fashion_mnist", split, image_size=8,
                                               batch_size=7, **kw))
    assert load("test") == [i % 10 for i in range(30)]
    assert load("test", limit=12) == [i % 10 for i in range(12)]
    assert load("train") != [i % 10 for i in range(60)]
    assert sorted(load("train", limit=20)) == sorted(i % 10 for i in range(20))
    assert load("train", shuffle=False, limit=5) == [0, 1, 2, 3, 4]
