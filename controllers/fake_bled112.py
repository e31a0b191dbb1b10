"""A fake BLED112 dongle with a Myo in range, on a real pty, speaking BGAPI.

It answers the commands a Myo session sends (end_procedure, disconnect, discover,
connect_direct, attribute_write) with the responses and events a real dongle sends,
and once the EMG notifications are enabled it streams `attclient_attribute_value`
events at 100 per second (2 samples x 8 int8 each), cycling over the four EMG
characteristics. Faults on demand: lost notifications (`drop_every`), packets cut
short on the wire (`truncate_every`), a dropped BLE link (`drop_link()`) and
unplugging the dongle (`unplug()` / `replug()`).
"""

from __future__ import annotations

import math
import struct
import time

import numpy as np

from controllers import bgapi
from controllers.fakes import FakeDevice
from controllers.myo import EMG_CCCDS, MYO_SERVICE_UUID

MYO_ADDRESS = bytes.fromhex("c0ffee123456")
OTHER_ADDRESS = bytes.fromhex("a1b2c3d4e5f6")


def default_emg(t: float, rng: np.random.Generator) -> np.ndarray:
    """2 samples x 8 channels of int8: noise whose loudness sweeps over the channels."""
    loudness = np.array([0.08 + 0.5 * max(0.0, math.sin(2 * math.pi * (t / 3.0 - c / 8.0))) for c in range(8)])
    samples = rng.normal(0.0, 1.0, size=(2, 8)) * loudness * 100.0
    return np.clip(samples, -128, 127).astype(np.int8)


class FakeBLED112(FakeDevice):
    """A BLED112 with one Myo (and one unrelated BLE device) in range."""

    def __init__(self, *, rate_hz: float = 100.0, drop_every: int = 0, truncate_every: int = 0,
                 emg=default_emg, seed: int = 0, autostream: bool = True) -> None:
        super().__init__("bled112")
        self.rate_hz = rate_hz
        self.drop_every = drop_every
        self.truncate_every = truncate_every
        self.emg = emg
        self.autostream = autostream
        self.rng = np.random.default_rng(seed)
        self.commands: list[tuple[int, int, bytes]] = []  # (class, id, payload) received
        self.writes: list[tuple[int, bytes]] = []  # (handle, value) attribute writes
        self.disconnects = 0
        self.notifications_sent = 0
        self._framer = bgapi.BgapiFramer(layouts=bgapi.COMMAND_LAYOUT)
        self._reset_radio()

    def _reset_radio(self) -> None:
        self.scanning = False
        self.connection: int | None = None
        self.enabled: set[int] = set()
        self.mode: bytes | None = None
        self._next_scan_t = self._next_emg_t = time.monotonic()
        self._handle_index = 0

    @property
    def streaming(self) -> bool:
        """True while EMG notifications flow (connected, mode set, all CCCDs enabled)."""
        return self.connection is not None and self.mode is not None and self.enabled >= set(EMG_CCCDS)

    def replug(self) -> None:
        """The dongle comes back, with no scan and no connection."""
        self._reset_radio()
        self._framer = bgapi.BgapiFramer(layouts=bgapi.COMMAND_LAYOUT)
        super().replug()

    def drop_link(self) -> None:
        """The Myo goes out of range: a connection_disconnected event (reason 0x0208)."""
        if self.connection is not None:
            self.pty.write(bgapi.event(3, 4, struct.pack("<BH", self.connection, 0x0208)))
            self.connection = None
            self.enabled.clear()

    def emit_emg(self) -> None:
        """Send one EMG notification now (the benchmark drives this)."""
        handle = EMG_CCCDS[self._handle_index % 4] - 1
        self._handle_index += 1
        value = self.emg(time.monotonic() - self.t0, self.rng).tobytes()
        packet = bgapi.event(4, 5, struct.pack("<BHBB", self.connection or 0, handle, 1, len(value)) + value)
        self.notifications_sent += 1
        n = self.notifications_sent
        if self.drop_every and n % self.drop_every == 0:
            return
        if self.truncate_every and n % self.truncate_every == 0:
            packet = packet[: len(packet) // 2]
        self.pty.write(packet)

    def _handle(self, packet: bgapi.Packet) -> None:
        cls, cmd, p = packet.cls, packet.cmd, packet.payload
        self.commands.append((cls, cmd, p))
        out = self.pty.write
        if (cls, cmd) == (6, 4):  # gap_end_procedure
            ok = self.scanning
            self.scanning = False
            out(bgapi.response(6, 4, struct.pack("<H", 0 if ok else 0x0181)))
        elif (cls, cmd) == (3, 0) and len(p) == 1:  # connection_disconnect
            active = p[0] == self.connection
            out(bgapi.response(3, 0, struct.pack("<BH", p[0], 0 if active else 0x0186)))
            if active:
                self.disconnects += 1
                self.connection = None
                self.enabled.clear()
                out(bgapi.event(3, 4, struct.pack("<BH", p[0], 0x0216)))
        elif (cls, cmd) == (6, 2):  # gap_discover
            self.scanning = True
            out(bgapi.response(6, 2, b"\x00\x00"))
        elif (cls, cmd) == (6, 3) and len(p) == 15:  # gap_connect_direct
            address = p[:6]
            out(bgapi.response(6, 3, struct.pack("<HB", 0, 0)))
            if address == MYO_ADDRESS:
                self.connection = 0
                out(bgapi.event(3, 0, struct.pack("<BB6sBHHHB", 0, 0x05, address, 0, 6, 64, 0, 0xFF)))
        elif (cls, cmd) == (4, 5) and len(p) >= 4:  # attclient_attribute_write
            conn, handle, n = struct.unpack_from("<BHB", p)
            value = p[4 : 4 + n]
            self.writes.append((handle, value))
            out(bgapi.response(4, 5, struct.pack("<BH", conn, 0)))
            if handle == 0x19 and value[:1] == b"\x01":
                self.mode = value
            elif handle in EMG_CCCDS and value == b"\x01\x00":
                self.enabled.add(handle)
            out(bgapi.event(4, 1, struct.pack("<BHH", conn, 0, handle)))

    def _advertise(self) -> None:
        for address, data in ((OTHER_ADDRESS, b"\x02\x01\x06"), (MYO_ADDRESS, b"\x02\x01\x06\x11\x06" + MYO_SERVICE_UUID)):
            header = struct.pack("<bB6sBBB", -60, 0, address, 0, 0xFF, len(data))
            self.pty.write(bgapi.event(6, 0, header + data))

    def _tick(self) -> None:
        now = time.monotonic()
        wait = min(0.005, self._next_emg_t - now) if self.autostream and self.streaming else 0.005
        data = self.pty.read(max(0.0, wait))
        if data:
            for packet in self._framer.feed(data):
                if not packet.is_event:
                    self._handle(packet)
        now = time.monotonic()
        if self.scanning and now >= self._next_scan_t:
            self._next_scan_t = now + 0.05
            self._advertise()
        if self.autostream and self.streaming and now >= self._next_emg_t:
            self._next_emg_t = max(self._next_emg_t + 1.0 / self.rate_hz, now - 0.1)
            self.emit_emg()
