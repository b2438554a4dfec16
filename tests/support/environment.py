"""Which environment variables the server reads, learned by running its settings loader."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from knock_mcp.settings import load_settings


class RecordingEnviron(Mapping[str, str]):
    """An empty environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.names.add(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def variables_the_server_reads() -> set[str]:
    environ = RecordingEnviron()
    load_settings(environ)
    return environ.names
