"""Backbones (ResNet-18, VGG-like, MobileNetV2) with task heads; `build_model` is the entry point.

This module holds the names of the choices (torch-free, so `cldst.config` validates without importing
torch); the classes load on first use (cldst.lazy).
"""

from __future__ import annotations

from cldst.lazy import exports

# arch name -> "module:class" of its backbone (imported when a network is built)
BACKBONES = {
    "resnet18": "cldst.models.resnet:ResNet18",
    "vgg": "cldst.models.vgg:VGG",
    "mobilenetv2": "cldst.models.mobilenetv2:MobileNetV2",
}
ARCHS = tuple(BACKBONES)
# "cifar": the CIFAR adaptations (3x3 stride-1 first convs); "authors": the networks of the authors' code
# (ResNet-18 with a 7x7 stride-2 stem; VGG-like the same in both; MobileNetV2 with ImageNet strides, ReLU6).
VARIANTS = ("cifar", "authors")
# "torch": PyTorch's default init (kaiming-uniform, a = sqrt(5)), which the authors' models keep;
# "kaiming": Kaiming-normal (fan_out, relu) convs, as torchvision's ResNets. Linear layers keep the default.
WEIGHT_INITS = ("torch", "kaiming")
BNS = ("batch", "standard", "task")  # cldst.models.norm.make_norm says what each is
HEADS = ("shared", "multi")  # cldst.models.continual_net says what each is

__getattr__, __dir__ = exports(__name__, {
    "ContinualNet": ".continual_net", "param_shapes": ".continual_net",
    "TaskNorm": ".norm", "make_norm": ".norm", "per_task_norms": ".norm",
    "build_model": ".build", "init_weights": ".build",
})
