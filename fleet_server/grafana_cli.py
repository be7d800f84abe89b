"""``fleet-server grafana sync``: provision the datasource and dashboards in a Grafana."""

from __future__ import annotations

import sys
from pathlib import Path

import click


def register(main: click.Group) -> None:
    """Add the ``grafana`` group to ``main``."""

    @main.group()
    def grafana() -> None:
        """Grafana dashboards (dashboards/ in the repository)."""

    @grafana.command("sync")
    @click.option("--url", required=True, help="Grafana base URL, e.g. http://grafana:3000.")
    @click.option("--token", envvar="GOVEDGE_GRAFANA_TOKEN", required=True,
                  help="Service-account token (or GOVEDGE_GRAFANA_TOKEN).")  # fmt: skip
    @click.option("--datasource-url", required=True,
                  help="PromQL endpoint for Grafana (VictoriaMetrics, Prometheus).")  # fmt: skip
    @click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
                  default=None, help="Dashboards directory (default: shipped).")  # fmt: skip
    def grafana_sync(url: str, token: str, datasource_url: str, directory: Path | None) -> None:
        """Create or update the datasource and dashboards; safe to run again."""
        from fleet_server.grafana import (
            GrafanaSyncError,
            load_dashboards,
            sync,
        )
        from fleet_server.grafana.sync import DASHBOARD_DIR

        try:
            boards = load_dashboards(directory or DASHBOARD_DIR)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        try:
            report = sync(url, token, datasource_url=datasource_url, dashboards=boards)
        except GrafanaSyncError as exc:
            click.echo(f"fleet-server: grafana sync failed at {exc}", err=True)
            sys.exit(2)
        click.echo(f"datasource govedge-metrics: {report.datasource}")
        for uid, outcome in report.dashboards.items():
            click.echo(f"dashboard {uid}: {outcome}")
