"""`gate scan`: read the QR codes in image files (a printed pass, a sheet of them, a photo)
with the thorough still-image decoder, and print what each one says."""
from __future__ import annotations

import sys

import click


@click.command("scan")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--decoder", default="auto", type=click.Choice(["auto", "thorough", "fast", "zxing", "pyzbar"]), show_default=True,
              help="auto: the thorough still-image decoder; or the live camera's (fast) or one library alone")
def scan(images: tuple[str, ...], decoder: str) -> None:
    """Print PATH<TAB>TEXT for each code found in each image (PATH alone if none)."""
    import cv2

    from drivers.qr import make_decoder

    # An operator's check of a printed pass (or a sheet of them) may take its time:
    # "auto" is the thorough still-image decoder (scales, binarisers, rotation,
    # inversion, pyzbar), codes in reading order.
    dec = make_decoder("thorough" if decoder == "auto" else decoder)  # type: ignore[arg-type]
    status = 0
    for path in images:
        img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        if img is None:
            click.echo(f"{path}: cannot read image", err=True)
            status = 1
            continue
        texts = dec.decode(img)
        if not texts:
            click.echo(path)
        for text in texts:
            click.echo(f"{path}\t{text}")
    sys.exit(status)
