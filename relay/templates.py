"""Sandboxed Jinja2 templates that destinations fill from an event.

Operators write templates in the config (a Slack ``text``, an http ``body``); the
event is untrusted input. So templates run in Jinja's immutable sandbox, strict
about undefined names, and event text is only ever a *value*: it is never parsed
as a template. Mistakes a person can see before the relay runs (bad syntax, a
misspelt top-level name) are :class:`SpecError` at config load; failures that
depend on the event are :class:`RenderError` at send time, one line naming the
config path.

Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, meta, nodes
from jinja2.environment import Template, TemplateExpression
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from relay.errors import RenderError, SpecError

__all__ = [
    "ALLOWED_NAMES",
    "StructureTemplate",
    "TextTemplate",
    "compile_structure",
    "compile_text",
    "slack_escape",
]

_NAME_ORDER = ("event", "events", "group", "destination", "now")
#: The top-level names a template may use; destinations put exactly these in the context.
ALLOWED_NAMES = frozenset(_NAME_ORDER)
_NAMES_HINT = "names: " + ", ".join(_NAME_ORDER)
#: Render errors quote Jinja's message, which may quote event data: keep log lines short.
_MAX_ERROR_CHARS = 300


def slack_escape(text: str) -> str:
    """Escape Slack's three control characters so text can never become a mention or link.

    https://api.slack.com/reference/surfaces/formatting#escaping
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class _StrictUndefined(StrictUndefined):
    """Also fails when shown inside a list or dict (``{{ [event.typo] }}``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return self.__str__()


def _make_env(finalize: Callable[[Any], Any] | None = None) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        undefined=_StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=finalize,
    )
    # lipsum() can produce unbounded text and has no use in a webhook; the rest are harmless.
    env.globals.pop("lipsum", None)
    return env


_ENV = _make_env()


@functools.cache
def _env_for(escape: Callable[[str], str] | None) -> ImmutableSandboxedEnvironment:
    """One environment per escape function: ``finalize`` is baked into compiled code."""
    if escape is None:
        return _ENV

    def finalize(value: Any) -> str:
        # str() of a StrictUndefined raises, so undefined values still fail loudly.
        return escape(value if isinstance(value, str) else str(value))

    return _make_env(finalize)


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    if len(line) > _MAX_ERROR_CHARS:
        line = line[: _MAX_ERROR_CHARS - 1] + "…"
    return line


def _render_error(path: str, exc: Exception) -> RenderError:
    message = _one_line(str(exc))
    if not isinstance(exc, UndefinedError | SecurityError):
        message = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return RenderError(f"template at {path}: {message}")


def _parse(env: ImmutableSandboxedEnvironment, source: str, path: str) -> nodes.Template:
    """Parse and check names: everything a person can fix before the relay runs."""
    try:
        ast = env.parse(source)
    except TemplateSyntaxError as exc:
        raise _syntax_error(source, path, exc) from None
    try:
        names = meta.find_undeclared_variables(ast)  # runs the code generator: unknown filters
    except TemplateSyntaxError as exc:
        raise _syntax_error(source, path, exc) from None
    unknown = sorted(names - ALLOWED_NAMES)
    if unknown:
        listed = ", ".join(repr(n) for n in unknown)
        noun = "name" if len(unknown) == 1 else "names"
        raise SpecError(path, f"unknown {noun} {listed} in template ({_NAMES_HINT})")
    if any(True for _ in meta.find_referenced_templates(ast)):
        raise SpecError(path, "a template cannot include, import or extend other templates")
    return ast


def _syntax_error(source: str, path: str, exc: TemplateSyntaxError) -> SpecError:
    message = _one_line(exc.message or "invalid template")
    if "\n" in source.rstrip("\n") and exc.lineno:
        message = f"{message} (line {exc.lineno} of the template)"
    return SpecError(path, f"template syntax error: {message}")


def _compile(
    env: ImmutableSandboxedEnvironment, ast: nodes.Template | str, path: str, source: str
) -> Template:
    try:
        return env.from_string(ast)
    except TemplateSyntaxError as exc:  # unknown filter or test, found by the code generator
        raise _syntax_error(source, path, exc) from None


class TextTemplate:
    """A compiled template that renders to text (a Slack message, a header value)."""

    __slots__ = ("_template", "path", "source")

    def __init__(self, template: Template, source: str, path: str) -> None:
        self._template = template
        self.source = source
        self.path = path

    def render(self, context: Mapping[str, Any]) -> str:
        """Render; any failure is one :class:`RenderError` line naming the config path."""
        try:
            return self._template.render(dict(context))
        except Exception as exc:
            raise _render_error(self.path, exc) from None

    def __repr__(self) -> str:
        return f"TextTemplate({self.path!r}, {self.source!r})"


def compile_text(
    source: str, path: str, *, escape: Callable[[str], str] | None = None
) -> TextTemplate:
    """Compile ``source`` once at config load.

    With ``escape``, every ``{{ }}`` output goes through it (event values are
    escaped) while text the operator typed in the template stays as written.
    """
    env = _env_for(escape)
    ast = _parse(env, source, path)
    return TextTemplate(_compile(env, ast, path, source), source, path)


# -- structures (an http body, Slack blocks) -----------------------------------------------

_Node = Callable[[Mapping[str, Any]], Any]


def _single_expression(ast: nodes.Template) -> nodes.Expr | None:
    """The expression of a leaf written as ``{{ expr }}`` alone (whitespace around is fine)."""
    if len(ast.body) != 1 or not isinstance(ast.body[0], nodes.Output):
        return None
    found: nodes.Expr | None = None
    for node in ast.body[0].nodes:
        if isinstance(node, nodes.TemplateData):
            if node.data.strip():
                return None
        elif found is None:
            found = node
        else:
            return None
    return found


_SEQUENCES = (list, tuple, range, set, frozenset, KeysView, ValuesView, ItemsView, Iterator)


def _to_data(value: Any, path: str, escape: Callable[[str], str] | None) -> Any:
    """Make a native expression result JSON data, or fail naming what it is."""
    if isinstance(value, Undefined):
        str(value)  # raises the UndefinedError that says what was missing
        raise RenderError(f"template at {path}: undefined value")
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return escape(value) if escape else str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        text = value.isoformat()
        return escape(text) if escape else text
    if isinstance(value, Mapping):
        return {str(k): _to_data(v, path, escape) for k, v in value.items()}
    if isinstance(value, _SEQUENCES):
        return [_to_data(v, path, escape) for v in value]
    raise RenderError(
        f"template at {path}: expression gives a {type(value).__name__}, not JSON data"
    )


def _expression_node(
    env: ImmutableSandboxedEnvironment,
    expr: nodes.Expr,
    source: str,
    path: str,
    escape: Callable[[str], str] | None,
) -> _Node:
    # What Environment.compile_expression builds, from the node we already parsed.
    body = [nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)]
    tree = nodes.Template(body, lineno=1)
    tree.set_environment(env)
    template = _compile(env, tree, path, source)
    expression = TemplateExpression(template, False)  # False: an undefined result is an error

    def render(context: Mapping[str, Any]) -> Any:
        try:
            return _to_data(expression(context), path, escape)
        except RenderError:
            raise
        except Exception as exc:
            raise _render_error(path, exc) from None

    return render


def _text_node(template: TextTemplate) -> _Node:
    return template.render


def _constant(value: object) -> _Node:
    return lambda _context: value


def _key_path(path: str, key: object) -> str:
    """Paths as the config loader writes them: ``body.items[2].email``."""
    return f"{path}.{key}" if path else str(key)


def _compile_node(value: object, path: str, escape: Callable[[str], str] | None) -> _Node:
    if isinstance(value, str):
        env = _env_for(escape)
        ast = _parse(env, value, path)
        expr = _single_expression(ast)
        if expr is not None:
            return _expression_node(_ENV, expr, value, path, escape)
        return _text_node(TextTemplate(_compile(env, ast, path, value), value, path))
    if isinstance(value, Mapping):
        items = [(k, _compile_node(v, _key_path(path, k), escape)) for k, v in value.items()]
        return lambda context: {k: node(context) for k, node in items}
    if isinstance(value, list | tuple):
        elements = [_compile_node(v, f"{path}[{i}]", escape) for i, v in enumerate(value)]
        return lambda context: [node(context) for node in elements]
    return _constant(value)


class StructureTemplate:
    """YAML data whose string leaves are templates; renders to JSON-ready data."""

    __slots__ = ("_root", "path")

    def __init__(self, root: _Node, path: str) -> None:
        self._root = root
        self.path = path

    def render(self, context: Mapping[str, Any]) -> Any:
        """Render every leaf; a failing leaf is a :class:`RenderError` naming its own path."""
        return self._root(dict(context))

    def __repr__(self) -> str:
        return f"StructureTemplate({self.path!r})"


def compile_structure(
    value: object, path: str, *, escape: Callable[[str], str] | None = None
) -> StructureTemplate:
    """Compile every string leaf of ``value`` once at config load; keys stay plain.

    A leaf that is one ``{{ expr }}`` alone keeps the expression's type (an int
    stays an int, ``events`` stays a list); other leaves render to text. With
    ``escape`` (Slack blocks), every string that comes out of an expression is
    escaped, while text the operator typed stays as written.
    """
    return StructureTemplate(_compile_node(value, path, escape), path)
