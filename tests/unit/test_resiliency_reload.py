from __future__ import annotations

from pathlib import Path

from proxy.config.resiliency_reload import ResiliencyFiles

DOC = """apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {{name: {name}}}
spec:
  policies:
    retries:
      {policy}: {{policy: constant, duration: {duration}, maxRetries: {retries}}}
  targets:
    apps:
      {app}: {{retry: {policy}}}
"""


def write(
    folder: Path, file: str, *, name: str, app: str, retries: int, duration: str = "10ms"
) -> None:
    policy = f"p{name}"
    text = DOC.format(name=name, policy=policy, duration=duration, retries=retries, app=app)
    (folder / file).write_text(text)


def max_retries(files: ResiliencyFiles, app: str) -> int | None:
    config, _ = files.load()
    target = config.apps.get(app)
    if target is None or target.retry is None:
        return None
    return config.retries[target.retry].max_retries


def test_broken_edit_keeps_that_files_last_good_version_and_others_still_apply(
    tmp_path: Path,
) -> None:
    write(tmp_path, "a.yaml", name="a", app="orders", retries=1)
    write(tmp_path, "b.yaml", name="b", app="billing", retries=1)
    files = ResiliencyFiles((tmp_path,), "checkout")
    assert max_retries(files, "orders") == 1
    write(tmp_path, "a.yaml", name="a", app="orders", retries=1, duration='"5 s"')
    write(tmp_path, "b.yaml", name="b", app="billing", retries=4)
    assert max_retries(files, "orders") == 1  # a.yaml's last good version
    assert max_retries(files, "billing") == 4  # b.yaml's edit applied
    write(tmp_path, "a.yaml", name="a", app="orders", retries=2)
    assert max_retries(files, "orders") == 2


def test_a_file_broken_from_the_start_is_skipped_and_others_reload(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", name="a", app="orders", retries=1, duration='"5 s"')
    write(tmp_path, "b.yaml", name="b", app="billing", retries=1)
    files = ResiliencyFiles((tmp_path,), "checkout")
    assert max_retries(files, "orders") is None
    write(tmp_path, "b.yaml", name="b", app="billing", retries=3)
    assert max_retries(files, "billing") == 3
    assert max_retries(files, "orders") is None


def test_removed_file_drops_its_policies(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", name="a", app="orders", retries=1)
    files = ResiliencyFiles((tmp_path,), "checkout")
    assert max_retries(files, "orders") == 1
    (tmp_path / "a.yaml").unlink()
    assert max_retries(files, "orders") is None


def test_a_folder_whose_name_looks_like_a_document_label_still_keeps_last_good(
    tmp_path: Path,
) -> None:
    # A file's location is data, not text to split: ": document " may be in a path.
    folder = tmp_path / "team: document 7"
    folder.mkdir()
    write(folder, "a.yaml", name="a", app="orders", retries=1)
    files = ResiliencyFiles((folder,), "checkout")
    assert max_retries(files, "orders") == 1
    write(folder, "a.yaml", name="a", app="orders", retries=1, duration='"5 s"')
    assert max_retries(files, "orders") == 1  # a.yaml's last good version


def test_a_broken_document_of_several_keeps_the_files_last_good_version(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", name="a", app="orders", retries=1)
    files = ResiliencyFiles((tmp_path,), "checkout")
    assert max_retries(files, "orders") == 1
    good = (tmp_path / "a.yaml").read_text()
    other = DOC.format(name="o", policy="po", duration='"5 s"', retries=1, app="billing")
    (tmp_path / "a.yaml").write_text(good.replace("retries: 1", "retries: 2") + "---\n" + other)
    assert max_retries(files, "orders") == 1  # the whole file's last good version
