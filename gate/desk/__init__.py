"""The community office's work at one gate: rosters, printed passes, the pass table and
policy as documents, replay, visitors, privacy, named guards and the daily report's pages."""
