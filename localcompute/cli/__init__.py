"""The `localcompute` command: serve, run an algorithm, see and steer jobs, make images."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from localcompute.cli import config, exits, jobs, run, verify
from localcompute.core.config_file import load_settings
from localcompute.core.settings import Settings
from localcompute.web.logging_setup import configure

if TYPE_CHECKING:
    from localcompute.runtime.local.docker import DockerRuntime

log = logging.getLogger("localcompute")
T = TypeVar("T")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localcompute", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP server and the engine")
    serve.add_argument("--config", type=Path, help="TOML file (default: $LOCALCOMPUTE_CONFIG)")
    serve.add_argument("--host", help="address to listen on, over the file's [server] host")
    serve.add_argument("--port", type=_port, help="TCP port, over the file's [server] port")
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    serve.add_argument("--log-format", default="text", choices=("text", "json"))

    img = sub.add_parser("images", help="make the images localcompute needs")
    img_sub = img.add_subparsers(dest="images_command", required=True)
    build = img_sub.add_parser("build", help="build the helper image (fetch and filter)")
    build.add_argument(
        "--base",
        help="base image with python3 (default: python:3.12-slim, or where that is not here "
        "and localcompute/python-base:stable is, that one, as the server does)",
    )
    build.add_argument("--tag", help="image tag (default: [docker] helper_image)")
    build.add_argument("--config", type=Path)
    base = img_sub.add_parser(
        "bootstrap-base", help="make a Debian python3 base image without any registry"
    )
    base.add_argument("--tag", default="localcompute/python-base:stable")
    base.add_argument("--suite", default="stable")
    base.add_argument("--mirror", help="Debian mirror (default: the one apt uses here)")
    busybox = img_sub.add_parser("busybox", help="make a tiny busybox image from busybox-static")
    busybox.add_argument("--tag", default="localcompute/busybox:latest")
    server = img_sub.add_parser(
        "server", help="build localcompute itself as an image (the host's Docker runs its jobs)"
    )
    server.add_argument("--tag", default="localcompute/server:latest")
    server.add_argument(
        "--base", default="localcompute/python-base:stable", help="an image with python3"
    )
    run.add_parser(sub)
    jobs.add_parser(sub)
    config.add_parser(sub)
    verify.add_parser(sub)
    return parser


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0 to 65535)")
    return int(text)


async def _with_docker(action: Callable[[DockerRuntime], Awaitable[T]]) -> T:
    from localcompute.runtime.local.docker import DockerRuntime

    runtime = DockerRuntime()
    await runtime.open()
    try:
        return await action(runtime)
    finally:
        await runtime.close()


async def _build_helper(runtime: DockerRuntime, tag: str, base: str | None) -> str:
    """Build the helper image on `base`, else on the base a server would choose; which one."""
    from localcompute import images

    if base is None:
        base = await images.default_base(runtime)
        if base != images.DEFAULT_BASE:
            print(
                f"{images.DEFAULT_BASE} is not on this host: building on {base} "
                f"(--base {images.DEFAULT_BASE} pulls it)",
                file=sys.stderr,
            )
    await images.build_helper_image(runtime, tag, base)
    return base


def _serve(args: argparse.Namespace) -> None:
    import uvloop

    from localcompute.web.serving import serve_until_signalled

    settings = _listening_on(load_settings(args.config), args.host, args.port)
    log.info("configuration %s", args.config or "built in (no --config)")
    # uvloop: about a third more requests a second than asyncio's own loop (bench/status_load.py).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve_until_signalled(settings))


def _listening_on(settings: Settings, host: str | None, port: int | None) -> Settings:
    """`settings` with --host and --port over the file's [server] host and port."""
    given = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    if not given:
        return settings
    return settings.model_copy(update={"server": settings.server.model_copy(update=given)})


def main(argv: list[str] | None = None) -> int:
    """The command's exit code: see localcompute.cli.exits for what each means."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        configure(args.log_level, args.log_format)
    else:  # a person reads run and jobs: only warnings in between
        configure("warning" if args.command in ("run", "jobs") else "info")
    try:
        code = _command(args)
        sys.stdout.flush()  # a closed stdout shows here, where it is handled, not at exit
    except BrokenPipeError:
        return exits.output_closed()
    except exits.failures() as e:
        return exits.fail(args.command, e)
    return code


def _command(args: argparse.Namespace) -> int:
    if args.command == "run":
        return run.main(args)
    if args.command == "jobs":
        return jobs.main(args)
    if args.command == "config":
        return config.main(args)
    if args.command == "verify":
        return verify.main(args)
    if args.command == "serve":
        _serve(args)
    else:
        _images(args)
    return exits.EXIT_OK


def _images(args: argparse.Namespace) -> None:
    from localcompute import images

    if args.images_command == "build":
        tag = args.tag or load_settings(args.config).docker.helper_image
        base = asyncio.run(_with_docker(lambda rt: _build_helper(rt, tag, args.base)))
        print(f"built {tag} from {base}")
    elif args.images_command == "bootstrap-base":
        asyncio.run(
            _with_docker(
                lambda rt: images.bootstrap_base(rt, args.tag, suite=args.suite, mirror=args.mirror)
            )
        )
        print(f"made {args.tag}")
    elif args.images_command == "server":
        from localcompute.images.server import build_server_image

        asyncio.run(_with_docker(lambda rt: build_server_image(rt, args.tag, args.base)))
        print(f"built {args.tag} on {args.base}")
    elif args.images_command == "busybox":
        asyncio.run(_with_docker(lambda rt: images.import_busybox(rt, args.tag)))
        print(f"made {args.tag}")


if __name__ == "__main__":
    sys.exit(main())
