"""A config node turned into the domain object it describes, in one way for every group.

The inverse of :func:`mjexp.config.schema.schema_of`: the node's fields become the dataclass's
keyword arguments (lists become tuples where the field is a tuple), fields a config does not set
keep their default, and values computed by code are ``given``. The object's ``__post_init__``
checks the ranges, so :mod:`mjexp.config.validation` builds these objects to check a config.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Mapping, TypeVar, Union, get_args, get_origin, get_type_hints

from omegaconf import DictConfig, OmegaConf

from mjexp.sampling.guidance import Guidance
from mjexp.sampling.hires import HiresSettings
from mjexp.sampling.samplers import SamplerSettings

T = TypeVar("T")


def _is_tuple(hint: Any) -> bool:
    if get_origin(hint) in (Union, types.UnionType):
        return any(_is_tuple(a) for a in get_args(hint))
    return get_origin(hint) is tuple or hint is tuple


def plain(node: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    """A config node as a plain, resolved dict."""
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)


def build(domain: type[T], node: Mapping[str, Any] | DictConfig, **given: Any) -> T:
    """``domain(**fields of node, **given)``; keys of ``node`` that are not fields are left out."""
    values = plain(node)
    hints = get_type_hints(domain)
    kwargs: dict[str, Any] = {}
    for spec in dataclasses.fields(domain):
        if spec.name in given:
            kwargs[spec.name] = given[spec.name]
        elif spec.name in values:
            value = values[spec.name]
            kwargs[spec.name] = tuple(value) if value is not None and _is_tuple(hints[spec.name]) else value
    return domain(**kwargs)


def sampling_settings(sampling_cfg: Mapping[str, Any] | DictConfig) -> tuple[SamplerSettings, Guidance, HiresSettings, str]:
    """(sampler, guidance, hires fix, negative prompt) of a node with ``sampler``, ``guidance`` and
    ``hires`` groups (``hires.model`` is a checkpoint reference its caller loads)."""
    return (
        build(SamplerSettings, sampling_cfg["sampler"]),
        build(Guidance, sampling_cfg["guidance"]),
        build(HiresSettings, sampling_cfg["hires"]),
        str(sampling_cfg["guidance"]["negative_prompt"] or ""),
    )
