"""The template sandbox, shared by `mailctl send` (which checks) and the sender (which renders).

Templates are Jinja2 in a SandboxedEnvironment, with undefined variables as errors and no loader,
so a template can reach neither Python internals nor files. The html part autoescapes recipient
data; subject, text and the unsubscribe URL do not (they are not HTML). A static check refuses
`include`/`import`/`extends` and underscore attributes before anything is rendered, so a hostile
template is an error at the desk rather than a poison message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

# Parts of a bundle that are templates, in the order they are checked and rendered.
TEMPLATE_PARTS = ("subject", "html", "text", "unsubscribe_url")


class TemplateProblem(ValueError):
    """A template that cannot be used: `part` names it, `line` points into it when known."""

    def __init__(self, part: str, message: str, line: int | None = None):
        self.part = part
        self.line = line
        self.message = message
        where = f"{part}, line {line}" if line else part
        super().__init__(f"{where}: {message}")


def _environment(autoescape: bool) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=autoescape,
        keep_trailing_newline=True,
        loader=None,
    )


_PLAIN = _environment(autoescape=False)
_HTML = _environment(autoescape=True)


def _env_for(part: str) -> ImmutableSandboxedEnvironment:
    return _HTML if part == "html" else _PLAIN


def _refuse_unsafe(part: str, tree: nodes.Template) -> None:
    for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        raise TemplateProblem(part, f"'{type(node).__name__.lower()}' is not allowed: templates cannot read files", node.lineno)
    for node in tree.find_all(nodes.Getattr):
        if node.attr.startswith("_"):
            raise TemplateProblem(part, f"attribute '{node.attr}' is not allowed in the sandbox", node.lineno)
    for node in tree.find_all(nodes.Getitem):
        if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str) and node.arg.value.startswith("_"):
            raise TemplateProblem(part, f"attribute '{node.arg.value}' is not allowed in the sandbox", node.lineno)


def compile_text(part: str, source: str) -> tuple[Template, frozenset[str]]:
    """A one-line plain-text template (an attachment's location or filename) and its variables,
    checked like the bundle's parts."""
    try:
        tree = _PLAIN.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(part, exc.message or "syntax error", exc.lineno) from None
    _refuse_unsafe(part, tree)
    return _PLAIN.from_string(tree), frozenset(meta.find_undeclared_variables(tree))


def render_text(template: Template, part: str, variables: dict[str, Any]) -> str:
    try:
        return template.render(variables)
    except UndefinedError as exc:
        raise TemplateProblem(part, f"undefined variable: {exc.message}") from None
    except SecurityError as exc:
        raise TemplateProblem(part, f"refused by the sandbox: {exc}") from None


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str | None
    text: str | None
    unsubscribe_url: str | None


class TemplateSet:
    """The compiled templates of one bundle. Construction checks syntax and safety."""

    def __init__(self, sources: dict[str, str | None]):
        self.sources = {part: sources.get(part) for part in TEMPLATE_PARTS}
        self._compiled = {}
        self.variables: frozenset[str] = frozenset()
        used: set[str] = set()
        self.part_variables: dict[str, frozenset[str]] = {}
        for part, source in self.sources.items():
            if source is None:
                continue
            env = _env_for(part)
            try:
                tree = env.parse(source)
            except TemplateSyntaxError as exc:
                raise TemplateProblem(part, exc.message or "syntax error", exc.lineno) from None
            _refuse_unsafe(part, tree)
            names = meta.find_undeclared_variables(tree)
            self.part_variables[part] = frozenset(names)
            used |= names
            self._compiled[part] = env.from_string(tree)
        self.variables = frozenset(used)
        # Variables whose values end up in a header (Subject, List-Unsubscribe): no control characters.
        self.header_variables = self.part_variables.get("subject", frozenset()) | self.part_variables.get("unsubscribe_url", frozenset())
        # Occurrences per variable, to bound a rendered message's size without rendering it.
        self.uses = {name: sum((s or "").count(name) for s in self.sources.values()) for name in self.variables}
        self.static_size = sum(len((s or "").encode()) for s in self.sources.values())

    def render(self, variables: dict[str, Any], parts: tuple[str, ...] = TEMPLATE_PARTS) -> Rendered:
        """The given parts rendered (the others None)."""
        out: dict[str, str | None] = dict.fromkeys(TEMPLATE_PARTS)
        for part in parts:
            template = self._compiled.get(part)
            if template is None:
                out[part] = None
                continue
            out[part] = render_text(template, part, variables)
        return Rendered(subject=out["subject"] or "", html=out["html"], text=out["text"], unsubscribe_url=out["unsubscribe_url"])

    def estimated_size(self, variables: dict[str, Any]) -> int:
        """An upper-bound estimate of the rendered size in bytes, cheap enough for every row."""
        total = self.static_size
        for name, count in self.uses.items():
            value = variables.get(name)
            if value is not None:
                total += len(str(value).encode()) * max(count, 1)
        return total
