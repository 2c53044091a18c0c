"""The composition root: configuration, the dependency container and the ``cdc-app``
command. Only this package chooses adapters; the domain and adapters never import it."""

__all__: list[str] = []
