"""``dispatch`` against a live server: every command, its output and its exit code."""

from __future__ import annotations

import json
import signal
import threading
import uuid
from pathlib import Path

from chat.runtime import TurnMetrics
from metrics.format import turn_row
from tests.chat.live import COMPLETIONS, wait_for
from tests.chat.providers.sse_server import (
    Reply,
    openai_chunk,
    openai_text_reply,
    openai_tool_reply,
    openai_usage,
)
from tests.servers import free_port


def new_id() -> str:
    return "cli-" + uuid.uuid4().hex[:12]


def gated_reply(gate: threading.Event) -> Reply:
    """``Hello``, then a wait for ``gate``, then `` world``."""
    return Reply(
        events=[
            openai_chunk({"role": "assistant", "content": "Hello"}),
            gate,
            openai_chunk({"content": " world"}),
            openai_chunk({}, "stop"),
            openai_chunk(usage=openai_usage(12, 4)),
            "[DONE]",
        ]
    )


def sealed_turns(stack, conversation_id: str) -> list[dict]:
    with stack.client() as client:
        response = client.get(f"/conversations/{conversation_id}/metrics")
    assert response.status_code == 200, response.text
    return response.json()["turns"]


def conversation_status(stack, conversation_id: str) -> str | None:
    with stack.client() as client:
        listed = client.get("/conversations", params={"q": conversation_id}).json()
    return next((c["status"] for c in listed["conversations"] if c["id"] == conversation_id), None)


def workspace(stack, name: str) -> Path:
    path = stack.workspace() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def stderr_lines(done) -> list[str]:
    return done.stderr.splitlines()


# ---------------------------------------------------------------- models


def test_models_lists_the_servers_models_with_their_context_window(dispatch):
    done = dispatch("models")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "scripted/test-model   8,192 tokens context",
        "scripted/other-model  8,192 tokens context",
    ]
    assert done.stderr == ""

    raw = dispatch("models", "--json")
    assert raw.returncode == 0
    assert json.loads(raw.stdout)["models"] == ["scripted/test-model", "scripted/other-model"]


# ---------------------------------------------------------------- chat


def test_a_chat_turn_streams_text_tool_calls_metrics_and_the_conversation_id(stack, dispatch):
    (workspace(stack, "cli-project") / "notes.txt").write_text("hello")
    stack.scripted.script(
        COMPLETIONS,
        openai_tool_reply([("call_1", "list_files", {})]),
        openai_text_reply("There is one file: notes.txt."),
    )
    done = dispatch("chat", "what files?", "--cwd", "cli-project")
    assert done.returncode == 0, done.stderr
    # stdout is the answer alone, so it can be piped; everything else is on stderr.
    assert done.stdout == "There is one file: notes.txt.\n"
    lines = stderr_lines(done)
    assert lines[0] == "→ list_files {} ✓ notes.txt"
    conversation_id = lines[-1].removeprefix("conversation: ")
    assert lines[-1] == f"conversation: {conversation_id}" and conversation_id
    [turn] = sealed_turns(stack, conversation_id)
    # The metrics line is the web app's turn row of the stored turn, to the character.
    assert lines[-2] == turn_row(TurnMetrics.from_wire(turn), 1)["text"]
    assert lines[-2].startswith("turn 1 · 30 tok (20 in / 10 out) · ")
    assert len(lines) == 3

    # --conversation continues it: the model sees the first turn, and this is turn 2.
    stack.scripted.script(COMPLETIONS, openai_text_reply("Yes."))
    again = dispatch("chat", "sure?", "--conversation", conversation_id)
    assert again.returncode == 0, again.stderr
    assert again.stdout == "Yes.\n"
    prompt = stack.scripted.requests[-1].body["messages"]
    assert [m["content"] for m in prompt if m["role"] == "user"] == ["what files?", "sure?"]
    turns = sealed_turns(stack, conversation_id)
    assert stderr_lines(again) == [
        turn_row(TurnMetrics.from_wire(turns[1]), 2)["text"],
        f"conversation: {conversation_id}",
    ]

    # history shows the whole conversation, tool calls as one line each.
    history = dispatch("history", conversation_id)
    assert history.returncode == 0, history.stderr
    assert history.stdout == (
        "── you\n"
        "what files?\n"
        "── assistant\n"
        "→ list_files {} ✓ notes.txt\n"
        "There is one file: notes.txt.\n"
        "── you\n"
        "sure?\n"
        "── assistant\n"
        "Yes.\n"
    )
    raw = dispatch("history", conversation_id, "--json")
    with stack.client() as client:
        assert json.loads(raw.stdout) == client.get(f"/conversations/{conversation_id}").json()


def test_several_calls_in_one_step_get_their_results_on_lines_of_their_own(stack, dispatch):
    (workspace(stack, "cli-two") / "a.txt").write_text("first line of a\nsecond")
    stack.scripted.script(
        COMPLETIONS,
        openai_tool_reply(
            [
                ("call_a", "read_file", {"path": "a.txt"}),
                ("call_b", "read_file", {"path": "missing.txt"}),
            ]
        ),
        openai_text_reply("Done."),
    )
    done = dispatch("chat", "read them", "--cwd", "cli-two")
    assert done.returncode == 0, done.stderr
    lines = stderr_lines(done)
    call_a, call_b = '→ read_file {"path": "a.txt"}', '→ read_file {"path": "missing.txt"}'
    assert lines[0] == call_a
    # The two calls run together; their results arrive in the order they finish.
    if lines[1] == call_b:  # a's first: each result on a line of its own
        assert lines[2].startswith("✓ read_file: ") and "first line of a" in lines[2]
        assert lines[3].startswith("✗ read_file: ") and "missing.txt" in lines[3]
    else:  # b's first: it is the next thing to show after b's call, so it finishes that line
        assert lines[1].startswith(call_b + " ✗ ") and "missing.txt" in lines[1]
        assert lines[2].startswith("✓ read_file: ") and "first line of a" in lines[2]
    assert done.stdout == "Done.\n"


def test_text_before_a_tool_call_ends_its_line_first(stack, dispatch):
    stack.scripted.script(
        COMPLETIONS,
        Reply(
            events=[
                openai_chunk({"role": "assistant", "content": "Let me look."}),
                openai_chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "list_files", "arguments": "{}"},
                            }
                        ]
                    }
                ),
                openai_chunk({}, "tool_calls"),
                openai_chunk(usage=openai_usage(10, 5)),
                "[DONE]",
            ]
        ),
        openai_text_reply("Nothing here."),
    )
    done = dispatch("chat", "look", "--cwd", "cli-text-first")
    assert done.returncode == 0, done.stderr
    # Each step's text ends its line: piped, the answer is still readable.
    assert done.stdout == "Let me look.\nNothing here.\n"


def test_reasoning_is_shown_only_when_asked(stack, dispatch):
    def reasoning_reply() -> Reply:
        return Reply(
            events=[
                openai_chunk({"role": "assistant", "reasoning_content": "Think hard."}),
                openai_chunk({"content": "Answer."}),
                openai_chunk({}, "stop"),
                openai_chunk(usage=openai_usage(10, 5)),
                "[DONE]",
            ]
        )

    stack.scripted.script(COMPLETIONS, reasoning_reply(), reasoning_reply())
    hidden = dispatch("chat", "q")
    assert hidden.returncode == 0, hidden.stderr
    assert hidden.stdout == "Answer.\n"
    shown = dispatch("chat", "q", "--show-reasoning")
    # NO_COLOR is set (and stdout is a pipe): no escape codes.
    assert shown.stdout == "Think hard.\nAnswer.\n"


def test_the_message_can_come_from_stdin(stack, dispatch):
    stack.scripted.script(COMPLETIONS, openai_text_reply("Read it."))
    done = dispatch("chat", "-", input="a long\nmessage\n")
    assert done.returncode == 0, done.stderr
    user = [m for m in stack.scripted.requests[-1].body["messages"] if m["role"] == "user"]
    assert user[-1]["content"] == "a long\nmessage\n"


def test_a_provider_retry_is_a_line_and_the_turn_goes_on(stack, dispatch):
    stack.scripted.script(
        COMPLETIONS,
        Reply(status=429, body={"error": {"message": "slow down"}}),
        openai_text_reply("ok"),
    )
    done = dispatch("chat", "x")
    assert done.returncode == 0, done.stderr
    retry = stderr_lines(done)[0]
    assert retry.startswith("↻ retrying (#1) in 50ms: ") and "slow down" in retry
    assert done.stdout == "ok\n"


def test_a_turn_that_ends_in_an_error_exits_1_and_still_names_the_conversation(stack, dispatch):
    stack.scripted.script(COMPLETIONS, Reply(status=400, body={"error": {"message": "bad prompt"}}))
    conversation_id = new_id()
    done = dispatch("chat", "x", "-c", conversation_id)
    assert done.returncode == 1
    lines = stderr_lines(done)
    assert lines[0].startswith("✗ error: ") and "bad prompt" in lines[0]
    assert lines[-1] == f"conversation: {conversation_id}"
    assert lines[-2].startswith("turn 1 · ")


def test_stop_aborts_a_running_turn_from_another_terminal(stack, dispatch, dispatch_background):
    gate = threading.Event()
    stack.scripted.script(COMPLETIONS, gated_reply(gate))
    conversation_id = new_id()
    chat = dispatch_background("chat", "go", "-c", conversation_id)
    wait_for(lambda: chat.stdout == "Hello", "the first text to be printed")

    stopped = dispatch("stop", conversation_id)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout == f"stopped the running turn of {conversation_id}\n"
    gate.set()
    assert chat.wait() == 1
    assert chat.stdout == "Hello\n"
    lines = chat.stderr.splitlines()
    assert lines[0] == "turn ended: aborted"
    assert lines[-1] == f"conversation: {conversation_id}"
    assert sealed_turns(stack, conversation_id)[0]["finishReason"] == "aborted"

    again = dispatch("stop", conversation_id)
    assert (again.returncode, again.stdout) == (0, f"no turn was running in {conversation_id}\n")


def test_ctrl_c_detaches_and_the_turn_goes_on(stack, dispatch_background):
    gate = threading.Event()
    stack.scripted.script(COMPLETIONS, gated_reply(gate))
    conversation_id = new_id()
    chat = dispatch_background("chat", "go", "-c", conversation_id)
    wait_for(lambda: chat.stdout == "Hello", "the first text to be printed")

    chat.process.send_signal(signal.SIGINT)
    assert chat.wait() == 130
    assert chat.stderr.splitlines() == [
        f"dispatch: detached; the turn goes on on the server. Stop it: dispatch stop "
        f"{conversation_id} · read it: dispatch history {conversation_id}"
    ]
    assert "Traceback" not in chat.stderr
    assert conversation_status(stack, conversation_id) == "active"
    gate.set()
    turns = wait_for(lambda: sealed_turns(stack, conversation_id), "the turn to seal")
    assert turns[0]["finishReason"] == "stop"


def test_a_second_turn_while_one_runs_is_refused(stack, dispatch, dispatch_background):
    gate = threading.Event()
    stack.scripted.script(COMPLETIONS, gated_reply(gate))
    conversation_id = new_id()
    first = dispatch_background("chat", "go", "-c", conversation_id)
    wait_for(lambda: first.stdout == "Hello", "the first text to be printed")
    busy = dispatch("chat", "again", "-c", conversation_id)
    gate.set()
    assert busy.returncode == 1
    assert busy.stderr == "dispatch: a turn is already running in this conversation\n"
    assert first.wait() == 0


# ---------------------------------------------------------------- failures


def test_a_bad_token_exits_3(stack, dispatch, cli_env):
    done = dispatch("models", env=cli_env | {"DISPATCH_TOKEN": "not-a-token"})
    assert done.returncode == 3
    assert done.stderr == (
        "dispatch: the server refused the token from DISPATCH_TOKEN (HTTP 401): "
        "it may be mistyped or revoked\n"
    )
    assert done.stdout == ""


def test_no_token_exits_3_and_says_where_to_put_one(stack, dispatch, cli_env, config_home):
    env = {k: v for k, v in cli_env.items() if k != "DISPATCH_TOKEN"}
    done = dispatch("chat", "hi", env=env)
    assert done.returncode == 3
    [line] = done.stderr.splitlines()
    assert line.startswith("dispatch: the server wants a token")
    assert "DISPATCH_TOKEN" in line and str(config_home / "dispatch" / "cli.toml") in line


def test_an_unknown_model_exits_4(stack, dispatch):
    conversation_id = new_id()
    done = dispatch("chat", "hi", "--model", "nope/x", "-c", conversation_id)
    assert done.returncode == 4
    [line] = done.stderr.splitlines()
    assert line.startswith("dispatch: unknown model 'nope/x'") and "dispatch models" in line
    # Refused before anything was stored.
    assert conversation_status(stack, conversation_id) is None


def test_a_server_that_is_down_exits_5(dispatch, cli_env):
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["models"], ["chat", "hi"], ["history", "x"], ["stop", "x"]):
        done = dispatch(*args, env=cli_env | {"DISPATCH_URL": url})
        assert done.returncode == 5, args
        assert done.stderr == (
            f"dispatch: cannot connect to {url} (connection refused): is the server running?\n"
        )


def test_someone_elses_conversation_is_not_found(stack, dispatch, cli_env):
    stack.scripted.script(COMPLETIONS, openai_text_reply("mine"))
    conversation_id = new_id()
    assert dispatch("chat", "private", "-c", conversation_id).returncode == 0
    bob = cli_env | {"DISPATCH_TOKEN": stack.tokens["bob"]}
    for args in (["history", conversation_id], ["stop", conversation_id]):
        done = dispatch(*args, env=bob)
        assert done.returncode == 4, args
        assert done.stderr.startswith("dispatch: conversation not found")
        assert "private" not in done.stdout + done.stderr
    taken = dispatch("chat", "mine now", "-c", conversation_id, env=bob)
    assert taken.returncode == 4


def test_an_unknown_conversation_has_no_history(dispatch):
    done = dispatch("history", new_id())
    assert done.returncode == 4
    assert done.stderr.startswith("dispatch: no messages in conversation cli-")


def test_invalid_input_is_a_usage_error(dispatch):
    empty = dispatch("chat", "  ")
    assert (empty.returncode, empty.stderr) == (2, "dispatch: the message is empty\n")
    for command in (["history"], ["stop"], ["export"], ["chat", "hi", "-c"]):
        bad_id = dispatch(*command, "../etc")
        assert bad_id.returncode == 2, command
        [line] = bad_id.stderr.splitlines()
        assert "invalid conversation id '../etc'" in line
    no_message = dispatch("chat")
    assert no_message.returncode == 2
    assert len(no_message.stderr.splitlines()) == 1
    outside = dispatch("chat", "hi", "--cwd", "../..")
    assert outside.returncode == 2
    assert "cwd: must be a directory inside your workspace" in outside.stderr


def test_export_writes_markdown_and_json(stack, dispatch, tmp_path):
    stack.scripted.script(COMPLETIONS, openai_text_reply("The **exported** answer."))
    conversation_id = new_id()
    assert dispatch("chat", "to export", "-c", conversation_id).returncode == 0

    markdown = dispatch("export", conversation_id)  # --format md is the default
    assert markdown.returncode == 0, markdown.stderr
    assert markdown.stdout.startswith("# to export\n")
    assert "**User**\n\nto export" in markdown.stdout
    assert "The **exported** answer." in markdown.stdout
    assert "*turn 1 · " in markdown.stdout
    assert markdown.stderr == ""

    target = tmp_path / "chat.json"
    done = dispatch("export", conversation_id, "--format", "json", "-o", str(target))
    assert (done.returncode, done.stdout) == (0, "")
    document = json.loads(target.read_text())
    assert document["format"] == "dispatch.conversation"
    assert document["conversation"]["id"] == conversation_id
    assert [c["chunk"]["text"] for c in document["chunks"]] == [
        "to export",
        "The **exported** answer.",
    ]
    assert document["turns"][0]["metrics"]["finishReason"] == "stop"

    missing = dispatch("export", new_id(), "--format", "json")
    assert missing.returncode == 4
    assert missing.stderr.startswith("dispatch: conversation not found: cli-")
    assert dispatch("export", conversation_id, "--format", "pdf").returncode == 2


# ---------------------------------------------------------------- configuration


def test_flags_beat_the_environment_which_beats_the_config_file(
    stack, dispatch, cli_env, config_home
):
    bare = {k: v for k, v in cli_env.items() if not k.startswith("DISPATCH_")}
    (config_home / "dispatch").mkdir()
    config = config_home / "dispatch" / "cli.toml"
    config.write_text(f'url = "{stack.url}"\ntoken = "{stack.token}"\n')
    assert dispatch("models", env=bare).returncode == 0  # the file alone is enough

    wrong = bare | {"DISPATCH_TOKEN": "wrong"}
    assert dispatch("models", env=wrong).returncode == 3  # the environment beats the file
    # A flag beats the environment, before or after the command.
    assert dispatch("--token", stack.token, "models", env=wrong).returncode == 0
    assert dispatch("models", "--token", stack.token, env=wrong).returncode == 0
    down = f"http://127.0.0.1:{free_port()}"
    assert dispatch("models", env=bare | {"DISPATCH_URL": down}).returncode == 5
    assert dispatch("models", "--url", stack.url, env=bare | {"DISPATCH_URL": down}).returncode == 0


def test_a_broken_config_file_is_a_usage_error_naming_it(dispatch, cli_env, config_home):
    bare = {k: v for k, v in cli_env.items() if not k.startswith("DISPATCH_")}
    (config_home / "dispatch").mkdir()
    config = config_home / "dispatch" / "cli.toml"
    for text, fragment in (
        ('url = "http://x"\ntoken = = 1\n', "line 2"),
        ('tokn = "abc"', "unknown key 'tokn'"),
        ("token = 5", "token must be a string"),
    ):
        config.write_text(text)
        done = dispatch("models", env=bare)
        assert done.returncode == 2, text
        assert done.stderr.startswith(f"dispatch: {config}: ") and fragment in done.stderr
