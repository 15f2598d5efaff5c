from engine_fixtures import cifar_archive, cifar_mini, session_cache, tiny_config  # noqa: F401
from sweep_fixtures import evaluated_grid, tiny_grid, tiny_sweep  # noqa: F401
from app_fixtures import app_url, cifar_subset, public_app, public_app_url, public_gradio_temp  # noqa: F401
from app_fixtures import public_runs, public_uploads  # noqa: F401
from browser_fixtures import browser  # noqa: F401
from readme_fixtures import readme_cli_run  # noqa: F401
