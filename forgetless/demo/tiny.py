"""Catastrophic forgetting and its cures in seconds, without a language model.

(a) A two-head MLP (shared trunk; head A, head B) learns regression task A, then is trained hard
    on task B (high learning rate, many steps). Only the trunk is shared, so everything task A
    loses is the trunk being rewritten. The task-B phase is run three times from the same weights:
    plain, with EWC (Fisher of task A at the end of phase A, from `forgetless.train.fisher`) and
    with L2-SP anchoring. Reported: task-A loss before/after the task-B phase and their ratio.
(b) One shared weight w. Task A wants w = a with curvature F_A, task B wants w = b with curvature
    F_B:  L_A = F_A/2 (w - a)^2,  L_B = F_B/2 (w - b)^2  (for a Gaussian model, curvature = Fisher).
    Plain gradient descent on L_B from w = a ends at b. With EWC, L_B + lambda F_A/2 (w - a)^2,
    it ends at the Fisher-weighted compromise  w* = (lambda F_A a + F_B b) / (lambda F_A + F_B).

Run: `python -m forgetless.demo.tiny [--seed 0] [--svg demo.svg] [--json demo.json]`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from forgetless.history import records
from forgetless.train.fisher import LogLikelihood, diagonal_fisher
from forgetless.train.regularizers import EWC, L2SP, Regularizer


@dataclass(frozen=True)
class TinyDemoSettings:
    """Everything the result depends on (besides the seed and the torch version)."""

    n_examples: int = 256
    n_features: int = 8
    hidden: int = 32
    steps_a: int = 300  # Adam at lr_a: learn task A well
    lr_a: float = 0.01
    steps_b: int = 200  # Adam at a 5x higher lr_b: the aggressive task-B phase
    lr_b: float = 0.05
    ewc_lambda: float = 200.0
    l2_alpha: float = 2.0
    # (b) one shared weight
    a: float = 1.0
    b: float = -1.0
    curvature_a: float = 4.0
    curvature_b: float = 1.0
    quad_lambda: float = 1.0
    quad_lr: float = 0.1
    quad_steps: int = 60


@dataclass
class MLPRun:
    method: str  # "plain" | "ewc" | "l2sp"
    task_a_before: float
    task_a_after: float
    task_b_before: float
    task_b_after: float

    @property
    def ratio(self) -> float:
        """How many times task A's loss grew during the task-B phase."""
        return self.task_a_after / self.task_a_before


@dataclass
class QuadraticRun:
    plain_trajectory: list[float]
    ewc_trajectory: list[float]
    ewc_closed_form: float
    loss_a_plain_end: float
    loss_a_ewc_end: float


@dataclass
class TinyDemoResult:
    seed: int
    settings: TinyDemoSettings
    mlp: list[MLPRun]
    quadratic: QuadraticRun
    torch_version: str = field(default_factory=lambda: torch.__version__)

    def run(self, method: str) -> MLPRun:
        return next(r for r in self.mlp if r.method == method)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for row, run in zip(d["mlp"], self.mlp):
            row["task_a_ratio"] = run.ratio
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


# --- (a) two-head MLP ------------------------------------------------------------------------


class TwoHeadMLP(nn.Module):
    def __init__(self, n_features: int, hidden: int):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(n_features, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh())
        self.head_a, self.head_b = nn.Linear(hidden, 1), nn.Linear(hidden, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.trunk(x)  # (B, hidden)
        return torch.cat([self.head_a(h), self.head_b(h)], -1)  # (B, 2): task A, task B predictions


def _gaussian_sample(out: Tensor, batch: dict[str, Tensor], generator: torch.Generator | None) -> dict[str, Tensor]:
    noise = torch.randn(out[:, 0].shape, generator=generator, dtype=out.dtype)
    return {**batch, "y": out[:, 0] + noise}


# Task A as a probabilistic model: y ~ N(prediction of head A, 1), so log p = -(y - pred)^2 / 2.
TASK_A_LIKELIHOOD = LogLikelihood(
    inputs=lambda b: {"x": b["x"]},
    per_example=lambda out, b: -0.5 * (out[:, 0] - b["y"]).square(),
    sample=_gaussian_sample,
)


def _teacher(g: torch.Generator, n_features: int, x: Tensor) -> Tensor:
    w1, w2 = torch.randn(n_features, 16, generator=g), torch.randn(16, generator=g)
    return torch.tanh(x @ w1 / n_features**0.5) @ w2 / 2  # (N,) a smooth random function


def _mse(model: nn.Module, x: Tensor, y: Tensor, head: int) -> float:
    with torch.no_grad():
        return float((model(x)[:, head] - y).square().mean())


def _train(model: nn.Module, opt: torch.optim.Optimizer, x: Tensor, y: Tensor, head: int, steps: int, reg: Regularizer | None = None) -> None:
    for _ in range(steps):
        loss = (model(x)[:, head] - y).square().mean()
        if reg is not None:
            loss = loss + reg.penalty(model)
        opt.zero_grad()
        loss.backward()
        opt.step()


def run_mlp(seed: int, s: TinyDemoSettings) -> list[MLPRun]:
    g = torch.Generator().manual_seed(seed)
    x_a, x_b = torch.randn(s.n_examples, s.n_features, generator=g), torch.randn(s.n_examples, s.n_features, generator=g)
    y_a, y_b = _teacher(g, s.n_features, x_a), _teacher(g, s.n_features, x_b)
    torch.manual_seed(seed)
    model = TwoHeadMLP(s.n_features, s.hidden)
    _train(model, torch.optim.Adam(model.parameters(), lr=s.lr_a), x_a, y_a, head=0, steps=s.steps_a)
    fisher = diagonal_fisher(  # true Fisher: the empirical one vanishes where task A is fitted well
        model, [{"x": x_a, "y": y_a}], likelihood=TASK_A_LIKELIHOOD, empirical=False,
        generator=torch.Generator().manual_seed(seed), params=dict(model.named_parameters()),
    )
    start = {k: v.clone() for k, v in model.state_dict().items()}
    regs: dict[str, Regularizer | None] = {
        "plain": None,
        "ewc": EWC({"lambda": s.ewc_lambda, "fisher_normalize": "none"}, fisher=fisher),
        "l2sp": L2SP({"alpha": s.l2_alpha}),
    }
    runs = []
    for method, reg in regs.items():
        model.load_state_dict(start)
        if reg is not None:
            reg.setup(model)
        before_a, before_b = _mse(model, x_a, y_a, 0), _mse(model, x_b, y_b, 1)
        _train(model, torch.optim.Adam(model.parameters(), lr=s.lr_b), x_b, y_b, head=1, steps=s.steps_b, reg=reg)
        runs.append(MLPRun(method, before_a, _mse(model, x_a, y_a, 0), before_b, _mse(model, x_b, y_b, 1)))
    return runs


# --- (b) one shared weight -------------------------------------------------------------------


def run_quadratic(s: TinyDemoSettings) -> QuadraticRun:
    def descend(with_ewc: bool) -> list[float]:
        w, path = s.a, [s.a]  # start at task A's optimum
        for _ in range(s.quad_steps):
            grad = s.curvature_b * (w - s.b) + (s.quad_lambda * s.curvature_a * (w - s.a) if with_ewc else 0.0)
            w -= s.quad_lr * grad
            path.append(w)
        return path

    lam_fa = s.quad_lambda * s.curvature_a
    closed = (lam_fa * s.a + s.curvature_b * s.b) / (lam_fa + s.curvature_b)
    plain, ewc = descend(False), descend(True)
    loss_a = lambda w: 0.5 * s.curvature_a * (w - s.a) ** 2
    return QuadraticRun(plain, ewc, closed, loss_a(plain[-1]), loss_a(ewc[-1]))


def _history(result: TinyDemoResult, *_: Any, **__: Any) -> dict[str, Any]:
    return {"model": "tiny", "config": {"demo": "tiny", "seed": result.seed, **asdict(result.settings)},
            "metrics": {"mlp": result.to_dict()["mlp"], "quadratic": asdict(result.quadratic)}}


@records("demo", _history)
def run_tiny_demo(seed: int = 0, settings: TinyDemoSettings | None = None) -> TinyDemoResult:
    """Both demonstrations; deterministic for a seed, a few seconds on one CPU core."""
    s = settings or TinyDemoSettings()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tensors this small only lose time to threading, and results stay identical
    try:
        return TinyDemoResult(seed=seed, settings=s, mlp=run_mlp(seed, s), quadratic=run_quadratic(s))
    finally:
        torch.set_num_threads(threads)


# --- output ----------------------------------------------------------------------------------


def format_tiny_demo(result: TinyDemoResult) -> str:
    """A plain-text summary: the MLP table and the end points of the single-weight runs."""
    lines = ["(a) two-head MLP: task A loss before -> after the aggressive task-B phase"]
    for r in result.mlp:
        lines.append(f"  {r.method:6s} {r.task_a_before:8.4f} -> {r.task_a_after:8.4f}  (x{r.ratio:6.1f})   task B {r.task_b_after:.4f}")
    q, s = result.quadratic, result.settings
    lines += [
        f"(b) one weight: task A optimum a={s.a}, task B optimum b={s.b}, curvatures {s.curvature_a}, {s.curvature_b}",
        f"  plain ends at w={q.plain_trajectory[-1]:.4f} (task A loss {q.loss_a_plain_end:.3f})",
        (f"  EWC   ends at w={q.ewc_trajectory[-1]:.4f} (task A loss {q.loss_a_ewc_end:.3f}); "
         f"closed form (lambda F_A a + F_B b)/(lambda F_A + F_B) = {q.ewc_closed_form:.4f}"),
        "  trajectory (every 10 steps): plain " + " ".join(f"{w:.2f}" for w in q.plain_trajectory[::10]),
        "                               EWC   " + " ".join(f"{w:.2f}" for w in q.ewc_trajectory[::10]),
    ]
    return "\n".join(lines)


def tiny_demo_svg(result: TinyDemoResult) -> str:
    """A dependency-free SVG: task-A loss ratios (log scale) and the single-weight trajectories."""
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="760" height="300" font-family="sans-serif" font-size="12">'
        '<rect width="760" height="300" fill="white"/>'
        + _ratio_panel(result, x0=50)
        + _trajectory_panel(result, x0=430)
        + "</svg>"
    )


def _ratio_panel(result: TinyDemoResult, x0: float) -> str:
    import math

    top, bottom, colors = 40.0, 250.0, {"plain": "#d62728", "ewc": "#2ca02c", "l2sp": "#1f77b4"}
    hi = max(2.0, max(r.ratio for r in result.mlp))
    y = lambda v: bottom - (bottom - top) * math.log10(max(v, 1.0)) / math.log10(hi)
    parts = [f'<text x="{x0}" y="20" font-weight="bold">Task A loss after / before the task-B phase (log)</text>',
             f'<line x1="{x0}" y1="{bottom}" x2="{x0 + 300}" y2="{bottom}" stroke="black"/>']
    for i, r in enumerate(result.mlp):
        left, yy = x0 + 30 + i * 90, y(r.ratio)
        parts.append(f'<rect x="{left}" y="{yy:.1f}" width="60" height="{bottom - yy:.1f}" fill="{colors.get(r.method, "gray")}"/>')
        parts.append(f'<text x="{left + 30}" y="{yy - 5:.1f}" text-anchor="middle">x{r.ratio:.1f}</text>')
        parts.append(f'<text x="{left + 30}" y="{bottom + 16}" text-anchor="middle">{r.method}</text>')
    return "".join(parts)


def _trajectory_panel(result: TinyDemoResult, x0: float) -> str:
    q, s = result.quadratic, result.settings
    top, bottom, width = 40.0, 250.0, 220.0
    lo, hi = min(s.a, s.b) - 0.2, max(s.a, s.b) + 0.2
    y = lambda w: bottom - (bottom - top) * (w - lo) / (hi - lo)
    x = lambda i: x0 + width * i / max(len(q.plain_trajectory) - 1, 1)
    path = lambda ws: " ".join(f"{x(i):.1f},{y(w):.1f}" for i, w in enumerate(ws))
    parts = [f'<text x="{x0}" y="20" font-weight="bold">One weight w, training steps on task B</text>']
    for value, label in [(s.a, "a (task A)"), (s.b, "b (task B)"), (q.ewc_closed_form, "w* (closed form)")]:
        parts.append(f'<line x1="{x0}" y1="{y(value):.1f}" x2="{x0 + width}" y2="{y(value):.1f}" stroke="gray" stroke-dasharray="4 3"/>')
        parts.append(f'<text x="{x0 + width + 4}" y="{y(value) + 4:.1f}" fill="gray">{label}</text>')
    parts.append(f'<polyline points="{path(q.plain_trajectory)}" fill="none" stroke="#d62728" stroke-width="2"/>')
    parts.append(f'<polyline points="{path(q.ewc_trajectory)}" fill="none" stroke="#2ca02c" stroke-width="2"/>')
    parts.append(f'<text x="{x0}" y="{bottom + 30}"><tspan fill="#d62728">plain</tspan>  <tspan fill="#2ca02c">EWC</tspan></text>')
    return "".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Forgetting and EWC/L2-SP on toy problems, in seconds.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--svg", help="write the plot here")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args(argv)
    result = run_tiny_demo(args.seed)
    print(format_tiny_demo(result))
    from forgetless.io import atomic_write_text

    if args.svg:
        atomic_write_text(args.svg, tiny_demo_svg(result))
    if args.json:
        atomic_write_text(args.json, result.to_json() + "\n")


if __name__ == "__main__":
    main()
