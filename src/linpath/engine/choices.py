"""The engine's option values and their checks (BatchNorm policies, the held endpoint of a
parameter subset, a subset's terms, the tasks, the stopping rule's least examples), apart from the code that applies them: they import no
torch, so the sweep setting's flags and checks, and `linpath --help`, stay light.
bn_stats.py and params.py apply them and export them too."""

from __future__ import annotations

from linpath.errors import LinpathError

BN_POLICIES = ("interpolate", "recompute")
DEFAULT_BN_BATCHES = 16  # recompute: training batches per point (2,048 examples at batch 128)
HOLDS = ("end", "start")
TASKS = ("classification", "causal-lm")  # what a path's loss and error are (tasks.py)
MIN_EXAMPLES = 100  # streamed.py: units read before the stopping rule may stop a point


def check_bn_policy(bn: str) -> str:
    if bn not in BN_POLICIES:
        raise LinpathError(f"unknown BatchNorm policy {bn!r} (known: {', '.join(BN_POLICIES)})")
    return bn


def check_hold(hold: str) -> None:
    if hold not in HOLDS:
        raise LinpathError(f"unknown hold {hold!r} (known: {', '.join(HOLDS)})")


def spec_terms(spec: str) -> list[str]:
    """The terms of a parameter-subset spec (params.py); one line naming the spec when it has
    none or an empty layer."""
    if not isinstance(spec, str):
        raise LinpathError(f"a parameter subset must be a string such as 'fc1.*', got {type(spec).__name__}")
    terms = [t.strip() for t in spec.split(",")]
    if not spec.strip() or not all(terms):
        raise LinpathError(f"parameter subset {spec!r} has an empty term (terms are separated by commas)")
    for term in terms:
        if term.startswith("layer:") and not term[len("layer:") :]:
            raise LinpathError(f"parameter subset {spec!r}: 'layer:' needs a module name, e.g. layer:fc1")
    return terms
