"""The run settings schema: each setting is declared once, as a `RunConfig` field made by `setting`.

A declaration carries the default, the help, the command-line flag (or none: TOML only), the
choices (the owning module's constant), a check of one value, whether `suite tune` offers it, and
how it enters the protocol fingerprint. From the declarations come the `suite run` and `suite
tune` flags (`add_arguments`), TOML/YAML validation (`check_value`, called by
`RunConfig.validate`), the fingerprint (`fingerprint_dict`) and the settings reference in the
docs (`reference_page`), so adding a setting is one declaration and the four never disagree.

Fingerprint rules, chosen so that adding a setting never changes an existing run id:
``"always"`` (the settings of protocol v2's first runs: hashed as they are), ``"unless-default"``
(every setting added since: hashed only when it differs from its default), ``"never"``
(bookkeeping that cannot change a number); ``applies`` leaves a setting out while it has no effect
(a LoRA rank without LoRA).
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

FINGERPRINT_RULES = ("always", "unless-default", "never")
HYPERPARAMETER_KINDS = ("algorithm", "run")


@dataclass(frozen=True)
class Setting:
    """What one `RunConfig` field is: the schema entry stored in the field's metadata."""

    help: str
    flag: str | None = None  # "--inner-lr"; None: set in TOML (or by another option) only
    aliases: tuple[str, ...] = ()  # further flags for the same setting
    choices: tuple | None = None  # allowed values (the owning module's constant)
    check: Callable[[Any], str | None] | None = None  # one value -> why it is wrong, or None
    fingerprint: str = "always"
    applies: Callable[[Any], bool] | None = None  # config -> does this setting change anything?
    # "algorithm": forwarded to every algorithm whose Config has a field of that name; "run": a
    # hyperparameter of the run itself; both are what `suite tune` may search
    hyperparameter: str | None = None
    tune: bool = True  # `suite tune` offers the flag (False: a grid axis or a per-run option there)
    group: str = "protocol"  # heading in --help and in the reference
    metavar: str | None = None
    set_by: str | None = None  # the command option that sets it where it has no flag of its own


def setting(default: Any = dataclasses.MISSING, help: str = "", *, factory: Callable[[], Any] | None = None,
            **schema: Any) -> Any:
    """A `RunConfig` field with its schema entry (keyword arguments of `Setting`)."""
    entry = Setting(help=help, **schema)
    if entry.fingerprint not in FINGERPRINT_RULES:
        raise ValueError(f"fingerprint must be one of {FINGERPRINT_RULES}, got {entry.fingerprint!r}")
    if entry.hyperparameter not in (None, *HYPERPARAMETER_KINDS):
        raise ValueError(f"hyperparameter must be one of {HYPERPARAMETER_KINDS}, got {entry.hyperparameter!r}")
    if factory is not None:
        return field(default_factory=factory, metadata={"setting": entry})
    return field(default=default, metadata={"setting": entry})


def schema(config_cls) -> dict[str, tuple[dataclasses.Field, Setting]]:
    """Every declared setting of ``config_cls``, in declaration order."""
    return {f.name: (f, f.metadata["setting"]) for f in dataclasses.fields(config_cls) if "setting" in f.metadata}


def default_of(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]


# ---------------------------------------------------------------- checks of one value
def at_least(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= low else f"must be >= {low:g}, got {v}"


def finite_positive(v: Any) -> str | None:
    import math

    values = v if isinstance(v, list) else [v]
    if all(isinstance(x, (int, float)) and 0 < x < math.inf for x in values):
        return None
    return f"must be {'finite positive numbers' if isinstance(v, list) else 'a finite number > 0'}, got {v}"


def in_range(low: float, high: float, closed: str = "()") -> Callable[[Any], str | None]:
    def check(v):
        ok = (low < v if closed[0] == "(" else low <= v) and (v < high if closed[1] == ")" else v <= high)
        return None if ok else f"must be in {closed[0]}{low:g}, {high:g}{closed[1]}, got {v}"
    return check


def check_value(name: str, value: Any, entry: Setting) -> str | None:
    """Why ``value`` is not a valid ``name`` (its choices, then its check), or None."""
    if entry.choices is not None:
        values = value if isinstance(value, list) else [value]
        wrong = [v for v in values if v not in entry.choices]
        if wrong:
            return f"must be one of {', '.join(map(str, entry.choices))}, got {wrong[0]!r}"
    return entry.check(value) if entry.check else None


# ---------------------------------------------------------------- fingerprint
def fingerprint_dict(config) -> dict[str, Any]:
    """The settings that identify ``config``'s numbers, by the rules in the module docstring."""
    out = {}
    for name, (f, entry) in schema(type(config)).items():
        value = getattr(config, name)
        if entry.fingerprint == "never" or (entry.applies is not None and not entry.applies(config)):
            continue
        if entry.fingerprint == "unless-default" and value == default_of(f):
            continue
        out[name] = value
    return out


# ---------------------------------------------------------------- command line
def _argparse_type(hint) -> dict[str, Any]:
    """argparse keywords for a field's type: booleans get --no-..., lists are comma-separated."""
    origin = typing.get_origin(hint)
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin is list:
        (item,) = typing.get_args(hint)
        return {"type": comma_floats if item is float else comma_list}
    return {"type": hint} if hint in (int, float, str) else {}


def comma_list(value: str) -> list[str]:
    """argparse type of every comma-separated option: items stripped, empty items dropped."""
    return [item.strip() for item in value.split(",") if item.strip()]


def comma_floats(value: str) -> list[float]:
    try:
        return [float(v) for v in comma_list(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers, got {value!r}") from None


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) if value else "none"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}" if value else "none"
    return str(value)


def defaults_text(name: str, presets: dict[str, Any]) -> str:
    """``3`` when every preset agrees, else ``quick 3, study 5, paper 5``."""
    values = {p: _shown(getattr(cfg, name)) for p, cfg in presets.items()}
    if len(set(values.values())) == 1:
        return next(iter(values.values()))
    return ", ".join(f"{p} {v}" for p, v in values.items())


def add_arguments(parser: argparse.ArgumentParser, config_cls, presets: dict[str, Any], *, for_tune: bool = False,
                  types: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """One flag per declared setting that has one (only those `suite tune` offers, with
    ``for_tune``), grouped, every help ending in the real defaults (``presets``: name -> its
    resolved config). ``types`` overrides argparse keywords per setting. Returns the settings added."""
    hints = typing.get_type_hints(config_cls)
    groups: dict[str, argparse._ArgumentGroup] = {}
    added = []
    for name, (_, entry) in schema(config_cls).items():
        if entry.flag is None or (for_tune and not entry.tune):
            continue
        group = groups.setdefault(entry.group, parser.add_argument_group(f"{entry.group} settings"))
        kwargs: dict[str, Any] = {**_argparse_type(hints[name]), **(types or {}).get(name, {})}
        if entry.choices is not None and not typing.get_origin(hints[name]):
            kwargs["choices"] = entry.choices
        if entry.metavar:
            kwargs["metavar"] = entry.metavar
        text = entry.help.replace("%", "%%")
        group.add_argument(entry.flag, *entry.aliases, dest=name, default=None,
                           help=f"{text} (default: {defaults_text(name, presets)})", **kwargs)
        added.append(name)
    return added


class HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a real default after each option's help: never "(default: None)" (a setting left out
    comes from the preset, and its help already names each preset's value) nor "(default: False)"."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, []) or "(default:" in text:
            return text
        return super()._get_help_string(action)


def overrides_from_args(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The settings given on the command line (flags left out are None and are not overrides)."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


# ---------------------------------------------------------------- reference page
def reference_rows(config_cls, presets: dict[str, Any]) -> list[list[str]]:
    hints = typing.get_type_hints(config_cls)
    rows = []
    for name, (_, entry) in schema(config_cls).items():
        kind = getattr(hints[name], "__name__", None) if not typing.get_origin(hints[name]) else None
        flag = entry.flag or entry.set_by
        rows.append([f"`{name}`", ", ".join(f"`{f}`" for f in (flag, *entry.aliases)) if flag else "TOML only",
                     kind or str(hints[name]).replace("typing.", ""),
                     defaults_text(name, presets).replace("|", "\\|"),
                     ", ".join(f"`{c}`" for c in entry.choices) if entry.choices else "",
                     _fingerprint_words(entry), {"algorithm": "forwarded", "run": "run"}.get(entry.hyperparameter or "", ""),
                     entry.help.replace("|", "\\|")])
    return rows


def _fingerprint_words(entry: Setting) -> str:
    words = {"always": "yes", "unless-default": "when not the default", "never": "no"}[entry.fingerprint]
    return words + (" (when it applies)" if entry.applies else "")
