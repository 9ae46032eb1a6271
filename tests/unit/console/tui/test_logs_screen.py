"""LogView / LogsScreen: history then tail, pause, wrap, search with highlights, level filter, bounded ring,
older lines on scroll-top, merged streams, dropped counts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from fakes import FIXED_NOW, FakeClient
from tuihelp import app_for, until

from console.tui.screens.logs import LogsScreen
from console.tui.widgets.log_lines import MATCH_STYLE, LogLine, LogLines
from console.tui.widgets.log_view import LogView


def entry(n: int, text: str = "", level: str = "info", node: str = "eu-fra-01", source: str = "run:run-0001",
          **extra: Any) -> dict[str, Any]:
    return {"at": FIXED_NOW + timedelta(milliseconds=n), "node_id": node, "source": source, "level": level,
            "stream": "stdout", "text": text or f"line {n}", "run_id": "run-0001", "instance_id": "arena-1",
            **extra}


class LogFeed(FakeClient):
    """TailLogs sends what the test puts in `tail` ((entries, dropped); None ends it); QueryLogs honours `until`."""

    def __init__(self) -> None:
        super().__init__()
        self.log_list = [entry(n) for n in range(-10, 0)]
        self.tail: asyncio.Queue[tuple[list[dict[str, Any]], int] | None] = asyncio.Queue()

    async def tail_logs(self, *, node_id: str = "", instance_id: str = "", run_id: str = "",
                        level: str = "") -> AsyncIterator[tuple[list[dict[str, Any]], int]]:
        self._record("tail_logs", node_id=node_id, instance_id=instance_id, run_id=run_id, level=level)
        yield [], 0
        while (batch := await self.tail.get()) is not None:
            yield batch

    async def query_logs(self, *, until: Any = None, limit: int = 1000, **kwargs: Any) -> list[dict[str, Any]]:
        self._record("query_logs", until=until, limit=limit, **kwargs)
        found = [e for e in self.log_list if until is None or e["at"] < until]
        return found[-limit:]


async def open_logs(pilot: Any, app: Any, **ids: str) -> LogView:
    await app.push_screen(LogsScreen(**(ids or {"run_id": "run-0001"})))
    view = app.screen.query_one(LogView)
    await until(pilot, lambda: len(view.log_lines.lines) >= 10)
    return view


async def test_history_first_then_the_tail_without_duplicates() -> None:
    client = LogFeed()
    app = app_for(client)
    async with app.run_test(size=(120, 30)) as pilot:
        view = await open_logs(pilot, app)
        client.tail.put_nowait(([entry(-1), entry(1), entry(0)], 3))
        await until(pilot, lambda: len(view.log_lines.lines) == 12)
        assert [line.text for line in view.log_lines.lines][-3:] == ["line -1", "line 0", "line 1"]
        assert view.dropped == 3
        assert "3 dropped" in str(view.query_one("#log-status").render())
        assert view.log_lines.is_vertical_scroll_end


async def test_space_pauses_counts_new_lines_and_resumes() -> None:
    client = LogFeed()
    app = app_for(client)
    async with app.run_test(size=(120, 30)) as pilot:
        view = await open_logs(pilot, app)
        await pilot.press("space")
        assert view.paused
        client.tail.put_nowait(([entry(1), entry(2)], 0))
        await until(pilot, lambda: view.new_lines == 2)
        assert len(view.log_lines.lines) == 10
        assert "+2 new" in str(view.query_one("#log-status").render())
        await pilot.press("space")
        assert not view.paused and view.new_lines == 0
        assert len(view.log_lines.lines) == 12


async def test_wrap_toggles_and_long_lines_take_several_rows() -> None:
    client = LogFeed()
    client.log_list.append(entry(5, "x" * 400))
    app = app_for(client)
    async with app.run_test(size=(120, 30)) as pilot:
        view = await open_logs(pilot, app)
        await until(pilot, lambda: len(view.log_lines.lines) == 11)
        lines = view.log_lines
        assert lines.virtual_size.height == 11
        await pilot.press("w")
        assert lines.wrap
        assert lines.virtual_size.height > 11 + 2
        await pilot.press("w")
        assert not lines.wrap and lines.virtual_size.height == 11


async def test_search_highlights_matches_and_n_moves_between_them() -> None:
    client = LogFeed()
    client.log_list += [entry(1, "player 42 joined"), entry(2, "noise"), entry(3, "Player 7 left")]
    app = app_for(client)
    async with app.run_test(size=(120, 30)) as pilot:
        view = await open_logs(pilot, app)
        await until(pilot, lambda: len(view.log_lines.lines) == 13)
        await pilot.press("slash")
        await pilot.press(*"player", "enter")
        lines = view.log_lines
        assert lines.pattern == "player" and lines.matches == 2
        last = lines.current_match
        assert lines.view[last].text == "Player 7 left"
        await pilot.press("N")
        assert lines.view[lines.current_match].text == "player 42 joined"
        await pilot.press("n")
        assert lines.current_match == last
        strip = lines._strip(lines.view.index(next(x for x in lines.view if x.text == "noise")))
        assert not any(seg.style and seg.style.bgcolor == MATCH_STYLE.bgcolor for seg in strip)
        strip = lines._strip(lines.current_match - 2)
        highlighted = "".join(seg.text for seg in strip if seg.style and seg.style.bgcolor == MATCH_STYLE.bgcolor)
        assert highlighted == "player"
        assert "2 matches" in str(view.query_one("#log-status").render())


async def test_L_cycles_the_level_filter() -> None:
    client = LogFeed()
    client.log_list += [entry(1, "dbg", "debug"), entry(2, "careful", "warning"), entry(3, "boom", "error")]
    app = app_for(client)
    async with app.run_test(size=(120, 30)) as pilot:
        view = await open_logs(pilot, app)
        await until(pilot, lambda: len(view.log_lines.lines) == 13)
        lines = view.log_lines
        assert len(lines.view) == 13
        await pilot.press("L")
        assert lines.level == "info" and len(lines.view) == 12
        await pilot.press("L")
        assert [x.text for x in lines.view] == ["careful", "boom"]
        await pilot.press("L")
        assert [x.text for x in lines.view] == ["boom"]
        await pilot.press("L")
        assert lines.level == "debug" and len(lines.view) == 13


async def test_memory_stays_bounded_under_20000_lines() -> None:
    client = LogFeed()
    app = app_for(client)
    async with app.run_test(size=(120, 30)) as pilot:
        view = await open_logs(pilot, app)
        for batch in range(40):
            client.tail.put_nowait(([entry(batch * 500 + n) for n in range(500)], 0))
        await until(pilot, lambda: view.log_lines.lines and view.log_lines.lines[-1].text == "line 19999")
        lines = view.log_lines
        assert len(lines.lines) == 5000
        assert len(lines._keys) == 5000
        assert lines.lines[0].text == "line 15000"


async def test_scrolling_to_the_top_fetches_older_lines() -> None:
    client = LogFeed()
    client.log_list = [entry(n) for n in range(-100, 0)]
    app = app_for(client)
    async with app.run_test(size=(120, 30)) as pilot:
        await app.push_screen(LogsScreen(run_id="run-0001"))
        view = app.screen.query_one(LogView)
        lines = view.log_lines
        await until(pilot, lambda: len(lines.lines) == 100 and lines.scroll_y > 0)
        oldest = lines.oldest
        assert oldest is not None and oldest.text == "line -100"
        client.log_list = [entry(n) for n in range(-200, 0)]
        lines.scroll_home(animate=False)
        await until(pilot, lambda: any(kw.get("until") == oldest.at for _, kw in client.called("query_logs")))
        await until(pilot, lambda: lines.oldest is not None and lines.oldest.text == "line -200")
        assert len(lines.lines) == 200
        assert lines.scroll_y > 0  # the view stays where it was, the older lines above it


def test_the_ring_merges_streams_by_time_and_drops_duplicates() -> None:
    lines = LogLines(max_lines=3)
    node = LogLine.from_entry(entry(5, "agent", source="agent"))
    inst = LogLine.from_entry(entry(2, "game", source="instance:arena-1"))
    lines._insert(node)
    lines._insert(inst)
    assert [x.text for x in lines._ring] == ["game", "agent"]
    assert LogLine.from_entry(entry(5, "agent", source="agent")).key == node.key


async def test_several_streams_are_tailed_and_merged() -> None:
    client = LogFeed()
    app = app_for(client)
    async with app.run_test(size=(120, 30)) as pilot:
        await app.push_screen(LogsScreen(node_id="eu-fra-01", instance_id="arena-1"))
        view = app.screen.query_one(LogView)
        await until(pilot, lambda: len(client.called("tail_logs")) == 2)
        tails = [kw for _, kw in client.called("tail_logs")]
        assert {t["node_id"] for t in tails} == {"eu-fra-01", ""}
        assert {t["instance_id"] for t in tails} == {"arena-1", ""}
        client.tail.put_nowait(([entry(3, "late", source="agent")], 0))
        client.tail.put_nowait(([entry(1, "early", source="instance:arena-1")], 0))
        await until(pilot, lambda: len(view.log_lines.lines) == 12)
        assert [x.text for x in view.log_lines.lines][-2:] == ["early", "late"]
