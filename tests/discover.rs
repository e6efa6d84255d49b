//! `[[discover]]` (issue 10) against real servers: the trigger's discover.rs,
//! built here as it is, finds every stream matching a pattern and each one's
//! groups, skips a matching key that is not a stream, keeps a stream without a
//! group, and in a 3-master cluster finds the streams of every primary.

#[path = "../trigger/src/discover.rs"]
mod discover;

use discover::{discover, group_names, groups_of, DiscoverError, Discovery, StreamGroups};
use quantum_integration::cluster::Cluster;
use quantum_integration::Server;
use redis::Connection;
use std::time::{Duration, Instant};

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

fn cmd(con: &mut Connection, words: &[&str]) {
    let mut c = redis::cmd(words[0]);
    for w in &words[1..] {
        c.arg(*w);
    }
    c.query::<redis::Value>(con)
        .unwrap_or_else(|e| panic!("{words:?}: {e}"));
}

fn stream_with_groups(con: &mut Connection, key: &str, groups: &[&str]) {
    cmd(con, &["XADD", key, "*", "f", "v"]);
    for group in groups {
        cmd(con, &["XGROUP", "CREATE", key, group, "0"]);
    }
}

fn found(pairs: &[(&str, &[&str])]) -> Vec<StreamGroups> {
    pairs
        .iter()
        .map(|(stream, groups)| StreamGroups {
            stream: stream.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        })
        .collect()
}

/// Several streams and groups, a stream without a group, keys of other types
/// that match the pattern, a stream that does not match, and enough filler
/// keys that SCAN needs several calls to reach the end.
fn keyspace(con: &mut Connection) {
    stream_with_groups(con, "app:orders", &["exec", "audit"]);
    stream_with_groups(con, "app:fills", &["exec"]);
    stream_with_groups(con, "app:quiet", &[]);
    stream_with_groups(con, "other:orders", &["exec"]);
    cmd(con, &["SET", "app:not-a-stream", "x"]);
    cmd(con, &["HSET", "app:a-hash", "f", "v"]);
    let mut pipe = redis::pipe();
    for i in 0..2500 {
        pipe.cmd("SET")
            .arg(format!("app:filler:{i}"))
            .arg(i)
            .ignore();
    }
    pipe.query::<()>(con).unwrap();
}

fn expected_app() -> Vec<StreamGroups> {
    found(&[
        ("app:fills", &["exec"]),
        ("app:orders", &["audit", "exec"]),
        ("app:quiet", &[]),
    ])
}

#[test]
fn finds_every_matching_stream_and_its_groups_and_skips_other_types() {
    let server = Server::start();
    let mut con = server.connect();
    keyspace(&mut con);
    let discovery = discover(&mut con, "app:*", 1000, soon()).unwrap();
    assert_eq!(
        discovery,
        Discovery {
            streams: expected_app(),
            skipped: vec![],
            not_utf8: vec![],
            truncated: false
        }
    );
    assert_eq!(discovery.pairs(), 3);
    // The same answer over RESP3, where XINFO GROUPS entries are maps.
    let mut resp3 = server.connect_resp3();
    let discovery = discover(&mut resp3, "app:*", 1000, soon()).unwrap();
    assert_eq!(discovery.streams, expected_app());
    let everything = discover(&mut con, "*", 1000, soon()).unwrap();
    assert_eq!(everything.streams.len(), 4, "{everything:?}");
    let none = discover(&mut con, "nothing:*", 1000, soon()).unwrap();
    assert_eq!(none, Discovery::default());
}

#[test]
fn more_pairs_than_the_limit_stop_the_scan_and_say_so() {
    let server = Server::start();
    let mut con = server.connect();
    keyspace(&mut con);
    let cut = discover(&mut con, "app:*", 2, soon()).unwrap();
    assert!(cut.truncated, "{cut:?}");
    assert!(cut.pairs() > 2, "{cut:?}");
    let exact = discover(&mut con, "app:*", 3, soon()).unwrap();
    assert!(!exact.truncated, "{exact:?}");
    let late = discover(&mut con, "app:*", 1000, Instant::now());
    // Nothing scanned before the deadline: nothing found so far.
    match late {
        Err(DiscoverError::Deadline(partial)) => assert_eq!(*partial, Discovery::default()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_refused_command_is_an_error_not_a_skipped_key() {
    let server = Server::start();
    let mut con = server.connect();
    keyspace(&mut con);
    cmd(
        &mut con,
        &["ACL", "SETUSER", "scanner", "on", ">pw", "~*", "+scan"],
    );
    let mut scanner = server.connect_as("scanner", "pw");
    let refused = discover(&mut scanner, "app:*", 1000, soon()).unwrap_err();
    assert!(matches!(refused, DiscoverError::Redis(_)), "{refused:?}");
    assert!(refused.to_string().contains("xinfo|groups"), "{refused}");
}

#[test]
fn a_key_gone_or_of_another_type_has_no_groups_and_is_no_error() {
    let server = Server::start();
    let mut con = server.connect();
    keyspace(&mut con);
    let groups = |con: &mut Connection, key: &str| {
        groups_of(con, key)
            .unwrap()
            .map(|reply| group_names(&reply))
    };
    assert_eq!(groups(&mut con, "app:missing"), None);
    assert_eq!(groups(&mut con, "app:not-a-stream"), None);
    assert_eq!(groups(&mut con, "app:quiet"), Some(vec![]));
    assert_eq!(
        groups(&mut con, "app:orders"),
        Some(vec!["audit".to_string(), "exec".to_string()])
    );
}

#[test]
fn in_a_cluster_every_primary_contributes_its_streams() {
    let cluster = Cluster::start();
    let keys: Vec<String> = (0..24).map(|i| format!("app:stream:{i}")).collect();
    for key in &keys {
        let mut con = cluster.owner_of(key).connect();
        stream_with_groups(&mut con, key, &["exec"]);
    }
    let mut all = Discovery::default();
    for (index, node) in cluster.nodes.iter().enumerate() {
        let mut con = node.connect();
        let on_node = discover(&mut con, "app:*", 1000, soon()).unwrap();
        let mut expected: Vec<&String> = keys
            .iter()
            .filter(|k| cluster.owner_index(k) == index)
            .collect();
        expected.sort();
        let names: Vec<&String> = on_node.streams.iter().map(|s| &s.stream).collect();
        assert_eq!(names, expected, "node {index}");
        assert!(!names.is_empty(), "node {index} owns none of the streams");
        all.merge(on_node);
    }
    let mut keys = keys;
    keys.sort();
    let names: Vec<String> = all.streams.iter().map(|s| s.stream.clone()).collect();
    assert_eq!(names, keys);
    assert!(all.streams.iter().all(|s| s.groups == ["exec"]));
}
