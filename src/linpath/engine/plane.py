"""Planes in weight space: θ(α, β) = θ_o + α·d_a + β·d_b, evaluated on the path engine.

Goodfellow et al. (2015) look at the plane through three states (d_a = θ_a - θ_o, d_b = θ_b -
θ_o); Li et al. (2018) at the plane around one state spanned by two random, filter-normalized
directions. Either way each point is written in place into the PathEvaluator's resident model
(floating entries mixed, integer buffers from θ_o) and scored by its evaluate_current, so the
scoring, batching, precision and BatchNorm folding (refolded per point) are the path's.
BatchNorm running statistics are mixed like the weights (the path's "interpolate" policy); far
outside the triangle a mixed running variance can turn negative and the point evaluates to NaN.

θ(α, β) = (1 - α - β)·θ_o + α·(θ_o + d_a) + β·(θ_o + d_b) is an affine combination of three
states, so when the evaluator uses a linear stem its output is mixed the same way from the
three anchors' stem outputs, computed once per chunk of examples (as a path mixes two).
"""

from __future__ import annotations

import hashlib

import torch

from linpath.engine.evaluator import PathEvaluator
from linpath.engine.interpolate import check_compatible
from linpath.engine.mixing import evaluate_mixed, stem_outputs
from linpath.engine.scoring import Result
from linpath.errors import LinpathError
from linpath.io.tensors import tensor_bytes


def through_three(origin: dict, a: dict, b: dict) -> tuple[dict, dict]:
    """The directions (θ_a - θ_o, θ_b - θ_o) of the plane through three states (floating entries)."""
    check_compatible(origin, a, "the origin", "state a")
    check_compatible(origin, b, "the origin", "state b")
    floating = [k for k, v in origin.items() if v.is_floating_point()]
    return {k: a[k] - origin[k] for k in floating}, {k: b[k] - origin[k] for k in floating}


def filter_normalized_direction(center: dict, generator: torch.Generator) -> dict:
    """A random direction as Li et al.'s loss-landscape makes it (dir_type 'states', 'filter'
    normalization, ignore='biasbn'): Gaussian entries, each filter (slice along the first axis)
    of a weight with two or more axes rescaled to the norm of that filter of `center`; every
    one-axis entry (biases, BatchNorm parameters and statistics) zero, so that the plane moves
    the weights only. Drawn in float64 on the CPU, so a seed gives the same direction anywhere."""
    out = {}
    for k, w in center.items():
        if not w.is_floating_point():
            continue
        if w.dim() <= 1:
            out[k] = torch.zeros_like(w)
            continue
        d = torch.randn(w.shape, generator=generator, dtype=torch.float64)
        w64 = w.detach().to("cpu", torch.float64)
        d_norm = d.flatten(1).norm(dim=1)
        w_norm = w64.flatten(1).norm(dim=1)
        d.mul_((w_norm / (d_norm + 1e-10)).view(-1, *([1] * (w.dim() - 1))))
        out[k] = d.to(w.dtype)
    return out


def random_directions(center: dict, seed: int) -> tuple[dict, dict]:
    """Two filter-normalized random directions around `center`, a pure function of `seed`."""
    g = torch.Generator().manual_seed(int(seed))
    return filter_normalized_direction(center, g), filter_normalized_direction(center, g)


class Plane:
    """θ(α, β) = origin + α·d_a + β·d_b on one PathEvaluator; evaluate(alphas, betas) gives the
    results on the grid, rows over β and columns over α."""

    def __init__(self, engine: PathEvaluator, origin: dict, d_a: dict, d_b: dict):
        check_compatible(engine.targets, origin, "the model", "the origin")
        for name, d in (("d_a", d_a), ("d_b", d_b)):
            missing = [k for k, v in origin.items() if v.is_floating_point() and k not in d]
            if missing:
                raise LinpathError(f"direction {name} has no entry {missing[0]!r}")
        self.e = engine
        self.origin = engine.like_targets(origin)
        floating = [k for k in self.origin if engine.targets[k].is_floating_point()]
        self.d_a = engine.like_targets({k: d_a[k] for k in floating})
        self.d_b = engine.like_targets({k: d_b[k] for k in floating})
        self._stems: tuple | None = None  # the whole set's stem outputs, when they fit in one chunk

    @torch.no_grad()
    def assign(self, alpha: float, beta: float) -> None:
        """Write θ(α, β) into the evaluator's model in place."""
        for k, target in self.e.targets.items():
            if k not in self.d_a:
                target.copy_(self.origin[k])
                continue
            torch.add(self.origin[k], self.d_a[k], alpha=float(alpha), out=target)
            target.add_(self.d_b[k], alpha=float(beta))

    @torch.no_grad()
    def evaluate_point(self, alpha: float, beta: float) -> Result:
        self.assign(alpha, beta)
        return self.e.evaluate_current()

    def evaluate(self, alphas, betas, progress=None) -> list[list[Result]]:
        """Results[i_beta][i_alpha]; `progress` (if given) is called after each point."""
        if self.e.uses_stem:
            return self._evaluate_mixed(alphas, betas, progress)
        rows = []
        for beta in betas:
            row = []
            for alpha in alphas:
                row.append(self.evaluate_point(alpha, beta))
                if progress is not None:
                    progress()
            rows.append(row)
        return rows

    def _anchors(self, lo: int, hi: int) -> list[tuple]:
        """Per batch of examples lo..hi: the stem's output at θ_o and its changes towards
        θ_o + d_a and θ_o + d_b (kept across calls for the whole set)."""
        if (lo, hi) == (0, len(self.e.labels)) and self._stems is not None:
            return self._stems
        a = {k: v + self.d_a[k] if k in self.d_a else v for k, v in self.origin.items()}
        b = {k: v + self.d_b[k] if k in self.d_b else v for k, v in self.origin.items()}
        h_o, h_a, h_b = (stem_outputs(self.e, state, lo, hi) for state in (self.origin, a, b))
        outputs = [(o, x - o, y - o) for o, x, y in zip(h_o, h_a, h_b)]
        if (lo, hi) == (0, len(self.e.labels)):
            self._stems = outputs
        return outputs

    def _evaluate_mixed(self, alphas, betas, progress) -> list[list[Result]]:
        """The grid with the stem's output mixed from the three anchors (mixing.py); θ_o's
        output moved by β·d_b is computed once per row and shared by the row's points."""
        row: dict = {}

        def mixer(point, outputs):
            alpha, beta = point
            if row.get("beta") != beta or row.get("outputs") is not outputs:  # a new row or chunk
                row.update(
                    beta=beta, outputs=outputs, moved=[torch.add(o, db, alpha=beta) for o, _, db in outputs]
                )
            moved = row["moved"]
            return lambda i, h, out: torch.add(moved[i], h[1], alpha=alpha, out=out)

        points = [(float(a), float(b)) for b in betas for a in alphas]
        results = evaluate_mixed(self.e, points, 3, self._anchors, lambda p: self.assign(*p), mixer, progress)
        return [results[i : i + len(alphas)] for i in range(0, len(results), len(alphas))]


def plane_fingerprint(origin: dict, d_a: dict, d_b: dict, inputs: torch.Tensor, labels: torch.Tensor) -> str:
    """A sha256 of what a plane's values depend on: the origin and both directions, the
    labels, and the inputs' shape with up to 1,000 examples evenly spread (hashing every input
    of a large set would cost more than it protects). Stored beside a plane's rows so that a
    resumed plane reuses only rows of the same plane."""
    digest = hashlib.sha256()
    for name, state in (("origin", origin), ("d_a", d_a), ("d_b", d_b)):
        for k in sorted(state):
            digest.update(f"{name}:{k}:{tuple(state[k].shape)}".encode())
            digest.update(tensor_bytes(state[k]))
    step = max(1, len(inputs) // 1000)
    digest.update(str(tuple(inputs.shape)).encode())
    digest.update(tensor_bytes(inputs[::step]))
    digest.update(tensor_bytes(labels))
    return digest.hexdigest()
