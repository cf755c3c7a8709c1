"""``fc-bridge``: run an ASGI app locally the way Function Compute runs it.

fc-bridge serve main:app                        # http://127.0.0.1:9000, FC 2.0 behaviour
fc-bridge serve main:handler --mode fc3         # through the FC 3.0 event path
fc-bridge serve main:app --mode web --behind-fc --host 0.0.0.0   # on FC: a custom runtime
fc-bridge invoke main:handler GET '/items/1?q=x' -H 'X-A: 1' --data @body.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import errno
import inspect
import json
import logging
import os
import socket
import sys
import traceback
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import FCBridgeError, TargetError
from .._function import FunctionInfo
from .._version import __version__
from .._web import WebFunction
from . import asgi_app
from .package import RUNTIMES, Progress, build_package, describe_size
from .target import load_bridge

if TYPE_CHECKING:
    # FC's side of an invocation: imported by the commands that emulate it, not by the
    # deployed web function (serve --behind-fc), whose cold start would pay for them.
    from .emulator import Invocation
    from .frontend import EmulatedFC, LocalWeb

logger = logging.getLogger("fc_bridge.cli")

RELOAD_OPTIONS = "FC_BRIDGE_SERVE_OPTIONS"


def main(argv: Sequence[str] | None = None) -> int:
    """The ``fc-bridge`` command; returns its exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "invoke":
        _check_invoke(args)
    elif args.command == "serve" and args.behind_fc:
        _check_behind_fc(args)
    elif getattr(args, "mode", "fc2") is None:
        args.mode = "fc2"
    level = getattr(logging, getattr(args, "log_level", "info").upper())
    logging.basicConfig(level=level, format="%(levelname)s:     %(name)s: %(message)s")
    try:
        if args.command == "serve":
            return serve(args)
        if args.command == "package":
            return package(args)
        return invoke(args)
    except (FCBridgeError, OSError) as exc:
        # One line a person can act on; the traceback only when asked for, or when the error
        # is in the user's own code (a module that fails as it is imported).
        cause = exc.__cause__
        if isinstance(exc, TargetError) and cause is not None:  # raised in the user's module
            sys.stderr.write(_user_traceback(cause))
        else:
            logger.debug("Details:", exc_info=exc)
        print(f"fc-bridge: error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fc-bridge", description="Run an ASGI app the way Alibaba Cloud Function Compute does."
    )
    parser.add_argument("--version", action="version", version=f"fc-bridge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="serve the app on uvicorn, behind FC's rules")
    _common(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument(
        "--port",
        type=_port,
        # FC tells a custom runtime its port in FC_CUSTOM_LISTEN_PORT (FC_FACTS section 8).
        default=os.environ.get("FC_CUSTOM_LISTEN_PORT") or os.environ.get("PORT") or "9000",
        help="port (FC_CUSTOM_LISTEN_PORT, else PORT, else 9000)",
    )
    serve.add_argument("--reload", action="store_true", help="restart when code changes")
    serve.add_argument(
        "--behind-fc",
        action="store_true",
        help="with --mode web: FC's gateway is in front (a deployed custom runtime), so serve "
        "the web function as deployed, reading FC's x-fc-* headers instead of emulating FC",
    )
    serve.add_argument(
        "--concurrency", type=_positive, default=1, help="FC's instance concurrency (1)"
    )
    package = commands.add_parser(
        "package", help="build the function's code package (a zip FC's Python runtime takes)"
    )
    package.add_argument("source", metavar="SRC", type=Path, help="the function's code directory")
    package.add_argument(
        "-o", "--output", type=Path, default=Path("function.zip"), help="the zip (function.zip)"
    )
    package.add_argument(
        "--runtime", choices=sorted(RUNTIMES), default="python3.12", help="FC's runtime (3.12)"
    )
    package.add_argument(
        "-r", "--requirements", type=Path, help="requirements file (SRC/requirements.txt)"
    )
    package.add_argument(
        "--find-links", metavar="DIR", help="also look for wheels here (pip's --find-links)"
    )
    package.add_argument(
        "--no-index", action="store_true", help="only the --find-links wheels, no package index"
    )
    package.add_argument(
        "--python",
        metavar="PATH",
        help="a Python of the runtime's version (runs pip, compiles the bytecode)",
    )
    package.add_argument(
        "--no-compile",
        action="store_true",
        help="leave the bytecode out (then FC compiles every module at each cold start)",
    )
    invoke = commands.add_parser("invoke", help="make one request without a server and print it")
    _common(invoke)
    invoke.add_argument("method", metavar="METHOD", nargs="?", help="HTTP method, e.g. GET")
    invoke.add_argument(
        "path", metavar="PATH", nargs="?", help="path and query, e.g. '/items/1?q=x'"
    )
    invoke.add_argument(
        "-H", "--header", action="append", default=[], help="a request header, 'Name: value'"
    )
    invoke.add_argument("--data", help="the request body, or @file to read it from a file")
    invoke.add_argument(
        "--event", type=Path, help="send this file as FC 3.0's event (implies --mode fc3)"
    )
    invoke.add_argument("--json", action="store_true", help="print the response as JSON")
    invoke.add_argument(
        "--raw",
        action="store_true",
        help="print what the handler gave FC (fc2: status and headers; fc3: the dict), as JSON",
    )
    invoke.add_argument("-o", "--output", type=Path, help="write the body to this file")
    invoke.add_argument(
        "--fail", action="store_true", help="exit with 1 on a 4xx too (always on a 5xx)"
    )
    return parser


def _check_invoke(args: argparse.Namespace) -> None:
    """What argparse cannot say alone: METHOD and PATH unless --event, --event only in fc3."""
    problem = None
    if args.event is not None:
        if args.mode not in (None, "fc3"):
            problem = f"--event is an FC 3.0 event: use it with --mode fc3, not {args.mode}."
        args.mode = "fc3"
    elif args.method is None or args.path is None:
        problem = "METHOD and PATH are required (or --event FILE)."
    if problem is not None:
        print(f"fc-bridge invoke: error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    if args.mode is None:
        args.mode = "fc2"


def _check_behind_fc(args: argparse.Namespace) -> None:
    """--behind-fc serves a deployed web function: web mode, and FC's gateway gives the path."""
    problem = None
    if args.mode not in (None, "web"):
        problem = f"--behind-fc serves a web function: use it with --mode web, not {args.mode}."
    elif args.prefix is not None:
        problem = "--behind-fc takes no --prefix: FC's gateway passes the path it was called with."
    if problem is not None:
        print(f"fc-bridge serve: error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    args.mode = "web"


def _user_traceback(error: BaseException) -> str:
    """The traceback of an error raised in the user's code, without importlib's frames."""
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if not frame.filename.startswith("<frozen ")
        and "importlib" not in frame.filename
        and "fc_bridge" not in frame.filename
    ]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    return "".join(lines + traceback.format_exception_only(type(error), error))


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET", help="module:attribute, an app or a bridge")
    parser.add_argument(
        "--mode", choices=("fc2", "fc3", "web"), default=None, help="how FC calls it (fc2)"
    )
    parser.add_argument("--prefix", help="serve under FC's default-address URL prefix")
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error")
    )
    for field, help_text in (
        ("function-name", "function name in the context"),
        ("region", "region in the context"),
        ("account-id", "account id in the context"),
        ("memory", "memory size (MB) in the context"),
        ("timeout", "timeout (s) in the context"),
    ):
        parser.add_argument(
            f"--{field}", type=_positive if field in ("memory", "timeout") else str, help=help_text
        )


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number from 1 to 65535")
    return int(text)


def _positive(text: str) -> int:
    if not (text.isascii() and text.isdigit() and int(text) > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number above 0")
    return int(text)


def _function(args: argparse.Namespace) -> FunctionInfo:
    return FunctionInfo.from_env(
        name=args.function_name,
        handler=args.target,
        region=args.region,
        account_id=args.account_id,
        memory=args.memory,
        timeout=args.timeout,
    )


def build(args: argparse.Namespace) -> Any:
    """The ASGI app the server runs: the front end of the chosen mode around TARGET, or, behind
    FC's own gateway, the deployed web function itself."""
    bridge = load_bridge(args.target)
    if getattr(args, "behind_fc", False):
        return WebFunction(bridge, function=_function(args))
    concurrency = getattr(args, "concurrency", 1)
    return asgi_app(
        bridge, args.mode, concurrency=concurrency, prefix=args.prefix, function=_function(args)
    )


def serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        print(
            "fc-bridge: error: serve needs uvicorn: pip install 'fc-bridge[local]'", file=sys.stderr
        )
        return 2
    app = build(args)  # before binding: a bad TARGET is reported before anything listens
    _check_port(args.host, args.port)
    where = f"http://{args.host}:{args.port}{args.prefix or ''}/"
    if args.mode != "web":
        detail = f"concurrency {args.concurrency}"
    else:
        detail = "the app's lifespan starts on POST /initialize or the first request"
        if args.behind_fc:
            detail += "; behind FC's gateway: FC's x-fc-* headers are read, not emulated"
    logger.info(
        "fc-bridge %s serving %s at %s in %s mode (%s); limits: %s",
        __version__,
        args.target,
        where,
        args.mode,
        detail,
        app.limits.describe(),
    )
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
        "lifespan": "on",
        "server_header": False,  # FC sends its own
        # The bridge's forwarded=n decides which X-Forwarded-* headers to trust, none by
        # default (FC reports the peer): uvicorn's own rewrite would take them from any
        # loopback client first.
        "proxy_headers": False,
        # uvicorn formats each access-log line even when its level drops it
        "access_log": args.log_level in ("debug", "info"),
    }
    if args.reload:  # uvicorn re-imports in a new process: it gets the options from there
        os.environ[RELOAD_OPTIONS] = json.dumps(vars(args), default=str)
        uvicorn.run("fc_bridge.local.cli:reloaded_app", factory=True, reload=True, **options)
    elif args.mode == "web":  # the deployed WebFunction, or LocalWeb in front of it
        # No server-level lifespan: uvicorn would log "Application startup complete" while the
        # app's startup waits for POST /initialize. The app logs its own startup when it runs,
        # and its shutdown runs when the server stops.
        config = uvicorn.Config(app, **{**options, "lifespan": "off", **fresh_contexts()})
        stop = app.shutdown if isinstance(app, WebFunction) else app.stop
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: uvicorn re-raises it once stopped
            web_server(config, stop).run()
    else:
        uvicorn.run(app, **options)
    return 0


def fresh_contexts() -> dict[str, Any]:
    """uvicorn's option for a fresh context per request, where this uvicorn has it (0.36+):
    a web function's app then runs in the request's own task instead of one more of its own."""
    import uvicorn

    accepted = inspect.signature(uvicorn.Config).parameters
    return {"reset_contextvars": True} if "reset_contextvars" in accepted else {}


def web_server(config: Any, stop: Callable[[], Awaitable[None]]) -> Any:
    """uvicorn's server, awaiting ``stop`` (the web function's lifespan shutdown) as it stops."""
    import uvicorn  # serve checked it is installed

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            await super().shutdown(sockets)
            await stop()

    return Server(config)


def reloaded_app() -> Any:
    """uvicorn --reload's factory: the front end, rebuilt in each reloaded process."""
    args = argparse.Namespace(**json.loads(os.environ[RELOAD_OPTIONS]))
    return build(args)


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise OSError(
                    f"port {port} on {host} is already in use; choose another with --port."
                ) from None
            raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}.") from None


def package(args: argparse.Namespace) -> int:
    """fc-bridge package: the zip, and its size against FC's limits."""
    links = args.find_links
    if links and "://" not in links:  # a directory: pip runs elsewhere, so made absolute
        links = str(Path(links).resolve())
    pip_options = [f"--find-links={links}"] if links else []
    if args.no_index:
        pip_options.append("--no-index")
    size = build_package(
        args.source,
        args.output,
        args.runtime,
        requirements=args.requirements,
        pip_options=pip_options,
        python=args.python,
        bytecode=not args.no_compile,
        progress=Progress(enabled=sys.stderr.isatty()),
    )
    print(f"{args.output}: {describe_size(size)}")
    return 0


def invoke(args: argparse.Namespace) -> int:
    from .emulator import Invocation
    from .frontend import LocalWeb

    app = build(args)
    headers = [_header(text) for text in args.header]
    if not any(name.lower() == "host" for name, _ in headers):
        headers.insert(0, ("Host", "localhost"))  # as every HTTP/1.1 client sends one
    body = _body(args.data)
    target = (args.prefix or "") + (args.path or "/")
    if isinstance(app, LocalWeb):
        status, raw_headers, data = asyncio.run(
            _web_invoke(app, args.method, target, headers, body)
        )
        out = {n.decode("latin-1"): v.decode("latin-1") for n, v in raw_headers}
        return _print(args, status, list(out.items()), data)
    front: EmulatedFC = app
    context = front.context()
    front.bridge.initializer(context)
    try:
        if args.event is not None:
            result = front.bridge.event(args.event.read_bytes(), context)
            if args.raw or not (isinstance(result, dict) and "statusCode" in result):
                print(json.dumps(result, ensure_ascii=False, default=repr))
                return 0
            data = (
                base64.b64decode(result["body"])
                if result["isBase64Encoded"]
                else result["body"].encode()
            )
            return _print(args, result["statusCode"], list(result["headers"].items()), data)
        invocation = Invocation(args.method.upper(), target, headers, body)
        if args.raw:
            return _print_raw(front, invocation, context)
        response = front.invoke(invocation, context)
    finally:
        front.bridge.pre_stop(context)
    pairs = [(name, value) for name, values in response.headers.items() for value in values]
    return _print(args, response.status, pairs, response.body)


def _print_raw(front: EmulatedFC, invocation: Invocation, context: Any) -> int:
    """What the handler itself gave FC: FC 2.0's start_response arguments and body chunks,
    or FC 3.0's response dict."""
    from .emulator import http_event, wsgi_environ

    if front.mode == "fc3":
        event = http_event(invocation, request_id=context.request_id)
        result = front.bridge.event(event, context)
        print(json.dumps(result, ensure_ascii=False))
        return 1 if result["statusCode"] >= 500 else 0
    started: list[Any] = []
    chunks = front.bridge.wsgi(
        wsgi_environ(invocation, context),
        lambda status, headers, exc_info=None: started.append((status, headers)),
    )
    body = b"".join(chunks)
    status, headers = started[-1]
    print(
        json.dumps({"status": status, "headers": headers, "body": base64.b64encode(body).decode()})
    )
    return 1 if status[:1] == "5" else 0


async def _web_invoke(
    app: LocalWeb, method: str, target: str, headers: list[tuple[str, str]], body: bytes
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    from .frontend import asgi_request

    try:
        return await asgi_request(app, method, target, headers, body)
    finally:
        await app.web.shutdown()


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise FCBridgeError(f"header {text!r} must be in format 'Name: value'.")
    return name.strip(), value.strip()


def _body(data: str | None) -> bytes:
    if data is None:
        return b""
    if data.startswith("@"):
        return Path(data[1:]).read_bytes()
    return data.encode()


def _print(
    args: argparse.Namespace, status: int, headers: list[tuple[str, str]], body: bytes
) -> int:
    if args.output is not None:
        args.output.write_bytes(body)
    if args.json:
        try:
            text, encoded = body.decode(), False
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(body).decode(), True
        payload = {"status": status, "headers": headers, "body": text, "isBase64Encoded": encoded}
        print(json.dumps(payload, ensure_ascii=False))
    else:
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
        lines = [f"HTTP {status} {phrase}".rstrip(), *(f"{n}: {v}" for n, v in headers), ""]
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        if args.output is not None:
            sys.stdout.write(f"[{len(body)} bytes written to {args.output}]\n")
        else:
            _write_body(body)
        sys.stdout.flush()
    return 1 if status >= 500 or (args.fail and status >= 400) else 0


def _write_body(body: bytes) -> None:
    """Text as text; binary bytes as they are when piped, never to a terminal (as curl)."""
    try:
        sys.stdout.write(body.decode() + ("\n" if body and not body.endswith(b"\n") else ""))
    except UnicodeDecodeError:
        if sys.stdout.isatty():
            sys.stdout.write(
                f"[binary body of {len(body)} bytes not shown: use --output FILE or --json]\n"
            )
            return
        sys.stdout.flush()
        sys.stdout.buffer.write(body)
