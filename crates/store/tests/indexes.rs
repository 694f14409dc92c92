//! Database configurations, the offline flag, secondary indexes and resyncs on a real
//! store: configurations survive reopening, offline databases refuse batches, every
//! write keeps the indexes exact (unique ones refuse duplicates, all or nothing), `find`
//! pages through values in order, and changed definitions leave the indexes stale until
//! resync steps rebuild them and report what they found.

use std::ops::Bound;
use std::path::Path;

use cairn_store::{
    DatabaseConfig, IndexDef, IndexKey, IndexQuery, Op, Retention, Store, StoreError, StoreOptions,
    Write, Written,
};
use serde_json::json;

fn new_store(dir: &Path) -> Store {
    Store::create(dir, StoreOptions::default()).unwrap()
}

fn mp(value: serde_json::Value) -> Vec<u8> {
    rmp_serde::to_vec(&value).unwrap()
}

fn def(name: &str, field: &str, unique: bool) -> IndexDef {
    IndexDef {
        name: name.to_string(),
        field: field.to_string(),
        unique,
    }
}

fn put(key: &str, value: serde_json::Value) -> Op {
    Op::Put {
        key: key.to_string(),
        value: mp(value),
        rev: None,
    }
}

fn delete(key: &str) -> Op {
    Op::Delete {
        key: key.to_string(),
        rev: None,
    }
}

/// Creates `db` with `indexes` (configured while offline, then online again).
fn indexed_db(store: &Store, db: &str, indexes: Vec<IndexDef>) {
    store
        .create_database_offline(db, Retention::default())
        .unwrap();
    assert_eq!(
        store
            .set_database_config(db, indexes, Retention::default())
            .unwrap(),
        (true, false),
        "an empty database's indexes are fresh at once"
    );
    assert!(store.set_offline(db, false).unwrap());
}

/// The keys found with `value` at `index`, in order.
fn exact(store: &Store, db: &str, index: &str, value: IndexKey) -> Vec<String> {
    let page = store
        .find(db, &IndexQuery::exact(index, value, 1000))
        .unwrap();
    assert!(!page.more);
    page.docs.into_iter().map(|(_, d)| d.key).collect()
}

fn text(s: &str) -> IndexKey {
    IndexKey::Text(s.to_string())
}

fn query(index: &str, start: Bound<IndexKey>, end: Bound<IndexKey>) -> IndexQuery {
    IndexQuery {
        index: index.to_string(),
        start,
        end,
        limit: 1000,
        reverse: false,
        after: None,
    }
}

/// (value, key) pairs of a find.
fn found(store: &Store, db: &str, q: &IndexQuery) -> (Vec<(IndexKey, String)>, bool) {
    let page = store.find(db, q).unwrap();
    (
        page.docs.into_iter().map(|(v, d)| (v, d.key)).collect(),
        page.more,
    )
}

#[test]
fn configurations_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let indexes = vec![
        def("by_email", "/email", true),
        def("by_age", "/age", false),
    ];
    {
        let store = new_store(dir.path());
        store.create_database("plain").unwrap();
        store
            .create_database_offline("users", Retention::default())
            .unwrap();
        store
            .set_database_config(
                "users",
                indexes.clone(),
                Retention {
                    max_changes: Some(10),
                    max_age_secs: None,
                },
            )
            .unwrap();
    }
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let expected = DatabaseConfig {
        offline: true,
        indexes: indexes.clone(),
        indexes_stale: false,
    };
    assert_eq!(store.database_config("users").unwrap(), expected);
    assert_eq!(
        store.database_config("plain").unwrap(),
        DatabaseConfig::default()
    );
    let info = store.database_info("users").unwrap();
    assert!(info.offline);
    assert_eq!(info.retention.max_changes, Some(10));
    assert!(!store.database_info("plain").unwrap().offline);
    let snapshot = store.snapshot().unwrap();
    assert_eq!(
        snapshot.database_configs().unwrap(),
        vec![
            ("plain".to_string(), DatabaseConfig::default()),
            ("users".to_string(), expected),
        ]
    );
    assert!(matches!(
        snapshot.database_config("nope"),
        Err(StoreError::DatabaseMissing { .. })
    ));
    let flags: Vec<bool> = store
        .list_databases()
        .unwrap()
        .iter()
        .map(|d| d.offline)
        .collect();
    assert_eq!(flags, [false, true]);
}

#[test]
fn offline_databases_refuse_batches_and_the_flag_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    store.create_database("db").unwrap();
    store.put("db", "k", &mp(json!(1)), None).unwrap();
    assert!(!store.set_offline("db", false).unwrap(), "already online");
    assert!(store.set_offline("db", true).unwrap());
    assert!(!store.set_offline("db", true).unwrap(), "already offline");
    let err = store.put("db", "k", &mp(json!(2)), None).unwrap_err();
    assert!(matches!(err, StoreError::DatabaseOffline { .. }), "{err}");
    assert_eq!(err.to_string(), "database \"db\" is offline");
    let err = store
        .batch("db", vec![put("a", json!(1)), delete("k")])
        .unwrap_err();
    assert!(matches!(err, StoreError::DatabaseOffline { .. }));
    let info = store.database_info("db").unwrap();
    assert_eq!((info.last_seq, info.doc_count), (1, 1), "nothing written");
    assert_eq!(store.get("db", "k").unwrap().unwrap().value, mp(json!(1)));
    // Reads still work, and so does the way back.
    assert!(store.set_offline("db", false).unwrap());
    assert_eq!(store.put("db", "k", &mp(json!(2)), None).unwrap(), 2);
    assert!(matches!(
        store.set_offline("nope", true),
        Err(StoreError::DatabaseMissing { .. })
    ));

    // A database created offline refuses its first batch.
    store
        .create_database_offline("later", Retention::default())
        .unwrap();
    assert!(store.database_info("later").unwrap().offline);
    assert!(matches!(
        store.put("later", "k", &mp(json!(1)), None),
        Err(StoreError::DatabaseOffline { .. })
    ));
    assert_eq!(store.database_info("later").unwrap().last_seq, 0);
}

#[test]
fn configuration_changes_need_an_offline_database() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    store.create_database("db").unwrap();
    let err = store
        .set_database_config(
            "db",
            vec![def("i", "/a", false)],
            Retention {
                max_changes: Some(5),
                max_age_secs: None,
            },
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::DatabaseOnline { .. }), "{err}");
    assert!(err.to_string().contains("take it offline first"), "{err}");
    assert_eq!(
        store.database_config("db").unwrap(),
        DatabaseConfig::default()
    );
    assert_eq!(
        store.database_info("db").unwrap().retention,
        Retention::default()
    );
    for (name, after) in [("db", None), ("db", Some("k"))] {
        let err = store.resync_chunk(name, after, 10).unwrap_err();
        assert!(matches!(err, StoreError::DatabaseOnline { .. }), "{err}");
    }
    assert!(matches!(
        store.resync_finish("db", 0),
        Err(StoreError::DatabaseOnline { .. })
    ));
    // Bad definitions are refused before anything is looked at.
    store.set_offline("db", true).unwrap();
    for bad in [
        vec![def("Bad", "/a", false)],
        vec![def("i", "/a", false), def("i", "/b", true)],
        vec![def("i", "a", false)],
        vec![def("i", "/a~3", false)],
        (0..17)
            .map(|i| def(&format!("i{i}"), "/a", false))
            .collect(),
    ] {
        let err = store
            .set_database_config("db", bad.clone(), Retention::default())
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidArgument { .. }),
            "{bad:?}: {err}"
        );
    }
    assert_eq!(
        store.database_config("db").unwrap().indexes,
        Vec::<IndexDef>::new()
    );
    // The same definitions again change nothing.
    let defs = vec![def("i", "/a", false)];
    assert_eq!(
        store
            .set_database_config("db", defs.clone(), Retention::default())
            .unwrap(),
        (true, false)
    );
    assert_eq!(
        store
            .set_database_config("db", defs, Retention::default())
            .unwrap(),
        (false, false)
    );
}

#[test]
fn dropping_a_database_removes_its_configuration_and_index_entries() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    indexed_db(&store, "db", vec![def("by_a", "/a", true)]);
    store
        .batch(
            "db",
            vec![put("k1", json!({"a": "x"})), put("k2", json!({"a": "y"}))],
        )
        .unwrap();
    assert_eq!(exact(&store, "db", "by_a", text("x")), ["k1"]);
    store.set_offline("db", true).unwrap();
    store.drop_database("db").unwrap();
    store.create_database("db").unwrap();
    assert_eq!(
        store.database_config("db").unwrap(),
        DatabaseConfig::default()
    );
    assert!(!store.database_info("db").unwrap().offline);
    let err = store
        .find("db", &IndexQuery::exact("by_a", text("x"), 10))
        .unwrap_err();
    assert!(matches!(err, StoreError::IndexMissing { .. }), "{err}");
    assert_eq!(err.to_string(), "database \"db\" has no index \"by_a\"");
    // The same definitions on the new database start from nothing.
    store.set_offline("db", true).unwrap();
    store
        .set_database_config("db", vec![def("by_a", "/a", true)], Retention::default())
        .unwrap();
    store.set_offline("db", false).unwrap();
    assert!(exact(&store, "db", "by_a", text("x")).is_empty());
    store.put("db", "k3", &mp(json!({"a": "x"})), None).unwrap();
    assert_eq!(exact(&store, "db", "by_a", text("x")), ["k3"]);
}

#[test]
fn writes_keep_indexes_exact() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    indexed_db(
        &store,
        "db",
        vec![
            def("by_city", "/address/city", false),
            def("by_tag", "/tags/0", false),
            def("by_active", "/active", false),
        ],
    );
    store
        .batch(
            "db",
            vec![
                put(
                    "ann",
                    json!({"address": {"city": "Oslo"}, "tags": ["a", "b"], "active": true}),
                ),
                put(
                    "bob",
                    json!({"address": {"city": "Oslo"}, "tags": [], "active": false}),
                ),
                put("cid", json!({"address": {"city": "Rome"}, "active": null})),
                put("dan", json!("not a map")),
            ],
        )
        .unwrap();
    assert_eq!(exact(&store, "db", "by_city", text("Oslo")), ["ann", "bob"]);
    assert_eq!(exact(&store, "db", "by_city", text("Rome")), ["cid"]);
    assert_eq!(exact(&store, "db", "by_tag", text("a")), ["ann"]);
    assert_eq!(
        exact(&store, "db", "by_active", IndexKey::Bool(true)),
        ["ann"]
    );
    assert_eq!(
        exact(&store, "db", "by_active", IndexKey::Bool(false)),
        ["bob"]
    );
    // The found documents are the stored ones, with their values at the index.
    let page = store
        .find("db", &IndexQuery::exact("by_city", text("Rome"), 10))
        .unwrap();
    assert_eq!(page.docs[0].0, text("Rome"));
    assert_eq!(page.docs[0].1, store.get("db", "cid").unwrap().unwrap());

    // An update moves the document between values; a delete removes it.
    store
        .put("db", "ann", &mp(json!({"address": {"city": "Rome"}})), None)
        .unwrap();
    store.delete("db", "bob", None).unwrap();
    assert!(exact(&store, "db", "by_city", text("Oslo")).is_empty());
    assert_eq!(exact(&store, "db", "by_city", text("Rome")), ["ann", "cid"]);
    assert!(exact(&store, "db", "by_tag", text("a")).is_empty());
    assert!(exact(&store, "db", "by_active", IndexKey::Bool(true)).is_empty());
    assert!(exact(&store, "db", "by_active", IndexKey::Bool(false)).is_empty());
    // Several operations on one key in one batch leave the last one's entries.
    store
        .batch(
            "db",
            vec![
                put("eve", json!({"address": {"city": "Oslo"}})),
                put("eve", json!({"address": {"city": "Pisa"}})),
                delete("cid"),
                put("cid", json!({"address": {"city": "Oslo"}})),
            ],
        )
        .unwrap();
    assert_eq!(exact(&store, "db", "by_city", text("Oslo")), ["cid"]);
    assert_eq!(exact(&store, "db", "by_city", text("Pisa")), ["eve"]);
    assert_eq!(exact(&store, "db", "by_city", text("Rome")), ["ann"]);
    let err = store
        .find("db", &IndexQuery::exact("nope", text("x"), 10))
        .unwrap_err();
    assert!(matches!(err, StoreError::IndexMissing { .. }));
    assert!(matches!(
        store.find("db", &IndexQuery::exact("by_city", text("x"), 0)),
        Err(StoreError::InvalidArgument { .. })
    ));
}

#[test]
fn unique_indexes_refuse_duplicates_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    indexed_db(
        &store,
        "db",
        vec![def("by_email", "/email", true), def("by_n", "/n", false)],
    );
    store
        .batch(
            "db",
            vec![
                put("a", json!({"email": "x@e", "n": 1})),
                put("b", json!({"email": "y@e"})),
            ],
        )
        .unwrap();
    let info = store.database_info("db").unwrap();

    // Against a stored document.
    let err = store
        .batch(
            "db",
            vec![put("c", json!({"n": 5})), put("d", json!({"email": "x@e"}))],
        )
        .unwrap_err();
    match &err {
        StoreError::UniqueViolation {
            db,
            index,
            value,
            key,
            existing_key,
        } => {
            assert_eq!(
                (
                    db.as_str(),
                    index.as_str(),
                    value.as_str(),
                    key.as_str(),
                    existing_key.as_str()
                ),
                ("db", "by_email", "\"x@e\"", "d", "a")
            );
        }
        other => panic!("{other}"),
    }
    assert!(
        err.to_string().contains("already held by document \"a\""),
        "{err}"
    );
    // Two operations of one batch.
    let err = store
        .batch(
            "db",
            vec![
                put("c", json!({"email": "z@e"})),
                put("d", json!({"email": "z@e"})),
            ],
        )
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::UniqueViolation { key, existing_key, .. } if key == "d" && existing_key == "c"),
        "{err}"
    );
    // Nothing of the refused batches was written.
    assert_eq!(store.database_info("db").unwrap(), info);
    assert_eq!(store.get("db", "c").unwrap(), None);
    assert!(exact(&store, "db", "by_email", text("z@e")).is_empty());
    assert!(exact(&store, "db", "by_n", IndexKey::Number(5.0)).is_empty());
    assert_eq!(exact(&store, "db", "by_email", text("x@e")), ["a"]);

    // Rewriting a document with its own value is fine.
    store
        .put("db", "a", &mp(json!({"email": "x@e", "n": 2})), None)
        .unwrap();
    // Moving a value from a to b in one batch: delete a, then give b its value.
    store
        .batch("db", vec![delete("a"), put("b", json!({"email": "x@e"}))])
        .unwrap();
    assert_eq!(exact(&store, "db", "by_email", text("x@e")), ["b"]);
    assert!(exact(&store, "db", "by_email", text("y@e")).is_empty());
    // Or by changing the holder's value first.
    store
        .put("db", "a", &mp(json!({"email": "w@e"})), None)
        .unwrap();
    store
        .batch(
            "db",
            vec![
                put("a", json!({"email": "v@e"})),
                put("c", json!({"email": "w@e"})),
            ],
        )
        .unwrap();
    assert_eq!(exact(&store, "db", "by_email", text("w@e")), ["c"]);
    assert_eq!(exact(&store, "db", "by_email", text("v@e")), ["a"]);
    // A value given and taken back in one batch frees it again.
    store
        .batch(
            "db",
            vec![
                put("d", json!({"email": "u@e"})),
                put("d", json!({"email": "t@e"})),
                put("e", json!({"email": "u@e"})),
            ],
        )
        .unwrap();
    assert_eq!(exact(&store, "db", "by_email", text("u@e")), ["e"]);
    assert_eq!(exact(&store, "db", "by_email", text("t@e")), ["d"]);
    // And after a refused one in the same commit group nothing leaks: the store's
    // state is what the accepted writes made.
    let err = store
        .put("db", "f", &mp(json!({"email": "t@e"})), None)
        .unwrap_err();
    assert!(matches!(err, StoreError::UniqueViolation { .. }));
}

#[test]
fn values_an_index_cannot_hold_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    indexed_db(&store, "db", vec![def("by_v", "/v", false)]);
    store.put("db", "ok", &mp(json!({"v": 1})), None).unwrap();
    let info = store.database_info("db").unwrap();
    let nan = {
        let mut v = vec![0x81, 0xa1, b'v', 0xcb];
        v.extend_from_slice(&f64::NAN.to_bits().to_be_bytes());
        v
    };
    let bin = vec![0x81, 0xa1, b'v', 0xc4, 0x01, 0x00];
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (mp(json!({"v": {"a": 1}})), "a map"),
        (mp(json!({"v": [1]})), "an array"),
        (bin, "a binary value"),
        (nan, "NaN"),
        (mp(json!({"v": "x".repeat(501)})), "501 bytes"),
    ];
    for (value, reason) in cases {
        let err = store
            .batch(
                "db",
                vec![
                    put("first", json!({"v": 2})),
                    Op::Put {
                        key: "bad".to_string(),
                        value,
                        rev: None,
                    },
                ],
            )
            .unwrap_err();
        match &err {
            StoreError::IndexValue {
                db,
                index,
                key,
                reason: why,
            } => {
                assert_eq!(
                    (db.as_str(), index.as_str(), key.as_str()),
                    ("db", "by_v", "bad")
                );
                assert!(why.contains(reason), "{why}");
            }
            other => panic!("{other}"),
        }
    }
    assert_eq!(store.database_info("db").unwrap(), info, "nothing written");
    assert!(exact(&store, "db", "by_v", IndexKey::Number(2.0)).is_empty());
    // A 500-byte string, a missing field and nil are fine (the last two: no entry).
    let long = "x".repeat(500);
    store
        .batch(
            "db",
            vec![
                put("long", json!({ "v": long })),
                put("none", json!({"w": 1})),
                put("nil", json!({"v": null})),
            ],
        )
        .unwrap();
    assert_eq!(exact(&store, "db", "by_v", text(&long)), ["long"]);
    let (all, _) = found(
        &store,
        "db",
        &query("by_v", Bound::Unbounded, Bound::Unbounded),
    );
    assert_eq!(all.len(), 2);
}

#[test]
fn ranges_order_numbers_and_strings_by_value() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    indexed_db(&store, "db", vec![def("by_v", "/v", false)]);
    let numbers = [
        ("n1", json!(-1000)),
        ("n2", json!(-2.5)),
        ("n3", json!(-1)),
        ("n4", json!(0)),
        ("n5", json!(-0.0)),
        ("n6", json!(0.25)),
        ("n7", json!(3)),
        ("n8", json!(3.5)),
        ("n9", json!(255)),
        ("n10", json!(70000)),
        ("n11", json!(1e20)),
        ("n12", json!(u64::MAX)),
        ("n13", json!(i64::MIN)),
    ];
    let strings = [
        ("s1", "b"),
        ("s2", "ab"),
        ("s3", "a"),
        ("s4", "é"),
        ("s5", ""),
    ];
    let mut ops: Vec<Op> = numbers
        .iter()
        .map(|(k, v)| put(k, json!({ "v": v })))
        .collect();
    ops.extend(strings.iter().map(|(k, v)| put(k, json!({ "v": v }))));
    ops.push(put("t", json!({"v": true})));
    ops.push(put("f", json!({"v": false})));
    store.batch("db", ops).unwrap();

    let keys = |q: IndexQuery| -> Vec<String> {
        found(&store, "db", &q)
            .0
            .into_iter()
            .map(|(_, k)| k)
            .collect()
    };
    let num = IndexKey::Number;
    // Everything: false, true, numbers by value (ties by key), strings by bytes.
    assert_eq!(
        keys(query("by_v", Bound::Unbounded, Bound::Unbounded)),
        [
            "f", "t", "n13", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9", "n10", "n12",
            "n11", "s5", "s3", "s2", "s1", "s4"
        ]
    );
    assert_eq!(
        keys(query(
            "by_v",
            Bound::Included(num(-2.5)),
            Bound::Excluded(num(3.5))
        )),
        ["n2", "n3", "n4", "n5", "n6", "n7"]
    );
    assert_eq!(
        keys(query(
            "by_v",
            Bound::Excluded(num(-2.5)),
            Bound::Included(num(3.5))
        )),
        ["n3", "n4", "n5", "n6", "n7", "n8"]
    );
    assert_eq!(
        keys(IndexQuery::exact("by_v", num(0.0), 10)),
        ["n4", "n5"],
        "-0.0 is 0"
    );
    assert_eq!(keys(IndexQuery::exact("by_v", num(255.0), 10)), ["n9"]);
    assert_eq!(
        keys(query(
            "by_v",
            Bound::Included(num(1000.0)),
            Bound::Unbounded
        ))[..4],
        ["n10", "n12", "n11", "s5"],
        "u64::MAX (1.8e19) sorts below 1e20"
    );
    assert_eq!(
        keys(query(
            "by_v",
            Bound::Included(text("a")),
            Bound::Excluded(text("b"))
        )),
        ["s3", "s2"]
    );
    assert_eq!(
        keys(query("by_v", Bound::Excluded(text("a")), Bound::Unbounded)),
        ["s2", "s1", "s4"]
    );
    // Reversed, with an included end that several documents hold.
    let mut q = query(
        "by_v",
        Bound::Included(num(-1.0)),
        Bound::Included(num(0.0)),
    );
    q.reverse = true;
    assert_eq!(keys(q), ["n5", "n4", "n3"]);
    // An inverted range is empty, not an error.
    assert!(keys(query(
        "by_v",
        Bound::Included(num(5.0)),
        Bound::Included(num(1.0))
    ))
    .is_empty());
    // The value comes back as what the index holds (a number for every int form).
    let (got, _) = found(&store, "db", &IndexQuery::exact("by_v", num(70000.0), 1));
    assert_eq!(got, [(num(70000.0), "n10".to_string())]);
    // Query values from msgpack, as a client sends them.
    assert_eq!(IndexKey::from_msgpack(&mp(json!(3))).unwrap(), num(3.0));
    assert_eq!(IndexKey::from_msgpack(&mp(json!("a"))).unwrap(), text("a"));
    assert!(matches!(
        IndexKey::from_msgpack(&mp(json!([1]))),
        Err(StoreError::InvalidArgument { .. })
    ));
}

#[test]
fn pages_resume_after_value_and_key_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    indexed_db(&store, "db", vec![def("by_v", "/v", false)]);
    // Values 0..4, three documents each, plus other databases around it.
    store.create_database("after").unwrap();
    store.put("after", "x", &mp(json!({"v": 1})), None).unwrap();
    let mut ops = Vec::new();
    let mut expected = Vec::new();
    for v in 0..5 {
        for k in ["a", "b", "c"] {
            let key = format!("{k}{v}");
            ops.push(put(&key, json!({ "v": v })));
            expected.push((IndexKey::Number(f64::from(v)), key));
        }
    }
    store.batch("db", ops).unwrap();
    for reverse in [false, true] {
        for limit in [1, 2, 4, 15, 16] {
            let mut want = expected.clone();
            if reverse {
                want.reverse();
            }
            let mut got = Vec::new();
            let mut after = None;
            loop {
                let q = IndexQuery {
                    index: "by_v".to_string(),
                    start: Bound::Unbounded,
                    end: Bound::Unbounded,
                    limit,
                    reverse,
                    after: after.clone(),
                };
                let (page, more) = found(&store, "db", &q);
                assert!(page.len() <= limit);
                after = page.last().cloned();
                got.extend(page);
                if !more {
                    break;
                }
            }
            assert_eq!(got, want, "limit {limit} reverse {reverse}");
        }
    }
    // A bounded range resumes inside a value.
    let q = IndexQuery {
        index: "by_v".to_string(),
        start: Bound::Included(IndexKey::Number(1.0)),
        end: Bound::Included(IndexKey::Number(2.0)),
        limit: 2,
        reverse: true,
        after: Some((IndexKey::Number(2.0), "b2".to_string())),
    };
    let (page, more) = found(&store, "db", &q);
    assert_eq!(
        page,
        [
            (IndexKey::Number(2.0), "a2".to_string()),
            (IndexKey::Number(1.0), "c1".to_string())
        ]
    );
    assert!(more);
}

#[test]
fn changed_definitions_stay_stale_until_a_resync() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    store.create_database("db").unwrap();
    store
        .batch(
            "db",
            vec![
                put("k1", json!({"email": "a@e", "n": 1})),
                put("k2", json!({"email": "b@e", "n": 2})),
                put("k3", json!({"email": "a@e", "n": 3})),
                put("k4", json!({"email": ["bad"], "n": 4})),
                put("k5", json!({"n": 5})),
            ],
        )
        .unwrap();
    store.set_offline("db", true).unwrap();
    let defs = vec![def("by_email", "/email", true), def("by_n", "/n", false)];
    assert_eq!(
        store
            .write(Write::SetDatabaseConfig {
                name: "db".to_string(),
                indexes: defs.clone(),
                retention: Retention::default(),
            })
            .unwrap(),
        Written::DatabaseConfigSet {
            indexes_changed: true,
            indexes_stale: true
        }
    );
    store.set_offline("db", false).unwrap();
    let err = store
        .find("db", &IndexQuery::exact("by_n", IndexKey::Number(1.0), 10))
        .unwrap_err();
    assert!(matches!(err, StoreError::IndexStale { .. }), "{err}");
    assert!(err.to_string().contains("cairn db resync db"), "{err}");
    // Stale indexes are not maintained: a duplicate and a bad value pass.
    store
        .batch(
            "db",
            vec![
                put("k6", json!({"email": "b@e", "n": 6})),
                put("k7", json!({"email": {}})),
            ],
        )
        .unwrap();
    store.delete("db", "k7", None).unwrap();

    // A resync in steps of two.
    store.set_offline("db", true).unwrap();
    let mut after: Option<String> = None;
    let (mut processed, mut changed, mut errors) = (0, 0, Vec::new());
    let mut steps = 0;
    loop {
        let chunk = store.resync_chunk("db", after.as_deref(), 2).unwrap();
        let Some(last) = chunk.last_key.clone() else {
            assert_eq!(chunk.processed, 0);
            break;
        };
        steps += 1;
        assert!(chunk.processed <= 2);
        processed += chunk.processed;
        changed += chunk.changed;
        errors.extend(chunk.errors);
        after = Some(last);
    }
    assert_eq!(steps, 3);
    assert_eq!(processed, 6);
    // k4 has its n entry written despite its bad email; k3 and k6 got their n entries.
    assert_eq!(changed, 6);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert_eq!(errors[0].0, "k3");
    assert!(
        errors[0]
            .1
            .contains("duplicate value \"a@e\" of unique index \"by_email\", held by \"k1\""),
        "{errors:?}"
    );
    assert_eq!(errors[1].0, "k4");
    assert!(
        errors[1].1.contains("an array cannot be indexed"),
        "{errors:?}"
    );
    assert_eq!(errors[2].0, "k6");
    assert!(errors[2].1.contains("held by \"k2\""), "{errors:?}");
    assert_eq!(store.resync_finish("db", errors.len() as u64).unwrap(), 0);
    assert!(
        store.database_config("db").unwrap().indexes_stale,
        "errors keep it stale"
    );

    // Fix the documents, then resync again: fresh.
    store.set_offline("db", false).unwrap();
    store
        .batch(
            "db",
            vec![
                put("k3", json!({"email": "c@e", "n": 3})),
                put("k4", json!({"n": 4})),
                delete("k6"),
                delete("k2"),
            ],
        )
        .unwrap();
    store.set_offline("db", true).unwrap();
    let chunk = store.resync_chunk("db", None, 100).unwrap();
    assert_eq!((chunk.processed, chunk.errors.len()), (4, 0), "{chunk:?}");
    assert_eq!(chunk.last_key.as_deref(), Some("k5"));
    // k3 gains its email entry; the others had theirs.
    assert_eq!(chunk.changed, 1);
    assert_eq!(
        store.resync_chunk("db", Some("k5"), 100).unwrap().last_key,
        None
    );
    // k2's two entries and k6's n entry lost their documents; k3's old n entry is the
    // same value (3) and stays. Step by step, one entry each: the indexes stay stale
    // until the step that finds no more entries.
    let (mut removed, mut after, mut steps) = (0, None, 0);
    loop {
        let written = store
            .write(Write::ResyncFinish {
                name: "db".to_string(),
                errored: 0,
                after: after.take(),
                limit: 1,
            })
            .unwrap();
        let Written::ResyncFinished {
            removed: more,
            next,
        } = written
        else {
            panic!("{written:?}");
        };
        removed += more;
        steps += 1;
        match next {
            Some(entry) => {
                assert!(store.database_config("db").unwrap().indexes_stale);
                after = Some(entry);
            }
            None => break,
        }
        assert!(steps < 100, "the steps end");
    }
    assert_eq!(removed, 3);
    assert!(steps > 3, "one entry per step: {steps}");
    let config = store.database_config("db").unwrap();
    assert!(!config.indexes_stale);
    assert_eq!(config.indexes, defs);
    store.set_offline("db", false).unwrap();
    let (all, _) = found(
        &store,
        "db",
        &query("by_n", Bound::Unbounded, Bound::Unbounded),
    );
    let keys: Vec<&str> = all.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(keys, ["k1", "k3", "k4", "k5"]);
    assert_eq!(exact(&store, "db", "by_email", text("a@e")), ["k1"]);
    assert_eq!(exact(&store, "db", "by_email", text("c@e")), ["k3"]);
    assert!(exact(&store, "db", "by_email", text("b@e")).is_empty());
    // Fresh again: writes are checked.
    assert!(matches!(
        store.put("db", "k9", &mp(json!({"email": "a@e"})), None),
        Err(StoreError::UniqueViolation { .. })
    ));
    // A resync of a fresh index changes nothing.
    store.set_offline("db", true).unwrap();
    let chunk = store.resync_chunk("db", None, 100).unwrap();
    assert_eq!((chunk.processed, chunk.changed), (4, 0));
    assert_eq!(store.resync_finish("db", 0).unwrap(), 0);
}

#[test]
fn a_resync_removes_orphan_entries_of_unique_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    store.create_database("db").unwrap();
    store
        .batch(
            "db",
            vec![
                put("a", json!({"u": 1})),
                put("b", json!({"u": 1})),
                put("c", json!({"u": 2})),
            ],
        )
        .unwrap();
    store.set_offline("db", true).unwrap();
    store
        .set_database_config("db", vec![def("by_u", "/u", true)], Retention::default())
        .unwrap();
    let chunk = store.resync_chunk("db", None, 10).unwrap();
    assert_eq!(
        (chunk.processed, chunk.changed, chunk.errors.len()),
        (3, 2, 1)
    );
    store.resync_finish("db", 1).unwrap();
    // Still stale: writes leave the index alone, so c's entry for 2 outlives c.
    store.set_offline("db", false).unwrap();
    store
        .batch(
            "db",
            vec![delete("c"), delete("b"), put("d", json!({"u": 2}))],
        )
        .unwrap();
    store.set_offline("db", true).unwrap();
    let chunk = store.resync_chunk("db", None, 10).unwrap();
    // d takes 2 from the orphan of c.
    assert_eq!(
        (chunk.processed, chunk.changed, chunk.errors.len()),
        (2, 1, 0),
        "{chunk:?}"
    );
    assert_eq!(
        store.resync_finish("db", 0).unwrap(),
        0,
        "the orphan is gone already"
    );
    store.set_offline("db", false).unwrap();
    assert_eq!(exact(&store, "db", "by_u", IndexKey::Number(2.0)), ["d"]);
    assert_eq!(exact(&store, "db", "by_u", IndexKey::Number(1.0)), ["a"]);
}

#[test]
fn a_resync_reports_documents_that_do_not_check() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    store
        .create_database_offline("db", Retention::default())
        .unwrap();
    // Nothing to do on an empty database.
    let chunk = store.resync_chunk("db", None, 5).unwrap();
    assert_eq!(chunk, cairn_store::ResyncChunk::default());
    assert_eq!(store.resync_finish("db", 0).unwrap(), 0);
    assert!(matches!(
        store.resync_chunk("db", None, 0),
        Err(StoreError::InvalidArgument { .. })
    ));
    assert!(matches!(
        store.resync_chunk("nope", None, 5),
        Err(StoreError::DatabaseMissing { .. })
    ));
}
