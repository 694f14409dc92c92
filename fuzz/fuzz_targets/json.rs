//! The JSON people type: values given to the CLI and bodies sent to the HTTP API, both
//! read by `cairn_proto::json`; what parses writes back as JSON that parses again.
#![no_main]

use cairn_proto::json;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(value) = json::parse(text) {
        let written = json::to_string(&value);
        assert!(json::parse(&written).is_ok(), "{written}");
    }
});
