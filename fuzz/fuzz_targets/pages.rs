//! Bytes a service answers a client with, read as a page of documents in place
//! (`cairn_proto::doc_spans`, what `Client::scan_page` does with a `scan` or `find`
//! result). Nothing may panic, and a page that reads holds only spans inside the bytes:
//! keys of UTF-8 and values that decode as exactly one msgpack value.
#![no_main]

use cairn_proto::doc_spans::read_docs_result;
use cairn_proto::message::MAX_MESSAGE_DEPTH;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((docs, _more)) = read_docs_result(data) else {
        return;
    };
    for doc in docs {
        let key = data.get(doc.key).expect("a key inside the page");
        assert!(std::str::from_utf8(key).is_ok(), "a key of UTF-8");
        let mut value = data.get(doc.value).expect("a value inside the page");
        rmpv::decode::read_value_with_max_depth(&mut value, MAX_MESSAGE_DEPTH)
            .expect("a value that decodes");
        assert!(value.is_empty(), "exactly one value");
    }
});
