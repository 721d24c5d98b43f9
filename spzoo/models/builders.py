"""The four designs of Table II as functions: ResNet, -Struct, -Op, SP."""

import keras

from spzoo.models.registry import get_spec
from spzoo.models.resnet import build_resnet, resnet_spec


def resnet(
    num_blocks: int = 3, filters: int = 48, input_shape=(32, 32, 3), num_classes=10
) -> keras.Model:
    """The ResNet N_B-N_F baseline (3-32, 3-48, 3-64, 2-48, 4-48 in Table II)."""
    return build_resnet(resnet_spec(num_blocks, filters), input_shape, num_classes)


def resnet_struct(input_shape=(32, 32, 3), num_classes=10) -> keras.Model:
    """ResNet-Struct: changes (a) and (b) only (depths, widths), ReLU."""
    return build_resnet(get_spec("resnet_struct"), input_shape, num_classes)


def resnet_op(input_shape=(32, 32, 3), num_classes=10) -> keras.Model:
    """ResNet-Op: changes (c) and (d) only (per-stack kernel mix), ReLU."""
    return build_resnet(get_spec("resnet_op"), input_shape, num_classes)


def sp_resnet(input_shape=(32, 32, 3), num_classes=10) -> keras.Model:
    """The signal-processing ResNet: changes (a)-(e) of the paper."""
    return build_resnet(get_spec("sp_resnet"), input_shape, num_classes)
