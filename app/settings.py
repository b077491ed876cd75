"""Service settings: environment variables (prefix ``SPANER_``) and ``spaner serve`` flags."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from spaner.encoders.decode import Limits

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Everything the service needs to start. ``Settings()`` reads ``SPANER_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="SPANER_", extra="ignore")

    store: Path = Field(Path("spaner-store"), description="store directory (created when missing)")
    checkpoint: Path | None = Field(
        None, description="checkpoint for a new store (default: an untrained model of --profile)"
    )
    profile: str = Field(
        "offline", description="encoder profile for a new store without --checkpoint"
    )
    host: str = Field("127.0.0.1", description="bind address (loopback unless told otherwise)")
    port: int = Field(8000, ge=0, le=65535)
    api_key: SecretStr | None = Field(
        None, description="when set, every write needs header X-API-Key"
    )
    max_upload_mb: float = Field(50.0, gt=0, description="largest request body accepted, in MB")
    max_pixels: int = Field(40_000_000, gt=0, description="largest image accepted, in pixels")
    max_audio_seconds: float = Field(600.0, gt=0, description="longest audio accepted, in seconds")
    max_text_chars: int = Field(10_000, gt=0, description="longest text accepted, in characters")
    max_k: int = Field(100, gt=0, description="largest k a search may ask for")
    max_queries: int = Field(32, gt=0, description="most query examples in one search")
    ui: bool = Field(True, description="mount the Gradio UI at /ui")
    device: str = Field("cpu", description="torch device for encoders and model")
    fit_epochs: int = Field(60, gt=0, description="default epochs of a few-shot fit job")
    max_queue: int = Field(
        64,
        gt=0,
        description="most requests in progress at once; past it the server answers 503 with "
        "Retry-After instead of queueing without bound",
    )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def limits(self) -> Limits:
        return Limits(
            max_bytes=self.max_upload_bytes,
            max_pixels=self.max_pixels,
            max_audio_seconds=self.max_audio_seconds,
            max_text_chars=self.max_text_chars,
        )
