"""ParamsForm: a pipeline's params as a form, one typed field per param, validated by the param specs.

    form.set_params(catalog_entry["params"])   # {name: {type, default, required, secret, description, choices}}
    values = form.values()                      # typed values, or None with each error shown under its field

Fields by type: boolean → Switch, choices → Select, secret → password Input, integer/number → a numeric
Input, list/object → an Input taking JSON (a list also takes words, split like a shell), string → Input.
Required params are marked `*`. Values are checked with `agent.pipeline.spec.ParamSpec` (the hub checks
them again): an empty field means the pipeline's default, or "required param missing".
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Static, Switch

from agent.pipeline.spec import ParamSpec

__all__ = ["ParamsForm", "param_spec"]

_TYPE_ALIASES = {"int": "integer", "float": "number", "bool": "boolean", "str": "string", "dict": "object",
                 "array": "list"}
_SECRET_PLACEHOLDER = "***"


def param_spec(raw: dict[str, Any]) -> ParamSpec:
    """A catalog param (as the client gives it) as a `ParamSpec`; an unusable default is left out."""
    kind = str(raw.get("type") or "string")
    fields: dict[str, Any] = {
        "type": _TYPE_ALIASES.get(kind, kind), "required": bool(raw.get("required")),
        "secret": bool(raw.get("secret")), "description": str(raw.get("description") or ""),
        "choices": raw.get("choices") or None,
    }
    default = raw.get("default")
    if default is not None and not fields["required"] and not (fields["secret"] and default == _SECRET_PLACEHOLDER):
        fields["default"] = default
    try:
        return ParamSpec.model_validate(fields)
    except ValidationError:
        return ParamSpec.model_validate({**fields, "type": "string"})


def _shown(value: Any, kind: str) -> str:
    """A default as the text of its Input."""
    if kind in ("list", "object"):
        return json.dumps(value) if value else ""
    return "" if value is None else str(value)


class ParamsForm(VerticalScroll):
    """The params of one pipeline as typed fields, with an error line under each."""

    DEFAULT_CSS = """
    ParamsForm {
        height: 1fr;
        padding: 0 1;
        & .param-label { margin-top: 1; }
        & .param-error { color: $error; height: auto; }
        & .param-error.-empty { display: none; }
        & Switch { width: auto; }
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.specs: dict[str, ParamSpec] = {}
        self.errors: dict[str, str] = {}
        """The error shown under each field that has one."""

    async def set_params(self, params: dict[str, dict[str, Any]]) -> None:
        """Replace the fields by those of `params`."""
        self.specs = {name: param_spec(raw) for name, raw in params.items()}
        self.errors = {}
        await self.remove_children()
        widgets: list[Widget] = []
        for name, spec in self.specs.items():
            widgets.extend(self._field(name, spec))
        if not widgets:
            widgets.append(Static("this pipeline takes no params", classes="param-label"))
        await self.mount_all(widgets)

    def _field(self, name: str, spec: ParamSpec) -> ComposeResult:
        mark = " [b red]*[/]" if spec.required else ""
        about = f" [dim]{escape(spec.description)}[/]" if spec.description else ""
        yield Label(f"[b]{escape(name)}[/]{mark} [dim]({spec.type})[/]{about}", classes="param-label")
        yield self._input(name, spec)
        yield Static("", id=f"error-{name}", classes="param-error -empty")

    def _input(self, name: str, spec: ParamSpec) -> Widget:
        field_id = f"param-{name}"
        has_default = "default" in spec.model_fields_set
        default = spec.default_value() if has_default else None
        if spec.type == "boolean":
            return Switch(value=bool(default), id=field_id)
        if spec.choices:
            options = [(str(choice), choice) for choice in spec.choices]
            value = default if default in spec.choices else Select.NULL
            return Select(options, value=value, allow_blank=not has_default, id=field_id)
        kind = {"integer": "integer", "number": "number"}.get(spec.type, "text")
        hint = "JSON, or words" if spec.type == "list" else ("JSON" if spec.type == "object" else spec.type)
        return Input(_shown(default, spec.type) if has_default and not spec.secret else "",
                     placeholder="required" if spec.required else hint, password=spec.secret,
                     type=kind, id=field_id)  # type: ignore[arg-type]

    # --- values ----------------------------------------------------------------

    def values(self) -> dict[str, Any] | None:
        """Every filled-in param as its type; None when one is wrong (each error shown under its field)."""
        out: dict[str, Any] = {}
        ok = True
        for name, spec in self.specs.items():
            try:
                value = self._value(name, spec)
            except ValueError as exc:
                self._show_error(name, spec.refusal(exc))  # a secret's value is never quoted on screen
                ok = False
                continue
            self._show_error(name, "")
            if value is not None:
                out[name] = value
        return out if ok else None

    def _value(self, name: str, spec: ParamSpec) -> Any:
        widget = self.query_one(f"#param-{name}")
        if isinstance(widget, Switch):
            return widget.value
        raw: Any = widget.value if isinstance(widget, Select | Input) else None
        if raw is Select.NULL or raw == "" or raw is None:
            if spec.required:
                raise ValueError("required param missing")
            return None
        if spec.type in ("list", "object") and isinstance(raw, str) and raw.lstrip()[:1] in ("[", "{"):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON: {exc.msg} (column {exc.colno})") from None
        return spec.coerce(raw)

    def _show_error(self, name: str, message: str) -> None:
        error = self.query_one(f"#error-{name}", Static)
        error.update(escape(message))
        error.set_class(not message, "-empty")
        if message:
            self.errors[name] = message
        else:
            self.errors.pop(name, None)

