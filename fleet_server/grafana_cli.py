"""``fleet-server grafana sync``: provision the datasource and dashboards in a Grafana,
and with region scopes one folder per scope (docs/fleet-health.md, "Grafana")."""

from __future__ import annotations

import sys
from pathlib import Path

import click


def _users_scopes(database_url: str | None) -> list[tuple[str, ...]]:
    """The distinct scopes of the enabled region-scoped users of the fleet's database."""
    from fleet_server.cli_session import cli_session, cli_settings
    from fleet_server.security.users import list_users

    settings = cli_settings(database_url=database_url)
    with cli_session(settings) as session:
        return sorted(
            {
                tuple(user.region_prefixes)
                for user in list_users(session)
                if user.region_prefixes and not user.disabled and user.role != "admin"
            }
        )


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
    @click.option("--scope", "scopes", multiple=True, metavar="PREFIX[,PREFIX...]",
                  help="A region scope to give a folder of its own (repeatable).")  # fmt: skip
    @click.option("--scopes-from-users", is_flag=True,
                  help="Also every distinct scope of the fleet's region-scoped users.")  # fmt: skip
    @click.option("--database-url", default=None,
                  help="With --scopes-from-users (default: GOVEDGE_DATABASE_URL).")  # fmt: skip
    @click.option("--region-digits", type=click.IntRange(2, 6), default=4,
                  envvar="GOVEDGE_METRICS_REGION_DIGITS", show_default=True,
                  help="The server's GOVEDGE_METRICS_REGION_DIGITS.")  # fmt: skip
    def grafana_sync(
        url: str, token: str, datasource_url: str, directory: Path | None,
        scopes: tuple[str, ...], database_url: str | None, region_digits: int,
        *, scopes_from_users: bool,
    ) -> None:  # fmt: skip
        """Create or update the datasource and dashboards; safe to run again."""
        from fleet_server.grafana import GrafanaSyncError, load_dashboards, sync
        from fleet_server.grafana.scoping import ScopeRefused, check_scope, folder_plans
        from fleet_server.grafana.sync import DASHBOARD_DIR

        try:
            boards = load_dashboards(directory or DASHBOARD_DIR)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        wanted = [tuple(s.split(",")) for s in scopes]
        if scopes_from_users:
            wanted += _users_scopes(database_url)
        try:  # every scope is checked before Grafana is touched
            checked = [check_scope(s, region_digits=region_digits) for s in wanted]
        except ScopeRefused as exc:
            raise click.UsageError(f"scope refused: {exc}") from None
        plans = folder_plans(boards, checked) if checked else []
        try:
            report = sync(url, token, datasource_url=datasource_url,
                          dashboards=[] if plans else boards, folders=plans)  # fmt: skip
        except GrafanaSyncError as exc:
            click.echo(f"fleet-server: grafana sync failed at {exc}", err=True)
            sys.exit(2)
        click.echo(f"datasource govedge-metrics: {report.datasource}")
        for kind, outcomes in (("team", report.teams), ("folder", report.folders),
                               ("permissions", report.permissions)):  # fmt: skip
            for name, outcome in outcomes.items():
                click.echo(f"{kind} {name}: {outcome}")
        for uid, outcome in report.dashboards.items():
            click.echo(f"dashboard {uid}: {outcome}")
