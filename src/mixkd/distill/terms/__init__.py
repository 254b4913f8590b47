"""Feature/relation distillation terms, one module per method, registered by name in TERMS."""

from mixkd.distill.terms import at, nst, pkt, rkd, sp  # noqa: F401  (registers the terms)
from mixkd.distill.terms.base import TERMS, FeatureTerm, register

__all__ = ["TERMS", "FeatureTerm", "register"]
