"""A built wheel has everything the package reads: installed in a fresh virtual environment, away
from the checkout, it lists the presets and plans the debug study from its own files."""

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args, cwd=None, env=None):
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_a_wheel_installed_in_a_fresh_environment_runs_the_presets(tmp_path):
    # Built from a copy of the source: a build in the checkout would reuse its build/ folder,
    # whose stale files could hide a data file missing from package-data.
    source = tmp_path / "source"
    shutil.copytree(ROOT / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    # setuptools comes with torch; no build isolation, so the build needs no network
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", wheels, source)
    wheel = next(wheels.glob("multitudes-*.whl"))

    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / ("Scripts" if os.name == "nt" else "bin") / "python"
    _run(python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel)
    # The dependencies (torch, numpy, ...) are this environment's: its site-packages joins the
    # fresh one's path after it, as a plain directory (its .pth files, among them an editable
    # install of this checkout, are not read).
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
                .strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "work"  # not the checkout: nothing can be read from src/
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = _run(python, "-c", "import multitudes; print(multitudes.__file__)", cwd=work, env=env)
    assert Path(where.strip()).is_relative_to(env_dir), where

    command = env_dir / "bin" / "multitudes"
    presets = _run(command, "presets", cwd=work, env=env)
    for name in ("debug", "quick", "enwik8", "cpu", "gpu"):
        assert f" {name}  " in presets, presets
    plan = _run(command, "scale", "--preset", "debug", "--dry-run", cwd=work, env=env)
    assert "6 cells" in plan, plan
    corpus = _run(python, "-c", "from multitudes.data.corpora import SAMPLE_PATH; "
                  "print(SAMPLE_PATH.stat().st_size)", cwd=work, env=env)
    assert int(corpus) == 3_636_038
