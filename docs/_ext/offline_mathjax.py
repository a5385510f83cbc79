"""Sphinx extension: MathJax served from the site itself, so that equations render offline.

Sphinx's ``sphinx.ext.mathjax`` loads MathJax from a CDN in the reader's browser: read offline
(or on a machine with no network), every equation shows as raw TeX. This extension takes
MathJax 3's files from the ``sphinx-mathjax-offline`` package (a PyPI package that ships them;
the ``docs`` extra installs it), copies the ones a TeX-to-HTML page needs (``tex-chtml.js``, the
TeX extensions it loads on demand, the CommonHTML fonts and the menu) into the site's
``_static/mathjax`` and points ``mathjax_path`` there. Nothing is downloaded at build or read
time. Without the package the build fails with a message saying what to install.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

DISTRIBUTION = "sphinx-mathjax-offline"      # its import name has the hyphens too
ENTRY = "tex-chtml.js"
#: What a ``tex-chtml`` page loads, relative to MathJax's folder: the combined component, the
#: TeX extensions it autoloads (\boldsymbol, \cancel, ...), the fonts and the lazy menu parts.
PARTS = (ENTRY, "input/tex/extensions", "output/chtml", "ui", "a11y/assistive-mml.js")


def mathjax_source() -> str:
  """The folder of MathJax 3 inside the installed ``sphinx-mathjax-offline``."""
  spec = importlib.util.find_spec(DISTRIBUTION)
  folder = None
  if spec is not None and spec.submodule_search_locations:
    folder = os.path.join(list(spec.submodule_search_locations)[0], "static", "mathjax")
  if folder is None or not os.path.isfile(os.path.join(folder, ENTRY)):
    raise ExtensionError(f"offline_mathjax: MathJax not found; pip install {DISTRIBUTION} "
                         "(in the docs extra: pip install -e \".[docs]\")")
  return folder


def _copy(app: Sphinx, exception: Exception | None) -> None:
  if exception is not None or app.builder.format != "html":
    return
  source = mathjax_source()
  target = os.path.join(app.outdir, "_static", "mathjax")
  for part in PARTS:
    src, dst = os.path.join(source, part), os.path.join(target, part)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.isdir(src):
      shutil.copytree(src, dst, dirs_exist_ok=True)
    else:
      shutil.copy2(src, dst)


def _point_at_local_copy(app: Sphinx, config) -> None:
  del app
  config.mathjax_path = f"mathjax/{ENTRY}"        # relative to the site's _static


def setup(app: Sphinx) -> dict:
  mathjax_source()                         # fail early, with what to install
  app.setup_extension("sphinx.ext.mathjax")
  app.connect("config-inited", _point_at_local_copy)
  app.connect("build-finished", _copy)
  return {"parallel_read_safe": True, "parallel_write_safe": True}
