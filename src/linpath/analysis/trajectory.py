"""The training trajectory against the straight line from init to final.

For each kept state θ_t of one replicate, with u = θ_T - θ_0 (T the final step):
  progress  = <θ_t - θ_0, u> / ‖u‖²      (0 at init, 1 at final: how far along the line)
  distance  = ‖θ_t - θ_0 - progress·u‖   (how far off the line), also relative to ‖u‖
  to_final  = ‖θ_T - θ_t‖, also relative to ‖θ_T‖
Only trained weights count: every floating entry except BatchNorm's running statistics.
Sums run in float64.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from linpath.engine.interpolate import check_compatible
from linpath.errors import LinpathError
from linpath.io.rundir import OutDir, RunDir
from linpath.io.tables import write_csv
from linpath.io.tensors import load_state_dict

TRAJECTORY_COLUMNS = ["t", "progress", "distance", "distance_rel", "to_final", "to_final_rel"]
STATISTICS = ("running_mean", "running_var")


def weight_vector(state: dict) -> torch.Tensor:
    """The state's trained weights as one float64 vector (keys in sorted order)."""
    keys = sorted(
        k for k, v in state.items() if v.is_floating_point() and k.rpartition(".")[2] not in STATISTICS
    )
    if not keys:
        raise LinpathError("the state has no floating-point weights")
    return torch.cat([state[k].detach().reshape(-1).to("cpu", torch.float64) for k in keys])


def _weights_like(state: dict, like: torch.Tensor, t: int, other: str) -> torch.Tensor:
    """weight_vector of the state at t, refused in one line where its size is not `like`'s."""
    v = weight_vector(state)
    if v.shape != like.shape:
        raise LinpathError(f"the state at t={t} has {v.numel()} weights, {other} {like.numel()}")
    return v


def trajectory(states: dict[int, dict], init: dict, final: dict) -> list[dict]:
    """One row (TRAJECTORY_COLUMNS) per state, by t ascending; see the module docstring."""
    for t in sorted(states):  # every state the initial one's keys and shapes (one line, never a traceback)
        check_compatible(states[t], init, f"the state at t={t}", "the initial state")
    check_compatible(final, init, "the final state", "the initial state")
    v0, vT = weight_vector(init), weight_vector(final)
    u = vT - v0
    uu = float(u @ u)
    if uu == 0:
        raise LinpathError("the initial and final states are equal: there is no line to project on")
    norm_u, norm_T = math.sqrt(uu), float(vT.norm())
    rows = []
    for t in sorted(states):
        v = _weights_like(states[t], v0, t, "the initial one")
        w = v - v0
        progress = float(w @ u) / uu
        distance = float((w - progress * u).norm())
        to_final = float((vT - v).norm())
        rows.append(
            {
                "t": t,
                "progress": progress,
                "distance": distance,
                "distance_rel": distance / norm_u,
                "to_final": to_final,
                "to_final_rel": to_final / norm_T if norm_T else math.nan,
            }
        )
    return rows


def trajectory_rows(run: RunDir, r: int) -> list[dict]:
    """trajectory() of replicate r's kept checkpoints in a run folder (final = its last kept
    step; the replicate must have finished training)."""
    if r not in run.replicates():
        raise LinpathError(f"replicate {r} of {run.root} has not finished training (no DONE marker)")
    steps = run.saved_steps(r)
    if len(steps) < 2 or steps[0] != 0:
        raise LinpathError(f"replicate {r} needs its t=0 and final checkpoints (kept: {steps})")
    states = {t: load_state_dict(run.checkpoint(r, t)) for t in steps}
    return trajectory(states, states[0], states[steps[-1]])


def write_trajectory(rows: list[dict], folder: str | os.PathLike, title: str) -> list[Path]:
    """trajectory.csv and trajectory.png in `folder`."""
    out = OutDir(folder)
    out.root.mkdir(parents=True, exist_ok=True)
    write_csv(out.trajectory_csv, TRAJECTORY_COLUMNS, rows)
    trajectory_figure(rows, title).savefig(out.trajectory_png, dpi=150, bbox_inches="tight")
    return [out.trajectory_csv, out.trajectory_png]


def trajectory_figure(rows: list[dict], title: str = "trajectory against the line init → final"):
    """Progress along the line (x) against distance from it (y), each point labelled by t; a
    matplotlib Figure built without pyplot."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot(1, 1, 1)
    x = [row["progress"] for row in rows]
    y = [row["distance_rel"] for row in rows]
    ax.plot(x, y, color="C0", marker="o", markersize=4, linewidth=1)
    span = max(max(x) - min(x), max(y) - min(y), 1e-12)
    last = None
    for row in rows:  # label t where the labels do not pile up (late checkpoints crowd at 1)
        here = (row["progress"], row["distance_rel"])
        if last is None or math.dist(here, last) > 0.03 * span or row is rows[-1]:
            ax.annotate(str(row["t"]), here, fontsize=7, xytext=(3, 3), textcoords="offset points")
            last = here
    ax.axhline(0, color="grey", linewidth=0.6)
    ax.set_xlabel("progress along init → final (projection coefficient)")
    ax.set_ylabel("distance from the line / ‖θ_T − θ_0‖")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


PLANE_TRAJECTORY_COLUMNS = ["t", "alpha", "beta", "off_plane", "off_plane_rel"]


def plane_coordinates(states: dict[int, dict], origin: dict, d_a: dict, d_b: dict) -> list[dict]:
    """Each state projected onto the plane θ_o + α·d_a + β·d_b (least squares over the trained
    weights, in float64): its (α, β), and its distance from the plane, also relative to ‖d_a‖.
    One row (PLANE_TRAJECTORY_COLUMNS) per state, by t ascending."""
    v0, a, b = weight_vector(origin), weight_vector(d_a), weight_vector(d_b)
    if not v0.shape == a.shape == b.shape:
        raise LinpathError(
            f"the plane's origin and directions differ in size ({v0.numel()}, {a.numel()}, {b.numel()} weights)"
        )
    gram = torch.tensor([[a @ a, a @ b], [a @ b, b @ b]], dtype=torch.float64)
    if float(torch.linalg.det(gram)) <= 1e-12 * float(a @ a) * float(b @ b):
        raise LinpathError(
            "the plane's two directions are parallel (or zero): there is no plane to project on"
        )
    rows = []
    for t in sorted(states):
        w = _weights_like(states[t], a, t, "the plane") - v0
        alpha, beta = torch.linalg.solve(gram, torch.stack([a @ w, b @ w])).tolist()
        off = float((w - alpha * a - beta * b).norm())
        rows.append(
            {"t": t, "alpha": alpha, "beta": beta, "off_plane": off, "off_plane_rel": off / float(a.norm())}
        )
    return rows
