"""A sweep file: the recipe it tunes and the space of settings to search, validated once.

Each setting is a dotted config key with a range or a list of choices:

    space:
      model.C: {type: float, low: 0.1, high: 100, log: true}
      model.epochs: {type: int, low: 2, high: 6}
      model.word_ngram_range: {type: categorical, choices: [[1, 1], [1, 2]]}

The recipe is validated at both ends of every range and with every choice before a trial runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from speechacts.config import AnyPath, Config, Strict, describe, load_config, read_yaml, validate
from speechacts.errors import ConfigError

TRIAL_OVERRIDES = ["tracking.registered_model=null"]  # train best.yaml to register the winner
PARAM_TYPES = ("float", "int", "categorical")


class Range(Strict):
    @model_validator(mode="after")
    def _bounds(self):
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0, got {self.low}")
        if self.log and self.step != type(self).model_fields["step"].default:
            raise ValueError("log: true and step cannot be combined")
        return self


class FloatRange(Range):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = Field(None, gt=0)


class IntRange(Range):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(1, ge=1)


class Choice(Strict):
    type: Literal["categorical"]
    choices: list[Any] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> Choice:
        labels = [label(c) for c in self.choices]
        if len(set(labels)) != len(labels):
            raise ValueError(f"choices repeat a value: {self.choices}")
        return self


Param = Annotated[FloatRange | IntRange | Choice, Field(discriminator="type")]


class SweepSpec(Strict):
    name: str  # also the Optuna study's name
    recipe: AnyPath
    experiment: str  # the MLflow experiment of the sweep run and its trials
    overrides: list[str] = []  # applied to the recipe before the trial's settings
    space: dict[str, Param] = Field(min_length=1)
    trials: int = Field(20, ge=1)  # a run of `speechacts sweep` adds this many (or --trials)
    startup_trials: int = Field(5, ge=0)  # random trials before TPE models the space and the pruner prunes
    pruner: Literal["median", "none"] = "median"
    seed: int | None = None  # the sampler's seed (worker i: seed + i); null: a fresh one each run


def label(choice: Any) -> Any:
    """A choice as Optuna stores it: scalars as they are, lists and mappings as JSON text."""
    return choice if choice is None or isinstance(choice, bool | int | float | str) else json.dumps(choice)


def describe_sweep(err: dict[str, Any]) -> str:
    loc = [str(part) for part in err["loc"]]
    if len(loc) > 2 and loc[0] == "space" and loc[2] in PARAM_TYPES:
        loc.pop(2)  # the discriminated union adds the type as a path element
    key = ".".join(loc)
    if err["type"] == "union_tag_invalid":
        return f"{key}.type: unknown type {err['input'].get('type')!r}; expected float, int or categorical"
    if err["type"] == "union_tag_not_found":
        return f"{key}: missing type: float, int or categorical"
    if err["type"] == "model_attributes_type" and loc[0] == "space":
        return f"{key}: expected a range such as {{type: float, low: 0.1, high: 10}}, got {err['input']!r}"
    if err["type"] == "value_error":
        return f"{key}: {err['ctx']['error']}"
    return describe({**err, "loc": tuple(loc)})


def load_spec(path: str | Path) -> SweepSpec:
    tree = read_yaml(path)
    if "space" not in tree and "runs" in tree:
        raise ConfigError(f"{path}: an experiment file (it lists runs:), not a sweep; run `speechacts experiment "
                          f"{path}`, or declare a space: to search")
    return validate(tree, str(path), SweepSpec, "sweep", describe_sweep, one_line=True)


def assignments(values: dict[str, Any]) -> list[str]:
    """Settings as dotted overrides (JSON is YAML, so every value reads back as it was)."""
    return [f"{key}={json.dumps(value)}" for key, value in values.items()]


def trial_config(spec: SweepSpec, values: dict[str, Any], overrides: list[str], name: str) -> Config:
    return load_config(spec.recipe, [*TRIAL_OVERRIDES, f"tracking.experiment={spec.experiment}", *spec.overrides,
                                     *overrides, *assignments(values), f"name={name}"])


def one_line(exc: ConfigError) -> str:
    """A config error's problems on one line, without the origin that load_config puts first."""
    head, _, problems = str(exc).partition("\n")
    return problems.strip().replace("\n  ", "; ") or head


def check_space(path: str | Path, spec: SweepSpec, overrides: list[str]) -> Config:
    """Validate the recipe at both ends of every range and with every choice; returns the untouched recipe."""
    try:
        base = trial_config(spec, {}, overrides, spec.name)
    except ConfigError as exc:
        raise ConfigError(f"{path}: recipe {spec.recipe}: {one_line(exc)}") from None
    for key, param in spec.space.items():
        for value in param.choices if isinstance(param, Choice) else (param.low, param.high):
            try:
                trial_config(spec, {key: value}, overrides, spec.name)
            except ConfigError as exc:
                raise ConfigError(f"{path}: space.{key}={json.dumps(value)}: {one_line(exc)}") from None
    return base


def shown(param: Param) -> str:
    """A parameter's range in words, for the sweep run's params."""
    if isinstance(param, Choice):
        return f"one of {json.dumps(param.choices)}"
    extra = (" log" if param.log else "") + (f" step {param.step}" if param.step not in (None, 1) else "")
    return f"{param.type} in [{param.low}, {param.high}]{extra}"


def suggest(trial, key: str, param: Param) -> Any:
    if isinstance(param, FloatRange):
        return trial.suggest_float(key, param.low, param.high, log=param.log, step=param.step)
    if isinstance(param, IntRange):
        return trial.suggest_int(key, param.low, param.high, log=param.log, step=param.step)
    return decode(param, trial.suggest_categorical(key, [label(c) for c in param.choices]))


def decode(param: Param, value: Any) -> Any:
    """Optuna's stored value of a parameter -> the config value."""
    if isinstance(param, Choice):
        return param.choices[[label(c) for c in param.choices].index(value)]
    return value
