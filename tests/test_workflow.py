"""The researcher's own workflow: models whose outputs are not bare logits, checkpoints as other
tools save them, extrapolation past BatchNorm's valid range, extra kept steps, pandas tables."""

from __future__ import annotations

import shutil
import sys
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

import linpath
from linpath.analysis.curves import REPLICATE_COLUMNS, SUMMARY_COLUMNS
from linpath.api.path_folder import path_between_files
from linpath.cli import main
from linpath.config.presets import preset
from linpath.config.schedule import Schedule
from linpath.config.spec import write_spec
from linpath.errors import LinpathError
from linpath.io.rundir import RunDir
from linpath.io.tables import write_csv
from linpath.sweep.paths_tables import PATH_COLUMNS, format_rows
from linpath.train.log import LOG_COLUMNS

# --- small models and data ------------------------------------------------------------------


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g)


@pytest.fixture(scope="module")
def states():
    return mlp(0).state_dict(), mlp(1).state_dict()


class Wrapped(nn.Module):
    """The MLP, its logits returned inside another structure."""

    def __init__(self, how: str):
        super().__init__()
        self.net, self.how = mlp(0), how

    def forward(self, x):
        logits = self.net(x)
        if self.how == "tuple":
            return logits, logits.sum()
        if self.how == "dict":
            return {"logits": logits, "hidden": x}
        if self.how == "only-tensor":
            return {"scores": logits, "note": "text"}
        return "not a tensor"


def same(a, b) -> None:
    assert np.allclose(a.loss, b.loss, rtol=1e-6, atol=1e-7) and np.allclose(a.error, b.error)


# --- 1. outputs -------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["tuple", "dict", "only-tensor"])
def test_outputs_other_than_a_tensor_are_read_as_logits(data, states, how):
    plain = linpath.path(Wrapped("tuple").net, *states, data, grid=4)
    prefixed = [{f"net.{k}": v for k, v in s.items()} for s in states]
    curve = linpath.path(Wrapped(how), *prefixed, data, grid=4)
    same(curve, plain)


def test_output_fn_and_unusable_outputs(data, states):
    prefixed = [{f"net.{k}": v for k, v in s.items()} for s in states]
    plain = linpath.path(mlp(), *states, data, grid=3)
    picked = linpath.path(Wrapped("dict"), *prefixed, data, grid=3, output_fn=lambda out: out["logits"])
    same(picked, plain)
    with pytest.raises(LinpathError, match="output is a str") as e:
        linpath.path(Wrapped("str"), *prefixed, data, grid=3)
    assert "\n" not in str(e.value)
    with pytest.raises(LinpathError, match="output_fn returned a int"):
        linpath.path(mlp(), *states, data, grid=3, output_fn=lambda out: 3)


OWN_MODEL = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x):
        return {"scores": self.net(x), "extra": self.net(x)}

def logits(out):
    return out["scores"]
"""


def test_output_option_of_linpath_path(tmp_path, data, states):
    for name, state in zip(("a", "b"), states):
        torch.save({f"net.{k}": v for k, v in state.items()}, tmp_path / f"{name}.pt")
    torch.save(data, tmp_path / "data.pt")
    (tmp_path / "own.py").write_text(OWN_MODEL)
    own = str(tmp_path / "own.py")
    args = (tmp_path / "a.pt", tmp_path / "b.pt", f"{own}:Net", str(tmp_path / "data.pt"))
    curve, _ = path_between_files(*args, out=tmp_path / "out", points=3, output=f"{own}:logits")
    same(curve, linpath.path(mlp(), *states, data, grid=3))
    with pytest.raises(LinpathError, match="output is a dict"):  # two tensors, no "logits": ambiguous
        path_between_files(*args, out=tmp_path / "out", points=3)
    with pytest.raises(LinpathError, match="--output: .* has no callable 'nothing'"):
        path_between_files(*args, out=tmp_path / "out", points=3, output=f"{own}:nothing")


def test_a_hugging_face_classifier(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
    )
    config.num_labels = 3

    def bert(seed):
        torch.manual_seed(seed)
        return transformers.BertForSequenceClassification(config).eval()

    g = torch.Generator().manual_seed(0)
    ids, labels = torch.randint(0, 50, (12, 7), generator=g), torch.randint(0, 3, (12,), generator=g)
    a, b = bert(0), bert(1)
    curve = linpath.path(bert(2), a, b, (ids, labels), grid=3)
    with torch.no_grad():
        ends = [torch.nn.functional.cross_entropy(m(ids).logits, labels).item() for m in (a, b)]
    assert np.allclose(curve.loss[[0, -1]], ends, rtol=1e-5)


# --- 2. checkpoint formats --------------------------------------------------------------------


def lightning(state: dict) -> dict:
    """What PyTorch Lightning's Trainer.save_checkpoint writes for a module holding `self.model`."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=0.1, momentum=0.9)
    return {
        "epoch": 3,
        "global_step": 120,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": OrderedDict(
            [*((f"model.{k}", v) for k, v in state.items()), ("criterion.weight", torch.ones(3))]
        ),
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 4}}}},
        "callbacks": {},
        "optimizer_states": [opt.state_dict()],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": {"lr": 0.1, "hidden": 8},
    }


FORMATS = {
    "plain.pt": lambda s: s,
    "wrapped.pt": lambda s: {"state_dict": s, "epoch": 3},
    "model_state_dict.pth": lambda s: {"model_state_dict": s, "optimizer_state_dict": {"state": {}}},
    "model.pt": lambda s: {"model": s, "step": 7},
    "lightning.ckpt": lightning,
    "ddp.pt": lambda s: {f"module.{k}": v for k, v in s.items()},
    "ddp-wrapped.pt": lambda s: {"state_dict": {f"module.{k}": v for k, v in s.items()}, "epoch": 1},
}


def save(tmp_path, name: str, state: dict, fmt) -> str:
    path = tmp_path / name
    if name.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(fmt(state), path)
    return str(path)


@pytest.mark.parametrize("name", [*FORMATS, "weights.safetensors"])
def test_every_format_gives_the_plain_state_dicts_curve(tmp_path, data, states, name):
    plain = linpath.path(mlp(), *states, data, grid=4)
    fmt = FORMATS.get(name)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    a, b = (save(tmp_path / d, name, s, fmt) for d, s in zip("ab", states))
    same(linpath.path(mlp(), a, b, data, grid=4), plain)
    same(linpath.path(mlp(), fmt(states[0]) if fmt else states[0], b, data, grid=4), plain)  # in memory too
    torch.save(data, tmp_path / "data.pt")
    curve, _ = path_between_files(
        a, b, f"{__file__}:mlp", str(tmp_path / "data.pt"), out=tmp_path / "out", points=4
    )
    same(curve, plain)


def test_key_names_any_other_place(tmp_path, data, states):
    plain = linpath.path(mlp(), *states, data, grid=3)
    for d, s in zip("ab", states):
        torch.save(
            {"ema": {"weights": s, "decay": 0.999}, "step": 9, "model": {"w": 1}}, tmp_path / f"{d}.pt"
        )
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    same(linpath.path(mlp(), a, b, data, grid=3, key="ema.weights"), plain)
    torch.save(data, tmp_path / "data.pt")
    curve, _ = path_between_files(
        a, b, f"{__file__}:mlp", str(tmp_path / "data.pt"), out=tmp_path / "o", points=3, key="ema.weights"
    )
    same(curve, plain)
    with pytest.raises(LinpathError, match="is not a state dict .*'ema', 'step', 'model'.*--key"):
        linpath.path(mlp(), a, b, data, grid=3)
    with pytest.raises(LinpathError, match="key 'ema.weight': no entry 'weight'"):
        linpath.path(mlp(), a, b, data, grid=3, key="ema.weight")


def test_a_checkpoint_of_another_model_names_the_first_key(tmp_path, data, states):
    other = {f"model.{k}": v for k, v in states[0].items() if k != "2.bias"}
    with pytest.raises(LinpathError, match="key '0.weight' is only in the model") as e:
        linpath.path(mlp(), other, other, data, grid=3)
    assert "\n" not in str(e.value)


def test_wrapped_checkpoints_still_never_run_code(tmp_path, data, states):
    torch.save({"state_dict": states[0], "hyper_parameters": mlp()}, tmp_path / "evil.ckpt")
    with pytest.raises(LinpathError, match="refusing to load"):
        linpath.path(mlp(), tmp_path / "evil.ckpt", states[1], data, grid=3)


# --- 3. extrapolation and BatchNorm -----------------------------------------------------------


def bn_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    net[1].running_var.copy_(torch.rand(8) * 0.1 + (2.0 if seed else 0.05))  # far apart: past 1, negative
    return net.eval()


def test_a_negative_extrapolated_variance_warns_once(data):
    a, b = bn_net(0).state_dict(), bn_net(1).state_dict()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        inside = linpath.path(bn_net(0), a, b, data, grid=[0.0, 0.5, 1.0, 1.2])
    assert not [w for w in caught if "running_var" in str(w.message)] and np.isfinite(inside.loss).all()
    with pytest.warns(RuntimeWarning, match=r"BatchNorm '1': .*negative at x = -1 .*recompute") as caught:
        curve = linpath.path(bn_net(0), a, b, data, grid=[-1.0, -0.5, 0.0, 1.0])
    assert len([w for w in caught if "running_var" in str(w.message)]) == 1
    assert np.isnan(curve.loss[0]) and np.isfinite(curve.loss[2:]).all()


# --- 4. checkpoints at the steps the user asks for --------------------------------------------


@pytest.mark.slow  # trains a 30-iteration run through the CLI
def test_keep_steps_are_kept_besides_the_papers_and_usable(tmp_path, data_root):
    base = preset("mnist_lenet_300_100")
    assert base.hash == "63e0742d57"  # an empty keep_steps leaves every existing hash alone
    assert base.with_overrides({"keep_steps": "5,7"}).hash != base.hash
    common = ["--data-root", str(data_root), "--device", "cpu", "--quiet"]
    argv = ["train", "mnist_lenet_300_100", "--training-steps", "30it", "--replicates", "1", "--out"]
    assert main([*argv, str(tmp_path), "--keep-steps", "5,7", *common]) == 0
    (folder,) = tmp_path.iterdir()
    run = RunDir(folder)
    assert run.saved_steps(0) == [0, 1, 2, 4, 5, 7, 8, 16, 30]
    sweep = ["sweep", str(folder), "--from-steps", "5,7", "--points", "3", "--eval-examples", "500"]
    assert main([*sweep, *common]) == 0
    assert sorted(p.name for p in run.sweep_dir.glob("*/r*-t*.csv")) == ["r0-t0000005.csv", "r0-t0000007.csv"]
    with pytest.raises(LinpathError, match="past the end of training"):
        Schedule.of(base.with_overrides({"keep_steps": "31", "training_steps": "30it"}), 60000)


# --- 5. pandas -------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_curve_as_a_data_frame(data, states):
    pytest.importorskip("pandas")
    curve = linpath.path(mlp(), *states, data, grid=5)
    frame = curve.to_frame(replicate=2, t=16)
    assert list(frame.columns) == PATH_COLUMNS and len(frame) == 5
    assert np.array_equal(frame["x"].to_numpy(), curve.x) and np.allclose(frame["loss"], curve.loss)
    assert (frame["replicate"] == 2).all() and (frame["t"] == 16).all() and frame["loss"].dtype == float


def fabricated_run(root) -> RunDir:
    """A run folder as training, the sweep and the report leave it, written without training."""
    spec = preset("mnist_lenet_300_100").with_overrides({"replicates": 2})
    run = RunDir(root / spec.run_name)
    run.root.mkdir()
    write_spec(run, spec)
    for setting, bn in (
        ("test-interpolate-uniform3-fp32", "interpolate"),
        ("test-recompute-uniform3-fp32", "recompute"),
    ):
        (run.sweep_dir / setting).mkdir(parents=True)
        for r, t in ((0, 0), (1, 0), (0, 16)):
            rows = [
                [r, t, x, "test", bn, 100, "fp32", 1.0 + x + r, 0.5, 0.0, 0.0] for x in (0.0, 0.5, 1.0)
            ]  # whole split: no se
            (run.sweep_dir / setting / f"r{r}-t{t:07d}.csv").write_text(format_rows(rows))
        metrics = [dict(setting=setting, replicate=0, t=0, quantity="loss", start_value=1.0)]
        write_csv(run.results_dir(setting) / "metrics.csv", REPLICATE_COLUMNS, metrics)
        summary = [
            dict(setting=setting, t=0, quantity="loss", metric="rise_over_start", replicates=2, mean=0.1)
        ]
        write_csv(run.results_dir(setting) / "summary.csv", SUMMARY_COLUMNS, summary)
    for r in range(2):
        write_csv(
            run.train_log(r), LOG_COLUMNS, [[469 * e, e, 0.1, 0.3, 0.2, 0.95 + r / 100, 1.5] for e in (1, 2)]
        )
    return run


def test_load_gives_the_runs_tables_tidy(tmp_path):
    pytest.importorskip("pandas")
    run = fabricated_run(tmp_path)
    tables = linpath.load(run.root)
    assert tables.spec.preset == "mnist_lenet_300_100" and tables.root == run.root
    paths = tables.paths
    assert list(paths.columns) == ["setting", *PATH_COLUMNS] and len(paths) == 2 * 3 * 3
    assert set(paths["setting"]) == {"test-interpolate-uniform3-fp32", "test-recompute-uniform3-fp32"}
    first = paths[(paths.setting == "test-interpolate-uniform3-fp32") & (paths.replicate == 1)]
    assert first["loss"].tolist() == [2.0, 2.5, 3.0] and first["x"].tolist() == [0.0, 0.5, 1.0]
    assert list(tables.metrics.columns) == REPLICATE_COLUMNS and len(tables.metrics) == 2
    assert list(tables.summary.columns) == SUMMARY_COLUMNS and set(tables.summary["setting"]) == set(
        paths["setting"]
    )
    log = tables.train_log
    assert list(log.columns) == ["replicate", *LOG_COLUMNS] and log["replicate"].tolist() == [0, 0, 1, 1]
    assert log.groupby("replicate")["test_accuracy"].last().tolist() == [0.95, 0.96]
    # before any sweep or report: empty tables with their columns, not an error
    (tmp_path / "bare").mkdir()
    bare = fabricated_run(tmp_path / "bare")
    for folder in (bare.sweep_dir, bare.root / "results"):
        shutil.rmtree(folder)
    tables = linpath.load(bare.root)
    assert tables.paths.empty and list(tables.paths.columns) == ["setting", *PATH_COLUMNS]
    assert tables.summary.empty and len(tables.train_log) == 4
    with pytest.raises(LinpathError, match="not a linpath run folder"):
        linpath.load(tmp_path)


def test_without_pandas_one_line_says_how_to_get_it(monkeypatch, data, states):
    curve = linpath.path(mlp(), *states, data, grid=3)
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now fails
    with pytest.raises(LinpathError, match=r"pip install 'linpath\[pandas\]'"):
        curve.to_frame()
