"""The settings that keep a shared provider fair: per-consumer job limits, fair turns, the
request buckets, and what bounds a connection. Read as [limits] and [server] keys; an
environment may override the job limits, and an address has a row of its own."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JobLimits(_Section):
    """How many jobs one consumer (owner address) may have; 0 is no limit. As an
    environment's or an address's override, a key left out keeps the wider setting."""

    max_waiting: int | None = Field(
        None, ge=0, description="Jobs one consumer may have waiting for a slot."
    )
    max_running: int | None = Field(
        None, ge=0, description="Jobs one consumer may have holding a slot at once."
    )
    max_starts_per_hour: int | None = Field(
        None, ge=0, description="Jobs one consumer may start in any hour."
    )


class AddressLimits(JobLimits):
    """One consumer's row: its own job limits, its weight in fair turns, whether its
    requests skip the buckets."""

    weight: float = Field(
        1.0, gt=0, description="Share of the pool in fair turns: 2 counts its use as half."
    )
    exempt: bool = Field(False, description="Its requests are never answered 429.")


class LimitSettings(_Section):
    max_waiting: int = Field(
        1000, ge=0, description="Jobs one consumer may have waiting for a slot; 0: no limit."
    )
    max_running: int = Field(
        0, ge=0, description="Jobs one consumer may have holding slots at once; 0: no limit."
    )
    max_starts_per_hour: int = Field(
        0, ge=0, description="Jobs one consumer may start in any hour; 0: no limit."
    )
    fair_share_half_life: float = Field(
        3600,
        gt=0,
        description="Seconds over which a consumer's past use (core-seconds) counts half "
        "as much in fair turns.",
    )
    starts_per_second: float = Field(
        2, gt=0, description="Job starts (and stops, deletes) an address may send per second."
    )
    start_burst: int = Field(20, ge=1, description="Starts an address may send at once.")
    reads_per_second: float = Field(
        5,
        gt=0,
        description="Signed reads (status, results, logs) per second per address and job; "
        "a client polling each of its jobs once a second is never limited.",
    )
    read_burst: int = Field(30, ge=1, description="Signed reads an address may send at once.")
    unsigned_per_second: float = Field(
        50, gt=0, description="Requests per second one client IP may send to unsigned routes."
    )
    unsigned_burst: int = Field(200, ge=1, description="Unsigned requests an IP may send at once.")
    exempt_loopback: bool = Field(
        False,
        description="Requests from 127.0.0.0/8 and ::1 skip the buckets (off: behind a "
        "reverse proxy on this host every client is loopback).",
    )
    exempt_operators: bool = Field(
        True, description="Calls signed by an [operator] allowed_providers address skip them."
    )
    addresses: dict[str, AddressLimits] = Field(
        default_factory=dict,
        description='Per consumer: [limits.addresses."0x…"] with weight, exempt and any job limit.',
    )

    @field_validator("addresses")
    @classmethod
    def _lower_case(cls, rows: dict[str, AddressLimits]) -> dict[str, AddressLimits]:
        lowered: dict[str, AddressLimits] = {}
        for address, row in rows.items():
            key = address.lower()
            if not (key.startswith("0x") and len(key) == 42):
                raise ValueError(f"[limits.addresses] {address!r} is not a 0x… address")
            if key in lowered:
                raise ValueError(f"[limits.addresses] {address} is given twice")
            lowered[key] = row
        return lowered

    def for_address(self, address: str) -> AddressLimits:
        return self.addresses.get(address.lower()) or AddressLimits()


class ConnectionSettings(_Section):
    """What bounds one connection, so that clients that never finish a request hold no
    more than their share of the server's files."""

    header_timeout: float = Field(
        10, gt=0, description="Seconds a client has to send a request's line and headers."
    )
    keepalive_timeout: float = Field(
        20,
        gt=0,
        description="Seconds an idle keep-alive connection is kept open (longer than "
        "clients' own 15 s, so that a client never reuses one the server is closing).",
    )
    max_connections_per_ip: int = Field(
        64, ge=1, description="Connections one client IP may hold open; more are closed."
    )
    file_limit: int = Field(
        65536,
        ge=0,
        description="Open-file limit the server raises itself to at start (up to the hard "
        "limit); 0: left as it is.",
    )
