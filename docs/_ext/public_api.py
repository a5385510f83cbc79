"""Sphinx extension: the API reference generated from ``came_grad_jax.__all__``.

The ``public-api`` directive takes lines ``Section title: name name ...``. Under each title it
puts a summary table (autosummary) of the public names listed, each linked to a page of its own;
every remaining name of ``__all__`` goes under "Other public names", so that a name added to the
package appears in the reference without editing the docs. A listed name that is not in
``__all__`` (renamed, removed or private) is a build warning, an error under ``sphinx-build -W``.

The pages themselves (one per public object, autodoc) are written by this extension when the
build starts, under ``docs/api/_generated`` (not committed). A public submodule
(``weightings``, ``loss_weighting``) gets a page with its docstring and a summary table of its
own ``__all__``, whose names get pages in turn.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import types

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

PACKAGE = "came_grad_jax"
OTHER = "Other public names"
#: Where the per-object pages are written, relative to the docs' source directory.
GENERATED = "api/_generated"
logger = logging.getLogger(__name__)


def public_names(package: str = PACKAGE) -> list[str]:
  """The package's ``__all__``, in order, without duplicates."""
  module = importlib.import_module(package)
  names = list(dict.fromkeys(getattr(module, "__all__", ())))
  if not names:
    raise ValueError(f"{package}.__all__ is missing or empty")
  return names


def _autodoc_lines(package: str, name: str, obj: object) -> list[str]:
  if isinstance(obj, types.ModuleType):
    return [f".. automodule:: {package}.{name}", ""]
  if inspect.isclass(obj):
    return [f".. autoclass:: {name}", "   :members:", ""]
  if callable(obj):
    return [f".. autofunction:: {name}", ""]
  return [f".. autodata:: {name}", "   :annotation:", ""]


def _summary_lines(package: str, names: list[str], toctree: str) -> list[str]:
  lines = [f".. currentmodule:: {package}", "", ".. autosummary::", f"   :toctree: {toctree}",
           "   :nosignatures:", ""]
  return lines + [f"   {name}" for name in names] + [""]


def object_pages(package: str = PACKAGE) -> dict[str, str]:
  """``{file name: reST}``: one page per public object of ``package``, submodules recursed."""
  module = importlib.import_module(package)
  pages = {}
  for name in public_names(package):
    obj = getattr(module, name)
    title = f"{package.rpartition('.')[2]}.{name}" if package != PACKAGE else name
    lines = [title, "=" * len(title), "", f".. currentmodule:: {package}", ""]
    lines += _autodoc_lines(package, name, obj)
    if isinstance(obj, types.ModuleType):
      sub = f"{package}.{name}"
      lines += _summary_lines(sub, public_names(sub), ".")
      pages.update(object_pages(sub))
    pages[f"{package}.{name}.rst"] = "\n".join(lines)
  return pages


def write_object_pages(app: Sphinx) -> None:
  """Write the per-object pages (only those that changed, so that rebuilds stay incremental)."""
  folder = os.path.join(app.srcdir, GENERATED)
  os.makedirs(folder, exist_ok=True)
  pages = object_pages()
  for stale in set(os.listdir(folder)) - set(pages):
    os.remove(os.path.join(folder, stale))
  for file_name, text in pages.items():
    path = os.path.join(folder, file_name)
    if not os.path.exists(path) or open(path, encoding="utf-8").read() != text:
      with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _section_lines(package: str, title: str, names: list[str]) -> list[str]:
  return [title, "-" * len(title), ""] + _summary_lines(package, names, GENERATED)


class PublicApi(SphinxDirective):
  """``public-api``: sections of public names, then every name not yet listed."""

  has_content = True
  option_spec = {"package": str}

  def run(self) -> list[nodes.Node]:
    package = self.options.get("package", PACKAGE)
    names = public_names(package)
    sections, seen = [], set()
    for line in self.content:
      if not line.strip():
        continue
      title, _, listed = line.partition(":")
      wanted = []
      for name in listed.split():
        if name not in names:
          logger.warning(f"public-api: {name!r} is not in {package}.__all__",
                         location=self.get_location())
        elif name in seen:
          logger.warning(f"public-api: {name!r} is listed twice",
                         location=self.get_location())
        else:
          wanted.append(name)
          seen.add(name)
      if wanted:
        sections.append((title.strip(), wanted))
    rest = [name for name in names if name not in seen]
    if rest:
      sections.append((OTHER, rest))
    lines = []
    for title, wanted in sections:
      lines += _section_lines(package, title, wanted)
    container = nodes.section()
    container.document = self.state.document
    nested_parse_with_titles(self.state, StringList(lines, source="public-api"), container)
    return container.children


def _drop_namedtuple_alias_doc(app, what, name, obj, options, lines):
  """Drop Python's "Alias for field number N" from NamedTuple fields with no doc."""
  del app, what, name, obj, options
  if len(lines) == 1 and lines[0].startswith("Alias for field number"):
    lines.clear()


_ALIAS_REPR = re.compile(r"TypeAliasForwardRef\('([^']*)'\)")


def _tidy_alias_reprs(app, what, name, obj, options, signature, return_annotation):
  """Show ``X`` where Sphinx prints ``TypeAliasForwardRef('X')`` (an alias inside a union)."""
  del app, what, name, obj, options
  if signature is None and return_annotation is None:
    return None
  tidy = lambda text: _ALIAS_REPR.sub(r"\1", text) if text else text
  return tidy(signature), tidy(return_annotation)


def setup(app: Sphinx) -> dict:
  app.add_directive("public-api", PublicApi)
  app.connect("builder-inited", write_object_pages)
  app.connect("autodoc-process-docstring", _drop_namedtuple_alias_doc)
  app.connect("autodoc-process-signature", _tidy_alias_reprs)
  return {"parallel_read_safe": True, "parallel_write_safe": True}
