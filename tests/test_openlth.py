"""Importing OpenLTH run folders, built here in OpenLTH's layout, file names and key names."""

import csv
import json

import pytest
import torch

from linpath.cli import main
from linpath.config.spec import read_spec
from linpath.errors import LinpathError
from linpath.io.tensors import load_state_dict
from linpath.models import build
from linpath.runs import stages
from linpath.runs.openlth import find_replicate_folders, import_run, map_state, parse_hparams
from linpath.sweep.grids import Grid
from linpath.sweep.run import SweepOptions
from linpath.sweep.setting import SweepSetting

# What OpenLTH's Desc.save writes: one section per hparams object, the set fields only, no final newline.
HPARAMS = """Dataset Hyperparameters
    * dataset_name => mnist
    * batch_size => 128
Model Hyperparameters
    * model_name => mnist_lenet_300_100
    * model_init => kaiming_normal
    * batchnorm_init => uniform
Training Hyperparameters
    * optimizer_name => sgd
    * lr => 0.1
    * training_steps => 2ep"""

IPE = 469  # ceil(60000 / 128)
FILES = {(0, 0): 0, (0, 100): 100, (1, 5): 474, (2, 0): 938}


def openlth_lenet_state(seed: int) -> dict:
    """OpenLTH's LeNet-300-100 keys: fc_layers.0/1 and fc."""
    g = torch.Generator().manual_seed(seed)
    shapes = {
        "fc_layers.0.weight": (300, 784),
        "fc_layers.0.bias": (300,),
        "fc_layers.1.weight": (100, 300),
        "fc_layers.1.bias": (100,),
        "fc.weight": (10, 100),
        "fc.bias": (10,),
    }
    return {k: torch.randn(s, generator=g) * 0.05 for k, s in shapes.items()}


@pytest.fixture
def openlth_run(tmp_path):
    root = tmp_path / "open_lth_data" / "train_574e51abc2d7d40e1b2b5d09a2f3b1c0"
    for replicate in (1, 2):
        main_dir = root / f"replicate_{replicate}" / "main"
        main_dir.mkdir(parents=True)
        (main_dir / "hparams.log").write_text(HPARAMS)
        for (ep, it), t in FILES.items():
            torch.save(openlth_lenet_state(100 * replicate + t), main_dir / f"model_ep{ep}_it{it}.pth")
        (main_dir / "logger").write_text(
            "\n".join(
                [
                    "train_loss,469,0.31",
                    "test_loss,469,0.2",
                    "test_accuracy,469,0.95",
                    "train_loss,938,0.2",
                    "test_loss,938,0.1",
                    f"test_accuracy,938,0.9{replicate}",
                ]
            )
        )
        torch.save({"optimizer_state_dict": {}, "ep": 2, "it": 0}, main_dir / "checkpoint.pth")  # ignored
    return root


def test_parse_hparams():
    h = parse_hparams(HPARAMS)
    assert h["dataset"] == {"dataset_name": "mnist", "batch_size": "128"}
    assert h["model"]["model_name"] == "mnist_lenet_300_100" and h["training"]["training_steps"] == "2ep"
    with pytest.raises(LinpathError, match="line 3 is not OpenLTH's hparams format"):
        parse_hparams("Dataset Hyperparameters\n    * dataset_name => mnist\nbatch_size: 128")
    with pytest.raises(LinpathError, match="no model_name"):
        parse_hparams("Dataset Hyperparameters\n    * dataset_name => mnist\n")


def test_import_writes_a_linpath_run(openlth_run, tmp_path):
    run, notes = import_run(openlth_run, tmp_path / "runs")
    assert notes == [] and run.root.name.startswith("openlth-mnist_lenet_300_100-")
    spec = read_spec(run)  # validates, and the folder name matches its hash
    assert (
        spec.preset == "mnist_lenet_300_100" and spec.train.training_steps == "938it" and spec.replicates == 2
    )
    assert spec.data.batch_size == 128 and spec.train.lr == 0.1 and not spec.data.augment
    assert run.replicates() == [0, 1]
    for r, replicate in enumerate((1, 2)):
        assert run.saved_steps(r) == sorted(FILES.values())
        for t in FILES.values():
            saved = load_state_dict(run.checkpoint(r, t))
            original = openlth_lenet_state(100 * replicate + t)
            assert saved.keys() == original.keys() and all(torch.equal(saved[k], original[k]) for k in saved)
    with open(run.train_log(1), newline="") as f:
        log = list(csv.DictReader(f))
    assert [row["iteration"] for row in log] == ["469", "938"] and log[-1]["test_accuracy"] == "0.92"
    info = json.loads((run.root / "openlth.json").read_text())
    assert (
        info["iterations_per_epoch"] == IPE
        and info["hparams"]["model"]["model_name"] == "mnist_lenet_300_100"
    )
    again, _ = import_run(openlth_run, tmp_path / "runs")  # re-importing is idempotent
    assert again.root == run.root


@pytest.mark.slow
def test_imported_run_sweeps_and_reports(openlth_run, tmp_path, data_root):
    run, _ = import_run(openlth_run, tmp_path / "runs")
    stages.sweep(
        run.root,
        SweepSetting(grid=Grid(points=3)),
        SweepOptions(data_root=data_root, device="cpu", from_steps=[0, 474], progress=False),
    )
    with open(run.paths_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["replicate"], r["t"]) for r in rows} == {("0", "0"), ("0", "474"), ("1", "0"), ("1", "474")}
    report = stages.report(run.root)
    assert "91.50" in report.read_text()  # mean final accuracy of the two loggers (0.91, 0.92)


def test_lottery_layout_imports_level_0_only(tmp_path):
    root = tmp_path / "lottery_abc"
    for level in ("level_0", "level_1"):
        folder = root / "replicate_1" / level / "main"
        folder.mkdir(parents=True)
        (folder / "hparams.log").write_text(HPARAMS)
        torch.save(openlth_lenet_state(0), folder / "model_ep0_it0.pth")
    assert find_replicate_folders(root) == [root / "replicate_1" / "level_0" / "main"]
    assert find_replicate_folders(root / "replicate_1" / "level_1" / "main") == [
        root / "replicate_1" / "level_1" / "main"
    ]


def test_resnet_keys():
    """OpenLTH's CIFAR ResNet keys are ours; torchvision-style names (its ImageNet ResNet's,
    model.conv1, model.layer1.0.downsample.0, ...) map by position."""
    ours = build("cifar_resnet_20", 10, seed=0).state_dict()
    assert map_state(dict(ours), ours, "x").keys() == ours.keys()
    assert any(k.startswith("blocks.3.shortcut.0") for k in ours)

    def torchvision_name(key: str) -> str:
        parts = key.split(".")
        if parts[0] == "blocks":
            n = int(parts[1])
            parts = [f"layer{n // 3 + 1}", str(n % 3)] + [
                "downsample" if p == "shortcut" else p for p in parts[2:]
            ]
        else:
            parts = [{"conv": "conv1", "bn": "bn1"}.get(parts[0], parts[0])] + parts[1:]
        return "model." + ".".join(parts)

    theirs = {torchvision_name(k): v.clone() for k, v in ours.items()}
    assert "model.layer2.0.downsample.0.weight" in theirs
    mapped = map_state(theirs, ours, "x")
    assert list(mapped) == list(ours) and all(torch.equal(mapped[k], ours[k]) for k in ours)


def test_mismatched_architecture_names_the_key(tmp_path):
    ours = build("mnist_lenet_300_100", 10, seed=0).state_dict()
    theirs = openlth_lenet_state(0)
    theirs["fc_layers.1.weight"] = torch.zeros(50, 300)
    with pytest.raises(
        LinpathError,
        match=r"'fc_layers.1.weight' \(50, 300\) onto linpath's 'fc_layers.1.weight' \(100, 300\)",
    ):
        map_state(theirs, ours, "model_ep0_it0.pth")
    short = {k: v for k, v in openlth_lenet_state(0).items() if not k.startswith("fc.")}
    with pytest.raises(LinpathError, match="first unmatched: fc.weight"):
        map_state(short, ours, "f")


def test_import_errors(tmp_path, openlth_run):
    (tmp_path / "empty").mkdir()
    with pytest.raises(LinpathError, match="holds no OpenLTH run"):
        import_run(tmp_path / "empty", tmp_path / "runs")
    main_dir = openlth_run / "replicate_1" / "main"
    torch.save(openlth_lenet_state(0), main_dir / "model_ep0_it500.pth")
    with pytest.raises(LinpathError, match="500 iterations into an epoch of 469"):
        import_run(openlth_run, tmp_path / "runs")
    (main_dir / "model_ep0_it500.pth").unlink()
    (main_dir / "hparams.log").write_text(HPARAMS.replace("0.1", "0.2"))
    with pytest.raises(LinpathError, match="different hparams"):
        import_run(openlth_run, tmp_path / "runs")


def test_cli_import(openlth_run, tmp_path, capsys):
    (openlth_run / "replicate_2" / "main" / "model_ep2_it0.pth").unlink()
    assert main(["import-openlth", str(openlth_run), "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert (
        "imported:" in out
        and "linpath sweep" in out
        and "replicate 1" in out
        and "no final checkpoint" in out
    )
