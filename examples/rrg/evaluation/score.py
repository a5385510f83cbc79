r"""Offline scoring of generated reports against references: clinical efficacy (and NLG).

Scores a file of generated reports against a file of reference reports, study by study, in the
four CE conventions of `metrics.clinical_efficacy`, with a per-observation table. Both sides are
labelled by the same labeler: the rule-based `labeler.label_reports` by default, or label files
from an external labeler (CheXbert) given for BOTH sides. A run that would label one side with
CheXbert and the other with the rule-based labeler stops, unless `--allow-mixed-labelers`, which
prints a warning line in every table (a perfect generator scores well below 1 under such a mix).

  python -m examples.rrg.evaluation.score --hyps runs/rrg/reports_came_seed0.json \
      --refs runs/rrg/reports_came_seed0.json
  python -m examples.rrg.evaluation.score --hyps hyps.json --refs annotation.json --split test \
      --hyp-labels hyps_chexbert.csv --ref-labels refs_chexbert.csv --out scores.json

Report files (one report per study id):

* JSON list of objects with an "id" and the report text: generated reports under "generated"
  (or "hypothesis", "report", "text"), references under "reference" (or "report", "text"), as
  the main job's `reports_<method>_seed<seed>.json` holds both;
* JSON object {id: report};
* an R2Gen `annotation.json` ({"train": [...], "val": [...], "test": [...]}, entries with "id"
  and "report"): the split `--split` (default test);
* text: one study per line, `id<TAB>report`.

Label files are CSVs with an id column (`--id-column`, default "id") and the 14 observation
columns with CheXpert values 1 / 0 / -1 / blank (`labeler.load_labels_file`), or CheXbert's own
`labeled_reports.csv`, which has no id: its rows are matched to the studies in order and each
row's "Report Impression" must be the study's report. `--write-chexbert-input DIR` writes both
sides as CheXbert inputs in that order (DIR/generated.csv, DIR/reference.csv), to label with

  python src/label.py -d DIR/generated.csv -o DIR/generated -c chexbert.pth  # CheXbert repo
  python src/label.py -d DIR/reference.csv -o DIR/reference -c chexbert.pth
  python -m examples.rrg.evaluation.score --hyps ... --refs ... \
      --hyp-labels DIR/generated/labeled_reports.csv --ref-labels DIR/reference/labeled_reports.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Mapping, Sequence

import numpy as np

from examples.rrg.evaluation import labeler, metrics

HYP_FIELDS = ("generated", "hypothesis", "report", "text")
REF_FIELDS = ("reference", "report", "text")
RULE_BASED = "rule-based labeler"

# Row titles of the CE table, by the F1 key of each convention (see metrics.clinical_efficacy).
CONVENTION_TITLES = {
    "ce_f1": "(a) macro over 14, pos+unc (CAME-Grad)",
    "ce_micro_f1": "(a) micro over 14, pos+unc",
    "ce_example_f1": "(b) example-based, pos (PromptMRG)",
    "ce_pos_macro_f1": "(c) macro over 14, pos (R2Gen)",
    "ce_pos_micro_f1": "(c) micro over 14, pos (R2Gen)",
    "ce5_macro_f1": "(d) macro over 5, pos+unc",
    "ce5_micro_f1": "(d) micro over 5, pos+unc",
}


def _read_json(path: str) -> object:
  with open(path, encoding="utf-8") as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}: not valid JSON ({e})") from None


def _from_entries(entries: Sequence, fields: Sequence[str], path: str) -> dict[str, str]:
  """{id: text} from a list of {"id": ..., <field>: ...} objects (the first field present)."""
  reports: dict[str, str] = {}
  for i, entry in enumerate(entries):
    if not isinstance(entry, dict) or "id" not in entry:
      raise ValueError(f"{path}: entry {i} is not an object with an 'id'")
    field = next((f for f in fields if f in entry), None)
    if field is None or not isinstance(entry[field], str):
      raise ValueError(f"{path}: study {entry['id']!r} has no report text under any of "
                       f"{list(fields)}")
    study = str(entry["id"])
    if study in reports:
      raise ValueError(f"{path}: study {study!r} appears more than once")
    reports[study] = entry[field]
  return reports


def _read_text(path: str) -> dict[str, str]:
  """{id: text} from `id<TAB>report` lines; blank lines are skipped."""
  reports: dict[str, str] = {}
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, start=1):
      line = line.rstrip("\n")
      if not line.strip():
        continue
      study, tab, text = line.partition("\t")
      if not tab or not study.strip():
        raise ValueError(f"{path}: line {number} is not `id<TAB>report`")
      if study.strip() in reports:
        raise ValueError(f"{path}: study {study.strip()!r} appears more than once")
      reports[study.strip()] = text
  return reports


def read_reports(path: str | os.PathLike, fields: Sequence[str], *,
                 split: str = "test") -> dict[str, str]:
  """Reads a report file into {study id: report text}; see the module docstring for formats.

  Args:
    path: a .json file or a text file of `id<TAB>report` lines.
    fields: the keys of the report text in a JSON list of objects, first match wins.
    split: the split of an R2Gen annotation.json.

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: the file is malformed (the message names the file and the study or line).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"report file not found: {path}")
  if not path.endswith(".json"):
    reports = _read_text(path)
  else:
    data = _read_json(path)
    if isinstance(data, list):
      reports = _from_entries(data, fields, path)
    elif isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
      if split not in data:
        raise ValueError(f"{path}: no split {split!r}; it has {sorted(data)}")
      reports = _from_entries(data[split], ("report",), f"{path} [{split}]")
    elif isinstance(data, dict) and all(isinstance(v, str) for v in data.values()):
      reports = {str(k): v for k, v in data.items()}
    else:
      raise ValueError(f"{path}: expected a list of objects, an {{id: report}} object or an "
                       f"R2Gen annotation.json")
  if not reports:
    raise ValueError(f"{path}: no reports")
  return reports


def _labels(reports: Sequence[str], ids: Sequence[str], labels_path: str | None,
            id_column: str) -> tuple[np.ndarray, str]:
  """Labels of one side and the name of the labeler that gave them."""
  if labels_path is None:
    return labeler.label_reports(reports), RULE_BASED
  return (labeler.load_labels_file(labels_path, ids, id_column=id_column, texts=reports),
          f"labels file {labels_path}")


def _scored_ids(hyps: Mapping[str, str], refs: Mapping[str, str]) -> list[str]:
  """The ids of `hyps`, each of which must have a reference."""
  ids = list(hyps)
  if not ids:
    raise ValueError("no generated reports to score")
  missing = [i for i in ids if i not in refs]
  if missing:
    raise ValueError(f"{len(missing)} generated report id(s) have no reference, "
                     f"e.g. {missing[:5]}")
  return ids


def mixed_labelers_warning(ref_labeler: str, hyp_labeler: str) -> str | None:
  """The warning line for a run whose two sides are labelled differently, or None."""
  if (ref_labeler == RULE_BASED) == (hyp_labeler == RULE_BASED):
    return None
  return (f"WARNING: mixed labelers (references: {ref_labeler}; generated: {hyp_labeler}); "
          "these scores mix two labelers' errors and are not comparable with any table")


def score(hyps: Mapping[str, str], refs: Mapping[str, str], *,
          hyp_labels: str | None = None, ref_labels: str | None = None,
          id_column: str = "id", allow_mixed_labelers: bool = False,
          nlg: bool = False, meteor: bool = False) -> dict:
  """Scores generated reports against references, study by study.

  Args:
    hyps: {study id: generated report}; these ids are scored.
    refs: {study id: reference report}; must hold every id of `hyps` (extra ids are ignored).
    hyp_labels: CSV of external labels of the generated reports, or None for the rule-based
      labeler.
    ref_labels: the same for the references.
    id_column: the id column of the label files.
    allow_mixed_labelers: score even when only one side has a label file (with a warning).
    nlg: also compute BLEU, ROUGE-L and CIDEr (`metrics.nlg_metrics`; expects cleaned text).
    meteor: with `nlg`, also METEOR when Java is available.

  Returns:
    {"num_studies", "ref_labeler", "hyp_labeler", "warning" (str or None), "scores"}, where
    "scores" holds `metrics.clinical_efficacy`'s keys (and the NLG keys with `nlg`).

  Raises:
    ValueError: ids missing from `refs`, or mixed labelers without `allow_mixed_labelers`.
  """
  ids = _scored_ids(hyps, refs)
  hyp_texts = [hyps[i] for i in ids]
  ref_texts = [refs[i] for i in ids]
  if (hyp_labels is None) != (ref_labels is None) and not allow_mixed_labelers:
    given, absent = (("--hyp-labels", "--ref-labels") if hyp_labels is not None
                     else ("--ref-labels", "--hyp-labels"))
    raise ValueError(
        f"{given} labels one side with an external labeler while the other would be labelled "
        f"by the rule-based labeler; give {absent} too (the same labeler for both sides), or "
        "pass --allow-mixed-labelers to score anyway with a warning")
  hyp_matrix, hyp_labeler = _labels(hyp_texts, ids, hyp_labels, id_column)
  ref_matrix, ref_labeler = _labels(ref_texts, ids, ref_labels, id_column)
  scores = metrics.clinical_efficacy(ref_matrix, hyp_matrix)
  if nlg:
    scores.update(metrics.nlg_metrics(ref_texts, hyp_texts, meteor=meteor))
  return {"num_studies": len(ids), "ref_labeler": ref_labeler, "hyp_labeler": hyp_labeler,
          "warning": mixed_labelers_warning(ref_labeler, hyp_labeler), "scores": scores}


def write_chexbert_input(hyps: Mapping[str, str], refs: Mapping[str, str],
                         directory: str | os.PathLike) -> list[str]:
  """Writes generated.csv and reference.csv for CheXbert's `label.py`, in the order of `hyps`.

  Each has an "id" column and the report under `labeler.REPORT_COLUMN`; CheXbert's output keeps
  the rows in this order, which `labeler.load_labels_file` checks when it reads them back.
  Returns the two paths.
  """
  ids = _scored_ids(hyps, refs)
  os.makedirs(directory, exist_ok=True)
  paths = []
  for name, reports in (("generated", hyps), ("reference", refs)):
    path = os.path.join(os.fspath(directory), f"{name}.csv")
    with open(path, "w", newline="", encoding="utf-8") as f:
      writer = csv.writer(f)
      writer.writerow(["id", labeler.REPORT_COLUMN])
      writer.writerows([study, reports[study]] for study in ids)
    paths.append(path)
  return paths


def format_tables(result: Mapping) -> str:
  """Markdown tables of a `score` result: CE by convention, per observation, NLG if any."""
  scores, warning = result["scores"], result["warning"]
  head = [(f"{result['num_studies']} studies; references labelled by "
           f"{result['ref_labeler']}, generated reports by {result['hyp_labeler']}"), ""]

  def table(lines: list[str]) -> list[str]:
    return ([warning] if warning else []) + lines + [""]

  ce = ["| CE convention | P | R | F1 |", "|---|---|---|---|"]
  for key, _ in metrics.CE_F1_COLUMNS:
    prefix = key.removesuffix("_f1")
    ce.append(f"| {CONVENTION_TITLES[key]} | {scores[prefix + '_precision']:.3f} | "
              f"{scores[prefix + '_recall']:.3f} | {scores[key]:.3f} |")
  per = ["| observation | P | R | F1 | reference studies present |", "|---|---|---|---|---|"]
  for name in labeler.OBSERVATIONS:
    per.append(f"| {name} | {scores['ce_precision/' + name]:.3f} | "
               f"{scores['ce_recall/' + name]:.3f} | {scores['ce_f1/' + name]:.3f} | "
               f"{int(scores['ce_support/' + name])} |")
  lines = head + table(ce) + table(per)
  nlg_keys = [k for k in ("BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "METEOR", "ROUGE_L", "CIDEr")
              if k in scores]
  if nlg_keys:
    lines += table(["| " + " | ".join(nlg_keys) + " |", "|" + "---|" * len(nlg_keys),
                    "| " + " | ".join(f"{scores[k]:.3f}" for k in nlg_keys) + " |"])
  return "\n".join(lines).rstrip() + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m examples.rrg.evaluation.score", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--hyps", required=True, help="generated reports (JSON or id<TAB>text)")
  p.add_argument("--refs", required=True, help="reference reports (JSON or id<TAB>text)")
  p.add_argument("--hyp-labels", help="CheXbert-style CSV labels of the generated reports")
  p.add_argument("--ref-labels", help="CheXbert-style CSV labels of the references")
  p.add_argument("--id-column", default="id", help="id column of the label CSVs")
  p.add_argument("--split", default="test", help="split of an R2Gen annotation.json")
  p.add_argument("--allow-mixed-labelers", action="store_true",
                 help="score with a label file on one side only (warns in every table)")
  p.add_argument("--nlg", action="store_true", help="also BLEU, ROUGE-L, CIDEr (cleaned text)")
  p.add_argument("--meteor", action="store_true", help="with --nlg, METEOR too (needs Java)")
  p.add_argument("--out", help="write the scores as JSON to this file")
  p.add_argument("--write-chexbert-input", metavar="DIR",
                 help="only write DIR/generated.csv and DIR/reference.csv for CheXbert")
  return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
  """Command-line entry point; returns the `score` result (or the paths written)."""
  args = parse_args(argv)
  try:
    hyps = read_reports(args.hyps, HYP_FIELDS, split=args.split)
    refs = read_reports(args.refs, REF_FIELDS, split=args.split)
    if args.write_chexbert_input:
      paths = write_chexbert_input(hyps, refs, args.write_chexbert_input)
      print("wrote " + ", ".join(paths) + f" ({len(hyps)} studies in the same order)")
      return {"written": paths}
    result = score(hyps, refs, hyp_labels=args.hyp_labels, ref_labels=args.ref_labels,
                   id_column=args.id_column, allow_mixed_labelers=args.allow_mixed_labelers,
                   nlg=args.nlg, meteor=args.meteor)
  except (OSError, ValueError) as e:
    raise SystemExit(f"error: {e}") from None
  if result["warning"]:
    print(result["warning"], file=sys.stderr)
  print(format_tables(result), end="")
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=1)
  return result


if __name__ == "__main__":
  main()
