"""Analyses of trained models: features, logits, robustness, curves, reports."""
