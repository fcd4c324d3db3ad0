"""The library as a wheel, built from the running app's own files: what a visitor downloads
to run the code a page shows, with nothing but the page.

A pure-Python wheel (the binary distribution format, PEP 427) is a zip of the package's
``.py`` files and a ``.dist-info`` folder: ``METADATA`` (name, version, the dependencies),
``WHEEL`` (format version, ``py3-none-any``), ``entry_points.txt`` (the ``cartpole-lab``
command) and ``RECORD`` (every file's sha256 and size). Its ``Requires-Dist`` pins the
versions this server runs, so the visitor's machine computes what the page showed.

Built in memory (the app folder may be read-only), once per process, the same bytes every
time (fixed timestamps and order). Pure: no Streamlit, no TensorFlow; bytes out.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.metadata
import io
import re
import tomllib
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: The package folder whose files go into the wheel.
PACKAGE_DIR = Path(__file__).resolve().parent
#: The distribution's name, as ``pip install`` and ``pyproject.toml`` know it.
DISTRIBUTION = "cartpole-lab"
#: Python versions the wheel runs on with its pins (their wheels exist for these; tested with 3.11).
PYTHONS = "3.11 to 3.13"
#: Every file's timestamp in the zip (the earliest a zip can hold): the same bytes on every build.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?")


@dataclass(frozen=True)
class Project:
    """What the wheel says about the library, from ``pyproject.toml`` (or the installed metadata)."""

    version: str
    """e.g. ``"0.1.0"``."""
    summary: str
    """One line."""
    requires_python: str
    """e.g. ``">=3.11"``."""
    dependencies: tuple[str, ...]
    """Requirements as the project states them (ranges), e.g. ``"numpy>=1.26"``."""
    scripts: tuple[tuple[str, str], ...]
    """Console commands: ``(name, "module:function")``."""


@functools.cache
def project() -> Project:
    """The library's name, version and dependencies: from ``pyproject.toml`` beside the package
    (a checkout, installed or not), else from the installed distribution's metadata. Read once
    per process."""
    pyproject = PACKAGE_DIR.parent / "pyproject.toml"
    if pyproject.is_file():
        data = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        if data.get("name") == DISTRIBUTION:
            return Project(
                version=data["version"],
                summary=data.get("description", ""),
                requires_python=data.get("requires-python", ""),
                dependencies=tuple(data.get("dependencies", ())),
                scripts=tuple(data.get("scripts", {}).items()),
            )
    meta = importlib.metadata.metadata(DISTRIBUTION)
    entry_points = importlib.metadata.distribution(DISTRIBUTION).entry_points
    return Project(
        version=meta["Version"],
        summary=(meta.get_all("Summary") or [""])[0],
        requires_python=(meta.get_all("Requires-Python") or [""])[0],
        dependencies=tuple(r for r in importlib.metadata.requires(DISTRIBUTION) or () if "extra ==" not in r),
        scripts=tuple((e.name, e.value) for e in entry_points if e.group == "console_scripts"),
    )


def pinned(requirement: str) -> str:
    """``requirement`` pinned to the version this process has installed, extras kept
    (``"gymnasium[box2d]>=1.0"`` -> ``"gymnasium[box2d]==1.4.0"``); unchanged if not installed."""
    match = _REQUIREMENT.match(requirement)
    if match is None:
        return requirement
    name, extras = match.group(1), match.group(2) or ""
    try:
        version = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return requirement
    return f"{name}{extras}=={version}"


def wheel_name() -> str:
    """The wheel's file name, e.g. ``cartpole_lab-0.1.0-py3-none-any.whl``."""
    return f"{_escaped()}-{project().version}-py3-none-any.whl"


def install_command() -> str:
    """The line that installs the downloaded wheel."""
    return f"pip install {wheel_name()}"


@functools.cache
def wheel_bytes() -> bytes:
    """The wheel (zip bytes), built once per process from the package's ``.py`` files."""
    info = project()
    files = [(f"cartpole_core/{path.name}", path.read_bytes()) for path in sorted(PACKAGE_DIR.glob("*.py"))]
    dist_info = f"{_escaped()}-{info.version}.dist-info"
    files += [
        (f"{dist_info}/METADATA", _metadata(info).encode()),
        (f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: cartpole_core.wheel\nRoot-Is-Purelib: true\n"
         b"Tag: py3-none-any\n"),
    ]  # fmt: skip
    if info.scripts:
        scripts = "".join(f"{name} = {target}\n" for name, target in info.scripts)
        files.append((f"{dist_info}/entry_points.txt", f"[console_scripts]\n{scripts}".encode()))
    record = "".join(f"{name},sha256={_digest(data)},{len(data)}\n" for name, data in files)
    files.append((f"{dist_info}/RECORD", (record + f"{dist_info}/RECORD,,\n").encode()))
    return zip_bytes(files)  # the .dist-info last, RECORD at the very end, as the format asks


def zip_bytes(files: Iterable[tuple[str, bytes]]) -> bytes:
    """A zip of ``(name, bytes)`` in the given order, each file dated :data:`ZIP_TIME` and
    readable by all (``0o644``): the same bytes for the same files."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in files:
            entry = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, data)
    return out.getvalue()


def _escaped() -> str:
    """The distribution name as wheel file names spell it (``cartpole_lab``)."""
    return re.sub(r"[-_.]+", "_", DISTRIBUTION).lower()


def _metadata(info: Project) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {DISTRIBUTION}", f"Version: {info.version}"]
    if info.summary:
        lines.append(f"Summary: {info.summary}")
    if info.requires_python:
        lines.append(f"Requires-Python: {info.requires_python}")
    lines += [f"Requires-Dist: {pinned(requirement)}" for requirement in info.dependencies]
    return "\n".join(lines) + "\n"


def _digest(data: bytes) -> str:
    """sha256 as RECORD writes it: URL-safe base64 without the trailing ``=``."""
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
