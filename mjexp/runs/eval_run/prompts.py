"""Which prompts an evaluation generates: a versioned built-in set, or the reference split's own
captions (``eval.prompt_set``: a set name, a .jsonl path, ``data`` or ``auto``), and how they are
described in the console and recorded (``prompts.*`` params)."""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any, Mapping

from omegaconf import DictConfig

from evaluation import load_prompt_set
from evaluation.prompt_sets import CaptionTemplate, PromptSet

DATA_PROMPTS = "data"  # eval.prompt_set=data: the reference split's own captions
AUTO_PROMPTS = "auto"  # eval.prompt_set=auto: a built-in set in the model's caption form, else data
# auto's candidates, in order (shapes_heldout_v1 is for data.holdout studies: ask for it by name).
GENERAL_PROMPT_SETS = ("shapes_single_v1", "shapes_two_object_v1", "digits_v1")

def warn_if_captions_differ(prompt_set: PromptSet, schema: Any) -> None:
    """A prompt set written in another caption form than the model's training captions (e.g. the
    single-object set for a two-object model) still runs, but measures out-of-distribution prompts."""
    if schema is None or prompt_set.template.template == schema.template:
        return
    warnings.warn(
        f"prompt set {prompt_set.name} has captions like {prompt_set.template.template!r}, but the model was "
        f"trained on captions like {schema.template!r}: its scores measure prompts the model never saw. Choose a "
        "set in evaluation/prompts whose .meta.json has the model's caption template, or eval.prompt_set=data",
        stacklevel=2,
    )


def auto_prompt_set(schema: Any) -> str:
    """``eval.prompt_set=auto``: the first general built-in set whose captions have the data's
    caption form and only its attribute values (a model trained on a subset of colours is not asked
    for the others), else ``data``: the reference split's own captions (an image folder)."""
    if schema is not None:
        for name in GENERAL_PROMPT_SETS:
            template = load_prompt_set(name).template
            if template.template == schema.template and all(
                set(values) <= set(schema.values.get(key, ())) for key, values in template.values.items()
            ):
                return name
    return DATA_PROMPTS


def load_prompts(cfg: DictConfig, datamodule: Any) -> PromptSet | tuple[list[str], list[dict] | None]:
    """The configured prompt set, or the reference split's own captions (``eval.prompt_set=data``)."""
    name = cfg.eval.prompt_set
    if name == AUTO_PROMPTS:
        name = auto_prompt_set(getattr(datamodule, "schema", None))
    if name != DATA_PROMPTS:
        prompt_set = load_prompt_set(name)
        schema = getattr(datamodule, "schema", None)
        if schema is None:
            raise ValueError(
                f"eval.prompt_set={name} labels its prompts with attributes ({', '.join(prompt_set.template.values)}), "
                f"but the model's data ({type(datamodule).__name__}) has none to check the judge against; use "
                "eval.prompt_set=data (the reference split's captions) or auto"
            )
        warn_if_captions_differ(prompt_set, schema)
        if cfg.eval.max_prompts:
            prompt_set = replace(
                prompt_set,
                prompts=prompt_set.prompts[: cfg.eval.max_prompts],
                attrs=prompt_set.attrs[: cfg.eval.max_prompts],
            )
        return prompt_set
    return data_prompts(datamodule, cfg.eval.reference_split, cfg.eval.max_prompts)


def prompt_params(prompts: PromptSet | tuple[list[str], list[dict] | None], split: str) -> dict[str, Any]:
    """What the evaluated prompts are (``prompts.*`` params: the resolved set, never the config's
    ``eval.prompt_set``, which may say ``auto``); bare captions come from the reference ``split``."""
    if isinstance(prompts, PromptSet):
        return prompts.params
    return {"set": DATA_PROMPTS, "version": f"{split} split", "n": len(prompts[0])}


def describe_prompts(params: Mapping[str, Any], configured: str, samples_per_prompt: int) -> str:
    """One console line saying which prompts an evaluation generates (``configured``: eval.prompt_set)."""
    chosen = f"eval.prompt_set={configured}" + (" chose it" if configured == AUTO_PROMPTS else "")
    if params["set"] == DATA_PROMPTS:
        return (f"Prompts: the first {params['n']} captions of the {params['version']} ({chosen}: the reference "
                f"split's captions), {samples_per_prompt} images each")
    return (f"Prompts: {params['n']} from the set {params['set']!r} version {params['version']} ({chosen}), "
            f"{samples_per_prompt} images each")


def renders(schema: Any, attrs: Mapping[str, str], caption: str) -> bool:
    """``caption`` is the schema's caption of ``attrs`` (not a noisy or free-form caption)."""
    try:
        return schema.caption(attrs) == caption
    except ValueError:
        return False


def data_prompts(datamodule: Any, split: str, max_prompts: int = 0) -> PromptSet | tuple[list[str], None]:
    """The captions of ``split`` as prompts; as a prompt set with their attributes (so attribute
    accuracy is measured) when the data has a caption schema and every caption is its rendering of
    the item's attributes, else the bare captions."""
    dataset = datamodule.dataset(split)
    items = [dataset[i] for i in range(min(max_prompts or len(dataset), len(dataset)))]
    prompts = [item["text"] for item in items]
    schema = getattr(datamodule, "schema", None)
    attrs = [dict(item.get("attrs") or {}) for item in items]
    if schema is None or not all(renders(schema, a, text) for a, text in zip(attrs, prompts)):
        return prompts, None
    return PromptSet(DATA_PROMPTS, f"{split} split", tuple(prompts), tuple(attrs), schema_template(schema))


def schema_template(schema: Any) -> CaptionTemplate:
    """The data's caption schema as the evaluation's template (``evaluation`` never imports ``mjexp``)."""
    return CaptionTemplate(schema.template, {key: tuple(values) for key, values in schema.values.items()})


def folder_template(prompt_set: str, schema: Any) -> CaptionTemplate | None:
    """What the attrs of a scored image folder are read with: a named set's template, else (``auto``,
    ``data``) the data's caption schema; None without one."""
    if prompt_set not in (AUTO_PROMPTS, DATA_PROMPTS):
        return load_prompt_set(prompt_set).template
    return schema_template(schema) if schema is not None else None
