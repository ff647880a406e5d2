"""Load `relay.yaml` once into a validated, compiled, immutable config.

Everything an operator can get wrong is found here, at load, with the file,
line and document path (``config/relay.yaml:14: routes[1].to[0]: unknown
destination 'crn'``), so the rest of the relay trusts what it is given:
schema errors (msgspec), rule errors (:mod:`relay.rules`), template errors
(:mod:`relay.templates`) and cross references.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from . import rules, yamlsource
from .destinations import Destination, compile_destination
from .errors import ConfigError, Problem, SpecError
from .masking import SecretMasker
from .model import DOCUMENTED_EVENT_NAMES
from .netfilter import IpPolicy, parse_networks
from .patterns import Budget
from .routing import CompiledRoute, RouteTable
from .settings import Config, Name
from .settings import Destination as DestinationSpec
from .templates import TextTemplate, compile_text
from .units import dec_hook, enc_hook, schema_hook

DEFAULT_PATH = "config/relay.yaml"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_AT = re.compile(
    r"^(?P<msg>.*?)(?: - at `(?P<key>key)` in `\$(?P<kpath>[^`]*)`"
    r"| - at `\$(?P<path>[^`]*)`)?$",
    re.S,
)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]+)`$")
# An empty file is what a save caught half-way (or a wrong mount) looks like, and loading it
# would run with no token, no route and no destination: never a config, even on purpose.
EMPTY = (
    "the config file is empty (only blank lines, comments or null); it would run with"
    " no token, no route and no destination"
)
NO_ROUTES = (
    "no route: every event is accepted and delivered nowhere"
    " (set reload.allow_no_routes: true if that is meant)"
)


@dataclass(frozen=True)
class RelayConfig:
    """The validated config and what was compiled from it."""

    source: str
    settings: Config
    destinations: Mapping[str, Destination]
    table: RouteTable
    warnings: tuple[Problem, ...] = ()
    secrets: frozenset[str] = field(default_factory=frozenset)
    ip_policy: IpPolicy = field(default_factory=IpPolicy)
    #: Document path -> line in the file, so a check made later (reload) can name a line too.
    lines: Mapping[str, int] = field(default_factory=dict)

    @functools.cached_property
    def masker(self) -> SecretMasker:
        """Masks every configured secret: logs, stored errors and answers, the console."""
        return SecretMasker(self.secrets)

    def summary(self) -> str:
        return f"ok: {len(self.table.routes)} routes, {len(self.destinations)} destinations"

    def problem(self, path: str, message: str) -> Problem:
        """A problem at ``path`` of this config's file, located like a load error."""
        return Problem(self.source, yamlsource.line_of(self.lines, path), path, message)


def default_path() -> str:
    """``$RELAY_CONFIG``, else ``config/relay.yaml`` (CONTRACT section 2)."""
    return os.environ.get("RELAY_CONFIG") or DEFAULT_PATH


def load_config(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> RelayConfig:
    """Read and compile the config file; raise :class:`ConfigError` listing every problem."""
    file = str(path) if path is not None else default_path()
    return parse_config(read_config(file), file, env)


def read_config(file: str) -> bytes:
    """The file's bytes, read once (reload fingerprints exactly what it parses)."""
    try:
        return Path(file).read_bytes()
    except FileNotFoundError:
        raise ConfigError([Problem(file, None, "", "config file not found")]) from None
    except OSError as exc:
        raise ConfigError([Problem(file, None, "", f"cannot read config file: {exc}")]) from None


def parse_config(
    text: str | bytes, file: str = "<config>", env: Mapping[str, str] | None = None
) -> RelayConfig:
    """Like :func:`load_config`, from the file's content (tests and reload use it directly)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(
                [Problem(file, None, "", f"cannot read config file: {exc}")]
            ) from None
    doc = yamlsource.load(text, file, env)
    if doc.problems and doc.data is None and text.lstrip("\ufeff").strip():
        raise ConfigError(doc.problems)
    data = doc.data
    if data is None:  # also whitespace only, which YAML may call invalid (a tab)
        raise ConfigError([Problem(file, None, "", EMPTY)])
    if not isinstance(data, dict):
        raise ConfigError([doc.problem("", "expected a mapping at the top of the file")])
    problems = list(doc.problems)
    settings = _convert(data, doc, problems)
    if settings is None or problems:
        raise ConfigError(problems)
    return _compile(settings, doc, problems)


def _convert(
    data: dict[str, Any], doc: yamlsource.Document, problems: list[Problem]
) -> Config | None:
    """Schema validation; destinations one by one so errors name the destination."""
    raw_dest = data.get("destinations") or {}
    if not isinstance(raw_dest, dict):
        problems.append(doc.problem("destinations", "expected a mapping of name: destination"))
        raw_dest = {}
    try:
        settings = msgspec.convert({**data, "destinations": {}}, Config, dec_hook=dec_hook)
    except msgspec.ValidationError as exc:
        problems.append(_located(exc, "", doc))
        return None
    destinations: dict[str, DestinationSpec] = {}
    for name, spec in raw_dest.items():
        path = f"destinations.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append(doc.problem(path, "destination names use letters, digits, _ . -"))
            continue
        try:
            destinations[name] = msgspec.convert(spec, DestinationSpec, dec_hook=dec_hook)
        except msgspec.ValidationError as exc:
            problems.append(_located(exc, path, doc))
    return msgspec.structs.replace(settings, destinations=destinations)


def _located(exc: msgspec.ValidationError, prefix: str, doc: yamlsource.Document) -> Problem:
    m = _AT.match(str(exc))
    assert m is not None
    message, sub = m.group("msg"), (m.group("path") or m.group("kpath") or "")
    if m.group("key"):  # e.g. YAML reads an unquoted `on:` or `yes:` key as a boolean
        message = f"{message} for a key; quote the key"
    path = prefix + sub if sub.startswith("[") or not prefix else f"{prefix}{sub}"
    path = path.lstrip(".")
    unknown = _UNKNOWN.match(message)
    if unknown:
        path = f"{path}.{unknown.group('key')}".lstrip(".")
        message = f"unknown key '{unknown.group('key')}'"
    elif message.startswith("Invalid value") and path.endswith(".type"):
        message += " (expected one of: slack, http, log)"
    elif message.startswith("Object missing required field"):
        message = "missing required key " + message.split("`")[1].join("''")
    elif message.startswith("Expected `str`") and path in doc.retyped:
        message += ' (YAML does not read the substituted value as text; quote it: "${...}")'
    return doc.problem(path, message)


def _compile(settings: Config, doc: yamlsource.Document, problems: list[Problem]) -> RelayConfig:
    warnings: list[Problem] = []
    destinations: dict[str, Destination] = {}
    for name, spec in settings.destinations.items():
        path = f"destinations.{name}"
        try:
            dest = compile_destination(name, spec, path)
        except SpecError as exc:
            problems.append(doc.problem(exc.path, exc.message))
            continue
        destinations[name] = dest
        problems.extend(_circuit_problems(spec, path, doc))
        if not dest.enabled:
            warnings.append(
                doc.problem(
                    path,
                    f"destination '{name}' is disabled"
                    f" ({dest.disabled_reason}); routes to it send nothing",
                )
            )

    routes: list[CompiledRoute] = []
    seen: dict[str, int] = {}
    budget = Budget()  # what all the routes' regexes and globs may compile to, together
    for i, route in enumerate(settings.routes):
        path = f"routes[{i}]"
        if route.name in seen:
            problems.append(
                doc.problem(
                    f"{path}.name",
                    f"duplicate route name '{route.name}' (also routes[{seen[route.name]}])",
                )
            )
        seen.setdefault(route.name, i)
        for j, target in enumerate(route.to):
            if target not in settings.destinations:
                hint = _did_you_mean(target, settings.destinations)
                problems.append(
                    doc.problem(f"{path}.to[{j}]", f"unknown destination '{target}'{hint}")
                )
        when, mistakes = rules.compile_when_reporting(route.when, f"{path}.when", budget)
        problems.extend(doc.problem(exc.path, exc.message) for exc in mistakes)
        if mistakes:
            continue
        warnings.extend(_event_name_warnings(route.when, f"{path}.when", doc))
        if route.group is not None:
            problems.extend(_group_problems(route, path, doc, warnings))
        order_by = _order_by(route, path, doc, problems)
        routes.append(
            CompiledRoute(
                name=route.name,
                when=when,
                to=tuple(route.to),
                stop=route.stop,
                group=route.group,
                order_by=order_by,
            )
        )
    problems.extend(_alerts_problems(settings, doc))
    problems.extend(_console_path_problems(settings, doc))
    if settings.queue.heartbeat < 0.05:
        problems.append(doc.problem("queue.heartbeat", "must be at least 50ms"))
    ip_policy = IpPolicy()
    try:
        ip_policy = IpPolicy(
            parse_networks(settings.server.allow_ips, "server.allow_ips"),
            parse_networks(settings.server.trusted_proxies, "server.trusted_proxies"),
        )
    except SpecError as exc:
        problems.append(doc.problem(exc.path, exc.message))
    if problems:
        raise ConfigError(problems)
    if not routes and not settings.reload.allow_no_routes:
        warnings.append(doc.problem("routes", NO_ROUTES))
    secrets = {settings.server.token, settings.server.admin_token} - {""}
    secrets |= {s for s in doc.secrets if len(s) >= 4}
    for dest in destinations.values():
        secrets |= dest.secrets
    return RelayConfig(
        source=doc.file,
        settings=settings,
        destinations=destinations,
        table=RouteTable(tuple(routes), frozenset(n for n, d in destinations.items() if d.enabled)),
        warnings=tuple(warnings),
        secrets=frozenset(s for s in secrets if s),
        ip_policy=ip_policy,
        lines=doc.lines,
    )


#: Paths the app serves whatever the config says; the console may not take one of them.
FIXED_PATHS = ("/api", "/healthz", "/readyz", "/metrics", "/schema")


def _console_path_problems(settings: Config, doc: yamlsource.Document) -> list[Problem]:
    console = settings.server.console_path.rstrip("/")
    for path in (settings.server.path.rstrip("/") or "/", *FIXED_PATHS):
        if path == "/":  # a receiver at the root leaves every other path free
            continue
        if console == path or console.startswith(path + "/") or path.startswith(console + "/"):
            return [
                doc.problem("server.console_path", f"overlaps {path!r}, which the relay serves")
            ]
    return []


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _event_name_warnings(when: Any, path: str, doc: yamlsource.Document) -> list[Problem]:
    out = []
    for at, value in rules.literal_comparisons(when, "event_name", path):
        if isinstance(value, str) and value not in DOCUMENTED_EVENT_NAMES:
            hint = _did_you_mean(value, DOCUMENTED_EVENT_NAMES)
            out.append(
                doc.problem(
                    at,
                    f"'{value}' is not an event name Pushwoosh documents"
                    f"{hint}; it still matches events that carry it",
                )
            )
    return out


def _order_by(
    route: Any, path: str, doc: yamlsource.Document, problems: list[Problem]
) -> TextTemplate | None:
    """The compiled ``order_by`` key template; it sees ``event`` only."""
    if route.order_by is None:
        return None
    if route.group is not None:
        problems.append(
            doc.problem(
                f"{path}.order_by",
                "order_by and group cannot be combined: a group goes out as one delivery",
            )
        )
        return None
    try:
        return compile_text(route.order_by, f"{path}.order_by")
    except SpecError as exc:
        problems.append(doc.problem(exc.path, exc.message))
        return None


def _circuit_problems(spec: DestinationSpec, path: str, doc: yamlsource.Document) -> list[Problem]:
    breaker = spec.breaker()
    if breaker is None:
        return []
    at = f"{path}.circuit"
    problems = [
        doc.problem(f"{at}.{key}", "must be a positive duration")
        for key in ("window", "cooldown")
        if getattr(breaker, key) <= 0
    ]
    if breaker.max_cooldown < breaker.cooldown:
        problems.append(doc.problem(f"{at}.max_cooldown", "must be at least the cooldown"))
    return problems


def _alerts_problems(settings: Config, doc: yamlsource.Document) -> list[Problem]:
    if settings.alerts is None:
        return []
    return [
        doc.problem(
            f"alerts.to[{i}]",
            f"unknown destination '{name}'{_did_you_mean(name, settings.destinations)}",
        )
        for i, name in enumerate(settings.alerts.to)
        if name not in settings.destinations
    ]


def _group_problems(
    route: Any, path: str, doc: yamlsource.Document, warnings: list[Problem]
) -> list[Problem]:
    from .model import EVENT_FIELDS

    group = route.group
    problems = []
    for key in ("wait", "interval"):
        if getattr(group, key) <= 0:
            problems.append(doc.problem(f"{path}.group.{key}", "must be a positive duration"))
    for i, name in enumerate(group.by):
        if name not in EVENT_FIELDS:
            warnings.append(
                doc.problem(
                    f"{path}.group.by[{i}]",
                    f"'{name}' is not a documented event field{_did_you_mean(name, EVENT_FIELDS)};"
                    " events without it form their own group",
                )
            )
    return problems


def json_schema() -> dict[str, Any]:
    """JSON Schema of the config file, from the same types that validate it."""
    # msgspec writes each field's default with a to_builtins() that has no enc_hook, and
    # fails on our Duration/Rate defaults; lend it ours, which spells them as the config does.
    from msgspec import _json_schema

    plain = _json_schema.to_builtins  # type: ignore[attr-defined]
    _json_schema.to_builtins = functools.partial(plain, enc_hook=enc_hook)  # type: ignore[attr-defined]
    try:
        schema: dict[str, Any] = msgspec.json.schema(Config, schema_hook=schema_hook)
    finally:
        _json_schema.to_builtins = plain  # type: ignore[attr-defined]
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "pushwoosh-relay config"
    _dedent_descriptions(schema)
    return schema


def _dedent_descriptions(node: Any) -> None:
    """Docstrings as descriptions, dedented: msgspec 0.23 dedents them, 0.22 does not, and
    the shipped schema file must not depend on which one is installed."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                node[key] = inspect.cleandoc(value)
            else:
                _dedent_descriptions(value)
    elif isinstance(node, list):
        for item in node:
            _dedent_descriptions(item)


__all__ = [
    "DEFAULT_PATH",
    "ConfigError",
    "Name",
    "RelayConfig",
    "default_path",
    "json_schema",
    "load_config",
    "parse_config",
    "read_config",
]
