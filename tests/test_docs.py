"""The README's command table keeps up with the `gate` command (as sqlite-utils' docs test
does): every command has a row in the table under `## Commands`, every option of a command
is named in its row, and every command and option has help text.

`gate central` and its sub-commands have their own table, under "### `gate central`
commands" in `## Sync with central` (the reference central runs at the office, not at the
gate); the options every one of them shares with `gate central` itself (-c, --broker, --db)
are named once, in `gate central`'s own row.
"""
from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from gate.cli.main import main

README = Path(__file__).resolve().parents[1] / "README.md"
LEFT_OUT: set[tuple[str, ...]] = set()
SECTIONS = ("\n## Commands\n", "\n### `gate central` commands\n")  # the tables, each up to the next heading


def walk(cmd: click.Command, path: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    """(path, command) for `gate` and every command below it, less LEFT_OUT."""
    if path in LEFT_OUT:
        return
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            yield from walk(cmd.commands[name], (*path, name))


def options(cmd: click.Command) -> list[click.Option]:
    return [p for p in cmd.params if isinstance(p, click.Option) and not p.hidden]


def own_options(path: tuple[str, ...], cmd: click.Command) -> list[click.Option]:
    """The options its row must name: a `gate central` command's -c/--broker/--db are `gate central`'s."""
    if path[:1] == ("central",) and len(path) > 1:
        shared = {o for p in options(main.commands["central"]) for o in p.opts}
        return [o for o in options(cmd) if not set(o.opts) <= shared]
    return options(cmd)


COMMANDS = list(walk(main))
# A command needs a row if it is run (not a group) or has options of its own (`gate -v`).
NEED_ROWS = [(path, cmd) for path, cmd in COMMANDS if not isinstance(cmd, click.Group) or options(cmd)]


def name(path: tuple[str, ...]) -> str:
    return " ".join(("gate", *path))


def command_table(text: str) -> dict[tuple[str, ...], list[str]]:
    """The rows of the table under `## Commands`, by the command they are about: the
    lower-case words after `gate` at the start of the first cell's code (`gate passes
    import FILE.csv ...` is ("passes", "import"); `gate [-v] COMMAND ...` is ())."""
    rows: dict[tuple[str, ...], list[str]] = {}
    for heading in SECTIONS:
        _table_rows(text.split(heading, 1)[1], rows)
    return rows


def _table_rows(section: str, rows: dict[tuple[str, ...], list[str]]) -> None:
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        if not line.startswith("|"):
            continue
        cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
        code = re.match(r"\s*`([^`]+)`", cells[0])
        if code is None:
            continue
        words = code.group(1).split()
        if not words or words[0] != "gate":
            continue
        path: list[str] = []
        for word in words[1:]:
            if not re.fullmatch(r"[a-z][a-z0-9-]*", word):
                break
            path.append(word)
        rows.setdefault(tuple(path), []).append(line.replace("\\|", "|"))


@pytest.fixture(scope="module")
def table() -> dict[tuple[str, ...], list[str]]:
    return command_table(README.read_text(encoding="utf-8"))


def mentioned(opt: str, row: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", row) is not None


@pytest.mark.parametrize("path", [path for path, _ in NEED_ROWS], ids=lambda p: name(p))
def test_every_command_has_a_row_in_the_readme(path: tuple[str, ...], table: dict[tuple[str, ...], list[str]]) -> None:
    if path not in table:
        pytest.fail(f"`{name(path)}` has no row in the README's command table (## Commands)")


@pytest.mark.parametrize(
    ("path", "opt"),
    [(path, o) for path, cmd in NEED_ROWS for o in own_options(path, cmd)],
    ids=lambda v: name(v) if isinstance(v, tuple) else v.opts[0],
)
def test_every_option_is_in_its_commands_row(path: tuple[str, ...], opt: click.Option,
                                              table: dict[tuple[str, ...], list[str]]) -> None:
    if path not in table:
        pytest.fail(f"`{name(path)}` has no row in the README's command table (## Commands)")
    row = " ".join(table[path])
    spellings = [*opt.opts, *opt.secondary_opts]
    assert any(mentioned(s, row) for s in spellings), (
        f"`{name(path)}`: option {'/'.join(spellings)} is not in its README row: {row}")


@pytest.mark.parametrize("path", [path for path, _ in COMMANDS], ids=lambda p: name(p))
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    cmd = dict(COMMANDS)[path]
    assert (cmd.help or "").strip(), f"`{name(path)}` has no help text (its docstring)"


@pytest.mark.parametrize(
    ("path", "opt"),
    [(path, o) for path, cmd in COMMANDS for o in options(cmd)],
    ids=lambda v: name(v) if isinstance(v, tuple) else v.opts[0],
)
def test_every_option_has_help(path: tuple[str, ...], opt: click.Option) -> None:
    assert (opt.help or "").strip(), f"`{name(path)}`: option {'/'.join(opt.opts)} has no help text"


def test_the_table_names_only_commands_that_exist(table: dict[tuple[str, ...], list[str]]) -> None:
    known = {path for path, _ in COMMANDS}
    stale = [name(path) for path in table if path not in known]
    assert not stale, f"the README's command table has rows for commands `gate` does not have: {stale}"
