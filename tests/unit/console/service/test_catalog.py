"""PipelineCatalog: the YAML files of a directory, listed, got by name, re-read when they change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from console.errors import InvalidInput, NotFound
from console.service import PipelineCatalog, PipelineInfo
from console.service.catalog import default_pipeline_dir
from console.settings import HubSettings

START = """\
apiVersion: gamenode/v1
kind: Pipeline
metadata: {name: start, description: Start it, instance: create}
params:
  image: {type: string, required: true, description: the image}
  port: {type: integer, default: 8080}
  password: {type: string, default: "s3cret", secret: true}
steps:
  - name: pull
    action: image.pull
    with: {image: "${params.image}", password: "${params.password}"}
  - name: run
    action: container.run
    with: {image: "${params.image}"}
on_failure:
  - {name: cleanup, action: container.remove, with: {force: true}}
"""

BROKEN = """\
apiVersion: gamenode/v1
kind: Pipeline
metadata: {name: broken}
steps:
  - name: run
    action: container.run
    with: {imag: x}
"""


def _write(path: Path, text: str, bump: int = 0) -> None:
    path.write_text(text)
    if bump:  # a new mtime even on a coarse clock
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump))


def test_lists_every_file_with_params_and_steps(tmp_path: Path) -> None:
    _write(tmp_path / "start.yaml", START)
    _write(tmp_path / "broken.yml", BROKEN)
    (tmp_path / "notes.txt").write_text("not a pipeline")
    catalog = PipelineCatalog(tmp_path)

    infos = [PipelineInfo.of(e) for e in catalog.list()]
    assert [i.name for i in infos] == ["broken", "start"]
    broken, start = infos
    assert broken.problems and "steps[0].with.imag" in broken.problems[0] and "broken.yml:7" in broken.problems[0]
    assert (start.description, start.instance, start.steps, start.on_failure) == (
        "Start it", "create", ["pull", "run"], ["cleanup"])
    params = {p.name: p for p in start.params}
    assert (params["image"].required, params["image"].default, params["image"].type) == (True, None, "string")
    assert (params["port"].default, params["port"].type) == (8080, "integer")
    assert (params["password"].secret, params["password"].default) == (True, "***")


def test_get_by_name_and_refusing_an_invalid_file(tmp_path: Path) -> None:
    _write(tmp_path / "start.yaml", START)
    _write(tmp_path / "broken.yaml", BROKEN)
    catalog = PipelineCatalog(tmp_path)
    entry = catalog.get("start")
    assert entry.text == START and entry.require().metadata.name == "start"
    with pytest.raises(NotFound, match="pipeline 'nope' not found"):
        catalog.get("nope")
    with pytest.raises(InvalidInput) as caught:
        catalog.get("broken").require()
    assert [(d.path, d.line) for d in caught.value.details] == [
        ("steps[0].with.imag", 7), ("steps[0].with.image", 7)]
    assert "broken.yaml:7" in caught.value.message


def test_a_changed_file_is_read_again_and_a_removed_one_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "start.yaml"
    _write(path, START)
    catalog = PipelineCatalog(tmp_path)
    first = catalog.get("start")
    assert catalog.get("start") is first  # unchanged: not parsed again

    _write(path, START.replace("Start it", "Start it now"), bump=10_000_000)
    assert catalog.get("start").require().metadata.description == "Start it now"
    path.unlink()
    assert catalog.list() == []


def test_a_missing_directory_is_an_empty_catalog(tmp_path: Path) -> None:
    assert PipelineCatalog(tmp_path / "absent").list() == []


def test_the_default_directory_is_the_checkouts_config_pipeline() -> None:
    assert default_pipeline_dir() == Path(__file__).resolve().parents[4] / "config" / "pipeline"
    assert PipelineCatalog().directory == default_pipeline_dir()


def test_the_shipped_pipelines_validate_and_tie_to_instances_as_the_hub_expects() -> None:
    infos = {e.name: PipelineInfo.of(e) for e in PipelineCatalog().list()}
    assert all(not info.problems for info in infos.values()), {n: i.problems for n, i in infos.items()}
    assert infos["platform-start"].instance == "create"
    assert infos["platform-stop"].instance == "stop"


def test_the_hub_setting_names_the_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GAMENODE_PIPELINE_DIR", str(tmp_path))
    assert HubSettings().pipeline_dir == tmp_path
