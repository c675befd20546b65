"""Loading and validating the Dispatch config file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from chat.config import (
    OPENAI_DEFAULT_BASE_URL,
    ConfigError,
    CredentialConfig,
    DispatchConfig,
    McpServerConfig,
    RuntimeConfig,
    ToolsConfig,
    get_config,
    load_config,
    reset_config,
)

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
default_model = "openai/gpt-4o-mini"

[runtime]
max_steps = 10
retry_delays = [0.5, 1]
max_tokens = 2048
vision_model = "openai/gpt-4o-mini"

[tools]
workspace_root = "/srv/work"
run_shell = true
run_shell_timeout = 30

[[credentials]]
name = "openai"
kind = "openai"
api_key_env = "OPENAI_API_KEY"
models = ["gpt-4o-mini", "o3"]
context_window = 128000
reasoning_effort = true
vision = ["gpt-4o-mini"]

[[credentials]]
name = "claude"
kind = "anthropic"
vision = true

[[credentials]]
name = "llama"
kind = "openai"
base_url = "http://127.0.0.1:8080/v1"

[[credentials]]
name = "mine"
kind = "local"
path = "/models/qwen3-0.6b.gguf"

[[mcp_servers]]
name = "files"
command = ["python", "server.py"]
env = { TOKEN = "x" }

[[mcp_servers]]
name = "web"
url = "http://127.0.0.1:9000/mcp"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dispatch.toml"
    path.write_text(text)
    return path


def test_a_good_file_is_read_completely(tmp_path):
    path = write(tmp_path, GOOD)

    config = load_config(path)

    assert config == DispatchConfig(
        credentials=(
            CredentialConfig(
                name="openai",
                kind="openai",
                base_url="https://api.openai.com/v1",
                api_key_env="OPENAI_API_KEY",
                models=("gpt-4o-mini", "o3"),
                context_window=128000,
                reasoning_effort=True,
                vision=("gpt-4o-mini",),
            ),
            CredentialConfig(name="claude", kind="anthropic", vision=True),
            CredentialConfig(name="llama", kind="openai", base_url="http://127.0.0.1:8080/v1"),
            CredentialConfig(
                name="mine", kind="local", path="/models/qwen3-0.6b.gguf", models=("qwen3-0.6b",)
            ),
        ),
        default_model="openai/gpt-4o-mini",
        runtime=RuntimeConfig(
            max_steps=10,
            retry_delays=(0.5, 1.0),
            max_tokens=2048,
            vision_model="openai/gpt-4o-mini",
        ),
        tools=ToolsConfig(workspace_root=Path("/srv/work"), run_shell=True, run_shell_timeout=30),
        mcp_servers=(
            McpServerConfig(name="files", command=("python", "server.py"), env={"TOKEN": "x"}),
            McpServerConfig(name="web", url="http://127.0.0.1:9000/mcp"),
        ),
        source=str(path),
    )


def test_sampling_and_compaction_keys_are_read(tmp_path):
    path = tmp_path / "dispatch.toml"
    path.write_text(
        "[compaction]\nthreshold = 0\nkeep_messages = 4\nsummary_max_tokens = 300\n"
        '[[credentials]]\nname = "l"\nkind = "local"\nmax_tokens = 900\n'
        "temperature = 0.5\ntop_p = 0.8\ntop_k = 30\nmin_p = 0.1\nrepeat_penalty = 1.2\n"
        "presence_penalty = 0.5\nfrequency_penalty = -0.5\nseed = 7\n"
    )
    config = load_config(path)
    assert (config.compaction.threshold, config.compaction.keep_messages) == (0, 4)
    assert config.compaction.summary_max_tokens == 300
    (local,) = config.credentials
    assert (local.max_tokens, local.temperature, local.top_p, local.top_k) == (900, 0.5, 0.8, 30)
    assert (local.min_p, local.repeat_penalty, local.seed) == (0.1, 1.2, 7)
    assert (local.presence_penalty, local.frequency_penalty) == (0.5, -0.5)
    assert load_config(tmp_path / "none.toml").compaction.threshold == 85


def test_a_missing_file_means_the_defaults_without_a_source(tmp_path):
    assert load_config(tmp_path / "absent.toml") == DispatchConfig()
    assert DispatchConfig().source is None


def test_a_local_credential_without_path_or_models_serves_the_bundled_model(tmp_path):
    config = load_config(write(tmp_path, '[[credentials]]\nname = "local"\nkind = "local"\n'))

    assert config.credentials[0].models == ("smollm2-135m-instruct",)
    assert config.credentials[0].path is None


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        pytest.param('default_model = "a/b"\nname = \n', 2, "Invalid value", id="toml-syntax"),
        pytest.param('\n\ncolour = "red"\n', 3, "unknown key 'colour'", id="unknown-top-key"),
        pytest.param(
            '[[credentials]]\nname = "a"\nkind = "openai"\n\n'
            '[[credentials]]\nname = "b"\nkind = "openai"\nmodel = ["x"]\n',
            8,
            "unknown key 'credentials[1].model'",
            id="unknown-credential-key",
        ),
        pytest.param(
            '[runtime]\nmax_steps = "ten"\n',
            2,
            "runtime.max_steps must be a positive integer",
            id="wrong-type",
        ),
        pytest.param(
            "[runtime]\nmax_steps = true\n", 2, "must be a positive integer", id="bool-is-not-int"
        ),
        pytest.param(
            "[runtime]\nretry_delays = [1, -2]\n",
            2,
            "retry_delays must be an array",
            id="negative-delay",
        ),
        pytest.param(
            '[tools]\nrun_shell = "yes"\n',
            2,
            "tools.run_shell must be true or false",
            id="not-a-bool",
        ),
        pytest.param(
            '[[credentials]]\nname = "a"\nkind = "gemini"\n',
            3,
            "unknown kind 'gemini'",
            id="unknown-kind",
        ),
        pytest.param(
            '[[credentials]]\nname = "a"\nkind = "openai"\n'
            '[[credentials]]\nname = "a"\nkind = "anthropic"\n',
            5,
            "duplicate credentials name 'a'",
            id="duplicate-credential",
        ),
        pytest.param(
            '# models\n[[credentials]]\nkind = "openai"\n',
            2,
            "credentials[0].name is required",
            id="missing-name",
        ),
        pytest.param(
            '[[credentials]]\nname = "a/b"\nkind = "openai"\n',
            2,
            "must not contain '/'",
            id="slash-in-name",
        ),
        pytest.param(
            '[[credentials]]\nname = "a"\nkind = "local"\nbase_url = "http://x"\n',
            4,
            "base_url is not allowed for a credential of kind 'local'",
            id="key-for-other-kind",
        ),
        pytest.param(
            '[[credentials]]\nname = "a"\nkind = "openai"\nmodels = []\n',
            4,
            "models must be a non-empty array of strings",
            id="empty-models",
        ),
        pytest.param(
            'default_model = "nope/x"\n[[credentials]]\nname = "a"\nkind = "openai"\n',
            1,
            "names no credential",
            id="default-model-credential",
        ),
        pytest.param(
            '\ndefault_model = "a/z"\n[[credentials]]\nname = "a"\nkind = "openai"\n'
            'models = ["y"]\n',
            2,
            "has no model 'z'",
            id="default-model-model",
        ),
        pytest.param(
            '[[mcp_servers]]\nname = "m"\ncommand = ["x"]\nurl = "http://y"\n',
            1,
            "exactly one of command or url",
            id="mcp-command-and-url",
        ),
        pytest.param(
            '[[credentials]]\nname = "a"\nkind = "openai"\ntemperature = 3\n',
            4,
            "credentials[0].temperature must be a number from 0 to 2",
            id="temperature-range",
        ),
        pytest.param(
            '[[credentials]]\nname = "a"\nkind = "anthropic"\nrepeat_penalty = 1.1\n',
            4,
            "repeat_penalty is not allowed for a credential of kind 'anthropic'",
            id="sampling-key-for-other-kind",
        ),
        pytest.param(
            "[compaction]\nthreshold = 120\n",
            2,
            "compaction.threshold must be an integer from 0 to 100",
            id="compaction-threshold",
        ),
        pytest.param("runtime = 3\n", 1, "runtime must be a table", id="section-not-a-table"),
        pytest.param(
            '[[credentials]]\nname = "a"\nkindd = "openai"\n',
            3,
            "unknown key 'credentials[0].kindd' (expected one of: api_key_env, base_url, "
            "context_window, frequency_penalty, kind, max_tokens, min_p, models, name, options, "
            "path, presence_penalty, read_timeout, reasoning_effort, repeat_penalty, seed, "
            "temperature, top_k, top_p, vision)",
            id="misspelt-key-before-the-missing-one",
        ),
        pytest.param(
            'source = "elsewhere.toml"\n', 1, "unknown key 'source'", id="source-is-not-a-key"
        ),
        pytest.param(
            "credentials = [1]\n",
            1,
            "credentials must be an array of tables ([[credentials]])",
            id="not-an-array-of-tables",
        ),
        pytest.param(
            '[[credentials]]\nname = "a"\nkind = "local"\n\nreasoning_effort = false\n',
            5,
            "reasoning_effort is not allowed for a credential of kind 'local'",
            id="false-is-still-a-key-for-another-kind",
        ),
        pytest.param(
            '[[credentials]]\nname = "a"\nkind = "openai"\nmodels = ["x", "x"]\n',
            4,
            "credential 'a' lists a model twice",
            id="model-twice",
        ),
        pytest.param(
            '[[credentials]]\nname = "a"\nkind = "openai"\nvision = "yes"\n',
            4,
            "credentials[0].vision must be true, false or an array of model names",
            id="vision-not-a-flag-or-names",
        ),
        pytest.param(
            '[[credentials]]\nname = "a"\nkind = "local"\nvision = true\n',
            4,
            "vision is not allowed for a credential of kind 'local'",
            id="vision-for-the-embedded-kind",
        ),
        pytest.param(
            '[runtime]\nvision_model = "a/y"\n[[credentials]]\nname = "a"\nkind = "openai"\n'
            'models = ["x"]\n',
            2,
            "runtime.vision_model 'a/y': credential 'a' has no model 'y' (models: x)",
            id="vision-model-unknown",
        ),
        pytest.param(
            '[[mcp_servers]]\nname = "m"\nurl = "u"\n[[mcp_servers]]\nname = "m"\ncommand = ["x"]\n',
            5,
            "duplicate mcp_servers name 'm'",
            id="duplicate-mcp-server",
        ),
    ],
)
def test_errors_name_the_file_the_line_and_the_problem(tmp_path, text, line, problem):
    path = write(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    message = str(caught.value)
    assert message.startswith(f"{path}, line {line}")
    assert problem in message


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        # Was "must be greater than 0" for 0 and "must be a number ≥ 0" for a negative number.
        pytest.param(
            "[tools]\nrun_shell_timeout = -1\n",
            2,
            "tools.run_shell_timeout must be a number greater than 0",
            id="seconds-negative",
        ),
        pytest.param(
            '[[credentials]]\nname = "a"\nkind = "openai"\nread_timeout = 0\n',
            4,
            "credentials[0].read_timeout must be a number greater than 0",
            id="seconds-zero",
        ),
        # Was "mcp server 'm': env must be a table of strings".
        pytest.param(
            '[[mcp_servers]]\nname = "m"\nurl = "u"\nenv = { A = 1 }\n',
            4,
            "mcp_servers[0].env must be a table of strings",
            id="env-of-strings",
        ),
        # Was "credentials[0].kind must be a non-empty string".
        pytest.param(
            '[[credentials]]\nname = "a"\nkind = 3\n',
            3,
            "unknown kind 3 (expected one of: openai, anthropic, local)",
            id="kind-not-a-string",
        ),
        # A check across keys comes after every key's own type: the kind is reported first
        # (the '/' in the name was, before).
        pytest.param(
            '[[credentials]]\nname = "a/b"\nkind = "gemini"\n',
            3,
            "unknown kind 'gemini' (expected one of: openai, anthropic, local)",
            id="own-type-before-cross-key",
        ),
    ],
)
def test_messages_that_changed_with_the_pydantic_model(tmp_path, text, line, message):
    path = write(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert str(caught.value) == f"{path}, line {line}: {message}"


def test_a_config_made_in_code_is_checked_and_defaulted_like_a_file():
    assert CredentialConfig(name="o", kind="openai").base_url == OPENAI_DEFAULT_BASE_URL
    assert ToolsConfig(workspace_root="rel").workspace_root == Path("rel")
    with pytest.raises(ValidationError, match="must not contain '/'"):
        CredentialConfig(name="a/b", kind="openai")
    with pytest.raises(ValidationError):
        RuntimeConfig(max_steps="3")  # strict: no conversion
    config = RuntimeConfig()
    with pytest.raises(ValidationError):
        config.max_steps = 3  # frozen


def test_get_config_reads_settings_once_until_reset(tmp_path, settings):
    settings.DISPATCH_CONFIG = str(write(tmp_path, "[runtime]\nmax_steps = 3\n"))
    reset_config()
    try:
        first = get_config()
        (tmp_path / "dispatch.toml").write_text("[runtime]\nmax_steps = 4\n")
        assert get_config() is first and first.runtime.max_steps == 3
        reset_config()
        assert get_config().runtime.max_steps == 4
    finally:
        reset_config()


def test_a_bad_file_stops_manage_py_with_the_message(tmp_path):
    path = write(tmp_path, '[[credentials]]\nname = "a"\nkind = "nope"\n')
    env = {**os.environ, "DISPATCH_CONFIG": str(path), "DISPATCH_VAR_DIR": str(tmp_path)}

    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"Dispatch config error: {path}, line 3: unknown kind 'nope' "
        "(expected one of: openai, anthropic, local)"
    )
