"""Checkpoint grids published as revisions: the step a revision's name stands for, and the steps
a grid selection asks for.

Pythia publishes step0, step1, step2, step4, ..., step512, step1000, step2000, ...,
step143000 (main is the last one again); OLMo stepN-tokensXB, some with a stageK- prefix. A
name naming no step (main, a tag, refs/pr/1) is never part of a grid. Selections:
  paper   the paper's kept steps up to the last published one (config/steps.kept_steps:
          {0} ∪ {2^k: k <= 10} ∪ {1000k: k >= 2} ∪ {last}); where 1024 is not published but
          1000 is (Pythia's grid), 1000 stands in for it;
  all     every step published (under any replicate);
  a list  'step0,step16,step1000' or '0,16,1000': those steps.
Steps a selection asks for that a replicate does not publish are its missing revisions (the
audit names them, analysis/grid_audit.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from linpath.config.steps import kept_steps
from linpath.errors import LinpathError

SELECTIONS = ("paper", "all")
STEP_NAME = re.compile(r"^(?:stage\d+-)?step(?P<t>\d+)(?:-tokens\d+(?:\.\d+)?[KMBT]?)?$")


def step_of(name: str) -> int | None:
    """The step a revision's name stands for (step1000, stage1-step1000-tokens4B: 1000), else None."""
    m = STEP_NAME.match(name)
    return int(m.group("t")) if m else None


def steps_by_name(names: Iterable[str], where: str) -> dict[int, str]:
    """{step: revision name} of every name that names a step; one line where two name one step."""
    out: dict[int, str] = {}
    for name in sorted(names):
        t = step_of(name)
        if t is None:
            continue
        if t in out:
            raise LinpathError(
                f"{where}: revisions {out[t]!r} and {name!r} both name step {t}; "
                "choose one with a list of revisions (e.g. --revisions step0,step1000)"
            )
        out[t] = name
    return dict(sorted(out.items()))


def paper_steps(published: set[int]) -> list[int]:
    """The paper's grid up to the last published step (see the module's docstring)."""
    if not published:
        return []
    wanted = kept_steps(max(published))
    if 1024 in wanted and 1024 not in published and 1000 in published:
        wanted = sorted({*wanted, 1000} - {1024})
    return wanted


def listed_steps(text: str) -> list[int]:
    """'step0,step16,1000' -> [0, 16, 1000]; one line for an entry that names no step."""
    steps = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        t = int(part) if part.isdigit() else step_of(part)
        if t is None:
            raise LinpathError(
                f"--revisions {text!r}: {part!r} names no step (write step1000, stage1-step1000-tokens4B or "
                "1000), or give paper or all"
            )
        steps.add(t)
    if not steps:
        raise LinpathError(f"--revisions {text!r} lists no revision")
    return sorted(steps)


def requested_steps(selection: str, published: set[int]) -> list[int]:
    """The steps `selection` asks for, given the steps published under any replicate."""
    if selection == "paper":
        return paper_steps(published)
    if selection == "all":
        return sorted(published)
    return listed_steps(selection)


@dataclass(frozen=True)
class Choice:
    """What one replicate contributes to a grid: the revisions chosen, the steps missing."""

    revisions: dict[int, str]  # step -> revision name, the requested steps it publishes
    missing: tuple[int, ...]  # requested steps it does not publish


def choose(by_step: dict[int, str], requested: list[int]) -> Choice:
    """The requested steps a replicate publishes, and those it does not."""
    chosen = {t: by_step[t] for t in requested if t in by_step}
    return Choice(chosen, tuple(t for t in requested if t not in by_step))
