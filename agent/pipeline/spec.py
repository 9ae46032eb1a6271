"""Pipeline YAML: the models, loading with every mistake reported, params, and a step's inputs.

    pipeline = load_pipeline(text, "platform-start.yaml")   # PipelineError(.problems) on any mistake
    params = pipeline.resolve_params({"image": "game/tiny:1", "port": "8080"})   # defaults, coercion
    inputs = step_inputs(pipeline.steps[0], scope)           # `with` rendered, then its action's model

`load_pipeline` reports every mistake at once, each with its field path and YAML line
(`steps[2].with.image: field required (platform-start.yaml:14)`): the models' own errors, unknown
actions, unknown or missing `with` keys (a `${...}` value counts as present; template-free values are
fully checked), duplicate step names, references to undeclared params, to steps that do not run
earlier or to unknown names, bad durations and bad param declarations.
"""

from __future__ import annotations

import copy
import math
import re
import shlex
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from agent.errors import PipelineError, Problem
from agent.pipeline.inputs import ACTIONS, FileRender, Inputs
from agent.pipeline.template import format_value, has_template, lookup, references, render

__all__ = [
    "API_VERSION",
    "BUILTINS",
    "DEFAULT_TIMEOUT",
    "MAX_BACKOFF",
    "Metadata",
    "ParamSpec",
    "ParamType",
    "Pipeline",
    "Retry",
    "Step",
    "load_pipeline",
    "parse_duration",
    "step_inputs",
]

API_VERSION = "gamenode/v1"
DEFAULT_TIMEOUT = 600.0
"""Seconds a step may run unless it says otherwise."""
MAX_BACKOFF = 30.0
"""The retry backoff doubles after each attempt up to this many seconds."""
BUILTINS = frozenset({"run.id", "instance.id", "instance.data_dir", "node.id"})
"""Names every template may use besides `params.*` and `steps.*.outputs.*`."""

_PARAM_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_STEP_NAME = r"^[a-z0-9][a-z0-9_-]*$"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

Loc = tuple[str | int, ...]


def parse_duration(value: Any) -> float:
    """Seconds in "250ms", "30s", "5m", "1h30m", "1.5h" or a number of seconds; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"not a duration: {value!r} (write 30s, 5m, 1h30m, 250ms or a number of seconds)")
    if isinstance(value, str):
        seconds = _parse_duration_text(value)
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a duration: {value!r} (must be a finite number of seconds, not negative)")
    return seconds


def _parse_duration_text(value: str) -> float:
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = list(_DURATION_PART.finditer(text))
    if not text or "".join(part.group(0) for part in parts) != text:
        raise ValueError(f"not a duration: {value!r} (write 30s, 5m, 1h30m, 250ms or a number of seconds)")
    return sum(float(part.group(1)) * _UNITS[part.group(2)] for part in parts)


def _when_text(value: Any) -> Any:
    """`when: true` / `when: 0` are fine too: scalars become their text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int | float) else value


Duration = Annotated[float, BeforeValidator(parse_duration)]
ParamType = Literal["string", "integer", "number", "boolean", "list", "object"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Metadata(_Model):
    name: Annotated[str, StringConstraints(pattern=_STEP_NAME)]
    description: str = ""
    instance: Literal["create", "stop", "use", "none"] = "none"
    """How the hub ties a run to an Instance: creates one, stops one, works on one, or none."""


class ParamSpec(_Model):
    type: ParamType = "string"
    required: bool = False
    default: Any = None
    """Without `default` (and not required) a param is the type's empty value: "", 0, false, [], {}."""
    description: str = ""
    secret: bool = False
    """Redact its value from logs, events and messages."""
    choices: list[Any] | None = None
    """The only values allowed (after coercion), e.g. `[tcp, http, log]`."""

    def default_value(self) -> Any:
        """The value when the caller gives none."""
        if "default" in self.model_fields_set:
            try:
                return self.coerce(copy.deepcopy(self.default))
            except ValueError:
                return copy.deepcopy(self.default)  # load_pipeline refuses such a default; a hand-built spec keeps it
        return {"string": "", "integer": 0, "number": 0.0, "boolean": False, "list": [], "object": {}}[self.type]

    def coerce(self, value: Any) -> Any:
        """`value` as this param's type ("8080" → 8080; "a b" → ["a", "b"] for a list); ValueError if not one."""
        coerced = _COERCERS[self.type](value)
        if self.choices is not None and coerced not in self.choices:
            raise ValueError(f"{coerced!r} is not one of {', '.join(map(str, self.choices))}")
        return coerced

    def refusal(self, error: ValueError) -> str:
        """Why a given value was refused: `error`'s message quotes the value, so a secret's is not used."""
        if not self.secret:
            return str(error)
        allowed = " among its choices" if self.choices is not None else ""
        return f"not a valid {self.type}{allowed} (the value of a secret param is not shown)"


def _fail(kind: str, value: Any) -> ValueError:
    shown = "null" if value is None else f"{type(value).__name__} {value!r}"
    return ValueError(f"expected {kind}, got {shown}")


def _as_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _fail("a string", value)


def _as_integer(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
        return int(value)
    raise _fail("an integer", value)


def _as_number(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            return number
    raise _fail("a number", value)


def _as_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    words = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
    if isinstance(value, str) and value.strip().lower() in words:
        return words[value.strip().lower()]
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _fail("a boolean", value)


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str):
        return shlex.split(value)
    raise _fail("a list", value)


def _as_object(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    raise _fail("an object", value)


_COERCERS: dict[str, Any] = {
    "string": _as_string, "integer": _as_integer, "number": _as_number,
    "boolean": _as_boolean, "list": _as_list, "object": _as_object,
}
_STRICT_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,), "list": (list,), "object": (dict,),
}


class Retry(_Model):
    attempts: Annotated[int, Field(ge=1)] = 1
    """Tries in all (1 = no retry)."""
    backoff: Annotated[Duration, Field(ge=0)] = 1.0
    """Seconds before the second try; doubled each retry, capped at MAX_BACKOFF."""

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number `attempt` (1-based)."""
        return float(min(self.backoff * 2 ** max(attempt - 1, 0), MAX_BACKOFF))


class Step(_Model):
    name: Annotated[str, StringConstraints(pattern=_STEP_NAME)]
    action: str
    """A key of `agent.pipeline.inputs.ACTIONS`."""
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    """The action's inputs, before substitution."""
    timeout: Annotated[Duration, Field(gt=0)] = DEFAULT_TIMEOUT
    """Seconds per try (DEFAULT_TIMEOUT when `timeout_template` is set: use `timeout_in(scope)`)."""
    timeout_template: str | None = None
    """A `timeout:` written as a template (`${params.health_timeout}`), rendered when the step runs."""
    retry: Retry = Field(default_factory=Retry)
    when: Annotated[str | None, BeforeValidator(_when_text)] = None
    """A template; the step runs when it renders truthy (or the `A == B` / `A != B` comparison holds)."""
    on_failure: list[Step] = Field(default_factory=list)
    """Cleanup steps run when this step fails (then the pipeline's own `on_failure`)."""

    @model_validator(mode="before")
    @classmethod
    def _templated_timeout(cls, data: Any) -> Any:
        timeout = data.get("timeout") if isinstance(data, dict) else None
        if isinstance(timeout, str) and "${" in timeout:
            data = {key: value for key, value in data.items() if key != "timeout"}
            data["timeout_template"] = timeout
        return data

    @field_validator("action")
    @classmethod
    def _known_action(cls, value: str) -> str:
        if value not in ACTIONS:
            raise ValueError(f"unknown action {value!r} (known: {', '.join(sorted(ACTIONS))})")
        return value

    def timeout_in(self, scope: Mapping[str, Any]) -> float:
        """Seconds per try, with a templated timeout rendered in the scope; PipelineError if it is not a duration."""
        if self.timeout_template is None:
            return self.timeout
        path = f"steps.{self.name}.timeout"
        try:
            seconds = parse_duration(render(self.timeout_template, scope, path))
        except ValueError as exc:
            raise PipelineError([Problem(path, str(exc))]) from None
        if seconds <= 0:
            raise PipelineError([Problem(path, f"must be more than 0 s, not {self.timeout_template!r} = {seconds:g}")])
        return seconds


class Pipeline(_Model):
    api_version: Literal["gamenode/v1"] = Field("gamenode/v1", alias="apiVersion")
    kind: Literal["Pipeline"] = "Pipeline"
    metadata: Metadata
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    steps: Annotated[list[Step], Field(min_length=1)]
    on_failure: list[Step] = Field(default_factory=list)
    """Cleanup steps run when the run fails or is cancelled."""

    def resolve_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Every declared param: given values coerced to their type, defaults for the rest.

        PipelineError lists every unknown param, missing required param and value of the wrong type.
        """
        problems = [Problem(f"params.{name}", f"unknown param (this pipeline takes: {', '.join(self.params)})")
                    for name in given if name not in self.params]
        values: dict[str, Any] = {}
        for name, spec in self.params.items():
            if name in given:
                try:
                    values[name] = spec.coerce(given[name])
                except ValueError as exc:
                    problems.append(Problem(f"params.{name}", spec.refusal(exc)))
            elif spec.required:
                problems.append(Problem(f"params.{name}", "required param missing"))
            else:
                values[name] = spec.default_value()
        if problems:
            raise PipelineError(problems)
        return values

    def secret_values(self, params: Mapping[str, Any]) -> list[str]:
        """The non-empty values of secret params, as text, to redact."""
        found = [format_value(params.get(name)) for name, spec in self.params.items() if spec.secret]
        return [value for value in found if value]

    def all_steps(self) -> Iterator[Step]:
        """Every step, cleanup steps included, in file order."""
        for step in self.steps:
            yield step
            yield from step.on_failure
        yield from self.on_failure


# --- step inputs at run time ---------------------------------------------------------------------------------


def step_inputs(step: Step, scope: Mapping[str, Any]) -> Inputs:
    """Render the step's `with` in the scope, then validate it with its action's model.

    For file.render the `template` is rendered with `${vars.x}` too; when it is exactly one reference
    (`${params.config_template}`), the referenced text is the template. PipelineError names the field.
    """
    model = ACTIONS[step.action]
    path = f"steps.{step.name}.with"
    values = _render_file_inputs(step, scope, path) if model is FileRender else render(step.with_, scope, path)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise PipelineError(_merged([Problem(_join(path, _data_loc(values, err["loc"])), _message(err["msg"]))
                                     for err in exc.errors()])) from None


def _render_file_inputs(step: Step, scope: Mapping[str, Any], path: str) -> dict[str, Any]:
    raw = dict(step.with_)
    template = raw.pop("template", None)
    values: dict[str, Any] = render(raw, scope, path)
    if template is None:
        return values
    variables = values.get("vars")
    inner = {**scope, "vars": variables if isinstance(variables, Mapping) else {}}
    text = template
    if isinstance(template, str) and re.fullmatch(r"\$\{[^{}]*\}", template.strip()):
        text = lookup(inner, template.strip()[2:-1].strip(), f"{path}.template")
    values["template"] = render(text, inner, f"{path}.template")
    return values


# --- loading -------------------------------------------------------------------------------------------------


def load_pipeline(text: str, source: str = "<inline>") -> Pipeline:
    """Parse and check a pipeline; PipelineError with every problem (path, message, line) otherwise."""
    data, lines = _parse_yaml(text, source)
    checker = _Checker(data, lines, source)
    problems = checker.check()
    pipeline: Pipeline | None = None
    try:
        pipeline = Pipeline.model_validate(data)
    except ValidationError as exc:
        problems.extend(checker.from_validation(exc))
    if problems or pipeline is None:
        ordered = sorted(dict.fromkeys(problems), key=lambda p: (p.line or 0))
        raise PipelineError(ordered)
    return pipeline


def _parse_yaml(text: str, source: str) -> tuple[dict[str, Any], dict[Loc, int]]:
    """The document (a mapping) and the line of every mapping key and sequence item, by location."""
    loader = yaml.CSafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
        line = mark.line + 1 if mark else None
        raise PipelineError([Problem("", f"invalid YAML: {message}", line, source)]) from None
    except yaml.YAMLError as exc:
        raise PipelineError([Problem("", f"invalid YAML: {exc}", None, source)]) from None
    finally:
        loader.dispose()
    if node is None:
        raise PipelineError([Problem("", "the pipeline is empty", None, source)])
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
        raise PipelineError([Problem("", f"a pipeline is a mapping (apiVersion, kind, metadata, params, steps), "
                                         f"not {kind}", node.start_mark.line + 1, source)])
    lines: dict[Loc, int] = {(): node.start_mark.line + 1}
    duplicates: list[Problem] = []
    _record_lines(node, (), lines, duplicates, source)
    if duplicates:
        raise PipelineError(duplicates)
    return data, lines


def _record_lines(node: yaml.Node, loc: Loc, lines: dict[Loc, int], dups: list[Problem], source: str) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.start_mark)
            if (*loc, key) in lines:
                dups.append(Problem(_path((*loc, key)), "duplicate key", key_node.start_mark.line + 1, source))
            lines[(*loc, key)] = key_node.start_mark.line + 1
            _record_lines(value_node, (*loc, key), lines, dups, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*loc, index)] = item.start_mark.line + 1
            _record_lines(item, (*loc, index), lines, dups, source)


def _path(loc: Loc) -> str:
    """`("steps", 2, "with", "image")` → `steps[2].with.image`."""
    return _join("", loc)


def _join(prefix: str, loc: Loc) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _data_loc(data: Any, loc: tuple[Any, ...]) -> Loc:
    """A pydantic error location as keys and indexes into the data (union tags such as `list[str]` dropped)."""
    out: list[str | int] = []
    current = data
    for position, part in enumerate(loc):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
        elif isinstance(current, dict) and position == len(loc) - 1 and part != "[key]":
            current = None  # a missing field: the error is about the key itself
        else:
            continue
        out.append(part)
    return tuple(out)


def _merged(problems: list[Problem]) -> list[Problem]:
    """One problem per path: the alternatives of a union (`list[str] | str`) become one message."""
    by_path: dict[str, Problem] = {}
    for problem in problems:
        first = by_path.get(problem.path)
        if first is None:
            by_path[problem.path] = problem
        elif problem.message not in first.message:
            by_path[problem.path] = first._replace(message=f"{first.message}; or {problem.message[:1].lower()}"
                                                           f"{problem.message[1:]}")
    return list(by_path.values())


def _message(msg: str) -> str:
    """pydantic's wording, made to read like the rest."""
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return {"Field required": "field required", "Extra inputs are not permitted": "unknown field"}.get(msg, msg)


_FIELDS = {
    "pipeline": ", ".join(f.alias or n for n, f in Pipeline.model_fields.items()),
    "metadata": ", ".join(Metadata.model_fields),
    "param": ", ".join(ParamSpec.model_fields),
    "step": ", ".join(f.alias or n for n, f in Step.model_fields.items() if n != "timeout_template"),
    "retry": ", ".join(Retry.model_fields),
}


def _allowed_fields(parent: Loc) -> str:
    """The fields the mapping at `parent` may have (for an "unknown field" message)."""
    if not parent:
        return _FIELDS["pipeline"]
    if parent[-1] in ("metadata", "retry"):
        return _FIELDS[str(parent[-1])]
    if len(parent) >= 2 and parent[-2] == "params":
        return _FIELDS["param"]
    return _FIELDS["step"] if isinstance(parent[-1], int) else ""


class _Checker:
    """The checks pydantic cannot make (names, references, inputs), over the raw data so that they run together."""

    def __init__(self, data: dict[str, Any], lines: dict[Loc, int], source: str) -> None:
        self.data = data
        self.lines = lines
        self.source = source
        self.problems: list[Problem] = []
        params = data.get("params")
        self.params: set[str] = {str(name) for name in params} if isinstance(params, dict) else set()

    def problem(self, loc: Loc, message: str) -> None:
        self.problems.append(Problem(_path(loc), message, self.line(loc), self.source))

    def line(self, loc: Loc) -> int | None:
        """The line of `loc`, or of the nearest enclosing key that is in the file."""
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return None

    def from_validation(self, exc: ValidationError) -> list[Problem]:
        out = []
        for err in exc.errors():
            loc = _data_loc(self.data, err["loc"])
            message = _message(err["msg"])
            if err["type"] == "extra_forbidden" and _allowed_fields(loc[:-1]):
                message = f"unknown field (allowed: {_allowed_fields(loc[:-1])})"
            out.append(Problem(_path(loc), message, self.line(loc), self.source))
        return _merged(out)

    def check(self) -> list[Problem]:
        self._check_params()
        self._check_steps()
        return self.problems

    # params

    def _check_params(self) -> None:
        params = self.data.get("params")
        if not isinstance(params, dict):
            return
        for name, spec in params.items():
            if not isinstance(name, str) or not _PARAM_NAME.fullmatch(name):
                self.problem(("params", name), f"invalid param name {name!r}: lowercase letters, digits and _, "
                                               "not starting with a digit")
            if isinstance(spec, dict) and "default" in spec:
                self._check_default(("params", name), spec)

    def _check_default(self, loc: Loc, spec: dict[str, Any]) -> None:
        default, kind = spec["default"], spec.get("type", "string")
        if not isinstance(kind, str):
            return  # the param's own check reports the bad type
        if spec.get("required") is True:
            self.problem((*loc, "default"), "a required param takes no default")
        elif kind in _STRICT_TYPES and (not isinstance(default, _STRICT_TYPES[kind])
                                        or (kind in ("integer", "number") and isinstance(default, bool))):
            self.problem((*loc, "default"), f"the default is not of type {kind}: {default!r}")
        elif _templated(default):
            self.problem((*loc, "default"), "a default is a plain value, not a template")
        elif isinstance(spec.get("choices"), list) and default not in spec["choices"]:
            self.problem((*loc, "default"), f"the default {default!r} is not one of the choices")

    # steps

    def _check_steps(self) -> None:
        steps = _list(self.data.get("steps"))
        cleanup = _list(self.data.get("on_failure"))
        main_names = [_name(step) for step in steps]
        self._check_duplicates()
        for index, step in enumerate(steps):
            self._check_step(("steps", index), step, set(main_names[:index]))
            inner = _list(step.get("on_failure")) if isinstance(step, dict) else []
            for position, item in enumerate(inner):
                visible = set(main_names[:index]) | {_name(s) for s in inner[:position]}
                self._check_step(("steps", index, "on_failure", position), item, visible, cleanup=True)
        for position, item in enumerate(cleanup):
            visible = set(main_names) | {_name(s) for s in cleanup[:position]}
            self._check_step(("on_failure", position), item, visible, cleanup=True)

    def _every_step(self) -> Iterator[tuple[Loc, Any]]:
        for index, step in enumerate(_list(self.data.get("steps"))):
            yield ("steps", index), step
            for position, item in enumerate(_list(step.get("on_failure")) if isinstance(step, dict) else []):
                yield ("steps", index, "on_failure", position), item
        for position, item in enumerate(_list(self.data.get("on_failure"))):
            yield ("on_failure", position), item

    def _check_duplicates(self) -> None:
        seen: dict[str, Loc] = {}
        for loc, step in self._every_step():
            name = _name(step)
            if name and name in seen:
                self.problem((*loc, "name"), f"duplicate step name {name!r} (first at {_path(seen[name])})")
            seen.setdefault(name, loc)

    def _check_step(self, loc: Loc, step: Any, visible: set[str], cleanup: bool = False) -> None:
        if not isinstance(step, dict):
            return
        if cleanup and step.get("on_failure"):
            self.problem((*loc, "on_failure"), "a cleanup step has no on_failure of its own")
        action, inputs = step.get("action"), step.get("with", {})
        if isinstance(inputs, dict) and isinstance(action, str) and action in ACTIONS:
            self._check_inputs((*loc, "with"), action, inputs)
        if isinstance(inputs, dict):
            variables = inputs.get("vars") if action == "file.render" else None
            for key, value in inputs.items():
                allowed = _vars_allowed(variables) if action == "file.render" and key == "template" else None
                self._check_references((*loc, "with", key), value, visible, allowed)
        for key in ("when", "timeout"):
            if key in step:
                self._check_references((*loc, key), step[key], visible, None)

    def _check_inputs(self, loc: Loc, action: str, inputs: dict[str, Any]) -> None:
        """Keys and required fields; template-free values in full (a template is checked after substitution)."""
        model = ACTIONS[action]
        for key in inputs:
            if key not in model.model_fields:
                self.problem((*loc, key), f"unknown input of {action} (it takes: {', '.join(model.model_fields)})")
        templated = {key for key, value in inputs.items() if _templated(value) or key not in model.model_fields}
        literal = {key: render(value, {}) for key, value in inputs.items() if key not in templated}
        try:
            model.model_validate(literal)
        except ValidationError as exc:
            found = []
            for err in exc.errors():
                if (err["loc"][:1] and err["loc"][0] in templated) or (not err["loc"] and templated):
                    continue  # decided once the templates are rendered
                where = loc + _data_loc(literal, err["loc"])
                message = "unknown field" if err["type"] == "extra_forbidden" else _message(err["msg"])
                found.append(Problem(_path(where), message, self.line(where), self.source))
            self.problems.extend(_merged(found))

    def _check_references(self, loc: Loc, value: Any, visible: set[str], variables: set[str] | None) -> None:
        for leaf_loc, text in _leaves(value, loc):
            if "${" not in text:
                continue
            try:
                names = references(text)
            except PipelineError as exc:
                self.problem(leaf_loc, exc.problems[0].message)
                continue
            for name in sorted(names):
                message = self._reference_problem(name, visible, variables)
                if message:
                    self.problem(leaf_loc, message)

    def _reference_problem(self, name: str, visible: set[str], variables: set[str] | None) -> str | None:
        parts = name.split(".")
        shown = "${" + name + "}"
        if name in BUILTINS:
            return None
        if parts[0] == "params":
            if len(parts) < 2 or parts[1] not in self.params:
                return f"{shown}: no such param (declare it under params)"
            return None
        if parts[0] == "steps":
            return _step_reference_problem(parts, shown, visible, {_name(s) for _, s in self._every_step()})
        if parts[0] == "vars":
            if variables is None:
                return f"{shown}: vars are only for file.render's template"
            known = "*" in variables or (len(parts) > 1 and parts[1] in variables)
            return None if known else f"{shown}: no such entry in this step's vars"
        return f"{shown}: unknown name (use params.*, steps.<step>.outputs.*, {', '.join(sorted(BUILTINS))})"


def _step_reference_problem(parts: list[str], shown: str, visible: set[str], every: set[str]) -> str | None:
    if len(parts) < 4 or parts[2] != "outputs":
        return f"{shown}: write ${{steps.<step>.outputs.<key>}}"
    if parts[1] in visible:
        return None
    if parts[1] in every:
        return f"{shown}: step {parts[1]!r} does not run before this one"
    return f"{shown}: no step named {parts[1]!r}"


def _vars_allowed(variables: Any) -> set[str]:
    """The names `${vars.x}` may use: the keys of a literal `vars` mapping, or any ("*") when it is a template."""
    if variables is None:
        return set()
    return {str(key) for key in variables} if isinstance(variables, dict) else {"*"}


def _templated(value: Any) -> bool:
    try:
        return has_template(value)
    except PipelineError:
        return True  # malformed: reported by the reference check


def _leaves(value: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*loc, index))


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _name(step: Any) -> str:
    name = step.get("name") if isinstance(step, dict) else None
    return name if isinstance(name, str) else ""
