# Profile "bus", node B (nexus.role=b, 192.0.2.2, device b5e855b54602aa2d):
# logd, metricsd and busd run; B's busd accepts A, refuses the unlisted
# device a8e05dee35db0fc8 during its handshake, and B's selftest (a busd
# client) verifies A's 1 MiB (FNV-1a-64 of the deterministic stream) before
# replying, drops the session on A's "done", sees A redial, and echoes A's
# probe on the new session. Exact whole lines, in order.
net: ready 192.0.2.2
busd: ready
dsoftbus: ready
dsoftbus: session ok 5863cd012c8f24a0
busd: peer up 5863cd012c8f24a0
dsoftbus: acl deny a8e05dee35db0fc8
dsoftbus: stream verified 1048576 86ff1516199fccbe
dsoftbus: session ok 5863cd012c8f24a0
busd: peer up 5863cd012c8f24a0
SELFTEST: bus reconnect ok
SELFTEST: end
