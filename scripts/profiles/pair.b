# Profile "pair", node B (nexus.role=b, 192.0.2.2): listens on port 7000,
# receives the 1 MiB stream, checks its length and FNV-1a-64 checksum
# against the deterministic generator, and replies with them.
# Each line must appear on node B's console as an exact whole line, in order.
net: ready 192.0.2.2
net: listening 7000
SELFTEST: pair recv ok 1048576 86ff1516199fccbe
SELFTEST: end
