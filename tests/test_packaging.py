"""The built distributions: what they hold, and that the wheel alone runs the sample site.

Builds the wheel and sdist from this tree, installs the wheel (with the ``demo`` extra)
into a fresh virtualenv, and runs ``manage.py check`` on ``sample_site/`` (which is not in
the wheel) from a directory outside the repository, so every import of esi_views and
esi_drf comes from the installed wheel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import esi_views

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.packaging


def _run(args, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, timeout=900, **kwargs)
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: the build backend (hatchling) comes from the dev extra, no download.
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)])
    wheel, sdist = next(out.glob("*.whl")), next(out.glob("*.tar.gz"))
    _run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)])
    return {"wheel": wheel, "sdist": sdist}


def test_one_version_and_the_license_in_both_distributions(dists):
    version = esi_views.__version__
    assert dists["wheel"].name == f"django_esi_views-{version}-py3-none-any.whl"
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = wheel.namelist()
        metadata = wheel.read(f"django_esi_views-{version}.dist-info/METADATA").decode()
    assert f"django_esi_views-{version}.dist-info/licenses/LICENSE" in names
    assert f"Version: {version}\n" in metadata
    assert "License-Expression: MIT" in metadata
    assert {"esi_views/py.typed", "esi_drf/py.typed"} <= set(names)
    assert "esi_views/templates/esi_views/error.html" in names
    assert any(n.startswith("esi_views/migrations/0001") for n in names)
    # Only the two packages (and their metadata) are installed.
    assert {n.split("/")[0] for n in names} == {
        "esi_views",
        "esi_drf",
        f"django_esi_views-{version}.dist-info",
    }
    with tarfile.open(dists["sdist"]) as sdist:
        assert f"django_esi_views-{version}/LICENSE" in sdist.getnames()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_the_classifiers_name_what_ci_runs(dists):
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        metadata = wheel.read(
            f"django_esi_views-{esi_views.__version__}.dist-info/METADATA"
        ).decode()
    classifiers = {
        line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Classifier: ")
    }
    python = f"Programming Language :: Python :: {sys.version_info[0]}.{sys.version_info[1]}"
    assert python in classifiers  # the interpreter running this suite
    assert [c for c in classifiers if c.startswith("Programming Language :: Python :: 3.")] == [
        python
    ]
    import django

    assert f"Framework :: Django :: {django.VERSION[0]}.{django.VERSION[1]}" in classifiers
    assert "Typing :: Typed" in classifiers


def test_no_docstring_or_message_points_at_files_outside_the_wheel():
    """docs/... and DESIGN.md are not installed: say "the package documentation" instead."""
    offenders = []
    for package in ("esi_views", "esi_drf"):
        for path in (ROOT / package).rglob("*"):
            if path.suffix not in {".py", ".html", ".txt"} or "migrations" in path.parts:
                continue
            text = path.read_text(encoding="utf-8")
            for needle in ("docs/", "DESIGN.md", "README.md", "CHANGELOG.md"):
                if needle in text:
                    offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert offenders == []


def test_the_wheel_alone_runs_the_sample_site(dists, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])  # no system site-packages
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--quiet", f"{dists['wheel']}[demo]"])
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV"}
    }
    # Outside the repository: nothing of the source tree is importable from here.
    where = _run(
        [
            str(python),
            "-c",
            "import esi_views, esi_drf; print(esi_views.__file__); print(esi_drf.__file__)",
        ],
        cwd=tmp_path,
        env=env,
    ).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where
    check = _run(
        [str(python), str(ROOT / "sample_site" / "manage.py"), "check"], cwd=tmp_path, env=env
    )
    assert "System check identified no issues" in check.stdout
