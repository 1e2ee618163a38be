"""Folder quotas without a server: the scan, the claims of uploads in progress, rescans and reloads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ftpsd.filesystem import UPLOAD_PREFIX
from ftpsd.quotas import Quota, QuotaBook, QuotaExceeded, UploadClaim, Usage, quota_report, scan
from ftpsd.settings import QuotaSettings
from ftpsd.uploads import AtomicUpload


def quota(path: Path, max_bytes: int = 0, max_files: int = 0) -> Quota:
    return Quota(QuotaSettings(str(path), max_bytes, max_files))


def test_scan_counts_every_regular_file_below_and_hidden_ones_only_as_bytes(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"x" * 100)
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "deeper" / "b.bin").write_bytes(b"x" * 30)
    (tmp_path / f"{UPLOAD_PREFIX}0123.part").write_bytes(b"x" * 7)  # a partial upload uses disk
    (tmp_path / "link").symlink_to(tmp_path / "a.bin")  # not a file of its own
    (tmp_path / "dirlink").symlink_to(tmp_path / "sub")  # not followed
    assert scan(str(tmp_path)) == Usage(137, 2)
    assert scan(str(tmp_path), skip={str(tmp_path / f"{UPLOAD_PREFIX}0123.part")}) == Usage(130, 2)
    assert scan(str(tmp_path / "missing")) == Usage(0, 0)


def test_a_write_that_would_exceed_is_refused_before_it_is_written(tmp_path: Path) -> None:
    q = quota(tmp_path, max_bytes=100)
    upload = AtomicUpload.fresh(str(tmp_path / "f.bin"), False, UploadClaim(q, 0, 0, True))
    upload.write_all(memoryview(b"x" * 60))
    upload.write(b"x" * 40)  # exactly full is allowed
    assert q.used_bytes == 100
    with pytest.raises(QuotaExceeded, match="exceeded storage allocation"):
        upload.write_all(memoryview(b"x"))
    assert os.path.getsize(upload.temp_path) == 100  # the refused byte never reached the disk
    upload.close()  # a failed upload: its temp file and its claim are gone
    assert os.listdir(tmp_path) == []
    assert (q.used_bytes, q.used_files, q.temp_paths) == (0, 0, set())


def test_committed_upload_moves_from_claim_to_base(tmp_path: Path) -> None:
    q = quota(tmp_path, max_bytes=1000, max_files=5)
    upload = AtomicUpload.fresh(str(tmp_path / "f.bin"), False, UploadClaim(q, 0, 0, True))
    upload.write_all(memoryview(b"x" * 300))
    assert (q.base, q.claimed_bytes, q.claimed_files) == (Usage(), 300, 1)
    upload.commit()
    upload.close()
    assert (q.base, q.claimed_bytes, q.claimed_files) == (Usage(300, 1), 0, 0)
    assert q.base == scan(str(tmp_path))


def test_two_uploads_in_progress_cannot_both_take_the_room_of_one(tmp_path: Path) -> None:
    q = quota(tmp_path, max_bytes=1000)
    first = UploadClaim(q, 0, 0, True)
    second = UploadClaim(q, 0, 0, True)
    first.attach("/t1")
    second.attach("/t2")
    first.charge(600)
    with pytest.raises(QuotaExceeded):
        second.charge(600)
    second.charge(400)
    assert q.used_bytes == 1000


def test_an_announced_size_is_reserved_until_the_upload_ends(tmp_path: Path) -> None:
    q = quota(tmp_path, max_bytes=1000)
    announced = UploadClaim(q, 800, 0, True)
    announced.attach("/t1")
    assert q.used_bytes == 800
    announced.charge(500)  # within its reservation: nothing more
    assert q.used_bytes == 800
    other = UploadClaim(q, 0, 0, True)
    other.attach("/t2")
    with pytest.raises(QuotaExceeded):
        other.charge(201)
    announced.charge(400)  # beyond what it announced: charged as it writes
    assert q.used_bytes == 900
    announced.discarded()
    assert q.used_bytes == 0


def test_a_replacement_is_charged_only_with_its_growth(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"o" * 600)
    q = quota(tmp_path, max_bytes=1000)
    q.base = scan(str(tmp_path))
    upload = AtomicUpload.fresh(str(target), True, UploadClaim(q, 0, 600, False))
    upload.write_all(memoryview(b"n" * 900))  # 600 + 900 on disk for a moment; 900 after the commit
    assert q.used_bytes == 900
    with pytest.raises(QuotaExceeded):
        upload.write_all(memoryview(b"n" * 101))
    upload.commit()
    assert q.base == Usage(900, 1) == scan(str(tmp_path))


def test_deleting_a_file_not_counted_yet_leaves_no_room_beyond_the_quota(tmp_path: Path) -> None:
    """Another node of a shared volume wrote 600 bytes since this server's last scan, and this one deletes
    them: its count stays at zero, not -600, so it still refuses what would exceed the quota."""
    folder = quota(tmp_path, 1000)
    folder.changed(Usage() - Usage(600, 1))
    assert (folder.used_bytes, folder.used_files) == (0, 0)
    assert not folder.fits(1001, 1)
    assert folder.fits(1000, 1)


def test_file_count_claims(tmp_path: Path) -> None:
    q = quota(tmp_path, max_files=2)
    q.base = Usage(0, 1)
    claim = UploadClaim(q, 0, 0, True)
    assert q.fits(0, 1)
    claim.attach("/t")
    assert not q.fits(0, 1)  # the slot of the upload in progress is taken
    claim.discarded()
    claim.discarded()  # idempotent: close() after a failed commit
    assert q.fits(0, 1) and q.used_files == 1


def test_rescan_corrects_outside_changes_but_not_while_our_own_changes_race_it(tmp_path: Path) -> None:
    book = QuotaBook([QuotaSettings(str(tmp_path), 1000, 0)])
    book.count_new()
    q = book.quotas[0]
    (tmp_path / "outside.bin").write_bytes(b"x" * 50)
    calls: list[tuple] = []

    def run(func, args, on_done, *extra):  # Offloader.run, without threads
        calls.append((func, args, on_done, extra))

    book.rescan(run)
    book.rescan(run)  # one scan at a time
    assert len(calls) == 1
    func, args, on_done, extra = calls.pop()
    q.changed(Usage(10, 1))  # a commit of ours while the scan ran: its result is not trusted
    on_done(func(*args), *extra)
    assert q.base == Usage(10, 1)
    book.rescan(run)
    func, args, on_done, extra = calls.pop()
    on_done(func(*args), *extra)
    assert q.base == Usage(50, 1)


def test_scan_leaves_out_temp_files_that_claims_count(tmp_path: Path) -> None:
    book = QuotaBook([QuotaSettings(str(tmp_path), 1000, 0)])
    book.count_new()
    q = book.quotas[0]
    upload = AtomicUpload.fresh(str(tmp_path / "f.bin"), False, UploadClaim(q, 0, 0, True))
    upload.write_all(memoryview(b"x" * 300))
    book.rescan(lambda func, args, on_done, *extra: on_done(func(*args), *extra))
    assert q.used_bytes == 300  # not 600
    upload.close()


def test_reload_keeps_live_usage_of_kept_folders_and_counts_new_ones(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_bytes(b"x" * 5)
    old = QuotaBook([QuotaSettings(str(tmp_path / "a"), 100, 0)])
    old.count_new()
    claim = UploadClaim(old.quotas[0], 0, 0, True)
    claim.attach("/t")
    claim.charge(40)
    new = QuotaBook(
        [QuotaSettings(str(tmp_path / "a"), 50, 3), QuotaSettings(str(tmp_path / "b"), 0, 0)], old
    )
    new.count_new()
    kept, added = new.quotas
    assert kept is old.quotas[0] and (kept.max_bytes, kept.max_files, kept.used_bytes) == (50, 3, 40)
    assert added.base == Usage(5, 1)
    with pytest.raises(QuotaExceeded):
        claim.charge(11)  # the new limit holds for the upload already running


def test_find_and_holds_quota_folder(tmp_path: Path) -> None:
    (tmp_path / "q" / "sub").mkdir(parents=True)
    (tmp_path / "qq").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "q")
    book = QuotaBook([QuotaSettings(str(tmp_path / "q"), 1, 1)])
    assert book.find(str(tmp_path / "q" / "sub")) is book.quotas[0]
    assert book.find(str(tmp_path / "alias")) is book.quotas[0]
    assert book.find(str(tmp_path / "qq")) is None
    assert book.holds_quota_folder(str(tmp_path / "q")) is book.quotas[0]
    assert book.holds_quota_folder(str(tmp_path)) is book.quotas[0]
    assert book.holds_quota_folder(str(tmp_path / "q" / "sub")) is None
    assert book.holds_quota_folder(str(tmp_path / "alias")) is None  # renaming the link moves nothing


def test_quota_report_reads_the_disk(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 9)
    (tmp_path / f"{UPLOAD_PREFIX}y.part").write_bytes(b"x" * 4)
    report = quota_report([QuotaSettings(str(tmp_path), 100, 0), QuotaSettings(str(tmp_path / "no"), 0, 1)])
    assert report == [
        {
            "path": str(tmp_path),
            "exists": True,
            "used_bytes": 13,
            "max_bytes": 100,
            "used_files": 1,
            "max_files": 0,
        },
        {
            "path": str(tmp_path / "no"),
            "exists": False,
            "used_bytes": 0,
            "max_bytes": 0,
            "used_files": 0,
            "max_files": 1,
        },
    ]


def test_a_partial_kept_for_resuming_stays_counted(tmp_path: Path) -> None:
    q = quota(tmp_path, max_bytes=100)
    claim = UploadClaim(q, 0, 0, True)
    claim.attach(str(tmp_path / f"{UPLOAD_PREFIX}p.part"))
    claim.charge(60)
    claim.kept(60)
    assert (q.base, q.claimed_bytes, q.claimed_files, q.temp_paths) == (Usage(60, 0), 0, 0, set())
    resumed = UploadClaim(q, 0, 0, True)
    # Resumed after its 60 bytes: they move from the counted usage into the claim, so a rescan that skips
    # the claimed file still counts them once.
    resumed.attach(str(tmp_path / f"{UPLOAD_PREFIX}p.part"), in_usage=60, written=60)
    assert (q.base, q.claimed_bytes, q.used_bytes) == (Usage(0, 0), 60, 60)
    with pytest.raises(QuotaExceeded):
        resumed.charge(41)
    resumed.charge(40)
    resumed.committed(None)
    assert q.base == Usage(100, 1)
