"""linpath presets: the paper's four settings, a line each."""

from linpath.cli.registry import Command
from linpath.config.presets import PRESETS


def run(args) -> int:
    for name, entry in PRESETS.items():
        spec, t = entry.spec, entry.spec.train
        print(
            f"{name:22s} {spec.data.dataset:9s} {t.training_steps:>6s} batch {spec.data.batch_size:<5d} lr {t.lr:<5g} "
            f"momentum {t.momentum:<4g} wd {t.weight_decay:<7g} milestones {t.milestone_steps or '-'}"
        )
    return 0


COMMAND = Command("presets", "list the presets", lambda p: None, run, order=0, tensors=False)
