# Profile "bus", node B (nexus.role=b, 192.0.2.2, device b5e855b54602aa2d):
# listens; refuses the unlisted device a8e05dee35db0fc8 during the handshake (its
# id is the one it proved), accepts device 5863cd012c8f24a0, verifies the
# 1 MiB stream's length and FNV-1a-64 checksum, and replies on the stream.
# Exact whole lines, in order.
net: ready 192.0.2.2
dsoftbus: ready
dsoftbus: acl deny a8e05dee35db0fc8
dsoftbus: session ok 5863cd012c8f24a0
dsoftbus: stream verified 1048576 86ff1516199fccbe
SELFTEST: end
