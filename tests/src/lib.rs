//! `cairn-tests`: end-to-end and crash tests that drive Cairn's real binaries. The
//! library holds what a test binary and the test that checks it must agree on, such as
//! the keys, values and acknowledgement lines of the crash writer (see [`crash`]).

pub mod crash;
