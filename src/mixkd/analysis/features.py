"""Penultimate features of chosen classes: 2-D t-SNE embeddings and V-measure clustering scores (Fig. 1, 3)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from mixkd.analysis.loading import EvalData, LoadedModel
from mixkd.analysis.presets import CLASS_PRESETS
from mixkd.errors import ConfigError
from mixkd.progress import progress


def class_index(text: str, classes: Sequence[str], option: str = "--classes") -> int:
    """A class name (case-insensitive) or index -> its index in `classes`."""
    if text.isdigit() and int(text) < len(classes):
        return int(text)
    lower = [c.lower() for c in classes]
    if text.lower() in lower:
        return lower.index(text.lower())
    shown = ", ".join(classes[:12]) + (", ..." if len(classes) > 12 else "")
    raise ConfigError(f"{option}: {text!r} is not a class of this dataset (nor an index < {len(classes)}); "
                      f"classes: {shown}; presets: {', '.join(CLASS_PRESETS)}")

EXACT_TSNE_MAX = 1500  # points; above this t-SNE uses the Barnes-Hut approximation


def resolve_classes(wanted: Sequence[str], classes: Sequence[str]) -> list[int]:
    """Class names, indices or one preset name -> class indices of the dataset (order kept)."""
    if len(wanted) == 1 and wanted[0] in CLASS_PRESETS:
        wanted = CLASS_PRESETS[wanted[0]]
    out: list[int] = []
    for w in wanted:
        i = class_index(w, classes)
        if i in out:
            raise ConfigError(f"--classes: {classes[i]!r} is listed twice")
        out.append(i)
    if len(out) < 2:
        raise ConfigError("--classes: name at least two classes (clustering one class is meaningless)")
    return out


@torch.no_grad()
def extract_features(model: nn.Module, batches, desc: str = "features") -> tuple[Tensor, Tensor]:
    """(penultimate features [N, D], labels [N]) of every batch, model in eval mode, on the CPU."""
    model.eval()
    feats, labels = [], []
    for batch in progress(batches, desc, unit="batch"):
        feats.append(model(batch.x, return_features=True).penultimate.float().cpu())
        labels.append(batch.y.cpu())
    return torch.cat(feats), torch.cat(labels)


def v_score(points: np.ndarray, labels: np.ndarray, k: int, seed: int = 0) -> float:
    """V-measure of k-means clusters (k clusters, seeded) against the true labels."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import v_measure_score

    pred = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(points)
    return float(v_measure_score(labels, pred))


def tsne(points: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D t-SNE embedding (PCA initialised, seeded; perplexity capped for small samples)."""
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(2.0, (len(points) - 1) / 3)))
    # the exact gradient is faster than Barnes-Hut up to a few thousand points (and deterministic)
    method = "exact" if len(points) <= EXACT_TSNE_MAX else "barnes_hut"
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                method=method).fit_transform(points)


@dataclass
class FeatureResult:
    """One model on one split: the 2-D embedding, labels and both V-scores."""

    model: str
    split: str
    embedding: np.ndarray  # [N, 2]
    labels: np.ndarray  # [N] dataset class indices
    v_raw: float  # k-means on the penultimate features themselves
    v_tsne: float  # k-means on the 2-D t-SNE embedding

    def to_json(self, class_names: Sequence[str]) -> dict:
        """The numbers (not the points) as plain JSON."""
        counts = np.bincount(self.labels, minlength=len(class_names))
        return {"model": self.model, "split": self.split, "n": int(len(self.labels)),
                "per_class": {class_names[i]: int(c) for i, c in enumerate(counts) if c},
                "v_score_features": self.v_raw, "v_score_tsne": self.v_tsne}


def analyze_features(models: Sequence[LoadedModel], data: EvalData, classes: Sequence[int],
                     splits: Sequence[str] = ("train", "test"), per_class: int | None = None,
                     seed: int = 0) -> list[FeatureResult]:
    """t-SNE and V-scores of the penultimate features of `classes` for every model and split."""
    rows = {}
    for split in splits:
        rows[split] = data.select(split, classes, per_class, seed)
        if len(rows[split]) == 0:
            raise ConfigError(f"the {split} split has no rows of the chosen classes")
    results = []
    for split, m in progress([(s, m) for s in splits for m in models], "features, t-SNE, V-scores", unit="model"):
        feats, labels = extract_features(m.model, data.loader(split, rows[split]), f"{m.label} {split}")
        x, y = feats.numpy(), labels.numpy()
        emb = tsne(x, seed)
        results.append(FeatureResult(m.label, split, emb, y, v_score(x, y, len(classes), seed),
                                     v_score(emb, y, len(classes), seed)))
    return results
