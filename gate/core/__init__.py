"""The lane core: what happens at one lane, from a credential to a decision and what it says.

Events in, records out; the policy is a pure function; nothing here imports the web page,
the desk, operations, drills or sync (checked by import-linter, `.importlinter`)."""
