"""M-phase training throughput of our M-flow vs a plain nflows ambient flow of the same size.

"Same size" means the same total number of spline layers as the whole M-flow (outer + inner, as the
paper sized its AF baselines), the same hidden units and batch. We time events per second of full
optimizer steps (forward, backward, AdamW) in the same run. The M phase trains the outer transform on
the reconstruction MSE, which needs encode and decode (a forward and an inverse pass), so against an
AF with only as many layers as the outer transform it runs at about half the speed; that ratio is
printed too.

    python benchmarks/bench_training.py [--device cpu] [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from nflows.distributions import StandardNormal
from nflows.flows import Flow

from mfinfer.models import ManifoldFlow
from mfinfer.models.transforms import flow_transform
from mfinfer.training.phases import PHASES


def steps_per_second(loss_fn, params, x, steps: int) -> float:
    opt = torch.optim.AdamW(params, lr=1e-4)
    for _ in range(3):  # warm-up
        opt.zero_grad()
        loss_fn(x).backward()
        opt.step()
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(x).backward()
        opt.step()
    return steps * len(x) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    torch.manual_seed(0)
    print("| (D, d) | layers outer+inner | M phase / AF of the same size "
          "| M phase / AF with outer layers only |")
    for D, d, outer, inner in [(3, 2, 5, 5), (40, 14, 20, 15)]:
        mflow = ManifoldFlow(D, d, outer_layers=outer, inner_layers=inner).to(args.device)
        x = torch.randn(args.batch, D, device=args.device)
        m_phase = PHASES["M"]
        ours = steps_per_second(lambda b, phase=m_phase, model=mflow: phase.loss(model, b, None, 1000.0),
                                m_phase.parameters(mflow), x, args.steps)
        rates = {}
        for name, layers in (("same_size", outer + inner), ("outer_only", outer)):
            af = Flow(flow_transform(D, layers), StandardNormal([D])).to(args.device)
            rates[name] = steps_per_second(lambda b, af=af: -af.log_prob(b).mean(), list(af.parameters()), x,
                                           args.steps)
        row = {"D": D, "d": d, "outer": outer, "inner": inner, "mflow_M_events_per_s": ours,
               **{f"af_{k}_events_per_s": v for k, v in rates.items()},
               "ratio_same_size": ours / rates["same_size"], "ratio_outer_only": ours / rates["outer_only"]}
        print(json.dumps(row))
        print(f"| ({D}, {d}) | {outer}+{inner} | {row['ratio_same_size']:.2f}x "
              f"| {row['ratio_outer_only']:.2f}x |")


if __name__ == "__main__":
    main()
