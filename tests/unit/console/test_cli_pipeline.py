"""`gamenode pipeline validate`: ok lines, every problem with its line, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.cli import main

PIPELINES = Path(__file__).parents[3] / "config" / "pipeline"

BROKEN = """\
apiVersion: gamenode/v1
kind: Pipeline
metadata: {name: broken}
params:
  image: {type: string, required: true}
steps:
  - name: run
    action: container.run
    with:
      imag: ${params.image}
    timeout: soon
"""


def test_the_shipped_pipelines_validate(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(PIPELINES.glob("*.yaml"))
    assert main(["pipeline", "validate", *map(str, files)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(files)
    assert f"{PIPELINES / 'platform-stop.yaml'}: ok (2 steps)" in out
    assert all(line.endswith("steps)") and ": ok (" in line for line in out)


def test_every_problem_is_printed_with_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN)
    good = PIPELINES / "platform-stop.yaml"
    assert main(["pipeline", "validate", str(broken), str(good)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"steps[0].with.image: field required ({broken}:9)"
    assert out[1].startswith("steps[0].with.imag: unknown input of container.run (it takes: image, name, ")
    assert out[1].endswith(f"({broken}:10)")
    assert out[2].startswith("steps[0].timeout: not a duration: 'soon'")
    assert out[2].endswith(f"({broken}:11)")
    assert out[3] == f"{good}: ok (2 steps)"


def test_yaml_and_empty_files_are_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.yaml").write_text("a: [1\n")
    (tmp_path / "empty.yaml").write_text("")
    assert main(["pipeline", "validate", str(tmp_path / "bad.yaml"), str(tmp_path / "empty.yaml")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("invalid YAML: ")
    assert out[0].endswith(f"({tmp_path / 'bad.yaml'}:2)")
    assert out[1] == f"{tmp_path / 'empty.yaml'}: the pipeline is empty"


def test_a_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["pipeline", "validate", str(missing), str(PIPELINES / "platform-start.yaml")]) == 1
    out, err = capsys.readouterr()
    assert err == f"{missing}: cannot read: No such file or directory\n"
    assert out.endswith("platform-start.yaml: ok (8 steps)\n")


def test_a_binary_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    binary = tmp_path / "x.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    assert main(["pipeline", "validate", str(binary)]) == 1
    assert "not UTF-8 text" in capsys.readouterr().err


def test_validate_needs_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["pipeline", "validate"])
    assert caught.value.code == 2
    assert "FILE" in capsys.readouterr().err
