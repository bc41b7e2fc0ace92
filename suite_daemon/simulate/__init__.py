"""Simulated peers for `suite-daemon simulate` and for tests: DICOM object builders and a modality."""
