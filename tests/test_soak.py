"""`instrument bench soak` for 2 minutes (issue 7, long runs): CI runs it on every push.

The soak plays `instrument play --controller demo` through the real JACK server into a
receiving client in another process, and the goals are checked on what it prints:
memory growth <= 5 %, no underrun, no stuck note at the receiver, every recorded note
received, the server never lost, a clean exit.
"""

from __future__ import annotations

import json

import pytest

from instrument.cli import main

pytestmark = [pytest.mark.jack, pytest.mark.slow]

MINUTES = 2.0


def test_two_minute_soak_meets_the_goals(jack_server, tiny_charrnn, capsys):
    code = main(["bench", "soak", "--minutes", str(MINUTES), "--json", "--model", str(tiny_charrnn),
                 "--warmup", "15"])
    out = capsys.readouterr().out
    result = json.loads(out)
    assert code == 0 and result["exit_code"] == 0, result
    assert result["minutes"] == MINUTES and result["midi"] == "JACK, running server"
    assert result["rss_start_mb"] > 0 and result["rss_end_mb"] > 0
    assert result["memory_growth_pct"] <= 5.0, result
    assert result["underruns"] == 0, result
    assert result["stuck_notes"] == 0, result
    assert result["midi_lost"] == 0, result
    assert result["notes_recorded"] > 0 and result["notes_received"] == result["notes_recorded"], result
    assert result["max_lateness_ms"] is not None and result["max_lateness_ms"] < 100.0, result
