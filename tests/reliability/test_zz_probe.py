import time
from tests.reliability.conftest import record

def test_probe(rig):
    campaign, emails = rig.campaign(2000)
    t = time.monotonic()
    assert rig.mailctl("send", str(campaign), "--yes") == 0
    t1 = time.monotonic()
    stats = rig.drain()
    t2 = time.monotonic()
    f = rig.tally(emails)
    t3 = time.monotonic()
    print("send", t1 - t, "drain", t2 - t1, "tally", t3 - t2, stats.summary(), f)
    assert f.once == 2000
