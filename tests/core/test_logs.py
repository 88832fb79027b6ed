"""Log records with details: reserved keys are renamed rather than raised on."""

from __future__ import annotations

import io
import json
import logging

import pytest

from shadowcast.logs import JsonFormatter, fields


def test_fields_renames_keys_a_log_record_already_has() -> None:
    out = fields({"created": ["flows"], "name": "x", "server": "a:1"})
    assert out == {"detail_created": ["flows"], "detail_name": "x", "server": "a:1"}


def test_a_reserved_key_raises_without_fields_and_logs_with_it() -> None:
    log = logging.getLogger("shadowcast.test_logs")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with pytest.raises(KeyError, match="created"):
            log.info("migrated", extra={"created": ["flows"]})
        log.info("migrated", extra=fields({"created": ["flows"], "version": 1}))
    finally:
        log.removeHandler(handler)
    doc = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert doc["detail_created"] == ["flows"] and doc["version"] == 1
