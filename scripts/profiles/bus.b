# Profile "bus", node B (nexus.role=b, 192.0.2.2, device b5e855b54602aa2d):
# logd, metricsd, busd and obsscraped run. B's collector connects to A's
# obs.logs and obs.metrics through busd; B's selftest checks that it holds
# exactly the records of A's report the sampling rule keeps (all errors),
# within the rate, and A's counter at the value A scraped itself. Then B's
# busd refuses the unlisted device a8e05dee35db0fc8 during its handshake,
# B's selftest verifies A's 1 MiB (FNV-1a-64 of the deterministic stream)
# before replying, drops the session on A's "done", sees A redial, and
# echoes A's probe on the new session. In between, the mux-trace phase: B
# gets A's span context in the OPEN of `selftest.trace` (busd checks it
# decodes: `dsoftbus: mux trace propagated`), continues the trace and
# hands its span to its traced, which forwards it to A's. Exact whole
# lines, in order.
net: ready 192.0.2.2
busd: ready
traced: ready
dsoftbus: ready
logd: obs logs live ready
metricsd: obs metrics live ready
dsoftbus: session ok 5863cd012c8f24a0
busd: peer up 5863cd012c8f24a0
dsoftbus: mux trace caps on
obsscraped: connect logs 5863cd012c8f24a0 ok
obsscraped: connect metrics 5863cd012c8f24a0 ok
SELFTEST: obs logs connect ok
SELFTEST: obs metrics connect ok
SELFTEST: obs logs rate/sampling ok
SELFTEST: obs metrics query ok
dsoftbus: mux trace propagated
SELFTEST: mux trace served
dsoftbus: acl deny a8e05dee35db0fc8
dsoftbus: stream verified 1048576 86ff1516199fccbe
dsoftbus: session ok 5863cd012c8f24a0
busd: peer up 5863cd012c8f24a0
SELFTEST: bus reconnect ok
SELFTEST: end
