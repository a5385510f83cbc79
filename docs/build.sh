#!/bin/sh
# Build the documentation site as CI does: warnings are errors (broken cross-references
# included) and every tutorial notebook is executed (results cached in docs/_build/.jupyter_cache;
# pass --fresh to execute them all again). Run from anywhere; needs `pip install -e ".[docs]"`.
#   sh docs/build.sh            -> docs/_build/html/index.html
#   sh docs/build.sh --fresh    -> also clears the notebook cache and Sphinx's environment
set -eu
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--fresh" ]; then
  rm -rf docs/_build
fi
export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
exec python -m sphinx -W --keep-going -b html docs docs/_build/html
