"""What a sweep of an external run evaluates on: a model factory and an evaluation set given on
the command line (--model module:callable, --data), in place of those its spec would build.

The data is not part of the sweep setting's key, so each setting of an external run records the
data it was evaluated on (sweep/<setting>/data.json: its name and a digest of its tensors) and a
later sweep of the same setting on other data is refused, never mixed into its results.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from linpath.config.external import is_external
from linpath.data.source import EvalSet
from linpath.errors import LinpathError
from linpath.io.files import atomic_write_text
from linpath.io.jsonfile import read_json
from linpath.io.rundir import RunDir
from linpath.io.tensors import tensor_bytes


@dataclass
class ExternalInputs:
    """--model and --data, resolved: a factory of fresh models and the evaluation set (CPU)."""

    make_model: Callable[[], nn.Module]
    evalset: EvalSet
    num_classes: int | None
    data: str  # as given on the command line

    def source(self) -> ExternalSource:
        return ExternalSource(self)


class ExternalSource:
    """The part of a data Source that a sweep uses (data/source.py): the evaluation set of any
    split name (the file is the split the user named), and no training batches."""

    def __init__(self, inputs: ExternalInputs):
        self.name = inputs.data
        self.inputs = inputs
        self.num_classes = inputs.num_classes
        self.num_train_examples = None

    def eval_set(self, split: str, device="cpu") -> EvalSet:
        e = self.inputs.evalset
        return EvalSet(e.inputs.to(device), e.labels.to(device), e.name)

    def train_batches(self, *args, **kwargs):
        raise LinpathError(
            "--bn recompute needs training batches, and an external run's --data is only an evaluation set; "
            "use --bn interpolate (or 'linpath path' with --bn-data)"
        )


def data_digest(evalset: EvalSet) -> str:
    """sha256 of the evaluation set's tensors (dtype, shape and bytes of inputs, then labels)."""
    h = hashlib.sha256()
    for tensor in (evalset.inputs, evalset.labels):
        h.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        h.update(tensor_bytes(tensor))
    return h.hexdigest()


def check_same_data(run: RunDir, key: str, inputs: ExternalInputs) -> None:
    """Record the data of an external run's setting `key`, or refuse other data than recorded."""
    record = run.setting_data(key)
    digest = data_digest(inputs.evalset)
    if record.is_file():
        was = read_json(record, dict)
        if was.get("sha256") != digest:
            raise LinpathError(
                f"sweep/{key} of {run.root} was evaluated on other data ({was.get('data')}, "
                f"{was.get('examples')} examples), not on --data {inputs.data}: sweep these into another "
                "--split, or move sweep/" + key + " away"
            )
        return
    text = json.dumps({"data": inputs.data, "examples": len(inputs.evalset), "sha256": digest}, indent=2)
    atomic_write_text(record, text + "\n")


def external_source(run: RunDir, spec, setting, inputs: ExternalInputs) -> ExternalSource:
    """The source a sweep of an external run evaluates on; one line where --model/--data do not apply."""
    if not is_external(spec):
        raise LinpathError(
            f"--model and --data are for external runs; {run.root} is a run of preset {spec.preset}, "
            "whose spec builds its model and loads its data"
        )
    if setting.bn == "recompute":
        inputs.source().train_batches()
    return inputs.source()
