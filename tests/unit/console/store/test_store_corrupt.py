"""Files that cannot be read back: reported with path and line, never replaced."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from console.errors import CorruptData
from console.models import GameNode
from console.store import GameCardStore, NodeStore

MakeNode = Callable[..., GameNode]

GOOD = """\
id: n1
name: node one
type: physical
status: online
location: eu
labels:
  region: eu
  tier: gold
hardware:
  cpu:
    cores: 8
"""


def _load_error(root: Path, cls: type[NodeStore] | type[GameCardStore] = NodeStore) -> CorruptData:
    store = cls(root)
    with pytest.raises(CorruptData) as info:
        store.load()
    return info.value


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "nodes"
    path.mkdir()
    return path


def test_a_good_hand_written_file_loads(root: Path) -> None:
    (root / "n1.yaml").write_text(GOOD)
    store = NodeStore(root)
    store.load()
    node = store.get("n1")
    assert (node.name, node.status, node.labels["tier"], node.hardware["cpu"]["cores"]) == (
        "node one", "online", "gold", 8,
    )


@pytest.mark.parametrize(
    ("old", "new", "line", "began"),
    [
        ("location: eu\n", "location: eu: west\n", 5, None),
        ("  tier: gold\n", " tier: gold\n", 8, None),
        ("hardware:\n", "hardware:\n\tcpu: 1\n", 10, None),
        ("status: online\n", "status: [online\n", 5, "flow sequence at line 4"),
        ("labels:\n", "labels: {\n", 8, "flow mapping at line 6"),
        ("name: node one\n", "name: 'node one\n", 12, "quoted scalar at line 2"),
    ],
    ids=["colon-in-value", "bad-indent", "tab", "open-bracket", "open-brace", "open-quote"],
)
def test_a_yaml_syntax_error_names_the_path_and_line(
    root: Path, old: str, new: str, line: int, began: str | None
) -> None:
    path = root / "n1.yaml"
    assert old in GOOD
    path.write_text(GOOD.replace(old, new))
    error = _load_error(root)
    assert (error.path, error.line, error.code) == (str(path), line, "corrupt_data")
    assert str(error).startswith(f"{path}:{line}: invalid YAML: ")
    if began is not None:  # an unclosed bracket or quote is found late: say where it began
        assert began in error.problem


@pytest.mark.parametrize(
    ("old", "new", "line", "words"),
    [
        ("type: physical\n", "type: spaceship\n", 3, ["type", "spaceship"]),
        ("status: online\n", "status: dancing\n", 4, ["status", "dancing"]),
        ("  tier: gold\n", "  tier: gold!\n", 8, ["labels", "tier"]),
        ("    cores: 8\n", "    cores: 8\nbogus_field: 1\n", 12, ["bogus_field"]),
        ("location: eu\n", "location: " + "x" * 300 + "\n", 5, ["location"]),
    ],
    ids=["type-enum", "status-enum", "label-value", "unknown-field", "too-long"],
)
def test_a_valid_yaml_but_invalid_record_names_the_path_field_and_line(
    root: Path, old: str, new: str, line: int, words: list[str]
) -> None:
    path = root / "n1.yaml"
    path.write_text(GOOD.replace(old, new))
    error = _load_error(root)
    assert error.path == str(path)
    assert error.line == line
    assert str(error).startswith(f"{path}:{line}: invalid node")
    for word in words:
        assert word in error.problem


def test_a_missing_required_field_is_reported(root: Path) -> None:
    path = root / "n1.yaml"
    path.write_text(GOOD.replace("name: node one\n", ""))
    error = _load_error(root)
    assert error.path == str(path)
    assert "name" in error.problem
    assert "field required" in error.problem.lower()


def test_a_bad_value_deep_in_a_list_points_at_its_line(tmp_path: Path) -> None:
    root = tmp_path / "gamecards"
    root.mkdir()
    path = root / "g1.yaml"
    path.write_text(
        "id: g1\n"
        "name: Game\n"
        "versions:\n"
        "- version: 1.0.0\n"
        "  image: game:1\n"
        "- version: 2.0.0\n"
        "  image: game:2\n"
        "  resources:\n"
        "    cpu: -4\n"
    )
    error = _load_error(root, GameCardStore)
    assert (error.path, error.line) == (str(path), 9)
    assert "versions[1].resources.cpu" in error.problem


def test_an_id_that_differs_from_the_file_name_is_refused(root: Path) -> None:
    path = root / "other.yaml"
    path.write_text(GOOD)
    error = _load_error(root)
    assert (error.path, error.line) == (str(path), 1)
    assert "'n1'" in error.problem and "file name" in error.problem


@pytest.mark.parametrize(
    ("text", "found"),
    [("- id: n1\n- name: x\n", "list"), ("just a string\n", "str"), ("42\n", "int"), ("", "NoneType")],
    ids=["list", "scalar", "number", "empty"],
)
def test_a_document_that_is_not_a_mapping_is_refused(root: Path, text: str, found: str) -> None:
    path = root / "n1.yaml"
    path.write_text(text)
    error = _load_error(root)
    assert error.path == str(path)
    assert "expected a mapping" in error.problem and found in error.problem


def test_an_unsafe_tag_is_refused_not_run(root: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (root / "n1.yaml").write_text(f"!!python/object/apply:os.system ['touch {marker}']\n")
    error = _load_error(root)
    assert error.line == 1
    assert not marker.exists()


def test_two_documents_in_one_file_are_refused(root: Path) -> None:
    (root / "n1.yaml").write_text(GOOD + "---\n" + GOOD)
    assert _load_error(root).line == 12


def test_bytes_that_are_not_utf8_are_refused(root: Path) -> None:
    path = root / "n1.yaml"
    path.write_bytes(GOOD.encode().replace(b"node one", b"node \xff\xfe"))
    error = _load_error(root)
    assert error.path == str(path)


def test_the_broken_file_and_its_neighbours_are_left_untouched(
    root: Path, make_node: MakeNode
) -> None:
    store = NodeStore(root)
    store.load()
    for i in range(3):
        store.add(make_node(f"n{i}"))
    store.close()
    broken = GOOD.replace("n1", "n1x").replace("type: physical", "type: [physical").encode()
    (root / "n1.yaml").write_bytes(broken)
    before = {p.name: p.read_bytes() for p in root.iterdir()}

    again = NodeStore(root)
    with pytest.raises(CorruptData):
        again.load()
    again.close()  # a store that failed to load must not write anything

    assert {p.name: p.read_bytes() for p in root.iterdir()} == before
    assert (root / "n1.yaml").read_bytes() == broken


def test_a_broken_file_is_reported_even_when_the_index_knows_the_record(
    root: Path, make_node: MakeNode
) -> None:
    store = NodeStore(root)
    store.load()
    store.add(make_node("n1"))
    store.close()
    path = root / "n1.yaml"
    path.write_text(path.read_text().replace("type: physical", "type: zeppelin"))
    error = _load_error(root)
    assert error.path == str(path) and "zeppelin" in error.problem


def test_a_failed_reload_keeps_what_was_in_memory(root: Path, make_node: MakeNode) -> None:
    store = NodeStore(root)
    store.load()
    nodes = [make_node("n1"), make_node("n2")]
    for node in nodes:
        store.add(node)
    (root / "n3.yaml").write_text("id: n3\nname: [\n")
    with pytest.raises(CorruptData):
        store.load()
    assert store.list() == nodes


def test_the_first_error_stops_the_load_whatever_the_other_files(root: Path) -> None:
    (root / "n1.yaml").write_text(GOOD)
    (root / "n2.yaml").write_text(GOOD.replace("n1", "n2").replace("type: physical", "type: 7"))
    error = _load_error(root)
    assert error.path == str(root / "n2.yaml")
    assert error.line == 3
