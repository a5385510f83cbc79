"""Every RRG results table in the READMEs is what its committed result file produces.

A table sits between ``<!-- compare: ARGS -->`` and ``<!-- /compare -->``, under the command
that prints it (``python -m examples.rrg.compare ARGS``, ARGS naming a committed
``results.json`` or ``conflict.json`` under ``examples/rrg/results/``).
"""

import os
import re

import pytest

from examples.rrg import compare

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
READMES = ("README.md", os.path.join("examples", "rrg", "README.md"))
BLOCK = re.compile(r"<!-- compare: (.+?) -->\n(.*?)<!-- /compare -->", re.S)


def _blocks():
  found = []
  for readme in READMES:
    with open(os.path.join(ROOT, readme), encoding="utf-8") as f:
      text = f.read()
    found += [(readme, args, body, text) for args, body in BLOCK.findall(text)]
  return found


def test_the_readmes_have_generated_tables():
  assert {readme for readme, *_ in _blocks()} == set(READMES)


@pytest.mark.parametrize("readme,args,body,text", _blocks(),
                         ids=lambda x: str(x)[:70].replace(" ", "_"))
def test_readme_table_equals_what_its_file_produces(readme, args, body, text, capsys):
  assert "examples/rrg/results/" in args, args
  assert f"python -m examples.rrg.compare {args}" in text  # the command is printed beside it
  cwd = os.getcwd()
  try:
    os.chdir(ROOT)
    expected = compare.main(args.split())
  finally:
    os.chdir(cwd)
  capsys.readouterr()
  assert body.strip() == expected.strip(), f"{readme}: the table of `{args}` is stale"
