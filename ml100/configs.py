"""Model configs: one frozen dataclass per composite model, shared by the three trees and the examples.

A composite model takes its architecture as one config object, as nanoGPT's ``GPT(config)`` and
Hugging Face's ``GPT2Config`` do: ``ResNet(config, dtype=..., rng=...)`` in every tree, with the
precision and the random generator beside it (they say how to build, not what). Field names are
the reference's where one exists — torchvision's ``ResNet(block, layers, num_classes)`` — so a
reader who knows the reference reads the config at a glance.

A config holds plain Python values only (ints, bools, strings, tuples), which makes it

* **checked once**, here, for all three trees: ``__post_init__`` refuses a non-positive size, an
  unknown block name, a tuple of the wrong length, a bool where an int belongs, and the rules
  across fields (an image size two poolings cannot halve), each with one :class:`ConfigError`
  that names the config, the field, what was expected and what arrived;
* **hashable and comparable**: frozen, lists given for tuple fields stored as tuples;
* **a checkpoint's metadata**: :meth:`ModelConfig.to_dict` is JSON-ready and
  :meth:`ModelConfig.from_dict` rebuilds the config, refusing unknown fields;
* **the command line**: :func:`add_config_arguments` adds one option per field (``--base-channels``;
  tuples take several values, bools are ``--flag/--no-flag``, help from the field's metadata) and
  :func:`config_from_args` builds the config back, a bad value being a one-line ``parser.error``.

Variants are ``dataclasses.replace(config, num_classes=5)``.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any, NamedTuple

from .cli_args import positive_int

#: The ResNet block names; each tree's ``resnet.BLOCKS`` maps them to its block classes.
RESNET_BLOCKS = ("basic", "bottleneck")


class ConfigError(ValueError):
    """A config field with a bad value; ``field`` names it, so the command line can name its flag."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def option(default=dataclasses.MISSING, *, help: str, length: int | None = None, choices: tuple[str, ...] | None = None):
    """A config field with its help text (also the flag's ``--help`` line).

    ``length`` fixes the number of entries of a tuple field; ``choices`` lists a string field's values.
    A field without ``default`` is required (torchvision's ``block`` and ``layers`` are).
    """
    return dataclasses.field(default=default, metadata={"help": help, "length": length, "choices": choices})


class FieldKind(NamedTuple):
    """What a field holds, read from its annotation: ``int``, ``bool`` or ``str``; a tuple of them; or ``None`` too."""

    base: type
    sequence: bool
    optional: bool


def field_kind(hint) -> FieldKind:
    """The :class:`FieldKind` of an annotation: ``int``, ``bool``, ``str``, ``tuple[int, ...]``, each ``| None``."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        # `X | None`: the single other member is the kind.
        members = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        optional, hint = True, members[0] if len(members) == 1 else hint
    if typing.get_origin(hint) is tuple and typing.get_args(hint)[1:] == (Ellipsis,):
        return FieldKind(typing.get_args(hint)[0], True, optional)
    if hint in (int, bool, str, float):
        return FieldKind(hint, False, optional)
    raise TypeError(f"config fields are int, float, bool, str or tuple[int, ...] (each may be `| None`), got {hint!r}")


def field_kinds(config_class: type) -> dict[str, FieldKind]:
    """Field name -> :class:`FieldKind` for every field of a config class, in definition order."""
    hints = typing.get_type_hints(config_class)
    return {f.name: field_kind(hints[f.name]) for f in dataclasses.fields(config_class)}


#: How each kind of value is described in errors: one value, several.
DESCRIPTIONS = {int: ("an int >= 1", "ints >= 1"), bool: ("True or False", "bools"), str: ("a string", "strings"),
                float: ("a finite number >= 0", "finite numbers >= 0")}


class ModelConfig:
    """Base of the model configs: field checks after construction, the dict round trip.

    Every integer (and every entry of an integer tuple) is a size, a count or a stride: an int >= 1;
    every float is a rate or an epsilon: finite and >= 0.
    Subclasses add the rules across fields in :meth:`check_relations`.
    """

    def __post_init__(self):
        kinds = field_kinds(type(self))
        for f in dataclasses.fields(self):
            # Frozen: the checked value (a list made a tuple, a NumPy int a Python int) is set past __setattr__.
            object.__setattr__(self, f.name, self._checked(f, kinds[f.name], getattr(self, f.name)))
        self.check_relations()

    def check_relations(self) -> None:
        """Rules that involve several fields; none by default."""

    def error(self, field: str, expected: str, value) -> ConfigError:
        """``<Config>: <field> must <expected>, got <value>``, tagged with the field."""
        return ConfigError(f"{type(self).__name__}: {field} must {expected}, got {value!r}", field)

    def _checked(self, f: dataclasses.Field, kind: FieldKind, value):
        if value is None:
            if kind.optional:
                return None
            raise self.error(f.name, "not be None", value)
        if not kind.sequence:
            return self._checked_value(f, kind.base, value, value)
        if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
            raise self.error(f.name, f"be a tuple of {DESCRIPTIONS[kind.base][1]}", value)
        length = f.metadata["length"]
        if length is not None and len(value) != length:
            raise self.error(f.name, f"have {length} entries", value)
        if not value:
            raise self.error(f.name, "not be empty", value)
        return tuple(self._checked_value(f, kind.base, item, value) for item in value)

    def _checked_value(self, f: dataclasses.Field, base: type, item, value):
        """One value ``item`` of the field (the field itself, or an entry of its tuple ``value``,
        which the error shows whole)."""
        one, several = DESCRIPTIONS[base]
        expected = f"be {one}" if item is value else f"hold {several}"
        choices = f.metadata["choices"]
        if base is bool and not isinstance(item, bool):
            raise self.error(f.name, expected, value)
        if base is str and not (isinstance(item, str) and (choices is None or item in choices)):
            raise self.error(f.name, f"be one of: {', '.join(choices)}" if choices else expected, value)
        if base is int:
            # bool is an Integral too, but True as a channel count is a bug, not a 1.
            if isinstance(item, bool) or not isinstance(item, Integral) or item < 1:
                raise self.error(f.name, expected, value)
            return int(item)
        if base is float:
            # A probability or an epsilon: finite and >= 0 (a rule across fields may narrow it); True is no rate.
            if isinstance(item, bool) or not isinstance(item, Real) or not (math.isfinite(item) and item >= 0):
                raise self.error(f.name, expected, value)
            return float(item)
        return item

    def to_dict(self) -> dict[str, Any]:
        """Field name -> value, tuples as lists: ``json.dumps`` takes it as it is (a checkpoint's metadata)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """The config a :meth:`to_dict` gave; missing fields take their defaults, unknown ones are an error."""
        if not isinstance(data, Mapping):
            raise TypeError(f"{cls.__name__}.from_dict takes a mapping of field names to values, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [key for key in data if key not in names]
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown field(s) {', '.join(map(repr, unknown))}; "
                              f"the fields are: {', '.join(names)}", unknown[0])
        missing = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.name not in data]
        if missing:
            raise ConfigError(f"{cls.__name__}: missing required field(s) {', '.join(missing)}", missing[0])
        return cls(**data)


def check_config(owner: str, config, expected: type) -> None:
    """A model given something other than its config class gets a ``TypeError`` saying how to build one."""
    if isinstance(config, expected):
        return
    hint = f"{expected.__name__}.from_dict(...)" if isinstance(config, Mapping) else f"{expected.__name__}(...)"
    raise TypeError(f"{owner}: config must be an ml100.configs.{expected.__name__}, got {type(config).__name__} "
                    f"{config!r}; build one with {hint}")


@dataclasses.dataclass(frozen=True)
class CNNConfig(ModelConfig):
    """The day-17 LeNet-style CNN (no reference config: the names are the constructor arguments of
    ``torch.nn``'s layers it is built from)."""

    in_channels: int = option(1, help="channels of the input images")
    num_classes: int = option(10, help="classes (outputs of fc2)")
    channels: tuple[int, ...] = option((16, 32), length=2, help="output channels of the two conv blocks")
    hidden: int = option(64, help="width of the hidden dense layer fc1")
    image_size: int = option(8, help="height and width of the input images; a multiple of 4 (two 2x2 poolings)")
    batch_norm: bool = option(False, help="batch norm after each convolution (which then has no bias)")

    def check_relations(self) -> None:
        if self.image_size % 4:
            raise self.error("image_size", "be divisible by 4 (two 2x2 poolings)", self.image_size)


@dataclasses.dataclass(frozen=True)
class ResNetConfig(ModelConfig):
    """A ResNet (day 18). ``block``, ``layers`` and ``num_classes`` are torchvision's
    ``ResNet(block, layers, num_classes)``, with the block named rather than passed as a class;
    torchvision fixes the rest (3 input channels, width 64, the 7x7/2 stem)."""

    block: str = option(choices=RESNET_BLOCKS, help="residual block: basic (ResNet-18/34) or bottleneck (ResNet-50+)")
    layers: tuple[int, ...] = option(length=4, help="blocks in each of the four stages")
    num_classes: int = option(1000, help="classes (outputs of fc)")
    in_channels: int = option(3, help="channels of the input images")
    base_channels: int = option(64, help="width of the stem and the first stage; stage k has base_channels * 2**k")
    small_input: bool = option(False, help="a 3x3 stride-1 stem without max pool (for 8x8 digits) instead of 7x7/2 and a max pool")

    @classmethod
    def resnet18(cls, **changes) -> ResNetConfig:
        """torchvision's ResNet-18: basic blocks, (2, 2, 2, 2); ``changes`` sets other fields."""
        return cls(block="basic", layers=(2, 2, 2, 2), **changes)

    @classmethod
    def resnet50(cls, **changes) -> ResNetConfig:
        """torchvision's ResNet-50: bottleneck blocks, (3, 4, 6, 3); ``changes`` sets other fields."""
        return cls(block="bottleneck", layers=(3, 4, 6, 3), **changes)


@dataclasses.dataclass(frozen=True)
class MobileNetConfig(ModelConfig):
    """The small MobileNet v1-style classifier (day 19). ``num_classes`` is torchvision's; its
    ``MobileNetV2(inverted_residual_setting=...)`` rows ``(t, c, n, s)`` carry what ``channels`` (c)
    and ``strides`` (s) give here, one separable block per entry."""

    num_classes: int = option(10, help="classes (outputs of fc)")
    in_channels: int = option(1, help="channels of the input images")
    stem_channels: int = option(8, help="output channels of the 3x3 stem convolution")
    channels: tuple[int, ...] = option((16, 32), help="output channels of each depthwise-separable block")
    strides: tuple[int, ...] = option((1, 2), help="stride of each block's depthwise convolution, one per entry of channels")
    se_reduction: int | None = option(4, help="squeeze-and-excitation on the last width with C // se_reduction "
                                              "squeeze channels (at least 1); none leaves it out")

    def check_relations(self) -> None:
        if len(self.channels) != len(self.strides):
            raise ConfigError(f"MobileNetConfig: channels and strides must have equal lengths (one block each), "
                              f"got {self.channels} and {self.strides}", "strides")


@dataclasses.dataclass(frozen=True)
class CharLMConfig(ModelConfig):
    """The day-27 character-level language model: Embedding -> LSTM -> Linear. No reference config:
    the names are the constructor arguments of ``torch.nn.Embedding`` and ``torch.nn.LSTM``."""

    vocab_size: int = option(help="characters in the vocabulary (rows of the embedding, outputs of the head)")
    embedding_dim: int = option(32, help="width of each character's embedding (the LSTM's input_size)")
    hidden_size: int = option(128, help="width of the LSTM's hidden and cell states")
    num_layers: int = option(1, help="stacked LSTM layers")


# ---- command line -----------------------------------------------------------------------------

def flag_name(field: str) -> str:
    """``base_channels`` -> ``--base-channels``."""
    return "--" + field.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type, skip: tuple[str, ...] = ()) -> None:
    """One option per field of ``config_class``, in a group of its own, except the fields in ``skip``
    (those the program fixes itself, such as the digits' image size).

    Ints take one value, tuples as many as the field's ``length`` (any number when it has none),
    ``int | None`` also the word ``none``; bools are ``--flag/--no-flag``; a field without default
    is a required option. Defaults and help come from the field. Each value is checked as it is
    parsed (an int >= 1); the config judges the rest (lengths, rules across fields) in
    :func:`config_from_args`.
    """
    kinds = field_kinds(config_class)
    unknown = [name for name in skip if name not in kinds]
    if unknown:
        raise ValueError(f"skip names no field of {config_class.__name__}: {', '.join(unknown)}")
    group = parser.add_argument_group(f"model ({config_class.__name__})")
    for f in dataclasses.fields(config_class):
        if f.name in skip:
            continue
        kind, help_text = kinds[f.name], f.metadata["help"]
        options: dict[str, Any] = {"dest": f.name}
        if f.default is dataclasses.MISSING:
            options["required"] = True
        else:
            options["default"] = f.default
        default = "" if f.default is dataclasses.MISSING else " (default: %(shown_default)s)"
        if kind.base is bool:
            action = group.add_argument(flag_name(f.name), action=argparse.BooleanOptionalAction,
                                        help=help_text + default, **options)
        else:
            if kind.sequence:
                options["nargs"] = f.metadata["length"] or "+"
            if f.metadata["choices"]:
                options["choices"] = f.metadata["choices"]
            elif kind.base is int:
                options["metavar"] = "N|none" if kind.optional else "N"
            action = group.add_argument(flag_name(f.name), type=_parser_of(kind), help=help_text + default, **options)
        action.shown_default = _ShownDefault(f.name, action)


class _ShownDefault:
    """The ``%(shown_default)s`` of an option's help: its default as typed on the command line, read
    when the help is printed, so a program's ``parser.set_defaults`` shows and not the field's."""

    def __init__(self, field: str, action: argparse.Action):
        self.field, self.action = field, action

    def __str__(self) -> str:
        return _show(self.field, self.action.default)


def config_from_args(parser: argparse.ArgumentParser, config_class: type, args: argparse.Namespace, **fixed):
    """The config from parsed ``args`` (fields :func:`add_config_arguments` added) and ``fixed``
    (the fields it skipped); a value the config refuses is ``parser.error`` naming the flag."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_class) if f.name not in fixed}
    try:
        return config_class(**values, **fixed)
    except ConfigError as error:
        where = "" if error.field in fixed else f"argument {flag_name(error.field)}: "
        parser.error(f"{where}{error}")


def _parser_of(kind: FieldKind):
    """The argparse ``type=`` for one value of a field. Ints are checked as they are parsed, by the
    examples' own ``positive_int`` (the config's rule for every int), so a bad one reads as any other
    option's: ``argument --hidden: expected an integer >= 1, got '0'``."""
    def parse(text: str):
        if kind.optional and text.lower() == "none":
            return None
        if kind.base is float:
            # Parsed here; the config judges the value (finite, >= 0, its own range) in config_from_args.
            try:
                return float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if kind.base is not int:
            return text
        try:
            return positive_int(text)
        except argparse.ArgumentTypeError:
            if not kind.optional:
                raise
            raise argparse.ArgumentTypeError(f"expected an integer >= 1 or none, got {text!r}") from None

    return parse


def _show(field: str, value) -> str:
    """A default as it is typed on the command line: tuples space-separated, ``None`` as ``none``,
    a bool as its flag."""
    if isinstance(value, bool):
        return flag_name(field) if value else "--no-" + flag_name(field)[2:]
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    return "none" if value is None else str(value)


#: Luong's score functions the day-29 model may use (``LuongAttention.score_mode``).
SEQ2SEQ_SCORE_MODES = ("dot", "general")


@dataclasses.dataclass(frozen=True)
class Seq2SeqConfig(ModelConfig):
    """The day-28 GRU encoder-decoder and its day-29 attention variant (no reference config: the
    names are those of the ``torch.nn`` layers it is built from)."""

    vocab_size: int = option(13, help="tokens in the shared source/target vocabulary (num_embeddings)")
    embedding_dim: int = option(32, help="width of the encoder's and the decoder's embeddings")
    hidden_size: int = option(64, help="GRU state width of the encoder and the decoder")
    num_layers: int = option(1, help="stacked GRU layers in the encoder and in the decoder")
    score_mode: str = option("general", choices=SEQ2SEQ_SCORE_MODES,
                             help="Luong score of the attention variant: dot (q.k) or general (q.Wk)")


@dataclasses.dataclass(frozen=True)
class VAEConfig(ModelConfig):
    """The day-32 convolutional VAE for the 8x8 digits (no reference config: the names are the
    constructor arguments of the ``torch.nn`` layers it is built from)."""

    in_channels: int = option(1, help="channels of the input images")
    channels: tuple[int, ...] = option((8, 16), length=2, help="output channels of the two stride-2 encoder convolutions")
    latent_dim: int = option(4, help="width of the latent code z (outputs of fc_mu and fc_logvar)")
    image_size: int = option(8, help="height and width of the images; a multiple of 4 (two stride-2 convolutions)")

    def check_relations(self) -> None:
        if self.image_size % 4:
            raise self.error("image_size", "be divisible by 4 (two stride-2 convolutions)", self.image_size)


@dataclasses.dataclass(frozen=True)
class CVAEConfig(VAEConfig):
    """The day-36 conditional VAE: day 32's VAE whose encoder heads and decoder also read the class
    as a one-hot vector (no reference config: the names are those of the ``torch.nn`` layers)."""

    num_classes: int = option(10, help="number of classes the labels index (width of the one-hot condition)")


@dataclasses.dataclass(frozen=True)
class GANConfig(ModelConfig):
    """The day-33 MLP GAN for the 8x8 digits (no reference config: the names are those of the
    ``torch.nn`` layers it is built from). The discriminator uses ``hidden_sizes`` in reverse."""

    latent_dim: int = option(16, help="width of the noise z the generator maps to an image")
    hidden_sizes: tuple[int, ...] = option((64, 128), help="widths of the generator's hidden layers (the discriminator's, reversed)")
    image_size: int = option(8, help="height and width of the images")
    in_channels: int = option(1, help="channels of the images")


@dataclasses.dataclass(frozen=True)
class DCGANConfig(ModelConfig):
    """The day-34 DCGAN (Radford et al. 2016) for the 8x8 digits: two stride-2 (transposed)
    convolutions each way (no reference config: the names are those of the ``torch.nn`` layers)."""

    latent_dim: int = option(16, help="width of the noise z the generator maps to an image")
    channels: tuple[int, ...] = option((32, 16), length=2,
                                       help="generator channels at image_size/4 and image_size/2 (the discriminator's, reversed)")
    image_size: int = option(8, help="height and width of the images; a multiple of 4 (two stride-2 convolutions)")
    in_channels: int = option(1, help="channels of the images")

    def check_relations(self) -> None:
        if self.image_size % 4:
            raise self.error("image_size", "be divisible by 4 (two stride-2 convolutions)", self.image_size)


@dataclasses.dataclass(frozen=True)
class AutoencoderConfig(ModelConfig):
    """The day-31 convolutional autoencoder for the 8x8 digits: the day-32 VAE's encoder and
    decoder stacks with one linear code head (no reference config: the names are the constructor
    arguments of the ``torch.nn`` layers it is built from)."""

    in_channels: int = option(1, help="channels of the input images")
    channels: tuple[int, ...] = option((8, 16), length=2, help="output channels of the two stride-2 encoder convolutions")
    latent_dim: int = option(8, help="width of the code (outputs of fc_encode)")
    image_size: int = option(8, help="height and width of the images; a multiple of 4 (two stride-2 convolutions)")

    def check_relations(self) -> None:
        if self.image_size % 4:
            raise self.error("image_size", "be divisible by 4 (two stride-2 convolutions)", self.image_size)


@dataclasses.dataclass(frozen=True)
class UNetConfig(ModelConfig):
    """The day-38 U-Net noise predictor for the 8x8 digits. The names are diffusers' ``UNet2DModel``
    ones where they mean the same (``in_channels``, ``norm_num_groups`` is ``groups`` here, the widths
    ``block_out_channels`` are ``channels``); ``num_classes`` is its ``num_class_embeds``, less the null class."""

    in_channels: int = option(1, help="channels of the images (and of the predicted noise)")
    image_size: int = option(8, help="height and width of the images; even (one stride-2 downsampling)")
    channels: tuple[int, ...] = option((16, 32), length=2, help="widths at full and at half resolution")
    time_embed_dim: int = option(64, help="width of the time (and class) embedding fed to every residual block")
    num_classes: int | None = option(10, help="classes for conditioning (the embedding has one more row, the null "
                                              "class of classifier-free guidance); none: unconditional")
    groups: int = option(8, help="groups of every GroupNorm; must divide both widths")

    def check_relations(self) -> None:
        if self.image_size % 2:
            raise self.error("image_size", "be even (one stride-2 downsampling)", self.image_size)
        if any(width % self.groups for width in self.channels):
            raise self.error("groups", f"divide both widths {self.channels}", self.groups)
        # With one channel per group, the GroupNorm after the added embedding subtracts it again.
        if any(width < 2 * self.groups for width in self.channels):
            raise self.error("groups", f"leave at least 2 channels per group in both widths {self.channels} (with one, "
                             "GroupNorm removes the time and class embedding)", self.groups)


@dataclasses.dataclass(frozen=True)
class CGANConfig(GANConfig):
    """The day-36 conditional GAN: day 33's MLP players with class embeddings, the generator's
    concatenated to z, the discriminator's a projection onto its last hidden features (no reference
    config: the names are those of the ``torch.nn`` layers)."""

    num_classes: int = option(10, help="number of classes the labels index (rows of both label embeddings)")


@dataclasses.dataclass(frozen=True)
class WGANConfig(GANConfig):
    """The day-35 WGAN: day 33's MLP generator and a critic of spectral-normalized dense layers
    (``hidden_sizes`` reversed, like the discriminator's), so the generator takes this config too
    (no reference config: the names are those of the ``torch.nn`` layers and ``spectral_norm``)."""

    n_power_iterations: int = option(1, help="power iterations of every critic layer's spectral norm per training forward")


#: The GPT-2 nonlinearities the day-49 model implements, by ``GPT2Config.activation_function`` name.
GPT_ACTIVATIONS = ("gelu_new",)


@dataclasses.dataclass(frozen=True)
class GPTConfig(ModelConfig):
    """The day-49 GPT: Hugging Face ``GPT2Config``'s field names and defaults (GPT-2 small).

    ``n_inner`` none means ``4 * n_embd``, as in Hugging Face. Dropout sites and their masks are
    named by the Hugging Face module that drops (:meth:`dropout_shapes`)."""

    vocab_size: int = option(50257, help="tokens in the vocabulary (rows of wte, outputs of the tied lm_head)")
    n_positions: int = option(1024, help="longest sequence: rows of the learned position table wpe")
    n_embd: int = option(768, help="width of the residual stream (embeddings, attention, block outputs)")
    n_layer: int = option(12, help="transformer blocks")
    n_head: int = option(12, help="attention heads per block; must divide n_embd")
    n_inner: int | None = option(None, help="width of the MLP's hidden layer; none: 4 * n_embd")
    activation_function: str = option("gelu_new", choices=GPT_ACTIVATIONS,
                                      help="the MLP's nonlinearity: gelu_new (GELU, tanh approximation)")
    resid_pdrop: float = option(0.1, help="dropout probability on each attention and MLP output (before the residual add)")
    embd_pdrop: float = option(0.1, help="dropout probability on the summed token and position embeddings")
    attn_pdrop: float = option(0.1, help="dropout probability on the attention weights")
    layer_norm_epsilon: float = option(1e-5, help="epsilon of every LayerNorm")
    initializer_range: float = option(0.02, help="standard deviation of the normal initialization of every weight")

    def check_relations(self) -> None:
        if self.n_embd % self.n_head:
            raise self.error("n_head", f"divide n_embd = {self.n_embd}", self.n_head)
        for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
            if getattr(self, name) >= 1.0:
                raise self.error(name, "be < 1 (a probability of dropping; 1 would divide by zero)", getattr(self, name))
        if self.layer_norm_epsilon == 0.0:
            raise self.error("layer_norm_epsilon", "be > 0 (a constant row would divide 0 by 0)", self.layer_norm_epsilon)

    @property
    def inner_dim(self) -> int:
        """The MLP's hidden width: ``n_inner``, or ``4 * n_embd`` when it is none (Hugging Face's rule)."""
        return 4 * self.n_embd if self.n_inner is None else self.n_inner

    def dropout_shapes(self, batch: int, steps: int) -> dict[str, tuple[int, ...]]:
        """Each dropout site with a probability > 0 -> the shape of its keep-mask for ``(batch, steps)``
        input ids, keyed by the Hugging Face module that drops: ``transformer.drop`` and each block's
        ``attn.resid_dropout`` and ``mlp.dropout`` ``(B, T, n_embd)``, ``attn.attn_dropout`` ``(B, n_head, T, T)``."""
        shapes = {}
        if self.embd_pdrop:
            shapes["transformer.drop"] = (batch, steps, self.n_embd)
        for layer in range(self.n_layer):
            prefix = f"transformer.h.{layer}"
            if self.attn_pdrop:
                shapes[f"{prefix}.attn.attn_dropout"] = (batch, self.n_head, steps, steps)
            if self.resid_pdrop:
                shapes[f"{prefix}.attn.resid_dropout"] = (batch, steps, self.n_embd)
                shapes[f"{prefix}.mlp.dropout"] = (batch, steps, self.n_embd)
        return shapes

    def dropout_p(self, site: str) -> float:
        """The probability of the dropout site ``site`` (a key of :meth:`dropout_shapes`), by its last name."""
        probabilities = {"drop": self.embd_pdrop, "attn_dropout": self.attn_pdrop, "resid_dropout": self.resid_pdrop,
                         "dropout": self.resid_pdrop}
        return probabilities[site.rsplit(".", 1)[-1]]


@dataclasses.dataclass(frozen=True)
class YOLOConfig(ModelConfig):
    """The days 60-62 tiny YOLO: conv blocks (3x3 conv, batch norm, LeakyReLU 0.1, a 2x2 max pool after
    every block but the last) and a 1x1 head with ``A * (5 + num_classes)`` channels per grid cell.
    ``anchors`` is Darknet's cfg ``anchors`` line: flat ``w1, h1, w2, h2, ...`` in input pixels."""

    in_channels: int = option(3, help="channels of the input images")
    num_classes: int = option(3, help="object classes (circle, square, triangle in the generated scenes)")
    image_size: int = option(64, help="height and width of the input images; a multiple of the grid stride")
    channels: tuple[int, ...] = option((8, 16, 32, 32), help="output channels of each conv block; every block but the "
                                                             "last halves the resolution")
    anchors: tuple[int, ...] = option((12, 12, 22, 22), help="anchor sizes in pixels, flat w1 h1 w2 h2 ... (Darknet's order)")
    batch_norm: bool = option(True, help="batch norm after each block's convolution (which then has no bias)")

    def check_relations(self) -> None:
        if len(self.anchors) % 2:
            raise self.error("anchors", "hold (width, height) pairs, an even number of entries", self.anchors)
        if self.image_size % self.stride:
            raise self.error("image_size", f"be divisible by the grid stride {self.stride} "
                             f"({len(self.channels) - 1} 2x2 poolings)", self.image_size)

    @property
    def stride(self) -> int:
        """Pixels per grid cell: each block but the last halves the resolution."""
        return 2 ** (len(self.channels) - 1)

    @property
    def grid_size(self) -> int:
        """Cells per side, S."""
        return self.image_size // self.stride

    @property
    def num_anchors(self) -> int:
        return len(self.anchors) // 2

    def anchor_sizes(self) -> tuple[tuple[int, int], ...]:
        """The anchors as ``((w, h), ...)``."""
        return tuple(zip(self.anchors[0::2], self.anchors[1::2]))


@dataclasses.dataclass(frozen=True)
class TransformerConfig(ModelConfig):
    """The day-47 ``Seq2SeqTransformer``: token embeddings scaled by ``sqrt(d_model)`` plus day 43's
    sinusoidal table, day 47's ``Transformer`` (``nn.Transformer``'s argument names, batch first) and a
    Linear to the vocabulary. No dropout field: dropout masks are inputs, and the toy task trains
    without them."""

    vocab_size: int = option(13, help="tokens in the shared source/target vocabulary (rows of both embeddings)")
    d_model: int = option(32, help="width of the embeddings and of every layer's input and output")
    nhead: int = option(4, help="attention heads of every self- and cross-attention (divides d_model)")
    num_encoder_layers: int = option(2, help="encoder layers (TransformerEncoderLayer)")
    num_decoder_layers: int = option(2, help="decoder layers (TransformerDecoderLayer)")
    dim_feedforward: int = option(64, help="inner width of every feed-forward block")
    activation: str = option("relu", choices=("relu", "gelu"), help="the feed-forward nonlinearity")
    layer_norm_eps: float = option(1e-5, help="epsilon of every LayerNorm")
    norm_first: bool = option(True, help="pre-LN (LayerNorm before each block; on the toy task it learns in about half the "
                                         "epochs of the paper's post-LN, --no-norm-first)")
    max_len: int = option(64, help="rows of the sinusoidal table: the longest source or target sequence")

    def check_relations(self) -> None:
        if self.d_model % self.nhead:
            raise self.error("d_model", f"be divisible by nhead ({self.nhead})", self.d_model)
        if self.layer_norm_eps <= 0:
            raise self.error("layer_norm_eps", "be > 0", self.layer_norm_eps)


@dataclasses.dataclass(frozen=True)
class LlamaConfig(ModelConfig):
    """The day-69 Llama: Hugging Face ``LlamaConfig``'s field names and defaults (Llama-2-7B's shapes
    with its 2048 positions and eps 1e-6). ``num_key_value_heads`` none means ``num_attention_heads``
    (plain multi-head attention), as in Hugging Face; fewer heads make grouped-query attention."""

    vocab_size: int = option(32000, help="tokens in the vocabulary (rows of embed_tokens, outputs of lm_head)")
    hidden_size: int = option(4096, help="width of the residual stream")
    intermediate_size: int = option(11008, help="width of the SwiGLU MLP's gate and up projections")
    num_hidden_layers: int = option(32, help="decoder layers")
    num_attention_heads: int = option(32, help="query heads per layer; must divide hidden_size")
    num_key_value_heads: int | None = option(None, help="key/value heads (grouped-query attention); must divide "
                                                        "num_attention_heads; none: num_attention_heads")
    max_position_embeddings: int = option(2048, help="longest sequence: the positions the rotary tables cover")
    rms_norm_eps: float = option(1e-6, help="epsilon of every RMSNorm")
    rope_theta: float = option(10000.0, help="base of the rotary frequencies theta_i = rope_theta^(-2i/d)")
    attention_bias: bool = option(False, help="biases on q_proj, k_proj, v_proj and o_proj")
    mlp_bias: bool = option(False, help="biases on gate_proj, up_proj and down_proj")
    tie_word_embeddings: bool = option(False, help="lm_head is embed_tokens' table, transposed (one parameter)")

    def check_relations(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise self.error("num_attention_heads", f"divide hidden_size = {self.hidden_size}", self.num_attention_heads)
        if self.num_attention_heads % self.key_value_heads:
            raise self.error("num_key_value_heads", f"divide num_attention_heads = {self.num_attention_heads}",
                             self.num_key_value_heads)
        if self.head_dim % 2:
            raise self.error("hidden_size", f"give an even head dimension when divided by num_attention_heads = "
                             f"{self.num_attention_heads} (RoPE turns channel pairs)", self.hidden_size)
        if self.rms_norm_eps == 0.0:
            raise self.error("rms_norm_eps", "be > 0 (a zero row would divide 0 by 0)", self.rms_norm_eps)
        if self.rope_theta <= 1.0:
            raise self.error("rope_theta", "be > 1 (the frequencies theta_i = rope_theta^(-2i/d) must fall)",
                             self.rope_theta)

    @property
    def key_value_heads(self) -> int:
        """``num_key_value_heads``, or ``num_attention_heads`` when it is none (Hugging Face's rule)."""
        return self.num_attention_heads if self.num_key_value_heads is None else self.num_key_value_heads

    @property
    def head_dim(self) -> int:
        """Channels per head, ``hidden_size / num_attention_heads``."""
        return self.hidden_size // self.num_attention_heads

    def parameter_counts(self) -> dict[str, int]:
        """Parameters by part: ``embed_tokens`` (V E), ``attention`` (per layer :math:`2E^2 + 2E H_{kv} d`
        plus biases), ``mlp`` (per layer :math:`3EF` plus biases), ``norms`` (:math:`(2L + 1) E`) and
        ``lm_head`` (V E, 0 when tied): the sizes of the canonical state."""
        width, kv_width, layers = self.hidden_size, self.key_value_heads * self.head_dim, self.num_hidden_layers
        attention = 2 * width * width + 2 * width * kv_width + (2 * width + 2 * kv_width if self.attention_bias else 0)
        mlp = 3 * width * self.intermediate_size + (2 * self.intermediate_size + width if self.mlp_bias else 0)
        return {"embed_tokens": self.vocab_size * width, "attention": layers * attention, "mlp": layers * mlp,
                "norms": (2 * layers + 1) * width,
                "lm_head": 0 if self.tie_word_embeddings else self.vocab_size * width}


VIT_ACTIVATIONS = ("gelu",)


@dataclasses.dataclass(frozen=True)
class ViTConfig(ModelConfig):
    """The days 55-56 Vision Transformer: Hugging Face ``ViTConfig``'s field names and defaults (ViT-Base/16
    on 224x224 RGB images). The image is cut into ``(image_size / patch_size)^2`` square patches; the
    model has no pooler (Hugging Face's ``add_pooling_layer=False``, as in ``ViTForImageClassification``).
    Dropout is not part of this model: both probabilities must be 0 (Hugging Face's defaults)."""

    image_size: int = option(224, help="height and width of the square input images; a multiple of patch_size")
    patch_size: int = option(16, help="height and width of each square patch (kernel and stride of the patch conv)")
    num_channels: int = option(3, help="channels of the input images")
    hidden_size: int = option(768, help="width of the residual stream (patch and class-token embeddings)")
    num_hidden_layers: int = option(12, help="encoder layers")
    num_attention_heads: int = option(12, help="attention heads per layer; must divide hidden_size")
    intermediate_size: int = option(3072, help="width of each layer's MLP hidden layer")
    hidden_act: str = option("gelu", choices=VIT_ACTIVATIONS, help="the MLP's nonlinearity: gelu (exact, erf form)")
    hidden_dropout_prob: float = option(0.0, help="dropout on embeddings and branch outputs: must be 0 (not implemented)")
    attention_probs_dropout_prob: float = option(0.0, help="dropout on the attention weights: must be 0 (not implemented)")
    layer_norm_eps: float = option(1e-12, help="epsilon of every LayerNorm")
    qkv_bias: bool = option(True, help="biases on the query, key and value projections")
    initializer_range: float = option(0.02, help="standard deviation of the class token and position embeddings' init")
    num_labels: int = option(2, help="classes of ViTForImageClassification's classifier")

    def check_relations(self) -> None:
        if self.image_size % self.patch_size:
            raise self.error("patch_size", f"divide image_size = {self.image_size}", self.patch_size)
        if self.hidden_size % self.num_attention_heads:
            raise self.error("num_attention_heads", f"divide hidden_size = {self.hidden_size}", self.num_attention_heads)
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if getattr(self, name) != 0.0:
                raise self.error(name, "be 0.0 (this ViT has no dropout)", getattr(self, name))
        if self.layer_norm_eps == 0.0:
            raise self.error("layer_norm_eps", "be > 0 (a constant row would divide 0 by 0)", self.layer_norm_eps)

    @property
    def num_patches(self) -> int:
        """Patches per image, ``(image_size / patch_size)^2``: the sequence is these plus the class token."""
        return (self.image_size // self.patch_size) ** 2


#: The BERT nonlinearities the day-52 model implements, by ``BertConfig.hidden_act`` name.
BERT_ACTIVATIONS = ("gelu",)


@dataclasses.dataclass(frozen=True)
class BertConfig(ModelConfig):
    """The day-52 BERT encoder: Hugging Face ``BertConfig``'s field names and defaults (BERT-base).

    ``pad_token_id`` is a row index (0 is allowed, and is BERT's): that row of ``word_embeddings``
    gets no gradient, as ``nn.Embedding(padding_idx=...)``. Dropout sites and their keep-masks are
    named by the Hugging Face module that drops (:meth:`dropout_shapes`)."""

    vocab_size: int = option(30522, help="tokens in the vocabulary (rows of word_embeddings)")
    hidden_size: int = option(768, help="width of the hidden states (embeddings, attention, layer outputs)")
    num_hidden_layers: int = option(12, help="encoder layers")
    num_attention_heads: int = option(12, help="attention heads per layer; must divide hidden_size")
    intermediate_size: int = option(3072, help="width of each layer's feed-forward hidden layer")
    hidden_act: str = option("gelu", choices=BERT_ACTIVATIONS, help="the feed-forward nonlinearity: gelu (exact, erf)")
    hidden_dropout_prob: float = option(0.1, help="dropout probability on the embeddings and each sublayer's output")
    attention_probs_dropout_prob: float = option(0.1, help="dropout probability on the attention weights")
    max_position_embeddings: int = option(512, help="longest sequence: rows of position_embeddings")
    type_vocab_size: int = option(2, help="segment types (rows of token_type_embeddings)")
    layer_norm_eps: float = option(1e-12, help="epsilon of every LayerNorm")
    pad_token_id: int | None = option(0, help="the padding token's row (no gradient); none: no padding row")

    def _checked_value(self, f: dataclasses.Field, base: type, item, value):
        # The padding id is an index, so 0 is valid (the base rule reads every int as a size >= 1).
        if f.name == "pad_token_id":
            if isinstance(item, bool) or not isinstance(item, Integral) or item < 0:
                raise self.error(f.name, "be an int >= 0 (a row index) or None", value)
            return int(item)
        return super()._checked_value(f, base, item, value)

    def check_relations(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise self.error("num_attention_heads", f"divide hidden_size = {self.hidden_size}", self.num_attention_heads)
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if getattr(self, name) >= 1.0:
                raise self.error(name, "be < 1 (a probability of dropping; 1 would divide by zero)", getattr(self, name))
        if self.layer_norm_eps == 0.0:
            raise self.error("layer_norm_eps", "be > 0 (a constant row would divide 0 by 0)", self.layer_norm_eps)
        if self.pad_token_id is not None and self.pad_token_id >= self.vocab_size:
            raise self.error("pad_token_id", f"be a row of word_embeddings, in [0, {self.vocab_size})", self.pad_token_id)

    def dropout_shapes(self, batch: int, steps: int) -> dict[str, tuple[int, ...]]:
        """Each dropout site with a probability > 0 -> the shape of its keep-mask for ``(batch, steps)``
        input ids, keyed by the Hugging Face module that drops: ``embeddings.dropout`` and each layer's
        ``attention.output.dropout`` and ``output.dropout`` ``(B, T, hidden_size)``,
        ``attention.self.dropout`` ``(B, num_attention_heads, T, T)``."""
        shapes = {}
        if self.hidden_dropout_prob:
            shapes["embeddings.dropout"] = (batch, steps, self.hidden_size)
        for layer in range(self.num_hidden_layers):
            prefix = f"encoder.layer.{layer}"
            if self.attention_probs_dropout_prob:
                shapes[f"{prefix}.attention.self.dropout"] = (batch, self.num_attention_heads, steps, steps)
            if self.hidden_dropout_prob:
                shapes[f"{prefix}.attention.output.dropout"] = (batch, steps, self.hidden_size)
                shapes[f"{prefix}.output.dropout"] = (batch, steps, self.hidden_size)
        return shapes

    def dropout_p(self, site: str) -> float:
        """The probability of the dropout site ``site`` (a key of :meth:`dropout_shapes`): the attention
        weights' (``attention.self.dropout``) or the hidden states' (every other site)."""
        return self.attention_probs_dropout_prob if site.endswith("self.dropout") else self.hidden_dropout_prob


@dataclasses.dataclass(frozen=True)
class MixerConfig(ModelConfig):
    """The day-57 MLP-Mixer: timm ``MlpMixer``'s constructor argument names and defaults (Mixer-S/16 on
    224x224 RGB images). The image is cut into ``(img_size / patch_size)^2`` square patches (the tokens);
    each block's token MLP is ``int(mlp_ratio[0] * embed_dim)`` wide and its channel MLP
    ``int(mlp_ratio[1] * embed_dim)`` (timm scales both by ``embed_dim``). timm's fixed choices are kept
    fixed: LayerNorm eps 1e-6, exact GELU, average pooling over tokens, no dropout, no stem norm."""

    img_size: int = option(224, help="height and width of the square input images; a multiple of patch_size")
    patch_size: int = option(16, help="height and width of each square patch (kernel and stride of the patch conv)")
    in_chans: int = option(3, help="channels of the input images")
    num_classes: int = option(1000, help="classes of the linear head")
    num_blocks: int = option(8, help="mixer blocks")
    embed_dim: int = option(512, help="width of every token (the patch conv's output channels)")
    mlp_ratio: tuple[float, ...] = option((0.5, 4.0), length=2,
                                          help="hidden widths of the token and channel MLPs, as multiples of embed_dim")

    def check_relations(self) -> None:
        if self.img_size % self.patch_size:
            raise self.error("patch_size", f"divide img_size = {self.img_size}", self.patch_size)
        if min(self.hidden_widths) < 1:
            raise self.error("mlp_ratio", f"give MLP widths >= 1 (int(ratio * embed_dim), embed_dim = {self.embed_dim})",
                             self.mlp_ratio)

    @property
    def num_patches(self) -> int:
        """Tokens per image, ``(img_size / patch_size)^2``: the width of the token-mixing MLP's input."""
        return (self.img_size // self.patch_size) ** 2

    @property
    def hidden_widths(self) -> tuple[int, int]:
        """``(tokens_dim, channels_dim)``: timm's ``int(ratio * embed_dim)`` for each MLP."""
        return tuple(int(ratio * self.embed_dim) for ratio in self.mlp_ratio)
