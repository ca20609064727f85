"""The desk's commands (issue 7): rosters, printed passes, the pass table, the
policy as a document, reports people read. Registered onto the `gate` command by
gate/cli/main.py (``register``), which passes in its helpers.
"""
from __future__ import annotations

import getpass
import json
import sys
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable

import click

from gate.config import CATEGORIES


class Helpers:
    def __init__(self, fail: Callable[..., None], load_config: Callable[..., Any], open_store: Callable[..., Any]) -> None:
        self.fail = fail
        self.load_config = load_config
        self.open_store = open_store


H: Helpers | None = None

config_option = click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help="configuration file (TOML)")
store_option = click.option("--store", "store_path", type=click.Path(dir_okay=False), help="where the SQLite store lives (overrides the config)")


def _h() -> Helpers:
    assert H is not None, "gate.cli.passes.register() was not called"
    return H


def _fail(message: str, code: int = 2) -> None:
    _h().fail(message, code)


def _day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        _fail(f"{option}: expected YYYY-MM-DD, got {value!r}")
        raise  # unreachable


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "desk"


def _write_text(out: str | None, text: str, *, bom: bool = False) -> None:
    if out is None or out == "-":
        click.echo(text, nl=False)
        return
    Path(out).write_text(text, encoding="utf-8-sig" if bom else "utf-8", newline="")


def _shorten(items: list[str], n: int = 20) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" ... and {len(items) - n} more" if len(items) > n else "")


# ---------------------------------------------------------------- roster import


def passes_import(file: str, dry_run: bool, as_json: bool, by: str | None, config_path: str | None, store_path: str | None) -> None:
    """The body of `gate passes import` (the command itself is declared in gate/cli/main.py)."""
    import sqlite3
    import time

    from gate.desk.roster import RosterError, apply_roster, diff_roster, read_roster

    conf = _h().load_config(config_path, store_path)
    t0 = time.perf_counter()
    try:
        with click.progressbar(length=1, label="reading the roster", file=sys.stderr) as bar:  # shown on a terminal
            def seen(done: int, total: int) -> None:
                bar.length = max(total, 1)
                bar.update(done - bar.pos)

            roster = read_roster(Path(file), tz=conf.gate.timezone, attributes=conf.roster.attributes, progress=seen)
    except RosterError as exc:
        _fail(str(exc))
    if dry_run:
        conn = None
        if Path(conf.store.path).exists():
            conn = sqlite3.connect(f"file:{conf.store.path}?mode=ro", uri=True)
        try:
            diff = diff_roster(conn, roster)
        except sqlite3.Error:
            diff = diff_roster(None, roster)  # a store not yet migrated has no passes
        finally:
            if conn is not None:
                conn.close()
    else:
        store = _h().open_store(conf)
        try:
            diff = apply_roster(store, roster, who=by or _user(), source=str(file))
        except RosterError as exc:
            _fail(str(exc))
        finally:
            store.close()
    elapsed = time.perf_counter() - t0
    if as_json:
        click.echo(json.dumps({"file": file, "rows": len(roster.rows), "dry_run": dry_run, "seconds": round(elapsed, 3),
                               "ignored_columns": roster.ignored, **diff.to_json()}, ensure_ascii=False))
        return
    verb = "would change (dry run, nothing written)" if dry_run else "imported"
    click.echo(f"{file}: {len(roster.rows)} rows valid; {verb}: {diff.summary()}  [{elapsed:.2f} s]")
    if roster.ignored:
        click.echo(f"  columns not used: {', '.join(roster.ignored)}")
    if diff.new:
        click.echo(f"  new: {_shorten([c.pass_id for c in diff.new])}")
    for c in diff.updated[:20]:
        what = "; ".join(f"{f} {_v(f, o)} -> {_v(f, n)}" for f, o, n in c.changes) or "card"
        click.echo(f"  updated (row {c.row}) {c.pass_id}: {what}")
    if len(diff.updated) > 20:
        click.echo(f"  ... and {len(diff.updated) - 20} more updated")
    if diff.cards_bound:
        click.echo(f"  cards bound: {_shorten([f'{c} -> {p}' for c, p in diff.cards_bound])}")
    if diff.cards_unbound:
        click.echo(f"  cards unbound: {_shorten([f'{c} (was {p})' for c, p in diff.cards_unbound])}")
    if diff.revoked_kept:
        click.echo(f"  stay revoked (revoked here; `gate passes revoke --undo` to restore): {_shorten(diff.revoked_kept)}")
    if diff.not_in_file:
        click.echo(f"  {diff.not_in_file} passes in the table are not in this file: left as they are")


def _v(f: str, value: Any) -> str:
    if value is None or value == "":
        return "(none)"
    if f in ("valid_from", "valid_until", "observation_until", "pcr_at") and isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M")
    return str(value)


# ---------------------------------------------------------------- passes


def _print_cmd(units: tuple[str, ...], ids: tuple[str, ...], categories: tuple[str, ...], everything: bool,
               include_expired: bool, out: str, key_path: str | None, config_path: str | None, store_path: str | None) -> None:
    """Print pass cards (85.6 x 54 mm, ten to an A4 page, with cut marks) as a PDF."""
    from gate.desk.fonts import FontMissing
    from gate.store import withdrawn
    from gate.core.tokens import KeyRing, key_id, load_private, load_public
    from gate.desk.policy_admin import in_force
    from gate.desk.printing import render, select

    if not (units or ids or categories or everything):
        _fail("say which passes: --unit 3-2 (a building, entrance or unit), --id ID, --category C or --all")
    conf = _h().load_config(config_path, store_path)
    key_file = Path(key_path) if key_path else conf.keys.signing
    if key_file is None:
        _fail("no signing key: give --key KEY or set keys.signing in the configuration")
    try:
        signer = load_private(Path(key_file))
    except ValueError as exc:
        _fail(str(exc))
    store = _h().open_store(conf)
    try:
        gone = withdrawn.load(store)
        if key_id(signer.public_key()) in gone.kids:
            _fail(f"key {key_id(signer.public_key())} ({key_file}) was withdrawn by central (key list version "
                  f"{gone.version}): every gate refuses its passes as forged; sign with another key (--key)")
        policy = in_force(conf.policy, store.get_meta).policy
        sel = select(store, units=units, ids=ids, categories=categories, everything=everything, signer=signer,
                     now=datetime.now(timezone.utc), include_expired=include_expired,
                     valid_days=conf.keys.pass_valid_days)
    finally:
        store.close()
    for pid, why in sel.skipped:
        click.echo(f"skipped {pid}: {why}", err=True)
    if not sel.cards:
        _fail("no passes to print" + (" (all skipped)" if sel.skipped else ": none match"), 1)
    title = f"gate {conf.gate.id} · " + " ".join([*(f"unit {u}" for u in units), *ids, *categories] or ["all passes"])
    try:
        with click.progressbar(length=len(sel.cards), label="printing", file=sys.stderr) as bar:  # shown on a terminal
            pages = render(sel.cards, Path(out), policy, _tz(conf), title=title, progress=bar.update)
    except FontMissing as exc:
        _fail(str(exc))
    click.echo(f"wrote {out}: {len(sel.cards)} passes on {pages} A4 page(s), signed with key {key_id(signer.public_key())}")
    trusted = KeyRing([load_public(p) for p in conf.keys.trusted if Path(p).exists()])
    own = conf.keys.signing is not None and conf.guard.enabled and key_file == conf.keys.signing
    if key_id(signer.public_key()) not in trusted and not own:
        click.echo(f"warning: this gate's configuration does not trust key {key_id(signer.public_key())} "
                   "(keys.trusted): its lanes would refuse these passes as forged", err=True)


def _tz(conf: Any) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(conf.gate.timezone)


def _list_cmd(units: tuple[str, ...], categories: tuple[str, ...], revoked: bool | None, search: str | None,
              as_json: bool, as_csv: bool, config_path: str | None, store_path: str | None) -> None:
    from gate.desk.pass_admin import passes, to_csv, to_json_lines

    if as_json and as_csv:
        _fail("--json or --csv, not both")
    conf = _h().load_config(config_path, store_path)
    store = _h().open_store(conf)
    try:
        rows = passes(store.conn, store.tz, units=units, categories=categories, revoked=revoked, search=search)
    finally:
        store.close()
    if as_json:
        click.echo(to_json_lines(rows), nl=False)
    elif as_csv:
        click.echo(to_csv(rows), nl=False)
    else:
        for p in rows:
            until = p["valid_until"][:10] or "-"
            flag = "  REVOKED" if p["revoked"] else ""
            click.echo(f"{p['unit']:<12} {p['name']:<10} {p['category']:<9} card {p['card'] or '-':<10} until {until:<10} {p['id']}{flag}")
        click.echo(f"{len(rows)} passes", err=True)


def _show_cmd(pass_id: str, as_json: bool, config_path: str | None, store_path: str | None) -> None:
    from gate.desk.pass_admin import show

    conf = _h().load_config(config_path, store_path)
    store = _h().open_store(conf)
    try:
        data = show(store, pass_id)
        stone = store.tombstone(pass_id) if data is None else None
    finally:
        store.close()
    if stone is not None:
        until = f"until {stone.until.astimezone(_tz(conf)).isoformat(timespec='minutes')}" if stone.until else "for good"
        _fail(f"pass {pass_id!r} was removed from the pass table: its QR is refused (revoked) {until}", 1)
    if data is None:
        _fail(f"no pass {pass_id!r} in the pass table", 1)
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    assert data is not None
    click.echo(f"{data['id']}: {data['name']}, {data['unit']}, {data['category']}" + ("  REVOKED" if data["revoked"] else ""))
    for k in ("phone_last4", "valid_from", "valid_until", "observation_until", "pcr_at", "health_code", "updated_at"):
        if data[k]:
            click.echo(f"  {k}: {data[k]}")
    for c in data["cards"]:
        click.echo(f"  card {c['number']}: first seen {c['first_seen'] or 'never'}, last {c['last_seen'] or '-'}, {c['swipes']} swipes")
    if data["inside"]:
        click.echo(f"  inside since {data['inside']['since']} (lane {data['inside']['lane']})")
    for d in data["desk"]:
        click.echo(f"  {d['time']} {d['action']} by {d['who']}: {d['reason']}")
    for r in data["recent"]:
        t = f" {r['temperature_c']:.1f} °C" if r["temperature_c"] else ""
        click.echo(f"  {r['time']} {r['lane']:<4} {r['decision']} {r['reason']}{t}")


def _revoke_cmd(pass_id: str, by: str, reason: str, undo: bool, config_path: str | None, store_path: str | None) -> None:
    from gate.desk.pass_admin import PassAdminError, revoke

    conf = _h().load_config(config_path, store_path)
    store = _h().open_store(conf)
    try:
        event = revoke(store, pass_id, who=by, reason=reason, undo=undo)
    except PassAdminError as exc:
        _fail(str(exc), 1)
    finally:
        store.close()
    click.echo(f"{'restored' if undo else 'revoked'} pass {pass_id} (by {by}: {reason}); event {event}")


def _export_cmd(units: tuple[str, ...], as_json: bool, as_csv: bool, out: str | None, config_path: str | None, store_path: str | None) -> None:
    from gate.desk.pass_admin import passes, to_csv, to_json_lines

    if as_json and as_csv:
        _fail("--json or --csv, not both")
    conf = _h().load_config(config_path, store_path)
    store = _h().open_store(conf)
    try:
        rows = passes(store.conn, store.tz, units=units)
    finally:
        store.close()
    if as_json:
        _write_text(out, to_json_lines(rows))
    else:
        _write_text(out, to_csv(rows), bom=True)
    if out and out != "-":
        click.echo(f"wrote {out}: {len(rows)} passes", err=True)


# ---------------------------------------------------------------- policy


def _policy_check(file: str, config_path: str | None, store_path: str | None) -> None:
    from gate.config import ConfigError
    from gate.desk.policy_admin import diff, diff_lines, in_force, load_file, summary

    try:
        policy, _ = load_file(file)
    except ConfigError as exc:
        _fail(str(exc))
    click.echo(f"{file}: ok — a valid policy")
    for line in summary(policy):
        click.echo(f"  {line}")
    if config_path:
        conf = _h().load_config(config_path, store_path)
        store = _h().open_store(conf)
        try:
            now = in_force(conf.policy, store.get_meta)
        finally:
            store.close()
        changes = diff(now.policy, policy)
        click.echo(f"against the policy in force (version {now.policy.version}, from the {now.source}): "
                   + (f"{len(changes)} changes" if changes else "no changes"))
        for line in diff_lines(changes):
            click.echo(f"  {line}")


def _policy_show(config_path: str | None, store_path: str | None) -> None:
    from gate.desk.policy_admin import in_force, to_toml

    conf = _h().load_config(config_path, store_path)
    store = _h().open_store(conf)
    try:
        now = in_force(conf.policy, store.get_meta)
    finally:
        store.close()
    click.echo(f"# the policy in force: version {now.policy.version}, from the {now.source}"
               + (f" (applied by {now.by})" if now.by else ""))
    click.echo(to_toml(now.policy), nl=False)


def _policy_replay(file: str, since: str, until: str | None, examples: int, as_json: bool,
                   config_path: str | None, store_path: str | None) -> None:
    from gate.config import ConfigError
    from gate.desk.policy_admin import load_file
    from gate.desk.replay import format_text, replay

    try:
        policy, _ = load_file(file)
    except ConfigError as exc:
        _fail(str(exc))
    conf = _h().load_config(config_path, store_path)
    tz = _tz(conf)
    d0 = _day(since, "--since")
    d1 = _day(until, "--until") if until else datetime.now(tz).date()
    if d1 < d0:
        _fail(f"--until {d1} is before --since {d0}")
    store = _h().open_store(conf)
    try:
        result = replay(store.conn, policy, d0, d1, tz, examples=examples)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps({"policy": file, **result.to_json()}, ensure_ascii=False))
        return
    click.echo(format_text(result, title=f"policy replay: {file} over {conf.store.path}"))


def _policy_apply(file: str, by: str, note: str, version: int | None, config_path: str | None, store_path: str | None) -> None:
    from gate.config import ConfigError
    from gate.desk.policy_admin import PolicyAdminError, apply, diff_lines, load_file

    try:
        policy, raw = load_file(file)
    except ConfigError as exc:
        _fail(str(exc))
    conf = _h().load_config(config_path, store_path)
    store = _h().open_store(conf)
    try:
        done = apply(store, conf.policy, policy, by=by, source=str(Path(file).resolve()), file_bytes=raw, note=note,
                     version=version)
    except PolicyAdminError as exc:
        _fail(str(exc), 1)
    finally:
        store.close()
    click.echo(f"applied {file} as policy version {done.version} (was {done.previous_version}) by {by}; "
               f"{len(done.changes)} changes:")
    for line in diff_lines(done.changes):
        click.echo(f"  {line}")
    click.echo("the gate uses it from its next start (sudo systemctl restart gate); "
               "central's next policy version above it replaces it")


def _policy_history(as_json: bool, config_path: str | None, store_path: str | None) -> None:
    from gate.desk.policy_admin import diff_lines, history

    conf = _h().load_config(config_path, store_path)
    store = _h().open_store(conf)
    try:
        rows = history(store)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    if not rows:
        click.echo("no policy has been applied here with `gate policy apply`")
    for r in rows:
        click.echo(f"{r['at']}  v{r['previous_version']} -> v{r['version']}  by {r['by']}"
                   + (f" ({r['note']})" if r["note"] else "") + f"  from {r['source']}")
        for line in diff_lines(r["changes"]):
            click.echo(f"    {line}")


# ---------------------------------------------------------------- reports


def report_documents(conf: Any, store: Any, day: str, pdf: str | None, html: str | None, png: str | None) -> None:
    """`gate report daily --pdf/--html/--png`: the same day as a page people read."""
    from gate.desk.fonts import FontMissing
    from gate.desk.policy_admin import in_force
    from gate.desk.report_doc import collect, write_html, write_pdf, write_png

    policy = in_force(conf.policy, store.get_meta).policy
    details = collect(store, day, policy)
    try:
        if pdf:
            write_pdf(details, policy, Path(pdf))
            click.echo(f"wrote {pdf}", err=True)
        if html:
            write_html(details, policy, Path(html))
            click.echo(f"wrote {html}", err=True)
        if png:
            write_png(details, policy, Path(png))
            click.echo(f"wrote {png}", err=True)
    except FontMissing as exc:
        _fail(str(exc))


def _report_range(since: str, until: str, as_json: bool, as_csv: bool, out: str | None,
                  config_path: str | None, store_path: str | None) -> None:
    import csv
    import io

    from gate.store.daily import RANGE_COLUMNS, events_range

    if as_json and as_csv:
        _fail("--json or --csv, not both")
    d0, d1 = _day(since, "--since"), _day(until, "--until")
    if d1 < d0:
        _fail(f"--until {d1} is before --since {d0}")
    conf = _h().load_config(config_path, store_path)
    store = _h().open_store(conf)
    try:
        rows = list(events_range(store, d0.isoformat(), d1.isoformat()))
    finally:
        store.close()
    if as_json:
        _write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    else:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(RANGE_COLUMNS), lineterminator="\r\n")
        w.writeheader()
        w.writerows(rows)
        _write_text(out, buf.getvalue(), bom=True)
    if out and out != "-":
        click.echo(f"wrote {out}: {len(rows)} events {d0} .. {d1}", err=True)


# ---------------------------------------------------------------- registration


def register(main: click.Group, passes_group: click.Group, report_group: click.Group, *,
             fail: Callable[..., None], load_config: Callable[..., Any], open_store: Callable[..., Any]) -> None:
    global H
    H = Helpers(fail, load_config, open_store)

    @passes_group.command("print")
    @click.option("--unit", "units", multiple=True, help="a unit or its building/entrance prefix: 3-2 prints 3-2-*")
    @click.option("--id", "ids", multiple=True, help="a pass id (repeatable)")
    @click.option("--category", "categories", multiple=True, type=click.Choice(CATEGORIES))
    @click.option("--all", "everything", is_flag=True, help="every pass in the table")
    @click.option("--include-expired", is_flag=True, help="print expired passes too")
    @click.option("--out", required=True, type=click.Path(dir_okay=False), help="PDF file to write")
    @click.option("--key", "key_path", type=click.Path(dir_okay=False), help="private signing key (default: keys.signing)")
    @config_option
    @store_option
    def passes_print(**kw: Any) -> None:
        """Print pass cards (credit-card size, ten to an A4 page, with cut marks) as a PDF."""
        _print_cmd(**kw)

    @passes_group.command("list")
    @click.option("--unit", "units", multiple=True, help="a unit or its prefix (3-2)")
    @click.option("--category", "categories", multiple=True, type=click.Choice(CATEGORIES))
    @click.option("--revoked/--active", "revoked", default=None, help="only revoked / only not revoked passes")
    @click.option("--search", help="text in the id, name, unit or card number")
    @click.option("--json", "as_json", is_flag=True, help="one JSON object a line")
    @click.option("--csv", "as_csv", is_flag=True, help="CSV with the roster's headers")
    @config_option
    @store_option
    def passes_list(**kw: Any) -> None:
        """List passes, sorted by unit."""
        _list_cmd(**kw)

    @passes_group.command("show")
    @click.argument("pass_id")
    @click.option("--json", "as_json", is_flag=True)
    @config_option
    @store_option
    def passes_show(**kw: Any) -> None:
        """One pass: its fields, cards, whether it is inside, the desk's actions and its latest decisions."""
        _show_cmd(**kw)

    @passes_group.command("revoke")
    @click.argument("pass_id")
    @click.option("--by", required=True, help="who is revoking (recorded)")
    @click.option("--reason", required=True, help="why (recorded)")
    @click.option("--undo", is_flag=True, help="take a revocation back")
    @config_option
    @store_option
    def passes_revoke(**kw: Any) -> None:
        """Revoke a pass here: refused at once; recorded as an event (who, why) that goes upstream."""
        _revoke_cmd(**kw)

    @passes_group.command("export")
    @click.option("--unit", "units", multiple=True)
    @click.option("--json", "as_json", is_flag=True, help="one JSON object a line")
    @click.option("--csv", "as_csv", is_flag=True, help="CSV with the roster's headers (the default); imports back")
    @click.option("--out", type=click.Path(dir_okay=False), help="file to write (default: standard output)")
    @config_option
    @store_option
    def passes_export(**kw: Any) -> None:
        """Export the pass table for a spreadsheet or a backup."""
        _export_cmd(**kw)

    @main.group("policy")
    def policy_group() -> None:
        """The policy as a document: show, check, replay against recorded traffic, apply."""

    @policy_group.command("check")
    @click.argument("file", type=click.Path(dir_okay=False))
    @config_option
    @store_option
    def policy_check(**kw: Any) -> None:
        """Validate a policy document (with -c: and show what it changes)."""
        _policy_check(**kw)

    @policy_group.command("show")
    @config_option
    @store_option
    def policy_show(**kw: Any) -> None:
        """Print the policy in force as a TOML document to edit."""
        _policy_show(**kw)

    @policy_group.command("replay")
    @click.argument("file", type=click.Path(dir_okay=False))
    @click.option("--since", required=True, help="first local day, YYYY-MM-DD")
    @click.option("--until", default=None, help="last local day, YYYY-MM-DD (default: today)")
    @click.option("--examples", default=3, show_default=True, type=click.IntRange(0, 100))
    @click.option("--json", "as_json", is_flag=True)
    @config_option
    @store_option
    def policy_replay(**kw: Any) -> None:
        """Run the recorded decisions of a period through a new policy; show what it would decide differently."""
        _policy_replay(**kw)

    @policy_group.command("apply")
    @click.argument("file", type=click.Path(dir_okay=False))
    @click.option("--by", required=True, help="who is applying it (recorded)")
    @click.option("--note", default="", help="why (recorded)")
    @click.option("--version", type=int, default=None, help="store as this version (default: one above the one in force)")
    @config_option
    @store_option
    def policy_apply(**kw: Any) -> None:
        """Put a policy in force on this gate, recording who, when and the diff."""
        _policy_apply(**kw)

    @policy_group.command("history")
    @click.option("--json", "as_json", is_flag=True)
    @config_option
    @store_option
    def policy_history(**kw: Any) -> None:
        """Who applied which policy here, when, and what it changed."""
        _policy_history(**kw)

    @report_group.command("range")
    @click.option("--since", required=True, help="first local day, YYYY-MM-DD")
    @click.option("--until", required=True, help="last local day, YYYY-MM-DD")
    @click.option("--csv", "as_csv", is_flag=True, help="CSV (the default; UTF-8 with BOM when written to a file)")
    @click.option("--json", "as_json", is_flag=True, help="one JSON object a line")
    @click.option("--out", type=click.Path(dir_okay=False), help="file to write (default: standard output)")
    @config_option
    @store_option
    def report_range(**kw: Any) -> None:
        """Every event of a period, one row each, for a spreadsheet."""
        _report_range(**kw)
