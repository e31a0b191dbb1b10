"""The Myo's IMU: orientation quaternions -> roll, pitch, yaw axes in [0, 1]. Pure: bytes in, numbers out.

With the IMU mode on, the Myo notifies its IMU data characteristic (value handle 0x1c) at
50 Hz with 20 bytes (myohw_imu_data_t, little endian int16): the orientation quaternion
w, x, y, z (scale 16384), then accelerometer x, y, z (scale 2048, g) and gyroscope x, y, z
(scale 16, deg/s). Only the orientation is used here.

The axes: roll (forearm twisted about its length) and pitch (arm raised or lowered) are
measured against gravity, 0.5 = level, over the full turn for roll (-180..180 degrees) and
-90..90 degrees for pitch; yaw (where the arm points, left and right) has no absolute
reference on a Myo (no magnetometer), so it is measured from the direction of the first
reading after connect (`reset()`), 0.5 = that direction, over -180..180 degrees.
"""

from __future__ import annotations

import math
import struct

IMU_VALUE_HANDLE = 0x1C
IMU_CCCD = 0x1D
IMU_VALUE_BYTES = 20
ORIENTATION_SCALE = 16384.0


def decode_quaternion(value: bytes) -> tuple[float, float, float, float] | None:
    """The unit orientation quaternion (w, x, y, z) of one IMU notification; None when it is not one."""
    if len(value) != IMU_VALUE_BYTES:
        return None
    w, x, y, z = (v / ORIENTATION_SCALE for v in struct.unpack_from("<4h", value))
    norm = math.sqrt(w * w + x * x + y * y + z * z)
    if norm < 0.5:  # a zeroed or broken reading: no orientation
        return None
    return w / norm, x / norm, y / norm, z / norm


def euler(q: tuple[float, float, float, float]) -> tuple[float, float, float]:
    """(roll, pitch, yaw) in radians of a unit quaternion (w, x, y, z), aerospace order (z-y-x)."""
    w, x, y, z = q
    roll = math.atan2(2.0 * (w * x + y * z), 1.0 - 2.0 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2.0 * (w * y - z * x))))
    yaw = math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
    return roll, pitch, yaw


def quaternion(roll: float, pitch: float, yaw: float) -> tuple[float, float, float, float]:
    """The unit quaternion (w, x, y, z) of roll, pitch, yaw in radians (the inverse of `euler`; fakes use it)."""
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return (cr * cp * cy + sr * sp * sy, sr * cp * cy - cr * sp * sy,
            cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy)


def encode_imu(q: tuple[float, float, float, float], accel=(0, 0, 2048), gyro=(0, 0, 0)) -> bytes:
    """The 20 bytes of an IMU notification for quaternion `q` (what a Myo sends; fakes use it)."""
    scaled = [max(-32768, min(32767, round(v * ORIENTATION_SCALE))) for v in q]
    return struct.pack("<10h", *scaled, *accel, *gyro)


class Orientation:
    """Roll, pitch and yaw axes in [0, 1] from IMU notifications (yaw from the first reading's direction)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """A new connection: the next reading's direction becomes yaw 0.5."""
        self._yaw0: float | None = None
        self.axes: tuple[float, float, float] | None = None  # the latest (roll, pitch, yaw)

    def push(self, value: bytes) -> tuple[float, float, float] | None:
        """Take one IMU notification; returns the new axes, or None (kept as they were) when it is no reading."""
        q = decode_quaternion(value)
        if q is None:
            return None
        roll, pitch, yaw = euler(q)
        if self._yaw0 is None:
            self._yaw0 = yaw
        turned = (yaw - self._yaw0 + math.pi) % (2 * math.pi) - math.pi  # -pi..pi from the first direction
        self.axes = (_unit((roll + math.pi) / (2 * math.pi)), _unit((pitch + math.pi / 2) / math.pi),
                     _unit((turned + math.pi) / (2 * math.pi)))
        return self.axes


def _unit(u: float) -> float:
    return min(1.0, max(0.0, u))
