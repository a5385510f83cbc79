"""Sphinx configuration of the came_grad_jax documentation site.

Build (from the repository root): ``sh docs/build.sh`` or
``sphinx-build -W --keep-going -b html docs docs/_build/html``.
"""

from __future__ import annotations

import os
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DOCS)
sys.path.insert(0, ROOT)                    # came_grad_jax, examples, benchmarks
sys.path.insert(0, os.path.join(DOCS, "_ext"))
# The tutorials run in Jupyter kernels started from this process: they inherit this
# environment, so they import the checkout (and examples/) and run on the CPU.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import came_grad_jax  # noqa: E402  (after the path is set)

# -- Project -------------------------------------------------------------------
project = "came_grad_jax"
author = "came_grad_jax contributors"
copyright = "2026, came_grad_jax contributors"
release = came_grad_jax.__version__
version = release

# -- Extensions ----------------------------------------------------------------
extensions = [
    "myst_nb",                   # Markdown pages and notebooks-as-Markdown, executed
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",       # Google-style docstrings
    "offline_mathjax",           # docs/_ext/offline_mathjax.py: MathJax 3 served from _static
    "sphinx.ext.viewcode",
    "sphinx_copybutton",
    "public_api",                # docs/_ext/public_api.py: the API page from __all__
    "method_tables",             # docs/_ext/method_tables.py: property tables from the registry
    "split_tables",              # docs/_ext/split_tables.py: wide result tables split to fit
]

exclude_patterns = ["_build", "**/.ipynb_checkpoints", "README.md"]
root_doc = "index"

# Every cross-reference to this library must resolve (a broken one fails the -W build).
# References to other projects are not checked: the build runs offline, without their
# inventories (no intersphinx).
nitpicky = True
nitpick_ignore_regex = [
    # Type annotations: jax.Array, optax.GradientTransformation, typing names, aliases.
    (r"py:(class|data|obj)", r"(?!came_grad_jax\.).*"),
    (r"py:.*", r"(jax|jnp|np|numpy|optax|flax|nnx|chex|typing|collections)\..*"),
]

# -- autodoc / napoleon --------------------------------------------------------
autodoc_default_options = {"member-order": "bysource"}
# The per-object API pages are written by docs/_ext/public_api.py, not by autosummary's templates.
autosummary_generate = False
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
# Show the unions by their names (ScalarOrSchedule, ArrayLike), not expanded to a dozen types.
_ARRAY_LIKE = "jax.typing.ArrayLike"
_SCALAR_OR_SCHEDULE = "optax.ScalarOrSchedule"
autodoc_type_aliases = {
    "ArrayLike": _ARRAY_LIKE,
    "jax.typing.ArrayLike": _ARRAY_LIKE,
    "ScalarOrSchedule": _SCALAR_OR_SCHEDULE,
    "optax.ScalarOrSchedule": _SCALAR_OR_SCHEDULE,
    "base.ScalarOrSchedule": _SCALAR_OR_SCHEDULE,
    "hyperparams.ScalarOrSchedule": _SCALAR_OR_SCHEDULE,
    "_hyperparams.ScalarOrSchedule": _SCALAR_OR_SCHEDULE,
    "TaskWeights": f"{_ARRAY_LIKE} | None",
    "PyTree": "PyTree",
}
maximum_signature_line_length = 88   # longer signatures get one parameter per line
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True         # "Attributes:" as a field list: no duplicate objects
napoleon_use_rtype = False
add_module_names = False
python_display_short_literal_types = True

# -- MyST / MyST-NB ------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
myst_dmath_double_inline = True
nb_execution_mode = os.environ.get("CAME_DOCS_EXECUTE", "cache")  # "off" for a quick look
nb_execution_cache_path = os.path.join(DOCS, "_build", ".jupyter_cache")
nb_execution_timeout = 180       # seconds per cell
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
nb_kernel_rgx_aliases = {".*": "python3"}

# -- HTML ----------------------------------------------------------------------
html_theme = "furo"
html_title = f"came_grad_jax {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_show_sourcelink = False
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
