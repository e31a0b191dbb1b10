"""What a person sees and hears of a session: the monitor window and view, piano roll, PNG and WAV renders."""
