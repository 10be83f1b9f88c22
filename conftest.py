"""Shared pytest set-up: quiet structlog (tests read events, not log lines)."""

import logging

import structlog

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
