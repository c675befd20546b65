"""Install the plugin distributions here into a directory, as pip installs any package.

Each project is packed into a wheel (a zip with its ``.dist-info``: METADATA, WHEEL,
``entry_points.txt`` from its pyproject's ``[project.entry-points]``, RECORD), and pip installs
the wheels with ``--target``: the directory then holds the packages and their real
``.dist-info``, so ``importlib.metadata`` finds their entry points once it is on the path. No
build backend is needed, and nothing is downloaded.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECTS = ("echo", "broken", "unlisted")


def build_wheel(project: Path, out: Path) -> Path:
    meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    name, version = meta["name"], meta["version"]
    stem = f"{name.replace('-', '_')}-{version}"
    files: dict[str, bytes] = {
        path.relative_to(project).as_posix(): path.read_bytes()
        for path in sorted(project.rglob("*.py"))
    }
    info = f"{stem}.dist-info"
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        f"Summary: {meta.get('description', '')}\n"
    ).encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: tests/plugin_packages\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n"
    )
    groups = meta.get("entry-points", {})
    files[f"{info}/entry_points.txt"] = "".join(
        f"[{group}]\n" + "".join(f"{key} = {value}\n" for key, value in entries.items()) + "\n"
        for group, entries in groups.items()
    ).encode()
    record = [f"{path},sha256={_digest(data)},{len(data)}" for path, data in files.items()] + [
        f"{info}/RECORD,,"
    ]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = out / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def install(target: Path, projects=PROJECTS) -> Path:
    """pip-install the projects into ``target`` (created); returns ``target``."""
    wheels = target.parent / f"{target.name}-wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    built = [str(build_wheel(HERE / project, wheels)) for project in projects]
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--disable-pip-version-check", "--target", str(target), *built],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return target
