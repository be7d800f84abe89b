"""Device drivers, one module per kind; each registers itself with ``register_driver``."""
