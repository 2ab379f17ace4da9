"""Curvature along a path: its cost per point in forward passes, and its spectra against two anchors.

    python benchmarks/curvature.py                       # LeNet on 10,000 examples, ResNet-20 on 1,000
    python benchmarks/curvature.py --tiny                # a check that it runs (200 examples, few steps)
    PYTHONPATH=/tmp/hessdeps python benchmarks/curvature.py   # with the anchors (see below)

Per model, between two random initializations (BatchNorm statistics randomized, as
sweep_throughput.py's endpoints) on random inputs of the model's shape (--data-root DIR: the
data set's first test images instead), timed in the same run, best of --repeats:
  forward      one plain forward pass over the examples at θ(x) (model(inputs) in the engine's
               batches, no_grad, eval mode): the unit of cost, "one forward-pass equivalent";
  engine       the sweep's own point (PathEvaluator: LeNet's stem mixed, BatchNorm folded);
  curvature    PathCurvature.points at one x: L, L' and L'' = uᵀHu, by the Taylor pass
               ("taylor", engine/taylor.py: the default where the model traces and it is exact),
               by forward mode twice ("forward") and by forward over reverse ("reverse");
  spectrum     the top --k Hessian eigenvalues at x = 0.5 (Lanczos, --steps products) and the
               trace (Hutch++, --matvecs products), in Hessian-vector products and seconds.
Printed: seconds per point, the curvature's cost in forward-pass equivalents (the goal is at most
3), and, where importable, the anchors on the same model, state and data:
  PyHessian 0.1 (pip install --target /tmp/hessdeps --no-deps pyhessian): power iteration for the
      top eigenvalues (maxIter 100, tol 1e-3) and Hutchinson's trace (--matvecs samples);
  hessian-eigenthings 1.0.0a5 (pip install --target /tmp/hessdeps --no-deps hessian-eigenthings):
      Lanczos (which="LA", --steps steps) and Hutch++ (--matvecs products).
Neither is a dependency of linpath: install them in a throwaway folder and put it on PYTHONPATH.
Their agreement is stated as the relative difference of each eigenvalue and the trace's
difference in units of linpath's standard error; their time as a ratio to linpath's.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from linpath.data.source import EvalSet
from linpath.engine.curvature import PathCurvature
from linpath.engine.evaluator import PathEvaluator
from linpath.engine.interpolate import interpolate_state
from linpath.models import build
from sweep_throughput import SHAPES, endpoint

DEFAULTS = {"mnist_lenet_300_100": 10000, "cifar_resnet_20": 1000}
DATASETS = {"mnist_lenet_300_100": "mnist", "cifar_resnet_20": "cifar10"}


def images(name: str, examples: int, data_root: str | None) -> EvalSet:
    if data_root:
        from linpath import data

        evalset = data.load(DATASETS[name], data_root).eval_set("test", "cpu")
        return EvalSet(evalset.inputs[:examples], evalset.labels[:examples])
    g = torch.Generator().manual_seed(0)
    return EvalSet(
        torch.randn(examples, *SHAPES[name], generator=g), torch.randint(0, 10, (examples,), generator=g)
    )


def best(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def costs(name: str, evalset: EvalSet, start: dict, end: dict, repeats: int) -> PathCurvature:
    engine = PathEvaluator(build(name, 10).to(evalset.inputs.dtype), evalset)
    segment = engine.path(start, end)
    curve = PathCurvature(engine, start, end)

    @torch.no_grad()
    def forward():  # the values do not matter to the time: the model holds some θ(x)
        for inputs, _ in engine.batches():
            engine.model(inputs)

    curve.points([0.5])  # writes θ(0.5) and chooses the method
    t_forward, _ = best(forward, repeats)
    t_engine, _ = best(lambda: segment.evaluate([0.5]), repeats)
    rows = [("forward pass", t_forward), ("engine point", t_engine)]
    for method in ("taylor", "forward", "reverse"):
        curve.method = method
        t, (point,) = best(lambda: curve.points([0.5]), repeats)
        rows.append((f"curvature ({method})", t))
        print(f"  L''(0.5) by {method}: {point.curvature:.6g}")
    for label, t in rows:
        print(f"  {label:22s} {t * 1e3:10.1f} ms   {t / t_forward:6.2f} forward-pass equivalents")
    curve.method = "taylor"
    return curve


def spectra(curve: PathCurvature, k: int, steps: int, matvecs: int) -> dict:
    t0 = time.perf_counter()
    spectrum = curve.spectrum(0.5, k=k, steps=steps)
    t_spec = time.perf_counter() - t0
    t0 = time.perf_counter()
    trace = curve.trace(0.5, matvecs=matvecs)
    t_trace = time.perf_counter() - t0
    print(
        f"  linpath Lanczos ({spectrum.steps} products): {fmt(spectrum.eigenvalues)}  residuals {fmt(spectrum.residuals)}  {t_spec:.1f} s"
    )
    print(
        f"  linpath Hutch++ ({trace.matvecs} products): trace {trace.trace:.6g} ± {trace.se:.3g}  {t_trace:.1f} s"
    )
    return {
        "eigenvalues": spectrum.eigenvalues,
        "trace": trace.trace,
        "se": trace.se,
        "t_spec": t_spec,
        "t_trace": t_trace,
    }


def fmt(values) -> str:
    return "[" + ", ".join(f"{v:.5g}" for v in values) + "]"


def anchors(name, evalset, start, end, ours: dict, k: int, steps: int, matvecs: int) -> None:
    """PyHessian and hessian-eigenthings on θ(0.5) (eval mode), where importable."""
    model = build(name, 10)
    model.load_state_dict(interpolate_state(start, end, 0.5))
    model.eval()
    loader = DataLoader(TensorDataset(evalset.inputs, evalset.labels), batch_size=256)

    def compare(who, values, t_spec, trace, t_trace):
        rel = [abs(a - b) / abs(b) for a, b in zip(values, ours["eigenvalues"])]
        print(
            f"  {who}: eigenvalues {fmt(values)} (relative difference {fmt(rel)}), time ×{t_spec / ours['t_spec']:.2f}"
        )
        print(
            f"  {who}: trace {trace:.6g} ({(trace - ours['trace']) / ours['se']:+.2f} linpath SEs), time ×{t_trace / ours['t_trace']:.2f}"
        )

    try:
        from pyhessian import hessian
    except ImportError:
        print("  PyHessian: not importable (pip install --target /tmp/hessdeps --no-deps pyhessian)")
    else:
        torch.manual_seed(0)
        h = hessian(model, F.cross_entropy, dataloader=loader, cuda=False)
        t0 = time.perf_counter()
        values, _ = h.eigenvalues(maxIter=100, tol=1e-3, top_n=k)
        t_spec = time.perf_counter() - t0
        t0 = time.perf_counter()
        samples = h.trace(maxIter=matvecs, tol=0.0)
        compare(
            "PyHessian (power iteration, Hutchinson)",
            values,
            t_spec,
            float(sum(samples) / len(samples)),
            time.perf_counter() - t0,
        )
    try:
        import hessian_eigenthings as he
    except ImportError:
        print(
            "  hessian-eigenthings: not importable (pip install --target /tmp/hessdeps --no-deps hessian-eigenthings)"
        )
        return
    op = he.HessianOperator(model, loader, he.supervised_loss(F.cross_entropy))
    t0 = time.perf_counter()
    result = he.lanczos(op, k=k, max_iter=steps, which="LA", seed=0)
    t_spec = time.perf_counter() - t0
    t0 = time.perf_counter()
    trace = he.hutch_plus_plus(op, num_matvecs=matvecs, seed=0)
    compare(
        "hessian-eigenthings (Lanczos, Hutch++)",
        result.eigenvalues.tolist(),
        t_spec,
        trace.estimate,
        time.perf_counter() - t0,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mnist_lenet_300_100,cifar_resnet_20")
    p.add_argument(
        "--examples", type=int, default=None, help="examples (default: LeNet 10,000, ResNet-20 1,000)"
    )
    p.add_argument("--data-root", default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--k", type=int, default=3, help="top eigenvalues (default 3)")
    p.add_argument("--steps", type=int, default=40, help="Lanczos steps (default 40)")
    p.add_argument("--matvecs", type=int, default=60, help="trace products (default 60)")
    p.add_argument("--float64", action="store_true", help="model, data and states in float64")
    p.add_argument(
        "--costs-only", action="store_true", help="the cost per point only (no spectra, no anchors)"
    )
    p.add_argument("--tiny", action="store_true", help="200 examples, 1 repeat, k 2, 10 steps, 9 products")
    args = p.parse_args()
    if args.tiny:
        args.examples, args.repeats, args.k, args.steps, args.matvecs = 200, 1, 2, 10, 9
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in args.models.split(","):
        evalset = images(name, args.examples or DEFAULTS[name], args.data_root)
        start, end = endpoint(name, 0), endpoint(name, 1)
        if args.float64:  # the methods' agreement without float32's rounding
            evalset = EvalSet(evalset.inputs.double(), evalset.labels)
            start, end = (
                {k: v.double() if v.is_floating_point() else v for k, v in s.items()} for s in (start, end)
            )
        print(f"{name} on {len(evalset)} examples:")
        curve = costs(name, evalset, start, end, args.repeats)
        if args.costs_only:
            continue
        ours = spectra(curve, args.k, args.steps, args.matvecs)
        anchors(name, evalset, start, end, ours, args.k, args.steps, args.matvecs)


if __name__ == "__main__":
    main()
