"""Published top-1 of the community teachers, and the check of a teacher against its figure.

The commonest complaint against a downloaded teacher is that it is not as good as published (RepDistiller
issue #29: a ResNet110 testing at 70.27 % instead of 74.31 %). `distill` and `mixkd teacher-check` compare a
teacher evaluated on a dataset's full test split with the figure below and warn when it is more than
`MARGIN` points lower.
"""

from __future__ import annotations

from dataclasses import dataclass

REPDISTILLER = "RepDistiller README, CIFAR-100 benchmark (github.com/HobbitLong/RepDistiller)"
TORCHVISION = "torchvision {} weights, acc@1 on the ImageNet-1K validation set (pytorch.org/vision)"
MARGIN = 1.5  # points of top-1 a teacher may be below its published figure before mixkd warns


@dataclass(frozen=True)
class Published:
    """One published figure: an architecture's top-1 (percent) on a dataset's full test split of that size."""

    arch: str
    dataset: str  # a dataset key (see dataset_key)
    top1: float
    test_images: int
    source: str


PUBLISHED: tuple[Published, ...] = (
    # the teachers RepDistiller publishes (scripts/fetch_pretrained_teachers.sh), also mdistiller's cifar_teachers
    Published("resnet56", "cifar100", 72.34, 10_000, REPDISTILLER),
    Published("resnet110", "cifar100", 74.31, 10_000, REPDISTILLER),
    Published("resnet32x4", "cifar100", 79.42, 10_000, REPDISTILLER),
    Published("wrn_40_2", "cifar100", 75.61, 10_000, REPDISTILLER),
    Published("vgg13", "cifar100", 74.64, 10_000, REPDISTILLER),
    Published("ResNet50", "cifar100", 79.34, 10_000, REPDISTILLER),
    # torchvision's weights (the ImageNet recipes' teachers), from each enum's meta["_metrics"]
    Published("resnet18", "imagenet", 69.758, 50_000, TORCHVISION.format("ResNet18_Weights.IMAGENET1K_V1")),
    Published("resnet34", "imagenet", 73.314, 50_000, TORCHVISION.format("ResNet34_Weights.IMAGENET1K_V1")),
)


def dataset_key(name: str, num_classes: int) -> str:
    """The table's name of a dataset: its data.name, or imagenet for a 1000-class ImageFolder."""
    return "imagenet" if name == "imagefolder" and num_classes == 1000 else name


def published(arch: str | None, dataset: str) -> Published | None:
    """The published figure of `arch` on the dataset key `dataset`, if the table has one."""
    return next((p for p in PUBLISHED if p.arch == arch and p.dataset == dataset), None)


@dataclass(frozen=True)
class TeacherCheck:
    """A teacher's measured top-1 next to its published figure."""

    arch: str
    measured: float
    test_images: int
    ref: Published

    @property
    def full_split(self) -> bool:
        """Whether it was evaluated on as many test images as the published figure (the full split)."""
        return self.test_images == self.ref.test_images

    @property
    def below(self) -> bool:
        """More than MARGIN points below the published figure, on the full split."""
        return self.full_split and self.measured < self.ref.top1 - MARGIN

    def warning(self) -> str | None:
        """The one-line warning when `below`, else None."""
        if not self.below:
            return None
        return (f"teacher {self.arch} tests at {self.measured:.2f}% top-1 on the full {self.ref.dataset} test split, "
                f"{self.ref.top1 - self.measured:.2f} points below its published {self.ref.top1:.2f}% "
                f"({self.ref.source}); check the checkpoint (a partial download, another training), --teacher-arch "
                "and the data")

    def line(self) -> str:
        """One line for `mixkd teacher-check`."""
        if not self.full_split:
            return (f"{self.arch}: top-1 {self.measured:.2f}% on {self.test_images} test images; published "
                    f"{self.ref.top1:.2f}% on the full split of {self.ref.test_images} ({self.ref.source}): not "
                    "compared, evaluate on the full test split (no data.test_subset)")
        verdict = "more than" if self.below else "within"
        return (f"{self.arch}: top-1 {self.measured:.2f}% on the full {self.ref.dataset} test split "
                f"({self.test_images} images), published {self.ref.top1:.2f}% ({self.ref.source}): "
                f"{verdict} {MARGIN:g} points below")

    def to_json(self) -> dict:
        """What summary.json records: the published figure and its source beside the measured one."""
        return {"published_top1": self.ref.top1, "published_source": self.ref.source,
                "full_test_split": self.full_split, "below_published": self.below}


def check_teacher(arch: str | None, dataset: str, num_classes: int, test_images: int,
                  top1: float) -> TeacherCheck | None:
    """The check of a teacher evaluated at `top1` on `test_images` images, or None when nothing is published."""
    ref = published(arch, dataset_key(dataset, num_classes))
    return None if ref is None or arch is None else TeacherCheck(arch, top1, test_images, ref)
