"""Shared fixtures: the real data root, and one small trained MNIST run reused by many tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("LINPATH_TEST_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "mnist").is_dir():
        pytest.fail(
            f"test data not found at {DATA_ROOT} (set LINPATH_TEST_DATA to the folder holding mnist/)"
        )
    return DATA_ROOT


@pytest.fixture(scope="session")
def mnist(data_root):
    from linpath.data import load

    return load("mnist", data_root)


SMALL = {"training_steps": "300it", "replicates": 2}


@pytest.fixture(scope="session")
def small_run(tmp_path_factory, data_root):
    """Two replicates of LeNet trained for 300 iterations on real MNIST (kept t: 0,1,2,...,256,300)."""
    from linpath.config.presets import preset
    from linpath.runs import stages

    spec = preset("mnist_lenet_300_100").with_overrides(SMALL)
    return stages.train(spec, tmp_path_factory.mktemp("runs"), data_root, device="cpu", progress=False)


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    """A run folder holding two LeNet states at t = 0 (no training: paths need only the states)."""
    import torch

    from linpath.config.presets import preset
    from linpath.config.spec import write_spec
    from linpath.io.rundir import RunDir
    from linpath.models import build

    spec = preset("mnist_lenet_300_100")
    run = RunDir(tmp_path_factory.mktemp("lenetrun") / spec.run_name)
    write_spec(run, spec)
    for r in (0, 1):
        run.checkpoint(r, 0).parent.mkdir(parents=True)
        torch.save(build("mnist_lenet_300_100", 10, seed=r).state_dict(), run.checkpoint(r, 0))
    return run


# Fixtures that train a run end to end: every test using one is slow (make test-fast skips it).
TRAINING_FIXTURES = {"small_run", "momentum_run", "runs", "reference_sweep", "swept"}


def pytest_collection_modifyitems(items):
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
