"""Models: the CIFAR zoo of the KD literature and ImageNet ResNets, built by name with a feature API."""

from mixkd.models import imagenet, mobilenetv2, resnet, resnetv2, shufflenetv1, shufflenetv2, vgg, wrn  # noqa: F401
from mixkd.models.base import ModelOutput, ZooModel
from mixkd.models.registry import MODELS, build_model, list_models
from mixkd.models.weights import extract_state_dict, load_model, load_weights, read_checkpoint

__all__ = [
    "MODELS",
    "ModelOutput",
    "ZooModel",
    "build_model",
    "extract_state_dict",
    "list_models",
    "load_model",
    "load_weights",
    "read_checkpoint",
]
