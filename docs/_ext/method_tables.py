"""Sphinx extension: the methods' property tables, generated from the library's registry.

``method-table`` takes registry names (``cg.method_names()``), one or more per line, or the
option ``:all:``, and renders one Markdown table row per method: its title, the public
transformation (or loss weighting) and weighting that build it, the properties the registry
records (non-conflicting, invariant to task-loss scaling, randomised, needs K), and the paper's
link; ``:columns: method cost`` (any keys of ``COLUMNS``) picks other columns. It is meant for MyST pages (the rows are parsed as Markdown).

``method-list`` renders the whole registry for the home page: one item for the gradient
methods, one for the loss weightings, each title linked to the API page of its factory, with the
counts; a method added to the registry appears there without editing the page.

At the end of reading, every registered method must appear in some table without ``:all:`` (a
family page): a method added to the registry and to no page is a build warning, an error under
``sphinx-build -W``. So is a name that is not registered.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

import came_grad_jax as cg

logger = logging.getLogger(__name__)
#: Column key -> header. ``:columns:`` picks some, in its order; the default is all but cost.
COLUMNS = {"method": "Method", "paper": "Paper", "transformation": "Transformation",
           "weighting": "Weighting", "non_conflicting": "Non-conflicting",
           "scale_invariant": "Scale-invariant", "random": "Random", "needs_k": "Needs K",
           "cost": "Cost"}
DEFAULT_COLUMNS = tuple(c for c in COLUMNS if c != "cost")


def _public_path(obj: Any) -> str | None:
  """The public dotted name under which ``obj`` is exported, if any."""
  name = getattr(obj, "__name__", None)
  if name is None:
    return None
  for prefix, namespace in (("came_grad_jax", cg), ("came_grad_jax.loss_weighting",
                                                     cg.loss_weighting),
                            ("came_grad_jax.weightings", cg.weightings)):
    if getattr(namespace, name, None) is obj and name in getattr(namespace, "__all__", ()):
      return f"{prefix}.{name}"
  return None


def _cell(text: str) -> str:
  return str(text).replace("|", "\\|").replace("\n", " ")


def _link(obj: Any) -> str:
  path = _public_path(obj)
  if path is None:
    return "" if obj is None else f"`{getattr(obj, '__name__', obj)}`"
  return f"{{func}}`~{path}`"


def method_row(name: str, columns: tuple[str, ...] = DEFAULT_COLUMNS) -> str:
  """One Markdown table row for the registered method ``name``."""
  m = cg.get_method(name)
  cells = {"method": _cell(m.title), "transformation": _link(m.factory),
           "weighting": _link(m.weighting), "non_conflicting": _cell(m.non_conflicting),
           "scale_invariant": _cell(m.scale_invariant),
           "random": "yes" if m.randomized else "no",
           "needs_k": "yes" if m.needs_num_tasks else "no", "cost": _cell(m.cost),
           "paper": f"[{_cell(m.reference)}]({m.url})" if m.url else _cell(m.reference)}
  return "| " + " | ".join(cells[c] for c in columns) + " |"


def _columns(arg: str | None) -> tuple[str, ...]:
  columns = tuple(arg.split()) if arg else DEFAULT_COLUMNS
  unknown = [c for c in columns if c not in COLUMNS]
  if unknown:
    raise ValueError(f"unknown method-table columns {unknown}; known: {list(COLUMNS)}")
  return columns


class MethodTable(SphinxDirective):
  """``method-table``: the registry's rows for the listed methods (or ``:all:``)."""

  has_content = True
  option_spec = {"all": lambda arg: True, "columns": _columns}

  def run(self) -> list[nodes.Node]:
    registered = cg.method_names()
    if "all" in self.options:
      names = list(registered)
    else:
      names = [n for line in self.content for n in line.split()]
      unknown = [n for n in names if n not in registered]
      for n in unknown:
        logger.warning(f"method-table: {n!r} is not a registered method "
                       f"(cg.method_names())", location=self.get_location())
      names = [n for n in names if n in registered]
      pages = getattr(self.env, "came_method_pages", {})
      for n in names:
        pages.setdefault(n, set()).add(self.env.docname)
      self.env.came_method_pages = pages
    columns = self.options.get("columns", DEFAULT_COLUMNS)
    lines = ["| " + " | ".join(COLUMNS[c] for c in columns) + " |",
             "|" + " --- |" * len(columns)]
    lines += [method_row(n, columns) for n in names]
    return self.parse_text_to_nodes("\n".join(lines))


def method_list_markdown() -> str:
  """The registry as Markdown: each kind's count, then its titles linked to their factories."""
  parts = []
  for kind, label in (("gradient", "gradient methods"), ("loss", "loss weightings")):
    names = cg.method_names(kind)
    links = []
    for n in names:
      m = cg.get_method(n)
      path = _public_path(m.factory)
      links.append(f"{{func}}`{_cell(m.title)} <{path}>`" if path else _cell(m.title))
    parts.append(f"- **{len(names)} {label}**: " + ", ".join(links) + ".")
  return "\n".join(parts)


class MethodList(SphinxDirective):
  """``method-list``: every registered method's title, linked, one list item per kind."""

  has_content = False

  def run(self) -> list[nodes.Node]:
    container = nodes.container(classes=["method-list"])   # custom.css: titles in the text font
    container += self.parse_text_to_nodes(method_list_markdown())
    return [container]


def _purge(app, env, docname):
  pages = getattr(env, "came_method_pages", {})
  for docs in pages.values():
    docs.discard(docname)


def _merge(app, env, docnames, other):
  pages = getattr(env, "came_method_pages", {})
  for name, docs in getattr(other, "came_method_pages", {}).items():
    pages.setdefault(name, set()).update(docs)
  env.came_method_pages = pages


def _check_every_method_listed(app, env):
  pages = getattr(env, "came_method_pages", {})
  for name in cg.method_names():
    if not pages.get(name):
      logger.warning(f"method {name!r} of the registry is in no family table under docs/methods "
                     f"(add it to a ``method-table`` there)")


def setup(app: Sphinx) -> dict:
  app.add_directive("method-table", MethodTable)
  app.add_directive("method-list", MethodList)
  app.connect("env-purge-doc", _purge)
  app.connect("env-merge-info", _merge)
  app.connect("env-check-consistency", _check_every_method_listed)
  return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
