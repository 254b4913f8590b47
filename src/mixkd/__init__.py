"""mixkd: knowledge distillation with mixup (Choi et al., WACV 2023) and beyond."""

__version__ = "0.1.0"
