"""Deep Symphony Live: gestures in, neural music out through a virtual MIDI port."""

from controllers import ControllerUnavailable, OpenOptions, register_scheme

__version__ = "0.1.0"


@register_scheme("mouse", "mouse")
def _open_mouse(arg: str | None, opts: OpenOptions):
    """The mouse XY pad: a controller drawn in a window, so it lives with the GUI code (instrument/ui)."""
    try:
        from instrument.ui.mouse_pad import open_mouse
    except ImportError as err:  # OpenCV without highgui
        raise ControllerUnavailable(f"the mouse controller needs OpenCV's highgui ({err}); use --controller demo") from None
    return open_mouse(arg, clock=opts.clock, profile=opts.profile, raw=opts.raw)
