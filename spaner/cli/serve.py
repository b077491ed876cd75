"""``spaner serve``: the REST API (``/v1``) and the Gradio UI (``/ui``) on one uvicorn server.

Settings come from ``SPANER_*`` environment variables; flags override them. A store that
does not exist yet is created, with ``--checkpoint`` or an untrained ``--profile`` model saved
into it (that fixes the store's embedding space).
"""

from __future__ import annotations

import argparse
import logging

from spaner.errors import ConfigError

log = logging.getLogger(__name__)

#: flag dest -> Settings field
_FIELDS = (
    "store",
    "checkpoint",
    "profile",
    "host",
    "port",
    "api_key",
    "max_upload_mb",
    "max_pixels",
    "max_audio_seconds",
    "max_text_chars",
    "max_k",
    "device",
    "fit_epochs",
    "max_queue",
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the REST API and the search UI",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--store",
        metavar="DIR",
        help="store directory, created when missing [SPANER_STORE; spaner-store]",
    )
    p.add_argument("--checkpoint", metavar="CKPT", help="model for a new store [SPANER_CHECKPOINT]")
    p.add_argument(
        "--profile",
        help="encoder profile for a new store without --checkpoint [SPANER_PROFILE; offline]",
    )
    p.add_argument("--host", help="bind address [SPANER_HOST; 127.0.0.1]")
    p.add_argument("--port", type=int, help="port [SPANER_PORT; 8000]")
    p.add_argument(
        "--api-key", help="require this key (header X-API-Key) for writes [SPANER_API_KEY]"
    )
    p.add_argument(
        "--max-upload-mb", type=float, help="largest request body in MB [SPANER_MAX_UPLOAD_MB; 50]"
    )
    p.add_argument(
        "--max-pixels", type=int, help="largest image in pixels [SPANER_MAX_PIXELS; 40000000]"
    )
    p.add_argument(
        "--max-audio-seconds", type=float, help="longest audio [SPANER_MAX_AUDIO_SECONDS; 600]"
    )
    p.add_argument("--max-text-chars", type=int, help="longest text [SPANER_MAX_TEXT_CHARS; 10000]")
    p.add_argument("--max-k", type=int, help="largest k per search [SPANER_MAX_K; 100]")
    p.add_argument("--device", help="torch device [SPANER_DEVICE; cpu]")
    p.add_argument(
        "--fit-epochs", type=int, help="default epochs of fit jobs [SPANER_FIT_EPOCHS; 60]"
    )
    p.add_argument(
        "--max-queue",
        type=int,
        help="most requests in progress; past it 503 + Retry-After [SPANER_MAX_QUEUE; 64]",
    )
    p.add_argument(
        "--no-ui", dest="ui", action="store_false", default=None, help="do not mount the Gradio UI"
    )
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace):
    """Settings from the environment with the given flags on top."""
    from pydantic import ValidationError

    from spaner.app.settings import Settings

    given = {f: getattr(args, f) for f in (*_FIELDS, "ui") if getattr(args, f, None) is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from None


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from spaner.app.main import create_app

    settings = settings_from_args(args)
    if settings.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        log.warning(
            "serving on %s without an API key: anyone who can reach it can write", settings.host
        )
    app = create_app(settings)
    log.info("SPANER on http://%s:%d  (API /v1, docs /docs, UI /ui)", settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
    return 0
