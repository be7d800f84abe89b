"""The service-item catalogue (事项清单): parse, validate and import, all or nothing."""

from fleet_server.catalogue.importer import (
    CatalogueError,
    CatalogueRow,
    RowError,
    import_rows,
    parse_catalogue,
)

__all__ = ["CatalogueError", "CatalogueRow", "RowError", "import_rows", "parse_catalogue"]
