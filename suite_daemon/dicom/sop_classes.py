"""Which SOP classes and transfer syntaxes the receiver accepts (the conformance statement lists them)."""

from __future__ import annotations

from pynetdicom.sop_class import _STORAGE_CLASSES

VERIFICATION = "1.2.840.10008.1.1"
MPPS = "1.2.840.10008.3.1.2.3.3"

# Radiation dose reports: the correlator reads these for dose.report events.
DOSE_SR_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.88.67",  # X-Ray Radiation Dose SR
        "1.2.840.10008.5.1.4.1.1.88.68",  # Radiopharmaceutical Radiation Dose SR
        "1.2.840.10008.5.1.4.1.1.88.73",  # Patient Radiation Dose SR
        "1.2.840.10008.5.1.4.1.1.88.76",  # Enhanced X-Ray Radiation Dose SR
    }
)
AGENT_SR_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.88.74",  # Planned Imaging Agent Administration SR
        "1.2.840.10008.5.1.4.1.1.88.75",  # Performed Imaging Agent Administration SR
    }
)
# Not every pynetdicom release lists these; a modality sending them must not be refused.
_EXTRA_STORAGE = {
    "EnhancedXRayRadiationDoseSRStorage": "1.2.840.10008.5.1.4.1.1.88.76",
    "PatientRadiationDoseSRStorage": "1.2.840.10008.5.1.4.1.1.88.73",
    "PlannedImagingAgentAdministrationSRStorage": "1.2.840.10008.5.1.4.1.1.88.74",
    "PerformedImagingAgentAdministrationSRStorage": "1.2.840.10008.5.1.4.1.1.88.75",
}

STORAGE_SOP_CLASSES: dict[str, str] = {**dict(_STORAGE_CLASSES), **_EXTRA_STORAGE}
"""Keyword -> UID of every storage SOP class accepted (pynetdicom's full list plus the dose/agent SRs)."""

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"

STORAGE_TRANSFER_SYNTAXES: dict[str, str] = {
    EXPLICIT_LE: "Explicit VR Little Endian",
    IMPLICIT_LE: "Implicit VR Little Endian",
    DEFLATED_LE: "Deflated Explicit VR Little Endian",
    EXPLICIT_BE: "Explicit VR Big Endian (retired)",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless, First-Order Prediction (Process 14, SV1)",
    "1.2.840.10008.1.2.4.57": "JPEG Lossless, Non-Hierarchical (Process 14)",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 (Lossless Only)",
    "1.2.840.10008.1.2.4.201": "High-Throughput JPEG 2000 (Lossless Only)",
    "1.2.840.10008.1.2.4.202": "High-Throughput JPEG 2000 with RPCL Options (Lossless Only)",
    "1.2.840.10008.1.2.5": "RLE Lossless",
    "1.2.840.10008.1.2.4.50": "JPEG Baseline (Process 1)",
    "1.2.840.10008.1.2.4.51": "JPEG Extended (Process 2 & 4)",
    "1.2.840.10008.1.2.4.81": "JPEG-LS Near-Lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.4.203": "High-Throughput JPEG 2000",
    "1.2.840.10008.1.2.4.100": "MPEG2 Main Profile / Main Level",
    "1.2.840.10008.1.2.4.102": "MPEG-4 AVC/H.264 High Profile / Level 4.1",
    "1.2.840.10008.1.2.4.103": "MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1",
}
"""Accepted as proposed and stored as received: pixel data is never decoded or transcoded.

In order of preference: when a presentation context proposes several, the first of these is chosen
(uncompressed first, so that an SCU is never asked to compress lossily; lossless before lossy)."""

NON_STORAGE_TRANSFER_SYNTAXES = (EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE)
