"""The online service: loads a bundle and serves recommendations over HTTP. Never imports `training`."""
