"""CIFAR-10 and the ImageNet pipeline on real data (../shared/data): counts, reproducible
augmentation, one-line errors for bad data, and short end-to-end runs through the CLI."""

import csv
import io
import pickle
import shutil
import tarfile

import numpy as np
import pytest
import torch

from linpath.cli import main
from linpath.data import cifar10, imagenet, load
from linpath.errors import LinpathError


@pytest.fixture(scope="session")
def cifar(data_root):
    """Decoded once per session (and cached on disk across sessions, see cifar10.py)."""
    return load("cifar10", data_root)


@pytest.fixture
def tiny_imagenet(data_root, monkeypatch):
    monkeypatch.setenv("LINPATH_IMAGENET", str(data_root / "tiny-imagenet-10"))
    monkeypatch.setenv("LINPATH_WORKERS", "2")


def test_real_cifar10_counts_and_statistics(cifar):
    assert cifar.train.images.shape == (50000, 3, 32, 32) and cifar.train.images.dtype == torch.uint8
    assert cifar.test.images.shape == (10000, 3, 32, 32)
    assert cifar.train.labels.bincount().tolist() == [5000] * 10
    assert cifar.test.labels.bincount().tolist() == [1000] * 10
    mean = cifar.train.images[::10].float().mean((0, 2, 3)) / 255
    torch.testing.assert_close(mean, torch.tensor([0.4913, 0.4821, 0.4465]), atol=5e-3, rtol=0)


@pytest.mark.slow
def test_cifar_augmentation_is_a_function_of_seed_and_step(cifar):
    def batch(seed, start, skip=0):
        it = cifar.train_batches(seed, 64, start_step=start, augment=True)
        for _ in range(skip):
            next(it)
        return next(it)

    x1, y1 = batch(3, 5)
    x2, y2 = batch(3, 5)
    x3, y3 = batch(3, 3, skip=2)  # resumed at 3, two steps later: the same batch as step 5
    assert torch.equal(x1, x2) and torch.equal(x1, x3) and torch.equal(y1, y3)
    x4, _ = batch(4, 5)
    assert not torch.equal(x1, x4)
    plain, _ = next(cifar.train_batches(3, 64, start_step=5, augment=False))
    assert not torch.equal(x1, plain)
    # Crops pad with black: after normalization, -mean/std. Some batch rows must show it.
    black = torch.tensor([-m / s for m, s in zip(cifar10.MEAN, cifar10.STD)]).view(1, 3, 1)
    edges = x1[:, :, :, 0]
    assert ((edges - black).abs() < 1e-5).all(1).any()


def test_crop_flip_matches_a_per_image_reference():
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    out = cifar10.crop_flip(4)(x, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    shifts, flips = torch.randint(0, 9, (2, 8), generator=g), torch.rand(8, generator=g) < 0.5
    for i in range(8):
        padded = torch.nn.functional.pad(x[i], (4, 4, 4, 4))
        crop = padded[:, shifts[0, i] : shifts[0, i] + 32, shifts[1, i] : shifts[1, i] + 32]
        assert torch.equal(out[i], crop.flip(2) if flips[i] else crop)


def _fake_batches_archive(path, counts, payload=None):
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        names = [(f"data_batch_{i}", counts["train"] // 5) for i in range(1, 6)] + [
            ("test_batch", counts["test"])
        ]
        for name, n in names:
            d = {
                b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                b"labels": [i % 10 for i in range(n)],
            }
            raw = payload if payload is not None else pickle.dumps(d, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


def test_canonical_python_archive_reads(tmp_path, monkeypatch):
    monkeypatch.setenv("LINPATH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cifar10").mkdir()
    counts = {"train": 50, "test": 20}
    _fake_batches_archive(tmp_path / "cifar10" / "cifar-10-python.tar.gz", counts)
    source = cifar10.load(tmp_path, counts)
    assert source.train.images.shape == (50, 3, 32, 32) and source.test.labels.tolist() == [
        i % 10 for i in range(20)
    ]
    assert list((tmp_path / "cache").glob("cifar10-*.pt"))  # cached
    assert torch.equal(cifar10.load(tmp_path, counts).train.images, source.train.images)


def test_a_pickle_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("LINPATH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cifar10").mkdir()
    evil = pickle.dumps(shutil.rmtree)
    _fake_batches_archive(
        tmp_path / "cifar10" / "cifar-10-python.tar.gz", {"train": 50, "test": 10}, payload=evil
    )
    with pytest.raises(LinpathError, match="not a CIFAR-10 batch.*not allowed"):
        cifar10.load(tmp_path)


@pytest.mark.parametrize("content", ["missing", "empty", "truncated", "wrong-counts"])
def test_bad_cifar_data_gives_one_line(tmp_path, monkeypatch, data_root, content):
    monkeypatch.setenv("LINPATH_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "cifar10"
    if content != "missing":
        folder.mkdir()
    if content == "truncated":
        raw = (data_root / "cifar10" / "cifar10-jpeg-q75.tar.gz").read_bytes()
        (folder / "cifar10.tar.gz").write_bytes(raw[: len(raw) // 50])
    if content == "wrong-counts":
        _fake_batches_archive(folder / "cifar-10-python.tar.gz", {"train": 50, "test": 10})
    with pytest.raises(LinpathError) as e:
        cifar10.load(tmp_path)
    message = str(e.value)
    assert "\n" not in message and str(folder) in message
    expected = {
        "missing": "no CIFAR-10 folder",
        "empty": "no CIFAR-10 data",
        "truncated": "cannot read archive",
        "wrong-counts": "expected 50000",
    }[content]
    assert expected in message


@pytest.mark.slow
def test_cli_run_cifar_resnet_20(tmp_path, data_root, cifar, capsys):
    # fp32: a CPU without bf16 units (AVX2 only) emulates bf16 at a fraction of fp32's speed.
    rc = main(
        [
            "run",
            "cifar_resnet_20",
            "--training-steps",
            "20it",
            "--replicates",
            "1",
            "--points",
            "3",
            "--from-steps",
            "0,16",
            "--eval-examples",
            "1000",
            "--data-root",
            str(data_root),
            "--out",
            str(tmp_path),
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    (run,) = tmp_path.iterdir()
    with open(run / "paths.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted({(r["t"], r["x"]) for r in rows}) == [
        (t, x) for t in ("0", "16") for x in ("0.0", "0.5", "1.0")
    ]
    assert (run / "report.md").is_file()
    assert {p.name for p in (run / "replicate-0" / "checkpoints").iterdir()} >= {
        "iter-0000000.pt",
        "iter-0000016.pt",
        "iter-0000020.pt",
    }


@pytest.mark.slow
def test_imagenet_pipeline_reads_tiny_imagenet(tiny_imagenet, data_root):
    source = load("imagenet", data_root, image_size=32)
    assert (source.num_classes, source.num_train_examples) == (10, 5000)
    a = next(source.train_batches(1, 8, start_step=2, augment=True))
    it = source.train_batches(1, 8, start_step=0, augment=True)
    next(it), next(it)
    b = next(it)
    assert a[0].shape == (8, 3, 32, 32) and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    test = source.eval_set("test")
    assert test.inputs.shape == (500, 3, 32, 32) and test.labels.bincount().tolist() == [50] * 10


@pytest.mark.slow
def test_imagenet_resnet_50_trains_on_tiny_imagenet(tiny_imagenet, tmp_path, data_root, capsys):
    rc = main(
        [
            "train",
            "imagenet_resnet_50",
            "--training-steps",
            "3it",
            "--batch-size",
            "8",
            "--image-size",
            "32",
            "--replicates",
            "1",
            "--data-root",
            str(data_root),
            "--out",
            str(tmp_path),
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    (run,) = tmp_path.iterdir()
    with open(run / "replicate-0" / "train_log.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["iteration"] == "3" and 0 <= float(row["test_accuracy"]) <= 1


def test_missing_imagenet_names_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv("LINPATH_IMAGENET", raising=False)
    with pytest.raises(LinpathError, match=f"no ImageNet data at {tmp_path / 'imagenet'}.*LINPATH_IMAGENET"):
        imagenet.load(tmp_path)
