"""``dispatch``: models, chat, history, export and stop against a Dispatch server.

Exit codes: 0 ok · 1 the server failed or the turn ended in an error · 2 usage · 3 auth ·
4 not found (conversation, route or model) · 5 cannot connect · 130 Ctrl-C. Failures are one
line on stderr, ``dispatch: <what went wrong>``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import uuid
from importlib.metadata import PackageNotFoundError, version
from typing import NoReturn

from dispatch_cli import config, errors, metrics, render
from dispatch_cli.client import Client
from dispatch_cli.errors import CliError

EFFORTS = ("low", "medium", "high", "xhigh", "max")
CONVERSATION_ID = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}"
)  # docs/protocol.md#1-vocabulary-and-ids


def conversation_id(value: str) -> str:
    """An id as docs/protocol.md#1-vocabulary-and-ids allows it; checked here because it becomes part of a URL path."""
    if not CONVERSATION_ID.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"invalid conversation id {value!r}: use 1-128 of A-Z a-z 0-9 . _ : - (not first)"
        )
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage + error
        self.exit(errors.USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _connection_options(parser: argparse.ArgumentParser, default) -> None:
    group = parser.add_argument_group("server")
    group.add_argument(
        "--url",
        default=default,
        help=f"server URL (env DISPATCH_URL; default {config.DEFAULT_URL})",
    )
    group.add_argument("--token", default=default, help="API token (env DISPATCH_TOKEN)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dispatch",
        description="Talk to a Dispatch server from the terminal.",
        epilog=(
            "The server URL and token come from --url/--token, else DISPATCH_URL/"
            f"DISPATCH_TOKEN, else {config.config_path()} (url = …, token = …). "
            "Exit codes: 0 ok, 1 server or turn error, 2 usage, 3 auth, 4 not found, "
            "5 cannot connect, 130 interrupted."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _connection_options(parser, None)
    # Subcommands take the options too; SUPPRESS keeps them from hiding a value given before.
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        _connection_options(sub, argparse.SUPPRESS)
        return sub

    models = command("models", "list the models the server offers")
    models.add_argument("--json", action="store_true", help="print the server's JSON")

    chat = command("chat", "send a message and stream the answer")
    chat.add_argument("message", help="the message; - reads it from stdin")
    chat.add_argument("--model", "-m", help="<credential>/<model> (see: dispatch models)")
    chat.add_argument(
        "--conversation",
        "-c",
        metavar="ID",
        type=conversation_id,
        help="continue this conversation (else a new one)",
    )
    chat.add_argument("--cwd", help="working directory of the tools, inside the server's workspace")
    chat.add_argument("--reasoning-effort", choices=EFFORTS)
    chat.add_argument("--show-reasoning", action="store_true", help="print the model's reasoning")

    history = command("history", "print a conversation")
    history.add_argument("conversation", metavar="ID", type=conversation_id)
    history.add_argument("--show-reasoning", action="store_true")
    history.add_argument("--json", action="store_true", help="print the server's JSON")

    export = command("export", "export a conversation as Markdown or JSON")
    export.add_argument("conversation", metavar="ID", type=conversation_id)
    export.add_argument("--format", "-f", choices=("md", "json"), default="md")
    export.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")

    stop = command("stop", "stop the running turn of a conversation")
    stop.add_argument("conversation", metavar="ID", type=conversation_id)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = config.resolve(args.url, args.token)
        with Client(settings) as client:
            return COMMANDS[args.command](client, args)
    except CliError as error:
        _say(error.message)
        return error.code
    except KeyboardInterrupt:
        _say("interrupted")
        return errors.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (dispatch history … | head): nothing more to say to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return errors.OK


# ---------------------------------------------------------------- commands


def models(client: Client, args) -> int:
    data = client.models()
    if args.json:
        _print_json(data)
        return errors.OK
    names = data.get("models") or []
    if not names:
        _say("the server offers no models")
        return errors.OK
    info = data.get("modelInfo") or {}
    width = max(len(name) for name in names)
    for name in names:
        window = (info.get(name) or {}).get("contextWindow")
        context = f"  {metrics.tokens(window)} tokens context" if window else ""
        print(f"{name:<{width}}{context}".rstrip())
    return errors.OK


def chat(client: Client, args) -> int:
    message = sys.stdin.read() if args.message == "-" else args.message
    if not message.strip():
        raise CliError("the message is empty", errors.USAGE)
    conversation_id = args.conversation or str(uuid.uuid4())
    body = {"message": message, "conversationId": conversation_id}
    for key, value in (
        ("model", args.model),
        ("cwd", args.cwd),
        ("reasoningEffort", args.reasoning_effort),
    ):
        if value is not None:
            body[key] = value
    printer = render.Printer(
        sys.stdout,
        sys.stderr,
        show_reasoning=args.show_reasoning,
        dim=sys.stdout.isatty() and not os.environ.get("NO_COLOR"),
    )
    view = render.TurnView(printer)
    try:
        with client.chat(body) as events:
            for event in events:
                view.show(event)
    except KeyboardInterrupt:
        # Leaving never stops a turn (docs/protocol.md#4-the-turn): say how to, and where to read the rest.
        printer.end_lines()
        started = "the turn goes on" if view.turn_id else "a turn that started goes on"
        _say(
            f"detached; {started} on the server. Stop it: dispatch stop {conversation_id}"
            f" · read it: dispatch history {conversation_id}"
        )
        return errors.INTERRUPTED
    except CliError as error:
        printer.end_lines()
        if view.turn_id:  # the stream broke mid-turn: the turn may live on without us
            raise CliError(
                f"{error.message}; the turn may still be running: dispatch history "
                f"{conversation_id}",
                error.code,
            ) from None
        raise
    printer.end_lines()
    if not view.sealed:
        _say(
            "the stream ended before the turn did; it may still be running: "
            f"dispatch history {conversation_id}"
        )
        print(f"conversation: {conversation_id}", file=sys.stderr)
        return errors.FAILED
    if view.reason not in ("stop", "error"):
        printer.note(f"turn ended: {view.reason}")
    _metrics_line(client, conversation_id, view.turn_id)
    print(f"conversation: {conversation_id}", file=sys.stderr)
    return errors.FAILED if view.reason in ("error", "aborted", "interrupted") else errors.OK


def _metrics_line(client: Client, conversation_id: str, turn_id: str | None) -> None:
    """The sealed turn's metrics row, numbered as in the web app (its place in the conversation)."""
    try:
        turns = client.metrics(conversation_id).get("turns") or []
    except CliError as error:
        print(f"(no metrics: {error.message})", file=sys.stderr)
        return
    # A compaction turn has no number: the web app counts turns only.
    numbered = [turn for turn in turns if turn.get("kind") != "compaction"]
    for number, turn in enumerate(numbered, 1):
        if turn.get("turnId") == turn_id:
            print(metrics.turn_line(turn, number), file=sys.stderr)
            return


def history(client: Client, args) -> int:
    data = client.history(args.conversation)
    if args.json:
        _print_json(data)
        return errors.OK
    chunks = data.get("chunks") or []
    if not chunks:
        # The API reads a conversation it has never seen as empty (docs/protocol.md#5-http-api).
        raise CliError(f"no messages in conversation {args.conversation}", errors.NOT_FOUND)
    printer = render.Printer(
        sys.stdout,
        sys.stdout,
        show_reasoning=args.show_reasoning,
        dim=sys.stdout.isatty() and not os.environ.get("NO_COLOR"),
    )
    render.show_history(chunks, printer)
    return errors.OK


def export(client: Client, args) -> int:
    text = client.export(args.conversation, args.format)
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as error:
            raise CliError(f"cannot write {args.output}: {error.strerror}", errors.USAGE) from None
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return errors.OK


def stop(client: Client, args) -> int:
    data = client.stop(args.conversation)
    if data.get("abortedTurn"):
        print(f"stopped the running turn of {args.conversation}")
    else:
        print(f"no turn was running in {args.conversation}")
    return errors.OK


COMMANDS = {"models": models, "chat": chat, "history": history, "export": export, "stop": stop}


# ---------------------------------------------------------------- helpers


def _say(message: str) -> None:
    print(f"dispatch: {message}", file=sys.stderr, flush=True)


def _print_json(data: dict) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def _version() -> str:
    try:
        return version("dispatch")
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
