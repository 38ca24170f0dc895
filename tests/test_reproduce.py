"""``tracksdk reproduce RUN_ID`` (issue 12): a run made from a dirty repository, with a
modified file and untracked ones, recreated byte for byte in a new worktree, rerun with
``--run``, and each error case; on the local sqlite store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from core_fixtures import all_runs, git, local_client
from core_fixtures import run_cli as cli

TRAIN = """\
import argparse
from tracksdk import tracked
import helper

@tracked(experiment="repro")
def train(lr: float) -> dict[str, float]:
    return {"score": helper.SCALE * lr + OFFSET}

OFFSET = 1.0

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.1)
    train(parser.parse_args().lr)
"""


JOB = "from tracksdk import tracked\nwith tracked(experiment='job'):\n    pass\n"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSDK_", "MLFLOW_"))}
    return {**env, **extra}


def python(project: Path, *args: str, **env: str) -> None:
    done = subprocess.run(
        [sys.executable, *args], cwd=project, env=clean_env(**env),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def dirty_run(project: Path) -> tuple[str, dict[str, bytes]]:
    """A run from a commit with train.py modified, helper.py and a data file untracked."""
    (project / "train.py").write_text(TRAIN)
    git(project, "add", "train.py")
    git(project, "commit", "-q", "-m", "train")
    modified = TRAIN.replace("OFFSET = 1.0", "OFFSET = 2.5  # tuned, not committed")
    (project / "train.py").write_text(modified)
    (project / "helper.py").write_text("SCALE = 3.0\n")
    (project / "data").mkdir()
    (project / "data" / "labels.txt").write_text("cat\ndog\n")
    ran = {
        name: (project / name).read_bytes()
        for name in ("train.py", "helper.py", "data/labels.txt", "README.md")
    }
    python(project, "train.py", "--lr", "0.5")
    [run] = all_runs(project)
    # The repository moves on: the modification is undone, the untracked files deleted.
    git(project, "checkout", "--", "train.py")
    (project / "helper.py").unlink()
    (project / "data" / "labels.txt").unlink()
    return run.info.run_id, ran


def test_the_worktree_is_byte_identical_to_what_ran(project: Path, tmp_path: Path) -> None:
    run_id, ran = dirty_run(project)
    target = tmp_path / "again"
    result = cli(project, "reproduce", run_id, "--dir", str(target))
    assert result.returncode == 0, result.stdout + result.stderr
    for name, content in ran.items():
        assert (target / name).read_bytes() == content, name
    commit = git(project, "rev-parse", "HEAD").strip()
    assert git(target, "rev-parse", "HEAD").strip() == commit  # detached at the run's commit
    text = " ".join(result.stdout.split())
    assert f"commit {commit[:12]}" in text and "2 untracked file(s) restored" in text
    assert "its uncommitted changes applied" in text
    assert "every package the run had is installed" in text
    assert "params: lr=0.5" in text
    assert "python train.py --lr 0.5" in text
    requirements = tmp_path / "req.txt"
    again = cli(project, "reproduce", run_id, "--dir", str(tmp_path / "b"),
                "--requirements", str(requirements))  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "mlflow==" in requirements.read_text()


def test_run_gives_the_same_params_and_metrics(project: Path, tmp_path: Path) -> None:
    run_id, _ = dirty_run(project)
    result = cli(project, "reproduce", run_id, "--dir", str(tmp_path / "again"), "--run")
    assert result.returncode == 0, result.stdout + result.stderr
    client = local_client(project)
    original = client.get_run(run_id)
    runs = {r.info.run_id: r for r in all_runs(project)}
    [rerun] = [r for i, r in runs.items() if i != run_id]
    assert rerun.data.tags["tracksdk.reproduces"] == run_id
    assert rerun.data.params == original.data.params == {"lr": "0.5"}
    assert rerun.data.metrics["score"] == original.data.metrics["score"] == 3.0 * 0.5 + 2.5


def test_a_run_without_git_information(project: Path) -> None:
    (project / "job.py").write_text(JOB)
    python(project, "job.py", TRACKSDK_CAPTURE__GIT="false")
    [run] = all_runs(project)
    result = cli(project, "reproduce", run.info.run_id)
    assert result.returncode == 2
    assert "has no git information" in " ".join(result.stderr.split())


def test_a_commit_the_local_repository_does_not_have(project: Path, tmp_path: Path) -> None:
    run_id, _ = dirty_run(project)
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q", "-b", "main")
    git(other, "remote", "add", "upstream", "https://example.com/team/churn.git")
    result = cli(other, "reproduce", run_id, env={"TRACKSDK_LOCAL__ROOT": str(project)})
    assert result.returncode == 2, result.stdout + result.stderr
    text = " ".join(result.stderr.split())
    assert "is not in the repository" in text and "fetch it first (git fetch upstream)" in text


def test_a_diff_that_no_longer_applies(project: Path, tmp_path: Path) -> None:
    """A changed binary file: its diff is a "Binary files differ" line, not a patch."""
    (project / "weights.bin").write_bytes(bytes(range(256)))
    git(project, "add", "weights.bin")
    git(project, "commit", "-q", "-m", "weights")
    (project / "weights.bin").write_bytes(bytes(reversed(range(256))))
    (project / "job.py").write_text(
        "from tracksdk import tracked\nwith tracked(experiment='b'):\n    pass\n"
    )
    python(project, "job.py")
    [run] = all_runs(project)
    target = tmp_path / "again"
    result = cli(project, "reproduce", run.info.run_id, "--dir", str(target))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no longer apply" in " ".join(result.stderr.split())
    assert not target.exists()  # the half-made worktree is removed
    assert "again" not in git(project, "worktree", "list")


def test_a_folder_that_is_not_empty(project: Path, tmp_path: Path) -> None:
    run_id, _ = dirty_run(project)
    target = tmp_path / "busy"
    target.mkdir()
    (target / "mine.txt").write_text("keep me\n")
    result = cli(project, "reproduce", run_id, "--dir", str(target))
    assert result.returncode == 2
    assert "is not empty" in " ".join(result.stderr.split())
    assert [p.name for p in target.iterdir()] == ["mine.txt"]


def test_which_untracked_files_are_saved(project: Path) -> None:
    """Small text files only; never secret-looking names, big or binary files."""
    (project / "notes.md").write_text("small and useful\n")
    (project / ".env").write_text("API_TOKEN=abc123\n")
    (project / "db_password.txt").write_text("hunter2\n")
    (project / "deploy.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    (project / "big.csv").write_text("x\n" * 40_000)  # 80 KB: above 64 KiB
    (project / "blob.txt").write_bytes(b"\x00\x01\x02")
    (project / "job.py").write_text(JOB)
    python(project, "job.py")
    [run] = all_runs(project)
    client = local_client(project)
    saved = sorted(
        Path(f.path).name for f in client.list_artifacts(run.info.run_id, "source/untracked")
    )
    assert saved == ["job.py", "notes.md"]
    (project / "listed").mkdir()
    listed = client.download_artifacts(
        run.info.run_id, "source/untracked.txt", str(project / "listed")
    )
    assert ".env" in Path(listed).read_text()  # named in the list, its content not saved


def test_by_default_the_worktree_goes_beside_the_repository(project: Path) -> None:
    """Not inside it, where the next run there would list it as untracked files."""
    run_id, ran = dirty_run(project)
    result = cli(project, "reproduce", run_id)
    assert result.returncode == 0, result.stdout + result.stderr
    target = project.parent / f"{project.name}-reproduce-{run_id[:12]}"
    assert (target / "train.py").read_bytes() == ran["train.py"]
    assert git(project, "status", "--porcelain", "--untracked-files=all").count("reproduce") == 0


def test_a_worktree_git_cannot_make_is_an_error_not_a_traceback(project: Path) -> None:
    """A folder that cannot be created (here under a file; a full disk alike): exit 1."""
    run_id, _ = dirty_run(project)
    result = cli(project, "reproduce", run_id, "--dir", str(project / "README.md" / "again"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "git worktree add" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
