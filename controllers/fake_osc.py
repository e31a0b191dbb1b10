"""A fake OSC sender over real UDP, speaking as Wekinator or TouchOSC would: for tests and the demo.

    python -m controllers.fakes osc --port 9000     # a circling hand with EMG bursts, 60 messages/s
    instrument monitor --controller osc:9000        # in another terminal: what arrives

`send` builds real OSC messages with python-osc, `send_bundle` puts several in one datagram,
`send_raw` sends any bytes (for fuzzing). `start()` streams a hand path on a thread, either as
`/instrument/frame` + `/instrument/emg` bundles or as Wekinator's `/wek/outputs`.
"""

from __future__ import annotations

import socket
import threading
import time

from controllers.fakes import HandPath, circling_hand


def pulsing_emg(t: float) -> tuple[float, ...]:
    """Eight EMG envelopes: a burst sweeping across the channels every 2 s."""
    centre = (t / 2.0 % 1.0) * 8.0
    return tuple(round(max(0.0, 1.0 - abs(c - centre) / 1.5), 4) for c in range(8))


class FakeOscSender:
    """Sends OSC datagrams to `host:port`; `sent` counts datagrams, `send_errors` the ones the system refused."""

    def __init__(self, port: int, host: str = "127.0.0.1", *, hand: HandPath = circling_hand,
                 rate_hz: float = 60.0, style: str = "instrument") -> None:
        if style not in ("instrument", "wekinator"):
            raise ValueError(f"style must be 'instrument' or 'wekinator', got {style!r}")
        self.address = (host, port)
        self.hand, self.rate_hz, self.style = hand, rate_hz, style
        self.sent = 0
        self.send_errors = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"fake-osc-{port}", daemon=True)

    # -- single datagrams ------------------------------------------------------------
    def send_raw(self, data: bytes) -> None:
        """Send any bytes as one datagram."""
        self._sock.sendto(data, self.address)
        self.sent += 1

    def send(self, address: str, *args) -> None:
        """One OSC message; argument types follow python-osc (float f, int i, bool T/F, str s, bytes b)."""
        self.send_raw(_message(address, args).dgram)

    def send_bundle(self, messages: list[tuple[str, tuple]]) -> None:
        """Several messages in one (immediate) bundle: the receiver makes one frame of them."""
        from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder

        bundle = OscBundleBuilder(IMMEDIATELY)
        for address, args in messages:
            bundle.add_content(_message(address, args))
        self.send_raw(bundle.build().dgram)

    def wekinator(self, *outputs: float) -> None:
        """Wekinator's output message: x, y, size, emg0..7."""
        self.send("/wek/outputs", *(float(v) for v in outputs))

    # -- streaming ---------------------------------------------------------------------
    def start(self):
        """Stream the hand path (and EMG) until close(); returns self."""
        self._thread.start()
        return self

    def _loop(self) -> None:
        t0 = time.monotonic()
        count = 0
        while not self._stop.is_set():
            t = time.monotonic() - t0
            hand, emg = self.hand(t), pulsing_emg(t)
            try:
                if self.style == "wekinator":
                    if hand is not None:
                        self.wekinator(*hand, *emg)
                elif hand is None:
                    self.send("/instrument/present", False)
                else:
                    self.send_bundle([("/instrument/frame", (*hand, True)), ("/instrument/emg", emg)])
            except OSError:
                self.send_errors += 1  # nobody listening yet, or the network is down: a sender carries on
            count += 1
            self._stop.wait(max(0.0, t0 + count / self.rate_hz - time.monotonic()))  # no drift

    def close(self) -> None:
        """Stop streaming and close the socket."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _message(address: str, args: tuple):
    from pythonosc.osc_message_builder import OscMessageBuilder

    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build()


def stream_forever(port: int, host: str = "127.0.0.1", style: str = "instrument") -> None:
    """Stream until Ctrl-C (the `python -m controllers.fakes osc` demo)."""
    with FakeOscSender(port, host, style=style) as sender:
        sender.start()
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
