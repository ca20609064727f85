"""`gate passes`: the local pass table at the desk. Sign a pass's QR (issue), load a roster
(import), print pass cards, list, show, revoke and export passes."""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from gate.cli.common import config_option, fail, load_config, local_tz, login_name, open_store, shorten, store_option, write_text
from gate.config import CATEGORIES


@click.group("passes")
def passes_group() -> None:
    """The local pass table and pass QR codes."""


# ---------------------------------------------------------------- issue


@passes_group.command("issue")
@click.option("--id", "pass_id", required=True, help="the pass id (as in the pass table)")
@click.option("--category", required=True, type=click.Choice(CATEGORIES), help="whose pass it is")
@click.option("--unit", default="", help="holder's unit, e.g. 3-2-501 (goes into the token as holder reference)")
@click.option("--valid-from", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
              help="not valid before this day or time, in --tz (default: valid at once)")
@click.option("--valid-until", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
              help="valid through this day (or until this time), in --tz")
@click.option("--valid-days", type=click.IntRange(0, 36500), default=365, show_default=True,
              help="without --valid-until: the pass ends this many days from today (0: no end date)")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, exists=True), help="private signing key")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write")
@click.option("--tz", default="Asia/Shanghai", show_default=True, help="time zone of the validity dates")
def passes_issue(pass_id: str, category: str, unit: str, valid_from: Any, valid_until: Any, valid_days: int, key_path: str,
                 out: str, tz: str) -> None:
    """Sign a pass and write its QR code as a PNG. It ends (--valid-until, or in a year
    by default): a pass removed later need only be refused until then."""
    from datetime import datetime as dt, time as dtime, timedelta
    from zoneinfo import ZoneInfo

    import segno

    from gate.core.tokens import PassToken, load_private, sign

    zone = ZoneInfo(tz)
    vfrom = valid_from.replace(tzinfo=zone) if valid_from else None
    vuntil = valid_until.replace(tzinfo=zone) if valid_until else None
    if vuntil is None and valid_days:
        vuntil = dt.combine(dt.now(zone).date() + timedelta(days=valid_days), dtime(0), zone)
    if vuntil is not None and vuntil.time() == dtime(0):
        vuntil = vuntil.replace(hour=23, minute=59, second=59)  # a date means "through that day"
    try:
        token = sign(PassToken(pass_id, category, unit, vfrom, vuntil), load_private(Path(key_path)))
    except ValueError as exc:
        fail(str(exc))
    segno.make(token, error="m").save(out, scale=8, border=4)
    click.echo(f"wrote {out}: {token}")


# ---------------------------------------------------------------- roster import


@passes_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--dry-run", is_flag=True, help="validate and show what would change, write nothing")
@click.option("--json", "as_json", is_flag=True, help="the outcome as one JSON object")
@click.option("--by", default=None, help="who is importing (recorded; default: the login name)")
@config_option
@store_option
def passes_import(file: str, dry_run: bool, as_json: bool, by: str | None, config_path: str | None, store_path: str | None) -> None:
    """Load a roster (CSV or XLSX); the whole file goes in or nothing does."""
    import sqlite3
    import time

    from gate.desk.roster import RosterError, read_roster
    from gate.desk.roster_changes import apply_roster, diff_roster

    conf = load_config(config_path, store_path)
    t0 = time.perf_counter()
    try:
        with click.progressbar(length=1, label="reading the roster", file=sys.stderr) as bar:  # shown on a terminal
            def seen(done: int, total: int) -> None:
                bar.length = max(total, 1)
                bar.update(done - bar.pos)

            roster = read_roster(Path(file), tz=conf.gate.timezone, attributes=conf.roster.attributes, progress=seen)
    except RosterError as exc:
        fail(str(exc))
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
        store = open_store(conf)
        try:
            diff = apply_roster(store, roster, who=by or login_name(), source=str(file))
        except RosterError as exc:
            fail(str(exc))
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
        click.echo(f"  new: {shorten([c.pass_id for c in diff.new])}")
    for c in diff.updated[:20]:
        what = "; ".join(f"{f} {_v(f, o)} -> {_v(f, n)}" for f, o, n in c.changes) or "card"
        click.echo(f"  updated (row {c.row}) {c.pass_id}: {what}")
    if len(diff.updated) > 20:
        click.echo(f"  ... and {len(diff.updated) - 20} more updated")
    if diff.cards_bound:
        click.echo(f"  cards bound: {shorten([f'{c} -> {p}' for c, p in diff.cards_bound])}")
    if diff.cards_unbound:
        click.echo(f"  cards unbound: {shorten([f'{c} (was {p})' for c, p in diff.cards_unbound])}")
    if diff.revoked_kept:
        click.echo(f"  stay revoked (revoked here; `gate passes revoke --undo` to restore): {shorten(diff.revoked_kept)}")
    if diff.not_in_file:
        click.echo(f"  {diff.not_in_file} passes in the table are not in this file: left as they are")


def _v(f: str, value: Any) -> str:
    if value is None or value == "":
        return "(none)"
    if f in ("valid_from", "valid_until", "observation_until", "pcr_at") and isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M")
    return str(value)


# ---------------------------------------------------------------- print


@passes_group.command("print")
@click.option("--unit", "units", multiple=True, help="a unit or its building/entrance prefix: 3-2 prints 3-2-*")
@click.option("--id", "ids", multiple=True, help="a pass id (repeatable)")
@click.option("--category", "categories", multiple=True, type=click.Choice(CATEGORIES), help="every pass of this category (repeatable)")
@click.option("--all", "everything", is_flag=True, help="every pass in the table")
@click.option("--include-expired", is_flag=True, help="print expired passes too")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PDF file to write")
@click.option("--key", "key_path", type=click.Path(dir_okay=False), help="private signing key (default: keys.signing)")
@config_option
@store_option
def passes_print(units: tuple[str, ...], ids: tuple[str, ...], categories: tuple[str, ...], everything: bool,
                 include_expired: bool, out: str, key_path: str | None, config_path: str | None, store_path: str | None) -> None:
    """Print pass cards (credit-card size, ten to an A4 page, with cut marks) as a PDF."""
    from gate.core.tokens import KeyRing, key_id, load_private, load_public
    from gate.desk.fonts import FontMissing
    from gate.desk.policy_admin import in_force
    from gate.desk.printing import render, select
    from gate.store import withdrawn

    if not (units or ids or categories or everything):
        fail("say which passes: --unit 3-2 (a building, entrance or unit), --id ID, --category C or --all")
    conf = load_config(config_path, store_path)
    key_file = Path(key_path) if key_path else conf.keys.signing
    if key_file is None:
        fail("no signing key: give --key KEY or set keys.signing in the configuration")
    try:
        signer = load_private(Path(key_file))
    except ValueError as exc:
        fail(str(exc))
    store = open_store(conf)
    try:
        gone = withdrawn.load(store)
        if key_id(signer.public_key()) in gone.kids:
            fail(f"key {key_id(signer.public_key())} ({key_file}) was withdrawn by central (key list version "
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
        fail("no passes to print" + (" (all skipped)" if sel.skipped else ": none match"), 1)
    title = f"gate {conf.gate.id} · " + " ".join([*(f"unit {u}" for u in units), *ids, *categories] or ["all passes"])
    try:
        with click.progressbar(length=len(sel.cards), label="printing", file=sys.stderr) as bar:  # shown on a terminal
            pages = render(sel.cards, Path(out), policy, local_tz(conf), title=title, progress=bar.update)
    except FontMissing as exc:
        fail(str(exc))
    click.echo(f"wrote {out}: {len(sel.cards)} passes on {pages} A4 page(s), signed with key {key_id(signer.public_key())}")
    trusted = KeyRing([load_public(p) for p in conf.keys.trusted if Path(p).exists()])
    own = conf.keys.signing is not None and conf.guard.enabled and key_file == conf.keys.signing
    if key_id(signer.public_key()) not in trusted and not own:
        click.echo(f"warning: this gate's configuration does not trust key {key_id(signer.public_key())} "
                   "(keys.trusted): its lanes would refuse these passes as forged", err=True)


# ---------------------------------------------------------------- the pass table: list, show, revoke, export


@passes_group.command("list")
@click.option("--unit", "units", multiple=True, help="a unit or its prefix (3-2)")
@click.option("--category", "categories", multiple=True, type=click.Choice(CATEGORIES), help="only this category (repeatable)")
@click.option("--revoked/--active", "revoked", default=None, help="only revoked / only not revoked passes")
@click.option("--search", help="text in the id, name, unit or card number")
@click.option("--json", "as_json", is_flag=True, help="one JSON object a line")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with the roster's headers")
@config_option
@store_option
def passes_list(units: tuple[str, ...], categories: tuple[str, ...], revoked: bool | None, search: str | None,
                as_json: bool, as_csv: bool, config_path: str | None, store_path: str | None) -> None:
    """List passes, sorted by unit."""
    from gate.desk.pass_admin import passes, to_csv, to_json_lines

    if as_json and as_csv:
        fail("--json or --csv, not both")
    conf = load_config(config_path, store_path)
    store = open_store(conf)
    try:
        rows = passes(store.conn, store.tz, units=units, categories=categories, revoked=revoked, search=search)
    finally:
        store.close()
    if as_json:
        click.echo(to_json_lines(rows), nl=False)
    elif as_csv:
        click.echo(to_csv(rows), nl=False)
    else:
        from gate.core.words import CLI, both

        card, until_w, revoked_w = both(CLI, "card"), both(CLI, "until"), both(CLI, "revoked")
        for p in rows:
            until = p["valid_until"][:10] or "-"
            flag = f"  {revoked_w}" if p["revoked"] else ""
            click.echo(f"{p['unit']:<12} {p['name']:<10} {p['category']:<9} {card} {p['card'] or '-':<10} {until_w} {until:<10} {p['id']}{flag}")
        click.echo(f"{len(rows)} {CLI['passes'][1]} ({CLI['passes'][0]})", err=True)


@passes_group.command("show")
@click.argument("pass_id")
@click.option("--json", "as_json", is_flag=True, help="the pass as JSON")
@config_option
@store_option
def passes_show(pass_id: str, as_json: bool, config_path: str | None, store_path: str | None) -> None:
    """One pass: its fields, cards, whether it is inside, the desk's actions and its latest decisions."""
    from gate.desk.pass_admin import show

    conf = load_config(config_path, store_path)
    store = open_store(conf)
    try:
        data = show(store, pass_id)
        stone = store.tombstone(pass_id) if data is None else None
    finally:
        store.close()
    if stone is not None:
        until = f"until {stone.until.astimezone(local_tz(conf)).isoformat(timespec='minutes')}" if stone.until else "for good"
        fail(f"pass {pass_id!r} was removed from the pass table: its QR is refused (revoked) {until}", 1)
    if data is None:
        fail(f"no pass {pass_id!r} in the pass table", 1)
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
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


@passes_group.command("revoke")
@click.argument("pass_id")
@click.option("--by", required=True, help="who is revoking (recorded)")
@click.option("--reason", required=True, help="why (recorded)")
@click.option("--undo", is_flag=True, help="take a revocation back")
@config_option
@store_option
def passes_revoke(pass_id: str, by: str, reason: str, undo: bool, config_path: str | None, store_path: str | None) -> None:
    """Revoke a pass here: refused at once; recorded as an event (who, why) that goes upstream."""
    from gate.desk.pass_admin import PassAdminError, revoke

    conf = load_config(config_path, store_path)
    store = open_store(conf)
    try:
        event = revoke(store, pass_id, who=by, reason=reason, undo=undo)
    except PassAdminError as exc:
        fail(str(exc), 1)
    finally:
        store.close()
    click.echo(f"{'restored' if undo else 'revoked'} pass {pass_id} (by {by}: {reason}); event {event}")


@passes_group.command("export")
@click.option("--unit", "units", multiple=True, help="only a unit or its prefix (3-2), repeatable (default: every pass)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object a line")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with the roster's headers (the default); imports back")
@click.option("--out", type=click.Path(dir_okay=False), help="file to write (default: standard output)")
@config_option
@store_option
def passes_export(units: tuple[str, ...], as_json: bool, as_csv: bool, out: str | None, config_path: str | None,
                  store_path: str | None) -> None:
    """Export the pass table for a spreadsheet or a backup."""
    from gate.desk.pass_admin import passes, to_csv, to_json_lines

    if as_json and as_csv:
        fail("--json or --csv, not both")
    conf = load_config(config_path, store_path)
    store = open_store(conf)
    try:
        rows = passes(store.conn, store.tz, units=units)
    finally:
        store.close()
    if as_json:
        write_text(out, to_json_lines(rows))
    else:
        write_text(out, to_csv(rows), bom=True)
    if out and out != "-":
        click.echo(f"wrote {out}: {len(rows)} passes", err=True)
