"""Named groups of classes for the feature analyses (no torch import: the CLI lists them in --help)."""

from __future__ import annotations

from collections.abc import Sequence

# The paper's two groups of CIFAR-100 classes (Sec. 3): semantically similar people and unrelated things;
# the same contrast for CIFAR-10 (four mammals vs. a car, a bird, a frog and a ship) and Fashion-MNIST
# (four upper-body garments vs. trousers, a sandal, a bag and a boot).
CLASS_PRESETS: dict[str, tuple[str, ...]] = {
    "cifar100-similar": ("baby", "boy", "girl", "man", "woman"),
    "cifar100-dissimilar": ("beaver", "apple", "aquarium_fish", "rocket", "turtle"),
    "cifar10-similar": ("cat", "deer", "dog", "horse"),
    "cifar10-dissimilar": ("automobile", "bird", "frog", "ship"),
    "fashion-mnist-similar": ("T-shirt/top", "Pullover", "Coat", "Shirt"),
    "fashion-mnist-dissimilar": ("Trouser", "Sandal", "Bag", "Ankle boot"),
}


def preset_for(kind: str, classes: Sequence[str]) -> str | None:
    """The first preset named '*-KIND' (similar, dissimilar) whose classes all belong to the dataset."""
    have = {c.lower() for c in classes}
    return next((name for name, members in CLASS_PRESETS.items()
                 if name.endswith(f"-{kind}") and all(m.lower() in have for m in members)), None)
