"""Dose and injection records from DICOM objects (RDSR, MPPS, MR headers, agent administration SR)
and their per-procedure ledgers. Pure code: no I/O besides reading a dataset or a file path."""
