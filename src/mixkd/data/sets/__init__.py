"""The datasets, one module each; every module here registers its loader in mixkd.data.DATASETS.

A new dataset is one new file in this folder: nothing else names it."""

from mixkd.registry import import_all

import_all(__name__, __path__)
