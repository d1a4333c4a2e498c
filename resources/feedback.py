from __future__ import annotations

from functools import lru_cache

from dagster import ConfigurableResource
from pydantic import Field

from pipeline.feedback.store import FeedbackStore


@lru_cache(maxsize=8)
def _store(url: str) -> FeedbackStore:
    # One engine (and connection pool) per URL and process, reused by every sensor tick.
    return FeedbackStore(url)


class FeedbackStoreResource(ConfigurableResource):
    """The feedback store: logged predictions and their feedback, by SQLAlchemy URL.

    Local: a SQLite file under FLYWHEEL_HOME; scaled out: PostgreSQL (FLYWHEEL_FEEDBACK_URL).
    """

    url: str = Field(description="SQLAlchemy URL of the feedback store (FLYWHEEL_FEEDBACK_URL).")

    def store(self) -> FeedbackStore:
        return _store(self.url)
