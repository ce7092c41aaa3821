"""Load benchmark, chaos runs and the promise checker that judges their logs."""
