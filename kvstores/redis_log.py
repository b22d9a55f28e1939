"""The aggregation log's Redis layout: members, the read and write scripts, their replies.

One sorted set per (dataset, entity key): the versions key + b":log", so the same hash
tag (one Redis Cluster slot). Score ts_ms; member

    ts_ms (8 bytes big-endian) + escaped id + 00 00 + payload

where the escaped id is the id with every 00 byte written as 00 01. Members of one score
sort by their bytes, and this escaping keeps that order the order of the ids (bytes
unsigned, a shorter prefix first) with a batch part (empty id: 00 00 right after the
time) before every event of its time; the id ends at the first 00 00 after the time.
Both scripts take one log key: atomic per key, and a read stops at the first batch part
on the server. docs/storage-layout.md ("the log") is the reference for jobs.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from typing import Any

from kvstores.base import KnownPart, LogEntry, LogRead

__all__ = [
    "LOG_SUFFIX",
    "READ_LOG_LOAD",
    "READ_LOG_SCRIPT",
    "READ_LOG_SHA",
    "WRITE_LOG_SCRIPT",
    "WRITE_LOG_SHA",
    "MalformedMember",
    "decode_read",
    "encode_member",
    "pack_read",
    "read_arguments",
    "write_arguments",
]

#: The log key is the versions key + this.
LOG_SUFFIX = b":log"
_TS = struct.Struct(">Q")
_END = b"\x00\x00"

# The read of one lookup. KEYS[1] the log key; ARGV: hi, lo (score bounds, inclusive),
# limit (events), and optionally the known part: its time (8 bytes big-endian) and
# payload length. The reply: the members newest first up to and including the first
# batch part, at most `limit` events, then an empty string when one more event is in
# the range (truncated); a first batch part that is the known one (its time and length)
# is answered by the integer 1 instead of its member. ZRANGE in growing chunks: a scan
# that meets a batch part soon reads little, one that does not stays O(members read)
# (LIMIT skips `offset` members). With a known part the scan starts at its time, so that
# the older parts behind it are not read.
READ_LOG_SCRIPT = b"""\
local key, hi, lo, limit = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local known, size = ARGV[4], tonumber(ARGV[5])
local function scan(bottom)
  local found, offset, chunk = {}, 0, math.min(limit + 1, 64)
  while true do
    local members = redis.call('ZRANGE', key, hi, bottom, 'BYSCORE', 'REV', 'LIMIT', offset, chunk)
    for i = 1, #members do
      local member = members[i]
      if string.sub(member, 9, 10) == '\\0\\0' then  -- a batch part: the scan ends with it
        if known and #member == size + 10 and string.sub(member, 1, 8) == known then
          found[#found + 1] = 1  -- the part the reader holds: not sent again
        else
          found[#found + 1] = member
        end
        return found, true
      end
      if #found == limit then  -- one event more than the limit: truncated
        found[#found + 1] = ''
        return found, true
      end
      found[#found + 1] = member
    end
    if #members < chunk then return found, false end
    offset = offset + chunk
    chunk = math.min(chunk * 4, 1024)
  end
end
if known then
  -- Scan from the known part's time first: the older parts behind it (tens of KB each)
  -- are never copied. A scan that ends there without a batch part (the part is gone)
  -- is done again over the whole range.
  local k = 0
  for i = 1, 8 do k = k * 256 + string.byte(known, i) end
  local low, high = tonumber(lo), tonumber(hi)
  if low and high and k > low and k <= high then
    local found, ended = scan(string.format('%.0f', k))
    if ended then return found end
  end
end
return (scan(lo))
"""
READ_LOG_SHA = hashlib.sha1(READ_LOG_SCRIPT, usedforsecurity=False).hexdigest().encode()

# The write of one key's entries, atomic. KEYS[1] the log key; ARGV[1] the TTL in
# seconds ("0": none), then per entry its ts_ms and its member. A member already there
# with the same identity (time and escaped id, up to the first 00 00 after the time)
# is replaced, whatever its payload.
WRITE_LOG_SCRIPT = b"""\
local key = KEYS[1]
for i = 2, #ARGV, 2 do
  local ts, member = ARGV[i], ARGV[i + 1]
  local identity = string.sub(member, 1, string.find(member, '\\0\\0', 9, true) + 1)
  for _, old in ipairs(redis.call('ZRANGE', key, ts, ts, 'BYSCORE')) do
    if string.sub(old, 1, #identity) == identity then redis.call('ZREM', key, old) end
  end
  redis.call('ZADD', key, ts, member)
end
local ttl = tonumber(ARGV[1])
if ttl > 0 then redis.call('EXPIRE', key, ttl) else redis.call('PERSIST', key) end
return 1
"""
WRITE_LOG_SHA = hashlib.sha1(WRITE_LOG_SCRIPT, usedforsecurity=False).hexdigest()

#: The RESP bytes of SCRIPT LOAD of the read script (RedisStore's pipelined reads).
READ_LOG_LOAD = b"*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n$%d\r\n%s\r\n" % (
    len(READ_LOG_SCRIPT),
    READ_LOG_SCRIPT,
)
_READ_HEAD = b"*7\r\n$7\r\nEVALSHA\r\n$40\r\n" + READ_LOG_SHA + b"\r\n$1\r\n1\r\n"
_READ_KNOWN_HEAD = b"*9" + _READ_HEAD[2:]


class MalformedMember(ValueError):
    """A log member that is not ts_ms + escaped id + 00 00 + payload."""


def encode_member(ts_ms: int, id: bytes, payload: bytes) -> bytes:
    """The sorted-set member of one entry."""
    return _TS.pack(ts_ms) + id.replace(b"\x00", b"\x00\x01") + _END + payload


def _decode_member(member: bytes) -> tuple[int, bytes, bytes]:
    end = member.find(_END, 8)
    if end < 0:
        raise MalformedMember(f"{len(member)} bytes without the 00 00 that ends the id")
    id = member[8:end].replace(b"\x00\x01", b"\x00")
    return _TS.unpack_from(member)[0], id, member[end + 2 :]


def decode_read(members: Sequence[bytes | int]) -> LogRead:
    """The LogRead of one read script's reply; MalformedMember on bytes it cannot read."""
    events: list[tuple[int, bytes, bytes]] = []
    for member in members:
        if isinstance(member, int):  # the script's mark: the known part ends the scan
            return LogRead(None, events, False, True)
        if not member:  # the script's mark: one more event in the range
            return LogRead(None, events, True)
        ts_ms, id, payload = _decode_member(member)
        if not id:
            return LogRead((ts_ms, payload), events, False)
        events.append((ts_ms, id, payload))
    return LogRead(None, events, False)


def write_arguments(entries: Sequence[LogEntry]) -> list[Any]:
    """The write script's ARGV for one key's entries: the TTL, then (ts_ms, member) each.

    The key lives as long as its longest-lived entry of this call (none: for good).
    """
    ttls = [entry.ttl_s for entry in entries]
    ttl = 0 if None in ttls else max(ttl for ttl in ttls if ttl is not None)
    arguments: list[Any] = [ttl]
    for entry in entries:
        arguments += (entry.ts_ms, encode_member(entry.ts_ms, entry.id, entry.payload))
    return arguments


def read_arguments(known: KnownPart | None) -> tuple[bytes, ...]:
    """The read script's ARGV after hi, lo and limit: the known part's time and length."""
    if known is None:
        return ()
    return _TS.pack(known[0]), b"%d" % known[1]


def pack_read(
    log_key: bytes, hi_ms: int, lo_ms: int, limit: int, *known: bytes
) -> bytes:
    """The RESP bytes of one read script call (packed here, as RedisStore's reads are).

    `known`: read_arguments' two values, or nothing.
    """
    hi, lo, most = b"%d" % hi_ms, b"%d" % lo_ms, b"%d" % limit
    packed = (_READ_KNOWN_HEAD if known else _READ_HEAD) + (
        b"$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
            len(log_key), log_key, len(hi), hi, len(lo), lo, len(most), most,
        )
    )  # fmt: skip
    for argument in known:
        packed += b"$%d\r\n%s\r\n" % (len(argument), argument)
    return packed
