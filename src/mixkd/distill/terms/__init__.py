"""Feature/relation distillation terms, one module per method, registered by name in TERMS (every module of
this package is imported, so a new term file registers itself; mixkd.distill.features makes each a method)."""

from mixkd.distill.terms.base import TERMS, FeatureTerm, register
from mixkd.registry import import_all

import_all(__name__, __path__)

__all__ = ["TERMS", "FeatureTerm", "register"]
