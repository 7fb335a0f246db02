"""OpenStack's etcd3gw (PyPI), a client built on etcd's JSON gateway, against one endpoint.

Usage: python3 etcd3gw_check.py HOST PORT

Runs put/get/delete, a transaction, a lease (grant, keep-alive, time-to-live, keys, revoke), a
watch that sees a put and a delete, and a lock two holders contend for. Exits non-zero, with the
failed check, on the first answer that is not etcd's; prints "etcd3gw: all checks passed" at the end.
"""

import sys
import threading

import etcd3gw


def check(cond, what):
    if not cond:
        sys.exit(f"etcd3gw check failed: {what}")


def main(host, port):
    c = etcd3gw.Etcd3Client(host=host, port=port, timeout=10)
    check(c.api_path == "/v3/", f"api path from /version: {c.api_path}")

    # put / get / delete
    check(c.put("greeting", "hello"), "put")
    check(c.get("greeting") == [b"hello"], f"get: {c.get('greeting')}")
    value, meta = c.get("greeting", metadata=True)[0]
    check(value == b"hello" and meta["key"] == b"greeting" and int(meta["version"]) == 1, f"metadata: {meta}")
    c.put("dir/a", "1")
    c.put("dir/b", "2")
    check(sorted(v for v, _ in c.get_prefix("dir/")) == [b"1", b"2"], "get_prefix")
    check(c.delete("greeting"), "delete")
    check(c.get("greeting") == [], "gone after delete")
    check(not c.delete("greeting"), "deleting a missing key says so")
    check(c.delete_prefix("dir/"), "delete_prefix")

    # transactions: create-if-absent and compare-and-swap
    check(c.create("once", "first"), "create")
    check(not c.create("once", "second"), "create refuses an existing key")
    check(c.replace("once", "first", "third"), "replace when equal")
    check(not c.replace("once", "first", "fourth"), "replace refuses when not equal")
    check(c.get("once") == [b"third"], f"after replace: {c.get('once')}")
    txn = c.transaction({
        "compare": [{"key": etcd3gw.utils._encode("once"), "result": "EQUAL", "target": "VALUE",
                     "value": etcd3gw.utils._encode("third")}],
        "success": [{"request_put": {"key": etcd3gw.utils._encode("txn"), "value": etcd3gw.utils._encode("yes")}}],
        "failure": [],
    })
    check(txn.get("succeeded") is True, f"txn: {txn}")
    check(c.get("txn") == [b"yes"], "txn's put")

    # leases
    lease = c.lease(ttl=30)
    check(lease.id > 0, f"lease id {lease.id}")
    c.put("leased", "x", lease=lease)
    check(lease.refresh() == 30, "keep-alive renews to the granted TTL")
    check(0 < lease.ttl() <= 30, f"ttl {lease.ttl()}")
    check(lease.keys() == [b"leased"], f"lease keys {lease.keys()}")
    check(lease.revoke(), "revoke")
    check(c.get("leased") == [], "the leased key goes with its lease")

    # watch: a put and a delete, in order
    events, cancel = c.watch("watched")
    got = []
    done = threading.Event()

    def read():
        for ev in events:
            got.append(ev)
            if len(got) == 2:
                done.set()
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    # The watch is created by a request of its own; retry the writes until the watch sees them.
    for _ in range(50):
        c.put("watched", "v1")
        c.delete("watched")
        if done.wait(0.2):
            break
    cancel()
    check(done.is_set(), f"watch events: {got}")
    check(got[0]["kv"]["value"] == b"v1" and got[0].get("type", "PUT") == "PUT", f"put event {got[0]}")
    check(got[1].get("type") == "DELETE", f"delete event {got[1]}")

    # locks: a second holder waits for the first
    first = c.lock("job", ttl=30)
    check(first.acquire(), "first acquire")
    check(first.is_acquired(), "first holds it")
    second = c.lock("job", ttl=30)
    check(not second.acquire(), "second cannot acquire while the first holds it")
    check(first.release(), "release")
    check(second.acquire(), "second acquires after the release")
    check(second.release(), "second release")

    # status and members from the maintenance and cluster services
    check(len(c.members()) == 1, f"members {c.members()}")
    check("version" in c.status(), f"status {c.status()}")
    print("etcd3gw: all checks passed")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
