"""``python -m examples.toy --out runs/toy``: see :mod:`examples.toy.run`."""

from examples.toy.run import main

main()
