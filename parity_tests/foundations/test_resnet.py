"""Day 18: residual blocks and ResNets in three trees, against torchvision's own blocks; a
``torchvision.models.resnet18(weights=None)`` state dict loads unchanged into our ResNet-18 in every
tree and gives torchvision's outputs and gradients (eval mode)."""
import numpy as np
import pytest
import torch
import torchvision

from ml100.backends import get_module
from ml100.configs import RESNET_BLOCKS, ResNetConfig
from parity_tests.harness import NCHW_TO_NHWC, Case, check_parity, gradcheck_numpy, run_torch, torch_module_reference

MODULE = "foundations.resnet"


def torchvision_block(kind, in_channels, channels, stride):
    """torchvision's own block, with the same downsample rule and names, fed our canonical state."""
    block_class = {"basic": torchvision.models.resnet.BasicBlock, "bottleneck": torchvision.models.resnet.Bottleneck}[kind]
    out_channels = channels * block_class.expansion

    def make(dtype):
        downsample = None
        if stride != 1 or in_channels != out_channels:
            downsample = torch.nn.Sequential(torch.nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                             torch.nn.BatchNorm2d(out_channels))
        return block_class(in_channels, channels, stride, downsample)

    return torch_module_reference(make)


def block_case(kind, in_channels, channels, stride, size=6):
    cls = {"basic": "BasicBlock", "bottleneck": "Bottleneck"}[kind]
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: getattr(m, cls)(in_channels, channels, stride, dtype=dtype, rng=rng),
        inputs=lambda dtype, rng: {"x": rng.standard_normal((3, in_channels, size, size)).astype(dtype)},
        references={"torchvision": torchvision_block(kind, in_channels, channels, stride)},
        tf_layouts={"x": NCHW_TO_NHWC},
        tf_output_layouts={0: NCHW_TO_NHWC},
    )


BLOCKS = {
    "basic identity": ("basic", 4, 4, 1),
    "basic downsample": ("basic", 3, 5, 2),
    "bottleneck widen": ("bottleneck", 4, 2, 1),
    "bottleneck downsample": ("bottleneck", 8, 3, 2),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", BLOCKS)
def test_block_parity_train_mode(name, dtype):
    check_parity(block_case(*BLOCKS[name]), dtype)


@pytest.mark.parametrize("name", ["basic downsample", "bottleneck downsample"])
def test_block_gradcheck(name):
    kind, c_in, c, stride = BLOCKS[name]
    gradcheck_numpy(block_case(kind, c_in, c, stride, size=4))


def mini_resnet_case(block="basic", base_channels=2, batch=4, size=8, train=True):
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.ResNet(ResNetConfig(block, (1, 1, 1, 1), num_classes=5, in_channels=1,
                                                          base_channels=base_channels, small_input=True),
                                             dtype=dtype, rng=rng).train(train),
        inputs=lambda dtype, rng: {"x": rng.standard_normal((batch, 1, size, size)).astype(dtype)},
        tf_layouts={"x": NCHW_TO_NHWC},
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_mini_resnet_parity(block, dtype):
    check_parity(mini_resnet_case(block), dtype)


def test_mini_resnet_gradcheck():
    """The whole network's backward chain, stem to fc, on the narrowest ResNet that has every stage
    (finite differences cost two forwards per weight). Eval mode: with one channel per BN and a 1x1
    last stage, train-mode BN normalizes over a handful of values and is too curved for central
    differences at 1e-6; train-mode BN inside blocks is checked by test_block_gradcheck."""
    gradcheck_numpy(mini_resnet_case(base_channels=1, train=False))


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_mini_resnet_parity_eval_mode(block):
    check_parity(mini_resnet_case(block, train=False), "float64")


@pytest.fixture(scope="module")
def torchvision_resnet18():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).double().eval()
    # Random init leaves running stats at (0, 1); move them so eval mode is a real test.
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1, generator=generator)
            module.running_var.uniform_(0.5, 1.5, generator=generator)
    return model


def test_torchvision_resnet18_loads_and_matches(torchvision_resnet18):
    state = {k: v.numpy() for k, v in torchvision_resnet18.state_dict().items()}

    def torchvision_reference(_, inputs, cotangents, dtype):
        return run_torch(torchvision_resnet18, inputs, ("x",), cotangents)

    case = Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.resnet18(num_classes=10, dtype=dtype, rng=rng).eval(),
        inputs=lambda dtype, rng: {"x": rng.standard_normal((2, 3, 32, 32)).astype(dtype)},
        references={"torchvision.models.resnet18": torchvision_reference},
        # The shared file holds torchvision's own state dict, unchanged.
        weights=lambda name, shape, dtype, rng: state[name],
        tf_layouts={"x": NCHW_TO_NHWC},
        special_opt_out=("cost: ResNet-18 on 32x32 images takes seconds per pass in three trees and torchvision; its "
                         "blocks, pool and fc get the special-values pass in test_block_parity_train_mode and "
                         "test_mini_resnet_parity, its 7x7 stem (Conv2d, BatchNorm2d, MaxPool2d) in their own tests"),
    )
    check_parity(case, "float64")


def test_resnet18_canonical_names_are_torchvision_names():
    expected = {k: tuple(v.shape) for k, v in torchvision.models.resnet18(weights=None).state_dict().items()}
    for tree in ("numpy", "torch", "tf"):
        model = get_module(tree, MODULE).resnet18(rng=np.random.default_rng(0))
        assert {k: v.shape for k, v in model.canonical_state_dict().items()} == expected, tree


def test_resnet50_canonical_names_are_torchvision_names():
    expected = {k: tuple(v.shape) for k, v in torchvision.models.resnet50(weights=None).state_dict().items()}
    model = get_module("numpy", MODULE).resnet50(rng=np.random.default_rng(0))
    assert {k: v.shape for k, v in model.canonical_state_dict().items()} == expected


@pytest.mark.parametrize("tree", ["numpy", "torch", "tf"])
def test_resnet_takes_its_config(tree):
    """Block names and sizes are checked by ResNetConfig (parity_tests/test_configs.py); every tree
    has a block class for each of its names, and takes nothing but the config."""
    resnet = get_module(tree, MODULE)
    assert tuple(resnet.BLOCKS) == RESNET_BLOCKS
    with pytest.raises(TypeError, match="ResNet: config must be an ml100.configs.ResNetConfig, got str 'basic'"):
        resnet.ResNet("basic", [2, 2, 2, 2])
    assert resnet.resnet18(num_classes=7).config == ResNetConfig("basic", (2, 2, 2, 2), num_classes=7)
