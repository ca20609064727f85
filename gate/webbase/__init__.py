"""What every web page of ours stands on, whatever it serves: the guard's page at a gate
(gate/web/) and the office console at central (sync/central/console/). The Host
allow-list (hosts.py), the per-client throttle of password guesses (throttle.py) and
server-side sessions (sessions.py). It imports nothing of ours but itself, so both
rooms may use it (.importlinter states the console's exception)."""
