"""The operator dashboard: a single page (vanilla JS/SVG/CSS, no CDN) fed by Server-Sent Events.

``dashboard_router(bus, site)`` serves the page, its assets, the SSE stream of the live
:class:`~central.events.EventBus` and the hall's floor plan; the main API includes it,
or ``mount(app, state)`` (the central service's plug-in point) adds it to the service's app.
"""

from central.dashboard.routes import DashboardRecorder, dashboard_router, mount, site_json

__all__ = ["DashboardRecorder", "dashboard_router", "mount", "site_json"]
