"""The docs site's own machinery (docs/_ext): per-object API pages, split tables, offline MathJax.

Fast checks of what ``sh docs/build.sh`` relies on, so that a broken extension shows in the test
run and not only in the (slower) site build.
"""

from __future__ import annotations

import pathlib
import re
import sys

import pytest
from docutils import nodes

import came_grad_jax

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
sys.path.insert(0, str(DOCS / "_ext"))
import method_tables  # noqa: E402
import public_api  # noqa: E402
import split_tables  # noqa: E402


def test_every_public_object_has_its_own_page():
  pages = public_api.object_pages()
  for name in came_grad_jax.__all__:
    assert f"came_grad_jax.{name}.rst" in pages, name
  for sub in ("weightings", "loss_weighting"):
    for name in getattr(came_grad_jax, sub).__all__:
      assert f"came_grad_jax.{sub}.{name}.rst" in pages, f"{sub}.{name}"
    assert ":toctree: ." in pages[f"came_grad_jax.{sub}.rst"]   # its members' index


def test_home_page_method_list_covers_the_registry():
  text = method_tables.method_list_markdown()
  for name in came_grad_jax.method_names():
    assert came_grad_jax.get_method(name).title in text, name
  assert f"**{len(came_grad_jax.method_names('gradient'))} gradient methods**" in text


def _table(ncols: int, nrows: int, right_from: int = 1) -> nodes.table:
  group = nodes.tgroup(cols=ncols)
  group += [nodes.colspec(colwidth=1) for _ in range(ncols)]
  head, body = nodes.thead(), nodes.tbody()
  head += nodes.row("", *[nodes.entry("", nodes.paragraph(text=f"h{j}")) for j in range(ncols)])
  for i in range(nrows):
    body += nodes.row("", *[nodes.entry("", nodes.paragraph(text=f"{i},{j}"),
                                        classes=["text-right"] if j >= right_from else [])
                            for j in range(ncols)])
  group += [head, body]
  return nodes.table("", group)


@pytest.mark.parametrize("ncols,keys,widths", [(14, 1, [6, 5, 5]), (13, 1, [5, 5, 5]),
                                                (12, 4, [6, 6, 6, 6]), (6, 1, None)])
def test_wide_tables_split_with_their_key_columns_repeated(ncols, keys, widths):
  table = _table(ncols, 3, right_from=keys)
  pieces = split_tables.split_table(table, max_columns=6)
  if widths is None:
    assert pieces is None
    return
  assert [int(p.next_node(nodes.tgroup)["cols"]) for p in pieces] == widths[:len(pieces)]
  seen = []
  for piece in pieces:
    header = [e.astext() for e in piece.next_node(nodes.thead).next_node(nodes.row).children]
    assert header[:keys] == [f"h{j}" for j in range(keys)]
    seen += header[keys:]
    for row in piece.next_node(nodes.tbody).children:
      assert len(row.children) == len(header)
  assert seen == [f"h{j}" for j in range(keys, ncols)]     # every column once, in order


def test_mathjax_is_shipped_by_a_package():
  import offline_mathjax
  source = pathlib.Path(offline_mathjax.mathjax_source())
  for part in offline_mathjax.PARTS:
    assert (source / part).exists(), part
  conf = (DOCS / "conf.py").read_text()
  assert "offline_mathjax" in conf and "sphinx.ext.mathjax" not in conf


def test_tutorials_need_only_installed_packages():
  """No tutorial imports the repository's examples/ or benchmarks/ (not in the wheel)."""
  for page in sorted((DOCS / "tutorials").glob("*.md")) + [DOCS / "getting_started.md"]:
    imports = re.findall(r"^\s*(?:from|import)\s+(examples|benchmarks|tests)\b", page.read_text(),
                         re.M)
    assert imports == [], f"{page.name} imports {imports}"
