"""The conflict dial (an independent set of findings as cls targets), the bottleneck and the
full-batch measurements of the conflict study."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from examples.rrg import configs, conflict, models
from examples.rrg.data import input_pipeline, synthetic
from examples.rrg.evaluation.labeler import OBSERVATIONS, POSITIVE, UNCERTAIN


def test_the_independent_set_is_drawn_and_leaves_reports_and_labels_alone():
  plain = synthetic.generate(60, image_size=32, seed=5)
  both = synthetic.generate(60, image_size=32, seed=5, independent=True)
  assert plain.independent_labels is None
  assert both.reports == plain.reports
  np.testing.assert_array_equal(both.labels, plain.labels)
  # Independent of the report's findings: another draw, at the same prevalences.
  assert not np.array_equal(both.independent_labels, both.labels)
  drawn = [OBSERVATIONS.index(o) for o in synthetic.PREVALENCE]  # No Finding, Pneumonia: not
  shown = np.isin(both.independent_labels[:, drawn], (POSITIVE, UNCERTAIN)).any(axis=1)
  changed = np.abs(both.images - plain.images).reshape(60, -1).max(axis=1) > 1e-6
  np.testing.assert_array_equal(changed, shown)  # drawn iff the second set has a finding
  # Opposite brightness: a second-set pacemaker/tube/line darkens where metal would brighten.
  devices = both.independent_labels[:, OBSERVATIONS.index("Support Devices")] == POSITIVE
  only_devices = devices & (np.isin(both.independent_labels[:, drawn],
                                    (POSITIVE, UNCERTAIN)).sum(1) == 1)
  assert only_devices.any()
  assert (both.images[only_devices] - plain.images[only_devices]).sum() < 0


def test_disjoint_moves_a_share_of_the_cls_targets_to_the_independent_set():
  kwargs = {"image_size": 32, "seed": 2}
  base, _ = input_pipeline.synthetic_dataset(40, 8, 8, **kwargs)
  zero, _ = input_pipeline.synthetic_dataset(40, 8, 8, disjoint=0.0, **kwargs)
  half, _ = input_pipeline.synthetic_dataset(40, 8, 8, disjoint=0.5, **kwargs)
  one, _ = input_pipeline.synthetic_dataset(40, 8, 8, disjoint=1.0, **kwargs)
  for name in ("train", "test"):
    report_labels = base[name].labels
    for s in (zero, half, one):  # CE always scores against the report's own labels
      np.testing.assert_array_equal(s[name].reference_labels, report_labels)
      np.testing.assert_array_equal(s[name].tokens, base[name].tokens)
    np.testing.assert_array_equal(zero[name].labels, report_labels)
    moved = [OBSERVATIONS.index(o) for o in input_pipeline.disjoint_observations(0.5)]
    kept = [j for j in range(14) if j not in moved]
    assert len(moved) == 7
    np.testing.assert_array_equal(half[name].labels[:, kept], report_labels[:, kept])
    np.testing.assert_array_equal(half[name].labels[:, moved], one[name].labels[:, moved])
    assert not np.array_equal(one[name].labels, report_labels)
  # The dial's images are the same at every value: only the targets move.
  np.testing.assert_array_equal(zero["train"].images, one["train"].images)
  assert not np.array_equal(zero["train"].images, base["train"].images)
  with pytest.raises(ValueError, match="disjoint"):
    input_pipeline.disjoint_observations(1.5)
  with pytest.raises(ValueError, match="disjoint"):
    dataclasses.replace(configs.smoke(), disjoint=2.0)


@pytest.mark.slow  # builds and runs two models; the smoke run covers the default model
def test_bottleneck_narrows_every_image_token_to_unit_rms():
  cfg = models.ModelConfig(vocab_size=16, max_len=8, image_size=16, channels=(4, 8), d_model=16,
                           num_heads=2, num_layers=1, mlp_dim=32, embed_dim=8)
  wide = models.build_model(cfg, "encoder_decoder", rngs=nnx.Rngs(0))
  narrow = models.build_model(dataclasses.replace(cfg, bottleneck=2), "encoder_decoder",
                              rngs=nnx.Rngs(0))
  images = jnp.asarray(np.random.default_rng(0).random((3, 1, 16, 16, 1)), jnp.float32)
  tokens, pooled = narrow.encode_images(images)
  assert tokens.shape == wide.encode_images(images)[0].shape and pooled.shape == (3, 16)
  assert narrow.encoder.squeeze.kernel.shape == (8, 2)
  # The narrow features are normalised: scaling the projection into them changes nothing.
  before = narrow.encode_images(images)[0]
  narrow.encoder.squeeze.kernel.value = 3.0 * narrow.encoder.squeeze.kernel.value
  narrow.encoder.squeeze.bias.value = 3.0 * narrow.encoder.squeeze.bias.value
  np.testing.assert_allclose(narrow.encode_images(images)[0], before, rtol=1e-4, atol=1e-5)
  wide.encoder.proj.kernel.value = 3.0 * wide.encoder.proj.kernel.value
  assert not np.allclose(wide.encode_images(images)[0], before, atol=1e-3)
  with pytest.raises(ValueError, match="bottleneck"):
    dataclasses.replace(cfg, bottleneck=-1)


def test_auroc_and_prior_loss():
  rng = np.random.default_rng(0)
  scores, positive = rng.random(40).round(1), rng.random(40) < 0.4
  pairs = [(a > b) + 0.5 * (a == b) for a in scores[positive] for b in scores[~positive]]
  assert conflict.auroc(scores, positive) == pytest.approx(np.mean(pairs))
  assert conflict.auroc(positive.astype(float), positive) == 1.0
  assert np.isnan(conflict.auroc(scores, np.zeros(40, bool)))
  labels = np.zeros((4, 14), np.int32)
  labels[:2, 0] = 1  # observation 0 half and half, the others constant
  assert conflict.prior_loss(labels) == pytest.approx(np.log(2) / 14)


def test_gram_summary_of_opposed_and_aligned_tasks():
  weights = np.array([1.0, 4.0])
  opposed = conflict._gram_summary(np.array([[4.0, -1.0], [-1.0, 0.25]]), weights)
  # g_nll = 2u, g_cls = -0.5u: cosine -1; the weighted ones 2u and -2u cancel exactly.
  assert opposed["cosine"] == pytest.approx(-1.0)
  assert opposed["diffusion_decay"] == pytest.approx(0.0, abs=1e-6)
  assert np.isnan(opposed["norm_over_joint"]).all()  # no joint gradient to compare with
  aligned = conflict._gram_summary(np.array([[1.0, 0.5], [0.5, 1.0]]), np.array([1.0, 1.0]))
  assert aligned["cosine"] == pytest.approx(0.5)
  assert aligned["norm_over_joint"] == pytest.approx([1 / np.sqrt(3)] * 2)
  assert aligned["diffusion_decay"] == pytest.approx(np.sqrt(3) / 2)


@pytest.mark.slow
def test_full_batch_probe_on_a_tiny_model():
  config = dataclasses.replace(configs.smoke(), tasks=("nll", "cls"), task_weights=(1.0, 4.0),
                               disjoint=1.0)
  from examples.rrg.training import train  # pylint: disable=import-outside-toplevel
  splits, tokenizer = train.load_data(config)
  model = train.create_model(config, tokenizer, splits["train"], 0)
  probe = conflict.full_batch_probe(config, splits, size=16)
  out = probe(0, model)
  assert out["num_studies"] == 16
  assert set(out["losses"]) == {"nll", "cls", "cls_prior"}
  assert -1.0 <= out["encoder"]["cosine"] <= 1.0
  assert len(out["encoder"]["norm_over_joint"]) == 2
  assert set(out["auroc"]) == {*conflict.FREQUENT, "mean"}
  assert conflict.probe_steps(dataclasses.replace(config, num_steps=600)) == (
      100, 200, 300, 400, 500, 600)


def _committed_study(name="conflict_disjoint"):
  path = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "rrg", "results",
                      name, "conflict.json")
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _part(study, values, wall):
  """One run's ``conflict.json`` cut from a committed study (no ``part_wall_times``)."""
  study = {k: v for k, v in study.items() if k != "part_wall_times"}
  return {**study, "values": values, "wall_time": wall,
          "rows": [r for r in study["rows"] if r["value"] in values],
          "settings": [s for s in study["settings"] if s["value"] in values]}


def test_merge_puts_a_study_run_value_by_value_back_together(tmp_path):
  study = _committed_study()
  values = sorted({r["value"] for r in study["rows"]})
  parts = [_part(study, [v], 10.0 * (i + 1)) for i, v in enumerate(values)]
  merged = conflict.merge(parts)
  assert merged["values"] == values
  assert merged["rows"] == sorted(study["rows"], key=lambda r: values.index(r["value"]))
  assert [s["value"] for s in merged["settings"]] == values
  assert merged["wall_time"] == 10.0 * len(values)
  assert merged["part_wall_times"] == [10.0 * (i + 1) for i in range(len(values))]
  md = conflict.write_outputs(merged, str(tmp_path))
  assert md.splitlines()[0].startswith("| knob |")
  assert sorted(os.listdir(tmp_path)) == ["conflict.json", "conflict.md", "conflict.png"]
  # the command line does the same
  for i, part in enumerate(parts):
    with open(tmp_path / f"part{i}.json", "w", encoding="utf-8") as f:
      json.dump(part, f)
  out = conflict.main(["--merge", *(str(tmp_path / f"part{i}.json") for i in range(len(parts))),
                       "--out", str(tmp_path / "merged")])
  assert out["rows"] == merged["rows"]


def _methods_part(study, values, methods):
  part = _part(study, values, 5.0)
  return {**part, "methods": methods,
          "rows": [r for r in part["rows"] if r["method"] in methods],
          "settings": [s if "ls_tuned" in methods else {**s, "ls_tuned": {}}
                       for s in part["settings"]]}


def test_merge_joins_parts_that_split_the_methods_of_a_value():
  study = _committed_study("conflict_global")  # every study method, ls_tuned included
  values = sorted({r["value"] for r in study["rows"]})
  rest = [m for m in study["methods"] if m not in ("ls", "ls_tuned", "came")]
  halves = (["ls", "ls_tuned", "came"], ["ls", *rest])
  # out of order on purpose: values are sorted, methods put back in the study's order
  parts = [_methods_part(study, [v], halves[(i + j) % 2])
           for i, v in enumerate(reversed(values)) for j in range(2)]
  merged = conflict.merge(parts)
  assert merged["values"] == values and merged["methods"] == study["methods"]
  assert merged["part_wall_times"] == [5.0] * len(parts)  # every run's, not one per value
  # a merged study merged again keeps the wall times of the runs it was made from
  again = conflict.merge([{**merged, "values": [values[0]], "part_wall_times": [1.0, 2.0],
                           "rows": [r for r in merged["rows"] if r["value"] == values[0]],
                           "settings": [s for s in merged["settings"] if s["value"] == values[0]]},
                          {**_part(merged, values[1:], 3.0), "part_wall_times": [3.0]}])
  assert again["part_wall_times"] == [1.0, 2.0, 3.0]
  by_value = lambda rows: sorted(rows, key=lambda r: values.index(r["value"]))  # noqa: E731
  assert merged["rows"] == by_value(study["rows"])
  assert merged["settings"] == by_value(study["settings"])
  # LS must be the same runs in both halves
  other = _methods_part(study, [values[0]], halves[1])
  other["rows"] = [{**r, "ce_f1": r["ce_f1"] + 1e-9} if r["method"] == "ls" else r
                   for r in other["rows"]]
  with pytest.raises(ValueError, match="different LS rows"):
    conflict.merge([_methods_part(study, [values[0]], halves[0]), other])


def test_merge_refuses_parts_of_different_studies():
  study = _committed_study()
  v0, v1 = sorted({r["value"] for r in study["rows"]})[:2]
  with pytest.raises(ValueError, match="'seeds'"):
    conflict.merge([_part(study, [v0], 1.0), {**_part(study, [v1], 1.0), "seeds": [7]}])
  with pytest.raises(ValueError, match="more than one part"):
    conflict.merge([_part(study, [v0], 1.0), _part(study, [v0], 1.0)])
  with pytest.raises(ValueError, match="incomplete"):
    conflict.merge([{**_part(study, [v0], 1.0), "complete": False}])
  with pytest.raises(SystemExit, match="--merge"):
    conflict.main(["--merge", os.devnull])


def _smoke_model_config(**changes) -> models.ModelConfig:
  """The smoke config's model sized for 32 px single-view images and a 16-word vocabulary."""
  return dataclasses.replace(configs.smoke().model, vocab_size=16, max_len=8, image_size=32,
                             **changes)


@pytest.mark.slow
def test_global_bottleneck_is_all_the_decoder_and_the_classifier_see():
  cfg = _smoke_model_config(bottleneck=3, bottleneck_kind="global", bottleneck_tokens=2)
  model = models.build_model(cfg, "encoder_decoder", rngs=nnx.Rngs(0))
  images = jnp.asarray(np.random.default_rng(0).random((5, 1, 32, 32, 1)), jnp.float32)
  tokens, pooled = model.encode_images(images)
  assert tokens.shape == (5, 2, cfg.d_model) and pooled.shape == (5, cfg.d_model)
  encoder = model.encoder
  features = cfg.grid_size**2 * cfg.channels[-1]
  assert encoder.squeeze.kernel.shape == (features, 3)
  assert encoder.expand.kernel.shape == (3, 2 * cfg.d_model)
  # The memory tokens are a function of the unit-RMS code alone ...
  code = encoder.code(encoder.trunk(images[:, 0] * 2.0 - 1.0).reshape(5, -1))
  assert code.shape == (5, 3)
  np.testing.assert_allclose(jnp.mean(code * code, axis=-1), 1.0, rtol=1e-5)
  memory = encoder.norm(encoder.expand(code).reshape(5, 2, -1) + encoder.patch_pos[None]
                        + encoder.view_embed[None, :1])
  np.testing.assert_allclose(tokens, memory, rtol=1e-5, atol=1e-5)
  # ... so their Jacobian w.r.t. the 1024 pixels has rank at most the code's width, 3 (here
  # 2: a unit-RMS code lies on a sphere) ...
  jac = jax.jacobian(lambda x: model.encode_images(x)[0])(images[:1]).reshape(2 * cfg.d_model,
                                                                             -1)
  singular = np.linalg.svd(np.asarray(jac, np.float64), compute_uv=False)
  assert singular[1] > 1e-3 * singular[0] and singular[2] < 1e-5 * singular[0]
  # ... and the code is normalised: scaling the projection into it changes nothing.
  before = model(images, jnp.ones((5, 8), jnp.int32))
  encoder.squeeze.kernel.value = 3.0 * encoder.squeeze.kernel.value
  encoder.squeeze.bias.value = 3.0 * encoder.squeeze.bias.value
  after = model(images, jnp.ones((5, 8), jnp.int32))
  for key in ("logits", "cls_logits"):
    np.testing.assert_allclose(after[key], before[key], rtol=1e-4, atol=1e-4)


def test_bottleneck_kind_is_validated():
  with pytest.raises(ValueError, match="bottleneck_kind"):
    _smoke_model_config(bottleneck=4, bottleneck_kind="pooled")
  with pytest.raises(ValueError, match="bottleneck_kind='global' needs"):
    _smoke_model_config(bottleneck_kind="global")
  with pytest.raises(ValueError, match="bottleneck_tokens"):
    _smoke_model_config(bottleneck=4, bottleneck_kind="global", bottleneck_tokens=0)


@pytest.mark.slow  # builds a model
def test_per_token_bottleneck_keeps_one_token_per_grid_cell():
  token = models.build_model(_smoke_model_config(bottleneck=4), "encoder_decoder",
                             rngs=nnx.Rngs(0))
  tokens, _ = token.encode_images(jnp.zeros((2, 1, 32, 32, 1)))
  assert tokens.shape == (2, token.cfg.grid_size**2, token.cfg.d_model)


def test_flipped_independent_set_is_drawn_upside_down_with_the_same_brightness():
  plain = synthetic.generate(80, image_size=32, seed=3)
  opposite = synthetic.generate(80, image_size=32, seed=3, independent=True)
  flipped = synthetic.generate(80, image_size=32, seed=3, independent=True,
                               independent_style="flipped")
  assert flipped.reports == plain.reports
  np.testing.assert_array_equal(flipped.labels, plain.labels)
  np.testing.assert_array_equal(flipped.independent_labels, opposite.independent_labels)
  drawn = [OBSERVATIONS.index(o) for o in synthetic.PREVALENCE]
  count = np.isin(flipped.independent_labels[:, drawn], (POSITIVE, UNCERTAIN)).sum(axis=1)
  changed = np.abs(flipped.images - plain.images).reshape(80, -1).max(axis=1) > 1e-6
  np.testing.assert_array_equal(changed, count > 0)
  # One second-set finding: the change is the opposite style's, negated and upside down
  # (the same exposure follows both; clipping to [0, 1] aside).
  one = count == 1
  assert one.sum() >= 5
  d_flipped = (flipped.images - plain.images)[one]
  d_opposite = (opposite.images - plain.images)[one]
  corr = np.corrcoef(d_flipped.ravel(), -np.flip(d_opposite, axis=1).ravel())[0, 1]
  assert corr > 0.75
  assert np.corrcoef(d_flipped.ravel(), -d_opposite.ravel())[0, 1] < corr - 0.3  # not in place
  devices = one & np.isin(flipped.independent_labels[:, OBSERVATIONS.index("Support Devices")],
                          (POSITIVE,))
  assert devices.any() and (flipped.images[devices] - plain.images[devices]).sum() > 0
  with pytest.raises(ValueError, match="independent_style"):
    synthetic.generate(4, image_size=32, independent=True, independent_style="mirrored")
  with pytest.raises(ValueError, match="independent_style"):
    dataclasses.replace(configs.smoke(), independent_style="mirrored")


def test_the_conflict_config_narrows_the_default_model_and_flips_the_independent_set():
  config = configs.get_config("conflict_global")
  default = configs.default()
  assert (config.model.bottleneck, config.model.bottleneck_kind) == (8, "global")
  assert config.independent_style == "flipped" and config.disjoint == 1.0
  assert config.tasks == default.tasks and config.task_weights == default.task_weights
  assert (config.num_steps, config.batch_size) == (default.num_steps, default.batch_size)
  setting, _ = conflict.setting(dataclasses.replace(config, num_train=8, num_val=4,
                                                    num_test=4), None, "disjoint", 0.0)
  assert setting.disjoint == 0.0 and setting.independent_style == "flipped"
  large = configs.get_config("conflict_large")
  assert (large.num_train, large.num_steps) == (8 * config.num_train, 2 * config.num_steps)
  assert dataclasses.replace(large, name=config.name, num_train=config.num_train,
                             num_steps=config.num_steps) == config


def test_the_lr_and_cls_weight_knobs_change_only_their_setting():
  config = dataclasses.replace(configs.get_config("conflict_global"), num_train=8, num_val=4,
                               num_test=4)
  data = ({"train": None}, None)
  lr, same = conflict.setting(config, data, "lr", 5e-4)
  assert same is data and lr.learning_rate == 5e-4 and lr.name.endswith("-lr0.0005")
  assert dataclasses.replace(lr, learning_rate=config.learning_rate, name=config.name) == config
  weighted, _ = conflict.setting(config, data, "cls_weight", 16.0)
  assert weighted.task_weights == (1.0, 16.0) and weighted.tasks == config.tasks
  with pytest.raises(ValueError, match="cls_weight needs the cls task"):
    conflict.setting(dataclasses.replace(config, tasks=("nll",), task_weights=(1.0,)), data,
                     "cls_weight", 2.0)
  with pytest.raises(ValueError, match="knob must be one of"):
    conflict.setting(config, data, "momentum", 0.9)
