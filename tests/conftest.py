from engine_fixtures import cifar_archive, session_cache, tiny_config  # noqa: F401
