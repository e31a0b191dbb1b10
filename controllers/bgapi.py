"""BGAPI (Bluegiga BLED112) packet framing and the few commands a Myo session needs.

Pure: fed bytes, returns packets; no I/O. A packet is a 4-byte header
`[type, length, class, id]` and `length` payload bytes. `type` is 0x00 for commands
and responses, 0x80 for events (bit 3 may mark the technology type, hence 0x08/0x88);
its low 3 bits are the high bits of the length, always 0 for the BLED112, whose
payloads fit in 64 bytes.

The framer survives a hostile stream: a header that cannot be right (bad type byte,
class outside 0..9, absurd length) drops one byte and resynchronises; a packet whose
self-described layout disagrees with its length (a truncated packet swallowed the
next one) is dropped and the scan restarts one byte later, so the packet behind it is
still found. While resynchronising, only packets whose layout can be checked are
trusted, so random bytes that happen to look like a header cannot swallow the next
real packet. Every drop is counted, nothing raises.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAX_PAYLOAD = 64
KNOWN_CLASSES = range(10)  # system, ps, attributes, connection, attclient, sm, gap, hardware, test, dfu
TYPE_BYTES = (0x00, 0x80, 0x08, 0x88)

# (is_event, class, id) -> check(payload) for messages whose layout we know
_LAYOUT = {
    (True, 4, 5): lambda p: len(p) >= 5 and p[4] == len(p) - 5,  # attclient_attribute_value
    (True, 6, 0): lambda p: len(p) >= 11 and p[10] == len(p) - 11,  # gap_scan_response
    (True, 3, 0): lambda p: len(p) == 16,  # connection_status
    (True, 3, 4): lambda p: len(p) == 3,  # connection_disconnected
    (True, 4, 1): lambda p: len(p) == 5,  # attclient_procedure_completed
    (False, 4, 5): lambda p: len(p) == 3,  # attclient_attribute_write response
    (False, 6, 3): lambda p: len(p) == 3,  # gap_connect_direct response
    (False, 6, 2): lambda p: len(p) == 2,  # gap_discover response
    (False, 6, 4): lambda p: len(p) == 2,  # gap_end_procedure response
    (False, 3, 0): lambda p: len(p) == 3,  # connection_disconnect response
}
# the same keys seen from the dongle's side: commands the host sends
COMMAND_LAYOUT = {
    (False, 4, 5): lambda p: len(p) >= 4 and p[3] == len(p) - 4,  # attclient_attribute_write
    (False, 6, 3): lambda p: len(p) == 15,  # gap_connect_direct
    (False, 6, 2): lambda p: len(p) == 1,  # gap_discover
    (False, 6, 4): lambda p: len(p) == 0,  # gap_end_procedure
    (False, 3, 0): lambda p: len(p) == 1,  # connection_disconnect
}


@dataclass(frozen=True, slots=True)
class Packet:
    """One BGAPI message."""

    is_event: bool
    cls: int
    cmd: int
    payload: bytes

    def to_bytes(self) -> bytes:
        """The wire form of this packet."""
        return bytes((0x80 if self.is_event else 0x00, len(self.payload), self.cls, self.cmd)) + self.payload


class BgapiFramer:
    """Turns a byte stream into `Packet`s; counts what it drops (see `counters`)."""

    def __init__(self, max_payload: int = MAX_PAYLOAD, layouts: dict | None = None) -> None:
        self.max_payload = max_payload
        self.layouts = _LAYOUT if layouts is None else layouts  # COMMAND_LAYOUT on the dongle's side
        self._buf = bytearray()
        self._hunting = False  # after a drop, until a packet with a checkable layout validates
        self.counters = {"packets": 0, "garbage_bytes": 0, "unknown_class": 0, "bad_length": 0, "truncated": 0}

    def _header_ok(self, buf: bytearray) -> bool:
        if buf[0] not in TYPE_BYTES:
            self.counters["garbage_bytes"] += 1
            return False
        if len(buf) >= 2 and buf[1] > self.max_payload:
            self.counters["bad_length"] += 1
            return False
        if len(buf) >= 3 and buf[2] not in KNOWN_CLASSES:
            self.counters["unknown_class"] += 1
            return False
        return True

    def feed(self, data: bytes) -> list[Packet]:
        """Add bytes; return every complete, plausible packet they finish."""
        self._buf += data
        return self._parse(final=False)

    def expire(self) -> list[Packet]:
        """The line went quiet mid-packet: that packet was cut short (counted `truncated`).

        Its bytes are rescanned as if no more will come, so a whole packet hiding
        behind the cut one's header is still returned.
        """
        if not self._buf:
            return []
        self.counters["truncated"] += 1
        return self._parse(final=True)

    def _parse(self, final: bool) -> list[Packet]:
        buf = self._buf
        packets: list[Packet] = []
        while buf:
            if not self._header_ok(buf):
                self._hunting = True
                del buf[0]
                continue
            if len(buf) < 4 or len(buf) < 4 + buf[1]:
                if not final:
                    break  # wait for the rest
                self._hunting = True
                del buf[0]  # no rest will come: rescan what is there
                continue
            length = buf[1]
            packet = Packet(bool(buf[0] & 0x80), buf[2], buf[3], bytes(buf[4 : 4 + length]))
            check = self.layouts.get((packet.is_event, packet.cls, packet.cmd))
            if check is not None and not check(packet.payload):
                self.counters["bad_length"] += 1
                self._hunting = True
                del buf[0]  # rescan: the next real header may be inside
                continue
            if check is None and self._hunting:
                self.counters["garbage_bytes"] += 1  # resyncing: trust only packets whose layout we can check
                del buf[0]
                continue
            self._hunting = False
            del buf[: 4 + length]
            self.counters["packets"] += 1
            packets.append(packet)
        return packets

    @property
    def pending(self) -> int:
        """Bytes of an incomplete packet waiting for the rest."""
        return len(self._buf)


# -- commands (host -> dongle) ----------------------------------------------------
def command(cls: int, cmd: int, payload: bytes = b"") -> bytes:
    """A BGAPI command packet."""
    return Packet(False, cls, cmd, payload).to_bytes()


def gap_end_procedure() -> bytes:
    """Stop scanning or connecting."""
    return command(6, 4)


def gap_discover(mode: int = 1) -> bytes:
    """Start scanning (mode 1: generic discoverable)."""
    return command(6, 2, bytes((mode,)))


def gap_connect_direct(address: bytes, address_type: int = 0, interval_min: int = 6,
                       interval_max: int = 6, timeout: int = 64, latency: int = 0) -> bytes:
    """Connect to a device (intervals in 1.25 ms units, timeout in 10 ms units)."""
    return command(6, 3, struct.pack("<6sBHHHH", address, address_type, interval_min, interval_max, timeout, latency))


def connection_disconnect(connection: int) -> bytes:
    """Close a connection."""
    return command(3, 0, bytes((connection,)))


def attribute_write(connection: int, handle: int, value: bytes) -> bytes:
    """attclient_attribute_write: write `value` to GATT `handle`."""
    return command(4, 5, struct.pack("<BHB", connection, handle, len(value)) + value)


# -- responses and events (dongle -> host), parsed -------------------------------
@dataclass(frozen=True, slots=True)
class ScanResponse:
    """gap_scan_response: an advertising packet seen while scanning."""

    rssi: int
    address: bytes
    address_type: int
    data: bytes


@dataclass(frozen=True, slots=True)
class AttributeValue:
    """attclient_attribute_value: a read result or a notification."""

    connection: int
    handle: int
    kind: int
    value: bytes


def parse_scan_response(payload: bytes) -> ScanResponse:
    """Decode a gap_scan_response (class 6, id 0) payload (layout checked by the framer)."""
    rssi, _packet_type, address, address_type, _bond, _n = struct.unpack_from("<bB6sBBB", payload)
    return ScanResponse(rssi, address, address_type, payload[11:])


def parse_attribute_value(payload: bytes) -> AttributeValue:
    """Decode an attclient_attribute_value (class 4, id 5) payload."""
    connection, handle, kind, _n = struct.unpack_from("<BHBB", payload)
    return AttributeValue(connection, handle, kind, payload[5:])


def event(cls: int, cmd: int, payload: bytes = b"") -> bytes:
    """An event packet (what the dongle sends; used by the fake)."""
    return Packet(True, cls, cmd, payload).to_bytes()


def response(cls: int, cmd: int, payload: bytes = b"") -> bytes:
    """A response packet (what the dongle sends back to a command; used by the fake)."""
    return Packet(False, cls, cmd, payload).to_bytes()
