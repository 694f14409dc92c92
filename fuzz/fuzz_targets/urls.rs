//! URLs people type: the service's listen URLs and the clients' connect URLs.
#![no_main]

use cairn_client::ClientUrl;
use cairn_server::ListenUrl;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(url) = text.parse::<ListenUrl>() {
        // What parses prints back to itself.
        let printed = url.to_string();
        assert_eq!(printed.parse::<ListenUrl>().ok(), Some(url), "{printed}");
    }
    let _ = text.parse::<ClientUrl>();
});
