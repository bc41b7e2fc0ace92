"""Concept codes `(CodeValue, CodingSchemeDesignator)` used by the dose and injection parsers.

Every code here was checked against DICOM PS3.16 (the DCM/SCT concept tables as shipped in
`pydicom.sr`, generated from the standard). Matching is always on these pairs, never on meanings.
"""

from __future__ import annotations

Code = tuple[str, str]

# --- X-Ray Radiation Dose SR (TID 10001 projection, TID 10011 CT) -------------------------------
XRAY_RADIATION_DOSE_REPORT: Code = ("113701", "DCM")
PROCEDURE_REPORTED: Code = ("121058", "DCM")
PROJECTION_XRAY: Code = ("113704", "DCM")

# Device observer (TID 1004)
DEVICE_OBSERVER_UID: Code = ("121012", "DCM")
DEVICE_OBSERVER_NAME: Code = ("121013", "DCM")
DEVICE_OBSERVER_MANUFACTURER: Code = ("121014", "DCM")
DEVICE_OBSERVER_MODEL: Code = ("121015", "DCM")
DEVICE_OBSERVER_SERIAL: Code = ("121016", "DCM")

# Projection: accumulated (TID 10002/10004) and per event (TID 10003/10003a)
ACCUMULATED_XRAY_DOSE: Code = ("113702", "DCM")
ACQUISITION_PLANE: Code = ("113764", "DCM")
PLANE_A: Code = ("113620", "DCM")
PLANE_B: Code = ("113621", "DCM")
SINGLE_PLANE: Code = ("113622", "DCM")
DAP_TOTAL: Code = ("113722", "DCM")
DOSE_RP_TOTAL: Code = ("113725", "DCM")
FLUORO_DAP_TOTAL: Code = ("113726", "DCM")
ACQUISITION_DAP_TOTAL: Code = ("113727", "DCM")
FLUORO_DOSE_RP_TOTAL: Code = ("113728", "DCM")
ACQUISITION_DOSE_RP_TOTAL: Code = ("113729", "DCM")
TOTAL_FLUORO_TIME: Code = ("113730", "DCM")
TOTAL_ACQUISITION_TIME: Code = ("113855", "DCM")
TOTAL_RADIOGRAPHIC_FRAMES: Code = ("113731", "DCM")

IRRADIATION_EVENT_XRAY_DATA: Code = ("113706", "DCM")
IRRADIATION_EVENT_UID: Code = ("113769", "DCM")
DATETIME_STARTED: Code = ("111526", "DCM")
IRRADIATION_EVENT_TYPE: Code = ("113721", "DCM")
DOSE_AREA_PRODUCT: Code = ("122130", "DCM")
DOSE_RP: Code = ("113738", "DCM")
IRRADIATION_DURATION: Code = ("113742", "DCM")
KVP: Code = ("113733", "DCM")
XRAY_TUBE_CURRENT: Code = ("113734", "DCM")
AVERAGE_XRAY_TUBE_CURRENT: Code = ("113767", "DCM")
PULSE_WIDTH: Code = ("113793", "DCM")
NUMBER_OF_PULSES: Code = ("113768", "DCM")
PULSE_RATE: Code = ("113791", "DCM")

# CID 10002 Irradiation Event Type
FLUOROSCOPY: Code = ("44491008", "SCT")
FLUOROSCOPY_SRT: Code = ("P5-06000", "SRT")
STATIONARY_ACQUISITION: Code = ("113611", "DCM")
STEPPING_ACQUISITION: Code = ("113612", "DCM")
ROTATIONAL_ACQUISITION: Code = ("113613", "DCM")

# CT (TID 10012 accumulated, TID 10013 per event)
CT_ACCUMULATED_DOSE: Code = ("113811", "DCM")
TOTAL_NUMBER_OF_IRRADIATION_EVENTS: Code = ("113812", "DCM")
CT_DLP_TOTAL: Code = ("113813", "DCM")
CT_ACQUISITION: Code = ("113819", "DCM")
CT_ACQUISITION_TYPE: Code = ("113820", "DCM")
TARGET_REGION: Code = ("123014", "DCM")
ACQUISITION_PROTOCOL: Code = ("125203", "DCM")
CT_DOSE: Code = ("113829", "DCM")
MEAN_CTDIVOL: Code = ("113830", "DCM")
CTDIW_PHANTOM_TYPE: Code = ("113835", "DCM")
DLP: Code = ("113838", "DCM")
IEC_HEAD_PHANTOM: Code = ("113690", "DCM")
IEC_BODY_PHANTOM: Code = ("113691", "DCM")

# --- Performed Imaging Agent Administration SR (Supplement 164, TID 11020 family) ---------------
PERFORMED_IMAGING_AGENT_ADMINISTRATION: Code = ("130227", "DCM")
IMAGING_AGENT_INFORMATION: Code = ("130183", "DCM")
IMAGING_AGENT_IDENTIFIER: Code = ("130254", "DCM")
IMAGING_AGENT_COMPONENT: Code = ("130238", "DCM")
REFERENCED_IMAGING_AGENT_IDENTIFIER: Code = ("130255", "DCM")
ADMINISTRATION_STEPS: Code = ("130192", "DCM")
ADMINISTRATION_STEP: Code = ("130195", "DCM")
ADMINISTRATION_PHASE: Code = ("130202", "DCM")
PHASE_IDENTIFIER: Code = ("130203", "DCM")
PHASE_TYPE: Code = ("130204", "DCM")
PERFORMED_PHASE_UID: Code = ("130261", "DCM")
ADMINISTRATION_ACTIVITY: Code = ("130237", "DCM")
TOTAL_PHASE_VOLUME_ADMINISTERED: Code = ("130240", "DCM")
PEAK_FLOW_RATE_IN_PHASE_ACTIVITY: Code = ("130244", "DCM")
PEAK_PRESSURE_IN_PHASE_ACTIVITY: Code = ("130245", "DCM")
PRESSURE_LIMIT: Code = ("130193", "DCM")
STARTING_FLOW_RATE: Code = ("130208", "DCM")
ENDING_FLOW_RATE: Code = ("130209", "DCM")
COMPONENT_VOLUME: Code = ("130239", "DCM")
VOLUME: Code = ("118565006", "SCT")
DURATION: Code = ("103335007", "SCT")
COMPLETION_STATUS: Code = ("130211", "DCM")
INJECTOR_EVENTS: Code = ("130233", "DCM")
INJECTOR_EVENT_TYPE: Code = ("130234", "DCM")
INJECTOR_EVENT_DATETIME: Code = ("130235", "DCM")
REFERENCED_PHASE_UID: Code = ("130262", "DCM")
ADMINISTRATION_DISCONTINUED: Code = ("130220", "DCM")

# CID 62 Imaging Agent Administration Phase Type
PHASE_TYPES: dict[Code, str] = {
    ("130168", "DCM"): "programmed_administration",
    ("130169", "DCM"): "programmed_delay",
    ("130171", "DCM"): "manual_inject",
    ("130263", "DCM"): "programmed_wait",
}

# CID 71 Imaging Agent Administration Injector Event Type: the ones this daemon names. Any other
# code is kept by its meaning as sent; `CRITICAL_INJECTOR_EVENTS` are turned into critical alerts.
INJECTOR_EVENT_KINDS: dict[Code, str] = {
    ("130150", "DCM"): "pressure_above_warning_limit",
    ("130151", "DCM"): "pressure_above_adjustment_limit",
    ("130152", "DCM"): "flow_rate_above_warning_limit",
    ("130153", "DCM"): "flow_rate_above_adjustment_limit",
    ("130154", "DCM"): "terminated_by_operator",
    ("130155", "DCM"): "fixed_duration_pause_ended",
    ("130156", "DCM"): "terminated_pressure_limit",
    ("130157", "DCM"): "terminated_flow_rate_limit",
    ("130158", "DCM"): "terminated_excessive_pause",
    ("130159", "DCM"): "terminated_communication_loss",
    ("130160", "DCM"): "terminated_injector_failure",
    ("130161", "DCM"): "keep_vein_open_started",
    ("130162", "DCM"): "keep_vein_open_ended",
    ("130163", "DCM"): "syringe_attached",
    ("130164", "DCM"): "syringe_detached",
    ("130175", "DCM"): "air_detected",
    ("130176", "DCM"): "terminated_air_detected",
    ("130177", "DCM"): "terminated_by_scanner",
    ("130178", "DCM"): "terminated_critical_battery",
    ("130179", "DCM"): "terminated_consumable_removal",
    ("130266", "DCM"): "programmed_hold_started",
    ("130267", "DCM"): "manual_hold_started",
    ("130268", "DCM"): "manual_resume_from_hold",
    ("130269", "DCM"): "terminated_hold_timeout",
}
CRITICAL_INJECTOR_EVENTS = frozenset(
    {
        "pressure_above_adjustment_limit",
        "terminated_pressure_limit",
        "air_detected",
        "terminated_air_detected",
    }
)
WARNING_INJECTOR_EVENTS = frozenset(
    {
        "pressure_above_warning_limit",
        "flow_rate_above_warning_limit",
        "flow_rate_above_adjustment_limit",
        "terminated_flow_rate_limit",
        "terminated_injector_failure",
        "terminated_communication_loss",
    }
)

# Coding schemes vendors use for the same concept.
SCHEME_ALIASES: dict[str, str] = {"SNM3": "SRT", "99SDM": "SRT", "SNOMED": "SCT", "SNOMED-CT": "SCT", "DCM ": "DCM"}
EQUIVALENT_CODES: dict[Code, Code] = {FLUOROSCOPY_SRT: FLUOROSCOPY}
