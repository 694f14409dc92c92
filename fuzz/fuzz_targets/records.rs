//! Bytes read from the environment: every on-disk record decoder of the store (the
//! first byte picks one: catalog, configuration, follow, sync position, user, session,
//! job, status, document value, change record, index key, migration record) must give
//! a value or an error (`corrupt`, `damaged`), never a panic or an out-of-bounds read;
//! and values sent by clients go through the store's msgpack validation.
#![no_main]

use cairn_store::format::{read_change_record, read_doc_value, CatalogRecord};
use cairn_store::migrate::MigrationRecord;
use cairn_store::{
    validate_value, DatabaseConfig, FollowRecord, IndexKey, JobRecord, ServiceStatus,
    SessionRecord, SyncPosition, UserRecord,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, bytes)) = data.split_first() else {
        return;
    };
    match which % 13 {
        0 => drop(CatalogRecord::decode(bytes)),
        1 => drop(DatabaseConfig::decode(bytes)),
        2 => drop(FollowRecord::decode(bytes)),
        3 => drop(SyncPosition::decode(bytes)),
        4 => drop(UserRecord::decode(bytes)),
        5 => drop(SessionRecord::decode(bytes)),
        6 => drop(JobRecord::decode(bytes)),
        7 => drop(ServiceStatus::decode(bytes)),
        8 => drop(read_doc_value("db", 1, "key", bytes)),
        9 => drop(read_change_record("db", 1, 1, bytes)),
        10 => drop(IndexKey::decode(bytes)),
        11 => drop(MigrationRecord::decode(bytes)),
        _ => drop(validate_value(bytes, 1 << 20)),
    }
});
