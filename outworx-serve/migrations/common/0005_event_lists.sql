-- The same on SQLite and PostgreSQL. The event list reads a project's events newest first,
-- or one provider's: these give that order, so a list stops reading at its limit instead of
-- sorting the project's whole history.
CREATE INDEX events_by_project_id ON events (project, id);
CREATE INDEX events_by_provider_id ON events (project, provider, id)
