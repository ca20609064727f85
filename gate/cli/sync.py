"""`gate sync --drain`: deliver the outbox to central now and exit (e.g. before swapping a
gate's SD card); the running gate (`gate run`) otherwise does it as it goes."""
from __future__ import annotations

import click

from gate.cli.common import broker_option, check_broker, config_option, fail, load_config, open_store, store_option


@click.command("sync")
@click.option("--drain", is_flag=True, required=True, help="publish until the outbox is empty, then exit")
@click.option("--timeout", default=600.0, show_default=True, help="give up after this many seconds (exit 1)")
@config_option
@store_option
@broker_option
def sync_cmd(drain: bool, timeout: float, config_path: str | None, store_path: str | None, broker: str | None) -> None:
    """Deliver the outbox to central now (e.g. before swapping a gate's SD card)."""
    import time

    from sync.service import SyncService

    check_broker(broker)
    conf = load_config(config_path, store_path)
    if conf.sync is None and broker is None:
        fail(f"{config_path}: no [sync] section and no --broker: nowhere to send the outbox")
    store = open_store(conf)
    store.close()  # migrations, before the publisher opens its own connection
    service = SyncService.build(conf, lambda: open_store(conf), broker=broker, upstream_only=True)
    service.start()
    t0 = time.monotonic()
    try:
        ok = service.publisher.wait_drained(timeout)
    finally:
        service.stop()
    sent = service.publisher.counters.get("sent")
    if not ok:
        fail(f"outbox not drained after {timeout:g} s: {service.publisher.pending} pending ({service.link.last_error or 'no broker connection'})", 1)
    click.echo(f"outbox drained: {sent} sent in {time.monotonic() - t0:.1f} s")
