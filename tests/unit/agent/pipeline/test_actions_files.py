"""`file.render`: the run's names and `vars` substituted into a file in the data dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from action_helpers import act, make_ctx

from agent.errors import StepFailed

SCOPE = {"params": {"port": 8080, "motd": "hi"}, "run": {"id": "run-1"}, "steps": {"net": {"outputs": {"ports": [1]}}}}


async def test_an_inline_template_is_written_as_the_engine_rendered_it(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, scope=SCOPE)
    out = await act(ctx, "file.render", template="home=${HOME}\n", dest="cfg/server.cfg", mode=0o600)
    target = ctx.data_dir / "cfg" / "server.cfg"
    assert out == {"path": str(target)}
    assert target.read_text() == "home=${HOME}\n"  # a rendered `$${HOME}`: not read as a reference again
    assert target.stat().st_mode & 0o777 == 0o600


async def test_renders_a_template_file_with_params_vars_and_escapes(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, scope=SCOPE)
    (ctx.data_dir / "server.cfg.in").write_text(
        "port=${params.port}\nmotd=${vars.motd}\nrun=${run.id}\nliteral=$${HOME}\nports=${steps.net.outputs.ports}\n")
    await act(ctx, "file.render", template_file="server.cfg.in", dest="server.cfg", vars={"motd": "welcome"})
    expected = "port=8080\nmotd=welcome\nrun=run-1\nliteral=${HOME}\nports=[1]\n"
    assert (ctx.data_dir / "server.cfg").read_text() == expected


@pytest.mark.parametrize(("inputs", "words"), [
    ({"template_file": "bad.in", "dest": "x"}, r"rendering bad.in failed: .*missing"),
    ({"dest": "x"}, "exactly one of"),
    ({"template": "a", "template_file": "b", "dest": "x"}, "exactly one of"),
    ({"template": "a", "dest": "../x"}, "leads out of the instance's data dir"),
    ({"template": "a", "dest": "/etc/x"}, "must be relative"),
    ({"template_file": "nope.in", "dest": "x"}, "cannot read the template"),
])
async def test_mistakes_fail_the_step(tmp_path: Path, inputs: dict[str, str], words: str) -> None:
    ctx = make_ctx(tmp_path, scope=SCOPE)
    (ctx.data_dir / "bad.in").write_text("${params.missing}")
    with pytest.raises(StepFailed, match=words):
        await act(ctx, "file.render", **inputs)
