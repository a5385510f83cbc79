"""TEMPORARY stand-in for the library's method registry until ``came_grad_jax.make_method``
lands; delete this file then (train.py uses the library's when present)."""

from __future__ import annotations

import collections

import came_grad_jax as cg

_Method = collections.namedtuple("_Method", "name kind")
_GRADIENT = ("ls", "came", "cagrad", "mgda", "pcgrad", "upgrad", "dualproj", "imtl_g",
             "aligned_mtl", "nash_mtl", "gradvac", "graddrop", "came_s1", "came_s1_s2",
             "came_s1_s3")
_LOSS = ("uncertainty", "dwa", "famo")


def method_names(kind=None):
  return {None: _GRADIENT + _LOSS, "gradient": _GRADIENT, "loss": _LOSS}[kind]


def get_method(name):
  return _Method(name, "loss" if name in _LOSS else "gradient")


def make_method(name, *, task_weights=None, num_tasks=None, key=0, **hparams):
  if name in _LOSS:
    return {"uncertainty": cg.loss_weighting.uncertainty_weighting, "dwa": cg.loss_weighting.dwa,
            "famo": cg.loss_weighting.famo}[name](**hparams)
  factory = {"ls": cg.linear_scalarization, "came": cg.came_grad}.get(name) or getattr(cg, name)
  if name in ("pcgrad", "gradvac", "graddrop"):
    hparams["seed"] = key
  if name == "graddrop":
    return factory(task_weights=task_weights, **hparams)
  return factory(task_weights=task_weights, num_tasks=num_tasks, **hparams)
