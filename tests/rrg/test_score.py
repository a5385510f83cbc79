"""Tests for the offline scoring command."""

import csv
import importlib.util
import json

import numpy as np
import pytest

from examples.rrg.evaluation import score
from examples.rrg.evaluation.labeler import OBSERVATIONS
from examples.rrg.evaluation.metrics import CE_COLUMNS

REFS = {
    "s1": "Moderate cardiomegaly. Small left pleural effusion.",
    "s2": "No acute cardiopulmonary process.",
    "s3": "Possible right lower lobe pneumonia.",
}
# s1 misses the effusion, s2 is exact, s3 says pneumonia without the uncertainty.
HYPS = {
    "s1": "Moderate cardiomegaly.",
    "s2": "No acute cardiopulmonary process.",
    "s3": "Right lower lobe pneumonia.",
}


def _write_json(path, data):
  path.write_text(json.dumps(data))
  return str(path)


def _write_labels(path, rows):
  """A CheXbert-style CSV: id, Reports, the 14 observations; `rows` maps id -> {name: value}."""
  lines = [",".join(["id", "Reports", *OBSERVATIONS])]
  for study, named in rows.items():
    cells = [str(named.get(name, "")) for name in OBSERVATIONS]
    lines.append(",".join([study, "text", *cells]))
  path.write_text("\n".join(lines) + "\n")
  return str(path)


def test_read_reports_formats(tmp_path):
  main_job = _write_json(tmp_path / "reports.json", [
      {"id": "a", "reference": "ref a", "generated": "gen a"},
      {"id": 7, "reference": "ref 7", "generated": "gen 7"}])
  assert score.read_reports(main_job, score.HYP_FIELDS) == {"a": "gen a", "7": "gen 7"}
  assert score.read_reports(main_job, score.REF_FIELDS) == {"a": "ref a", "7": "ref 7"}
  mapping = _write_json(tmp_path / "map.json", {"a": "text a", "b": "text b"})
  assert score.read_reports(mapping, score.HYP_FIELDS) == {"a": "text a", "b": "text b"}
  annotation = _write_json(tmp_path / "annotation.json", {
      "train": [{"id": "t", "report": "train report", "image_path": ["x.png"]}],
      "test": [{"id": "u", "report": "test report", "image_path": ["y.png"]}]})
  assert score.read_reports(annotation, score.REF_FIELDS) == {"u": "test report"}
  assert score.read_reports(annotation, score.REF_FIELDS, split="train") == {
      "t": "train report"}
  text = tmp_path / "hyps.txt"
  text.write_text("a\tNo effusion.\n\nb\tMild edema.\n")
  assert score.read_reports(str(text), score.HYP_FIELDS) == {
      "a": "No effusion.", "b": "Mild edema."}


def test_read_reports_errors_name_the_file_and_study(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.json"):
    score.read_reports(tmp_path / "nope.json", score.HYP_FIELDS)
  dup = _write_json(tmp_path / "dup.json", [{"id": "a", "report": "x"},
                                            {"id": "a", "report": "y"}])
  with pytest.raises(ValueError, match=r"dup.json.*'a'.*more than once"):
    score.read_reports(dup, score.HYP_FIELDS)
  no_text = _write_json(tmp_path / "no_text.json", [{"id": "a", "findings": "x"}])
  with pytest.raises(ValueError, match=r"no_text.json.*'a'.*no report text"):
    score.read_reports(no_text, score.HYP_FIELDS)
  annotation = _write_json(tmp_path / "ann.json", {"train": [{"id": "t", "report": "x"}]})
  with pytest.raises(ValueError, match=r"ann.json.*no split 'test'"):
    score.read_reports(annotation, score.REF_FIELDS)
  bad = tmp_path / "bad.txt"
  bad.write_text("a\tfine\nno tab here\n")
  with pytest.raises(ValueError, match=r"bad.txt: line 2"):
    score.read_reports(str(bad), score.HYP_FIELDS)
  broken = tmp_path / "broken.json"
  broken.write_text("[{")
  with pytest.raises(ValueError, match="broken.json: not valid JSON"):
    score.read_reports(str(broken), score.HYP_FIELDS)
  with pytest.raises(ValueError, match="empty.json: no reports"):
    score.read_reports(_write_json(tmp_path / "empty.json", []), score.HYP_FIELDS)


def test_score_with_the_rule_based_labeler_on_both_sides():
  result = score.score(HYPS, REFS)
  assert result["num_studies"] == 3 and result["warning"] is None
  assert result["ref_labeler"] == result["hyp_labeler"] == score.RULE_BASED
  s = result["scores"]
  assert {key for key, _ in CE_COLUMNS} <= set(s)
  assert s["ce_f1/Cardiomegaly"] == 1.0 and s["ce_support/Cardiomegaly"] == 1.0
  assert s["ce_recall/Pleural Effusion"] == 0.0  # missed
  assert s["ce_f1/Pneumonia"] == 1.0  # uncertain vs positive: both present in (a)
  assert s["ce_pos_micro_precision"] < 1.0  # ... but a false positive in (c)
  perfect = score.score(REFS, REFS)["scores"]
  assert perfect["ce_micro_f1"] == perfect["ce5_micro_f1"] == 1.0
  # s3 has no positive label (pneumonia is uncertain, so No Finding is blank): example-based
  # P, R, F1 are 0/0 -> 0 for it, whatever the generator writes.
  assert perfect["ce_example_f1"] == pytest.approx(2 / 3)


def test_score_uses_only_the_generated_ids_and_needs_their_references():
  result = score.score({"s2": HYPS["s2"]}, REFS)
  assert result["num_studies"] == 1
  with pytest.raises(ValueError, match=r"no reference.*'s9'"):
    score.score({**HYPS, "s9": "Mild edema."}, REFS)
  with pytest.raises(ValueError, match="no generated reports"):
    score.score({}, REFS)


def test_external_labels_on_both_sides_replace_the_labeler(tmp_path):
  # The label files disagree with the texts on purpose: only the files must count.
  ref_csv = _write_labels(tmp_path / "refs.csv", {
      "s1": {"Edema": 1}, "s2": {"Edema": -1}, "s3": {"Fracture": 1}})
  hyp_csv = _write_labels(tmp_path / "hyps.csv", {
      "s1": {"Edema": 1}, "s2": {"Edema": 0}, "s3": {"Fracture": 1, "Edema": 1.0}})
  result = score.score(HYPS, REFS, hyp_labels=hyp_csv, ref_labels=ref_csv)
  assert result["warning"] is None
  assert result["ref_labeler"].endswith("refs.csv")
  s = result["scores"]
  # Edema present (1 or -1) in refs s1, s2; in hyps s1, s3 -> TP 1, FP 1, FN 1.
  assert s["ce_f1/Edema"] == pytest.approx(0.5)
  assert s["ce_f1/Fracture"] == 1.0 and s["ce_f1/Cardiomegaly"] == 0.0
  assert s["ce_support/Edema"] == 2.0


def test_mixed_labelers_refuse_or_warn_in_every_table(tmp_path):
  ref_csv = _write_labels(tmp_path / "refs.csv", {s: {"No Finding": 1} for s in REFS})
  with pytest.raises(ValueError, match="--hyp-labels"):
    score.score(HYPS, REFS, ref_labels=ref_csv)
  with pytest.raises(ValueError, match="--ref-labels"):
    score.score(HYPS, REFS, hyp_labels=ref_csv)
  result = score.score(HYPS, REFS, ref_labels=ref_csv, allow_mixed_labelers=True)
  assert result["warning"].startswith("WARNING: mixed labelers")
  tables = score.format_tables(result)
  assert tables.count(result["warning"]) == 2  # the CE table and the per-observation table
  assert "WARNING" not in score.format_tables(score.score(HYPS, REFS))


def test_format_tables_lists_conventions_and_observations():
  tables = score.format_tables(score.score(HYPS, REFS))
  for title in score.CONVENTION_TITLES.values():
    assert f"| {title} |" in tables
  for name in OBSERVATIONS:
    assert f"| {name} |" in tables
  rows = [line for line in tables.splitlines() if line.startswith("| Cardiomegaly")]
  assert rows == ["| Cardiomegaly | 1.000 | 1.000 | 1.000 | 1 |"]


def test_main_prints_tables_and_writes_json(tmp_path, capsys):
  reports = _write_json(tmp_path / "reports.json", [
      {"id": s, "reference": REFS[s], "generated": HYPS[s]} for s in REFS])
  out = tmp_path / "scores.json"
  result = score.main(["--hyps", reports, "--refs", reports, "--out", str(out)])
  printed = capsys.readouterr().out
  assert "3 studies" in printed and "(b) example-based" in printed
  saved = json.loads(out.read_text())
  assert saved["scores"]["ce_f1"] == pytest.approx(result["scores"]["ce_f1"])
  assert np.isfinite(saved["scores"]["ce5_micro_f1"])


def test_chexbert_round_trip_without_ids(tmp_path):
  """Write CheXbert inputs, label them as CheXbert's label.py would, score its output."""
  reports = _write_json(tmp_path / "reports.json", [
      {"id": s, "reference": REFS[s], "generated": HYPS[s]} for s in REFS])
  written = score.main(["--hyps", reports, "--refs", reports,
                        "--write-chexbert-input", str(tmp_path / "chexbert")])["written"]
  assert [p.rsplit("/", 1)[-1] for p in written] == ["generated.csv", "reference.csv"]
  outputs = []
  for path, side in zip(written, (HYPS, REFS)):
    with open(path, newline="", encoding="utf-8") as f:
      rows = list(csv.DictReader(f))
    assert [(r["id"], r["Report Impression"]) for r in rows] == list(side.items())
    # CheXbert's output: the report column and the 14 labels, no id; here every report
    # gets Edema positive and the first also Fracture uncertain.
    out = tmp_path / f"labeled_{side is REFS}.csv"
    with open(out, "w", newline="", encoding="utf-8") as f:
      writer = csv.writer(f)
      writer.writerow(["Report Impression", *OBSERVATIONS])
      for i, r in enumerate(rows):
        cells = {"Edema": "1.0", "Fracture": "-1.0" if i == 0 else ""}
        writer.writerow([r["Report Impression"], *(cells.get(n, "") for n in OBSERVATIONS)])
    outputs.append(str(out))
  result = score.main(["--hyps", reports, "--refs", reports, "--hyp-labels", outputs[0],
                       "--ref-labels", outputs[1]])
  s = result["scores"]
  assert s["ce_f1/Edema"] == 1.0 and s["ce_f1/Fracture"] == 1.0
  assert s["ce_support/Fracture"] == 1.0 and s["ce_f1/Cardiomegaly"] == 0.0
  # Swapped files: the check of the report texts catches the misalignment.
  with pytest.raises(SystemExit, match="labels another report"):
    score.main(["--hyps", reports, "--refs", reports, "--hyp-labels", outputs[1],
                "--ref-labels", outputs[0]])


def test_main_exits_with_a_clear_error(tmp_path):
  reports = _write_json(tmp_path / "reports.json", [{"id": "a", "report": "x"}])
  labels = _write_labels(tmp_path / "l.csv", {"a": {}})
  with pytest.raises(SystemExit, match="error: --hyp-labels labels one side"):
    score.main(["--hyps", reports, "--refs", reports, "--hyp-labels", labels])
  with pytest.raises(SystemExit, match="error: report file not found"):
    score.main(["--hyps", str(tmp_path / "none.json"), "--refs", reports])


@pytest.mark.skipif(importlib.util.find_spec("pycocoevalcap") is None,
                    reason="pycocoevalcap is not installed")
def test_nlg_scores_on_request(tmp_path):
  result = score.score(REFS, REFS, nlg=True)
  assert result["scores"]["BLEU_1"] == pytest.approx(1.0)
  assert "| BLEU_1 |" in score.format_tables(result)
