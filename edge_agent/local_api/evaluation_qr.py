"""The 好差评 QR code of a window without an evaluation pad, for the counter console.

Provinces rate windows without a pad by a QR code that opens their 好差评 page with the
case number (the ``evaluation_qr_url`` template, the same one printed on tickets). The
console shows it on the counter screen, facing the citizen. The code is drawn here as
SVG with segno (pure Python): the counter PC needs no internet and the page no QR
encoder of its own.

Which windows have a pad: a window declared in ``[[queue_windows]]`` has its ``pad``,
or a pad bound to it; an undeclared window (an outlet without window config) has the
pad ``evaluating.pad_for`` would use.
"""

from __future__ import annotations

import io
from urllib.parse import quote

from edge_agent.devices.evaluation_pad import RatingPad
from edge_agent.local_api.context import LocalApiContext
from edge_agent.local_api.errors import ApiError
from edge_agent.local_api.evaluating import pad_for

__all__ = ["evaluation_link", "qr_svg", "window_pad"]


def evaluation_link(local: LocalApiContext, case_number: str) -> str | None:
    """The province's 好差评 page of ``case_number`` from the template; None without one.

    The template of the region's 好差评 profile (the fleet config's ``evaluation.qr_url``)
    wins over the agent's local ``evaluation_qr_url``: the page is the province's.
    """
    live = local.runtime.live
    profile = None if live is None or live.evaluation is None else live.evaluation.qr_url
    template = profile or local.options.evaluation_qr_url
    if not template:
        return None
    return template.format(
        case_number=quote(case_number, safe=""),
        outlet=quote(local.runtime.outlet_id, safe=""),
    )


def window_pad(local: LocalApiContext, window: str) -> str | None:
    """The device id of the window's evaluation pad, or None if it has none."""
    declared = local.runtime.windows.get(window)
    if declared is not None:
        if declared.pad is not None:
            return declared.pad
        bound = [p for p in local.ready_drivers(RatingPad) if p.bound_window == window]
        return bound[0].device_id if bound else None
    try:
        return pad_for(local, window).device_id
    except ApiError:
        return None


def qr_svg(url: str) -> str:
    """``url`` as a standalone SVG QR code (error correction M, as on the ticket).

    Standalone (with the SVG namespace) so a page can show it as an ``<img>`` from a
    ``data:`` URL, which runs no script.
    """
    # segno with its SVG writer (xml.sax) is ~0.8 MiB; only a window's QR page uses it.
    import segno

    buffer = io.BytesIO()
    segno.make_qr(url, error="m").save(
        buffer, kind="svg", scale=6, border=4, xmldecl=False, svgns=True, nl=False
    )
    return buffer.getvalue().decode("utf-8")
