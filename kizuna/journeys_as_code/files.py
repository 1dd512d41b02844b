"""Reading and writing the files: YAML (read as YAML 1.2 reads it: ``on``, ``yes``, ``21:00``
and dates stay strings) or JSON, by extension; a directory stands for its files."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from kizuna.journeys_as_code.document import KINDS, Item, read_document

SUFFIXES = (".yaml", ".yml", ".json")


class Unreadable(Exception):
    pass


def expand(paths: list[Path]) -> list[Path]:
    """Files as given; a directory's YAML and JSON files, recursively, by name."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES))
        else:
            found.append(path)
    return found


def read_items(paths: list[Path]) -> tuple[list[Item], list[str]]:
    items: list[Item] = []
    problems: list[str] = []
    for path in expand(paths):
        try:
            data = load(path)
        except Unreadable as error:
            problems.append(f"{path}: {error}")
            continue
        found, wrong = read_document(str(path), data)
        items.extend(found)
        problems.extend(wrong)
    return items, problems


def load(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise Unreadable(str(error)) from error
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise Unreadable(f"line {error.lineno}, column {error.colno}: {error.msg}") from error
    return parse_yaml(text)


def parse_yaml(text: str) -> Any:
    yaml = _yaml()
    try:
        return yaml.load(text, Loader=_loader())
    except yaml.YAMLError as error:
        raise Unreadable(" ".join(str(error).split())) from error


def dump(document: dict[str, Any], json_format: bool) -> str:
    if json_format:
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    yaml = _yaml()
    text: str = yaml.dump(
        document, Dumper=_dumper(), sort_keys=False, allow_unicode=True, width=100
    )
    return text


def write(document: dict[str, Any], out: Path) -> list[Path]:
    """To one file (``.yaml``, ``.yml``, ``.json``), or to ``segments.yaml``,
    ``templates.yaml`` and ``journeys.yaml`` in a directory."""
    if out.suffix in SUFFIXES and not out.is_dir():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(dump(document, out.suffix == ".json"), encoding="utf-8")
        return [out]
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in KINDS:
        target = out / f"{kind}.yaml"
        target.write_text(dump({kind: document.get(kind, [])}, False), encoding="utf-8")
        written.append(target)
    return written


def _yaml() -> Any:
    try:
        import yaml
    except ImportError as error:  # pragma: no cover - PyYAML comes with Kizuna's tools
        raise Unreadable("YAML needs PyYAML (pip install pyyaml); or use JSON") from error
    return yaml


# YAML 1.2's core schema: only true/false are booleans, no sexagesimal numbers (21:00 is
# text), no timestamps (a date stays the text the services take)
_BOOL_12 = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT_12 = re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$|^0x[0-9a-fA-F]+$")
_FLOAT_12 = re.compile(
    r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+][0-9]+)?$"
    r"|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"
)  # a subset of YAML 1.1's, so what PyYAML writes unquoted reads back as it was
_ODD_BREAKS = frozenset("\x85\u2028\u2029\r")  # kept only in double quotes
_REPLACED = {
    "tag:yaml.org,2002:bool": (_BOOL_12, list("tTfF")),
    "tag:yaml.org,2002:int": (_INT_12, list("-+0123456789")),
    "tag:yaml.org,2002:float": (_FLOAT_12, list("-+0123456789.")),
    "tag:yaml.org,2002:timestamp": None,
}


@cache
def _loader() -> type[Any]:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in _REPLACED]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    for tag, rule in _REPLACED.items():
        if rule is not None:
            Loader.add_implicit_resolver(tag, rule[0], rule[1])
    return Loader


@cache
def _dumper() -> type[Any]:
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = '"' if _ODD_BREAKS.intersection(value) else "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return Dumper
