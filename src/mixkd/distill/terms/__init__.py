"""Feature/relation distillation terms, one module per method, registered by name in TERMS."""

from mixkd.distill.terms import (  # noqa: F401  (importing a module registers its term)
    ab,
    at,
    cc,
    fitnet,
    fsp,
    ft,
    ickd,
    kdsvd,
    nst,
    ofd,
    pkt,
    rkd,
    sp,
    vid,
)
from mixkd.distill.terms.base import TERMS, FeatureTerm, register

__all__ = ["TERMS", "FeatureTerm", "register"]
