"""A/B, alternating in one process: the stacked weight gradient by torch.stack (old) vs written in place (new).

    python docs/results/benchmarks/backward_ab.py   (data in /work/shared/data; edit the path for yours)
"""
import time, torch
from types import SimpleNamespace
from linpath.train import together
from linpath.models import build
from linpath import data
src = data.load("mnist", "/work/shared/data")
def old_backward(ctx, g):
    x, w = ctx.saved_tensors
    gx = torch.bmm(g, w) if ctx.needs_input_grad[0] else None
    gw = torch.stack([g[r].t().mm(x[r]) for r in range(len(g))])
    return gx, gw, g.sum(1)
new_backward = together._StackedLinear.backward
def run(steps, backward):
    together._StackedLinear.backward = staticmethod(backward)
    states=[SimpleNamespace(model=build("mnist_lenet_300_100",10,seed=r), optimizer=SimpleNamespace(state={})) for r in range(3)]
    st=together.StackedLeNet(states, 0.0, 0.0)
    its=[src.train_batches(r, 128) for r in range(3)]
    for _ in range(20):
        p=[next(i) for i in its]; st.step(torch.stack([x for x,_ in p]), torch.stack([y for _,y in p]), 0.1)
    t=time.perf_counter()
    for _ in range(steps):
        p=[next(i) for i in its]; st.step(torch.stack([x for x,_ in p]), torch.stack([y for _,y in p]), 0.1)
    return (time.perf_counter()-t)/steps*1e3, st.params[0].detach().clone()
res={"old":[], "new":[]}
for rnd in range(4):
    for name, b in (("old", old_backward), ("new", new_backward)):
        ms, w = run(469, b); res[name].append(ms); res[name+"_w"]=w
print({k: ["%.2f"%v for v in vs] for k, vs in res.items() if not k.endswith("_w")})
print("bitwise equal weights after 489 steps:", torch.equal(res["old_w"], res["new_w"]))
