"""Settings of one shovel, read once from the environment (prefix ``WORKBENCH_SHOVEL_``)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from shared.core.errors import InvalidInput
from shared.core.paths import has_control
from shared.core.settings import EnvironmentReader

ConflictPolicy = Literal["keep-both", "overwrite", "skip"]
CONFLICT_POLICIES: tuple[ConflictPolicy, ...] = ("keep-both", "overwrite", "skip")

PREFIX = "WORKBENCH_SHOVEL_"


@dataclass(frozen=True)
class ShovelSettings:
    """What a shovel needs to serve one stack of one user; secrets stay out of its repr."""

    user: str
    stack_id: str
    home: Path
    amqp_url: str | None = field(default=None, repr=False)
    events_url: str | None = None
    signing_key: str | None = field(default=None, repr=False)
    """Hex of the key this shovel signs its events with (derived by the platform for this user)."""
    api_url: str | None = None
    """Where the shovel carries out its user's stack commands, each with the token it carries."""
    prefetch: int = 4
    parallel: int = 4
    attempts: int = 5
    """How often a command is tried before the shovel gives up on it (WORKBENCH_SHOVEL_ATTEMPTS)."""
    heartbeat_seconds: float = 30.0
    heartbeat_jitter: float = 0.1
    """Each interval is stretched or shrunk by up to this fraction, so shovels started together drift apart."""
    health_host: str = "0.0.0.0"
    health_port: int = 8081
    """0 takes a free port (for shovels that nobody probes, such as the embedded platform's)."""
    conflict_policy: ConflictPolicy = "keep-both"
    link_roots: tuple[Path, ...] = ()
    staging_dir: Path | None = None
    """The platform's staging folder (its local object store's directory), mounted here read-only:
    staged files are copied from it rather than downloaded; one not found there is downloaded."""

    def __post_init__(self) -> None:
        # Settings may be built directly (the platform's in-process shovels), not only from the environment.
        _check_name(self.user, f"{PREFIX}USER")
        _check_name(self.stack_id, f"{PREFIX}STACK_ID")
        if self.signing_key is not None:
            _check_hex(self.signing_key, f"{PREFIX}SIGNING_KEY")
        if self.conflict_policy not in CONFLICT_POLICIES:
            raise InvalidInput(
                f"must be one of {', '.join(CONFLICT_POLICIES)}, got {self.conflict_policy!r}",
                field=f"{PREFIX}CONFLICT",
            )
        if self.prefetch < 1:
            raise InvalidInput(f"must be at least 1, got {self.prefetch}", field=f"{PREFIX}PREFETCH")
        if self.parallel < 1:
            raise InvalidInput(f"must be at least 1, got {self.parallel}", field=f"{PREFIX}PARALLEL")
        if self.attempts < 1:
            raise InvalidInput(f"must be at least 1, got {self.attempts}", field=f"{PREFIX}ATTEMPTS")
        if not (math.isfinite(self.heartbeat_seconds) and self.heartbeat_seconds > 0):
            raise InvalidInput(
                f"must be a positive number of seconds, got {self.heartbeat_seconds}",
                field=f"{PREFIX}HEARTBEAT_SECONDS",
            )
        if not 0 <= self.heartbeat_jitter < 1:
            raise InvalidInput(
                f"must be at least 0 and below 1, got {self.heartbeat_jitter}", field="heartbeat_jitter"
            )
        if not 0 <= self.health_port <= 65535:
            raise InvalidInput(
                f"must be a port number (0 for any free port), got {self.health_port}",
                field=f"{PREFIX}HEALTH_PORT",
            )

    @property
    def key(self) -> bytes | None:
        """The signing key as bytes."""
        return bytes.fromhex(self.signing_key) if self.signing_key else None

    @property
    def source(self) -> str:
        """The CloudEvents ``source`` of this shovel's events."""
        return f"/workbench/shovels/{self.user}/{self.stack_id}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ShovelSettings:
        """Read the settings; a missing or bad value raises ``InvalidInput`` naming its variable."""
        read = EnvironmentReader(environ)
        home = read.required(f"{PREFIX}HOME")
        if not os.path.isabs(home):
            raise InvalidInput(f"must be an absolute path, got {home!r}", field=f"{PREFIX}HOME")
        if not os.path.isdir(home):
            raise InvalidInput(f"{home!r} is not a folder", field=f"{PREFIX}HOME")
        conflict = read.text(f"{PREFIX}CONFLICT", "keep-both")
        staging_dir = read.optional(f"{PREFIX}STAGING_DIR")
        if staging_dir is not None and not (os.path.isabs(staging_dir) and os.path.isdir(staging_dir)):
            raise InvalidInput(
                f"must be an absolute path of a folder, got {staging_dir!r}", field=f"{PREFIX}STAGING_DIR"
            )
        if conflict not in CONFLICT_POLICIES:
            raise InvalidInput(
                f"must be one of {', '.join(CONFLICT_POLICIES)}, got {conflict!r}", field=f"{PREFIX}CONFLICT"
            )
        return cls(
            user=read.required(f"{PREFIX}USER"),
            stack_id=read.required(f"{PREFIX}STACK_ID"),
            home=Path(os.path.realpath(home)),
            amqp_url=read.optional("WORKBENCH_AMQP_URL"),
            events_url=read.optional("WORKBENCH_EVENTS_URL"),
            signing_key=read.optional(f"{PREFIX}SIGNING_KEY"),
            api_url=(read.optional(f"{PREFIX}API_URL") or "").rstrip("/") or None,
            prefetch=read.integer(f"{PREFIX}PREFETCH", 4, minimum=1),
            parallel=read.integer(f"{PREFIX}PARALLEL", 4, minimum=1),
            attempts=read.integer(f"{PREFIX}ATTEMPTS", 5, minimum=1),
            heartbeat_seconds=read.seconds(f"{PREFIX}HEARTBEAT_SECONDS", 30.0),
            health_host=read.text(f"{PREFIX}HEALTH_HOST", "0.0.0.0"),
            health_port=read.integer(f"{PREFIX}HEALTH_PORT", 8081, minimum=0),
            conflict_policy=conflict,
            link_roots=read.folders(f"{PREFIX}LINK_ROOTS"),
            staging_dir=Path(os.path.realpath(staging_dir)) if staging_dir is not None else None,
        )


def from_env(environ: Mapping[str, str]) -> ShovelSettings:
    """``ShovelSettings.from_env``, for callers that hold the module."""
    return ShovelSettings.from_env(environ)


def _check_name(value: str, variable: str) -> None:
    if not value or not value.strip():
        raise InvalidInput("must be set", field=variable)
    if "/" in value or has_control(value):
        raise InvalidInput(f"{value!r} contains a slash or a control character", field=variable)


def _check_hex(value: str, variable: str) -> None:
    try:
        key = bytes.fromhex(value)
    except ValueError:
        raise InvalidInput("must be the key in hexadecimal", field=variable) from None
    if not key:
        raise InvalidInput("must not be empty", field=variable)
