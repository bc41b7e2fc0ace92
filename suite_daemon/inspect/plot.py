"""The timeline plot of one procedure: cumulative dose, injections, images, alerts, on one UTC time axis.

Built on `matplotlib.figure.Figure` directly (no pyplot): no global state, no display, rendered by the
Agg (PNG) and PDF backends on `savefig`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import matplotlib.dates as mdates
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from suite_daemon.inspect.timeline import Timeline

LEVEL_COLOURS = {"notice": "tab:blue", "warning": "tab:orange", "critical": "tab:red"}
DOSE_AXES = [
    # quantity, axis label, factor from contract units to the plotted unit
    ("dap_gym2", "cumulative DAP (Gy·cm²)", 1e4),
    ("air_kerma_gy", "air kerma at RP (mGy)", 1e3),
    ("dlp_mgycm", "cumulative DLP (mGy·cm)", 1.0),
]


def timeline_figure(timeline: Timeline, title: str, *, figsize: tuple[float, float] = (11.0, 7.5)) -> Figure:
    fig = Figure(figsize=figsize, layout="constrained")
    dose_ax, injection_ax, lane_ax = fig.subplots(3, 1, sharex=True, height_ratios=[3.0, 2.0, 1.3])
    subtitle = "times in UTC (daemon clock)"
    if timeline.clock_offset_s is not None:
        subtitle += f"; modality clock offset {timeline.clock_offset_s:+.1f} s (modality minus daemon)"
    fig.suptitle(f"{title}\n{subtitle}", fontsize=11)

    _dose_panel(dose_ax, timeline)
    _injection_panel(injection_ax, timeline)
    _event_lane(lane_ax, timeline)

    for ax in (dose_ax, injection_ax, lane_ax):
        for when, colour in ((timeline.opened, "tab:green"), (timeline.closed, "black")):
            if when is not None:
                ax.axvline(when, color=colour, linewidth=1.0, alpha=0.7)
        for alert in timeline.alerts:
            colour = LEVEL_COLOURS.get(alert.level, "tab:orange")
            ax.axvline(alert.time, color=colour, linewidth=0.8, linestyle="--", alpha=0.6)
    for when, colour, label in ((timeline.opened, "tab:green", "opened"), (timeline.closed, "black", "closed")):
        if when is not None:
            dose_ax.annotate(
                label,
                (mdates.date2num(when), 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(0, 2),
                textcoords="offset points",
                fontsize=8,
                color=colour,
                ha="center",
                va="bottom",
            )

    span = timeline.span
    if span is not None:
        start, end = span
        margin = max((end - start) * 0.03, timedelta(seconds=5))
        lane_ax.set_xlim(start - margin, end + margin)
    locator = mdates.AutoDateLocator(tz=UTC, minticks=4, maxticks=10)
    lane_ax.xaxis.set_major_locator(locator)
    lane_ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz=UTC))
    lane_ax.set_xlabel("time (UTC)")
    return fig


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="grey", fontsize=9)
    ax.set_yticks([])


def _dose_panel(ax: Axes, timeline: Timeline) -> None:
    present = [axis for axis in DOSE_AXES if timeline.dose.get(axis[0])]
    if not present:
        _empty(ax, "no dose readings")
        ax.set_ylabel("dose")
        return
    axes = [ax, ax.twinx()] if len(present) > 1 else [ax]
    handles = []
    styles = ["-", "--"]
    for target, (quantity, label, factor), style in zip(axes, present[:2], styles, strict=False):
        for index, (source, points) in enumerate(sorted(timeline.dose[quantity].items())):
            times = [t for t, _ in points]
            values = [v * factor for _, v in points]
            few = len(points) <= 3  # a report or two: a step line alone would be invisible
            (line,) = target.step(
                times,  # type: ignore[arg-type]  # matplotlib takes datetimes; its stubs say otherwise
                values,
                where="post",
                linestyle=style,
                marker="D" if few else ".",
                markersize=6 if few else 3,
                color=f"C{index + (0 if target is ax else 3)}",
                label=f"{label.split(' (')[0]} · {source}",
            )
            handles.append(line)
        target.set_ylabel(label)
        target.set_ylim(bottom=0)
    ax.legend(handles=handles, loc="upper left", fontsize=8, framealpha=0.8)
    ax.grid(True, alpha=0.3)


def _injection_panel(ax: Axes, timeline: Timeline) -> None:
    """Phases as bars, one lane per source (injector report, each pump), so that sources running at the same
    time do not hide each other; injection pressure on the right-hand axis."""
    if not timeline.pressure and not timeline.phases:
        _empty(ax, "no injection data")
        ax.set_ylabel("injection")
        return
    sources = sorted({phase.source for phase in timeline.phases})
    lane = {source: index for index, source in enumerate(sources)}
    for index, phase in enumerate(sorted(timeline.phases, key=lambda p: p.start)):
        y = lane[phase.source]
        colour = f"C{index % 10}"
        start, end = mdates.date2num(phase.start), mdates.date2num(phase.end)
        ax.broken_barh([(start, max(end - start, 1e-6))], (y - 0.35, 0.7), facecolors=colour, alpha=0.35,
                       edgecolors=colour, linewidth=0.8)  # fmt: skip
        parts = [phase.label]
        if phase.volume_ml is not None:
            parts.append(f"{phase.volume_ml:.3g} ml")
        if phase.peak_pressure_kpa is not None:
            parts.append(f"{phase.peak_pressure_kpa:.3g} kPa")
        ax.annotate(
            " ".join(parts),
            (start, y + (0.18 if index % 2 == 0 else -0.18)),
            xytext=(2, 0),
            textcoords="offset points",
            fontsize=6.5,
            va="center",
            clip_on=True,
        )
    ax.set_yticks(range(len(sources)), sources, fontsize=8)
    ax.set_ylim(-0.6, max(len(sources), 1) - 0.4)
    ax.set_ylabel("injection phases")
    ax.grid(True, axis="x", alpha=0.3)
    if timeline.pressure:
        pressure_ax = ax.twinx()
        for index, (source, points) in enumerate(sorted(timeline.pressure.items())):
            pressure_ax.plot(
                [t for t, _ in points],  # type: ignore[arg-type]  # matplotlib takes datetimes; its stubs say otherwise
                [v for _, v in points],
                color=f"C{index + 5}",
                linewidth=1.2,
                label=f"pressure · {source}",
            )
        pressure_ax.set_ylabel("pressure (kPa)")
        pressure_ax.set_ylim(bottom=0)
        pressure_ax.legend(loc="upper right", fontsize=8, framealpha=0.8)


def _event_lane(ax: Axes, timeline: Timeline) -> None:
    rows = ["devices", "alerts", f"objects received ({len(timeline.images)})"]
    if timeline.images:
        ax.vlines(timeline.images, 1.7, 2.3, color="tab:purple", linewidth=0.8)  # type: ignore[arg-type]  # matplotlib takes datetimes; its stubs say otherwise
    for index, alert in enumerate(timeline.alerts):
        colour = LEVEL_COLOURS.get(alert.level, "tab:orange")
        ax.plot([alert.time], [1], marker="v", color=colour, markersize=8, linestyle="none")  # type: ignore[arg-type]  # matplotlib takes datetimes; its stubs say otherwise
        ax.annotate(
            alert.label[:40],
            (mdates.date2num(alert.time), 1),
            xytext=(4, 3 + 7 * (index % 4)),  # alerts close together are stacked, not printed over each other
            textcoords="offset points",
            fontsize=7,
            color=colour,
        )
    for index, (when, label) in enumerate(_grouped_devices(timeline)):
        ax.plot([when], [0], marker="o", color="grey", markersize=4, linestyle="none")  # type: ignore[arg-type]  # matplotlib takes datetimes; its stubs say otherwise
        ax.annotate(label[:60], (mdates.date2num(when), 0), xytext=(4, 3 if index % 2 == 0 else -10),
                    textcoords="offset points", fontsize=6, color="dimgrey")  # fmt: skip
    ax.set_yticks([0, 1, 2], rows, fontsize=8)
    ax.set_ylim(-0.6, 2.6)
    ax.grid(True, axis="x", alpha=0.3)


def _grouped_devices(timeline: Timeline) -> list[tuple[datetime, str]]:
    """Device status changes, those of one state within a few seconds of each other as one label
    (`connected: dap1, pump1`): devices usually connect, fail and come back together."""
    groups: list[tuple[datetime, str, list[str]]] = []
    for marker in sorted(timeline.devices, key=lambda m: m.time):
        device, _, state = marker.label.rpartition(": ")
        if groups and groups[-1][1] == state and marker.time - groups[-1][0] <= timedelta(seconds=3):
            groups[-1][2].append(device or "?")
        else:
            groups.append((marker.time, state, [device or "?"]))
    return [(when, f"{state}: {', '.join(devices)}") for when, state, devices in groups]
