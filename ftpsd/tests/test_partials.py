"""Unit tests of partial uploads (partials.py): naming, lookup, the lock and the sweep, on a real folder."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from ftpsd.filesystem import UPLOAD_PREFIX, SecureFS
from ftpsd.permissions import may_resume_complete_file, may_resume_own_partial, resolve_permissions

from ftpsd import partials


def test_partial_name_is_hidden_deterministic_and_per_user(tmp_path: Path) -> None:
    final = str(tmp_path / "big.iso")
    name = partials.partial_path(final, "alice")
    assert os.path.dirname(name) == str(tmp_path)
    base = os.path.basename(name)
    assert base.startswith(UPLOAD_PREFIX + "resume-") and base.endswith(".partial")
    assert len(base) == len(UPLOAD_PREFIX + "resume-") + 32 + len(".partial")
    assert partials.partial_path(final, "alice") == name  # survives a restart: nothing random in it
    others = {
        partials.partial_path(final, "bob"),
        partials.partial_path(str(tmp_path / "big.iso2"), "alice"),
        # The separator keeps user and name apart (neither may contain NUL: config check, InputHygiene).
        partials.partial_path(str(tmp_path / "ebig.iso"), "alic"),  # "alic" + "ebig.iso"
    }
    assert name not in others and len(others) == 3
    # No client can name it (every command on a reserved name is refused).
    assert not SecureFS(str(tmp_path), None).validpath(name)


def test_partial_size_only_for_its_user(tmp_path: Path) -> None:
    final = str(tmp_path / "f.bin")
    assert partials.partial_size(final, "alice") is None
    Path(partials.partial_path(final, "alice")).write_bytes(b"x" * 5)
    assert partials.partial_size(final, "alice") == 5
    assert partials.partial_size(final, "bob") is None
    # A symlink planted under the name is not a partial (and is never followed).
    os.symlink("/etc/passwd", partials.partial_path(final, "bob"))
    assert partials.partial_size(final, "bob") is None
    with pytest.raises(OSError):
        partials.open_partial(final, "bob")


def test_open_partial_locks_against_a_second_writer(tmp_path: Path) -> None:
    final = str(tmp_path / "f.bin")
    path, fd, existed = partials.open_partial(final, "alice")
    assert not existed and os.path.exists(path)
    os.write(fd, b"abc")
    with pytest.raises(partials.PartialBusy):
        partials.open_partial(final, "alice")
    assert partials.open_partial(final, "bob")[2] is False  # another user's partial is another file
    os.close(fd)
    path2, fd2, existed2 = partials.open_partial(final, "alice")
    assert (path2, existed2) == (path, True)
    assert os.fstat(fd2).st_size == 3
    os.close(fd2)


def test_open_partial_never_locks_a_file_renamed_away(tmp_path: Path) -> None:
    """A holder that commits (renames the partial into place) leaves the next opener a new partial."""
    final = str(tmp_path / "f.bin")
    path, fd, _ = partials.open_partial(final, "alice")
    os.write(fd, b"complete")
    os.replace(path, final)
    os.close(fd)
    _, fd2, existed = partials.open_partial(final, "alice")
    assert not existed and os.fstat(fd2).st_ino != os.stat(final).st_ino
    os.close(fd2)


def _aged(path: Path, seconds: float, data: bytes = b"data") -> Path:
    path.write_bytes(data)
    old = time.time() - seconds
    os.utime(path, (old, old))
    return path


def test_sweep_removes_old_unlocked_partials_and_leftovers_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "sub").mkdir(parents=True)
    old_partial = _aged(Path(partials.partial_path(str(home / "sub" / "a"), "alice")), 7200)
    young_partial = _aged(Path(partials.partial_path(str(home / "b"), "alice")), 10)
    locked_partial = _aged(Path(partials.partial_path(str(home / "c"), "alice")), 7200)
    old_temp = _aged(home / f"{UPLOAD_PREFIX}0123456789abcdef.part", 7200)
    ordinary = _aged(home / "old-but-published.bin", 7200)
    lookalike = _aged(home / "resume-x.partial", 7200)  # not reserved: a user's file
    outside = tmp_path / "outside"
    outside.mkdir()
    outside_partial = _aged(outside / f"{UPLOAD_PREFIX}resume-{'0' * 32}.partial", 7200)
    (home / "link").symlink_to(outside)  # symlinked folders are not followed
    fd = os.open(locked_partial, os.O_RDWR)
    partials.lock(fd)
    try:
        removed = partials.sweep([str(home), str(home / "sub")], ttl=3600)
    finally:
        os.close(fd)
    assert sorted(removed) == sorted([str(old_partial), str(old_temp)])
    for kept in (young_partial, locked_partial, ordinary, lookalike, outside_partial):
        assert kept.exists(), kept
    assert not old_partial.exists() and not old_temp.exists()


def test_sweep_with_ttl_0_removes_leftovers_after_an_hour(tmp_path: Path) -> None:
    recent = _aged(Path(partials.partial_path(str(tmp_path / "a"), "alice")), 600)
    old = _aged(tmp_path / f"{UPLOAD_PREFIX}feedfacefeedface.part", partials.LEFTOVER_AGE + 60)
    assert partials.sweep([str(tmp_path)], ttl=0) == [str(old)]
    assert recent.exists()


def test_sweep_interval_follows_a_short_ttl() -> None:
    assert partials.sweep_interval(86400) == 3600
    assert partials.sweep_interval(600) == 600
    assert partials.sweep_interval(1) == 60
    assert partials.sweep_interval(0) == 3600


@pytest.mark.parametrize(
    ("profile", "own_partial", "append_complete", "rest_complete"),
    [
        ("full", True, True, True),
        ("upload_only", True, False, False),
        ("read_only", False, False, False),
        ("elwd", True, False, True),  # may overwrite, but appending to a complete file needs "a"
    ],
)
def test_who_may_resume_what(
    profile: str, own_partial: bool, append_complete: bool, rest_complete: bool
) -> None:
    letters = resolve_permissions(profile)
    assert may_resume_own_partial(letters) is own_partial
    assert may_resume_complete_file(letters, append=True) is append_complete
    assert may_resume_complete_file(letters, append=False) is rest_complete
