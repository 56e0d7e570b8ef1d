"""Running a trained detector: the exported bundle, frame sources (files, python-can logs, a bus), the session
that turns frames into verdicts, its outputs and the out-of-distribution check."""
