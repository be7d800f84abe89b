"""The operators' web UI: server-rendered pages, bundled vanilla JS and CSS, no CDN.

Pages: fleet overview, the outlet map (一张图, drawn on SVG from coordinates; no tiles),
outlet page (with its config), 好差评, config (scopes, editor, history, drift). zh-CN by
default, English by ``?lang=en`` (kept in a cookie). Live updates arrive over
server-sent events (``/api/v1/stream``).
"""
