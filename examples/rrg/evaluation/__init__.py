"""Evaluation: the labeler, NLG and clinical-efficacy metrics, offline scoring, statistics and plots."""
