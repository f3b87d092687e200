//! The cluster file: the shipped one agrees with the nodes' bus recipe,
//! and every mistake is refused with a message a person can act on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dsoftbus::identity::DeviceKey;
use nexus_obs::config::Cluster;

#[test]
fn the_shipped_host_key_is_the_one_the_nodes_accept() {
    let c = Cluster::builtin().unwrap();
    let bus = busd::Config::builtin().unwrap();
    let peers = bus.peers().unwrap();
    let host = peers.iter().find(|p| p.name == c.host.name).unwrap();
    assert_eq!(host.key, DeviceKey::from_secret(c.host.secret).public());
    assert!(host.streams.iter().any(|s| s == "obs.logs"));
    assert!(host.streams.iter().any(|s| s == "obs.metrics"));
    // Every node of the cluster file is a node the bus recipe knows.
    for n in &c.nodes {
        let p = peers.iter().find(|p| p.name == n.name).unwrap();
        assert_eq!(p.key, n.public, "{}", n.name);
    }
}

#[test]
fn test_reject_cluster_file_mistakes() {
    let host = format!(
        "[host]\nname = \"host\"\nsecret = \"{}\"\nport = 1\n",
        "c4".repeat(32)
    );
    let bad = [
        (
            "[host]\nname = \"h\"\nsecret = \"xyz\"\nport = 1\n",
            "host.secret",
        ),
        (
            &*format!("{host}[[node]]\nname = \"a\"\nport = 2\n"),
            "exactly one of",
        ),
        (
            &*format!(
                "{host}[[node]]\nname = \"a\"\nkey = \"{}\"\nport = 2\n",
                "AB".repeat(32)
            ),
            "64 lower-case hex",
        ),
        (
            &*format!(
                "{host}[[node]]\nname = \"host\"\nsecret = \"{}\"\nport = 2\n",
                "a1".repeat(32)
            ),
            "used twice",
        ),
        (
            &*format!("{host}[[token]]\ntoken = \"short\"\nread = [\"*\"]\n"),
            "8 characters",
        ),
        (&*format!("{host}bogus = 1\n"), "unknown field"),
    ];
    for (text, want) in bad {
        let e = Cluster::parse(text).unwrap_err().to_string();
        assert!(e.contains(want), "{text:?}: {e}");
    }
}

#[test]
fn tokens_read_what_they_list() {
    let text = format!(
        "[host]\nname = \"host\"\nsecret = \"{}\"\nport = 1\n\
         [[token]]\ntoken = \"reader-123\"\nread = [\"node-a/1\", \"node-b\"]\n",
        "c4".repeat(32)
    );
    let c = Cluster::parse(&text).unwrap();
    let t = c.token("reader-123").unwrap();
    assert!(t.allows("node-a", 1) && !t.allows("node-a", 2));
    assert!(t.allows("node-b", 7) && !t.allows("node-c", 1));
    assert!(c.token("reader-12").is_none() && c.token("reader-1234").is_none());
    assert!(
        !format!("{t:?}").contains("reader-123"),
        "a token is never printed"
    );
}
