"""The repo's datasets/ folder must never shadow Hugging Face's `datasets`."""
import subprocess
import sys
import textwrap

from conftest import REPO


def test_selbench_namespace_imports():
    import selbench.analysis  # noqa: F401
    import selbench.datasets.scenarios  # noqa: F401
    import selbench.methods.baselines.cheap  # noqa: F401
    import selbench.runners.run.cli  # noqa: F401


def test_import_datasets_gets_a_real_package_not_the_repo_folder(tmp_path):
    """From the repo root (cwd first on sys.path) a regular `datasets` package installed
    later on the path wins over our namespace portion, as Hugging Face's would."""
    fake = tmp_path / "site" / "datasets"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("IS_HF = True\n")
    code = textwrap.dedent(f"""
        import sys; sys.path.append({str(tmp_path / 'site')!r})
        import selbench.datasets.scenarios, datasets
        assert getattr(datasets, 'IS_HF', False), datasets
        print('ok', datasets.__file__)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout


def test_datasets_folder_has_no_init():
    assert not (REPO / "datasets" / "__init__.py").exists()
