"""`python -m centralino_registrar serve|migrate|seed`."""

from centralino_proto.cli import main

from .config import Settings
from .main import MIGRATIONS
from .seed import seed

if __name__ == "__main__":
    main(
        settings_factory=Settings,
        app_path="centralino_registrar.main:create_app",
        migrations_dir=MIGRATIONS,
        seed=seed,
    )
