"""The documentation: every docstring example runs, and the site's pages are consistent.

The docstring examples of every module of ``came_grad_jax`` (private ones included) run here
with ``doctest`` (ELLIPSIS and NORMALIZE_WHITESPACE; ``jax``, ``jnp``, ``np`` and ``optax`` in
scope), so CI needs no ``--doctest-modules`` flags. Building the site itself (executed
tutorials, warnings as errors) is ``sh docs/build.sh``.
"""

from __future__ import annotations

import doctest
import importlib
import pathlib
import pkgutil
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import came_grad_jax

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
sys.path.insert(0, str(DOCS / "_ext"))
import public_api  # noqa: E402  (docs/_ext: the API page's generator)

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _library_modules() -> list[str]:
  names = [came_grad_jax.__name__]
  for info in pkgutil.walk_packages(came_grad_jax.__path__, came_grad_jax.__name__ + "."):
    names.append(info.name)
  return sorted(names)


def _examples(module_name: str) -> list[doctest.DocTest]:
  module = importlib.import_module(module_name)
  finder = doctest.DocTestFinder(exclude_empty=True)
  globs = {"jax": jax, "jnp": jnp, "np": np, "optax": optax, "cg": came_grad_jax}
  tests = finder.find(module, module_name, extraglobs=globs)
  return [t for t in tests if t.examples and t.name.startswith(module_name)]


@pytest.mark.parametrize("module_name", _library_modules())
def test_docstring_examples_run(module_name):
  runner = doctest.DocTestRunner(optionflags=FLAGS)
  for test in _examples(module_name):
    runner.run(test)
  result = runner.summarize(verbose=False)
  assert result.failed == 0, f"{result.failed} docstring example(s) of {module_name} failed (see above)"


def test_docstrings_have_examples():
  """The library documents itself by example: most public functions carry one."""
  found = sum(len(t.examples) for name in _library_modules() for t in _examples(name))
  assert found >= 50, f"only {found} docstring examples found"


def test_api_page_lists_only_public_names():
  """Every name the API page's sections list is in ``__all__``; the rest is added by itself."""
  public = public_api.public_names()
  assert public == list(dict.fromkeys(came_grad_jax.__all__))
  private = [n for n in public if n.startswith("_") and not n.endswith("__")]
  assert private == [] and all(hasattr(came_grad_jax, name) for name in public)
  text = (DOCS / "api.rst").read_text()
  body = text.split(".. public-api::", 1)[1]
  listed = [name for line in body.splitlines() if ":" in line
            for name in line.partition(":")[2].split()]
  assert listed, "the API page lists no sections"
  assert sorted(set(listed) - set(public)) == []
  assert len(listed) == len(set(listed))


def _method_pages() -> dict[str, str]:
  return {p.name: p.read_text() for p in sorted((DOCS / "methods").glob("*.md"))}


def _tabled_methods(text: str) -> list[str]:
  """Registry names listed in the page's ``method-table`` directives (not ``:all:``)."""
  names = []
  for body in re.findall(r"```\{method-table\}\n(.*?)```", text, re.S):
    if ":all:" not in body:
      names += [n for line in body.splitlines() if not line.startswith(":") for n in line.split()]
  return names


def test_every_method_family_page_has_a_table_and_links_its_papers():
  for name, text in _method_pages().items():
    if name == "index.md":
      continue
    assert _tabled_methods(text), f"{name} has no method-table"
    references = text.split("## References", 1)
    assert len(references) == 2, f"{name} has no References section"
    links = re.findall(r"\]\((https://[^)\s]+)\)", references[1])
    assert len(links) >= 1, f"{name}: no paper links in its References"


def test_every_registered_method_is_on_exactly_one_family_page():
  pages = {name: _tabled_methods(text) for name, text in _method_pages().items()}
  for method in came_grad_jax.method_names():
    found = [page for page, names in pages.items() if method in names]  # pages, not tables
    assert len(found) == 1, f"{method}: on {found or 'no'} docs/methods page(s)"
    assert came_grad_jax.get_method(method).url.startswith("https://"), method
  listed = [name for names in pages.values() for name in names]
  assert sorted(set(listed) - set(came_grad_jax.method_names())) == []
