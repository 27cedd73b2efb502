"""The zip container of torch.save files, parsed and validated by us (the zipfile module trusts too much).

We read the end-of-central-directory records (zip64 included), every central
directory entry and every local header, and refuse what a torch.save file
never holds and attacks rely on: encrypted or compressed members (zip bombs),
local and central headers that disagree (scanner bypasses), members that
overlap or lie outside the archive, several disks, duplicate names. Member data
is only located here, never read, except for the small records the caller asks for.
"""

from __future__ import annotations

import itertools
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from core.errors import MalformedFileError
from core.io import FileReader

MAX_MEMBERS = 1_000_000
MAX_CENTRAL_DIRECTORY = 256 << 20
_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_LOCAL = struct.Struct("<4s5H3L2H")
_FLAG_ENCRYPTED = 0x1
_FLAG_DESCRIPTOR = 0x8
_FLAG_STRONG_ENCRYPTION = 0x40
_FLAG_UTF8 = 0x800
_U32 = 0xFFFFFFFF
_METHODS = {0: "stored", 8: "deflate", 9: "deflate64", 12: "bzip2", 14: "lzma", 93: "zstandard", 95: "xz", 99: "AES"}


@dataclass(frozen=True, slots=True)
class ZipMember:
    name: str
    header_offset: int  # local header
    data_offset: int  # first byte of the member's (stored) data
    size: int
    crc: int
    end: int  # end of the member's record, data descriptor included
    unsafe_name: bool = False


def read_members(reader: FileReader, check_names: Callable[[list[str]], None] | None = None) -> list[ZipMember]:
    """Every member of the archive, validated; raises MalformedFileError naming the first problem.

    ``check_names`` sees every name before any member is refused, so that what the archive is
    (a TorchScript program, say) can be named before how it breaks our rules.
    """
    path = reader.path
    size = reader.size
    cd_offset, cd_size, count, _cd_end = _find_central_directory(reader, size)
    members, problem = _parse_central_directory(reader.read(cd_offset, cd_size), count)
    if check_names is not None:
        check_names([m.name for m in members])
    if problem:
        raise MalformedFileError(problem, path=path)
    checked = [_check_local_header(reader, m, cd_offset) for m in members]
    names: set[str] = set()
    for member in checked:
        if member.name in names:
            raise MalformedFileError(f"zip archive holds two members named {member.name[:80]!r}", path=path)
        names.add(member.name)
    ordered = sorted(checked, key=lambda m: m.header_offset)
    for first, second in itertools.pairwise(ordered):
        if first.end > second.header_offset:
            raise MalformedFileError(f"zip members {first.name[:60]!r} and {second.name[:60]!r} overlap "
                                     "(a zip bomb or a scanner bypass)", path=path)
    return checked


def read_member(reader: FileReader, member: ZipMember, limit: int, *, check_crc: bool = True) -> bytes:
    """A small member's bytes, CRC-checked."""
    if member.size > limit:
        raise MalformedFileError(f"zip member {member.name[:80]!r} is implausibly large ({member.size:,} bytes)",
                                 path=reader.path)
    data = reader.read(member.data_offset, member.size)
    if check_crc and zlib.crc32(data) != member.crc:
        raise MalformedFileError(f"zip member {member.name[:80]!r} fails its CRC check (it was altered)",
                                 path=reader.path)
    return data


def _find_central_directory(reader: FileReader, size: int) -> tuple[int, int, int, int]:
    path = reader.path
    if size < _EOCD.size:
        raise MalformedFileError(f"truncated zip archive ({size} bytes)", path=path)
    tail_len = min(size, _EOCD.size + 0xFFFF)
    tail = reader.read(size - tail_len, tail_len)
    pos = len(tail)
    while True:
        pos = tail.rfind(b"PK\x05\x06", 0, pos)
        if pos < 0:
            raise MalformedFileError("truncated or broken zip archive: no end-of-central-directory record",
                                     path=path)
        if pos + _EOCD.size <= len(tail):
            fields = _EOCD.unpack_from(tail, pos)
            if pos + _EOCD.size + fields[7] == len(tail):
                break
    eocd_at = size - tail_len + pos
    _sig, disk, cd_disk, entries_disk, entries, cd_size, cd_offset, _comment = fields
    cd_end = eocd_at
    locator_at = eocd_at - _ZIP64_LOCATOR.size
    if locator_at >= 0 and reader.read(locator_at, 4) == b"PK\x06\x07":
        _sig, z_disk, z_offset, disks = _ZIP64_LOCATOR.unpack(reader.read(locator_at, _ZIP64_LOCATOR.size))
        if z_disk != 0 or disks != 1:
            raise MalformedFileError("multi-disk zip archives are not supported", path=path)
        if z_offset + _ZIP64_EOCD.size > locator_at:
            raise MalformedFileError("broken zip archive: zip64 end record outside the archive", path=path)
        (sig, _rec_size, _made, _need, disk, cd_disk, entries_disk, entries, cd_size,
         cd_offset) = _ZIP64_EOCD.unpack(reader.read(z_offset, _ZIP64_EOCD.size))
        if sig != b"PK\x06\x06":
            raise MalformedFileError("broken zip archive: bad zip64 end record", path=path)
        cd_end = z_offset
    elif 0xFFFF in (entries, entries_disk) or _U32 in (cd_size, cd_offset):
        raise MalformedFileError("broken zip archive: zip64 sizes without a zip64 end record", path=path)
    if disk != 0 or cd_disk != 0 or entries != entries_disk:
        raise MalformedFileError("multi-disk zip archives are not supported", path=path)
    if cd_offset + cd_size != cd_end:
        raise MalformedFileError("broken zip archive: the central directory is not where the end record says "
                                 "(data prepended or appended?)", path=path)
    if cd_size > MAX_CENTRAL_DIRECTORY or entries > MAX_MEMBERS or entries * _CENTRAL.size > cd_size:
        raise MalformedFileError(f"broken zip archive: implausible central directory ({entries:,} entries in "
                                 f"{cd_size:,} bytes)", path=path)
    return cd_offset, cd_size, entries, cd_end


def _zip64_extra(extra: bytes, fields: list[int]) -> list[int]:
    """Replace 0xFFFFFFFF values in ``fields`` (usize, csize, offset) from the zip64 extra field."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<2H", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        if len(body) != length:
            raise MalformedFileError("broken zip archive: truncated extra field")
        if tag == 0x0001:
            out = list(fields)
            cursor = 0
            for i, value in enumerate(fields):
                if value == _U32:
                    if cursor + 8 > len(body):
                        raise MalformedFileError("broken zip archive: short zip64 extra field")
                    out[i] = struct.unpack_from("<Q", body, cursor)[0]
                    cursor += 8
            return out
        pos += 4 + length
    return fields


def _decode_name(raw: bytes, flags: int) -> tuple[str, bool]:
    try:
        name = raw.decode("utf-8") if flags & _FLAG_UTF8 else raw.decode("cp437")
    except UnicodeDecodeError:
        raise MalformedFileError("zip member name is not valid UTF-8") from None
    parts = name.replace("\\", "/").split("/")
    unsafe = (not name or "\x00" in name or "\\" in name or name.startswith("/") or ".." in parts
              or (len(name) > 1 and name[1] == ":"))
    return name, unsafe


def _parse_central_directory(cd: bytes, count: int) -> tuple[list[ZipMember], str | None]:
    """The entries, and the first rule a member breaks (encrypted, compressed ...), if any."""
    members: list[ZipMember] = []
    problem: str | None = None
    pos = 0
    for _ in range(count):
        if pos + _CENTRAL.size > len(cd):
            raise MalformedFileError("broken zip archive: central directory is truncated")
        (sig, _made, _need, flags, method, _time, _date, crc, csize, usize, name_len, extra_len, comment_len,
         disk_start, _iattr, _eattr, offset) = _CENTRAL.unpack_from(cd, pos)
        if sig != b"PK\x01\x02":
            raise MalformedFileError("broken zip archive: bad central directory entry")
        end = pos + _CENTRAL.size + name_len + extra_len + comment_len
        if end > len(cd):
            raise MalformedFileError("broken zip archive: central directory entry runs past its end")
        raw_name = cd[pos + _CENTRAL.size : pos + _CENTRAL.size + name_len]
        extra = cd[pos + _CENTRAL.size + name_len : pos + _CENTRAL.size + name_len + extra_len]
        pos = end
        name, unsafe = _decode_name(raw_name, flags)
        shown = name[:80]
        usize, csize, offset = _zip64_extra(extra, [usize, csize, offset])
        if problem is None:
            if flags & (_FLAG_ENCRYPTED | _FLAG_STRONG_ENCRYPTION) or method == 99:
                problem = f"zip member {shown!r} is encrypted (password-protected); a torch.save file never is"
            elif method != 0:
                what = _METHODS.get(method, f"method {method}")
                problem = (f"zip member {shown!r} is compressed ({what}, {csize:,} bytes expanding to {usize:,}); "
                           "torch.save stores members uncompressed, and a compressed member can be a zip bomb")
            elif disk_start not in (0, 0xFFFF):
                problem = "multi-disk zip archives are not supported"
            elif usize != csize:
                problem = f"zip member {shown!r}: stored size {csize:,} differs from its size {usize:,}"
        members.append(ZipMember(name, offset, -1, usize, crc, -1, unsafe))
    if pos != len(cd):
        raise MalformedFileError("broken zip archive: the central directory holds more than its entries")
    return members, problem


def _check_local_header(reader: FileReader, member: ZipMember, cd_offset: int) -> ZipMember:
    path = reader.path
    shown = member.name[:80]
    at = member.header_offset
    if at + _LOCAL.size > cd_offset:
        raise MalformedFileError(f"zip member {shown!r}: local header lies outside the archive", path=path)
    (sig, _need, flags, method, _time, _date, crc, csize, usize, name_len,
     extra_len) = _LOCAL.unpack(reader.read(at, _LOCAL.size))
    if sig != b"PK\x03\x04":
        raise MalformedFileError(f"zip member {shown!r}: no local header where the central directory points",
                                 path=path)
    header_end = at + _LOCAL.size + name_len + extra_len
    if header_end > cd_offset:
        raise MalformedFileError(f"zip member {shown!r}: local header runs into the central directory", path=path)
    tail = reader.read(at + _LOCAL.size, name_len + extra_len)
    local_name, _ = _decode_name(tail[:name_len], flags)
    if local_name != member.name:
        raise MalformedFileError(f"zip member {shown!r} is named {local_name[:80]!r} in its local header: the "
                                 "local and central headers disagree (a scanner bypass)", path=path)
    if method != 0 or flags & (_FLAG_ENCRYPTED | _FLAG_STRONG_ENCRYPTION):
        raise MalformedFileError(f"zip member {shown!r}: local header says compressed or encrypted, unlike the "
                                 "central directory", path=path)
    usize, csize = _zip64_extra(tail[name_len:], [usize, csize])
    descriptor = 0
    data_end = header_end + member.size
    if flags & _FLAG_DESCRIPTOR:
        if (crc, csize, usize) != (0, 0, 0) and (crc, csize, usize) != (member.crc, member.size, member.size):
            raise MalformedFileError(f"zip member {shown!r}: local and central headers disagree", path=path)
        descriptor = _check_descriptor(reader, member, data_end, cd_offset)
    elif (crc, csize, usize) != (member.crc, member.size, member.size):
        raise MalformedFileError(f"zip member {shown!r}: local and central headers disagree on its size or CRC",
                                 path=path)
    end = data_end + descriptor
    if end > cd_offset:
        raise MalformedFileError(f"zip member {shown!r} runs past the end of the archive's data", path=path)
    return ZipMember(member.name, at, header_end, member.size, member.crc, end, member.unsafe_name)


def _check_descriptor(reader: FileReader, member: ZipMember, at: int, limit: int) -> int:
    """Length of the data descriptor after the data, which must repeat the central directory's CRC and sizes."""
    avail = min(24, max(0, limit - at))
    raw = reader.read(at, avail) if avail else b""
    signed = raw[:4] == b"PK\x07\x08"
    body = raw[4:] if signed else raw
    for width, fmt in ((4, "<3L"), (8, "<LQQ")):
        n = 4 + 2 * width
        if len(body) >= n:
            crc, csize, usize = struct.unpack_from(fmt, body)
            if (crc, csize, usize) == (member.crc, member.size, member.size):
                return n + (4 if signed else 0)
    raise MalformedFileError(f"zip member {member.name[:80]!r}: data descriptor disagrees with the central "
                             "directory", path=reader.path)
