"""Fashion-MNIST: parsing and checks on the real files, search order, download failures (urllib is
monkeypatched: no network), and the batch transforms."""

import gzip
import hashlib
import http.client
import io
import re
import shutil
import socket
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from msresnet1d.data import fashion_mnist as fm
from msresnet1d.data.errors import DataError
from msresnet1d.data.fashion_mnist import (
    CLASS_NAMES,
    DataFileError,
    DownloadError,
    FashionMNIST,
    ImageBatchTransform,
    fashion_mnist_loaders,
    load_fashion_mnist,
    parse_idx,
    pixel_mean_std,
    search_dirs,
)

OFFICIAL_FILE_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
MAGIC_1D, MAGIC_3D = b"\x00\x00\x08\x01", b"\x00\x00\x08\x03"
DIMS_2_3_3 = bytes.fromhex("000000020000000300000003")


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _copy_test_split(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in (TEST_IMAGES, TEST_LABELS):
        shutil.copyfile(src / name, dst / name)
    return dst


def _listing(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) with its MD5."""
    return {str(p.relative_to(folder)): _md5(p) for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def train_split(fashion_mnist_dir):
    return load_fashion_mnist(fashion_mnist_dir, "train")


@pytest.fixture(scope="module")
def test_split(fashion_mnist_dir):
    return load_fashion_mnist(fashion_mnist_dir, "test")


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No default location holds the data: no env var, repo and Debian folders empty (in tmp)."""
    monkeypatch.delenv("MSRESNET1D_DATA", raising=False)
    (tmp_path / "datasets").mkdir()
    monkeypatch.setattr(fm, "REPO_DATA_DIR", tmp_path / "datasets" / "fashion-mnist")
    monkeypatch.setattr(fm, "DEBIAN_DATA_DIR", tmp_path / "debian")
    return tmp_path


# --- The real files -------------------------------------------------------------------------


def test_class_names():
    assert len(CLASS_NAMES) == 10
    assert CLASS_NAMES[0] == "T-shirt/top" and CLASS_NAMES[6] == "Shirt"
    assert CLASS_NAMES[9] == "Ankle boot"


def test_real_files_have_official_md5s(fashion_mnist_dir):
    assert {name: _md5(fashion_mnist_dir / name) for name in OFFICIAL_FILE_MD5} == OFFICIAL_FILE_MD5


def test_train_split_has_60000_images_6000_per_class(train_split):
    images, labels = train_split
    assert images.shape == (60000, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (60000,) and labels.dtype == torch.int64
    assert torch.bincount(labels).tolist() == [6000] * 10
    assert images.max() == 255 and images.min() == 0


def test_test_split_has_10000_images_1000_per_class(test_split):
    images, labels = test_split
    assert images.shape == (10000, 28, 28) and images.dtype == torch.uint8
    assert torch.bincount(labels).tolist() == [1000] * 10


def test_training_pixel_mean_and_std(train_split):
    mean, std = pixel_mean_std(train_split[0])
    assert mean == pytest.approx(0.2860, abs=1e-4)
    assert std == pytest.approx(0.3530, abs=1e-4)
    pixels = train_split[0][:1000].double() / 255
    assert pixel_mean_std(train_split[0][:1000]) == pytest.approx(
        (pixels.mean().item(), pixels.std(correction=0).item())
    )


def test_dataset_items_and_batch_loader(fashion_mnist_dir, test_split):
    dataset = FashionMNIST(fashion_mnist_dir, "test")
    assert len(dataset) == 10000 and dataset.classes == CLASS_NAMES
    image, label = dataset[3]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert torch.equal(image[0], test_split[0][3].float() / 255) and label == test_split[1][3]
    xb, yb = next(iter(dataset.loader(batch_size=256)))
    assert xb.shape == (256, 1, 28, 28) and xb.dtype == torch.float32
    assert torch.equal(yb, test_split[1][:256])


def test_textbook_loaders_resize_96(fashion_mnist_dir):
    train, test = fashion_mnist_loaders(256, resize=96, root=fashion_mnist_dir, seed=5)
    assert (len(train), len(test)) == (235, 40)
    xb, yb = next(iter(train))
    assert xb.shape == (256, 1, 96, 96) and xb.dtype == torch.float32 and yb.dtype == torch.int64
    assert 0.0 <= xb.min() and xb.max() <= 1.0
    again, _ = fashion_mnist_loaders(256, resize=96, root=fashion_mnist_dir, seed=5)
    assert torch.equal(next(iter(again))[1], yb)


def test_loaders_check_their_options_before_reading_the_images(monkeypatch):
    def unread(*args, **kwargs):
        raise AssertionError("the images were read")

    monkeypatch.setattr(fm, "FashionMNIST", unread)
    for bad, message in (({"resize": 0}, "resize"), ({"erase_prob": 2.0}, "erase_prob"),
                         ({"normalize": "minmax"}, "normalize")):
        with pytest.raises(ValueError, match=message):
            fashion_mnist_loaders(64, **bad)


def test_standardized_loaders(fashion_mnist_dir):
    train, test = fashion_mnist_loaders(10000, root=fashion_mnist_dir, normalize="standardize")
    xb, _ = next(iter(test))
    assert xb.mean().item() == pytest.approx(0.0, abs=0.02)
    assert xb.std().item() == pytest.approx(1.0, abs=0.02)
    # with the training images' statistics, exactly: the test images' own would be a leak
    mean, std = fm.pixel_mean_std(load_fashion_mnist(fashion_mnist_dir, "train")[0])
    test_images = load_fashion_mnist(fashion_mnist_dir, "test")[0][:10000]
    torch.testing.assert_close(xb, ((test_images[:, None].float() / 255 - mean) / std).float())
    with pytest.raises(ValueError, match="normalize must be 'unit' or 'standardize', got 'minmax'"):
        fashion_mnist_loaders(8, root=fashion_mnist_dir, normalize="minmax")


# --- Where files are looked for -------------------------------------------------------------


def test_search_order(monkeypatch, tmp_path):
    monkeypatch.setenv("MSRESNET1D_DATA", str(tmp_path / "env"))
    assert [folder for _, folder in search_dirs()] == [
        tmp_path / "env" / "fashion-mnist",
        fm.REPO_DATA_DIR,
        fm.DEBIAN_DATA_DIR,
    ]
    # a folder named explicitly is the only place: the folder, or one holding fashion-mnist/ as $MSRESNET1D_DATA
    assert [folder for _, folder in search_dirs(tmp_path / "mine")] == [
        tmp_path / "mine",
        tmp_path / "mine" / "fashion-mnist",
    ]
    assert fm.REPO_DATA_DIR == Path(fm.__file__).resolve().parents[2] / "datasets" / "fashion-mnist"


def test_an_explicit_root_is_not_replaced_by_another_copy(isolated, fashion_mnist_dir, test_split, monkeypatch):
    _copy_test_split(fashion_mnist_dir, isolated / "env" / "fashion-mnist")
    monkeypatch.setenv("MSRESNET1D_DATA", str(isolated / "env"))
    (isolated / "empty").mkdir()
    with pytest.raises(DataError, match=r"(?s)empty \(the folder given\).*Put the files in that folder"):
        load_fashion_mnist(isolated / "empty", "test")  # a typo in --data-dir is not hidden by $MSRESNET1D_DATA
    images, labels = load_fashion_mnist(None, "test")
    assert torch.equal(images, test_split[0]) and torch.equal(labels, test_split[1])


def test_not_found_lists_every_place_and_how_to_supply(isolated):
    with pytest.raises(DataError) as info:
        load_fashion_mnist(None, "test")
    message = str(info.value)
    for folder in (fm.REPO_DATA_DIR, fm.DEBIAN_DATA_DIR):
        assert f"{folder} " in message
    assert f"missing {TEST_IMAGES}, {TEST_LABELS} (neither .gz nor unpacked)" in message
    assert "MSRESNET1D_DATA" in message and "download them: msresnet1d download fashion-mnist (download=True" in message
    assert "dataset-fashion-mnist" in message and "--data-dir" in message
    with pytest.raises(DataError, match=rf"download them: msresnet1d download fashion-mnist --data-dir "
                                        rf"{re.escape(str(isolated / 'elsewhere'))} \(download=True"):
        load_fashion_mnist(isolated / "elsewhere", "test")  # the command puts them where this looks
    (isolated / "mine").mkdir()
    (isolated / "mine" / TEST_IMAGES.removesuffix(".gz")).write_bytes(b"")  # unpacked by the user: one of two
    with pytest.raises(DataError, match=rf"missing {TEST_LABELS} \(neither .gz nor unpacked\)"):
        load_fashion_mnist(isolated / "mine", "test")


def test_unpacked_files_are_read_and_checked_by_the_uncompressed_md5(fashion_mnist_dir, test_split, isolated):
    # files gunzip left (the .gz suffix gone) were refused: "the .gz files are read"
    folder = isolated / "unpacked"
    folder.mkdir()
    for name in (TEST_IMAGES, TEST_LABELS):
        (folder / name.removesuffix(".gz")).write_bytes(gzip.decompress((fashion_mnist_dir / name).read_bytes()))
    assert fm.split_dir("test", folder) == folder and fm.split_dir("train", folder) is None
    unpacked = [folder / name.removesuffix(".gz") for name in (TEST_IMAGES, TEST_LABELS)]
    assert fm.present_files(folder) == unpacked  # what a result's data digest covers
    assert fm.download_fashion_mnist(folder, splits=("test",), mirrors=()) == folder  # nothing fetched again
    images, labels = load_fashion_mnist(folder, "test")
    assert torch.equal(images, test_split[0]) and torch.equal(labels, test_split[1])
    labels_file = folder / TEST_LABELS.removesuffix(".gz")
    content = labels_file.read_bytes()
    labels_file.write_bytes(content[:-1] + bytes([(content[-1] + 1) % 10]))  # still a valid label
    with pytest.raises(DataFileError, match=rf"{re.escape(str(labels_file))}: checksum mismatch: expected MD5 "
                                            r"15d484375f8d13e6eb1aabb0c3f46965 \(the official file unpacked\), got "
                                            r"[0-9a-f]{32}\. Delete it and fetch it again"):
        load_fashion_mnist(folder, "test")
    labels_file.write_bytes(content + bytes(1))
    with pytest.raises(DataFileError, match=r": holds more than the 10,008 bytes of the IDX file of shape \(10000,\)"):
        load_fashion_mnist(folder, "test")
    labels_file.write_bytes(content[:-10])
    with pytest.raises(DataFileError, match=r"IDX payload has 9990 bytes, expected 10000"):
        load_fashion_mnist(folder, "test")
    shutil.copyfile(fashion_mnist_dir / TEST_LABELS, folder / TEST_LABELS)  # both: the .gz file is read
    assert torch.equal(load_fashion_mnist(folder, "test")[1], test_split[1])


def test_bad_split_name():
    with pytest.raises(ValueError, match="split must be 'train' or 'test', got 'valid'"):
        load_fashion_mnist(split="valid")


# --- Corrupted local files ------------------------------------------------------------------


def test_debian_style_gzip_header_is_accepted_by_content_md5(
    fashion_mnist_dir, test_split, tmp_path
):
    folder = _copy_test_split(fashion_mnist_dir, tmp_path)
    for name in (TEST_IMAGES, TEST_LABELS):
        content = gzip.decompress((folder / name).read_bytes())
        (folder / name).write_bytes(gzip.compress(content, compresslevel=1, mtime=0))
        assert _md5(folder / name) != OFFICIAL_FILE_MD5[name]
    images, labels = load_fashion_mnist(folder, "test")
    assert torch.equal(images, test_split[0]) and torch.equal(labels, test_split[1])


def _damage(folder: Path, how: str) -> str:
    """Damage the test labels file in ``folder``; return the expected error message (regex)."""
    path = folder / TEST_LABELS
    blob = path.read_bytes()
    content = gzip.decompress(blob)
    if how == "truncated":
        path.write_bytes(blob[: len(blob) // 2])
        return rf"{TEST_LABELS}: gzip stream truncated .*; the file has {len(blob) // 2} bytes"
    if how == "corrupted":
        path.write_bytes(blob[:-8] + bytes(8))  # zeroed CRC32 and size trailer
        return rf"{TEST_LABELS}: not a valid gzip file \(CRC check failed"
    if how == "short content":
        path.write_bytes(gzip.compress(content[:-10]))
        return rf"{TEST_LABELS}: IDX payload has 9990 bytes, expected 10000 for shape \(10000,\)"
    if how == "wrong magic":
        path.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + content[4:]))
        return rf"{TEST_LABELS}: bad IDX magic number: expected 0x00000801, got 0x00000803"
    if how == "expands":  # a small file made to decompress far beyond the IDX file (was decompressed whole)
        path.write_bytes(gzip.compress(content + bytes(50_000_000)))
        return rf"{TEST_LABELS}: decompresses to more than the 10,008 bytes of the IDX file of shape \(10000,\)"
    assert how == "wrong checksum"
    altered = bytearray(content)
    altered[-1] = (altered[-1] + 1) % 10  # still a valid label
    path.write_bytes(gzip.compress(bytes(altered)))
    return (
        rf"{TEST_LABELS}: checksum mismatch: expected file MD5 bb300cfdad3c16e7a12a480ee83cd310 "
        r"or decompressed MD5 15d484375f8d13e6eb1aabb0c3f46965, got file MD5 [0-9a-f]{32}"
    )


@pytest.mark.parametrize(
    "how", ["truncated", "corrupted", "short content", "wrong magic", "wrong checksum", "expands"]
)
def test_damaged_file_gives_clear_error_and_writes_nothing(fashion_mnist_dir, tmp_path, how):
    folder = _copy_test_split(fashion_mnist_dir, tmp_path)
    expected = _damage(folder, how)
    before = _listing(folder)
    with pytest.raises(DataFileError, match=expected) as info:
        load_fashion_mnist(folder, "test")
    assert str(folder / TEST_LABELS) in str(info.value)
    assert str(info.value).endswith(f". Delete it and fetch it again: msresnet1d download fashion-mnist --data-dir "
                                    f"{folder} (download=True in Python), or copy the official file there")
    assert _listing(folder) == before


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x00\x00\x08", r"x: IDX header truncated: expected at least 16 bytes, got 3"),
        (MAGIC_1D + bytes(14), "x: bad IDX magic number: expected 0x00000803, got 0x00000801"),
        (
            MAGIC_3D + (3).to_bytes(4, "big") * 3,
            r"x: bad IDX dimensions: expected \(2, 3, 3\), got \(3, 3, 3\)",
        ),
        (
            MAGIC_3D + DIMS_2_3_3 + bytes(17),
            r"x: IDX payload has 17 bytes, expected 18 for shape \(2, 3, 3\)",
        ),
    ],
)
def test_parse_idx_rejects_bad_headers(content, message):
    with pytest.raises(DataFileError, match=message):
        parse_idx(content, fm.IMAGES_MAGIC, (2, 3, 3), "x")


def test_parse_idx_reads_big_endian_header():
    content = MAGIC_3D + bytes.fromhex("000000020000000300000001") + bytes(range(6))
    array = parse_idx(content, fm.IMAGES_MAGIC, (2, 3, 1), "x")
    assert array.tolist() == [[[0], [1], [2]], [[3], [4], [5]]]


# --- Download (urllib monkeypatched; there is no network in tests) --------------------------


class _FakeWeb:
    """Stands in for ``urllib.request.urlopen``; ``serve(url)`` returns a response or raises.

    Records the calls (url, timeout) and, in ``sleeps``, the back-off pauses between retries.
    """

    def __init__(self, serve, sleeps: list[float]):
        self.serve = serve
        self.sleeps = sleeps
        self.calls: list[tuple[str, float]] = []

    def __call__(self, url: str, timeout: float):
        self.calls.append((url, timeout))
        return self.serve(url)


class _BrokenConnection(io.BytesIO):
    def read(self, *args):
        raise http.client.IncompleteRead(b"\x1f\x8b\x08", 5145)


@pytest.fixture
def web(monkeypatch):
    """Install a fake web: ``web(serve)`` -> the _FakeWeb; sleeps between retries are recorded."""
    sleeps: list[float] = []
    monkeypatch.setattr(fm.time, "sleep", sleeps.append)

    def install(serve) -> _FakeWeb:
        fake = _FakeWeb(serve, sleeps)
        monkeypatch.setattr(fm.urllib.request, "urlopen", fake)
        return fake

    return install


def _offline(url: str):
    raise urllib.error.URLError(socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"))


def test_an_unknown_host_is_not_retried(isolated, web):
    def unknown(url: str):
        raise urllib.error.URLError(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))

    fake = web(unknown)
    with pytest.raises(DownloadError) as info:
        load_fashion_mnist(split="test", download=True)
    assert len(fake.calls) == len(fm.MIRRORS) and fake.sleeps == []  # each mirror once, no back-off
    assert str(info.value).count("(attempt 1/3): <urlopen error [Errno -2] Name or service not known> "
                                 "(an unknown host name: not retried)") == len(fm.MIRRORS)
    assert _listing(isolated) == {}


def test_a_final_answer_or_a_stall_moves_on_to_the_next_mirror_and_a_temporary_error_is_retried(isolated, web):
    assert len(fm.MIRRORS) == 2
    answers = {404: urllib.error.HTTPError("u", 404, "Not Found", {}, None),
               503: urllib.error.HTTPError("u", 503, "Service Unavailable", {}, None),
               "stall": urllib.error.URLError(TimeoutError("timed out")), "read stall": TimeoutError("timed out")}
    stalled = "(a stalled connection, with another mirror to try: not retried)"
    for answer, calls, note, noted in ((404, 2, "(HTTP 404, the server's final answer: not retried)", 2),
                                       (503, 6, None, 0), ("stall", 4, stalled, 1), ("read stall", 4, stalled, 1)):
        def serve(url: str):
            raise answers[answer]

        fake = web(serve)
        with pytest.raises(DownloadError) as info:
            load_fashion_mnist(split="test", download=True)
        # each mirror once, or retried; a stall moves on to the second mirror, which is asked again (3 tries)
        assert len(fake.calls) == calls, answer
        assert note is None or str(info.value).count(note) == noted
        assert _listing(isolated) == {}


def test_offline_download_lists_everything_and_leaves_nothing(isolated, web):
    fake = web(_offline)
    with pytest.raises(DownloadError) as info:
        load_fashion_mnist(split="test", download=True)
    message = str(info.value)
    assert "Fashion-MNIST test split not found" in message
    assert f"Download into {fm.REPO_DATA_DIR} failed" in message
    assert "passing download=True" not in message  # it was passed
    for mirror in fm.MIRRORS:
        assert f"{mirror}{TEST_IMAGES} (attempt 3/3): <urlopen error" in message
    assert len(fake.calls) == 3 * len(fm.MIRRORS)
    assert all(timeout == 60.0 for _, timeout in fake.calls)
    assert fake.sleeps == [2.0, 4.0] * len(fm.MIRRORS)
    assert _listing(isolated) == {}


def test_an_installed_package_downloads_into_the_download_folder_and_finds_it_there(isolated, monkeypatch, web,
                                                                                    fashion_mnist_dir):
    # no source checkout: no repository datasets/ (was an error; site-packages/datasets may be another package)
    web(lambda url: io.BytesIO((fashion_mnist_dir / url.rsplit("/", 1)[1]).read_bytes()))
    monkeypatch.setattr(fm, "REPO_DATA_DIR", None)
    monkeypatch.setattr(fm, "data_home", lambda: isolated / "home-cache")
    assert fm.default_download_dir() == isolated / "home-cache" / "fashion-mnist"
    assert ("download folder", isolated / "home-cache" / "fashion-mnist") in fm.search_dirs()
    with pytest.raises(DataError, match=r"copying them to .*home-cache/fashion-mnist, installing"):
        load_fashion_mnist(split="test")
    load_fashion_mnist(split="test", download=True)
    assert set(_listing(isolated / "home-cache" / "fashion-mnist")) == {TEST_IMAGES, TEST_LABELS}
    assert fm.split_dir("test") == isolated / "home-cache" / "fashion-mnist"


def test_download_without_root_goes_where_msresnet1d_download_puts_it(isolated, monkeypatch, web, fashion_mnist_dir):
    # $MSRESNET1D_DATA/fashion-mnist, the first place looked in (the repository's datasets/ before)
    web(lambda url: io.BytesIO((fashion_mnist_dir / url.rsplit("/", 1)[1]).read_bytes()))
    monkeypatch.setenv("MSRESNET1D_DATA", str(isolated / "data"))
    assert fm.default_download_dir() == isolated / "data" / "fashion-mnist"
    load_fashion_mnist(split="test", download=True)
    assert set(_listing(isolated / "data" / "fashion-mnist")) == {TEST_IMAGES, TEST_LABELS}
    assert _listing(fm.REPO_DATA_DIR) == {}


def test_download_falls_back_to_second_mirror(isolated, web, fashion_mnist_dir, test_split):
    def second_mirror_only(url: str):
        if not url.startswith(fm.MIRRORS[1]):
            raise urllib.error.HTTPError(url, 503, "Service Unavailable", None, None)
        return io.BytesIO((fashion_mnist_dir / url.rsplit("/", 1)[1]).read_bytes())

    fake = web(second_mirror_only)
    images, labels = load_fashion_mnist(split="test", download=True)
    assert torch.equal(images, test_split[0]) and torch.equal(labels, test_split[1])
    assert _listing(fm.REPO_DATA_DIR) == {
        name: OFFICIAL_FILE_MD5[name] for name in (TEST_IMAGES, TEST_LABELS)
    }
    assert fake.calls[3][0] == fm.MIRRORS[1] + TEST_IMAGES
    fake.calls.clear()
    load_fashion_mnist(split="test", download=True)
    assert fake.calls == []


def test_a_mirror_without_a_trailing_slash_is_a_folder(tmp_path, web, fashion_mnist_dir):
    fake = web(lambda url: io.BytesIO((fashion_mnist_dir / url.rsplit("/", 1)[1]).read_bytes()))
    fm.download_fashion_mnist(tmp_path, splits=("test",), mirrors=["https://mirror.example/fashion"])
    assert [url for url, _ in fake.calls] == [f"https://mirror.example/fashion/{name}"
                                              for name in (TEST_IMAGES, TEST_LABELS)]


@pytest.mark.parametrize("failure", ["truncated", "wrong checksum", "broken connection"])
def test_bad_download_leaves_no_file(isolated, web, fashion_mnist_dir, failure):
    labels_blob = (fashion_mnist_dir / TEST_LABELS).read_bytes()
    if failure == "truncated":
        body, expected = labels_blob[:1000], "gzip stream truncated"
    elif failure == "wrong checksum":
        content = bytearray(gzip.decompress(labels_blob))
        content[100] = (content[100] + 1) % 10
        body, expected = gzip.compress(bytes(content)), "checksum mismatch"
    else:
        body, expected = None, "IncompleteRead"

    def serve(url: str):
        if url.endswith(TEST_IMAGES):
            return io.BytesIO((fashion_mnist_dir / TEST_IMAGES).read_bytes())
        return _BrokenConnection() if body is None else io.BytesIO(body)

    web(serve)
    root = isolated / "mine"
    with pytest.raises(DownloadError, match=f"{TEST_LABELS} \\(attempt 3/3\\): .*{expected}"):
        load_fashion_mnist(root, "test", download=True)
    assert _listing(root) == {TEST_IMAGES: OFFICIAL_FILE_MD5[TEST_IMAGES]}


def test_failed_write_leaves_no_temporary_file(isolated, web, fashion_mnist_dir, monkeypatch):
    web(lambda url: io.BytesIO((fashion_mnist_dir / url.rsplit("/", 1)[1]).read_bytes()))

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fm.os, "replace", full_disk)
    with pytest.raises(DownloadError, match="No space left on device"):
        fm.download_fashion_mnist(isolated / "mine", splits=("test",), retries=1)
    assert _listing(isolated / "mine") == {}


# --- Batch transforms (synthetic images) ----------------------------------------------------


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _white(n: int) -> torch.Tensor:
    return torch.full((n, 28, 28), 255, dtype=torch.uint8)


def test_default_transform_is_textbook_to_tensor():
    x = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8)
    out = ImageBatchTransform()(x, _gen())
    assert out.shape == (4, 1, 28, 28) and out.dtype == torch.float32
    assert torch.equal(out[:, 0], x.float() / 255)


def test_resize_is_bilinear_upsampling():
    x = torch.full((2, 1, 28, 28), 51, dtype=torch.uint8)
    x[1, 0, :, 14:] = 255
    out = ImageBatchTransform(resize=96)(x, _gen())
    assert out.shape == (2, 1, 96, 96)
    assert torch.allclose(out[0], torch.full((1, 96, 96), 0.2))
    row = out[1, 0, 0]
    assert row[0] == pytest.approx(0.2) and row[-1] == pytest.approx(1.0)
    assert (row.diff() >= 0).all() and 0.2 < row[48] < 1.0


def test_resize_below_28_antialiases_as_the_textbooks_resize():
    # one-pixel stripes, 28 -> 8: torchvision's Resize (PIL bilinear, which d2l uses) averages
    # them to about 0.5 (PIL gives 0.47-0.53); bilinear without antialiasing samples pairs of
    # pixels and gives 0.25 and 0.75
    x = torch.zeros(1, 28, 28, dtype=torch.uint8)
    x[..., 1::2] = 255
    out = ImageBatchTransform(resize=8)(x, _gen())
    assert out.shape == (1, 1, 8, 8)
    assert ((out - 0.5).abs() < 0.05).all(), out[0, 0, 0]


def test_normalisation():
    x = torch.full((1, 2, 2), 255, dtype=torch.uint8)
    assert torch.allclose(ImageBatchTransform(mean=0.5, std=0.25)(x, _gen()), torch.tensor(2.0))


def test_random_crop_shifts_each_image_within_the_padding():
    out = ImageBatchTransform(crop_padding=3)(_white(64), _gen())
    kept = out[:, 0]
    rows, cols = kept.sum(dim=2).amax(dim=1), kept.sum(dim=1).amax(dim=1)
    assert torch.equal(kept.sum(dim=(1, 2)), rows * cols)  # a single rectangle of ones
    assert rows.min() >= 25 and cols.min() >= 25
    assert (rows < 28).any() and (rows == 28).any()


def test_horizontal_flip_mirrors_about_half():
    x = torch.arange(28, dtype=torch.uint8).repeat(200, 28, 1)
    out = ImageBatchTransform(hflip=True)(x, _gen())
    flipped = out[:, 0, 0, 0] == 27 / 255
    assert torch.equal(out[flipped], (x[flipped].float() / 255).flip(-1).unsqueeze(1))
    assert torch.equal(out[~flipped, 0], x[~flipped].float() / 255)
    assert 70 < flipped.sum() < 130


def test_random_erasing_zeroes_one_rectangle():
    out = ImageBatchTransform(erase_prob=1.0)(_white(100), _gen())
    erased = out[:, 0] == 0
    rows, cols = erased.any(dim=2).sum(dim=1), erased.any(dim=1).sum(dim=1)
    assert torch.equal(erased.sum(dim=(1, 2)), rows * cols)
    assert (rows * cols >= 1).all() and (rows * cols <= 0.4 * 784).all()
    half = ImageBatchTransform(erase_prob=0.5)(_white(100), _gen())
    assert 20 < (half == 0).flatten(1).any(dim=1).sum() < 80


def test_augmentation_is_reproducible_from_the_generator():
    transform = ImageBatchTransform(crop_padding=2, hflip=True, erase_prob=0.5)
    x = torch.randint(0, 256, (32, 28, 28), dtype=torch.uint8)
    assert torch.equal(transform(x, _gen(1)), transform(x, _gen(1)))
    assert not torch.equal(transform(x, _gen(1)), transform(x, _gen(2)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(resize=0), "resize must be a whole number of pixels >= 1, or None, got 0"),
        (dict(resize=96.5), "resize must be a whole number of pixels >= 1, or None, got 96.5"),
        (dict(std=0.0), "std must be > 0, got 0.0"),
        (dict(crop_padding=-1), "crop_padding must be a whole number of pixels >= 0, got -1"),
        (dict(crop_padding=1.5), "crop_padding must be a whole number of pixels >= 0, got 1.5"),
        (dict(erase_prob=1.5), r"erase_prob must be in \[0, 1\], got 1.5"),
    ],
)
def test_transform_rejects_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImageBatchTransform(**kwargs)


def test_transform_rejects_colour_images():
    with pytest.raises(ValueError, match=r"got shape \(2, 3, 28, 28\)"):
        ImageBatchTransform()(torch.zeros(2, 3, 28, 28, dtype=torch.uint8), _gen())


def test_transform_rejects_images_already_scaled():
    with pytest.raises(ValueError, match=r"expected uint8 images \(pixel values 0..255.*got torch.float32"):
        ImageBatchTransform()(torch.zeros(2, 28, 28), _gen())


def test_uint8_required_for_mean_std():
    with pytest.raises(ValueError, match="images must be uint8, got torch.float32"):
        pixel_mean_std(torch.zeros(2, 2))
    assert np.isclose(pixel_mean_std(torch.tensor([0, 255], dtype=torch.uint8))[1], 0.5)


def test_an_ensemble_of_seeds_is_not_scored_on_validation_images_its_members_trained_on():
    from msresnet1d.training.config import TrainConfig
    from msresnet1d.training.ensemble import predict_members

    members = [(torch.nn.Identity(), TrainConfig(task="fashion_mnist", seed=seed)) for seed in (0, 1)]
    with pytest.raises(ValueError, match=r"seeds \[0, 1\]\) trained on each other's validation images"):
        predict_members(None, members, split="val")  # refused before any prediction
