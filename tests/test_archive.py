"""myna/archive.py: the one safe-member rule every tar reader uses."""

import tarfile

import pytest

from myna.archive import UnsafeArchiveError, safe_member_name, safe_target


def _info(name: str, kind=tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


@pytest.mark.parametrize("name, normal", [("./a/b.wav", "a/b.wav"), ("a.wav", "a.wav"), ("a//b/./c", "a/b/c")])
def test_regular_files_with_inside_names_are_accepted_and_normalised(name, normal):
    assert safe_member_name(_info(name), "x.tar") == normal


@pytest.mark.parametrize("info, reason", [
    (_info("../a"), r"outside the target"), (_info("a/../../b"), r"outside the target"),
    (_info("/etc/passwd"), r"absolute"), (_info("C:x"), r"absolute"), (_info("a\\..\\b"), r"outside"),
    (_info("l", tarfile.SYMTYPE, "/etc"), r"link \(to '/etc'\)"), (_info("h", tarfile.LNKTYPE, "a"), r"link"),
    (_info("f", tarfile.FIFOTYPE), r"special file"), (_info("d", tarfile.CHRTYPE), r"special file"),
    (_info("dir", tarfile.DIRTYPE), r"a folder"),
])
def test_unsafe_members_are_refused_naming_archive_and_member(info, reason):
    with pytest.raises(UnsafeArchiveError, match=rf"x\.tar: member '.*' .*{reason}") as caught:
        safe_member_name(info, "x.tar")
    assert caught.value.reason in str(caught.value)


def test_folders_pass_only_when_allowed():
    assert safe_member_name(_info("./d/", tarfile.DIRTYPE), "x.tar", allow_dirs=True) == "d"


def test_a_target_reached_through_a_link_on_disk_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    (target / "up").symlink_to(outside)
    assert safe_target(target, "a/b.txt", "x.tar") == (target / "a" / "b.txt").resolve()
    with pytest.raises(UnsafeArchiveError, match=r"x\.tar: member 'up/f' resolves outside"):
        safe_target(target, "up/f", "x.tar")
