"""Agent releases on the server: stored wheels and bundles, signed manifests, downloads.

``artifacts`` checks an upload, ``store`` keeps it (file, row, audit), ``api`` serves
``/api/v1/releases``, ``outlet_auth`` lets agents download with their certificate.
Campaigns and the agent's installer build on these (docs/updates.md).
"""
