"""The KD methods with a distiller of their own, one module each; every module here registers its method."""

from mixkd.registry import import_all

import_all(__name__, __path__)
