"""Trajectories of multi-task methods on the CAGrad toy problem: run, summarise, plot.

``python -m examples.toy --out runs/toy`` runs linear scalarization, MGDA,
PCGrad, CAGrad and CAME-Grad (each followed by Adam, as in the paper's Figure 1)
from the three starting points, prints a summary table and writes

* ``toy.png``: the trajectories over the contours of the average loss, with the
  Pareto set, and the final losses against the Pareto front;
* ``toy.json``: the configuration and the summary rows (the printed table);
* ``toy_trajectories.npz``: the plotted trajectories, one (starts, points, 2)
  array per method.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import came_grad_jax as cg
from examples.toy import problem

#: The methods of the figure, each a factory of a K = 2 transformation.
#: The methods of the paper's toy figure: registry name -> hyperparameters (the
#: paper's toy uses CAGrad's c = 0.5). Built from the library's one registry.
TOY_METHODS: dict[str, dict] = {
    "ls": {}, "mgda": {}, "pcgrad": {}, "cagrad": {"c": 0.5},
    "came": {"rho": 0.5, "kappa": 1.5, "nu": 0.2},
}
METHODS: dict[str, Callable[[], optax.GradientTransformation]] = {
    cg.get_method(name).title.replace("Linear scalarization", "LS"):
        (lambda name=name, hp=hp: cg.make_method(name, **hp))
    for name, hp in TOY_METHODS.items()}
#: A final point counts as on the Pareto front when no grid point of the front
#: improves both of its losses by more than this.
FRONT_TOLERANCE = 0.05


@dataclasses.dataclass(frozen=True)
class Config:
  """The paper's setting: Adam, learning rate 1e-3, 100k steps."""

  steps: int = 100_000
  learning_rate: float = 1e-3
  record_every: int = 100
  grid_resolution: int = 400


def trajectories(transformation: optax.GradientTransformation, config: Config) -> np.ndarray:
  """(starts, steps / record_every + 1, 2): every start's path, jitted and vmapped over starts."""
  tx = optax.chain(transformation, optax.adam(config.learning_rate))
  task_grads = cg.value_and_task_grads(problem.task_losses)

  def step(carry, _):
    x, state = carry
    _, grads = task_grads(x)
    updates, state = tx.update(grads, state, x)
    return (optax.apply_updates(x, updates), state), None

  def record(carry, _):
    carry, _ = jax.lax.scan(step, carry, None, length=config.record_every)
    return carry, carry[0]

  def path(x0):
    _, points = jax.lax.scan(record, (x0, tx.init(x0)), None,
                             length=config.steps // config.record_every)
    return jnp.concatenate([x0[None], points])

  return np.asarray(jax.jit(jax.vmap(path))(jnp.asarray(problem.STARTS, jnp.float32)))


def summary_rows(paths: dict[str, np.ndarray], front: np.ndarray) -> list[dict]:
  """One row per method and start: final point, final losses, their mean, on the front or not."""
  rows = []
  for method, path in paths.items():
    finals = path[:, -1]
    losses = np.asarray(problem.task_losses(jnp.asarray(finals)), np.float64)
    for start, x, f in zip(problem.STARTS, finals, losses):
      gap = problem.domination_gap(f, front)
      rows.append({"method": method, "start": list(start), "final_x": x.tolist(),
                   "losses": f.tolist(), "mean_loss": float(f.mean()), "front_gap": gap,
                   "on_front": gap <= FRONT_TOLERANCE})
  return rows


def format_summary(rows: list[dict], front: np.ndarray) -> str:
  """The table printed by the command (numbers rounded to 2 decimals)."""
  lines = [f"{'method':<10} {'start':>14} {'final x':>16} {'f1':>7} {'f2':>7} {'mean':>7}  on front",
           "-" * 74]
  for r in rows:
    start = "({:.1f}, {:.1f})".format(*r["start"])
    final = "({:.2f}, {:.2f})".format(*r["final_x"])
    lines.append(f"{r['method']:<10} {start:>14} {final:>16} {r['losses'][0]:7.2f} "
                 f"{r['losses'][1]:7.2f} {r['mean_loss']:7.2f}  {'yes' if r['on_front'] else 'no'}")
  lines.append(f"lowest mean loss on the Pareto front: {front.mean(1).min():.2f}")
  return "\n".join(lines)


def plot(paths: dict[str, np.ndarray], rows: list[dict], grid: tuple, config: Config,
         out: pathlib.Path) -> None:
  """Trajectories over the average-loss contours and the Pareto set; final losses vs the front.

  ``grid`` is :func:`problem.loss_grid`'s ``(x1, x2, losses)``.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  x1, x2, losses = grid
  front_idx = problem.pareto_front(losses)
  front = losses.reshape(-1, 2)[front_idx]
  fig, axes = plt.subplots(2, (len(paths) + 2) // 2, figsize=(13, 8.5))
  axes = axes.ravel()
  colors = plt.cm.tab10(np.arange(len(problem.STARTS)))
  for ax, (method, path) in zip(axes, paths.items()):
    ax.contourf(x1, x2, losses.mean(-1), levels=30, cmap="Greys_r", alpha=0.8)
    ax.plot(x1.ravel()[front_idx], x2.ravel()[front_idx], ".", ms=1.5, color="tab:red",
            label="Pareto set")
    for start, color in zip(path, colors):
      ax.plot(start[:, 0], start[:, 1], "-", lw=1.5, color=color)
      ax.plot(*start[0], "o", color=color, ms=6)
      ax.plot(*start[-1], "*", color=color, ms=11, mec="black")
    ax.set(title=method, xlim=problem.BOUNDS, ylim=problem.BOUNDS, xlabel="$x_1$")
    ax.set_ylabel("$x_2$")
  axes[0].legend(loc="upper right", fontsize=8)
  ax = axes[-1]
  ax.plot(front[:, 0], front[:, 1], "-", color="tab:red", lw=2, label="Pareto front")
  for i, method in enumerate(paths):
    finals = np.array([r["losses"] for r in rows if r["method"] == method])
    ax.plot(finals[:, 0], finals[:, 1], "o*s^D"[i % 5], ms=8, alpha=0.8, label=method)
  ax.set(title="final losses", xlabel="$f_1$", ylabel="$f_2$")
  ax.legend(fontsize=8)
  fig.suptitle(f"CAGrad toy problem: Adam, lr {config.learning_rate:g}, {config.steps} steps "
               "(o start, * end)")
  fig.tight_layout()
  fig.savefig(out, dpi=110)
  plt.close(fig)


def run(config: Config, out_dir: pathlib.Path) -> str:
  """Run every method, write the PNG, JSON and trajectories; return the printed summary."""
  out_dir.mkdir(parents=True, exist_ok=True)
  paths = {name: trajectories(factory(), config) for name, factory in METHODS.items()}
  grid = problem.loss_grid(config.grid_resolution)
  losses = grid[2].reshape(-1, 2)
  front = losses[problem.pareto_front(grid[2])]
  rows = summary_rows(paths, front)
  np.savez(out_dir / "toy_trajectories.npz", **paths)
  (out_dir / "toy.json").write_text(json.dumps(
      {"config": dataclasses.asdict(config), "front_tolerance": FRONT_TOLERANCE,
       "rows": rows}, indent=1))
  plot(paths, rows, grid, config, out_dir / "toy.png")
  return format_summary(rows, front)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/toy"))
  parser.add_argument("--steps", type=int, default=Config.steps)
  parser.add_argument("--learning-rate", type=float, default=Config.learning_rate)
  args = parser.parse_args(argv)
  config = Config(steps=args.steps, learning_rate=args.learning_rate)
  print(run(config, args.out))
  print(f"wrote {args.out / 'toy.png'}, {args.out / 'toy.json'}, "
        f"{args.out / 'toy_trajectories.npz'}")
