"""`localcompute run --reproduce RECEIPT ALGO --input FILE…`: run a receipt's job again.

A receipt says what ran (the image by its id, the algorithm and every input by sha256,
the limits applied) and what came out (every output by sha256). Reproducing is running
that again here and comparing: a result is only worth its receipt when someone else can
get it again. So nothing runs unless the algorithm and the inputs are the receipt's,
byte for byte, and the image is the one it names (run by its id, not by a tag that may
have moved since); then the outputs are compared by sha256. Exit 0 when every output is
identical, 1 when one differs or a file given is not the receipt's (named, first).
"""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcompute.cli.exits import EXIT_FAILED, EXIT_OK, EXIT_STOPPED
from localcompute.cli.run_image import Container, Images
from localcompute.client import RemoteJob
from localcompute.core.errors import ConfigError, ImageNotFoundError, ReceiptError, RefusedError
from localcompute.core.receipt import OUTPUT, RECEIPT_NAME, Receipt, file_sha256, read_receipt

GIB = 1024**3
# What the receipt decides: an option among these with --reproduce is refused.
FROM_RECEIPT = {
    "image": "--image",
    "tag": "--tag",
    "entrypoint": "--entrypoint",
    "cpu": "--cpu",
    "ram_gb": "--ram-gb",
    "gpus": "--gpus",
    "max_time": "--max-time",
    "network": "--network",
    "server": "--server",
    "env": "--env",
    "json": "--json",
}


@dataclass(frozen=True)
class Reproduction:
    """A receipt whose algorithm and inputs are the ones given: what to run, what to get."""

    receipt: Receipt
    container: Container  # the receipt's image by its id: sha256:<hex>
    image_id: str
    checked: str  # what holds, in one line: the signer, the files, the image

    async def check_image(self, images: Images) -> None:
        """ImageNotFoundError unless this Docker engine has the receipt's image."""
        if not await images.image_exists(self.image_id):
            raise ImageNotFoundError(
                f"image {self.image_id} is not on this Docker engine; "
                "load the image the receipt names"
            )

    def compare(self, done: RemoteJob, paths: dict[str, Path], code: int) -> tuple[int, str]:
        """The exit code and the line for the new job `done`, its results downloaded."""
        if code == EXIT_STOPPED:
            return code, "not reproduced: the run was stopped"
        wanted = {s.name: s.sha256 for s in self.receipt.outputs}
        got = {r.filename: paths[r.filename] for r in done.results if r.type == OUTPUT}
        differ = sorted(n for n in wanted if n in got and file_sha256(got[n]) != wanted[n])
        missing = sorted(set(wanted) - set(got))
        extra = sorted(set(got) - set(wanted))
        custom = _custom_data_differs(self.receipt, paths.get(RECEIPT_NAME))
        total = len(wanted)
        if not (differ or missing or extra or custom):
            return EXIT_OK, f"reproduced: {total} of {total} outputs identical"
        parts = []
        if differ:
            parts.append(f"{len(differ)} of {total} outputs differ: {', '.join(differ)}")
        if missing:
            parts.append(f"missing: {', '.join(missing)}")
        if extra:
            parts.append(f"not in the receipt: {', '.join(extra)}")
        if custom:
            parts.append("the custom data's sha256 is not the receipt's")
        return EXIT_FAILED, "not reproduced: " + "; ".join(parts)


def prepare(args: argparse.Namespace) -> Reproduction:
    """The receipt read and checked against the files given; the run's options set from it.

    ReceiptError for a receipt that does not hold, RefusedError naming the first file
    given that is not the receipt's, ConfigError for an option the receipt decides.
    """
    given = [option for name, option in FROM_RECEIPT.items() if getattr(args, name)]
    if given:
        raise ConfigError(f"{given[0]}: with --reproduce, the receipt decides it")
    try:
        data = args.reproduce.read_bytes()
    except OSError as e:
        raise ConfigError(f"--reproduce {args.reproduce}: {e.strerror or e}") from e
    try:
        receipt = read_receipt(data)
    except ReceiptError as e:
        raise ReceiptError(f"receipt {args.reproduce}: {e.message}") from e
    _check_algorithm(receipt, args.algorithm)
    _check_inputs(receipt, args.input)
    _check_custom_data(receipt, args.custom_data)
    image_id = _image_id(receipt)
    asked = receipt.section("buildDefinition", "externalParameters")
    entrypoint = str((asked.get("algorithm") or {}).get("entrypoint") or "")
    if not entrypoint:
        raise ReceiptError(f"receipt {args.reproduce}: it names no entrypoint")
    _set_limits(args, receipt.section("buildDefinition", "internalParameters"))
    container = Container("sha256", image_id.removeprefix("sha256:"), entrypoint)
    inputs = f"{len(args.input)} input{'s' if len(args.input) != 1 else ''}"
    checked = (
        f"signature holds, signed by {receipt.signer}; {args.algorithm} and {inputs} have "
        f"its sha256; image {image_id[:19]}…"
    )
    return Reproduction(receipt, container, image_id, checked)


def _check_algorithm(receipt: Receipt, algorithm: Path) -> None:
    [dependency, *_] = receipt.dependencies("algorithm") or [{}]
    wanted = str((dependency.get("digest") or {}).get("sha256", ""))
    if not wanted:
        raise ReceiptError("the receipt names no algorithm digest: its job ran no code file")
    try:
        # As `run` sends it: the text read, newlines as Python reads them.
        code = algorithm.read_text(encoding="utf-8").encode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the algorithm {algorithm}: {e}") from e
    if hashlib.sha256(code).hexdigest() != wanted:
        raise RefusedError(f"{algorithm} is not the receipt's algorithm: its sha256 differs")


def _check_inputs(receipt: Receipt, inputs: list[str]) -> None:
    files = sorted(
        receipt.dependencies("input"),
        key=lambda d: (
            _number((d.get("annotations") or {}).get("index")),
            _number((d.get("annotations") or {}).get("file")),
        ),
    )
    if len(files) != len(inputs):
        has = f"{len(files)} input file{'s' if len(files) != 1 else ''}"
        raise RefusedError(f"the receipt has {has}, {len(inputs)} given with --input")
    for number, (dependency, given) in enumerate(zip(files, inputs, strict=True)):
        if given.startswith(("http://", "https://")):
            raise ConfigError(f"--input {given}: with --reproduce, give the file itself")
        path = Path(given).expanduser()
        if not path.is_file():
            raise ConfigError(f"--input {given}: no such file")
        if file_sha256(path) != str((dependency.get("digest") or {}).get("sha256", "")):
            raise RefusedError(
                f"--input {given} is not the receipt's input {number}"
                f" ({dependency.get('name', '?')}): its sha256 differs"
            )


def _check_custom_data(receipt: Receipt, custom_data: Path | None) -> None:
    had = "customDataSha256" in receipt.section("buildDefinition", "externalParameters")
    if had and custom_data is None:
        raise RefusedError("the receipt's job had custom data: give it with --custom-data")
    if custom_data is not None and not had:
        raise RefusedError("the receipt's job had no custom data: leave out --custom-data")


def _image_id(receipt: Receipt) -> str:
    [image, *_] = receipt.dependencies("image") or [{}]
    image_id = str((image.get("annotations") or {}).get("imageId", ""))
    digest = str((image.get("digest") or {}).get("sha256", ""))
    if not image_id.startswith("sha256:") or image_id != f"sha256:{digest}":
        raise ReceiptError("the receipt names no image id (sha256:…) to run again")
    return image_id


def _set_limits(args: argparse.Namespace, applied: dict[str, Any]) -> None:
    """The limits the receipt's job ran under, as the options that give them."""
    cpu, ram, duration = (
        applied.get("cpu"),
        applied.get("ramBytes"),
        applied.get("maxDurationSeconds"),
    )
    args.cpu = float(cpu) if isinstance(cpu, int | float) else None
    args.ram_gb = ram / GIB if isinstance(ram, int | float) else None
    gpus = applied.get("gpus")
    args.gpus = len(gpus) if isinstance(gpus, list) else None
    args.max_time = float(duration) if isinstance(duration, int | float) else None
    args.network = applied.get("network") == "egress"


def _custom_data_differs(receipt: Receipt, new_receipt: Path | None) -> bool:
    """The new job's custom data, as its own receipt names it, is not the old one's."""
    wanted = receipt.section("buildDefinition", "externalParameters").get("customDataSha256")
    if wanted is None:
        return False
    try:
        ran = read_receipt(new_receipt.read_bytes()) if new_receipt is not None else None
    except (OSError, ReceiptError):
        ran = None
    got = ran.section("buildDefinition", "externalParameters") if ran is not None else {}
    return bool(got.get("customDataSha256") != wanted)


def _number(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0
