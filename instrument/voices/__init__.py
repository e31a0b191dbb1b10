"""Voices: the models the engine plays, each behind one front door (`registry.py`).

`open_voice(name, options)` builds one; `voice_names()` lists them without importing torch.
A new voice is a model package in `models/NAME/` plus one file here, `NAME.py`, with
`@register_voice(VoiceInfo(...))`, and its line in `registry.SHIPPED`.
"""

from instrument.voices.registry import (
    SHIPPED,
    VoiceInfo,
    VoiceOptions,
    model_help,
    open_voice,
    register_voice,
    resolve,
    voice_info,
    voice_names,
)

__all__ = ["SHIPPED", "VoiceInfo", "VoiceOptions", "model_help", "open_voice", "register_voice", "resolve",
           "voice_info", "voice_names"]
