"""How many replicates stand behind each starting t of a sweep setting, and whether the setting
is complete.

A setting's curves at t are averaged over the replicates whose item file at t is valid; an item
deleted, damaged or not swept yet leaves fewer. The replicates a setting should hold are the
run's finished ones (their DONE marks) and any other it holds paths of; a setting is complete
when every one of them holds a path at every t the setting holds, but where a checkpoint grid
does not publish that replicate's revision (a gap of the grid, which the audit reports: no sweep
can fill it). The report states the count
wherever it is short of that, and withholds its verdicts on an incomplete setting.
"""

from __future__ import annotations

from linpath.analysis.curves import Curves


def replicates_at(curves: Curves, t: int) -> list[int]:
    """The replicates averaged at t."""
    return sorted(r for r, tt in curves.by_item if tt == t)


def expected_replicates(curves: Curves) -> list[int]:
    """The replicates the setting should hold: the run's finished ones and those it holds."""
    return sorted(set(curves.finished) | set(curves.replicates))


def expected_at(curves: Curves, t: int) -> list[int]:
    """The replicates the setting should hold at t: those expected whose source publishes t."""
    return [r for r in expected_replicates(curves) if (r, t) not in curves.unpublished]


def is_complete(curves: Curves) -> bool:
    return all(set(expected_at(curves, t)) <= set(replicates_at(curves, t)) for t in curves.steps)


def count_text(curves: Curves, t: int) -> str:
    """'1 of 2 replicates' where fewer than the setting's replicates are averaged at t, else ''."""
    n, expected = len(replicates_at(curves, t)), len(expected_replicates(curves))
    return f"{n} of {expected} replicates" if n < expected else ""


def incomplete_text(curves: Curves) -> str | None:
    """Which replicates are missing at which t, in words (None for a complete setting), e.g.
    'at t = 4, 8 replicate 1 is missing (1 of 2 averaged)'."""
    expected = expected_replicates(curves)
    by_missing: dict[tuple[int, ...], list[int]] = {}
    for t in curves.steps:
        missing = tuple(r for r in expected_at(curves, t) if r not in replicates_at(curves, t))
        if missing:
            by_missing.setdefault(missing, []).append(t)
    if not by_missing:
        return None
    parts = []
    for missing, steps in by_missing.items():
        who = f"replicate {missing[0]} is" if len(missing) == 1 else f"replicates {_listed(missing)} are"
        averaged = len(expected) - len(missing)
        parts.append(f"at t = {_listed(steps)} {who} missing ({averaged} of {len(expected)} averaged)")
    return "; ".join(parts)


def _listed(numbers, most: int = 8) -> str:
    numbers = list(numbers)
    shown = ", ".join(map(str, numbers[:most]))
    return shown + (f" and {len(numbers) - most} more" if len(numbers) > most else "")
