"""System prompt templates (chat.prompts) and how a step's request starts with the prompt."""

from __future__ import annotations

import datetime as dt
import subprocess

import pytest

from chat.prompts import FILE_MAX_CHARS, Context, TemplateError, parse
from chat.providers.local import to_chat_messages
from chat.runtime import Message, ToolSpec
from chat.runtime.context import request_messages

NOW = dt.datetime(2026, 11, 30, 9, 5, tzinfo=dt.timezone(dt.timedelta(hours=1)))


def context(tmp_path, files: dict[str, str] | None = None, **kwargs) -> Context:
    files = files or {}
    return Context(
        cwd=str(tmp_path),
        model="cred/model",
        conversation_id="c-1",
        user="alice",
        read_file=files.get,
        workspace=str(tmp_path),
        now=NOW,
        **kwargs,
    )


def render(source: str, tmp_path, files=None) -> str:
    return parse(source).render(context(tmp_path, files))


def test_variables_and_conditionals(tmp_path):
    assert render("{{date}} {{ time }} {{weekday}}", tmp_path) == "2026-11-30 09:05 +0100 Monday"
    assert render("{{model}} {{conversation_id}} {{user}} {{cwd}}", tmp_path) == (
        f"cred/model c-1 alice {tmp_path}"
    )
    source = "[if file:A.md]A: {{file:A.md}}[else]no A[endif] [if not git_branch]no git[endif]"
    assert render(source, tmp_path) == "no A no git"
    assert render(source, tmp_path, {"A.md": "alpha"}) == "A: alpha no git"
    nested = "[if cwd]x[if file:B]b[else]nb[endif]y[endif]"
    assert render(nested, tmp_path) == "xnby"
    long = "z" * (FILE_MAX_CHARS + 5)
    rendered = render("{{file:L}}", tmp_path, {"L": long})
    assert rendered.startswith("z" * FILE_MAX_CHARS) and "truncated" in rendered


def test_git_branch_and_status_of_a_checkout_inside_the_workspace(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "trunk", str(repo)], check=True)
    (repo / "new.txt").write_text("x")
    ctx = Context(
        cwd=str(repo), model="m", conversation_id="c", user="u", read_file=lambda p: None,
        workspace=str(tmp_path), now=NOW,
    )  # fmt: skip
    assert parse("{{git_branch}}|{{git_status}}").render(ctx) == "trunk|?? new.txt"
    # Outside a checkout (git would otherwise find one above the workspace): empty.
    plain = tmp_path / "plain"
    plain.mkdir()
    ctx = Context(
        cwd=str(plain), model="m", conversation_id="c", user="u", read_file=lambda p: None,
        workspace=str(plain), now=NOW,
    )  # fmt: skip
    assert parse("[if git_branch]git[else]none[endif]").render(ctx) == "none"


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("{{nope}}", "line 1: undefined variable 'nope'"),
        ("a\n\n{{}}", "line 3: {{…}} names no variable"),
        ("[if]x[endif]", "line 1: [if] names no variable"),
        ("x\n[else]", "line 2: [else] without an open [if]"),
        ("[if cwd]a[else]b[else]c[endif]", "line 1: [else] without an open [if]"),
        ("[endif]", "line 1: [endif] without an open [if]"),
        ("\n[if cwd]never closed", "line 2: [if] is never closed with [endif]"),
        ("{{file:../secret}}", "line 1: file:../secret: the path must be relative"),
        ("{{file:/etc/passwd}}", "line 1: file:/etc/passwd: the path must be relative"),
        ("x" * 20_001, "the template is longer than 20,000 characters"),
    ],
)
def test_bad_templates_are_refused_with_their_line(source, error):
    with pytest.raises(TemplateError) as raised:
        parse(source)
    assert str(raised.value).startswith(error)


def test_a_request_starts_with_the_system_prompt_and_the_local_model_adds_its_tools():
    history = [Message("user", [{"type": "text", "text": "hi"}])]
    assert request_messages(history) == history
    messages = request_messages(history, system_prompt="Be brief.")
    assert messages[0] == Message("system", [{"type": "system", "text": "Be brief."}])
    tool = ToolSpec("read_file", "Read a file", {"type": "object", "properties": {}})
    chat = to_chat_messages(messages, [tool])
    assert [m["role"] for m in chat] == ["system", "user"]
    assert chat[0]["content"].startswith("Be brief.\n\n# Tools")
    assert '"name": "read_file"' in chat[0]["content"]


def test_a_bad_deployment_template_stops_start_up_with_its_line(tmp_path):
    from chat.config import ConfigError, load_config

    config = tmp_path / "dispatch.toml"
    config.write_text('default_model = "local/smollm2-135m-instruct"\n\n[system_prompt]\n'
                      'template = "Hi {{who}}"\n')  # fmt: skip
    with pytest.raises(ConfigError) as raised:
        load_config(config)
    assert str(raised.value).startswith(
        f"{config}, line 4: system_prompt.template: undefined variable 'who'"
    )
    (tmp_path / "prompt.md").write_text("Fine.\n[if cwd]\nnot closed\n")
    config.write_text('[system_prompt]\nfile = "prompt.md"\n')
    with pytest.raises(ConfigError) as raised:
        load_config(config)
    assert str(raised.value) == (
        f"{tmp_path / 'prompt.md'}, line 2: [if] is never closed with [endif] "
        f"(system_prompt.file of {config})"
    )
    (tmp_path / "prompt.md").write_text("Work in {{cwd}}.")
    assert load_config(config).system_prompt_template == "Work in {{cwd}}."
    config.write_text('[system_prompt]\ntemplate = "a"\nfile = "prompt.md"\n')
    with pytest.raises(ConfigError, match="exactly one of template or file"):
        load_config(config)
