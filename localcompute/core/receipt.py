"""A job's receipt as anyone reads it: an in-toto Statement v1 whose predicate is SLSA
Provenance v1, in a DSSE envelope signed by the provider's key (core/dsse.py).

`read_receipt` checks the signature, the signer and the statement's shape;
`check_results` checks downloaded results against the statement's subjects. Both work
offline: what they need is in the receipt. engine/receipts.py writes receipts.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcompute.core.dsse import open_envelope
from localcompute.core.errors import ReceiptError

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PROVENANCE_TYPE = "https://slsa.dev/provenance/v1"
# localcompute's own build type: one compute job, named by the API that started it.
BUILD_TYPE_PREFIX = "urn:localcompute:compute-job:"
BUILD_TYPE_VERSION = "v1"
RECEIPT_NAME = "receipt.json"
OUTPUT = "output"  # a subject's resultType: the algorithm's outputs, what --reproduce compares
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def build_type(api: str) -> str:
    return f"{BUILD_TYPE_PREFIX}{api}:{BUILD_TYPE_VERSION}"


@dataclass(frozen=True)
class Subject:
    name: str
    sha256: str
    result_type: str  # output, algorithmLog, …: as the results list names it


@dataclass(frozen=True)
class Receipt:
    """A receipt whose signature and shape hold: who signed it, and what it says."""

    signer: str
    statement: Mapping[str, Any]

    @property
    def subjects(self) -> list[Subject]:
        return [
            Subject(
                str(s["name"]),
                str(s["digest"]["sha256"]),
                str((s.get("annotations") or {}).get("resultType", "")),
            )
            for s in self.statement["subject"]
        ]

    @property
    def outputs(self) -> list[Subject]:
        return [s for s in self.subjects if s.result_type == OUTPUT]

    @property
    def predicate(self) -> Mapping[str, Any]:
        return dict(self.statement["predicate"])

    def section(self, *path: str) -> dict[str, Any]:
        """A nested object of the predicate ({} where it is absent)."""
        node: Any = self.predicate
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        return dict(node) if isinstance(node, dict) else {}

    @property
    def job_id(self) -> str:
        return str(self.section("runDetails", "metadata").get("invocationId", ""))

    def dependencies(self, kind: str) -> list[dict[str, Any]]:
        """The resolved dependencies of one kind: image, algorithm or input."""
        found = self.section("buildDefinition").get("resolvedDependencies") or []
        return [
            d
            for d in found
            if isinstance(d, dict) and (d.get("annotations") or {}).get("kind") == kind
        ]

    def summary(self) -> list[str]:
        """What ran, on what, and when, in a few lines."""
        meta = self.section("runDetails", "metadata")
        asked = self.section("buildDefinition", "externalParameters")
        applied = self.section("buildDefinition", "internalParameters")
        algorithm = dict(asked.get("algorithm") or {})
        outcome: dict[str, Any] = {}
        for product in self.section("runDetails").get("byproducts") or []:
            if isinstance(product, dict) and product.get("name") == "outcome":
                outcome = dict(product.get("annotations") or {})
        image = next(iter(self.dependencies("image")), {})
        image_id = (image.get("digest") or {}).get("sha256", "")
        ran = f"{algorithm.get('image', '?')}:{algorithm.get('tag', '?')}"
        inputs = self.dependencies("input")
        dids = sorted({str((d.get("annotations") or {}).get("did", "")) for d in inputs})
        return [
            f"job {self.job_id}: {outcome.get('statusText', '?')}"
            f" (exit code {_code(outcome.get('exitCode'))})",
            f"ran {ran}"
            + (f" (image sha256:{image_id[:12]})" if image_id else "")
            + f", entrypoint {algorithm.get('entrypoint', '?')!r}",
            f"on {len(inputs)} input file{'s' if len(inputs) != 1 else ''}"
            + (f" of {', '.join(dids)}" if dids else ""),
            f"in environment {asked.get('environment', '?')} on {applied.get('runtime', '?')}:"
            f" {applied.get('cpu', '?')} CPU, {_gib(applied.get('ramBytes'))} RAM,"
            f" network {applied.get('network', '?')}",
            f"from {meta.get('startedOn', 'never started')} to {meta.get('finishedOn', '?')}",
            f"{len(self.outputs)} outputs and {len(self.subjects) - len(self.outputs)} logs"
            " named by sha256",
        ]


def read_receipt(data: bytes, provider: str | None = None) -> Receipt:
    """The receipt in `data`, checked: its signature, its signer (`provider`, when given)
    and its statement's shape. ReceiptError names the first thing that does not hold."""
    payload, signer = open_envelope(data)
    if provider and provider.lower() != signer.lower():
        raise ReceiptError(f"signed by {signer}, not by the provider {provider}")
    try:
        statement = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as e:
        raise ReceiptError(f"the payload is not JSON: {e}") from e
    _check_statement(statement, signer)
    return Receipt(signer, statement)


def _check_statement(statement: Any, signer: str) -> None:
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise ReceiptError(f"the payload is not an in-toto Statement v1 ({STATEMENT_TYPE})")
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise ReceiptError("the statement has no subject: it names no result")
    names = set()
    for number, subject in enumerate(subjects):
        digest = subject.get("digest") if isinstance(subject, dict) else None
        name = subject.get("name") if isinstance(subject, dict) else None
        if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
            raise ReceiptError(f"subject {number} has no usable name")
        if not isinstance(digest, dict) or not _HEX64.match(str(digest.get("sha256", ""))):
            raise ReceiptError(f"subject {name} has no sha256 digest")
        if name in names:
            raise ReceiptError(f"subject {name} is named twice")
        names.add(name)
    if statement.get("predicateType") != PROVENANCE_TYPE:
        raise ReceiptError(f"the predicate is not SLSA Provenance v1 ({PROVENANCE_TYPE})")
    predicate = statement.get("predicate")
    definition = predicate.get("buildDefinition") if isinstance(predicate, dict) else None
    details = predicate.get("runDetails") if isinstance(predicate, dict) else None
    if not isinstance(definition, dict) or not isinstance(details, dict):
        raise ReceiptError("the provenance lacks its buildDefinition or runDetails")
    if not str(definition.get("buildType", "")).startswith(BUILD_TYPE_PREFIX):
        raise ReceiptError(f"the build type is not localcompute's ({BUILD_TYPE_PREFIX}…)")
    builder = str((details.get("builder") or {}).get("id", ""))
    if builder.lower() != signer.lower():
        raise ReceiptError(f"the provenance names the provider {builder}, but {signer} signed it")


def check_results(receipt: Receipt, folder: Path) -> str:
    """Every output the receipt names is in `folder` with its digest, every log there has
    its digest, and nothing else is there but the receipt: the line that says so, or
    ReceiptError naming the first file that does not hold."""
    if not folder.is_dir():
        raise ReceiptError(f"{folder}: no such folder")
    expected = {s.name: s for s in receipt.subjects}
    present = {p.name for p in folder.iterdir() if p.is_file()}
    for subject in receipt.subjects:
        if subject.name not in present:
            if subject.result_type == OUTPUT:
                raise ReceiptError(f"{subject.name} is missing from {folder}")
            continue
        if file_sha256(folder / subject.name) != subject.sha256:
            raise ReceiptError(f"{subject.name} was changed: its sha256 is not the receipt's")
    unknown = sorted(present - set(expected) - {RECEIPT_NAME})
    if unknown:
        raise ReceiptError(f"{unknown[0]} is not in the receipt")
    checked = len(present & set(expected))
    return f"{checked} of {len(expected)} results present, each with the receipt's sha256"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _code(value: Any) -> str:
    return "none" if value is None else str(int(value))


def _gib(value: Any) -> str:
    return "?" if not isinstance(value, int | float) else f"{value / 1024**3:g} GiB"
