"""Pipelines on the agent: the spec (models, loading, params, step inputs) and `${...}` templates.

Importable without docker: the engine and the actions live in their own modules.
"""

from __future__ import annotations

from agent.errors import PipelineError, Problem
from agent.pipeline.spec import (
    API_VERSION,
    BUILTINS,
    DEFAULT_TIMEOUT,
    MAX_BACKOFF,
    Metadata,
    ParamSpec,
    ParamType,
    Pipeline,
    Retry,
    Step,
    load_pipeline,
    parse_duration,
    step_inputs,
)
from agent.pipeline.template import evaluate_when, format_value, has_template, lookup, references, render, truthy

__all__ = [
    "API_VERSION",
    "BUILTINS",
    "DEFAULT_TIMEOUT",
    "MAX_BACKOFF",
    "Metadata",
    "ParamSpec",
    "ParamType",
    "Pipeline",
    "PipelineError",
    "Problem",
    "Retry",
    "Step",
    "evaluate_when",
    "format_value",
    "has_template",
    "load_pipeline",
    "lookup",
    "parse_duration",
    "references",
    "render",
    "step_inputs",
    "truthy",
]
