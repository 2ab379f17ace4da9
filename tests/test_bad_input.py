"""Bad input: each case gives one line naming what is wrong and where, a non-zero exit, and
leaves the run folder as it was. Also fuzzing of the parsers, and pickles that carry code.

Cases already covered elsewhere are not repeated here: tests/test_cli.py (unknown preset,
missing data folder, --batch-size -3, --training-steps 12xx, --lr fast, a truncated
checkpoint), tests/test_data.py (truncated/bad-magic/short IDX files, a broken gzip stream,
labels outside 0-9, wrong counts), tests/test_api.py (states of different shapes through the
`path` command and API, a pickled module).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linpath import cli
from linpath.config.presets import preset
from linpath.config.spec import override_fields, read_spec, write_spec
from linpath.config.steps import Step
from linpath.data import mnist
from linpath.errors import LinpathError
from linpath.io.rundir import RunDir
from linpath.io.tensors import load_state_dict, load_tensors
from linpath.sweep.grids import parse_grid
from linpath.train.loop import train_replicate

from ._reliability import record
from .test_cli import one_line_error
from .test_data import idx_bytes, tiny_mnist_files, tiny_spec
from .test_faults import copy_run

REPO = Path(__file__).resolve().parents[1]
TRAIN = ["train", "mnist_lenet_300_100"]


def refused(capsys, argv, message, case) -> str:
    line = one_line_error(capsys, argv)
    assert message in line, line
    record("bad-input", case, f"exit 2: {line}")
    return line


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


# --- overrides ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "extra,message",
    [
        (["--lernrate", "0.1"], "unrecognized arguments: --lernrate"),
        (["--batch-size", "12.5"], "invalid int value: '12.5'"),
        (["--augment", "maybe"], "expected true or false, got 'maybe'"),
        (["--replicates", "0"], "--replicates must be a positive integer, got 0"),
        (["--momentum", "1.5"], "--momentum must be in [0, 1), got 1.5"),
        (["--lr", "inf"], "--lr must be a finite number >= 0"),
        (["--lr", "nan"], "--lr must be a finite number >= 0"),
        (["--milestone-steps", "80ep,xx"], "not a step: 'xx'"),
        (["--warmup-steps", "-5"], "not a step: '-5'"),
        (["--train-precision", "fp16"], "unknown precision 'fp16'"),
        (["--model", "resnet_7"], "unknown model 'resnet_7'"),
        (["--dataset", "svhn"], "unknown dataset 'svhn'"),
        (["--seed", "-1"], "--seed must be >= 0"),
    ],
)
def test_malformed_overrides(capsys, extra, message):
    refused(capsys, TRAIN + extra, message, f"train override {' '.join(extra)}")


def test_zero_training_steps(capsys, data_root, tmp_path):
    refused(
        capsys,
        TRAIN + ["--training-steps", "0ep", "--data-root", str(data_root), "--out", str(tmp_path)],
        "--training-steps 0ep is zero iterations",
        "train --training-steps 0ep",
    )


# --- data -----------------------------------------------------------------------------------
def test_data_root_that_is_a_file(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LINPATH_MNIST_MIRRORS", "http://127.0.0.1:9")
    (tmp_path / "file").write_text("not a folder")
    line = refused(
        capsys,
        TRAIN + ["--data-root", str(tmp_path / "file"), "--out", str(tmp_path / "runs")],
        "file",
        "--data-root pointing at a file",
    )
    assert "--data-root" in line or "mnist" in line


def test_a_truncated_idx_archive_through_the_cli(capsys, data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("LINPATH_MNIST_MIRRORS", "http://127.0.0.1:9")
    root = tmp_path / "data"
    (root / "mnist").mkdir(parents=True)
    for p in (data_root / "mnist").iterdir():
        (root / "mnist" / p.name).symlink_to(p.resolve())
    bad = root / "mnist" / "t10k-labels-idx1-ubyte.gz"
    data = bad.read_bytes()
    bad.unlink()
    bad.write_bytes(data[: len(data) // 2])
    refused(
        capsys,
        TRAIN + ["--training-steps", "2it", "--data-root", str(root), "--out", str(tmp_path / "runs")],
        "t10k-labels-idx1-ubyte",
        "a truncated t10k-labels-idx1-ubyte.gz in the data root",
    )
    assert bad.read_bytes() == data[: len(data) // 2]  # not "repaired" behind the user's back


def test_wrong_image_shapes_are_named(tmp_path):
    files = tiny_mnist_files()
    files["train-images-idx3-ubyte"] = idx_bytes(np.zeros((6, 27, 28)))
    (tmp_path / "mnist").mkdir()
    for stem, data in files.items():
        (tmp_path / "mnist" / (stem + ".gz")).write_bytes(gzip.compress(data))
    with pytest.raises(LinpathError, match=r"train-images-idx3-ubyte.*\(27, 28\), expected \(28, 28\)") as e:
        mnist.load(tmp_path, files=tiny_spec(files), mirrors=[])
    assert "\n" not in str(e.value)
    record("bad-input", "MNIST images of shape 27x28", f"LinpathError: {e.value}")


# --- checkpoints in a run folder ------------------------------------------------------------
@pytest.fixture
def victim(small_run, tmp_path):
    return copy_run(small_run, tmp_path)


def sweep_argv(run: RunDir, data_root, steps="16"):
    return [
        "sweep",
        str(run.root),
        "--points",
        "3",
        "--from-steps",
        steps,
        "--quiet",
        "--data-root",
        str(data_root),
    ]


def _random_bytes(path):
    path.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)))


def _empty(path):
    path.write_bytes(b"")


def _other_shapes(path):
    state = torch.load(path, weights_only=True)
    state["fc_layers.1.weight"] = torch.zeros(50, 300)
    torch.save(state, path)


def _other_architecture(path):
    torch.save(torch.nn.Conv2d(3, 16, 3).state_dict(), path)


def _a_list(path):
    torch.save([torch.zeros(3)], path)


def _ints(path):
    torch.save({"fc.weight": 3}, path)


def _empty_dict(path):
    torch.save({}, path)


@pytest.mark.parametrize(
    "damage,message",
    [
        (_random_bytes, "corrupt or truncated checkpoint"),
        (_empty, "corrupt or truncated checkpoint"),
        (_other_shapes, "fc_layers.1.weight"),
        (_other_architecture, "weight"),
        (_a_list, "is not a state dict"),
        (_ints, "is not a state dict"),
        (_empty_dict, "is not a state dict"),
    ],
)
def test_bad_checkpoints_in_a_run_folder(capsys, victim, data_root, damage, message):
    path = victim.checkpoint(0, 16)
    damage(path)
    before = snapshot(victim.root)
    line = refused(
        capsys,
        sweep_argv(victim, data_root),
        message,
        f"sweep with a checkpoint: {damage.__name__.strip('_')}",
    )
    assert "iter-0000016" in line
    assert snapshot(victim.root) == before  # nothing lost, nothing written


def test_from_steps_not_kept_or_malformed(capsys, victim, data_root):
    refused(
        capsys,
        sweep_argv(victim, data_root, "17"),
        "no checkpoint at t=17",
        "sweep --from-steps 17 (not kept)",
    )
    refused(
        capsys,
        sweep_argv(victim, data_root, "16,abc"),
        "--from-steps takes iterations",
        "sweep --from-steps 16,abc",
    )


# --- spec.json edited by hand ---------------------------------------------------------------
def _lr_changed(d):
    d["train"]["lr"] = 0.2


def _hash_and_lr_changed(d):
    d["train"]["lr"] = 0.2
    from linpath.config.spec import Spec

    d["hash"] = Spec.from_json({k: v for k, v in d.items() if k != "hash"}).hash


def _wrong_type(d):
    d["train"]["lr"] = "fast"
    del d["hash"]


def _unknown_key(d):
    d["train"]["learning_rate"] = 0.1


def _not_an_object(d):
    return [1, 2]


@pytest.mark.parametrize(
    "edit,message",
    [
        (_lr_changed, "was edited"),
        (_hash_and_lr_changed, "does not match its folder"),
        (_wrong_type, "--lr must be of type float, got 'fast'"),
        (_unknown_key, "learning_rate"),
        (_not_an_object, "is not a linpath spec"),
        ("{ not json", "cannot read"),
    ],
)
def test_spec_json_edited_by_hand(capsys, victim, data_root, edit, message):
    d = json.loads(victim.spec_path.read_text())
    if isinstance(edit, str):
        victim.spec_path.write_text(edit)
    else:
        victim.spec_path.write_text(json.dumps(edit(d) or d))
    before = snapshot(victim.root)
    what = edit if isinstance(edit, str) else edit.__name__.strip("_")
    line = refused(
        capsys, sweep_argv(victim, data_root), message, f"sweep of a run whose spec.json was edited: {what}"
    )
    assert "spec.json" in line
    assert snapshot(victim.root) == before


# --- grids ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,message",
    [
        ("values:", "no points"),
        ("values:0.5,0.2,1", "strictly increasing"),
        ("0,0.5,0.5,1", "strictly increasing"),
        ("uniform:1", "at least 2 points"),
        ("uniform:10:1:0", "finite and increasing"),
        ("", "empty"),
        ("zigzag:10", "unknown grid"),
    ],
)
def test_bad_grids(text, message):
    with pytest.raises(LinpathError, match=re.escape(message)) as e:
        parse_grid(text)
    assert "\n" not in str(e.value)
    record("bad-input", f"grid {text!r}", f"LinpathError: {e.value}")


@pytest.mark.parametrize("points", ["1", "0", "-4"])
def test_sweep_with_too_few_points(capsys, victim, data_root, points):
    argv = sweep_argv(victim, data_root)
    argv[argv.index("--points") + 1] = points
    before = snapshot(victim.root)
    refused(capsys, argv, "at least 2 points", f"sweep --points {points}")
    assert snapshot(victim.root) == before


# --- fuzzing: anything either parses or raises LinpathError ----------------------------------
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
COUNT: dict[str, int] = {}


def _count(name):
    COUNT[name] = COUNT.get(name, 0) + 1


@pytest.fixture(scope="module", autouse=True)
def _record_fuzz():
    yield
    for name, n in COUNT.items():
        record("fuzz", name, "every input parsed or raised LinpathError", examples=n)


STEPLIKE = st.from_regex(r"\A\s*-?[0-9٣²]{0,4}\s*(ep|it|e|x)?\s*[0-9]{0,3}\s*(it|ep)?\s*\Z")


@FUZZ
@given(st.one_of(st.text(max_size=20), STEPLIKE, st.integers(), st.booleans(), st.floats()))
def test_fuzz_step_strings(text):
    _count("steps.Step.parse")
    try:
        step = Step.parse(text)
    except LinpathError:
        return
    assert step.epochs >= 0 and step.iterations >= 0
    assert Step.parse(str(step)) == step


GRIDLIKE = st.lists(
    st.sampled_from(
        [
            "uniform",
            "dense-end",
            "dense-start",
            "adaptive",
            "values",
            ":",
            ",",
            ";",
            "0",
            "1",
            "2",
            "100",
            "-1",
            "0.5",
            "1e400",
            "nan",
            "inf",
            "loss",
            "both",
            " ",
            "x",
            "1e-300",
            "-0",
            "٣",
        ]
    ),
    max_size=10,
).map("".join)


@FUZZ
@given(st.one_of(GRIDLIKE, st.text(max_size=30)))
def test_fuzz_grids(text):
    _count("grids.parse_grid")
    try:
        grid = parse_grid(text)
    except LinpathError:
        return
    if grid.kind != "adaptive" and grid.points <= 10_000:
        xs = grid.xs()
        assert all(b > a for a, b in zip(xs, xs[1:]))


FIELDS = [f.name for f in override_fields()] + ["replicates", "no_such_setting"]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.sampled_from(
        [
            "40ep",
            "2ep100it",
            "12xx",
            "80ep,120ep",
            "fp32",
            "bf16",
            "mnist",
            "cifar10",
            "mnist_lenet_300_100",
            "sgd",
            "",
        ]
    ),
)


@FUZZ
@given(st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=4))
def test_fuzz_spec_overrides(overrides):
    _count("spec.Spec.with_overrides")
    try:
        spec = preset("mnist_lenet_300_100").with_overrides(overrides)
    except LinpathError as e:
        assert_one_line(str(e))
        return
    assert_applied(spec, overrides)


def assert_one_line(message: str) -> None:
    assert message.strip() and "\n" not in message and "Traceback" not in message, message


def assert_applied(spec, overrides: dict) -> None:
    """A spec that was accepted is valid and holds every override given."""
    assert spec.validate() is spec
    sections = (spec.data, spec.model, spec.train)
    for name, value in overrides.items():
        if value is None:
            continue
        held = (
            spec.replicates
            if name == "replicates"
            else next(getattr(s, name) for s in sections if hasattr(s, name))
        )
        assert held == value and type(held) is type(value), (name, value, held)


FLAGS = ["--" + f.name.replace("_", "-") for f in override_fields()] + ["--replicates"]


@FUZZ
@given(
    st.lists(st.tuples(st.sampled_from(FLAGS), st.one_of(st.text(max_size=8), VALUES.map(str))), max_size=3)
)
@pytest.mark.slow
def test_fuzz_the_command_line_overrides(pairs):
    _count("the CLI parser (train overrides)")
    argv = TRAIN + [
        x for flag, value in pairs for x in (flag, value) if not value.startswith("-") or x == flag
    ]
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = cli.build_parser().parse_args([a for a in argv if a])
    except SystemExit as e:
        assert e.code == 2
        assert_one_line(stderr.getvalue().strip())
        return
    try:
        spec = cli.common.spec_from(args)
    except LinpathError as e:
        assert_one_line(str(e))
        return
    given = {f.name: getattr(args, f.name) for f in override_fields()} | {"replicates": args.replicates}
    assert_applied(spec, given)


# --- security: checkpoints never run code -----------------------------------------------------
class Payload:
    """Unpickling this calls `action(*args)`: it opens (creates) a file, or execs code."""

    def __init__(self, action, args):
        self.action, self.args = action, args

    def __reduce__(self):
        return self.action, self.args


def payloads(marker: Path):
    return {
        "open() creating a file": Payload(open, (str(marker), "w")),
        "exec() of Python code": Payload(exec, (f"import pathlib; pathlib.Path({str(marker)!r}).touch()",)),
        "os.system of a shell command": Payload(__import__("os").system, (f"touch '{marker}'",)),
    }


@pytest.mark.parametrize(
    "kind", ["open() creating a file", "exec() of Python code", "os.system of a shell command"]
)
def test_pickles_carrying_code_are_refused(capsys, tmp_path, victim, data_root, mnist, kind):
    control_marker = tmp_path / "control-ran"
    torch.save({"model": payloads(control_marker)[kind]}, tmp_path / "control.pt")
    torch.load(tmp_path / "control.pt", weights_only=False)  # the payload is real: an unsafe load runs it
    assert control_marker.exists()

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model": payloads(marker)[kind], "step": 3}, evil)
    outcomes = []
    for loader in (load_tensors, load_state_dict):
        with pytest.raises(LinpathError, match="refusing to load") as e:
            loader(evil)
        assert "\n" not in str(e.value)
        outcomes.append(loader.__name__)
    # through the command line: a checkpoint in a run folder, and the `path` command
    victim.checkpoint(0, 16).write_bytes(evil.read_bytes())
    line = one_line_error(capsys, sweep_argv(victim, data_root))
    assert "refusing to load" in line and "iter-0000016" in line
    line = one_line_error(
        capsys,
        [
            "path",
            str(evil),
            str(victim.checkpoint(0, 300)),
            "--model",
            "mnist_lenet_300_100",
            "--data",
            "mnist",
            "--data-root",
            str(data_root),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert "refusing to load" in line
    # a poisoned resume file
    spec = read_spec(victim)
    fresh = RunDir(tmp_path / "fresh" / spec.run_name)
    write_spec(fresh, spec)
    fresh.resume_file(0).parent.mkdir(parents=True)
    fresh.resume_file(0).write_bytes(evil.read_bytes())
    with pytest.raises(LinpathError, match="refusing to load"):
        train_replicate(spec, fresh, 0, mnist, progress=False)
    assert not marker.exists()
    record(
        "security",
        f"a checkpoint whose pickle runs {kind}",
        "refused by load_tensors, load_state_dict, `linpath sweep`, `linpath path` and training's resume: "
        f"one line ({line.split(': ', 1)[1][:60]}...); the code did not run",
    )


def test_no_shell_strings_and_only_safe_loads_in_the_source():
    sources = {p: p.read_text() for p in (REPO / "src" / "linpath").rglob("*.py")}
    for path, text in sources.items():
        for pattern in (
            r"shell\s*=\s*True",
            r"os\.system\(",
            r"os\.popen\(",
            r"pickle\.loads?\(",
            r"(?<![\w.])eval\(",
            r"(?<![\w.])exec\(",
        ):
            assert not re.search(pattern, text), f"{path}: {pattern}"
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{path}: {call}"
    record(
        "security",
        "source scan of src/linpath",
        f"{len(sources)} files: no shell=True, os.system, os.popen, eval/exec or pickle.loads; "
        "every torch.load has weights_only=True",
    )
