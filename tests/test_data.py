import gzip
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from linpath.data import mnist
from linpath.errors import LinpathError


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def tiny_mnist_files(n_train=6, n_test=4, seed=0) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (n_train, 28, 28))),
        "train-labels-idx1-ubyte": idx_bytes(rng.integers(0, 10, n_train)),
        "t10k-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (n_test, 28, 28))),
        "t10k-labels-idx1-ubyte": idx_bytes(rng.integers(0, 10, n_test)),
    }


def tiny_spec(files: dict[str, bytes], n_train=6, n_test=4) -> dict:
    counts = {"train": n_train, "t10k": n_test}
    return {
        stem: (3 if "images" in stem else 1, counts[stem.split("-")[0]], hashlib.md5(data).hexdigest())
        for stem, data in files.items()
    }


def test_real_mnist_loads_with_the_right_counts(mnist):
    assert mnist.train.images.shape == (60000, 1, 28, 28) and mnist.train.images.dtype == torch.uint8
    assert mnist.test.images.shape == (10000, 1, 28, 28)
    assert set(mnist.test.labels.unique().tolist()) == set(range(10))
    x = mnist.eval_set("test").inputs
    # normalized with MNIST's mean/std: the test set's mean is close to 0 (the train set's exactly)
    assert abs(float(mnist.normalize(mnist.train.images[:20000]).mean())) < 0.01
    assert x.dtype == torch.float32


def test_gzipped_and_raw_files_read_the_same(tmp_path):
    files = tiny_mnist_files()
    folder = tmp_path / "mnist"
    folder.mkdir()
    for i, (stem, data) in enumerate(files.items()):
        if i % 2:
            (folder / stem).write_bytes(data)
        else:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(data))
    src = mnist.load(tmp_path, files=tiny_spec(files))
    assert src.train.images.shape == (6, 1, 28, 28) and len(src.test) == 4
    raw = np.frombuffer(files["t10k-images-idx3-ubyte"], np.uint8, offset=16).reshape(4, 28, 28)
    assert np.array_equal(src.test.images[:, 0].numpy(), raw)


def _write(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, data in files.items():
        (folder / (stem + ".gz")).write_bytes(gzip.compress(data))


@pytest.mark.parametrize(
    "corruption,message",
    [
        (lambda b: b[:-100], "truncated or corrupt"),
        (lambda b: b"\x00\x00\x08\x04" + b[4:], "magic"),
        (lambda b: b[:10], "too short"),
    ],
)
def test_corrupt_idx_files_are_named(tmp_path, corruption, message):
    files = tiny_mnist_files()
    spec = tiny_spec(files)
    files["t10k-images-idx3-ubyte"] = corruption(files["t10k-images-idx3-ubyte"])
    _write(tmp_path / "mnist", files)
    with pytest.raises(LinpathError, match=message) as e:
        mnist.load(tmp_path, files=spec, mirrors=[])
    assert "t10k-images-idx3-ubyte" in str(e.value) and "\n" not in str(e.value)


def test_a_broken_gzip_stream_is_named(tmp_path):
    files = tiny_mnist_files()
    _write(tmp_path / "mnist", files)
    path = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(LinpathError, match="train-labels-idx1-ubyte.gz"):
        mnist.load(tmp_path, files=tiny_spec(files), mirrors=[])


def test_labels_out_of_range_and_wrong_counts_are_named(tmp_path):
    files = tiny_mnist_files()
    spec = tiny_spec(files)
    files["train-labels-idx1-ubyte"] = idx_bytes(np.array([0, 1, 2, 3, 4, 12]))
    _write(tmp_path / "a" / "mnist", files)
    with pytest.raises(LinpathError, match="label 12"):
        mnist.load(tmp_path / "a", files=spec, mirrors=[])
    files = tiny_mnist_files()
    files["train-labels-idx1-ubyte"] = idx_bytes(np.arange(5))
    _write(tmp_path / "b" / "mnist", files)
    with pytest.raises(LinpathError, match="holds 5 labels, expected 6"):
        mnist.load(tmp_path / "b", files=spec, mirrors=[])


def test_missing_files_without_network_name_folder_files_and_option(tmp_path):
    with pytest.raises(LinpathError) as e:
        mnist.load(tmp_path, mirrors=["http://127.0.0.1:9"])  # nothing listens on port 9
    message = str(e.value)
    assert (
        str(tmp_path / "mnist") in message
        and "train-images-idx3-ubyte" in message
        and "--data-root" in message
    )
    assert "\n" not in message


@pytest.fixture
def http_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(served), **kw)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_from_a_local_mirror_checks_the_checksum(tmp_path, http_server):
    served, url = http_server
    files = tiny_mnist_files()
    _write(served, files)
    root = tmp_path / "root"
    src = mnist.load(root, files=tiny_spec(files), mirrors=[url])
    assert len(src.train) == 6
    assert sorted(p.name for p in (root / "mnist").iterdir()) == sorted(s + ".gz" for s in files)


def test_download_falls_back_to_the_next_mirror_and_refuses_bad_checksums(tmp_path, http_server):
    served, url = http_server
    files = tiny_mnist_files()
    good = tiny_spec(files)
    _write(served, tiny_mnist_files(seed=1))  # same shapes, different bytes
    with pytest.raises(LinpathError, match="checksum"):
        mnist.load(tmp_path / "r1", files=good, mirrors=[url])
    assert not any((tmp_path / "r1" / "mnist").iterdir())  # nothing half-written is left behind
    shutil.rmtree(served)
    _write(served, files)
    src = mnist.load(tmp_path / "r2", files=good, mirrors=["http://127.0.0.1:9", url])
    assert len(src.test) == 4
