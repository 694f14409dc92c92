//! A database's content digest, computed the same way on both sides of a cutover from
//! `scan` pages (which every release serves): SHA-256 over every document in key order,
//! each as its key's length and bytes, its rev, and its value's msgpack length and
//! bytes. Equal digests mean the same keys, revs and values.

use cairn_client::methods::ScanArgs;
use cairn_client::{Client, ClientError};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Documents per page read.
const PAGE: u32 = 1_000;

/// How many documents a database holds and their digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Content {
    pub documents: u64,
    pub digest: String,
}

/// Reads every document of `db` in pages (the next asked for while the current one is
/// digested) and digests them; each value is decoded and encoded again, so that the
/// digest does not depend on how a service spelled a value's msgpack.
pub async fn content(client: Client, db: String) -> Result<Content, ClientError> {
    let mut pages = client.scan_pages(ScanArgs {
        db,
        limit: Some(PAGE),
        ..ScanArgs::default()
    });
    let mut hasher = Sha256::new();
    let mut documents = 0u64;
    let mut value = Vec::new();
    while let Some(page) = pages.next_page().await? {
        for doc in page.iter() {
            value.clear();
            rmpv::encode::write_value(&mut value, &doc.value()?)
                .expect("writing to a Vec cannot fail");
            hasher.update((doc.key.len() as u64).to_be_bytes());
            hasher.update(doc.key.as_bytes());
            hasher.update(doc.rev.to_be_bytes());
            hasher.update((value.len() as u64).to_be_bytes());
            hasher.update(&value);
            documents += 1;
        }
    }
    Ok(Content {
        documents,
        digest: hex::encode(hasher.finalize()),
    })
}
