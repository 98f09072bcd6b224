from archive_service.cli.main import app

app()
