"""What every command needs: the config and AWS clients, loaded on first use."""

from __future__ import annotations

from dataclasses import dataclass, field

import typer

from mailctl.aws.session import Clients
from mailctl.config import Config, load_config


@dataclass
class AppContext:
    config_path: str | None = None
    debug: bool = False
    _config: Config | None = field(default=None, repr=False)
    _clients: Clients | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    @property
    def clients(self) -> Clients:
        if self._clients is None:
            self._clients = Clients(self.config, max_pool_connections=max(32, self.config.sending.concurrency * 2))
        return self._clients


def app_context(ctx: typer.Context) -> AppContext:
    root = ctx.find_root()
    if not isinstance(root.obj, AppContext):
        root.obj = AppContext()
    return root.obj
