"""Model configs (``ml100.configs``): checked once, round-tripped through JSON, turned into command-line
options and back, and the same architecture in every tree: one config, one canonical state dict."""
import dataclasses
import inspect
import json

import numpy as np
import pytest
import torchvision

from ml100.backends import get_module
from ml100.cli_args import OneLineErrorParser
from ml100.configs import (CNNConfig, ConfigError, MobileNetConfig, ResNetConfig, add_config_arguments, config_from_args,
                           field_kinds)

TREES = ("numpy", "torch", "tf")
CONFIG_CLASSES = (CNNConfig, ResNetConfig, MobileNetConfig)

#: A config with every field away from its default, per class.
UNUSUAL = {
    CNNConfig: CNNConfig(in_channels=3, num_classes=4, channels=(5, 6), hidden=7, image_size=12, batch_norm=True),
    ResNetConfig: ResNetConfig("bottleneck", (1, 2, 1, 1), num_classes=3, in_channels=2, base_channels=4, small_input=True),
    MobileNetConfig: MobileNetConfig(num_classes=3, in_channels=2, stem_channels=5, channels=(6, 7, 9), strides=(2, 1, 2),
                                     se_reduction=None),
}


# ---- the dataclasses ---------------------------------------------------------------------------

@pytest.mark.parametrize("config", UNUSUAL.values(), ids=lambda c: type(c).__name__)
def test_to_dict_is_json_and_from_dict_rebuilds_the_config(config):
    data = config.to_dict()
    assert list(data) == [f.name for f in dataclasses.fields(config)]
    again = type(config).from_dict(json.loads(json.dumps(data)))
    assert again == config and hash(again) == hash(config)
    assert all(isinstance(getattr(again, f.name), tuple) for f in dataclasses.fields(config) if isinstance(data[f.name], list))


def test_lists_become_tuples_numpy_ints_python_ints_and_configs_are_frozen():
    config = MobileNetConfig(channels=[4, np.int64(6)], strides=[1, 2])
    assert config.channels == (4, 6) and type(config.channels[1]) is int
    assert config == MobileNetConfig(channels=(4, 6), strides=(1, 2))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.channels = (1, 2)
    assert dataclasses.replace(config, num_classes=3).num_classes == 3


@pytest.mark.parametrize("config_class, fields, field, message", [
    (CNNConfig, {"hidden": 0}, "hidden", "CNNConfig: hidden must be an int >= 1, got 0"),
    (CNNConfig, {"hidden": True}, "hidden", "CNNConfig: hidden must be an int >= 1, got True"),
    (CNNConfig, {"hidden": 64.0}, "hidden", "CNNConfig: hidden must be an int >= 1, got 64.0"),
    (CNNConfig, {"channels": (16, 0)}, "channels", "CNNConfig: channels must hold ints >= 1, got (16, 0)"),
    (CNNConfig, {"channels": (16, 32, 64)}, "channels", "CNNConfig: channels must have 2 entries, got (16, 32, 64)"),
    (CNNConfig, {"channels": 16}, "channels", "CNNConfig: channels must be a tuple of ints >= 1, got 16"),
    (CNNConfig, {"channels": "16 32"}, "channels", "CNNConfig: channels must be a tuple of ints >= 1, got '16 32'"),
    (CNNConfig, {"image_size": 6}, "image_size", "CNNConfig: image_size must be divisible by 4 (two 2x2 poolings), got 6"),
    (CNNConfig, {"batch_norm": 1}, "batch_norm", "CNNConfig: batch_norm must be True or False, got 1"),
    (CNNConfig, {"in_channels": None}, "in_channels", "CNNConfig: in_channels must not be None, got None"),
    (ResNetConfig, {"block": "wide", "layers": (2, 2, 2, 2)}, "block",
     "ResNetConfig: block must be one of: basic, bottleneck, got 'wide'"),
    (ResNetConfig, {"block": "basic", "layers": (2, 2, 2)}, "layers", "ResNetConfig: layers must have 4 entries, got (2, 2, 2)"),
    # torchvision's _make_layer builds one block even for 0: refused rather than silently 1.
    (ResNetConfig, {"block": "basic", "layers": (2, 0, 2, 2)}, "layers", "ResNetConfig: layers must hold ints >= 1, got (2, 0, 2, 2)"),
    (ResNetConfig, {"block": "basic", "layers": (2, 2, 2, 2), "base_channels": -64}, "base_channels",
     "ResNetConfig: base_channels must be an int >= 1, got -64"),
    (MobileNetConfig, {"channels": (8, 16), "strides": (1,)}, "strides",
     "MobileNetConfig: channels and strides must have equal lengths (one block each), got (8, 16) and (1,)"),
    (MobileNetConfig, {"channels": (), "strides": ()}, "channels", "MobileNetConfig: channels must not be empty, got ()"),
    (MobileNetConfig, {"se_reduction": 0}, "se_reduction", "MobileNetConfig: se_reduction must be an int >= 1, got 0"),
])
def test_bad_fields_are_clear_errors(config_class, fields, field, message):
    with pytest.raises(ConfigError) as caught:
        config_class(**fields)
    assert str(caught.value) == message and caught.value.field == field
    assert isinstance(caught.value, ValueError)


def test_from_dict_refuses_unknown_and_missing_fields():
    with pytest.raises(ConfigError, match="CNNConfig: unknown field\\(s\\) 'hiden'; the fields are: in_channels, num_classes, "
                                          "channels, hidden, image_size, batch_norm"):
        CNNConfig.from_dict({"hiden": 64})
    with pytest.raises(ConfigError, match="ResNetConfig: missing required field\\(s\\) block, layers"):
        ResNetConfig.from_dict({"num_classes": 10})
    with pytest.raises(TypeError, match="CNNConfig.from_dict takes a mapping"):
        CNNConfig.from_dict([("hidden", 64)])
    assert CNNConfig.from_dict({}) == CNNConfig()


def test_resnet_presets_are_torchvisions():
    assert ResNetConfig.resnet18() == ResNetConfig("basic", (2, 2, 2, 2))
    assert ResNetConfig.resnet50(num_classes=10) == ResNetConfig("bottleneck", (3, 4, 6, 3), num_classes=10)


def test_field_names_are_the_references():
    """ResNet's first fields are torchvision's ResNet(block, layers, num_classes); MobileNet's classes
    are MobileNetV2's num_classes. Every field has help text (its --help line)."""
    torchvision_args = list(inspect.signature(torchvision.models.resnet.ResNet).parameters)
    assert [f.name for f in dataclasses.fields(ResNetConfig)][:3] == torchvision_args[:3] == ["block", "layers", "num_classes"]
    assert "num_classes" in inspect.signature(torchvision.models.MobileNetV2).parameters
    for config_class in CONFIG_CLASSES:
        assert all(f.metadata["help"] for f in dataclasses.fields(config_class)), config_class.__name__
        field_kinds(config_class)  # every annotation is a kind the checks and the flags know


# ---- command-line flags ------------------------------------------------------------------------

def argv_for(config) -> list[str]:
    """The command line that spells out every field of ``config``."""
    argv = []
    for name, value in config.to_dict().items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, list):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, "none" if value is None else str(value)]
    return argv


def parse(config_class, argv, **fixed):
    parser = OneLineErrorParser()
    add_config_arguments(parser, config_class, skip=tuple(fixed))
    return config_from_args(parser, config_class, parser.parse_args(argv), **fixed)


@pytest.mark.parametrize("config", UNUSUAL.values(), ids=lambda c: type(c).__name__)
def test_flags_parse_back_to_the_config(config):
    assert parse(type(config), argv_for(config)) == config


def test_flags_default_to_the_fields_defaults_and_skipped_fields_are_fixed():
    assert parse(CNNConfig, []) == CNNConfig()
    assert parse(MobileNetConfig, ["--channels", "4", "8", "12", "--strides", "1", "2", "2"]).channels == (4, 8, 12)
    fixed = {"in_channels": 1, "num_classes": 10, "image_size": 8}
    assert parse(CNNConfig, ["--batch-norm"], **fixed) == CNNConfig(batch_norm=True)
    parser = OneLineErrorParser()
    add_config_arguments(parser, CNNConfig, skip=tuple(fixed))
    assert "--image-size" not in parser.format_help() and "--no-batch-norm" in parser.format_help()
    with pytest.raises(ValueError, match="skip names no field of CNNConfig: imagesize"):
        add_config_arguments(OneLineErrorParser(), CNNConfig, skip=("imagesize",))


def test_help_shows_the_programs_own_defaults_as_typed():
    # An example's set_defaults (its smaller model) is what --help must show, in command-line form.
    parser = OneLineErrorParser()
    add_config_arguments(parser, CNNConfig)
    parser.set_defaults(hidden=7, channels=(3, 5), batch_norm=True)
    text = " ".join(parser.format_help().split())
    assert "(default: 7)" in text and "(default: 3 5)" in text and "(default: --batch-norm)" in text
    assert f"(default: {CNNConfig().hidden})" not in text


@pytest.mark.parametrize("config_class, argv, message", [
    (CNNConfig, ["--hidden", "0"], "argument --hidden: expected an integer >= 1, got '0'"),
    (CNNConfig, ["--hidden", "wide"], "argument --hidden: expected an integer, got 'wide'"),
    (CNNConfig, ["--channels", "16"], "argument --channels: expected 2 arguments"),
    (CNNConfig, ["--channels", "16", "-2"], "argument --channels: expected an integer >= 1, got '-2'"),
    (CNNConfig, ["--image-size", "6"], "argument --image-size: CNNConfig: image_size must be divisible by 4 (two 2x2 poolings), got 6"),
    (ResNetConfig, ["--layers", "2", "2", "2", "2"], "the following arguments are required: --block"),
    (ResNetConfig, ["--block", "wide", "--layers", "2", "2", "2", "2"], "argument --block: invalid choice: 'wide'"),
    (MobileNetConfig, ["--strides", "1"], "argument --strides: MobileNetConfig: channels and strides must have equal lengths"),
    (MobileNetConfig, ["--se-reduction", "0"], "argument --se-reduction: expected an integer >= 1 or none, got '0'"),
])
def test_bad_flags_are_one_line_and_exit_2(config_class, argv, message, capsys):
    with pytest.raises(SystemExit) as caught:
        parse(config_class, argv)
    err = capsys.readouterr().err
    assert caught.value.code == 2 and message in err and err.count("\n") == 1, err


# ---- one config, the same model in every tree -------------------------------------------------

MODELS = {
    "CNN": ("foundations.cnn", "CNN", UNUSUAL[CNNConfig]),
    "ResNet basic": ("foundations.resnet", "ResNet", ResNetConfig("basic", (1, 2, 1, 1), num_classes=3, base_channels=4)),
    "ResNet bottleneck": ("foundations.resnet", "ResNet", UNUSUAL[ResNetConfig]),
    "MobileNet": ("foundations.mobilenet", "MobileNet", MobileNetConfig(channels=(4, 6, 8), strides=(1, 2, 2), se_reduction=2)),
    "MobileNet without SE": ("foundations.mobilenet", "MobileNet", UNUSUAL[MobileNetConfig]),
}


@pytest.mark.parametrize("name", MODELS)
def test_one_config_builds_one_canonical_state_dict_in_every_tree(name):
    module, class_name, config = MODELS[name]
    layouts = {}
    for tree in TREES:
        model = getattr(get_module(tree, module), class_name)(config, dtype="float64", rng=np.random.default_rng(0))
        assert model.config is config
        layouts[tree] = {key: (value.shape, value.dtype) for key, value in model.canonical_state_dict().items()}
    # Names, shapes and dtypes; not the order (torch lists each module's buffers after its
    # parameters, the NumPy tree all parameters first), which a safetensors file does not keep.
    assert layouts["numpy"] == layouts["torch"] == layouts["tf"]


@pytest.mark.parametrize("name", ["CNN", "ResNet basic", "MobileNet"])
@pytest.mark.parametrize("tree", TREES)
def test_a_model_takes_nothing_but_its_config(name, tree):
    module, class_name, config = MODELS[name]
    model_class = getattr(get_module(tree, module), class_name)
    config_name = type(config).__name__
    with pytest.raises(TypeError, match=f"{class_name}: config must be an ml100.configs.{config_name}, got dict .*"
                                        f"build one with {config_name}.from_dict"):
        model_class(config.to_dict())
    other = CNNConfig() if config_name != "CNNConfig" else MobileNetConfig()
    with pytest.raises(TypeError, match=f"got {type(other).__name__}"):
        model_class(other)
