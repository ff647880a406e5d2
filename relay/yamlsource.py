"""Hand-edited YAML -> Python data, with the line of every node and ${ENV} filled in.

Operators edit the config by hand, so every later error must point at a line:
we compose PyYAML's node tree, record ``path -> line`` while walking it,
substitute ``${VAR}`` / ``${VAR:-default}`` inside scalars (never in the raw
text, so a value with ``:`` or ``#`` cannot break the YAML), re-resolve the type
of plain scalars after substitution (``port: ${PORT:-8080}`` is an int), and
reject duplicate keys, which PyYAML would silently collapse.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import Problem

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$\$")


@dataclass
class Document:
    """Loaded data plus where each path came from."""

    data: Any
    file: str
    lines: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    #: Paths of plain scalars that ``${VAR}`` substitution turned into a non-string.
    retyped: set[str] = field(default_factory=set)
    #: Values substituted from variables whose name says they are secret (``*_TOKEN``,
    #: ``*_KEY``, ``*_SECRET``, ``*PASSWORD*``...): masked wherever they could show.
    secrets: set[str] = field(default_factory=set)

    def line(self, path: str) -> int | None:
        return line_of(self.lines, path)

    def problem(self, path: str, message: str) -> Problem:
        return Problem(self.file, self.line(path), path, message)


def line_of(lines: Mapping[str, int], path: str) -> int | None:
    """The line of ``path`` or of its nearest ancestor that has one."""
    while path:
        if path in lines:
            return lines[path]
        path = _parent(path)
    return lines.get("")


def _parent(path: str) -> str:
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""


def _child(path: str, key: object) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|PASSWD|API_?KEY|_KEY$|^KEY$|AUTH|CREDENTIAL", re.I)


def secret_name(variable: str) -> bool:
    """Whether a variable's name says it holds a secret (``CRM_TOKEN``, ``AMPLITUDE_API_KEY``)."""
    return _SECRET_NAME.search(variable) is not None


def interpolate(
    text: str, env: Mapping[str, str], secrets: set[str] | None = None
) -> tuple[str, list[str]]:
    """Fill ``${VAR}``/``${VAR:-default}``/``${VAR-default}``; ``$$`` is a literal ``$``.

    Returns the text and the names that had no value (unset or empty, no default);
    values taken from secret-named variables are added to ``secrets``.
    """
    missing: list[str] = []

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, default = m.group(1), m.group(2), m.group(3)
        value = env.get(name)
        if op == ":-" and not value:
            return default or ""
        if op == "-" and value is None:
            return default or ""
        if op is None and not value:
            missing.append(name)
            return ""
        if value and secrets is not None and secret_name(name):
            secrets.add(value)
        return value or ""

    return _ENV.sub(sub, text), missing


class _Loader(yaml.SafeLoader):
    """SafeLoader; the tree walk below does the rest."""


def load(text: str, file: str, env: Mapping[str, str] | None = None) -> Document:
    """Parse ``text``; syntax errors and missing variables land in ``problems``."""
    env = os.environ if env is None else env
    doc = Document(data=None, file=file)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:  # nothing but blank lines and comments: data stays None, like `null`
            return doc
        _walk(node, "", doc, loader, env, {})
        doc.data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        context = exc.context or ""
        if context and exc.context_mark and exc.context_mark.line + 1 != line:
            context += f" on line {exc.context_mark.line + 1}"
        reason = ": ".join(str(x) for x in (context, exc.problem) if x)
        doc.problems.append(Problem(file, line, "", f"invalid YAML: {reason}"))
    except yaml.YAMLError as exc:
        doc.problems.append(Problem(file, None, "", f"invalid YAML: {exc}"))
    except RecursionError:
        doc.problems.append(Problem(file, None, "", "invalid YAML: nested too deeply"))
    except (ValueError, TypeError) as exc:  # e.g. a timestamp YAML cannot construct
        doc.problems.append(Problem(file, None, "", f"invalid YAML value: {exc}"))
    finally:
        loader.dispose()
    return doc


def _walk(
    node: yaml.Node,
    path: str,
    doc: Document,
    loader: _Loader,
    env: Mapping[str, str],
    walking: dict[int, bool],
) -> None:
    doc.lines.setdefault(path, node.start_mark.line + 1)
    # An alias is the anchored node itself: walk each node once, so a value from
    # the environment is never substituted twice, and refuse an anchor used inside itself.
    if id(node) in walking:
        if walking[id(node)]:
            raise yaml.composer.ComposerError(
                None, None, "found an alias to an anchor that contains it", node.start_mark
            )
        return
    walking[id(node)] = True
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            child = _child(path, key)
            line = key_node.start_mark.line + 1
            if key in seen and key != "<<":
                doc.problems.append(
                    Problem(doc.file, line, child, f"duplicate key (first on line {seen[key]})")
                )
            seen[key] = line
            doc.lines[child] = line
            _walk(value_node, child, doc, loader, env, walking)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, _child(path, i), doc, loader, env, walking)
    elif isinstance(node, yaml.ScalarNode) and "$" in node.value:
        value, missing = interpolate(node.value, env, doc.secrets)
        for name in missing:
            doc.problems.append(
                doc.problem(
                    path,
                    f"environment variable {name} is not set (write ${{{name}:-default}} "
                    "to make it optional)",
                )
            )
        if node.style is None and value:  # plain scalar: let YAML type the substituted text
            node.tag = loader.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
            if node.tag != "tag:yaml.org,2002:str":
                doc.retyped.add(path)
        node.value = value
    walking[id(node)] = False
