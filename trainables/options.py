"""Everything generated from the option schema: CLI options, ``--list``, the README's option table.

:func:`add_config_options` gives an argparse parser a ``--kebab-name`` option for each config
field marked ``cli`` (see :mod:`trainables.schema`), in argparse groups by the field's group, with
its type, valid values and default in the help, and ``--set KEY=VALUE`` for every hyperparameter
(listed in the help with type, default, valid values and the methods that read it). Every entry
point (``trainables.run``, ``tuner.launch``, ``tuner.study``, ``tuner.reproduce``,
``tuner.bench_sweep``) builds its config options here; only options that are not config fields
(the sweep's, the study's) are written by hand.

An option left off the command line is ``None`` in the parsed arguments: the config's default (or
the sweep's own, e.g. ``tuner.launch``'s ``--epochs 2``) applies. Values are checked by the config
(one clear error), numbers already by the parser.

    python -m trainables.options --markdown   # the README's option table
    python -m trainables.options --list       # methods and their own options
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from trainables import config
from trainables.errors import UserError
from trainables.methods import METHODS, owners
from trainables.schema import GROUPS, bounds_rule


HYPERPARAMETERS = "hyperparameters (--set KEY=VALUE)"


def option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def option_group(parser: argparse.ArgumentParser, group: str) -> argparse._ArgumentGroup:
    """The parser's argument group ``group`` (a schema group or any other title), made once."""
    groups = parser.__dict__.setdefault("_option_groups", {})
    if group not in groups:
        groups[group] = parser.add_argument_group(GROUPS.get(group, group))
    return groups[group]


def _type_name(f: dataclasses.Field) -> str:
    typ, _ = config.field_type(f.name)
    return typ.__name__


def valid_values(f: dataclasses.Field) -> str:
    """``{a, b}``, ``>= 1``, ``in (0, 1]`` or ``""``."""
    if f.metadata.get("choices"):
        return "{" + ", ".join(map(str, f.metadata["choices"])) + "}"
    if f.name == "method":
        return "{" + ", ".join(METHODS) + "}"
    if f.metadata.get("bounds"):
        return bounds_rule(f.metadata["bounds"])
    return ""


def _shown(value: Any) -> str:
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else f"{value:g}" \
        if isinstance(value, float) else str(value)


def _parse_with(f: dataclasses.Field):
    """An argparse ``type`` that types and checks a number by the schema."""
    def parse(raw: str):
        try:
            return config.coerce(f, raw)
        except UserError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    parse.__name__ = _type_name(f)
    return parse


class _Help(str):
    """A help text ending in the option's default as the parser has it when the help is shown
    (argparse expands help with ``%``): the entry point's own (``set_defaults`` included) when
    it has one, else the config's (the option is unset, so the config's default applies)."""

    def __new__(cls, text: str, config_default: str | None, required: bool = False):
        out = super().__new__(cls, text)
        out.config_default, out.required = config_default, required
        return out

    def __mod__(self, params) -> str:
        text = str.__str__(self).replace("%", "%%") % params
        if self.required:
            return f"{text} (required)"
        if params.get("default") is not None:
            return f"{text} (default {_shown(params['default'])})"
        return text if self.config_default is None else f"{text} (default {self.config_default})"


def _add(group: argparse._ArgumentGroup, f: dataclasses.Field, default: Any, required: bool) -> None:
    typ, _ = config.field_type(f.name)
    help_text = f.metadata.get("help") or f.name
    rule = valid_values(f)
    if f.name == "method":
        help_text += f": one of {', '.join(METHODS)}"
    elif rule and not f.metadata.get("choices"):
        help_text += f"; {rule}"
    # a help that says its default (e.g. "default: $TUNER_DATA_DIR") is not told "default none"
    config_default = None if f.default is None and "default" in help_text else _shown(f.default)
    kwargs: dict[str, Any] = {"default": default, "dest": f.name, "help": _Help(help_text, config_default, required)}
    if typ is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    else:
        if typ in (int, float):
            kwargs["type"] = _parse_with(f)
        if f.metadata.get("choices"):
            kwargs["metavar"] = "{" + ",".join(map(str, f.metadata["choices"])) + "}"
        else:
            kwargs["metavar"] = typ.__name__.upper() if typ in (int, float) else f.name.split("_")[-1].upper()
    group.add_argument(option_name(f.name), **kwargs)


def cli_fields() -> list[dataclasses.Field]:
    """The config fields every entry point may have an option for."""
    return [f for f in config.fields() if f.metadata["cli"]]


def add_config_options(parser: argparse.ArgumentParser, *, groups: Iterable[str] | None = None,
                       fields: Iterable[str] | None = None, exclude: Iterable[str] = (),
                       defaults: Mapping[str, Any] | None = None, required: Iterable[str] = (),
                       several_tasks: bool = False, assignments: bool | None = None) -> None:
    """Add the config's CLI options to ``parser``: those of ``groups`` (default all) or the named
    ``fields``, minus ``exclude``. ``defaults``: the entry point's own defaults (shown in the help);
    ``required``: options said to be required in the help (the caller checks them);
    ``several_tasks``: ``--tasks A,B`` instead of ``--task``; ``assignments``: add ``--set``
    (default: when the method group is included and no ``fields`` are named)."""
    defaults = dict(defaults or {})
    groups = None if groups is None else set(groups)
    for name in list(groups or ()) + list(defaults) + list(fields or ()):
        if name not in GROUPS and name not in config.field_names():
            raise ValueError(f"unknown option group or field {name!r}")
    chosen = [f for f in cli_fields()
              if (fields is None or f.name in fields) and (groups is None or f.metadata["group"] in groups)
              and f.name not in set(exclude)]
    chosen.sort(key=lambda f: list(GROUPS).index(f.metadata["group"]))
    for f in chosen:
        group = option_group(parser, f.metadata["group"])
        if f.name == "task" and several_tasks:
            group.add_argument("--tasks", default=f.default,
                               help=f"tasks, comma-separated: names, or folders with train/dev files (default {f.default})")
            continue
        if f.name in defaults:
            default = defaults[f.name]
        else:
            default = f.default if f.metadata.get("cli_default") else None
        _add(group, f, default, f.name in set(required))
    if assignments is None:
        assignments = fields is None and (groups is None or "method" in groups)
    if assignments:
        group = option_group(parser, HYPERPARAMETERS)
        group.description = hparam_text()
        group.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                           help="fix a hyperparameter (repeatable); keys: see above")


def given_fields(args: argparse.Namespace) -> set[str]:
    """The config fields given on the command line (their options; ``--set`` not included)."""
    return {f.name for f in cli_fields() if getattr(args, f.name, None) is not None}


def config_values(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields given as CLI options, for :meth:`DistillConfig.from_dict`."""
    return {name: getattr(args, name) for name in given_fields(args)}


# ---- documentation --------------------------------------------------------------------------------

def _by_owner(kind: str | None = "hparam") -> dict[str, list[dataclasses.Field]]:
    out: dict[str, list[dataclasses.Field]] = {}
    for f in config.fields(kind):
        who = owners(f.name)
        out.setdefault(", ".join(who) if who else "", []).append(f)
    return out


def hparam_text() -> str:
    """The hyperparameters for ``--help``: name, type, default, valid values and meaning, the ones
    every method may read first, then each method's own."""
    lines = ["name (type, valid values; default): meaning; a sweep searches the method's space, --set fixes a value"]
    for who, fs in _by_owner().items():
        lines.append(f"  {who or 'every method'}:")
        for f in fs:
            valid = valid_values(f)
            head = f"    {f.name} ({_type_name(f)}{', ' + valid if valid else ''}; default {_shown(f.default)})"
            lines.append(f"{head}: {f.metadata.get('help') or ''}".rstrip(": "))
    return "\n".join(lines)


def method_rows() -> list[tuple[str, str, list[str]]]:
    """(method, its teacher, its own options) of every registered method, for ``--list``."""
    rows = []
    for name, cls in METHODS.items():
        teacher = "learning teacher" if cls.teacher_learns else ("fixed teacher" if cls.uses_teacher else "no teacher")
        own = [n for o in cls.option_classes() for n in o.__dataclass_fields__]
        rows.append((name, teacher, own))
    return rows


def listing() -> str:
    lines = ["methods (their own options; every method also reads the shared ones, see --help):"]
    for name, teacher, own in method_rows():
        lines.append(f"  {name:18s} {teacher:16s} {', '.join(own) or '-'}")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table() -> str:
    """The README's option table: every config field, by group."""
    lines = ["| option | set with | type | default | valid | read by | meaning |", "|---|---|---|---|---|---|---|"]
    fs = sorted(config.fields(), key=lambda f: list(GROUPS).index(f.metadata["group"]))
    group = None
    for f in fs:
        if f.metadata["group"] != group:
            group = f.metadata["group"]
            lines.append(f"| **{GROUPS[group]}** | | | | | | |")
        how = []
        if f.metadata["cli"]:
            how.append(f"`{option_name(f.name)}`")
        if f.metadata["kind"] == "hparam":
            how.append(f"`--set {f.name}=`")
        who = owners(f.name)
        lines.append(f"| `{f.name}` | {' '.join(how)} | {_type_name(f)} | `{_shown(f.default)}` | "
                     f"{_cell(valid_values(f))} | {', '.join(who) if who else 'all'} | "
                     f"{_cell(f.metadata.get('help') or '')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m trainables.options", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markdown", action="store_true", help="print the README's option table")
    parser.add_argument("--list", action="store_true", help="print the methods and their own options")
    args = parser.parse_args(argv)
    out = markdown_table() if args.markdown or not args.list else listing()
    print(out)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
