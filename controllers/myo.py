"""Myo armband through a BLED112 dongle (BGAPI over USB serial): the session shell.

The session, as the Myo expects it (cf. dzhu/myo-raw):
  1. stop any scan and drop stale connections (the dongle survives our process);
  2. scan until an advertisement carries the Myo service UUID;
  3. `gap_connect_direct`, then wait for `connection_status`;
  4. write the mode `01 03 03 01 00` to handle 0x19 (raw EMG at 200 Hz, IMU data at
     50 Hz, no on-board classifier) and never-sleep `09 01 01`;
  5. enable notifications on the four EMG characteristics (CCCDs 0x2c 0x2f 0x32 0x35)
     and on the IMU data characteristic (CCCD 0x1d);
  6. stream: each `attclient_attribute_value` (class 4, id 5) on handles 0x2b 0x2e
     0x31 0x34 holds 2 samples x 8 int8; on handle 0x1c, the orientation (controllers/imu.py),
     which every following frame carries as its roll, pitch and yaw axes.
On close the connection is disconnected. A lost link or an unplugged dongle leads
back to step 1 (the thread's backoff), without stopping the instrument.
"""

from __future__ import annotations

import logging

from controllers import bgapi
from controllers.base import Clock, ThreadedController
from controllers.calibration import EmgCalibration
from controllers.emg import EmgEnvelope, PoseClassifier, decode_emg
from controllers.filters import EMG_FILTER, FilterBank
from controllers.frame import ControlFrame, Unfiltered
from controllers.imu import IMU_CCCD, IMU_VALUE_HANDLE, Orientation

log = logging.getLogger(__name__)

MYO_SERVICE_UUID = bytes.fromhex("4248124a7f2c4847b9de04a9010006d5")  # d5060001-a904-deb9-4748-2c7f4a124842, LE
MODE_HANDLE = 0x19
MODE_RAW_EMG = bytes((0x01, 0x03, 0x03, 0x01, 0x00))  # set mode: EMG raw, IMU data, classifier off
NEVER_SLEEP = bytes((0x09, 0x01, 0x01))  # set sleep mode: never sleep
EMG_CCCDS = (0x2C, 0x2F, 0x32, 0x35)
EMG_VALUE_HANDLES = frozenset(h - 1 for h in EMG_CCCDS)  # 0x2b 0x2e 0x31 0x34
ENABLE_NOTIFY = b"\x01\x00"
BLED112_USB_ID = (0x2458, 0x0001)  # Bluegiga BLED112
PACKET_GAP_S = 0.005  # a packet arrives whole within this; a longer pause means it was cut short


class LinkLost(Exception):
    """The Myo dropped the BLE connection (out of range, asleep, switched off)."""


def find_bled112() -> str | None:
    """The serial port of a plugged-in BLED112 dongle, or None."""
    from serial.tools import list_ports

    for port in list_ports.comports():
        if (port.vid, port.pid) == BLED112_USB_ID:
            return port.device
    return None


class MyoController(ThreadedController):
    """Frames with 8 EMG envelopes (and an optional pose) from a Myo armband."""

    def __init__(
        self,
        path: str | None = None,
        *,
        clock: Clock,
        calibration: EmgCalibration | None = None,
        poses: PoseClassifier | None = None,
        raw: bool = False,
        reply_timeout_s: float = 1.0,
    ) -> None:
        super().__init__(clock, f"myo:{path or 'auto'}")
        self.path = path
        self.calibration = calibration or EmgCalibration()
        self.poses = poses
        self.raw = raw
        self.reply_timeout_s = reply_timeout_s
        self.envelope = EmgEnvelope()
        self.orientation = Orientation()
        self._filter = FilterBank(8, EMG_FILTER)
        for name in ("connected", "reconnects", "notifications", "samples", "gaps", "link_losses",
                     "no_answer", "thread_errors", "packets", "garbage_bytes", "unknown_class",
                     "bad_length", "truncated", "imu_notifications", "imu_bad"):
            self.counters.set(name, 0)
        self._framer = bgapi.BgapiFramer()
        self._port = None
        self._connection: int | None = None
        self._ever_streamed = False
        self._last_notification_t: float | None = None
        self._last_byte_t = 0.0
        self._missing_logged = False
        self.start()

    # -- the device thread -------------------------------------------------------
    def _serve(self) -> None:
        import serial

        path = self.path or find_bled112()
        try:
            if path is None:
                raise serial.SerialException("no BLED112 dongle (USB 2458:0001) found")
            port = serial.Serial(path, 115200, timeout=0.01, write_timeout=1.0)
        except (serial.SerialException, OSError, ValueError) as err:
            if not self._missing_logged:
                log.warning("Myo dongle not available (%s); retrying until it appears", err)
                self._missing_logged = True
            return
        self._missing_logged = False
        self._port, self._framer = port, bgapi.BgapiFramer()
        try:
            while not self.stopping:
                try:
                    self._session()
                except LinkLost:
                    self.counters.inc("link_losses")
                    log.warning("Myo link lost; scanning again")
                    self._lost()
        except (serial.SerialException, OSError) as err:
            self.last_error = f"dongle lost: {err}"
            log.warning("Myo dongle %s lost (%s); reconnecting", path, err)
        finally:
            self._say_goodbye()
            port.close()
            self._port = None
            self._lost()

    def _session(self) -> None:
        self._send(bgapi.gap_end_procedure())
        for stale in range(3):
            self._send(bgapi.connection_disconnect(stale))
        self._wait(lambda p: False, 0.1)  # drain the answers to the clean-up
        address = self._discover()
        if address is None:
            return
        self._send(bgapi.gap_connect_direct(address))
        status = self._wait(lambda p: p.is_event and (p.cls, p.cmd) == (3, 0), 5.0)
        if status is None:
            log.warning("Myo did not accept the connection; scanning again")
            self._send(bgapi.gap_end_procedure())
            return
        self._connection = status.payload[0]
        self._write(MODE_HANDLE, MODE_RAW_EMG)
        self._write(MODE_HANDLE, NEVER_SLEEP)
        self._write(IMU_CCCD, ENABLE_NOTIFY)  # before the EMG: once EMG streams, the setup is complete
        for cccd in EMG_CCCDS:
            self._write(cccd, ENABLE_NOTIFY)
        if self._ever_streamed:
            self.counters.inc("reconnects")
        self._ever_streamed = True
        self.counters.set("connected", 1)
        self.envelope.reset()
        self.orientation.reset()
        self._filter.reset()
        if self.poses is not None:
            self.poses.reset()
        while not self.stopping:
            self._pump()

    def _discover(self) -> bytes | None:
        self._send(bgapi.gap_discover())
        warned = False
        while not self.stopping:
            packet = self._wait(lambda p: p.is_event and (p.cls, p.cmd) == (6, 0)
                                and MYO_SERVICE_UUID in bgapi.parse_scan_response(p.payload).data, 5.0)
            if packet is not None:
                self._send(bgapi.gap_end_procedure())
                return bgapi.parse_scan_response(packet.payload).address
            if not warned:
                log.warning("no Myo found yet: is it charged, awake and near the dongle?")
                warned = True
        return None

    def _write(self, handle: int, value: bytes) -> None:
        assert self._connection is not None
        self._send(bgapi.attribute_write(self._connection, handle, value))
        if self._wait(lambda p: p.is_event and (p.cls, p.cmd) == (4, 1), self.reply_timeout_s) is None:
            self.counters.inc("no_answer")
            log.warning("Myo did not confirm the write to handle 0x%02x", handle)

    def _send(self, data: bytes) -> None:
        self._port.write(data)

    def _wait(self, wanted, timeout: float) -> bgapi.Packet | None:
        """Read and dispatch packets until one satisfies `wanted` or `timeout` passes."""
        deadline = self.clock() + timeout
        while not self.stopping and self.clock() < deadline:
            for packet in self._pump():
                if wanted(packet):
                    return packet
        return None

    def _pump(self) -> list[bgapi.Packet]:
        port = self._port
        data = port.read(port.in_waiting or 1)
        now = self.clock()
        packets = []
        if self._framer.pending and (not data or now - self._last_byte_t > PACKET_GAP_S):
            packets = self._framer.expire()  # the line went quiet mid-packet: that packet was cut short
        if data:
            self._last_byte_t = now
            packets += self._framer.feed(data)
        self._sync_framer_counters()
        for packet in packets:
            self._dispatch(packet, now)
        return packets

    def _sync_framer_counters(self) -> None:
        for name, value in self._framer.counters.items():
            if value:
                self.counters.set(name, self.counters.get(name) + value)
                self._framer.counters[name] = 0

    def _dispatch(self, packet: bgapi.Packet, now: float) -> None:
        if not packet.is_event:
            return
        if (packet.cls, packet.cmd) == (4, 5):
            value = bgapi.parse_attribute_value(packet.payload)
            if value.handle in EMG_VALUE_HANDLES and len(value.value) == 16:
                self._on_emg(value.value, now)
            elif value.handle == IMU_VALUE_HANDLE:
                self.counters.inc("imu_notifications" if self.orientation.push(value.value) else "imu_bad")
        elif (packet.cls, packet.cmd) == (3, 4) and packet.payload[0] == self._connection:
            self._connection = None
            raise LinkLost()

    def _on_emg(self, value: bytes, now: float) -> None:
        self.counters.inc("notifications")
        self.counters.inc("samples", 2)
        if self._last_notification_t is not None and now - self._last_notification_t > 0.025:
            self.counters.inc("gaps")  # BLE lost notifications (no sequence numbers: timing tells)
        self._last_notification_t = now
        self.envelope.push(decode_emg(value))
        env = self.envelope.value()
        roll, pitch, yaw = self.orientation.axes or (None, None, None)  # the latest IMU reading, if any yet
        if self.raw:
            self.frames.put(ControlFrame(t=now, present=True, emg=env, roll=roll, pitch=pitch, yaw=yaw))
            return
        calibrated = self.calibration.apply(env)
        emg = self._filter(calibrated, now)
        pose = self.poses(emg) if self.poses is not None else None
        self.frames.put(ControlFrame(t=now, present=True, emg=emg, pose=pose, roll=roll, pitch=pitch, yaw=yaw,
                                     unfiltered=Unfiltered(emg=tuple(calibrated))))

    def _lost(self) -> None:
        self.counters.set("connected", 0)
        self._last_notification_t = None
        if self.latest().present or self.frames.seq == 0:
            self.frames.put(ControlFrame(t=self.clock(), present=False))

    def _say_goodbye(self) -> None:
        """Disconnect cleanly so the Myo is free for the next session (best effort)."""
        if self._connection is None or self._port is None:
            return
        try:
            self._send(bgapi.connection_disconnect(self._connection))
            self._wait(lambda p: (p.cls, p.cmd) == (3, 0) or (p.cls, p.cmd) == (3, 4), 0.3)
        except (OSError, LinkLost) as err:  # the dongle may be gone already
            log.debug("Myo disconnect failed: %s", err)
        self._connection = None
