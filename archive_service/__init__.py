"""archive-service: electronic archiving (SAE) for French public-procurement records.

Importing the package has no side effects; entry points live in `archive_service.cli`,
`archive_service.api` and `archive_service.tasks`.
"""

__version__ = "0.1.0"
