"""The CAGrad toy (examples/toy): the paper's Figure 1 behaviour, and the summary matches the data."""

import json
import re

import jax.numpy as jnp
import numpy as np
import pytest

from examples.toy import problem, run


def toy_losses_reference(x1: float, x2: float) -> np.ndarray:
  """f1, f2 of the toy written out in float64 NumPy (CAGrad, Liu et al. 2021, Figure 1)."""
  upper, lower = max(np.tanh(x2 / 2), 0.0), max(np.tanh(-x2 / 2), 0.0)
  f1 = (np.log(max(abs(-(x1 + 7) / 2 + np.tanh(x2)), 5e-6)) + 6) * upper + (
      ((x1 - 7) ** 2 + 0.1 * (x2 + 8) ** 2) / 10 - 20) * lower
  f2 = (np.log(max(abs((3 - x1) / 2 - np.tanh(x2) + 2), 5e-6)) + 6) * upper + (
      ((x1 + 7) ** 2 + 0.1 * (x2 + 8) ** 2) / 10 - 20) * lower
  return np.array([f1, f2])


def test_losses_match_reference():
  points = np.array([[-8.5, 7.5], [-8.5, -5.0], [9.0, 9.0], [0.0, -8.36], [-5.0, 2.0], [3.0, 0.0]])
  got = np.asarray(problem.task_losses(jnp.asarray(points, jnp.float32)))
  want = np.stack([toy_losses_reference(*p) for p in points])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_pareto_front_is_non_dominated():
  losses = problem.loss_grid(60)[2].reshape(-1, 2)
  front = losses[problem.pareto_front(losses.reshape(60, 60, 2))]
  assert np.all(np.diff(front[:, 0]) >= 0) and np.all(np.diff(front[:, 1]) < 0)
  dominated = (losses[:, None, 0] <= front[None, :, 0]) & (losses[:, None, 1] < front[None, :, 1])
  assert not dominated.any()


ROW = re.compile(r"^(\S+)\s+\((\S+), (\S+)\)\s+\((\S+), (\S+)\)\s+(\S+)\s+(\S+)\s+(\S+)\s+(yes|no)$")


@pytest.mark.slow
def test_figure_one_behaviour_and_summary_match_the_plotted_data(tmp_path, capsys):
  run.main(["--out", str(tmp_path)])  # the paper's setting: Adam, lr 1e-3, 100k steps
  printed = capsys.readouterr().out
  rows = json.loads((tmp_path / "toy.json").read_text())["rows"]
  paths = np.load(tmp_path / "toy_trajectories.npz")
  assert (tmp_path / "toy.png").stat().st_size > 50_000

  parsed = [ROW.match(line).groups() for line in printed.splitlines() if ROW.match(line)]
  assert len(parsed) == len(rows) == 3 * len(run.METHODS)
  for (method, *numbers, on_front), row in zip(parsed, rows):
    start_index = problem.STARTS.index(tuple(row["start"]))
    final = paths[method][start_index, -1]  # the trajectory's end, as plotted
    np.testing.assert_allclose(row["final_x"], final)
    np.testing.assert_allclose(row["losses"], problem.task_losses(jnp.asarray(final)), rtol=1e-6)
    want = [*row["start"], *row["final_x"], *row["losses"], row["mean_loss"]]
    np.testing.assert_allclose([float(v) for v in numbers], want, atol=0.0051)
    assert (method, on_front == "yes") == (row["method"], row["on_front"])

  lowest = float(re.search(r"lowest mean loss on the Pareto front: (\S+)", printed).group(1))
  reached = {(r["method"], tuple(r["start"])): r["on_front"] for r in rows}
  means = {(r["method"], tuple(r["start"])): r["mean_loss"] for r in rows}
  upper_starts = [problem.STARTS[0], problem.STARTS[2]]
  # Linear scalarization stalls in the upper valleys; from below it reaches the front.
  assert [reached["LS", s] for s in problem.STARTS] == [False, True, False]
  # The conflict-aware methods reach the front from every start ...
  for method in ("MGDA", "PCGrad", "CAGrad", "CAME-Grad"):
    assert all(reached[method, s] for s in problem.STARTS), method
  # ... CAGrad and CAME-Grad at the point of lowest average loss, MGDA and PCGrad elsewhere.
  for s in problem.STARTS:
    assert means["CAGrad", s] <= lowest + 0.05 and means["CAME-Grad", s] <= lowest + 0.05
  finals = {(r["method"], tuple(r["start"])): r["final_x"] for r in rows}
  for method in ("MGDA", "PCGrad"):  # where exactly depends on rounding over 100k steps
    assert all(abs(finals[method, s][0]) > 1.0 for s in upper_starts), method
    assert all(means[method, s] > lowest + 0.2 for s in upper_starts), method
