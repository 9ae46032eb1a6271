"""Platforms."""

from __future__ import annotations

from console.models import Platform
from console.store.base import YamlStore

__all__ = ["PlatformStore"]


class PlatformStore(YamlStore[Platform]):
    kind = "platform"
    model = Platform
