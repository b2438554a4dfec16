"""The --auth modes, named apart from `config`: `cli` lists them in every --help, which should not
pay for loading `config`'s pydantic and httpx2."""

from __future__ import annotations

from typing import Literal, get_args

AuthMode = Literal["none", "token", "knock-key", "oauth"]
AUTH_MODES: tuple[AuthMode, ...] = get_args(AuthMode)
