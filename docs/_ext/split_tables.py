"""Sphinx extension: a table with more columns than a page shows is split into narrower ones.

The results tables of the examples' READMEs (included into the site as they are) have up to 14
columns of "0.055 ± 0.037": in the page's width they either wrap every number over three lines or
hide their last columns behind a scrollbar. After a page is read, every table with more than
``split_tables_max_columns`` columns (default 6) becomes several tables of at most that many,
one after the other, each repeating the table's key columns: the leading columns that are not
right-aligned (the method, the backbone, the mesh ...; at least one, at most four). The READMEs
stay as they are on GitHub; tables with spanning cells are left alone.
"""

from __future__ import annotations

import math

from docutils import nodes
from sphinx.application import Sphinx

MAX_KEYS = 4


def _rows(tgroup: nodes.Element) -> list[nodes.row]:
  return [row for part in tgroup.children if isinstance(part, (nodes.thead, nodes.tbody))
          for row in part.children if isinstance(row, nodes.row)]


def _is_right(entry: nodes.Element) -> bool:
  return any("right" in c for c in entry.get("classes", ()))


def key_columns(tgroup: nodes.Element, ncols: int) -> int:
  """The leading columns no body cell of which is right-aligned (1 to ``MAX_KEYS``)."""
  body = [row for part in tgroup.children if isinstance(part, nodes.tbody) for row in part]
  keys = 0
  while keys < min(MAX_KEYS, ncols - 1):
    if any(_is_right(row.children[keys]) for row in body if len(row.children) > keys):
      break
    keys += 1
  return keys if 0 < keys < ncols - 1 else 1


def split_table(table: nodes.table, max_columns: int) -> list[nodes.table] | None:
  """The pieces of ``table`` (each at most ``max_columns`` wide), or None to leave it."""
  tgroups = [c for c in table.children if isinstance(c, nodes.tgroup)]
  if len(tgroups) != 1:
    return None
  tgroup = tgroups[0]
  ncols = int(tgroup.get("cols", 0))
  rows = _rows(tgroup)
  if ncols <= max_columns or not rows:
    return None
  for row in rows:      # a spanning cell, or a ragged row: not a plain grid
    if len(row.children) != ncols or any(e.get("morecols") or e.get("morerows")
                                         for e in row.children):
      return None
  keys = key_columns(tgroup, ncols)
  data = list(range(keys, ncols))
  per = max(1, max_columns - keys)
  pieces = math.ceil(len(data) / per)
  base, extra = divmod(len(data), pieces)         # balanced: 13 -> 5, 4, 4 rather than 5, 5, 3
  out, start = [], 0
  for i in range(pieces):
    size = base + (i < extra)
    keep = list(range(keys)) + data[start:start + size]
    start += size
    piece = table.deepcopy()
    if i:                                          # the title (caption) stays on the first piece
      piece.children = [c for c in piece.children if not isinstance(c, nodes.title)]
    group = next(c for c in piece.children if isinstance(c, nodes.tgroup))
    specs = [c for c in group.children if isinstance(c, nodes.colspec)]
    others = [c for c in group.children if not isinstance(c, nodes.colspec)]
    group.children = []
    for j in keep:
      group.append(specs[j])
    for c in others:
      group.append(c)
    for row in _rows(group):
      cells = list(row.children)
      row.children = []
      for j in keep:
        row.append(cells[j])
    group["cols"] = len(keep)
    piece["ids"] = [] if i else piece.get("ids", [])
    piece["classes"] = [*piece.get("classes", []), "split-table"]
    out.append(piece)
  return out


def _split_tables(app: Sphinx, doctree: nodes.document) -> None:
  max_columns = app.config.split_tables_max_columns
  for table in list(doctree.findall(nodes.table)):
    pieces = split_table(table, max_columns)
    if pieces:
      table.replace_self(pieces)


def setup(app: Sphinx) -> dict:
  app.add_config_value("split_tables_max_columns", 6, "env")
  app.connect("doctree-read", _split_tables)
  return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
