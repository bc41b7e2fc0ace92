"""The per-procedure report: json (data), html (self-contained, plot embedded) and pdf (summary + timeline).

Every format carries the same content: the summary, dose by source, injection phases, alerts, the
audit journal's verification result and the timeline plot (see `plot.py`).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import tempfile
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from suite_daemon import __version__
from suite_daemon.audit.verify import VerifyResult, verify_file
from suite_daemon.events import rfc3339, utc_now
from suite_daemon.inspect.plot import timeline_figure
from suite_daemon.inspect.store import Procedure, StateStore, read_journal
from suite_daemon.inspect.timeline import Timeline, build_timeline, values_of

Format = Literal["html", "pdf", "json"]
FORMATS: tuple[Format, ...] = ("html", "pdf", "json")
NOT_MEASURED = "—"


@dataclass
class ReportData:
    procedure: Procedure
    records: list[dict[str, Any]]
    timeline: Timeline
    audit: VerifyResult
    generated_at: datetime
    problems: list[str] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, Any]:
        return self.procedure.summary

    def alerts(self) -> list[dict[str, Any]]:
        """Alert records from the journal; the summary's list when the journal holds none."""
        found = []
        for record in self.records:
            if record.get("event") == "alert":
                values = values_of(record)
                found.append(
                    {
                        "time": record.get("time"),
                        "level": values.get("level"),
                        "kind": values.get("kind"),
                        "message": values.get("message"),
                        "data": values.get("data"),
                    }
                )
        if found:
            return found
        alerts = self.summary.get("alerts")
        return [a if isinstance(a, dict) else {"message": str(a)} for a in alerts] if isinstance(alerts, list) else []


def collect(store: StateStore, procedure_id: str) -> ReportData | None:
    """Everything a report shows, or None for an unknown procedure."""
    procedure = store.procedure(procedure_id)
    if procedure is None:
        return None
    path = store.journal_path(procedure_id)
    records, problems = read_journal(path)
    audit = verify_file(path, expect_closed=procedure.closed)
    timeline = build_timeline(records, procedure.summary)
    return ReportData(procedure, records, timeline, audit, utc_now(), [*procedure.problems, *problems])


# -- json --------------------------------------------------------------------------------------------


def report_json(data: ReportData) -> dict[str, Any]:
    return {
        "schema": 1,
        "report": "procedure",
        "generated_at": rfc3339(data.generated_at),
        "generator": f"suite-daemon {__version__}",
        "procedure_id": data.procedure.procedure_id,
        "summary": data.summary,
        "dose_by_source": data.timeline.dose_by_source(),
        "injection_phases": [phase.to_json() for phase in data.timeline.phases],
        "alerts": data.alerts(),
        "audit": data.audit.to_json(),
        "clock_offset_s": data.timeline.clock_offset_s,
        "timeline": data.timeline.to_json(),
        "problems": data.problems,
    }


# -- the content shared by html and pdf --------------------------------------------------------------------


@dataclass
class Section:
    title: str
    rows: list[list[str]]
    columns: list[str] | None = None
    """None: a two-column key/value list."""
    note: str | None = None


def _num(value: Any, unit: str = "", digits: int = 4) -> str:
    if value is None:
        return NOT_MEASURED
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    text = f"{value:.{digits}g}" if isinstance(value, float) else str(value)
    return f"{text} {unit}".rstrip()


def _time(value: Any) -> str:
    if isinstance(value, datetime):
        value = rfc3339(value)
    if not isinstance(value, str) or not value:
        return NOT_MEASURED
    return value.replace("T", " ")


def _clock(value: Any) -> str:
    """Only the time of day: for columns of times within one procedure."""
    text = _time(value)
    return text.split(" ", 1)[1] if " " in text else text


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return NOT_MEASURED
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _bytes(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return NOT_MEASURED
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


KNOWN_DOSE_KEYS = {
    "totals_from",
    "dap_total_gym2",
    "air_kerma_total_gy",
    "fluoro_time_s",
    "ctdivol_max_mgy",
    "dlp_total_mgycm",
    "irradiation_events",
    "sources",
}


def sections(data: ReportData) -> list[Section]:
    summary = data.summary
    images = _mapping(summary.get("images"))
    dose = _mapping(summary.get("dose"))
    injection = _mapping(summary.get("injection"))
    opened, closed = data.timeline.opened, data.timeline.closed
    duration = (closed - opened).total_seconds() if opened and closed else None
    devices = summary.get("devices")
    device_text = ", ".join(_device(d) for d in (devices if isinstance(devices, list) else []))
    procedure = Section(
        "Procedure",
        [
            ["Procedure id", data.procedure.procedure_id],
            ["State", str(summary.get("state"))],
            ["Opened", _time(summary.get("opened_at"))],
            ["Closed", _time(summary.get("closed_at"))],
            ["Duration", _duration(duration)],
            ["Modality", str(summary.get("modality") or NOT_MEASURED)],
            ["Study instance UID", str(summary.get("study_instance_uid") or NOT_MEASURED)],
            ["Accession number", str(summary.get("accession_number") or NOT_MEASURED)],
            [
                "Images",
                f"{_num(images.get('count'))} in {_num(images.get('series'))} series, {_bytes(images.get('bytes'))}",
            ],
            ["Devices", device_text or NOT_MEASURED],
            ["Modality clock offset", _num(data.timeline.clock_offset_s, "s (modality minus daemon)", 3)],
        ],
    )
    dap = dose.get("dap_total_gym2")
    dap_cm2 = f" ({_num(dap * 1e4, 'Gy·cm²')})" if isinstance(dap, int | float) else ""
    origin = _mapping(dose.get("totals_from"))

    def total(key: str, text: str) -> str:
        return f"{text}, from {origin[key]}" if key in origin and text != NOT_MEASURED else text

    dose_rows = [
        ["Dose-area product", total("dap_total_gym2", _num(dap, "Gy·m²") + dap_cm2)],
        ["Air kerma at reference point", total("air_kerma_total_gy", _num(dose.get("air_kerma_total_gy"), "Gy"))],
        ["Fluoroscopy time", total("fluoro_time_s", _num(dose.get("fluoro_time_s"), "s"))],
        ["CTDIvol (max)", total("ctdivol_max_mgy", _num(dose.get("ctdivol_max_mgy"), "mGy"))],
        ["DLP (total)", total("dlp_total_mgycm", _num(dose.get("dlp_total_mgycm"), "mGy·cm"))],
        ["Irradiation events", _num(dose.get("irradiation_events"))],
    ]
    dose_rows += [[key, _num(value)] for key, value in dose.items() if key not in KNOWN_DOSE_KEYS]
    declared = dose.get("sources")
    listed = [d for d in declared if isinstance(d, Mapping)] if isinstance(declared, list) else []
    names = [str(d) for d in declared if not isinstance(d, Mapping)] if isinstance(declared, list) else []
    dose_section = Section("Dose (procedure totals)", dose_rows, note="Sources: " + ", ".join(names) if names else None)
    summary_sources = Section(
        "Dose by source (as the daemon totals them)",
        [_source_row(d) for d in listed]
        + [_source_row(p, f"{d.get('source')} plane {n}") for d in listed for n, p in _planes(d)],
        ["Source", "DAP (Gy·cm²)", "Air kerma (mGy)", "Fluoro (s)", "CTDIvol (mGy)", "DLP (mGy·cm)", "Events"],
    )
    by_source = Section(
        "Dose readings by source (journal; a meter counted from its first reading in the procedure)",
        [
            [
                source,
                _num(row["dap_gym2"] * 1e4) if "dap_gym2" in row else NOT_MEASURED,
                _num(row["air_kerma_gy"] * 1e3) if "air_kerma_gy" in row else NOT_MEASURED,
                _num(row.get("dlp_mgycm")),
                str(row["readings"]),
                _clock(row["first"]),
                _clock(row["last"]),
            ]
            for source, row in data.timeline.dose_by_source().items()
        ],
        ["Source", "DAP (Gy·cm²)", "Air kerma (mGy)", "DLP (mGy·cm)", "Readings", "First (UTC)", "Last (UTC)"],
    )
    injection_section = Section(
        "Injection (summary)",
        [
            ["Volume (total)", _num(injection.get("volume_total_ml"), "ml")],
            ["Peak flow", _num(injection.get("peak_flow_mlps"), "ml/s")],
            ["Peak pressure", _num(injection.get("peak_pressure_kpa"), "kPa")],
            ["Phases", _num(injection.get("phases"))],
        ],
    )
    phases = Section(
        "Injection phases",
        [
            [
                p.source,
                p.label,
                _time(p.start),
                _duration((p.end - p.start).total_seconds()),
                _num(p.volume_ml),
                _num(p.flow_mlps),
                _num(p.peak_pressure_kpa),
                ", ".join(p.events) or "",
            ]
            for p in sorted(data.timeline.phases, key=lambda phase: phase.start)
        ],
        ["Source", "Phase", "Start", "Duration", "Volume (ml)", "Flow (ml/s)", "Peak (kPa)", "Events"],
    )
    alerts = Section(
        "Alerts",
        [
            [_time(a.get("time")), str(a.get("level") or ""), str(a.get("kind") or ""), str(a.get("message") or "")]
            for a in data.alerts()
        ],
        ["Time", "Level", "Kind", "Message"],
    )
    audit = data.audit
    audit_section = Section(
        "Audit journal",
        [
            ["File", str(audit.path)],
            ["Result", "intact" if audit.ok else "FAILED"],
            ["Records verified", str(audit.records)],
        ]
        + ([] if audit.ok else [["First bad record", f"line {audit.first_bad_line}"], ["Reason", audit.reason or ""]]),
    )
    dose_sections = [dose_section, summary_sources, by_source] if listed else [dose_section, by_source]
    return [procedure, *dose_sections, injection_section, phases, alerts, audit_section]


def _device(entry: Any) -> str:
    """A summary `devices` entry ({device, driver, kind, samples, state}) as `dap1 (ptw-diamentor, 69 samples,
    connected)`."""
    if not isinstance(entry, Mapping):
        return str(entry)
    name = entry.get("device") or entry.get("name") or "?"
    details = [str(entry["driver"])] if entry.get("driver") else []
    if isinstance(entry.get("samples"), int) and not isinstance(entry.get("samples"), bool):
        details.append(f"{entry['samples']} samples")
    if entry.get("state"):
        details.append(str(entry["state"]))
    return f"{name} ({', '.join(details)})" if details else str(name)


def _scaled(value: Any, factor: float) -> str:
    return _num(value * factor) if isinstance(value, int | float) and not isinstance(value, bool) else NOT_MEASURED


def _source_row(values: Mapping[str, Any], name: str | None = None) -> list[str]:
    if name is None:
        name = "/".join(str(values[k]) for k in ("source", "device") if values.get(k)) or "?"
    return [
        name,
        _scaled(values.get("dap_total_gym2"), 1e4),
        _scaled(values.get("air_kerma_total_gy"), 1e3),
        _num(values.get("fluoro_time_s")),
        _num(values.get("ctdivol_max_mgy")),
        _num(values.get("dlp_total_mgycm")),
        _num(values.get("irradiation_events")),
    ]


def _planes(source: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    planes = source.get("planes")
    if not isinstance(planes, Mapping) or len(planes) < 2:  # one plane adds nothing to its source's row
        return []
    return [(str(name), values) for name, values in sorted(planes.items()) if isinstance(values, Mapping)]


def _figure(data: ReportData, **kwargs: Any) -> Figure:
    return timeline_figure(data.timeline, f"Procedure {data.procedure.procedure_id}", **kwargs)


# -- html --------------------------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 72em;
       color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.6em;
     border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.meta { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { text-align: left; padding: 0.25em 0.9em 0.25em 0; vertical-align: top; }
table.grid th { border-bottom: 1px solid #bbb; } table.grid td { border-bottom: 1px solid #eee; }
table.kv th { font-weight: normal; color: #555; min-width: 14em; }
.badge { display: inline-block; padding: 0.15em 0.6em; border-radius: 0.3em; color: white; font-weight: 600; }
.ok { background: #2e7d32; } .bad { background: #c62828; }
.empty { color: #888; font-style: italic; } .note { color: #555; font-size: 0.85em; }
img.plot { width: 100%; max-width: 72em; border: 1px solid #eee; }
"""


def _html_section(section: Section) -> str:
    e = html.escape
    parts = [f"<h2>{e(section.title)}</h2>"]
    if not section.rows:
        parts.append('<p class="empty">none recorded</p>')
    elif section.columns is None:
        rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in section.rows)
        parts.append(f'<table class="kv">{rows}</table>')
    else:
        head = "".join(f"<th>{e(c)}</th>" for c in section.columns)
        body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in section.rows)
        parts.append(f'<table class="grid"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
    if section.note:
        parts.append(f'<p class="note">{e(section.note)}</p>')
    return "\n".join(parts)


def render_html(data: ReportData) -> str:
    e = html.escape
    buffer = io.BytesIO()
    _figure(data).savefig(buffer, format="png", dpi=110)
    plot = base64.b64encode(buffer.getvalue()).decode("ascii")
    audit = data.audit
    badge = (
        '<span class="badge ok">audit chain intact</span>'
        if audit.ok
        else f'<span class="badge bad">audit chain FAILED at line {audit.first_bad_line}</span>'
    )
    problems = "".join(f"<li>{e(p)}</li>" for p in data.problems)
    body = [
        f"<h1>Procedure {e(data.procedure.procedure_id)}</h1>",
        f'<p class="meta">Generated {e(_time(data.generated_at))} by suite-daemon {e(__version__)} · {badge}</p>',
        f'<ul class="note">{problems}</ul>' if problems else "",
        "<h2>Timeline</h2>",
        f'<img class="plot" alt="timeline of procedure {e(data.procedure.procedure_id)}" '
        f'src="data:image/png;base64,{plot}">',
        *(_html_section(s) for s in sections(data)),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Procedure {e(data.procedure.procedure_id)}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


# -- pdf ----------------------------------------------------------------------------------------------------

A4_PORTRAIT = (8.27, 11.69)
A4_LANDSCAPE = (11.69, 8.27)
PAGE_LINES = 74
LINE_WIDTH = 112


def _text_lines(data: ReportData) -> list[tuple[str, str]]:
    """(style, text) lines of the summary pages: style is 'title', 'head' or 'body'."""
    audit = "intact" if data.audit.ok else f"FAILED at line {data.audit.first_bad_line}"
    lines = [
        ("title", f"Procedure {data.procedure.procedure_id}"),
        ("body", f"Generated {_time(data.generated_at)} by suite-daemon {__version__}; audit chain {audit}"),
    ]
    lines += [("body", f"! {p}"[:LINE_WIDTH]) for p in data.problems]
    for section in sections(data):
        lines += [("body", ""), ("head", section.title)]
        if not section.rows:
            lines.append(("body", "  none recorded"))
        elif section.columns is None:
            width = max(len(k) for k, _ in section.rows) + 2
            for k, v in section.rows:
                wrapped = textwrap.wrap(v, LINE_WIDTH - width - 2) or [""]
                lines += [("body", f"  {k if n == 0 else '':<{width}}{part}") for n, part in enumerate(wrapped)]
        else:
            table = [section.columns, *section.rows]
            widths = [min(max(len(row[i]) for row in table), 36) for i in range(len(section.columns))]
            for number, row in enumerate(table):
                # The last column (a message, the events) is not cut: it wraps under itself.
                text = "  " + "  ".join(cell[: widths[i]].ljust(widths[i]) for i, cell in enumerate(row[:-1]))
                indent = len(text) + (2 if len(row) > 1 else 0)
                parts = textwrap.wrap(row[-1], max(LINE_WIDTH - indent, 20)) or [""]
                style = "head" if number == 0 else "body"
                lines.append((style, (text + ("  " if len(row) > 1 else "") + parts[0]).rstrip()[:LINE_WIDTH]))
                lines += [(style, (" " * indent + part)[:LINE_WIDTH]) for part in parts[1:]]
        if section.note:
            lines.append(("body", f"  {section.note}"[:LINE_WIDTH]))
    return lines


def _text_page(lines: list[tuple[str, str]], page: int, pages: int) -> Figure:
    fig = Figure(figsize=A4_PORTRAIT)
    y = 0.95
    for style, text in lines:
        if style == "title":
            fig.text(0.07, y, text, fontsize=15, weight="bold", va="top")
            y -= 0.03
        else:
            fig.text(
                0.07,
                y,
                text,
                fontsize=7.5,
                family="monospace",
                va="top",
                weight="bold" if style == "head" else "normal",
            )
            y -= 0.0118
    fig.text(0.93, 0.03, f"page {page} of {pages}", fontsize=7, ha="right", color="grey")
    return fig


def render_pdf(data: ReportData, out: Path) -> None:
    lines = _text_lines(data)
    chunks = [lines[i : i + PAGE_LINES] for i in range(0, len(lines), PAGE_LINES)]
    pages = len(chunks) + 1
    with PdfPages(out) as pdf:
        info = pdf.infodict()
        info["Title"] = f"Procedure {data.procedure.procedure_id}"
        info["Creator"] = f"suite-daemon {__version__}"
        for number, chunk in enumerate(chunks, start=1):
            pdf.savefig(_text_page(chunk, number, pages))
        figure = _figure(data, figsize=A4_LANDSCAPE)
        figure.text(0.99, 0.005, f"page {pages} of {pages}", fontsize=7, ha="right", color="grey")
        pdf.savefig(figure)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# -- writing -------------------------------------------------------------------------------------------------


def write_report(data: ReportData, fmt: Format, out: Path) -> None:
    """Write atomically: a half-written report never appears under the requested name."""
    out = Path(out)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent or Path("."))
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if fmt == "json":
            tmp.write_text(json.dumps(report_json(data), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        elif fmt == "html":
            tmp.write_text(render_html(data), encoding="utf-8")
        elif fmt == "pdf":
            render_pdf(data, tmp)
        else:
            raise ValueError(f"unknown report format {fmt!r} (use one of {', '.join(FORMATS)})")
        tmp.chmod(0o666 & ~_umask())
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
