"""Prepare scripts that write parquet files in the RL row format (``python -m dataset.<name> --help``)."""
