from collections.abc import Callable
from typing import Any

def configure(
    handlers: dict[str, Callable[..., None]], leaves: frozenset[str], varset: Callable[..., None], /
) -> None: ...
def method(cls: type, /) -> Any: ...
