"""Private helpers of hist_sd, each meaning exactly once (import from the submodules)."""
